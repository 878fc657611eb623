/*
 * callout: asks a domain's primary whether it takes a recipient (issue 9):
 * EHLO (HELO if refused), MAIL FROM:<>, RCPT TO:<address>, RSET, over
 * connections kept per destination (the domain) and reused while idle (at
 * most CALLOUT_IDLE_S, then QUIT). The primary is what route.h finds: the
 * configured primaries, or the MX records more preferred than us, each
 * address tried in turn until one greets us.
 *
 * Contract (the verifier of base/verify.h):
 * - at most max_connections_per_destination callouts are in flight per
 *   destination, each connection running one at a time; the others wait
 *   in a queue of at most CALLOUT_QUEUE_MAX (beyond: VERIFY_TEMPFAIL at
 *   once);
 * - each request has callout_timeout from its start, queueing included:
 *   then VERIFY_TIMEOUT, and the connection it was on is closed;
 * - when no address of the primary answers (connect refused, failed or
 *   timed out, a greeting other than 220, no route), every waiting request
 *   gets VERIFY_UNREACHABLE, and for probe_interval new requests get it at
 *   once (no connection storm against a primary that is down);
 * - a request for an address already queued or being asked (any case)
 *   waits on that one and gets its answer: one callout however many
 *   sessions ask at once (its own deadline still holds);
 * - every answer of the primary to RCPT is recorded in the learned store
 *   (2xx good, 5xx bad), also for a request cancelled meanwhile.
 * Callouts go in clear (no STARTTLS): they carry one address, no content.
 * Main thread only.
 */
#ifndef MXV_CALLOUT_H
#define MXV_CALLOUT_H

#include "base/cfg.h"
#include "base/verify.h"

#define CALLOUT_IDLE_S 30
#define CALLOUT_QUEUE_MAX 512

struct event_base;
struct dns;
struct learned;
struct callout;

struct callout_deps {
	const struct cfg *cfg;      /* the module takes its own reference */
	struct event_base *base;
	struct dns *dns;
	struct learned *learned;    /* where answers are recorded; NULL: nowhere */
};

struct callout *callout_new(const struct callout_deps *deps);
/* A reload: new requests use cfg (a reference is taken); requests under way finish with theirs. */
void callout_set_cfg(struct callout *co, const struct cfg *cfg);
/* The verifier's functions (impl: the struct callout). */
struct verify_req *callout_start(void *impl, const struct cfg_domain *d, const char *addr, verify_done_fn *done,
				 void *arg, enum verify_result *now);
void callout_cancel(void *impl, struct verify_req *q);
/*
 * Closes every connection (QUIT to idle ones). Must run before the
 * resolver is freed, and after every request was answered or cancelled;
 * connections still resolving end when the resolver cancels them.
 */
void callout_stop(struct callout *co);
/* After the resolver is freed. NULL is ignored. */
void callout_free(struct callout *co);

#endif
