/*
 * verify: the seam between the SMTP server, which must decide a recipient
 * at RCPT, and the delivery side, which can ask the primary (a callout,
 * delivery/callout.h). smtpd/ and delivery/ never call each other, so the
 * daemon hands the session a struct verifier whose functions are the
 * callout module's. Only types here; no code.
 *
 * Guarantees of any implementation: start either answers at once (returns
 * NULL with *now set, and done is never called) or returns a request whose
 * done runs exactly once, later, from the event loop (never from inside
 * start), unless cancel is called first; after cancel, done never runs and
 * the request handle is invalid.
 */
#ifndef MXV_VERIFY_H
#define MXV_VERIFY_H

#include "cfg.h"

enum verify_result {
	VERIFY_ACCEPTED = 0, /* the primary said 2xx to RCPT */
	VERIFY_REFUSED,      /* 5xx: reply holds the primary's reply */
	VERIFY_TEMPFAIL,     /* 4xx, or the session broke after it was up */
	VERIFY_TIMEOUT,      /* no answer within callout_timeout */
	VERIFY_UNREACHABLE,  /* no next hop answered (connect failed, refused or timed out; no route) */
};

struct verify_req;
typedef void verify_done_fn(void *arg, enum verify_result r, const char *reply);

struct verifier {
	/* Asks the primary of d about addr ("local@domain"). */
	struct verify_req *(*start)(void *impl, const struct cfg_domain *d, const char *addr, verify_done_fn *done,
				    void *arg, enum verify_result *now);
	void (*cancel)(void *impl, struct verify_req *q);
	void *impl;
};

#endif
