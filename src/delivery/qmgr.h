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

/* --- what observers see (metrics, the status page, alerts) ------------- */

/*
 * One destination (a recipient domain, or the domain a DSN goes to) as it
 * stands: a snapshot, valid only during the callback that hands it over.
 * Backed-up domains ([domain] sections) are always listed, queued or not;
 * other destinations only while the queue manager knows them.
 */
struct qmgr_dest_view {
	const char *domain;
	bool configured;          /* a backed-up domain, not a DSN's destination */
	bool down;                /* in an outage: its next hop did not answer; probed until it does */
	int64_t state_since;      /* wall seconds: when it went down, or last came up; 0: no attempt yet */
	bool bounce_guard;        /* holding its 5xx replies as deferred (the bounce guard) */
	size_t queued;            /* messages waiting for it (on a connection included) */
	uint64_t queued_bytes;    /* their sizes */
	int64_t oldest_arrival;   /* wall seconds of the oldest of them; 0: none */
	int64_t next_expiry;      /* wall seconds when the first of them expires; 0: none */
	uint32_t connections;     /* open now, probes included */
	bool held;                /* held by the administrator (`mxvault queue hold DOMAIN`) */
};

typedef void qmgr_dest_fn(void *arg, const struct qmgr_dest_view *v);
/* Calls fn for each destination, backed-up domains first in configuration order. */
void qmgr_each_dest(struct qmgr *s, qmgr_dest_fn *fn, void *arg);
/* The view of one destination; false when it is neither configured nor known. */
bool qmgr_dest_view(struct qmgr *s, const char *domain, struct qmgr_dest_view *out);

/*
 * What happened, as it happens. A destination's state events come once
 * per change of state; message events once per recipient.
 */
enum qmgr_event_kind {
	QMGR_EV_DOWN,       /* an outage began: its mail queues (dest) */
	QMGR_EV_UP,         /* the outage ended: a session was established (dest) */
	QMGR_EV_DRAINED,    /* nothing is queued for it any more, after something was (dest) */
	QMGR_EV_GUARD_ON,   /* the bounce guard engaged (dest, reply: why) */
	QMGR_EV_GUARD_OFF,  /* it let go (dest) */
	QMGR_EV_QUEUED,     /* a message was queued for it (dest, msg_id, bytes) */
	QMGR_EV_DELIVERED,  /* a recipient was accepted by the next hop (dest, msg_id, rcpt, relay, code, reply) */
	QMGR_EV_DEFERRED,   /* an attempt for a recipient failed for now (same fields; code 0: no reply) */
	QMGR_EV_BOUNCED,    /* a recipient failed for good (same fields) */
	QMGR_EV_EXPIRED,    /* a recipient's retention ran out (dest, msg_id, rcpt) */
	QMGR_EV_DSN,        /* a DSN was queued (dest: where it goes, reply: its action "failed"/"delayed") */
};

struct qmgr_event {
	enum qmgr_event_kind kind;
	/* The destination after the event; for message events without oldest_arrival and next_expiry (0). */
	const struct qmgr_dest_view *dest;
	uint64_t msg_id;
	const char *rcpt;                  /* NULL where the kind has none */
	const char *relay;                 /* "host[ip]:port", or NULL */
	int code;
	const char *reply;                 /* NULL where the kind has none */
	uint64_t bytes;
};

typedef void qmgr_event_fn(void *arg, const struct qmgr_event *ev);
/* Adds an observer (at most QMGR_MAX_OBSERVERS); it must not call back into the queue manager's
 * state changes from the callback (reading views is fine). */
#define QMGR_MAX_OBSERVERS 4
void qmgr_observe(struct qmgr *s, qmgr_event_fn *fn, void *arg);

/* --- failover drills (qmgr_drill.c; the drill itself is src/drill.c) --- */

/*
 * Holds delivery to a backed-up domain, in memory only: no connection is
 * started for it and an open one takes no further job (probes go on). A
 * restart forgets it. 0, -ENOENT (not a backed-up domain) or -EBUSY
 * (already held).
 */
int qmgr_drill_hold(struct qmgr *s, const char *domain) MUST_CHECK;
/* Lets its mail go at once, backed up or not any more (a reload may drop it while held); nothing if not held. */
void qmgr_drill_release(struct qmgr *s, const char *domain);
/* True when message msg_id has recipients waiting for domain. */
bool qmgr_drill_is_queued(struct qmgr *s, const char *domain, uint64_t msg_id);

/* --- what the administrator asks (queue control; qmgr_ctl.c) ---------- */
/*
 * The message commands return 0 and call done(arg, err) once their change
 * is durable (err from the spool), or return -ENOENT (no such message) or
 * -ERANGE (a bad duration) without calling it. A message on a connection
 * finishes that attempt first (docs/operations.md, "Queue control").
 */
typedef void qmgr_done_fn(void *arg, int err);
/* Not delivered, never expires, across restarts, until released. */
int qmgr_hold_msg(struct qmgr *s, uint64_t id, qmgr_done_fn *done, void *arg) MUST_CHECK;
/* Lets it go now (its destinations are flushed); a quarantined message is delivered after all. */
int qmgr_release_msg(struct qmgr *s, uint64_t id, qmgr_done_fn *done, void *arg) MUST_CHECK;
/* Removes its pending recipients without a bounce; *in_flight: part of it waits for an attempt to end. */
int qmgr_delete_msg(struct qmgr *s, uint64_t id, bool *in_flight, qmgr_done_fn *done, void *arg) MUST_CHECK;
/* The most `queue extend` adds at once: far beyond any retention, and keeps the sums from overflowing. */
#define QMGR_EXTEND_MAX_S (100LL * 365 * 86400)
/* Adds secs (1..QMGR_EXTEND_MAX_S, else -ERANGE) to its retention. */
int qmgr_extend_msg(struct qmgr *s, uint64_t id, int64_t secs, qmgr_done_fn *done, void *arg) MUST_CHECK;
/*
 * A destination (lower case) held: no connection, no probe, nothing
 * expires, for mail queued now and later, until released; kept in
 * SPOOL/held-domains (a small blocking write: an administrator's command).
 * 0, -EINVAL (not a domain name), -ENOSPC (SPOOL_HELD_MAX held), -errno.
 */
int qmgr_hold_domain(struct qmgr *s, const char *domain) MUST_CHECK;
/* 0, -ENOENT (not held), -errno; the destination is flushed. */
int qmgr_release_domain(struct qmgr *s, const char *domain) MUST_CHECK;
/* Every waiting job of domain (NULL: of all) is tried now, backoff ignored, outages probed now: how many. */
size_t qmgr_flush(struct qmgr *s, const char *domain);
/* Adds secs to the retention of every message queued for domain: how many (done is called iff > 0). */
size_t qmgr_extend_domain(struct qmgr *s, const char *domain, int64_t secs, qmgr_done_fn *done, void *arg);

#endif
