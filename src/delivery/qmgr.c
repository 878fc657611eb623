/*
 * qmgr: see qmgr.h. This file is the scheduler. It owns the destinations
 * (each with its policy, dest.c, and its queues of jobs), the per-message
 * records, the server-wide connection slots and the one-second tick (due
 * retries, expiry, delay warnings, the guard's hold, idle destinations).
 * qmgr_conn.c runs the connections it starts and reports back through the
 * qmgr_dest_* and qmgr_job_* functions; qmgr_dsn.c writes the DSNs.
 *
 * Invariants:
 * - every job is on exactly one of its destination's lists (ready,
 *   waiting) or held by one connection, until qmgr_job_finished frees it;
 * - qmsg.jobs counts the jobs of a message; the message is done (and its
 *   record freed) when it reaches 0 with every recipient final;
 * - recipient state changes only through the spool's setters, so what
 *   `queue list` shows is what is durable;
 * - s->nconn <= max_outbound_connections, and a destination is on the slot
 *   queue (once) only while every slot is taken: slots are handed out in
 *   turn, one connection per destination per turn.
 * Main thread only; out of memory is fatal; spool write errors are the
 * spool's to report (the in-memory state is already the new one).
 */
#include "qmgr_int.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/standby.h"
#include "mta_sts.h"

#define DSN_RETENTION (5 * 86400)

/* --- lists ------------------------------------------------------------- */

/* Appends: new messages come in commit order, which is their arrival order. */
static void jlist_append(struct jlist *l, struct job *j)
{
	j->next = NULL;
	if (l->tail)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
	l->n++;
}

/* Inserts in id order: retried jobs are among the oldest, so the walk is short. */
static void jlist_insert(struct jlist *l, struct job *j)
{
	struct job **p = &l->head;
	if (l->tail && l->tail->out.m->id <= j->out.m->id) {
		jlist_append(l, j);
		return;
	}
	while (*p && (*p)->out.m->id <= j->out.m->id)
		p = &(*p)->next;
	j->next = *p;
	*p = j;
	if (!j->next)
		l->tail = j;
	l->n++;
}

static struct job *jlist_pop(struct jlist *l)
{
	struct job *j = l->head;
	if (!j)
		return NULL;
	l->head = j->next;
	if (!l->head)
		l->tail = NULL;
	j->next = NULL;
	l->n--;
	return j;
}

/* Unlinks *p (whose predecessor is prev, or NULL at the head) from l. */
static struct job *jlist_unlink(struct jlist *l, struct job **p, struct job *prev)
{
	struct job *j = *p;
	*p = j->next;
	if (l->tail == j)
		l->tail = prev;
	j->next = NULL;
	l->n--;
	return j;
}

/* Moves waiting jobs to the ready queue: all of them, or those due; only held ones if asked. */
static void release_waiting(struct dest *d, int64_t now, bool all, bool only_held)
{
	struct job **p = &d->waiting.head, *prev = NULL;
	while (*p) {
		struct job *j = *p;
		if ((all || j->not_before <= now) && (!only_held || j->held) && !qmgr_job_on_hold(j)) {
			jlist_unlink(&d->waiting, p, prev);
			j->held = false;
			j->not_before = 0;
			jlist_insert(&d->ready, j);
		} else {
			prev = j;
			p = &j->next;
		}
	}
}

/* The guard let go: what it held is tried now, whatever its own retry time says. */
static void release_held(struct dest *d)
{
	release_waiting(d, 0, true, true);
	qmgr_dest_kick(d);
}

/* Takes j off whichever of its destination's lists holds it. */
bool qmgr_job_unlist(struct job *j)
{
	struct jlist *lists[] = {&j->d->ready, &j->d->waiting};
	for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
		struct job **p = &lists[i]->head, *prev = NULL;
		for (; *p; prev = *p, p = &(*p)->next)
			if (*p == j) {
				jlist_unlink(lists[i], p, prev);
				return true;
			}
	}
	return false;
}

static void start_probe(struct dest *d);

void qmgr_dest_requeue(struct dest *d, bool flush)
{
	struct job **p = &d->ready.head, *prev = NULL;
	while (*p) {
		struct job *j = *p;
		if (qmgr_job_on_hold(j)) {
			jlist_unlink(&d->ready, p, prev);
			jlist_insert(&d->waiting, j);
		} else {
			prev = j;
			p = &j->next;
		}
	}
	if (!flush || d->s->stopping)
		return;
	release_waiting(d, 0, true, false);
	dest_retry_now(&d->pol);
	if (d->pol.down && d->ready.head)
		start_probe(d); /* in an outage one probe finds out; it flushes the rest when it answers */
	else
		qmgr_dest_kick(d);
}

/* --- connection slots -------------------------------------------------- */

static bool slot_free(const struct qmgr *s)
{
	return s->nconn < s->cfg->max_outbound_connections;
}

static void slot_wait(struct dest *d)
{
	struct qmgr *s = d->s;
	if (d->slot_queued)
		return;
	d->slot_queued = true;
	d->next_slot = NULL;
	if (s->slot_tail)
		s->slot_tail->next_slot = d;
	else
		s->slot_head = d;
	s->slot_tail = d;
}

static struct dest *slot_pop(struct qmgr *s)
{
	struct dest *d = s->slot_head;
	s->slot_head = d->next_slot;
	if (!s->slot_head)
		s->slot_tail = NULL;
	d->next_slot = NULL;
	d->slot_queued = false;
	return d;
}

/* During an outage one connection at a time finds out whether it is over. */
static bool wants_conn(const struct dest *d)
{
	const struct qmgr *s = d->s;
	uint32_t most = d->pol.down ? 1 : s->cfg->max_connections_per_destination;
	return !s->stopping && !d->held && !d->drill_hold && dest_may_connect(&d->pol, clock_mono_ms()) && d->nconn < most &&
	       d->ready.n > d->nstarting;
}

static bool wants_probe(const struct dest *d)
{
	return !d->s->stopping && !d->held && d->want_probe && !d->probing && d->pol.down &&
	       (d->ready.head || d->waiting.head);
}

/* Hands free slots to the destinations waiting for one, a connection each per turn. */
static void slots_grant(struct qmgr *s)
{
	while (slot_free(s) && s->slot_head) {
		struct dest *d = slot_pop(s);
		if (wants_probe(d)) {
			d->want_probe = false;
			qmgr_conn_start(d, true);
		} else if (wants_conn(d)) {
			qmgr_conn_start(d, false);
		} else {
			continue;
		}
		if (wants_probe(d) || wants_conn(d))
			slot_wait(d);
	}
}

struct job *qmgr_dest_take_job(struct dest *d)
{
	return jlist_pop(&d->ready);
}

void qmgr_dest_kick(struct dest *d)
{
	struct qmgr *s = d->s;
	slots_grant(s); /* those already waiting go first */
	while (wants_conn(d)) {
		if (!slot_free(s)) {
			slot_wait(d);
			return;
		}
		qmgr_conn_start(d, false);
	}
}

static void start_probe(struct dest *d)
{
	if (d->probing || d->held)
		return;
	slots_grant(d->s);
	if (!slot_free(d->s)) {
		d->want_probe = true;
		slot_wait(d);
		return;
	}
	d->want_probe = false;
	qmgr_conn_start(d, true); /* even beside a connection stuck waiting for a greeting */
}

/* --- destinations ------------------------------------------------------ */

static void on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dest *d = arg;
	if (!d->pol.down || (!d->ready.head && !d->waiting.head)) {
		event_del(d->probe_ev);
		return;
	}
	start_probe(d);
}

static struct dest *get_dest(struct qmgr *s, const char *domain)
{
	struct dest *d = htab_get_str(&s->dests, domain, strlen(domain));
	if (d)
		return d;
	const struct cfg *cfg = s->cfg;
	d = xcalloc(1, sizeof(*d));
	d->s = s;
	d->domain = xstrdup(domain);
	d->cd = cfg_find_domain(cfg, domain);
	if (d->cd)
		d->state_since = s->domain_since[d->cd - cfg->domains];
	d->held = qmgr_domain_held(s, d->domain);
	struct dest_params p = {
		.retry_min_s = cfg->retry_min,
		.retry_max_s = cfg->retry_max,
		.guard_percent = cfg->bounce_guard,
		.guard_hold_s = cfg->bounce_guard_hold,
	};
	dest_policy_init(&d->pol, &p);
	d->probe_ev = event_new(s->base, -1, EV_PERSIST, on_probe_timer, d);
	htab_put_str(&s->dests, domain, strlen(domain), d);
	d->next_dest = s->dest_list;
	s->dest_list = d;
	return d;
}

struct dest *qmgr_dest_get(struct qmgr *s, const char *domain)
{
	return get_dest(s, domain);
}

void qmgr_dest_log_failure(struct dest *d, const char *f, ...)
{
	uint32_t suppressed;
	if (!dest_log_allowed(&d->pol, clock_mono_ms(), &suppressed))
		return;
	if (suppressed)
		log_info("delivery", "dest=%s suppressed=%" PRIu32 " failure lines (at most %d in %ds are logged)",
			 d->domain, suppressed, DEST_LOG_BURST, DEST_LOG_WINDOW_MS / 1000);
	char line[1024];
	va_list ap;
	va_start(ap, f);
	vsnprintf(line, sizeof(line), f, ap);
	va_end(ap);
	log_info("delivery", "%s", line);
}

/* Each ready job keeps its retry state across a restart, and its recipients say why they wait. */
static void record_deferral(struct dest *d, const char *reply, int64_t next)
{
	struct spool *sp = d->s->sp;
	for (struct job *j = d->ready.head; j; j = j->next) {
		struct spool_meta meta = j->out.m->meta;
		meta.attempts++;
		meta.next_attempt = next;
		spool_msg_set_meta(sp, j->out.m, &meta, NULL, NULL);
		for (uint32_t k = 0; k < j->out.n; k++) {
			const struct spool_rcpt *r = &j->out.m->env.rcpts[j->out.rcpts[k]];
			if (!r->reply || strcmp(r->reply, reply) != 0)
				spool_msg_set_rcpt(sp, j->out.m, j->out.rcpts[k], SPOOL_RCPT_PENDING, (uint16_t)atoi(reply),
						   reply, NULL, NULL);
		}
	}
}

void qmgr_dest_failed(struct dest *d, const char *why, bool probe)
{
	bool was_down = d->pol.down;
	if (!dest_attempt_failed(&d->pol, clock_mono_ms()))
		return;
	d->s->st.deferred++;
	char reply[400];
	if (strlen(why) > 4 && why[0] >= '4' && why[0] <= '5' && why[3] == ' ')
		snprintf(reply, sizeof(reply), "%s", why);
	else
		snprintf(reply, sizeof(reply), "451 4.4.1 %s", why); /* X.4.1: no answer from host */
	record_deferral(d, reply, clock_wall_s() + d->pol.backoff_s);
	char safe[400];
	log_info("delivery", "dest=%s deferred=\"%s\" queued=%zu retry_in=%" PRId64 "s probe=%s", d->domain,
		 log_safe(safe, sizeof(safe), why, strlen(why)), d->ready.n, d->pol.backoff_s, probe ? "yes" : "no");
	if (probe && !event_pending(d->probe_ev, EV_TIMEOUT, NULL))
		event_add(d->probe_ev, &(struct timeval){(time_t)d->s->cfg->probe_interval, 0});
	if (!was_down && d->pol.down)
		qmgr_emit_dest(d, QMGR_EV_DOWN, reply);
}

void qmgr_dest_up(struct dest *d)
{
	if (d->standby)
		standby_set(d->s->standby, d->domain, true, NULL);
	if (!d->state_since)
		d->state_since = clock_wall_s(); /* up since the first session we know of */
	if (!dest_session_up(&d->pol))
		return;
	qmgr_emit_dest(d, QMGR_EV_UP, NULL);
	event_del(d->probe_ev);
	d->want_probe = false;
	release_waiting(d, 0, true, false);
	log_info("delivery", "dest=%s is back; flushing queued=%zu", d->domain, d->ready.n);
}

enum dest_verdict qmgr_dest_judge(struct dest *d, int code)
{
	enum dest_guard_change ch;
	enum dest_verdict v = dest_judge(&d->pol, code, clock_wall_s(), &ch);
	switch (ch) {
	case DEST_GUARD_ON:
		log_err("delivery",
			"dest=%s bounce-guard=on refused=%" PRIu32 " of=%" PRIu32
			" after recovery: holding its mail as deferred, no bounces, for up to %" PRId64 "s",
			d->domain, d->pol.win_5xx, d->pol.win_total, d->pol.p.guard_hold_s);
		qmgr_emit_dest(d, QMGR_EV_GUARD_ON, "most recipients were refused after a recovery");
		break;
	case DEST_GUARD_OFF:
		log_warn("delivery", "dest=%s bounce-guard=off reason=\"the primary accepts mail again\"", d->domain);
		qmgr_emit_dest(d, QMGR_EV_GUARD_OFF, "the primary accepts mail again");
		release_held(d);
		break;
	case DEST_GUARD_RELEASE:
		release_held(d);
		break;
	case DEST_GUARD_SAME:
		break;
	}
	return v;
}

void qmgr_dest_conn_ended(struct dest *d, bool probe, bool failed_early, const char *why)
{
	struct qmgr *s = d->s;
	if (probe)
		d->probing = false;
	else
		d->nconn--;
	s->nconn--;
	if (s->stopping)
		return;
	if (failed_early && d->standby)
		standby_set(s->standby, d->domain, false, why);
	if (failed_early)
		qmgr_dest_failed(d, why, true); /* every failure before a session backs off */
	if (dest_window_idle(&d->pol, d->ready.head || d->nconn))
		release_held(d); /* too few to judge: retried now, and bounced if refused again */
	slots_grant(s);
	qmgr_dest_kick(d);
}

/* Nothing queued, nothing connected, nothing to remember: the state can go. */
static bool dest_is_idle(const struct dest *d)
{
	return !d->standby && !d->drill_hold && !d->ready.head && !d->waiting.head && d->nconn == 0 && !d->probing &&
	       !d->slot_queued && dest_is_settled(&d->pol);
}

static void dest_free(struct qmgr *s, struct dest *d)
{
	qmgr_view_forget(d);
	htab_del_str(&s->dests, d->domain, strlen(d->domain));
	event_free(d->probe_ev);
	if (d->standby_ev)
		event_free(d->standby_ev);
	free(d->domain);
	free(d);
}

/* --- jobs -------------------------------------------------------------- */

static void free_res(struct job *j)
{
	if (j->res)
		for (uint32_t k = 0; k < j->out.n; k++)
			free(j->res[k].reply);
	free(j->res);
	j->res = NULL;
}

void qmgr_job_begin(struct job *j, const struct smtp_out *out)
{
	const char *version = out ? smtp_out_tls(out) : NULL;
	snprintf(j->relay, sizeof(j->relay), "%s", out ? smtp_out_peer(out) : "none");
	snprintf(j->relay_host, sizeof(j->relay_host), "%s", out ? smtp_out_peer_host(out) : "");
	snprintf(j->tls, sizeof(j->tls), "%s", version ? version : "");
	snprintf(j->tls_label, sizeof(j->tls_label), "%s", out ? smtp_out_tls_label(out) : "none");
	j->out.dot_sent = false;
	free_res(j);
	j->res = xcalloc(j->out.n ? j->out.n : 1, sizeof(*j->res));
}

void qmgr_job_log(const struct job *j, uint32_t idx, int code, const char *status, const char *reply)
{
	char id[17], safe[300];
	spool_id_str(j->out.m->id, id);
	log_info("delivery", "id=%s to=<%s> relay=%s code=%d status=%s tls=%s%s%s reply=\"%s\"", id,
		 j->out.m->env.rcpts[idx].addr, j->relay, code, status, j->tls_label[0] ? j->tls_label : "none",
		 j->tls[0] ? " tls_version=" : "", j->tls,
		 log_safe(safe, sizeof(safe), reply ? reply : "", reply ? strlen(reply) : 0));
	enum qmgr_event_kind kind = strcmp(status, "sent") == 0	 ? QMGR_EV_DELIVERED
				    : strcmp(status, "bounced") == 0 ? QMGR_EV_BOUNCED
								     : QMGR_EV_DEFERRED;
	qmgr_emit_rcpt(j, idx, kind, code, reply);
}

static void job_defer(struct qmgr *s, struct job *j)
{
	const struct cfg *cfg = s->cfg;
	struct spool_meta meta = j->out.m->meta;
	int64_t delay = cfg->retry_min;
	for (uint32_t i = 0; i < meta.attempts && delay < cfg->retry_max; i++)
		delay *= 2;
	if (delay > cfg->retry_max)
		delay = cfg->retry_max;
	meta.attempts++;
	meta.next_attempt = clock_wall_s() + delay;
	meta.flags &= ~SPOOL_META_MAYBE_DUP;
	spool_msg_set_meta(s->sp, j->out.m, &meta, NULL, NULL);
	if (j->held && !dest_holds_bounces(&j->d->pol) && !qmgr_job_on_hold(j)) {
		/* The guard let go while this attempt was under way: no reason to wait. */
		j->held = false;
		jlist_insert(&j->d->ready, j);
		return;
	}
	j->not_before = meta.next_attempt;
	jlist_insert(&j->d->waiting, j);
}

void qmgr_job_settle(struct qmgr *s, struct job *j)
{
	struct smtp_out_job *oj = &j->out;
	qmgr_job_drop_marker(j);
	struct qmgr_dsn_rcpt *failed = xcalloc(oj->n ? oj->n : 1, sizeof(*failed));
	uint32_t nfailed = 0, npending = 0;
	for (uint32_t k = 0; k < oj->n; k++) {
		const struct job_rcpt *r = &j->res[k];
		if (r->outcome == OUT_FAILED)
			failed[nfailed++] = (struct qmgr_dsn_rcpt){oj->rcpts[k], r->code, r->reply};
	}
	if (nfailed) {
		/* The bounce is queued before the state that says it was: a crash can repeat it, never lose it. */
		struct qmgr_dsn_req req = {.action = DSN_FAILED, .remote_mta = j->relay_host[0] ? j->relay_host : NULL};
		if (!(oj->m->meta.flags & SPOOL_META_DELETED)) /* deleted during the attempt: no bounce (qmgr_ctl.c) */
			qmgr_send_dsn(s, oj->m, failed, nfailed, &req);
		for (uint32_t i = 0; i < nfailed; i++)
			spool_msg_set_rcpt(s->sp, oj->m, failed[i].idx, SPOOL_RCPT_FAILED, failed[i].code, failed[i].reply,
					   NULL, NULL);
		s->st.bounced += nfailed;
	}
	free(failed);
	for (uint32_t k = 0; k < oj->n; k++)
		if (j->res[k].outcome != OUT_SENT && j->res[k].outcome != OUT_FAILED)
			oj->rcpts[npending++] = oj->rcpts[k];
	free_res(j);
	oj->n = npending;
	if (npending && (oj->m->meta.flags & SPOOL_META_DELETED))
		qmgr_job_deleted(s, j); /* deleted during this attempt: what is left goes now */
	else if (npending)
		job_defer(s, j);
	else
		qmgr_job_finished(s, j);
}

void qmgr_dest_refused(struct dest *d, const char *reply)
{
	struct qmgr *s = d->s;
	uint16_t code = (uint16_t)atoi(reply);
	release_waiting(d, 0, true, false);
	struct job *j;
	while ((j = jlist_pop(&d->ready)) != NULL) {
		qmgr_job_begin(j, NULL);
		for (uint32_t k = 0; k < j->out.n; k++) {
			j->res[k] = (struct job_rcpt){OUT_FAILED, code, xstrdup(reply)};
			qmgr_job_log(j, j->out.rcpts[k], code, "bounced", reply);
		}
		qmgr_job_settle(s, j);
	}
}

static void msg_maybe_done(struct qmgr *s, struct qmsg *qm)
{
	if (qm->jobs > 0)
		return;
	struct spool_msg *m = qm->m;
	m->user = NULL;
	free(qm);
	for (uint32_t i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpts[i].state == SPOOL_RCPT_PENDING)
			return;
	char id[17];
	spool_id_str(m->id, id);
	log_info("delivery", "id=%s done", id);
	spool_msg_done(s->sp, m, NULL, NULL);
}

static void job_free(struct job *j)
{
	qmgr_job_drop_marker(j);
	free_res(j);
	free(j->out.rcpts);
	free(j);
}

void qmgr_job_finished(struct qmgr *s, struct job *j)
{
	struct qmsg *qm = j->qm;
	qmgr_view_drop_job(j->d, j);
	job_free(j);
	qm->jobs--;
	struct spool_msg *m = qm->m;
	if (qm->jobs > 0 && (m->meta.flags & SPOOL_META_MAYBE_DUP)) {
		struct spool_meta meta = m->meta; /* other destinations still to go: this attempt is settled */
		meta.flags &= ~SPOOL_META_MAYBE_DUP;
		spool_msg_set_meta(s->sp, m, &meta, NULL, NULL);
	}
	msg_maybe_done(s, qm);
}

static const char *rcpt_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : "";
}

static struct job *new_job(struct qmsg *qm, struct dest *d, const uint32_t *idx, uint32_t n)
{
	struct spool_msg *m = qm->m;
	struct job *j = xcalloc(1, sizeof(*j));
	j->qm = qm;
	j->d = d;
	j->out.m = m;
	j->out.rcpts = xcalloc(n, sizeof(*j->out.rcpts));
	memcpy(j->out.rcpts, idx, n * sizeof(*idx));
	j->out.n = n;
	int64_t retention = d->cd ? d->cd->retention : DSN_RETENTION;
	j->expire_at = m->env.arrival + retention + m->meta.extend_s;
	j->warn_at = d->cd && d->cd->warn_after && !(m->env.flags & SPOOL_ENV_IS_DSN) ? m->env.arrival + d->cd->warn_after
											: 0;
	j->not_before = m->meta.next_attempt;
	qm->jobs++;
	qmgr_view_add_job(d, j);
	return j;
}

/* Splits a message's pending recipients into one job per destination. */
void qmgr_add_msg(void *arg, struct spool_msg *m)
{
	struct qmgr *s = arg;
	if (m->meta.flags & SPOOL_META_DELETED) {
		qmgr_msg_delete_now(s, m); /* deleted, and the daemon stopped before it was gone */
		return;
	}
	int64_t now = clock_wall_s();
	uint32_t *idx = xcalloc(m->env.nrcpt ? m->env.nrcpt : 1, sizeof(*idx));
	bool *taken = xcalloc(m->env.nrcpt ? m->env.nrcpt : 1, sizeof(*taken));
	struct qmsg *qm = xcalloc(1, sizeof(*qm));
	qm->m = m;
	m->user = qm;
	if (m->meta.flags & SPOOL_META_MAYBE_DUP) {
		s->st.possible_dups++;
		log_warn("delivery", "id=%016" PRIx64 " was being delivered at a crash: retrying, possible-duplicate", m->id);
	}
	if (m->env.quarantine && !(m->meta.flags & SPOOL_META_RELEASED)) {
		/* held by a milter: never delivered, never expired; it stays until an administrator acts */
		log_warn("delivery", "id=%016" PRIx64 " quarantined=\"%s\": held, not delivered", m->id, m->env.quarantine);
		free(idx);
		free(taken);
		msg_maybe_done(s, qm); /* no job: frees qm, keeps the message */
		return;
	}
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		if (taken[i] || m->env.rcpts[i].state != SPOOL_RCPT_PENDING)
			continue;
		char domain[256];
		snprintf(domain, sizeof(domain), "%s", rcpt_domain(m->env.rcpts[i].addr));
		ascii_lower(domain, strlen(domain));
		uint32_t n = 0;
		for (uint32_t k = i; k < m->env.nrcpt; k++)
			if (!taken[k] && m->env.rcpts[k].state == SPOOL_RCPT_PENDING &&
			    strcasecmp(rcpt_domain(m->env.rcpts[k].addr), domain) == 0) {
				taken[k] = true;
				idx[n++] = k;
			}
		struct dest *d = get_dest(s, domain);
		struct job *j = new_job(qm, d, idx, n);
		jlist_append(j->not_before > now || qmgr_job_on_hold(j) ? &d->waiting : &d->ready, j);
		qmgr_emit_rcpt(j, idx[0], QMGR_EV_QUEUED, 0, NULL);
		qmgr_dest_kick(d);
	}
	free(idx);
	free(taken);
	msg_maybe_done(s, qm);
}

/* --- the tick: due retries, expiry, warnings, guard holds --------------- */

static void age_list(struct dest *d, struct jlist *l, int64_t now)
{
	struct job **p = &l->head, *prev = NULL;
	while (*p) {
		struct job *j = *p;
		if (qmgr_job_on_hold(j) || now < j->expire_at) {
			if (!qmgr_job_on_hold(j))
				qmgr_maybe_warn(d->s, j, now);
			prev = j;
			p = &j->next;
			continue;
		}
		jlist_unlink(l, p, prev);
		qmgr_expire_job(d->s, j);
	}
}

static void tick_dest(struct dest *d, int64_t now)
{
	age_list(d, &d->ready, now);
	age_list(d, &d->waiting, now);
	release_waiting(d, now, false, false);
	if (dest_guard_expired(&d->pol, now)) {
		log_warn("delivery", "dest=%s bounce-guard=off reason=\"bounce_guard_hold elapsed\"", d->domain);
		qmgr_emit_dest(d, QMGR_EV_GUARD_OFF, "bounce_guard_hold elapsed");
		release_held(d);
	}
	if (d->ready.head)
		qmgr_dest_kick(d);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct qmgr *s = arg;
	int64_t now = clock_wall_s();
	for (struct dest **p = &s->dest_list; *p;) {
		struct dest *d = *p;
		tick_dest(d, now);
		if (dest_is_idle(d)) {
			*p = d->next_dest; /* every bounce's sender domain is a destination: do not keep them all */
			dest_free(s, d);
		} else {
			p = &d->next_dest;
		}
	}
}

/* --- standby mode ------------------------------------------------------ */

/*
 * accept = when-primary-down: the primary is probed every probe_interval
 * whether anything is queued or not, so the SMTP server knows when to send
 * mail there (451 4.7.0) and when to take it. A connection already open or
 * starting will tell as well as a probe: none is added beside it.
 */
static void on_standby_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dest *d = arg;
	if (d->s->stopping || d->probing || d->nconn)
		return;
	start_probe(d);
}

static void start_standby(struct qmgr *s, const struct cfg_domain *cd)
{
	struct dest *d = get_dest(s, cd->name);
	d->standby = true;
	d->standby_ev = event_new(s->base, -1, EV_PERSIST, on_standby_timer, d);
	event_add(d->standby_ev, &(struct timeval){(time_t)s->cfg->probe_interval, 0});
	event_active(d->standby_ev, EV_TIMEOUT, 0); /* the first probe at once */
	log_info("standby", "domain=%s accept=when-primary-down: probing its primary every %" PRId64 "s", cd->name,
		 s->cfg->probe_interval);
}

/* --- lifetime ---------------------------------------------------------- */

int qmgr_start(const struct qmgr_deps *deps, struct qmgr **out)
{
	struct qmgr *s = xcalloc(1, sizeof(*s));
	s->cfg = cfg_ref(deps->cfg);
	s->base = deps->base;
	s->sp = deps->sp;
	s->dns = deps->dns;
	s->ssl = deps->tls;
	s->learned = deps->learned;
	s->route = route_new(s->cfg, s->dns);
	s->domain_since = xcalloc(s->cfg->ndomains ? s->cfg->ndomains : 1, sizeof(*s->domain_since));
	int cache = spool_open_subdir(s->sp, "mta-sts");
	if (cache < 0)
		log_warn("delivery", "cannot open SPOOL/mta-sts (%s): MTA-STS policies are kept in memory only",
			 strerror(-cache));
	s->mta_sts = mta_sts_new(s->base, s->dns, cache, s->cfg->tls_ca_file);
	if (!s->mta_sts)
		log_warn("delivery", "MTA-STS is unavailable: domains with tls = mta-sts or auto get DANE or may");
	s->tls_policy = tls_policy_new(s->base, s->dns, s->mta_sts);
	s->tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
	event_add(s->tick, &(struct timeval){1, 0});
	qmgr_ctl_load(s);
	spool_each_msg(s->sp, qmgr_add_msg, s);
	spool_set_msg_hook(s->sp, qmgr_add_msg, s);
	s->standby = deps->standby;
	for (size_t i = 0; i < s->cfg->ndomains; i++)
		if (s->cfg->domains[i].accept == ACCEPT_WHEN_PRIMARY_DOWN)
			start_standby(s, &s->cfg->domains[i]);
	*out = s;
	return 0;
}

void qmgr_stop(struct qmgr *s)
{
	s->stopping = true;
	spool_set_msg_hook(s->sp, NULL, NULL);
	for (struct dest *d = s->dest_list; d; d = d->next_dest)
		if (d->standby_ev)
			event_del(d->standby_ev);
	while (s->slot_head)
		slot_pop(s);
	qmgr_conn_stop_all(s);
	/* Connections still deciding their TLS end here (cancelled); lookups under them end with the resolver. */
	tls_policy_free(s->tls_policy);
	s->tls_policy = NULL;
	mta_sts_free(s->mta_sts);
	s->mta_sts = NULL;
}

/*
 * A reload: every destination is bound to its section in cfg, or to none
 * when the section is gone (its queued mail then goes by MX lookup, with
 * the retention it was given on arrival). The retry and bounce-guard
 * bounds are updated in place; a destination's state (down, backoff,
 * guard) is kept. Connections under way keep the configuration they
 * started with (their own reference); where the routing moved (another
 * primary, or none), they finish the message in hand and take no more.
 */
/* domain_since is parallel to cfg->domains: carried over by name, since a reload may add, drop or reorder domains. */
static void remap_domain_since(struct qmgr *s, const struct cfg *old, const struct cfg *cfg)
{
	int64_t *since = xcalloc(cfg->ndomains ? cfg->ndomains : 1, sizeof(*since));
	for (size_t i = 0; i < cfg->ndomains; i++) {
		const struct cfg_domain *was = cfg_find_domain(old, cfg->domains[i].name);
		if (was)
			since[i] = s->domain_since[was - old->domains];
	}
	free(s->domain_since);
	s->domain_since = since;
}

void qmgr_set_cfg(struct qmgr *s, const struct cfg *cfg)
{
	const struct cfg *old = s->cfg;
	s->cfg = cfg_ref(cfg);
	remap_domain_since(s, old, cfg);
	for (struct dest *d = s->dest_list; d; d = d->next_dest) {
		const struct cfg_domain *cd = cfg_find_domain(cfg, d->domain);
		if (!d->cd != !cd || (cd && cfg_domain_key_differs(d->cd, cd, "primary")))
			d->gen++;
		d->cd = cd;
		d->pol.p = (struct dest_params){
			.retry_min_s = cfg->retry_min,
			.retry_max_s = cfg->retry_max,
			.guard_percent = cfg->bounce_guard,
			.guard_hold_s = cfg->bounce_guard_hold,
		};
	}
	cfg_unref(old);
}

bool qmgr_idle(const struct qmgr *s)
{
	return s->conns == NULL;
}

void qmgr_get_stats(const struct qmgr *s, struct qmgr_stats *st)
{
	*st = s->st;
}

static void free_jobs(struct job *j)
{
	while (j) {
		struct job *next = j->next;
		struct qmsg *qm = j->qm;
		job_free(j);
		if (--qm->jobs == 0) {
			qm->m->user = NULL;
			free(qm);
		}
		j = next;
	}
}

void qmgr_free(struct qmgr *s)
{
	if (!s)
		return;
	s->stopping = true;
	route_free(s->route); /* the daemon freed the resolver first: its cancelled lookups saw stopping */
	for (struct dest *d = s->dest_list, *next; d; d = next) {
		next = d->next_dest;
		free_jobs(d->ready.head);
		free_jobs(d->waiting.head);
		dest_free(s, d);
	}
	htab_free(&s->dests);
	free(s->domain_since);
	free(s->held);
	event_free(s->tick);
	cfg_unref(s->cfg);
	free(s);
}
