/*
 * mta_sts_fetch: the HTTPS GET of an MTA-STS policy file (RFC 8461 3.3),
 * on libcurl's multi interface driven by the event loop: no thread, no
 * blocking call. The caller resolves mta-sts.DOMAIN with its own resolver
 * and passes the addresses; curl gets them through CURLOPT_RESOLVE and
 * never calls getaddrinfo. HTTPS only, no redirects, the peer's
 * certificate and name verified (against ca_file, or the system's store),
 * a connect and a total time limit, a body of at most 64 KiB, status 200
 * and Content-Type text/plain only.
 *
 * Callbacks run on the loop, exactly once per transfer, never from inside
 * mta_sts_fetch_start; mta_sts_fetcher_free drops the transfers still
 * under way without calling them back (their owner is going away too).
 */
#ifndef MXV_MTA_STS_FETCH_H
#define MXV_MTA_STS_FETCH_H

#include <stddef.h>

#include "base/dns.h"

struct event_base;
struct mta_sts_fetcher;

#define MTA_STS_FETCH_BODY_MAX (64 * 1024)

/* body: the policy file (n bytes, not NUL-terminated), or NULL and why. */
typedef void mta_sts_fetch_fn(void *arg, const char *body, size_t n, const char *why);

/* NULL when libcurl cannot be set up. ca_file: NULL for the system's store. */
struct mta_sts_fetcher *mta_sts_fetcher_new(struct event_base *base, const char *ca_file);
void mta_sts_fetcher_free(struct mta_sts_fetcher *f);
/*
 * Fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt from addrs (the
 * port of each is used; all must have the same). 0, or -ENOMEM / -EINVAL
 * with nothing started and no callback.
 */
int mta_sts_fetch_start(struct mta_sts_fetcher *f, const char *domain, const struct dns_addr *addrs, size_t n,
			mta_sts_fetch_fn *fn, void *arg) MUST_CHECK;

#endif
