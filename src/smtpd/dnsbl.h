/*
 * dnsbl: the DNS list check at connect (issue 9 section 3): every dnsbl and
 * dnswl zone of the configuration asked in parallel, on the shared
 * resolver, for the client's reversed address (A records). A dnsbl zone
 * lists the client when an answer matches its codes (connspec.h); its
 * weight is added to the score. A dnswl zone lists it with any answer.
 *
 * The verdict: blocked when the score reaches dnsbl_threshold, no dnswl
 * zone lists the client and every dnswl zone answered (a DNS failure never
 * blocks: a dnswl lookup that failed might have listed the client).
 *
 * The callback runs exactly once, never from inside dnsbl_check_start;
 * dnsbl_check_cancel withdraws it (the check then lives on, quietly, until
 * its last lookup answers: the resolver has no cancel). dnsbl_check_now
 * gives the verdict so far to a caller that will not wait any longer (what
 * did not answer counts as failed).
 */
#ifndef MXV_DNSBL_H
#define MXV_DNSBL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "base/cfg.h"

struct dns;
struct dnsbl_check;

/* The most zone names a verdict lists for the log. */
#define DNSBL_LOG_MAX 512

struct dnsbl_verdict {
	bool blocked;
	int score;
	const char *zone;           /* blocked: the first dnsbl zone (in the configuration's order) that listed it */
	char listed[DNSBL_LOG_MAX]; /* "zone,zone" of the dnsbl zones that listed it ("" if none) */
	char allowed[DNSBL_LOG_MAX];/* the dnswl zones that listed it */
	char failed[DNSBL_LOG_MAX]; /* zones whose lookup failed or did not answer */
};

/* v: valid during the call. */
typedef void dnsbl_fn(void *arg, const struct dnsbl_verdict *v);

/* Whether the configuration names any zone (otherwise no check is started). With dnswl
 * zones only, nobody is blocked: the verdict tells who is listed (greylisting exempts them). */
bool dnsbl_wanted(const struct cfg *cfg);
struct dnsbl_check *dnsbl_check_start(struct dns *dns, const struct cfg *cfg, const struct sockaddr *client,
				      dnsbl_fn *fn, void *arg);
void dnsbl_check_cancel(struct dnsbl_check *c);
/* The verdict from what has answered so far; the check is then cancelled. */
void dnsbl_check_now(struct dnsbl_check *c, struct dnsbl_verdict *v);

#endif
