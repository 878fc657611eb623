/*
 * drill: see drill.h. Each running drill is a struct drill on a short list
 * (at most one per domain, so at most CTL_MAX_CLIENTS), tied to its start
 * call: its steps go out on that call, and its end (verdict, timeout,
 * client gone, daemon stopping) releases whatever it still holds and frees
 * it. The queue manager's events (qmgr_observe) tell it what happened to
 * its message; being an observer, it never changes queue state from them,
 * and by then the hold is released anyway.
 *
 * Error policy: a bad request is refused on its own call (64 usage, 65 a
 * domain or drill this daemon does not have, 75 a drill of the domain is
 * already running); a drill that cannot pass says why in its verdict.
 */
#include "drill.h"

#include <ctype.h>
#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "base/log.h"
#include "ctl/ctl.h"
#include "delivery/qmgr.h"
#include "spool/spool.h"

#define DRILL_TAG_MAX 32
#define DRILL_MAX_SECONDS (7 * 86400)
#define DRILL_EXIT_FAIL 1

struct drill {
	struct drills *ds;
	struct ctl_call *c;      /* the start call: the drill's steps go out on it */
	char domain[256];        /* lower-case */
	char tag[DRILL_TAG_MAX + 1];
	uint64_t msg_id;         /* the test message; 0 until "drill queued" */
	bool held;
	char last[820];          /* the last deferral, for the verdict at the timeout */
	struct event *timer;
	struct drill *next;
};

struct drills {
	struct event_base *base;
	struct qmgr *q;
	struct drill *list;
};

/* --- the list ---------------------------------------------------------- */

static struct drill *find_domain(struct drills *ds, const char *domain)
{
	for (struct drill *dr = ds->list; dr; dr = dr->next)
		if (strcmp(dr->domain, domain) == 0)
			return dr;
	return NULL;
}

static struct drill *find_tag(struct drills *ds, const char *tag)
{
	for (struct drill *dr = ds->list; dr; dr = dr->next)
		if (strcmp(dr->tag, tag) == 0)
			return dr;
	return NULL;
}

static struct drill *find_msg(struct drills *ds, uint64_t id, const char *domain)
{
	for (struct drill *dr = ds->list; dr; dr = dr->next)
		if (dr->msg_id == id && strcmp(dr->domain, domain) == 0)
			return dr;
	return NULL;
}

/* A step is one line of the reply stream: a peer's multi-line text is joined. */
static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

/* Lets the domain's mail go, if the drill still holds it. */
static void drill_release(struct drill *dr)
{
	if (!dr->held)
		return;
	dr->held = false;
	qmgr_drill_release(dr->ds->q, dr->domain);
}

/* Off the list and freed; its hold released. The call is the caller's to finish (or already gone). */
static void drill_free(struct drill *dr)
{
	drill_release(dr);
	for (struct drill **p = &dr->ds->list; *p; p = &(*p)->next)
		if (*p == dr) {
			*p = dr->next;
			break;
		}
	event_free(dr->timer);
	free(dr);
}

/* The verdict: the last step, then the call ends with its exit status. */
static void drill_end(struct drill *dr, bool passed, const char *why)
{
	char safe[900];
	log_info("drill", "domain=%s tag=%s verdict=%s%s%s%s", dr->domain, dr->tag, passed ? "pass" : "fail",
		 why ? " why=\"" : "", why ? log_safe(safe, sizeof(safe), why, strlen(why)) : "", why ? "\"" : "");
	if (passed)
		ctl_out(dr->c, "verdict PASS");
	else
		ctl_out(dr->c, "verdict FAIL: %s", why);
	ctl_finish(dr->c, passed ? EX_OK : DRILL_EXIT_FAIL);
	drill_free(dr);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct drill *dr = arg;
	struct qmgr_dest_view v;
	if (!dr->last[0] && qmgr_dest_view(dr->ds->q, dr->domain, &v) && v.down)
		snprintf(dr->last, sizeof(dr->last), "the primary of %s does not answer", dr->domain);
	char why[1000];
	if (fmt(why, sizeof(why), "%s within the drill's time%s%s",
		dr->msg_id ? "the primary did not accept the message" : "no test message was queued",
		dr->last[0] ? "; last: " : "", dr->last) < 0)
		snprintf(why, sizeof(why), "timed out");
	drill_end(dr, false, why);
}

static void on_gone(void *arg, struct ctl_call *c)
{
	struct drill *dr = arg;
	log_info("drill", "domain=%s tag=%s interrupted: the command went away%s", dr->domain, dr->tag,
		 dr->held ? "; delivery released" : "");
	drill_free(dr);
	ctl_finish(c, DRILL_EXIT_FAIL); /* nobody reads it: this frees the call */
}

/* --- drill start DOMAIN TAG SECONDS ------------------------------------ */

static bool is_tag(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > DRILL_TAG_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-')
			return false;
	return true;
}

/* Checks the request's words; 0, or the exit status after saying why on c. */
static int check_start(struct drills *ds, struct ctl_call *c, int argc, char **argv, uint64_t *secs)
{
	if (argc != 5 || !is_tag(argv[3]) || parse_uint(argv[4], 1, DRILL_MAX_SECONDS, secs) < 0) {
		ctl_err(c, "mxvault: usage: drill start DOMAIN TAG SECONDS");
		return EX_USAGE;
	}
	if (find_domain(ds, argv[2])) {
		ctl_err(c, "mxvault: a drill of %s is already running", argv[2]);
		return EX_TEMPFAIL;
	}
	if (find_tag(ds, argv[3])) {
		ctl_err(c, "mxvault: a drill tagged %s is already running", argv[3]);
		return EX_TEMPFAIL;
	}
	return 0;
}

static void cmd_start(void *arg, struct ctl_call *c, int argc, char **argv)
{
	struct drills *ds = arg;
	uint64_t secs;
	if (argc >= 3)
		ascii_lower(argv[2], strlen(argv[2]));
	int rc = check_start(ds, c, argc, argv, &secs);
	if (rc == 0 && qmgr_drill_hold(ds->q, argv[2]) < 0) {
		/* -EBUSY cannot happen: one drill per domain, and only drills hold */
		ctl_err(c, "mxvault: this daemon does not back up %s", argv[2]);
		rc = EX_DATAERR;
	}
	if (rc != 0) {
		ctl_finish(c, rc);
		return;
	}
	struct drill *dr = xcalloc(1, sizeof(*dr));
	dr->ds = ds;
	dr->c = c;
	dr->held = true;
	snprintf(dr->domain, sizeof(dr->domain), "%s", argv[2]);
	snprintf(dr->tag, sizeof(dr->tag), "%s", argv[3]);
	dr->timer = evtimer_new(ds->base, on_timeout, dr);
	struct timeval tv = {(time_t)secs, 0};
	evtimer_add(dr->timer, &tv);
	dr->next = ds->list;
	ds->list = dr;
	ctl_on_gone(c, on_gone, dr);
	struct qmgr_dest_view v = {0};
	(void)qmgr_dest_view(ds->q, dr->domain, &v);
	log_info("drill", "domain=%s tag=%s started: delivery held queued=%zu down=%s timeout=%" PRIu64 "s", dr->domain,
		 dr->tag, v.queued, v.down ? "yes" : "no", secs);
	ctl_out(c, "hold delivery to %s held for the drill (%zu message%s already queued for it%s)", dr->domain,
		v.queued, v.queued == 1 ? "" : "s", v.down ? "; its primary does not answer" : "");
}

/* --- drill queued TAG ID ----------------------------------------------- */

static bool parse_msg_id(const char *s, uint64_t *id)
{
	if (strlen(s) != 16 || strspn(s, "0123456789abcdef") != 16)
		return false;
	*id = strtoull(s, NULL, 16);
	return *id != 0;
}

static void cmd_queued(void *arg, struct ctl_call *c, int argc, char **argv)
{
	struct drills *ds = arg;
	uint64_t id;
	struct drill *dr = argc == 4 ? find_tag(ds, argv[2]) : NULL;
	if (argc != 4 || !parse_msg_id(argv[3], &id)) {
		ctl_err(c, "mxvault: usage: drill queued TAG ID");
		ctl_finish(c, EX_USAGE);
		return;
	}
	if (!dr || dr->msg_id) {
		ctl_err(c, "mxvault: no drill tagged %s is waiting for its message", argv[2]);
		ctl_finish(c, EX_DATAERR);
		return;
	}
	if (!qmgr_drill_is_queued(ds->q, dr->domain, id)) {
		ctl_err(c, "mxvault: message %s is not queued for %s", argv[3], dr->domain);
		ctl_finish(c, DRILL_EXIT_FAIL);
		char why[400];
		snprintf(why, sizeof(why), "the test message %s is not queued for %s", argv[3], dr->domain);
		drill_end(dr, false, why);
		return;
	}
	dr->msg_id = id;
	struct qmgr_dest_view v;
	size_t queued = qmgr_dest_view(ds->q, dr->domain, &v) ? v.queued : 0;
	log_info("drill", "domain=%s tag=%s id=%s queued; delivery released", dr->domain, dr->tag, argv[3]);
	ctl_out(dr->c, "queued %s is queued for %s (%zu message%s held)", argv[3], dr->domain, queued,
		queued == 1 ? "" : "s");
	ctl_out(dr->c, "release delivery to %s released", dr->domain);
	ctl_finish(c, EX_OK);
	drill_release(dr); /* after which dr may be gone: a refusal can come at once */
}

/* --- what happens to the message --------------------------------------- */

/* An outage of the drill's domain began after the release: why is worth a step. */
static void on_down(struct drills *ds, const struct qmgr_event *ev)
{
	struct drill *dr = find_domain(ds, ev->dest->domain);
	if (!dr || !dr->msg_id)
		return;
	snprintf(dr->last, sizeof(dr->last), "down %s", ev->reply ? ev->reply : "");
	one_line(dr->last);
	ctl_out(dr->c, "%s", dr->last);
}

static void on_event(void *arg, const struct qmgr_event *ev)
{
	struct drills *ds = arg;
	if (ev->kind == QMGR_EV_DOWN) {
		on_down(ds, ev);
		return;
	}
	if (ev->kind != QMGR_EV_DELIVERED && ev->kind != QMGR_EV_DEFERRED && ev->kind != QMGR_EV_BOUNCED &&
	    ev->kind != QMGR_EV_EXPIRED)
		return;
	struct drill *dr = ev->msg_id ? find_msg(ds, ev->msg_id, ev->dest->domain) : NULL;
	if (!dr)
		return;
	const char *relay = ev->relay ? ev->relay : "none", *reply = ev->reply ? ev->reply : "";
	char what[800];
	if (fmt(what, sizeof(what), "<%s> at %s: %s", ev->rcpt ? ev->rcpt : "", relay, reply) < 0)
		what[sizeof(what) - 1] = '\0'; /* truncated is fine: it is shown, not parsed */
	one_line(what);
	switch (ev->kind) {
	case QMGR_EV_DELIVERED:
		ctl_out(dr->c, "delivered %s", what);
		drill_end(dr, true, NULL);
		break;
	case QMGR_EV_DEFERRED:
		ctl_out(dr->c, "deferred %s", what);
		snprintf(dr->last, sizeof(dr->last), "deferred %s", what);
		break;
	case QMGR_EV_BOUNCED:
		ctl_out(dr->c, "bounced %s", what);
		drill_end(dr, false, "the primary refused the message");
		break;
	default:
		drill_end(dr, false, "the message expired");
		break;
	}
}

/* --- lifetime ---------------------------------------------------------- */

struct drills *drills_new(struct event_base *base, struct qmgr *q, struct ctl *ctl)
{
	struct drills *ds = xcalloc(1, sizeof(*ds));
	ds->base = base;
	ds->q = q;
	ctl_register(ctl, "drill start", cmd_start, ds);
	ctl_register(ctl, "drill queued", cmd_queued, ds);
	qmgr_observe(q, on_event, ds);
	return ds;
}

void drills_free(struct drills *ds)
{
	if (!ds)
		return;
	while (ds->list) {
		struct drill *dr = ds->list;
		dr->held = false; /* the queue manager is gone: nothing to release */
		drill_free(dr);
	}
	free(ds);
}
