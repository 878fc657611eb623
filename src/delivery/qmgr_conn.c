/*
 * qmgr_conn: the queue manager's connections. Owns struct conn (one per
 * outbound connection or probe, from the route lookup to the end) and the
 * in-flight markers. Called by the scheduler (qmgr.c), which decides when
 * a connection starts; it runs the route lookup, the SMTP client
 * (smtp_out.c) and records each recipient's outcome as soon as its reply
 * is read: delivered at once, deferred at once (with the reply, for the
 * queue listing and the eventual DSN), refused only at the end of the
 * attempt, after its bounce has been queued (qmgr_job_settle).
 *
 * Invariants: a conn is on s->conns until it ends, unless qmgr_stop
 * detached it while its route lookup was pending (the resolver's
 * cancellation then ends it); every conn ends exactly once, through
 * conn_ended, which gives its slot back to the scheduler. Main thread only.
 */
#include "qmgr_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "store/learned.h"

struct conn {
	struct qmgr *s;
	struct dest *d;
	const struct cfg *cfg; /* a reference: the SMTP client keeps pointers into it (helo) past a reload */
	uint32_t gen;          /* d->gen when it started: the routing it was opened for */
	struct smtp_out *out;
	bool probe;
	bool starting;   /* has not taken a job yet */
	bool detached;   /* cut loose by qmgr_stop while resolving */
	bool was_ready;
	struct tls_policy_result *tls; /* the addresses and their TLS, for the connection's life */
	struct conn *prev, *next;
};

/* --- in-flight markers -------------------------------------------------- */

/* The in-flight marker of a job; outlives the job if the job ends first. */
struct marker {
	struct job *j;
	bool durable;
};

static void marker_done(void *arg, int err)
{
	struct marker *mk = arg;
	struct job *j = mk->j;
	if (!j) {
		free(mk);
		return;
	}
	mk->durable = true;
	if (err)
		log_err("delivery", "id=%016" PRIx64 " in-flight marker not durable (%s): sending anyway", j->out.m->id,
			strerror(-err));
	if (j->dot_held) {
		struct smtp_out *out = j->dot_held;
		j->dot_held = NULL;
		smtp_out_resume(out);
	}
}

void qmgr_job_drop_marker(struct job *j)
{
	if (!j->marker)
		return;
	if (j->marker->durable)
		free(j->marker);
	else
		j->marker->j = NULL; /* marker_done frees it */
	j->marker = NULL;
	j->dot_held = NULL;
}

/*
 * If we crash before this attempt's outcome is recorded, recovery knows the
 * message may already have been delivered (docs/spool.md, D1). The final
 * dot waits until the marker is durable.
 */
static void set_marker(struct qmgr *s, struct job *j)
{
	qmgr_job_drop_marker(j);
	j->marker = xcalloc(1, sizeof(*j->marker));
	j->marker->j = j;
	struct spool_meta meta = j->out.m->meta;
	meta.flags |= SPOOL_META_MAYBE_DUP;
	spool_msg_set_meta(s->sp, j->out.m, &meta, marker_done, j->marker);
}

/* --- the SMTP client's callbacks ---------------------------------------- */

static bool conn_dot_ready(void *arg, struct smtp_out_job *oj)
{
	struct conn *cn = arg;
	struct job *j = (struct job *)oj;
	if (!j->marker || j->marker->durable)
		return true;
	j->dot_held = cn->out;
	return false;
}

static struct smtp_out_job *conn_next_job(void *arg, struct smtp_out *out)
{
	struct conn *cn = arg;
	struct dest *d = cn->d;
	if (cn->starting) {
		cn->starting = false;
		d->nstarting--;
	}
	if (cn->s->stopping || !d->ready.head || d->drill_hold || cn->gen != d->gen)
		return NULL;
	struct job *j = qmgr_dest_take_job(d);
	qmgr_job_begin(j, out);
	set_marker(cn->s, j);
	return &j->out;
}

/*
 * A delivery to a callout domain's primary teaches the learned store: a
 * recipient it takes is known-good; one it refuses with 5.1.x (no such
 * user, bad mailbox, ...) known-bad. Other refusals say nothing about
 * the address.
 */
static void learn(struct qmgr *s, const struct dest *d, const char *addr, int code, const char *reply)
{
	if (!s->learned || !d->cd || !d->cd->callout)
		return;
	if (code >= 200 && code < 300) {
		learned_put(s->learned, addr, true, clock_wall_s());
		return;
	}
	const char *enh = code >= 500 && code < 600 && strlen(reply) > 4 ? reply + 4 : "";
	if (strncmp(enh, "5.1.", 4) == 0)
		learned_put(s->learned, addr, false, clock_wall_s());
}

static void conn_rcpt_done(void *arg, struct smtp_out_job *oj, uint32_t k, int code, const char *reply)
{
	struct conn *cn = arg;
	struct qmgr *s = cn->s;
	struct job *j = (struct job *)oj;
	struct dest *d = j->d;
	uint32_t idx = oj->rcpts[k];
	learn(s, d, oj->m->env.rcpts[idx].addr, code, reply);
	enum dest_verdict v = qmgr_dest_judge(d, code);
	if (v == DEST_SENT) {
		j->res[k].outcome = OUT_SENT;
		s->st.delivered++;
		spool_msg_set_rcpt(s->sp, oj->m, idx, SPOOL_RCPT_DELIVERED, (uint16_t)code, reply, NULL, NULL);
		qmgr_job_log(j, idx, code, "sent", reply);
		return;
	}
	if (v == DEST_BOUNCE) {
		/* Recorded with its bounce when the attempt is settled. */
		j->res[k] = (struct job_rcpt){OUT_FAILED, (uint16_t)code, xstrdup(reply)};
		qmgr_job_log(j, idx, code, "bounced", reply);
		return;
	}
	if (code == 421)
		qmgr_dest_failed(d, reply, true); /* "too busy": back off the whole destination */
	j->res[k].outcome = v == DEST_HOLD ? OUT_HELD : OUT_DEFERRED;
	j->held |= v == DEST_HOLD;
	s->st.held += v == DEST_HOLD;
	char lost[400];
	if (code == 0) {
		/* No reply: reply is why (a reset, a timeout, a protocol error). */
		snprintf(lost, sizeof(lost), "451 4.4.2 %s: %s", j->relay_host[0] ? j->relay_host : "next hop", reply);
		if (oj->dot_sent) {
			s->st.possible_dups++;
			log_warn("delivery", "id=%016" PRIx64 " to=<%s> relay=%s possible-duplicate: no reply after the final dot",
				 oj->m->id, oj->m->env.rcpts[idx].addr, j->relay);
		}
	}
	spool_msg_set_rcpt(s->sp, oj->m, idx, SPOOL_RCPT_PENDING, (uint16_t)(code ? code : 451), code ? reply : lost,
			   NULL, NULL);
	qmgr_job_log(j, idx, code, v == DEST_HOLD ? "held" : "deferred", code ? reply : lost);
}

static void conn_job_done(void *arg, struct smtp_out_job *oj)
{
	struct conn *cn = arg;
	qmgr_job_settle(cn->s, (struct job *)oj);
}

static void conn_ready(void *arg, struct smtp_out *out)
{
	(void)out;
	struct conn *cn = arg;
	cn->was_ready = true;
	qmgr_dest_up(cn->d);
	if (cn->probe)
		qmgr_dest_kick(cn->d);
}

static void conn_addr_failed(void *arg, struct smtp_out *out, const char *why)
{
	struct conn *cn = arg;
	char safe[600];
	qmgr_dest_log_failure(cn->d, "peer=%s failed: %s", smtp_out_peer(out), log_safe(safe, sizeof(safe), why, strlen(why)));
}

static void conn_ended(void *arg, struct smtp_out *out, enum smtp_out_end how, const char *why)
{
	(void)out;
	struct conn *cn = arg;
	struct qmgr *s = cn->s;
	struct dest *d = cn->d;
	if (cn->starting)
		d->nstarting--;
	if (!cn->detached) {
		if (cn->prev)
			cn->prev->next = cn->next;
		else
			s->conns = cn->next;
		if (cn->next)
			cn->next->prev = cn->prev;
	}
	bool probe = cn->probe, failed_early = !cn->was_ready && how != SMTP_OUT_DONE;
	/* why may be the policy's deferral (on_tls_policy): freed only once it is recorded. */
	struct tls_policy_result *tls = cn->tls;
	cfg_unref(cn->cfg);
	free(cn);
	qmgr_dest_conn_ended(d, probe, failed_early, why);
	tls_policy_result_free(tls);
}

static const struct smtp_out_cb conn_cb = {
	.next_job = conn_next_job,
	.rcpt_done = conn_rcpt_done,
	.job_done = conn_job_done,
	.dot_ready = conn_dot_ready,
	.ready = conn_ready,
	.addr_failed = conn_addr_failed,
	.ended = conn_ended,
};

/* --- starting ----------------------------------------------------------- */

static void connect_addrs(struct conn *cn, const struct smtp_out_addr *addrs, size_t n)
{
	const struct cfg *cfg = cn->cfg;
	struct smtp_out_params p = {
		.helo = cfg->hostname,
		.ssl_ctx = cn->s->ssl,
		.addrs = addrs,
		.naddrs = n,
		.probe = cn->probe,
		.sp = cn->s->sp,
		.connect_timeout_s = cfg->delivery_connect_timeout,
		.reply_timeout_s = cfg->delivery_reply_timeout,
		.final_reply_timeout_s = cfg->delivery_final_reply_timeout,
	};
	cn->out = smtp_out_start(cn->s->base, &p, &conn_cb, cn);
}

static void on_tls_policy(void *arg, struct tls_policy_result *r)
{
	struct conn *cn = arg;
	cn->tls = r;
	if (r->status == TLS_POLICY_OK && !cn->s->stopping) {
		log_debug("delivery", "dest=%s tls policy: %zu addresses", cn->d->domain, r->naddrs);
		connect_addrs(cn, r->addrs, r->naddrs);
		return;
	}
	/* A policy deferral is an outage of the destination: recorded, backed off, probed. */
	conn_ended(cn, NULL, SMTP_OUT_BUSY, r->status == TLS_POLICY_DEFER ? r->why : "stopped");
}

/*
 * Mail for a backed-up domain follows its `tls`; a bounce or delay warning
 * to a stranger's domain gets opportunistic DANE (RFC 7672), and no MTA-STS:
 * a forged sender must not make us fetch from web servers it picks.
 */
static enum tls_mode dest_tls_mode(const struct dest *d)
{
	if (!d->cd)
		return TLS_DANE;
	/*
	 * An MTA-STS policy lists the MX hosts senders may use (RFC 8461 4.1);
	 * configured primaries are not picked from the MX records, so under
	 * auto the policy cannot speak for them (an IP literal never matches
	 * it): DANE where they publish TLSA records, else may.
	 */
	if (d->cd->tls == TLS_AUTO && d->cd->nprimary)
		return TLS_DANE;
	return d->cd->tls;
}

static void on_route(void *arg, const struct route_result *r)
{
	struct conn *cn = arg;
	struct qmgr *s = cn->s;
	struct dest *d = cn->d;
	if (r->status == ROUTE_OK && !s->stopping) {
		tls_policy_apply(s->tls_policy, d->domain, dest_tls_mode(d), r->secure, r->addrs, r->naddrs, on_tls_policy,
				 cn);
		return;
	}
	char reply[400];
	if (r->status == ROUTE_NXDOMAIN)
		snprintf(reply, sizeof(reply), "550 5.1.2 Host or domain name not found: %s", r->why);
	else if (r->status == ROUTE_NULLMX)
		snprintf(reply, sizeof(reply), "556 5.1.10 Recipient address has null MX: %s", r->why);
	else
		reply[0] = '\0';
	if (r->status == ROUTE_LOOP)
		log_err("delivery", "dest=%s mail-loop: %s", d->domain, r->why);
	/* A permanent answer is no outage: bounce what is queued, no backoff, no probe. */
	if (reply[0] && !s->stopping)
		qmgr_dest_refused(d, reply);
	conn_ended(cn, NULL, reply[0] ? SMTP_OUT_DONE : SMTP_OUT_UNREACHABLE, r->why[0] ? r->why : "stopped");
}

void qmgr_conn_start(struct dest *d, bool probe)
{
	struct qmgr *s = d->s;
	struct conn *cn = xcalloc(1, sizeof(*cn));
	cn->s = s;
	cn->d = d;
	cn->cfg = cfg_ref(s->cfg);
	cn->gen = d->gen;
	cn->probe = probe;
	cn->starting = !probe;
	if (probe)
		d->probing = true;
	else {
		d->nconn++;
		d->nstarting++;
	}
	s->nconn++;
	cn->next = s->conns;
	if (s->conns)
		s->conns->prev = cn;
	s->conns = cn;
	route_resolve(s->route, d->domain, d->cd, on_route, cn);
}

void qmgr_conn_stop_all(struct qmgr *s)
{
	while (s->conns) {
		struct conn *cn = s->conns;
		if (cn->out) {
			smtp_out_abort(cn->out);
		} else {
			/* Still resolving: the DNS callback ends it when dns_free cancels. */
			s->conns = cn->next;
			if (cn->next)
				cn->next->prev = NULL;
			cn->prev = cn->next = NULL;
			cn->detached = true;
		}
	}
}
