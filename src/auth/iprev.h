/*
 * iprev: RFC 8601 3 for the client's address: its PTR names (at most 10),
 * each looked up forward; pass when one of them resolves back to the
 * address, fail when none does (or there is no PTR), temperror when DNS
 * failed. The same validation as SPF's ptr mechanism (RFC 7208 5.5), on the
 * shared resolver.
 *
 * The callback runs exactly once, never from inside iprev_check_start;
 * iprev_check_cancel withdraws it; dns_free under a waiting check delivers
 * IPREV_TEMPERROR from inside it. An address neither IPv4 nor IPv6 is
 * IPREV_PERMERROR.
 */
#ifndef MXV_IPREV_H
#define MXV_IPREV_H

#include <sys/socket.h>

struct dns;
struct iprev_check;

enum iprev_result { IPREV_PASS = 0, IPREV_FAIL, IPREV_TEMPERROR, IPREV_PERMERROR };

/* name: the validated name (pass), or NULL; valid during the call. */
typedef void iprev_fn(void *arg, enum iprev_result r, const char *name);

struct iprev_check *iprev_check_start(struct dns *dns, const struct sockaddr *client, iprev_fn *fn, void *arg);
void iprev_check_cancel(struct iprev_check *c);

const char *iprev_result_str(enum iprev_result r);

#endif
