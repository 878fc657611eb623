/*
 * qmgr: see sched.h. Owns the destinations, their job queues and the
 * outbound connections. Each outcome is written to the spool as soon as the
 * next hop's reply is read: a delivered recipient is recorded at once; a
 * refused one only after its bounce has been queued (qmgr_dsn.c), so a
 * crash never loses a bounce; a deferred one keeps its reply for the
 * queue listing and the eventual DSN. Main thread only.
 */
#include "qmgr_int.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define GUARD_MIN_SAMPLE 10
#define DSN_RETENTION (5 * 86400)

static void dest_kick(struct dest *d);
static void start_conn(struct dest *d, bool probe);

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
void jlist_insert(struct jlist *l, struct job *j)
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

struct job *jlist_pop(struct jlist *l)
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

static void make_ready(struct dest *d, struct job *j)
{
	jlist_insert(&d->ready, j);
}

/* Moves waiting jobs to the ready queue: all of them (flush) or those due. */
static void release_waiting(struct dest *d, int64_t now, bool all, bool only_held)
{
	struct job **p = &d->waiting.head, *prev = NULL;
	while (*p) {
		struct job *j = *p;
		if ((all || j->not_before <= now) && (!only_held || j->held)) {
			jlist_unlink(&d->waiting, p, prev);
			j->held = false;
			j->not_before = 0;
			make_ready(d, j);
		} else {
			prev = j;
			p = &j->next;
		}
	}
}

/* --- destinations ------------------------------------------------------ */

static void on_probe_timer(evutil_socket_t fd, short what, void *arg);

static struct dest *get_dest(struct qmgr *s, const char *domain)
{
	struct dest *d = htab_get_str(&s->dests, domain, strlen(domain));
	if (d)
		return d;
	d = xcalloc(1, sizeof(*d));
	d->s = s;
	d->domain = xstrdup(domain);
	d->cd = cfg_find_domain(s->cfg, domain);
	d->window = s->cfg->bounce_guard > 0;
	d->probe_ev = event_new(s->base, -1, EV_PERSIST, on_probe_timer, d);
	htab_put_str(&s->dests, domain, strlen(domain), d);
	d->next_dest = s->dest_list;
	s->dest_list = d;
	return d;
}

static void dest_failed(struct dest *d, const char *why, bool probe)
{
	const struct cfg *cfg = d->s->cfg;
	d->down = true;
	d->backoff_s = d->backoff_s ? d->backoff_s * 2 : cfg->retry_min;
	if (d->backoff_s > cfg->retry_max)
		d->backoff_s = cfg->retry_max;
	d->next_try_ms = clock_mono_ms() + d->backoff_s * 1000;
	d->s->st.deferred++;
	/*
	 * Each queued message keeps its retry state across a restart, and its
	 * recipients say why they wait (queue list, and a DSN if they expire).
	 */
	char reply[400];
	if (strlen(why) > 4 && why[0] >= '4' && why[0] <= '5' && why[3] == ' ')
		snprintf(reply, sizeof(reply), "%s", why);
	else
		snprintf(reply, sizeof(reply), "451 4.4.1 %s", why); /* X.4.1: no answer from host */
	int64_t next = clock_wall_s() + d->backoff_s;
	for (struct job *j = d->ready.head; j; j = j->next) {
		struct spool_meta meta = j->out.m->meta;
		meta.attempts++;
		meta.next_attempt = next;
		spool_msg_set_meta(d->s->sp, j->out.m, &meta, NULL, NULL);
		for (uint32_t k = 0; k < j->out.n; k++) {
			const struct spool_rcpt *r = &j->out.m->env.rcpts[j->out.rcpts[k]];
			if (!r->reply || strcmp(r->reply, reply) != 0)
				spool_msg_set_rcpt(d->s->sp, j->out.m, j->out.rcpts[k], SPOOL_RCPT_PENDING,
						   (uint16_t)atoi(reply), reply, NULL, NULL);
		}
	}
	log_info("delivery", "dest=%s deferred=\"%s\" queued=%zu retry_in=%" PRId64 "s probe=%s", d->domain, why,
		 d->ready.n, d->backoff_s, probe ? "yes" : "no");
	if (probe && !event_pending(d->probe_ev, EV_TIMEOUT, NULL))
		event_add(d->probe_ev, &(struct timeval){cfg->probe_interval, 0});
}

static void release_held(struct dest *d)
{
	release_waiting(d, 0, false, true);
}

static void guard_off(struct dest *d, const char *why)
{
	if (!d->guard)
		return;
	d->guard = false;
	log_warn("delivery", "dest=%s bounce-guard=off reason=\"%s\"", d->domain, why);
	release_held(d);
}

/* The destination answered: end the outage and send everything now. */
static void dest_up(struct dest *d)
{
	bool was_down = d->down || !d->seen_up;
	d->seen_up = true;
	if (!d->down)
		return;
	d->down = false;
	d->backoff_s = 0;
	d->next_try_ms = 0;
	event_del(d->probe_ev);
	if (was_down && d->s->cfg->bounce_guard) {
		d->window = true;
		d->win_total = d->win_5xx = 0;
	}
	release_waiting(d, 0, true, false);
	log_info("delivery", "dest=%s is back; flushing queued=%zu", d->domain, d->ready.n);
}

/* Bounce guard: judges the first recipients tried after a recovery. */
static void guard_count(struct dest *d, int code)
{
	if (!d->window)
		return;
	d->win_total++;
	if (code / 100 == 5)
		d->win_5xx++;
	if (d->win_total < GUARD_MIN_SAMPLE)
		return;
	d->window = false;
	const struct cfg *cfg = d->s->cfg;
	if ((uint64_t)d->win_5xx * 100 > (uint64_t)cfg->bounce_guard * d->win_total) {
		d->guard = true;
		d->guard_until = clock_wall_s() + cfg->bounce_guard_hold;
		log_err("delivery",
			"dest=%s bounce-guard=on refused=%" PRIu32 " of=%" PRIu32
			" after recovery: holding its mail as deferred, no bounces, for up to %" PRId64 "s",
			d->domain, d->win_5xx, d->win_total, cfg->bounce_guard_hold);
	} else {
		release_held(d);
	}
}

/* Closes a window too small to judge: the held recipients are retried, and bounce then. */
static void guard_window_idle(struct dest *d)
{
	if (d->window && d->win_total && d->ready.n == 0 && d->nconn == 0) {
		d->window = false;
		release_held(d);
	}
}

/* --- outcomes ---------------------------------------------------------- */

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

static void drop_marker(struct job *j)
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

static void set_marker(struct qmgr *s, struct job *j)
{
	drop_marker(j);
	j->marker = xcalloc(1, sizeof(*j->marker));
	j->marker->j = j;
	struct spool_meta meta = j->out.m->meta;
	meta.flags |= SPOOL_META_MAYBE_DUP;
	spool_msg_set_meta(s->sp, j->out.m, &meta, marker_done, j->marker);
}

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
	if (cn->s->stopping || !d->ready.head)
		return NULL;
	struct job *j = jlist_pop(&d->ready);
	snprintf(j->relay, sizeof(j->relay), "%s", smtp_out_peer(out));
	j->out.dot_sent = false;
	/*
	 * In-flight marker: if we crash before this attempt's outcome is
	 * recorded, recovery knows the message may already have been delivered
	 * (docs/spool.md, D1). The final dot waits until it is durable.
	 */
	set_marker(cn->s, j);
	free(j->outcome);
	j->outcome = xcalloc(j->out.n, 1);
	return &j->out;
}

static void log_outcome(struct job *j, uint32_t idx, int code, const char *status, const char *reply)
{
	char id[17], safe[300];
	spool_id_str(j->out.m->id, id);
	log_info("delivery", "id=%s to=<%s> relay=%s code=%d status=%s reply=\"%s\"", id, j->out.m->env.rcpts[idx].addr,
		 j->relay, code, status, log_safe(safe, sizeof(safe), reply ? reply : "", reply ? strlen(reply) : 0));
}

static void conn_rcpt_done(void *arg, struct smtp_out_job *oj, uint32_t k, int code, const char *reply)
{
	struct conn *cn = arg;
	struct qmgr *s = cn->s;
	struct job *j = (struct job *)oj;
	struct dest *d = j->d;
	uint32_t idx = oj->rcpts[k];
	struct spool_rcpt *r = &oj->m->env.rcpts[idx];
	guard_count(d, code);
	if (code / 100 == 2) {
		j->outcome[k] = OUT_SENT;
		s->st.delivered++;
		spool_msg_set_rcpt(s->sp, oj->m, idx, SPOOL_RCPT_DELIVERED, (uint16_t)code, reply, NULL, NULL);
		log_outcome(j, idx, code, "sent", reply);
		guard_off(d, "the primary accepts mail again");
		return;
	}
	if (code / 100 == 5 && !d->guard && !d->window) {
		j->outcome[k] = OUT_FAILED; /* recorded with its bounce at the end of the job */
		r->code = (uint16_t)code;
		free(r->reply);
		r->reply = xstrdup(reply);
		log_outcome(j, idx, code, "bounced", reply);
		return;
	}
	if (code == 421 && !d->down)
		dest_failed(d, reply, true); /* "too busy": back off the whole destination */
	j->outcome[k] = code / 100 == 5 ? OUT_HELD : OUT_DEFERRED;
	j->held |= code / 100 == 5;
	if (code == 0 && oj->dot_sent) {
		s->st.possible_dups++;
		log_warn("delivery", "id=%016" PRIx64 " to=<%s> relay=%s possible-duplicate: no reply after the final dot",
			 oj->m->id, r->addr, j->relay);
	}
	s->st.held += code / 100 == 5;
	spool_msg_set_rcpt(s->sp, oj->m, idx, SPOOL_RCPT_PENDING, (uint16_t)(code ? code : 451),
			   code ? reply : "451 4.4.2 connection lost before a reply", NULL, NULL);
	log_outcome(j, idx, code, code / 100 == 5 ? "held" : "deferred", reply);
}

/* After an attempt: bounce what failed, keep what is pending, finish the rest. */
static void conn_job_done(void *arg, struct smtp_out_job *oj)
{
	struct conn *cn = arg;
	struct qmgr *s = cn->s;
	struct job *j = (struct job *)oj;
	drop_marker(j);
	uint32_t *failed = xcalloc(oj->n ? oj->n : 1, sizeof(*failed));
	uint32_t nfailed = 0, npending = 0;
	for (uint32_t k = 0; k < oj->n; k++) {
		if (j->outcome[k] == OUT_FAILED)
			failed[nfailed++] = oj->rcpts[k];
		else if (j->outcome[k] != OUT_SENT)
			oj->rcpts[npending++] = oj->rcpts[k];
	}
	if (nfailed) {
		qmgr_send_dsn(s, oj->m, failed, nfailed, DSN_FAILED, NULL, j->relay);
		for (uint32_t i = 0; i < nfailed; i++) {
			struct spool_rcpt *r = &oj->m->env.rcpts[failed[i]];
			spool_msg_set_rcpt(s->sp, oj->m, failed[i], SPOOL_RCPT_FAILED, r->code, r->reply, NULL, NULL);
		}
		s->st.bounced += nfailed;
	}
	free(failed);
	oj->n = npending;
	if (npending)
		qmgr_job_defer(s, j);
	else
		qmgr_job_finished(s, j);
}

static void conn_ready(void *arg, struct smtp_out *out)
{
	(void)out;
	struct conn *cn = arg;
	cn->was_ready = true;
	dest_up(cn->d);
	if (cn->probe)
		dest_kick(cn->d);
}

static void conn_ended(void *arg, struct smtp_out *out, enum smtp_out_end how, const char *why)
{
	(void)out;
	struct conn *cn = arg;
	struct qmgr *s = cn->s;
	struct dest *d = cn->d;
	if (cn->starting)
		d->nstarting--;
	if (cn->probe)
		d->probing = false;
	else
		d->nconn--;
	s->nconn--;
	if (cn->detached) {
		free(cn);
		return;
	}
	if (cn->prev)
		cn->prev->next = cn->next;
	else
		s->conns = cn->next;
	if (cn->next)
		cn->next->prev = cn->prev;
	bool unreachable = !cn->was_ready && (how == SMTP_OUT_UNREACHABLE || how == SMTP_OUT_BUSY);
	free(cn);
	if (s->stopping)
		return;
	/*
	 * Back off on the first failure of an outage, and again on each failed
	 * retry once the backoff gate had opened; connections that were already
	 * under way when the gate closed do not count twice.
	 */
	if (unreachable && (!d->down || clock_mono_ms() >= d->next_try_ms))
		dest_failed(d, why, true);
	guard_window_idle(d);
	dest_kick(d);
}

static const struct smtp_out_cb conn_cb = {
	.next_job = conn_next_job,
	.rcpt_done = conn_rcpt_done,
	.job_done = conn_job_done,
	.dot_ready = conn_dot_ready,
	.ready = conn_ready,
	.ended = conn_ended,
};

/* --- connections ------------------------------------------------------- */

static void fail_all_jobs(struct dest *d, const char *reply)
{
	struct qmgr *s = d->s;
	release_waiting(d, 0, true, false);
	while (d->ready.head) {
		struct job *j = jlist_pop(&d->ready);
		snprintf(j->relay, sizeof(j->relay), "%s", "none");
		free(j->outcome);
		j->outcome = xcalloc(j->out.n, 1);
		for (uint32_t k = 0; k < j->out.n; k++) {
			struct spool_rcpt *r = &j->out.m->env.rcpts[j->out.rcpts[k]];
			r->code = (uint16_t)atoi(reply);
			free(r->reply);
			r->reply = xstrdup(reply);
			j->outcome[k] = OUT_FAILED;
			log_outcome(j, j->out.rcpts[k], r->code, "bounced", reply);
		}
		struct conn fake = {.s = s, .d = d};
		conn_job_done(&fake, &j->out);
	}
}

static void on_route(void *arg, const struct route_result *r)
{
	struct conn *cn = arg;
	struct qmgr *s = cn->s;
	struct dest *d = cn->d;
	if (r->status == ROUTE_OK && !s->stopping) {
		struct smtp_out_params p = {
			.helo = s->cfg->hostname,
			.tls = d->cd ? d->cd->tls : TLS_MAY,
			.ssl_ctx = s->ssl,
			.addrs = r->addrs,
			.naddrs = r->naddrs,
			.probe = cn->probe,
			.sp = s->sp,
			.connect_timeout_s = 30,
			.command_timeout_s = 300,
			.data_timeout_s = 600,
		};
		cn->out = smtp_out_start(s->base, &p, &conn_cb, cn);
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
		fail_all_jobs(d, reply);
	conn_ended(cn, NULL, reply[0] ? SMTP_OUT_DONE : SMTP_OUT_UNREACHABLE, r->why[0] ? r->why : "stopped");
}

static void start_conn(struct dest *d, bool probe)
{
	struct qmgr *s = d->s;
	struct conn *cn = xcalloc(1, sizeof(*cn));
	cn->s = s;
	cn->d = d;
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

static void dest_kick(struct dest *d)
{
	struct qmgr *s = d->s;
	if (s->stopping || (d->down && clock_mono_ms() < d->next_try_ms))
		return;
	while (d->nconn < s->cfg->max_connections_per_destination && d->ready.n > d->nstarting)
		start_conn(d, false);
}

static void on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dest *d = arg;
	if (!d->down || (!d->ready.head && !d->waiting.head)) {
		event_del(d->probe_ev);
		return;
	}
	if (!d->probing)
		start_conn(d, true); /* even beside a connection stuck waiting for a greeting */
}

/* --- jobs -------------------------------------------------------------- */

static struct spool_meta *meta_of(struct job *j)
{
	return &j->out.m->meta;
}

void qmgr_job_defer(struct qmgr *s, struct job *j)
{
	const struct cfg *cfg = s->cfg;
	struct spool_meta meta = *meta_of(j);
	int64_t delay = cfg->retry_min;
	for (uint32_t i = 0; i < meta.attempts && delay < cfg->retry_max; i++)
		delay *= 2;
	if (delay > cfg->retry_max)
		delay = cfg->retry_max;
	meta.attempts++;
	meta.next_attempt = clock_wall_s() + delay;
	meta.flags &= ~SPOOL_META_MAYBE_DUP;
	spool_msg_set_meta(s->sp, j->out.m, &meta, NULL, NULL);
	j->not_before = meta.next_attempt;
	jlist_insert(&j->d->waiting, j);
}

static void msg_maybe_done(struct qmgr *s, struct spool_msg *m)
{
	if ((uintptr_t)m->user > 0)
		return;
	for (uint32_t i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpts[i].state == SPOOL_RCPT_PENDING)
			return;
	char id[17];
	spool_id_str(m->id, id);
	log_info("delivery", "id=%s done", id);
	spool_msg_done(s->sp, m, NULL, NULL);
}

void qmgr_job_finished(struct qmgr *s, struct job *j)
{
	struct spool_msg *m = j->out.m;
	m->user = (void *)((uintptr_t)m->user - 1);
	drop_marker(j);
	free(j->out.rcpts);
	free(j->outcome);
	free(j);
	if ((uintptr_t)m->user > 0 && (m->meta.flags & SPOOL_META_MAYBE_DUP)) {
		struct spool_meta meta = m->meta; /* other destinations still to go: this attempt is settled */
		meta.flags &= ~SPOOL_META_MAYBE_DUP;
		spool_msg_set_meta(s->sp, m, &meta, NULL, NULL);
	}
	msg_maybe_done(s, m);
}

static const char *rcpt_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? at + 1 : "";
}

/* Splits a message's pending recipients into one job per destination. */
static void add_msg(void *arg, struct spool_msg *m)
{
	struct qmgr *s = arg;
	int64_t now = clock_wall_s();
	uint32_t *idx = xcalloc(m->env.nrcpt, sizeof(*idx));
	bool *taken = xcalloc(m->env.nrcpt, sizeof(*taken));
	m->user = (void *)(uintptr_t)0;
	if (m->meta.flags & SPOOL_META_MAYBE_DUP) {
		s->st.possible_dups++;
		log_warn("delivery", "id=%016" PRIx64 " was being delivered at a crash: retrying, possible-duplicate", m->id);
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
		struct job *j = xcalloc(1, sizeof(*j));
		j->d = d;
		j->out.m = m;
		j->out.rcpts = xcalloc(n, sizeof(*j->out.rcpts));
		memcpy(j->out.rcpts, idx, n * sizeof(*idx));
		j->out.n = n;
		int64_t retention = d->cd ? d->cd->retention : DSN_RETENTION;
		j->expire_at = m->env.arrival + retention;
		j->warn_at = d->cd && d->cd->warn_after && !(m->env.flags & SPOOL_ENV_IS_DSN)
				     ? m->env.arrival + d->cd->warn_after
				     : 0;
		j->not_before = m->meta.next_attempt;
		m->user = (void *)((uintptr_t)m->user + 1);
		jlist_append(j->not_before > now ? &d->waiting : &d->ready, j);
		dest_kick(d);
	}
	free(idx);
	free(taken);
	msg_maybe_done(s, m);
}

/* --- the tick: due retries, expiry, warnings, guard holds --------------- */

static void age_list(struct dest *d, struct jlist *l, int64_t now)
{
	struct job **p = &l->head, *prev = NULL;
	while (*p) {
		struct job *j = *p;
		if (now < j->expire_at) {
			qmgr_maybe_warn(d->s, j, now);
			prev = j;
			p = &j->next;
			continue;
		}
		jlist_unlink(l, p, prev);
		qmgr_expire_job(d->s, j);
	}
}

/* Nothing queued, nothing connected, no guard to remember: the state can go. */
static bool dest_is_idle(const struct dest *d)
{
	return !d->ready.head && !d->waiting.head && d->nconn == 0 && !d->probing && !d->guard;
}

static void dest_free(struct qmgr *s, struct dest *d)
{
	htab_del_str(&s->dests, d->domain, strlen(d->domain));
	event_free(d->probe_ev);
	free(d->domain);
	free(d);
}

static void tick_dest(struct dest *d, int64_t now)
{
	age_list(d, &d->ready, now);
	age_list(d, &d->waiting, now);
	release_waiting(d, now, false, false);
	if (d->guard && now >= d->guard_until)
		guard_off(d, "bounce_guard_hold elapsed");
	if (d->ready.head)
		dest_kick(d);
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

/* --- lifetime ---------------------------------------------------------- */

int qmgr_start(const struct qmgr_deps *deps, struct qmgr **out)
{
	struct qmgr *s = xcalloc(1, sizeof(*s));
	s->cfg = cfg_ref(deps->cfg);
	s->base = deps->base;
	s->sp = deps->sp;
	s->dns = deps->dns;
	s->ssl = deps->tls;
	s->route = route_new(s->cfg, s->dns);
	s->tick = event_new(s->base, -1, EV_PERSIST, on_tick, s);
	event_add(s->tick, &(struct timeval){1, 0});
	spool_each_msg(s->sp, add_msg, s);
	spool_set_msg_hook(s->sp, add_msg, s);
	*out = s;
	return 0;
}

void qmgr_stop(struct qmgr *s)
{
	s->stopping = true;
	spool_set_msg_hook(s->sp, NULL, NULL);
	while (s->conns) {
		struct conn *cn = s->conns;
		if (cn->out) {
			smtp_out_abort(cn->out);
		} else {
			/* Still resolving: the DNS callback frees it when dns_free cancels. */
			s->conns = cn->next;
			if (cn->next)
				cn->next->prev = NULL;
			cn->prev = cn->next = NULL;
			cn->detached = true;
		}
	}
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
		drop_marker(j);
		free(j->out.rcpts);
		free(j->outcome);
		free(j);
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
	event_free(s->tick);
	cfg_unref(s->cfg);
	free(s);
}
