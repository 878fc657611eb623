/*
 * qmgr_view: what the queue manager shows to observers (qmgr.h: views of
 * destinations, events as they happen) for the metrics, the status page
 * and the alerts. It keeps a tally per destination (its jobs, their bytes,
 * since when it is up or down) as jobs come and go, and builds a view on
 * demand by walking the destination's jobs: views are asked for per scrape
 * or per page, not per message.
 */
#include "qmgr_int.h"

#include <string.h>

void qmgr_view_add_job(struct dest *d, struct job *j)
{
	j->dprev = NULL;
	j->dnext = d->jobs;
	if (d->jobs)
		d->jobs->dprev = j;
	d->jobs = j;
	d->njobs++;
	d->nbytes += j->out.m->env.body_size;
}

void qmgr_view_drop_job(struct dest *d, struct job *j)
{
	if (j->dprev)
		j->dprev->dnext = j->dnext;
	else
		d->jobs = j->dnext;
	if (j->dnext)
		j->dnext->dprev = j->dprev;
	j->dprev = j->dnext = NULL;
	d->njobs--;
	d->nbytes -= j->out.m->env.body_size;
	if (d->njobs == 0)
		qmgr_emit_dest(d, QMGR_EV_DRAINED, NULL);
}

static ptrdiff_t domain_index(const struct qmgr *s, const struct cfg_domain *cd)
{
	if (!cd || cd < s->cfg->domains || cd >= s->cfg->domains + s->cfg->ndomains)
		return -1;
	return cd - s->cfg->domains;
}

void qmgr_view_forget(struct dest *d)
{
	ptrdiff_t i = domain_index(d->s, d->cd);
	if (i >= 0)
		d->s->domain_since[i] = d->state_since;
}

/* walk: also find the oldest message and the first expiry (O(jobs of d)). */
static void fill_view(const struct dest *d, struct qmgr_dest_view *v, bool walk)
{
	*v = (struct qmgr_dest_view){
		.domain = d->domain,
		.configured = d->cd != NULL,
		.down = d->pol.down,
		.state_since = d->state_since,
		.bounce_guard = d->pol.guard,
		.queued = d->njobs,
		.queued_bytes = d->nbytes,
		.connections = d->nconn + (d->probing ? 1 : 0),
		.held = d->held,
	};
	for (const struct job *j = walk ? d->jobs : NULL; j; j = j->dnext) {
		int64_t arrival = j->out.m->env.arrival;
		if (!v->oldest_arrival || arrival < v->oldest_arrival)
			v->oldest_arrival = arrival;
		if (!v->next_expiry || j->expire_at < v->next_expiry)
			v->next_expiry = j->expire_at;
	}
}

/* A backed-up domain the queue manager holds no state for: up (as far as is known), nothing queued. */
static void fill_idle_view(const struct qmgr *s, size_t i, struct qmgr_dest_view *v)
{
	*v = (struct qmgr_dest_view){
		.domain = s->cfg->domains[i].name,
		.configured = true,
		.state_since = s->domain_since[i],
		.held = qmgr_domain_held(s, s->cfg->domains[i].name),
	};
}

void qmgr_each_dest(struct qmgr *s, qmgr_dest_fn *fn, void *arg)
{
	struct qmgr_dest_view v;
	for (size_t i = 0; i < s->cfg->ndomains; i++) {
		const char *name = s->cfg->domains[i].name;
		const struct dest *d = htab_get_str(&s->dests, name, strlen(name));
		if (d)
			fill_view(d, &v, true);
		else
			fill_idle_view(s, i, &v);
		fn(arg, &v);
	}
	for (const struct dest *d = s->dest_list; d; d = d->next_dest) {
		if (d->cd)
			continue;
		fill_view(d, &v, true);
		fn(arg, &v);
	}
}

bool qmgr_dest_view(struct qmgr *s, const char *domain, struct qmgr_dest_view *out)
{
	char name[256];
	if (fmt(name, sizeof(name), "%s", domain) < 0)
		return false;
	ascii_lower(name, strlen(name));
	const struct dest *d = htab_get_str(&s->dests, name, strlen(name));
	if (d) {
		fill_view(d, out, true);
		return true;
	}
	ptrdiff_t i = domain_index(s, cfg_find_domain(s->cfg, name));
	if (i < 0)
		return false;
	fill_idle_view(s, (size_t)i, out);
	return true;
}

void qmgr_observe(struct qmgr *s, qmgr_event_fn *fn, void *arg)
{
	if (s->nobservers == QMGR_MAX_OBSERVERS)
		abort(); /* the daemon's own wiring: a programming error */
	s->observers[s->nobservers++] = (struct qmgr_observer){fn, arg};
}

static void emit(struct qmgr *s, struct qmgr_event *ev)
{
	for (size_t i = 0; i < s->nobservers; i++)
		s->observers[i].fn(s->observers[i].arg, ev);
}

void qmgr_emit_dest(struct dest *d, enum qmgr_event_kind kind, const char *reply)
{
	if (kind == QMGR_EV_DOWN || kind == QMGR_EV_UP)
		d->state_since = clock_wall_s();
	if (!d->s->nobservers)
		return;
	struct qmgr_dest_view v;
	fill_view(d, &v, true);
	struct qmgr_event ev = {.kind = kind, .dest = &v, .reply = reply};
	emit(d->s, &ev);
}

void qmgr_emit_rcpt(const struct job *j, uint32_t idx, enum qmgr_event_kind kind, int code, const char *reply)
{
	struct qmgr *s = j->d->s;
	if (!s->nobservers)
		return;
	struct qmgr_dest_view v;
	fill_view(j->d, &v, false); /* per recipient: no walk, or draining a backlog would be quadratic */
	struct qmgr_event ev = {
		.kind = kind,
		.dest = &v,
		.msg_id = j->out.m->id,
		.rcpt = j->out.m->env.rcpts[idx].addr,
		.relay = j->relay[0] ? j->relay : NULL,
		.code = code,
		.reply = reply,
		.bytes = j->out.m->env.body_size,
	};
	emit(s, &ev);
}

void qmgr_emit_dsn(struct qmgr *s, const struct spool_msg *m, const char *action)
{
	if (!s->nobservers)
		return;
	const char *at = strrchr(m->env.sender, '@');
	struct qmgr_dest_view v = {.domain = at ? at + 1 : ""};
	struct qmgr_event ev = {.kind = QMGR_EV_DSN, .dest = &v, .msg_id = m->id, .reply = action};
	emit(s, &ev);
}
