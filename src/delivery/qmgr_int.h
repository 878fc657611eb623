/*
 * qmgr_int: the queue manager's private types, shared by its files:
 * qmgr.c (scheduling: destinations, queues, jobs, the connection slots,
 * the tick), qmgr_conn.c (connections: routing, the SMTP client's
 * callbacks, outcomes as they are read) and qmgr_dsn.c (bounces, delay
 * warnings, expiry). They are one module; nothing outside includes this.
 */
#ifndef MXV_QMGR_INT_H
#define MXV_QMGR_INT_H

#include <openssl/ssl.h>

#include "base/dns.h"
#include "dest.h"
#include "dsn.h"
#include "route.h"
#include "qmgr.h"
#include "smtp_out.h"
#include "tls_policy.h"
#include "spool/spool.h"

/* The scheduler's record of a queued message (spool_msg.user). */
struct qmsg {
	struct spool_msg *m;
	uint32_t jobs;            /* jobs not yet finished */
};

enum outcome { OUT_NONE = 0, OUT_SENT, OUT_FAILED, OUT_DEFERRED, OUT_HELD };

/* One recipient's outcome during an attempt. */
struct job_rcpt {
	uint8_t outcome;          /* enum outcome */
	uint16_t code;            /* OUT_FAILED: the refusal, recorded with its bounce */
	char *reply;
};

struct dest;
struct marker;

struct job {
	struct smtp_out_job out;  /* first: smtp_out hands it back to us */
	struct qmsg *qm;
	struct dest *d;
	struct job *next;
	int64_t not_before;       /* Unix seconds: not to be tried before */
	int64_t expire_at;
	int64_t warn_at;          /* 0: no delay warning */
	struct job_rcpt *res;     /* per out.rcpts[k] during an attempt */
	bool held;                /* kept back by the bounce guard */
	struct marker *marker;    /* the in-flight marker being made durable */
	struct job *dprev, *dnext;/* every job of its destination, wherever it is (qmgr_view.c) */
	struct smtp_out *dot_held;/* the connection waiting for it before the final dot */
	char relay[340];          /* "host[ip]:port" of the last attempt, for logs */
	char relay_host[256];     /* its host name, for DSNs (RFC 3464 Remote-MTA) */
	char tls[16];             /* its TLS version, or "" */
	char tls_label[24];       /* what TLS it got: "dane-verified", "mta-sts", "may-encrypted", "none" */
};

/* A queue of jobs in id (arrival) order; appending a newer job is O(1). */
struct jlist {
	struct job *head, *tail;
	size_t n;
};

struct dest {
	struct qmgr *s;
	char *domain;
	const struct cfg_domain *cd;
	uint32_t gen;             /* bumped when a reload moves its routing: open connections take no more jobs */
	struct dest_policy pol;
	struct jlist ready;       /* may be tried now */
	struct jlist waiting;     /* not before job->not_before */
	uint32_t nconn, nstarting;
	struct event *probe_ev;
	bool probing;
	bool standby;             /* accept = when-primary-down: probed every probe_interval, queue or not */
	struct event *standby_ev;
	bool want_probe;          /* a probe is due but no connection slot was free */
	bool slot_queued;         /* on the qmgr's slot queue */
	struct dest *next_dest;
	struct dest *next_slot;
	/* What observers see (qmgr_view.c). */
	struct job *jobs;         /* every job of d: on a list or on a connection */
	size_t njobs;
	uint64_t nbytes;
	int64_t state_since;      /* wall seconds: the outage began, or the last one ended */
	bool drill_hold;          /* a drill holds its delivery (qmgr_drill.c): no connection, no job taken */
	bool held;                /* `queue hold DOMAIN`: not connected to, not probed, nothing expires (qmgr_ctl.c) */
};

struct conn;

struct qmgr {
	const struct cfg *cfg;
	struct event_base *base;
	struct spool *sp;
	struct dns *dns;
	struct route_ctx *route;
	SSL_CTX *ssl;
	struct learned *learned;  /* NULL: nothing learned from deliveries */
	struct mta_sts *mta_sts;
	struct tls_policy *tls_policy;
	struct htab dests;
	struct dest *dest_list;
	struct event *tick;
	uint32_t nconn;           /* every outbound connection, probes included */
	struct dest *slot_head, *slot_tail; /* destinations waiting for a connection slot, in turn */
	bool stopping;
	struct conn *conns;
	uint64_t dsn_seq;
	struct qmgr_stats st;
	struct standby *standby;  /* told whose primary answers (base/standby.h), or NULL */
	struct qmgr_observer { qmgr_event_fn *fn; void *arg; } observers[QMGR_MAX_OBSERVERS];
	size_t nobservers;
	int64_t *domain_since;    /* per cfg->domains[i]: state_since kept when its dest is forgotten */
	struct spool_held *held;  /* the held destinations, as in SPOOL/held-domains (qmgr_ctl.c) */
	size_t nheld;
};

/* --- qmgr.c: scheduling ------------------------------------------------- */
/* The destination for a lower-case domain, made if the queue manager does not know it yet. */
struct dest *qmgr_dest_get(struct qmgr *s, const char *domain);
/* Starts what d may start now: connections for its ready jobs, or queues it for a slot. */
void qmgr_dest_kick(struct dest *d);
/* The next ready job of d, for a connection to send, or NULL. */
struct job *qmgr_dest_take_job(struct dest *d);
/* An attempt on d failed before a session (why: a reply or error text). probe: arm the probe timer. */
void qmgr_dest_failed(struct dest *d, const char *why, bool probe);
/* A session with d was established. */
void qmgr_dest_up(struct dest *d);
/* Logs a failure line of d unless its rate limit holds it back. */
void qmgr_dest_log_failure(struct dest *d, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* A connection (or probe) of d ended and gave its slot back. */
void qmgr_dest_conn_ended(struct dest *d, bool probe, bool failed_early, const char *why);
/* Judges a recipient's reply at d, acting on what it does to the bounce guard. */
enum dest_verdict qmgr_dest_judge(struct dest *d, int code);
/* d's next hop cannot exist (NXDOMAIN, null MX): every job of d bounces with reply. */
void qmgr_dest_refused(struct dest *d, const char *reply);
/* An attempt of j begins over out (NULL: none, j is refused without one): where it goes, with what TLS. */
void qmgr_job_begin(struct job *j, const struct smtp_out *out);
/* After an attempt: bounces what failed, records it, defers what is pending, or finishes j. */
void qmgr_job_settle(struct qmgr *s, struct job *j);
/* Retention ran out, or a job is done: j is off every list and is freed. */
void qmgr_job_finished(struct qmgr *s, struct job *j);
void qmgr_job_log(const struct job *j, uint32_t idx, int code, const char *status, const char *reply);

/* Makes m's jobs (its pending recipients, per destination): at start, on commit, on a quarantine's release. */
void qmgr_add_msg(void *arg, struct spool_msg *m);
/*
 * Puts d's jobs where their hold says: jobs on hold leave the ready list
 * for the waiting one; flush: every other waiting job is ready now, the
 * backoff is forgotten and a destination that is down is probed now.
 */
void qmgr_dest_requeue(struct dest *d, bool flush);
/* Takes j off its destination's list; false when it is on a connection (on no list). */
bool qmgr_job_unlist(struct job *j);

/* --- qmgr_ctl.c: what the administrator asks -------------------------- */
/* Neither delivered nor expired: its message or its destination is held. */
bool qmgr_job_on_hold(const struct job *j);
/* Whether domain is in the held list (get_dest asks, so a forgotten destination stays held). */
bool qmgr_domain_held(const struct qmgr *s, const char *domain);
/* At start: reads SPOOL/held-domains. */
void qmgr_ctl_load(struct qmgr *s);
/*
 * j's message was deleted by the administrator (SPOOL_META_DELETED): its
 * pending recipients are finished without a bounce, j too.
 */
void qmgr_job_deleted(struct qmgr *s, struct job *j);
/* m (deleted, with no job: quarantined, or found deleted at start) goes now, without a bounce. */
void qmgr_msg_delete_now(struct qmgr *s, struct spool_msg *m);

/* --- qmgr_conn.c: connections ------------------------------------------- */
/* Starts a connection (or a probe) for d; the caller has checked the slot. */
void qmgr_conn_start(struct dest *d, bool probe);
/* qmgr_stop: cuts every connection; those still resolving end when the resolver is freed. */
void qmgr_conn_stop_all(struct qmgr *s);
/* Forgets j's in-flight marker (it may still be being written). */
void qmgr_job_drop_marker(struct job *j);

/* --- qmgr_view.c: what observers see ----------------------------------- */
/* j joins / leaves its destination's tally (new_job, qmgr_job_finished). */
void qmgr_view_add_job(struct dest *d, struct job *j);
void qmgr_view_drop_job(struct dest *d, struct job *j);
/* d is about to be forgotten: a backed-up domain keeps its state_since. */
void qmgr_view_forget(struct dest *d);
/* d's state changed (QMGR_EV_DOWN, _UP, _DRAINED, _GUARD_ON, _GUARD_OFF); reply: why, or NULL. */
void qmgr_emit_dest(struct dest *d, enum qmgr_event_kind kind, const char *reply);
/* A recipient's outcome (QMGR_EV_DELIVERED, _DEFERRED, _BOUNCED, _EXPIRED). */
void qmgr_emit_rcpt(const struct job *j, uint32_t idx, enum qmgr_event_kind kind, int code, const char *reply);
/* A DSN was queued for m's sender: action "failed" or "delayed". */
void qmgr_emit_dsn(struct qmgr *s, const struct spool_msg *m, const char *action);

/* --- qmgr_dsn.c: notifications ------------------------------------------ */
/* One recipient of a DSN: its index, and the reply to report (NULL: none). */
struct qmgr_dsn_rcpt {
	uint32_t idx;
	uint16_t code;
	const char *reply;
};

struct qmgr_dsn_req {
	enum dsn_action action;
	const char *status;        /* RFC 3463 code for all, or NULL: from each reply */
	const char *remote_mta;    /* the host name that answered, or NULL */
	int64_t will_retry_until;  /* DSN_DELAYED: when the message expires */
};

/* Sends one DSN for the given recipients of m (those that want one). */
void qmgr_send_dsn(struct qmgr *s, struct spool_msg *m, const struct qmgr_dsn_rcpt *r, size_t n,
		   const struct qmgr_dsn_req *req);
/* Retention ran out: bounces (4.4.7) what is pending and finishes the job. j is off every list. */
void qmgr_expire_job(struct qmgr *s, struct job *j);
/* Sends the one delay warning of j's message if warn_after has passed. */
void qmgr_maybe_warn(struct qmgr *s, struct job *j, int64_t now);
/* "5.1.1" from "550 5.1.1 text", or a class default. */
void qmgr_status_of(int code, const char *reply, char out[16]);

#endif
