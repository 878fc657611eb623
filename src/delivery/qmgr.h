/*
 * qmgr: the forward side's queue manager. Every pending recipient of every
 * queued message belongs to one job per (message, destination domain); jobs
 * wait in their destination's queue in arrival order. The scheduler opens
 * up to max_connections_per_destination connections per destination (one
 * while it is down), and no more than max_outbound_connections in all,
 * probes included: destinations wait for a free slot in turn. It feeds the
 * connections jobs, records each recipient's outcome durably, retries with
 * backoff, probes a destination that is down and flushes it the moment it
 * answers, holds bounces when a primary comes back refusing everything (the
 * bounce guard), expires old mail and sends RFC 3464 DSNs.
 */
#ifndef MXV_QMGR_H
#define MXV_QMGR_H

#include <stdbool.h>
#include <stdint.h>

#include "base/cfg.h"

struct event_base;
struct spool;
struct dns;
struct qmgr;
typedef struct ssl_ctx_st SSL_CTX;

/* What the daemon lends the queue manager; it outlives it. */
struct qmgr_deps {
	const struct cfg *cfg;   /* the queue manager takes its own reference */
	struct event_base *base;
	struct spool *sp;
	struct dns *dns;         /* the shared resolver */
	SSL_CTX *tls;            /* the client TLS context, or NULL: never STARTTLS */
	struct learned *learned; /* recipients learned from the primary: every delivery updates it; NULL: none */
	struct standby *standby; /* where probes and deliveries say whose primary answers; NULL: nowhere */
};

struct qmgr_stats {
	uint64_t delivered, bounced, expired, deferred, held, possible_dups, dsns;
};

int qmgr_start(const struct qmgr_deps *deps, struct qmgr **out) MUST_CHECK;
/*
 * Stops delivering: connections are cut, their recipients stay queued.
 * Lookups still pending on the shared resolver end when the daemon frees
 * it, which must happen between qmgr_stop and qmgr_free.
 */
void qmgr_stop(struct qmgr *s);
bool qmgr_idle(const struct qmgr *s);
/*
 * A reload: new destinations and scheduling use cfg (a reference is
 * taken); queued mail of a domain no longer configured goes by MX lookup.
 * The keys fixed at start (reload.c) are not looked at again.
 */
void qmgr_set_cfg(struct qmgr *s, const struct cfg *cfg);
void qmgr_free(struct qmgr *s);
void qmgr_get_stats(const struct qmgr *s, struct qmgr_stats *st);

#endif
