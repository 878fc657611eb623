/*
 * qmgr_int: private to qmgr.c (queues, connections, outcomes) and
 * qmgr_dsn.c (bounces, delay warnings, expiry).
 */
#ifndef MXV_QMGR_INT_H
#define MXV_QMGR_INT_H

#include <openssl/ssl.h>

#include "base/dns.h"
#include "dsn.h"
#include "route.h"
#include "qmgr.h"
#include "smtp_out.h"
#include "spool/spool.h"

enum outcome { OUT_NONE = 0, OUT_SENT, OUT_FAILED, OUT_DEFERRED, OUT_HELD };

struct dest;

struct job {
	struct smtp_out_job out; /* first: smtp_out hands it back to us */
	struct dest *d;
	struct job *next;
	int64_t not_before;      /* Unix seconds: not to be tried before */
	int64_t expire_at;
	int64_t warn_at;         /* 0: no delay warning */
	uint8_t *outcome;        /* per out.rcpts[k] during an attempt */
	bool held;               /* kept back by the bounce guard */
	struct marker *marker;   /* the in-flight marker being made durable */
	struct smtp_out *dot_held; /* the connection waiting for it before the final dot */
	char relay[340];         /* the host of the last attempt */
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
	struct jlist ready;      /* may be tried now */
	struct jlist waiting;    /* not before job->not_before */
	uint32_t nconn, nstarting;
	bool down;
	int64_t backoff_s;
	int64_t next_try_ms;     /* monotonic: no new connection before (while down) */
	struct event *probe_ev;
	bool probing;
	bool seen_up;
	/* bounce guard */
	bool window;
	uint32_t win_total, win_5xx;
	bool guard;
	int64_t guard_until;
	struct dest *next_dest;
};

struct qmgr {
	const struct cfg *cfg;
	struct event_base *base;
	struct spool *sp;
	struct dns *dns;
	struct route_ctx *route;
	SSL_CTX *ssl;
	struct htab dests;
	struct dest *dest_list;
	struct event *tick;
	uint32_t nconn;
	bool stopping;
	struct conn *conns;
	uint64_t dsn_seq;
	struct qmgr_stats st;
};

struct conn {
	struct qmgr *s;
	struct dest *d;
	struct smtp_out *out;
	bool probe;
	bool starting;   /* has not taken a job yet */
	bool detached;   /* cut loose by qmgr_stop while resolving */
	bool was_ready;
	struct conn *prev, *next;
};

/* qmgr.c */
void qmgr_job_finished(struct qmgr *s, struct job *j);
void qmgr_job_defer(struct qmgr *s, struct job *j);
void jlist_insert(struct jlist *l, struct job *j);
struct job *jlist_pop(struct jlist *l);

/* qmgr_dsn.c */
/* Sends one DSN for the given recipients of m (those that want one). */
void qmgr_send_dsn(struct qmgr *s, struct spool_msg *m, const uint32_t *idx, size_t n, enum dsn_action act,
		    const char *status, const char *relay);
/* Retention ran out: bounces (4.4.7) what is pending and finishes the job. j is off every list. */
void qmgr_expire_job(struct qmgr *s, struct job *j);
/* Sends the one delay warning of j's message if warn_after has passed. */
void qmgr_maybe_warn(struct qmgr *s, struct job *j, int64_t now);
/* "5.1.1" from "550 5.1.1 text", or a class default. */
void qmgr_status_of(int code, const char *reply, char out[16]);

#endif
