/*
 * greylist: the greylisting decision (issue 9 §3) for one delivery attempt
 * of a (client network, sender, recipient) triplet, remembered in a kv
 * store (store/kv.h) so that it holds across restarts. The client network
 * is the IPv4 /24 or the IPv6 /64 (a sender's retries often come from
 * another address of the same farm).
 *
 * The first attempt of a triplet is deferred; a retry after `delay` and
 * within GREYLIST_RETRY_WINDOW passes, and then lets the whole client
 * network through for GREYLIST_PASS_TTL (what a mail server that retries
 * has shown). A retry after the window starts over. Who is exempt (SPF
 * pass for a domain with a DMARC policy, a dnswl listing) is the session's
 * call, before it asks here. Entries expire: greylist_sweep, on a timer.
 * Clock: Unix seconds, passed in. Addresses compared without case.
 */
#ifndef MXV_GREYLIST_H
#define MXV_GREYLIST_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define GREYLIST_RETRY_WINDOW (24 * 3600)
#define GREYLIST_PASS_TTL (30 * 86400)

struct kv;
struct greylist;

struct greylist *greylist_new(struct kv *kv, int64_t delay_s);
void greylist_free(struct greylist *g);

/*
 * True to let the attempt through; false to defer it, *retry_in set to
 * the seconds left before a retry can pass. A store that fails lets mail
 * through (logged): greylisting is a filter, never a reason to lose mail.
 */
bool greylist_check(struct greylist *g, const struct sockaddr *client, const char *sender, const char *rcpt,
		    int64_t now, int64_t *retry_in);
/* Forgets what has expired, a bounded batch a call. Returns how many went. */
size_t greylist_sweep(struct greylist *g, int64_t now);

/* The client's network as greylisting keys it ("192.0.2.0/24", "2001:db8:1:2::/64"), into out. */
void greylist_network(const struct sockaddr *client, char *out, size_t n);

#endif
