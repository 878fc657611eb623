/*
 * alerts: see alerts.h. Two sources feed one state machine per backed-up
 * domain: the queue manager's events as they happen (an outage, its end,
 * the queue emptied, the bounce guard), and a periodic check of the queue
 * manager's views and the spool's disk use (what only time changes: the
 * age of the oldest message, the first expiry, the disk filling).
 *
 * Invariants: each alert fires on the transition into its state and is
 * re-armed only by the transition out (the oldest message back under
 * alert_age, say), so a backlog of ten thousand messages is one alert.
 * Only reads of the queue manager's state here (its observer contract).
 */
#include "alerts.h"

#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "delivery/qmgr.h"
#include "notify.h"
#include "spool/spool.h"

#define ALERTS_EXPIRING_WITHIN (24 * 3600) /* "expiring": the first message expires within a day */
#define ALERTS_CHECK_MAX_S 30              /* the periodic check's interval at most */

/* What was last said about one backed-up domain. */
struct dom_state {
	int64_t down_since;  /* wall seconds of the last "queuing"; 0: not down */
	bool drain_pending;  /* "queuing" was said; "drained" not yet */
	bool old_said;       /* "old-mail" was said and the oldest message is still past alert_age */
	bool expiring_said;
};

struct alerts {
	const struct cfg *cfg;
	struct qmgr *qmgr;
	struct spool *sp;
	struct notify *notify;
	struct event *check_ev;
	struct htab doms;      /* domain -> struct dom_state; backed-up domains only */
	bool stopped;
	bool size_said, space_said;
	int64_t now;           /* during a check */
	int64_t oldest_all;    /* during a check: the oldest arrival over all backed-up domains */
};

static struct dom_state *dom_state(struct alerts *a, const char *domain)
{
	size_t n = strlen(domain);
	struct dom_state *st = htab_get_str(&a->doms, domain, n);
	if (!st) {
		st = xcalloc(1, sizeof(*st));
		htab_put_str(&a->doms, domain, n, st);
	}
	return st;
}

static int64_t age_of(int64_t arrival, int64_t now)
{
	return arrival && now > arrival ? now - arrival : 0;
}

static void say(struct alerts *a, const char *kind, const struct qmgr_dest_view *v, const char *detail)
{
	struct notify_alert al = {
		.kind = kind,
		.domain = v->domain,
		.queued = v->queued,
		.oldest_age = age_of(v->oldest_arrival, clock_wall_s()),
		.detail = detail,
	};
	notify_send(a->notify, &al);
}

/* --- what the queue manager tells --------------------------------------- */

static void on_down(struct alerts *a, struct dom_state *st, const struct qmgr_event *ev)
{
	st->down_since = clock_wall_s();
	st->drain_pending = true;
	say(a, "queuing", ev->dest, ev->reply);
}

static void on_up(struct alerts *a, struct dom_state *st, const struct qmgr_event *ev)
{
	char detail[96] = "the primary answers again";
	if (st->down_since)
		snprintf(detail, sizeof(detail), "the primary answers again after %" PRId64 "s",
			 clock_wall_s() - st->down_since);
	st->down_since = 0;
	if (ev->dest->queued == 0)
		st->drain_pending = false; /* nothing to drain (a standby probe's outage): no "drained" later */
	say(a, "recovered", ev->dest, detail);
}

static void on_drained(struct alerts *a, struct dom_state *st, const struct qmgr_event *ev)
{
	/* DRAINED follows every delivery that empties the queue: only the first after an outage is news. */
	if (!st->drain_pending)
		return;
	st->drain_pending = false;
	say(a, "drained", ev->dest, "nothing is queued for it any more");
}

static void on_qmgr_event(void *arg, const struct qmgr_event *ev)
{
	struct alerts *a = arg;
	if (a->stopped || !ev->dest->configured)
		return;
	struct dom_state *st = dom_state(a, ev->dest->domain);
	switch (ev->kind) {
	case QMGR_EV_DOWN:
		on_down(a, st, ev);
		break;
	case QMGR_EV_UP:
		on_up(a, st, ev);
		break;
	case QMGR_EV_DRAINED:
		on_drained(a, st, ev);
		break;
	case QMGR_EV_GUARD_ON:
		say(a, "bounce-guard", ev->dest, ev->reply);
		break;
	case QMGR_EV_GUARD_OFF:
		say(a, "bounce-guard-off", ev->dest, ev->reply);
		break;
	default:
		break; /* per message: never an alert */
	}
}

/* --- what only time changes --------------------------------------------- */

static void check_dest(void *arg, const struct qmgr_dest_view *v)
{
	struct alerts *a = arg;
	if (!v->configured)
		return;
	struct dom_state *st = dom_state(a, v->domain);
	char detail[128];
	if (v->oldest_arrival && (!a->oldest_all || v->oldest_arrival < a->oldest_all))
		a->oldest_all = v->oldest_arrival;
	bool old = v->oldest_arrival && a->now - v->oldest_arrival >= a->cfg->alert_age;
	if (old && !st->old_said) {
		snprintf(detail, sizeof(detail), "the oldest message has waited %" PRId64 "s (alert_age %" PRId64 "s)",
			 a->now - v->oldest_arrival, a->cfg->alert_age);
		say(a, "old-mail", v, detail);
	}
	st->old_said = old;
	bool expiring = v->next_expiry && v->next_expiry - a->now <= ALERTS_EXPIRING_WITHIN;
	if (expiring && !st->expiring_said) {
		int64_t left = v->next_expiry > a->now ? v->next_expiry - a->now : 0;
		snprintf(detail, sizeof(detail), "the first message expires (and bounces) in %" PRId64 "s", left);
		say(a, "expiring", v, detail);
	}
	st->expiring_said = expiring;
}

static void say_spool(struct alerts *a, const char *kind, const char *detail)
{
	struct spool_stats ss;
	spool_get_stats(a->sp, &ss);
	struct notify_alert al = {
		.kind = kind,
		.domain = "",
		.queued = ss.messages,
		.oldest_age = age_of(a->oldest_all, a->now),
		.detail = detail,
	};
	notify_send(a->notify, &al);
}

static void check_spool(struct alerts *a)
{
	uint64_t disk, avail;
	char detail[160];
	if (spool_get_usage(a->sp, &disk, &avail) < 0)
		return; /* the spool's own check logs a file system that cannot be asked */
	const struct cfg *c = a->cfg;
	bool big = c->alert_spool_size && disk >= c->alert_spool_size;
	if (big && !a->size_said) {
		snprintf(detail, sizeof(detail), "the spool takes %" PRIu64 " bytes (alert_spool_size %" PRIu64 ")", disk,
			 c->alert_spool_size);
		say_spool(a, "spool-size", detail);
	}
	a->size_said = big;
	/* "Nears" min_free_space: under twice it, while mail is still taken (below it MAIL gets 452). */
	bool low = c->min_free_space && avail / 2 < c->min_free_space;
	if (low && !a->space_said) {
		snprintf(detail, sizeof(detail),
			 "%" PRIu64 " bytes free for the spool; mail is refused under min_free_space %" PRIu64, avail,
			 c->min_free_space);
		say_spool(a, "disk-space", detail);
	}
	a->space_said = low;
}

static void on_check(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct alerts *a = arg;
	a->now = clock_wall_s();
	a->oldest_all = 0;
	qmgr_each_dest(a->qmgr, check_dest, a);
	check_spool(a);
}

/* --- the interface ------------------------------------------------------ */

/* Often enough that alert_age is kept to within half of it, and every 30 s at least. */
static int64_t check_interval_s(const struct cfg *c)
{
	int64_t s = c->alert_age / 2;
	return s < 1 ? 1 : s > ALERTS_CHECK_MAX_S ? ALERTS_CHECK_MAX_S : s;
}

struct alerts *alerts_start(const struct alerts_deps *deps)
{
	struct alerts *a = xcalloc(1, sizeof(*a));
	a->cfg = cfg_ref(deps->cfg);
	a->qmgr = deps->qmgr;
	a->sp = deps->sp;
	a->notify = notify_new(deps->base, a->cfg->notify_command, a->cfg->hostname, a->cfg->notify_timeout);
	qmgr_observe(a->qmgr, on_qmgr_event, a);
	a->check_ev = event_new(deps->base, -1, EV_PERSIST, on_check, a);
	event_add(a->check_ev, &(struct timeval){(time_t)check_interval_s(a->cfg), 0});
	if (a->cfg->notify_command)
		log_info("alert", "notify_command set: alerts run it (timeout %" PRId64 "s)", a->cfg->notify_timeout);
	return a;
}

void alerts_stop(struct alerts *a)
{
	if (!a)
		return;
	a->stopped = true;
	event_del(a->check_ev);
}

static void free_state(void *val, void *arg)
{
	(void)arg;
	free(val);
}

void alerts_free(struct alerts *a)
{
	if (!a)
		return;
	notify_free(a->notify);
	event_free(a->check_ev);
	htab_each(&a->doms, free_state, NULL);
	htab_free(&a->doms);
	cfg_unref(a->cfg);
	free(a);
}
