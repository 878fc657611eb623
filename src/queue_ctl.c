/*
 * queue_ctl: see queue_ctl.h. Replies (exit statuses are sysexits):
 *   0  done;  1  no such message, a domain that is not held (release), or
 *                one neither backed up nor queued for (hold);
 *   64 bad words (not an ID or a domain, a bad duration);
 *   75 the change could not be made durable (the spool or SPOOL/held-domains
 *      said why), so it may not survive a restart.
 * Every answer names only what the request named (an ID is 16 hex digits, a
 * domain is checked by spool_held_domain_ok), so the JSON needs no escaping.
 */
#include "queue_ctl.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "ctl/ctl.h"
#include "delivery/qmgr.h"
#include "spool/spool.h"

#define EXIT_NOT_FOUND 1
/* An answer: a verb, an ID or a checked domain, a few numbers. */
#define ANSWER_MAX (SPOOL_DOMAIN_MAX + 160)

static void PRINTF_LIKE(2, 3) say(char out[ANSWER_MAX], const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int n = vsnprintf(out, ANSWER_MAX, f, ap);
	va_end(ap);
	assert(n >= 0 && n < ANSWER_MAX); /* our own words, sized above */
}

/* The words after "queue VERB", without --json. */
struct words {
	const char *v[4];
	int n;
	bool json;
};

static bool get_words(struct ctl_call *c, int argc, char **argv, int want_min, int want_max, struct words *w)
{
	*w = (struct words){.json = ctl_wants_json(c)};
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			continue;
		if (w->n == want_max) {
			w->n = want_max + 1;
			break;
		}
		w->v[w->n++] = argv[i];
	}
	if (w->n >= want_min && w->n <= want_max)
		return true;
	ctl_err(c, "mxvault: queue %s: wrong number of arguments", argv[1]);
	ctl_finish(c, EX_USAGE);
	return false;
}

/* A domain, lower-cased into out: false (and a usage error answered) when it is not one. */
static bool parse_domain(struct ctl_call *c, const char *s, char out[SPOOL_DOMAIN_MAX + 1])
{
	size_t n = strlen(s);
	if (n > 0 && n <= SPOOL_DOMAIN_MAX) {
		memcpy(out, s, n + 1);
		ascii_lower(out, n);
		if (spool_held_domain_ok(out))
			return true;
	}
	ctl_err(c, "mxvault: not a queue ID (16 hex digits) or a domain name");
	ctl_finish(c, EX_USAGE);
	return false;
}

/* --- answers once durable ------------------------------------------------ */

struct pending {
	struct ctl_call *c; /* NULL once the client went away */
	char text[ANSWER_MAX]; /* the answer (text or JSON) */
};

static void pending_gone(void *arg, struct ctl_call *c)
{
	(void)c;
	((struct pending *)arg)->c = NULL;
}

static void pending_durable(void *arg, int err)
{
	struct pending *p = arg;
	if (p->c && err) {
		ctl_err(p->c, "mxvault: done, but it may not survive a restart: the spool could not write it (%s)",
			strerror(-err));
		ctl_finish(p->c, EX_TEMPFAIL);
	} else if (p->c) {
		ctl_out(p->c, "%s", p->text);
		ctl_finish(p->c, EX_OK);
	}
	free(p);
}

static struct pending *pending_new(struct ctl_call *c)
{
	struct pending *p = xcalloc(1, sizeof(*p));
	p->c = c;
	ctl_on_gone(c, pending_gone, p);
	return p;
}

/* After the queue manager said no: it never calls done then. */
static void pending_failed(struct pending *p, int rc, const char *id)
{
	struct ctl_call *c = p->c;
	ctl_on_gone(c, NULL, NULL);
	free(p);
	if (rc == -ENOENT) {
		ctl_err(c, "mxvault: no message %s in the queue", id);
		ctl_finish(c, EXIT_NOT_FOUND);
	} else {
		ctl_err(c, "mxvault: %s", rc == -ERANGE ? "the duration is out of range" : strerror(-rc));
		ctl_finish(c, rc == -ERANGE ? EX_USAGE : EX_SOFTWARE);
	}
}

static void answer(struct ctl_call *c, int rc, const char *text)
{
	if (rc == 0) {
		ctl_out(c, "%s", text);
		ctl_finish(c, EX_OK);
		return;
	}
	ctl_err(c, "mxvault: %s", strerror(-rc));
	ctl_finish(c, EX_TEMPFAIL);
}

/* --- the commands --------------------------------------------------------- */

typedef int msg_op_fn(struct qmgr *q, uint64_t id, struct pending *p);

static int op_hold(struct qmgr *q, uint64_t id, struct pending *p)
{
	return qmgr_hold_msg(q, id, pending_durable, p);
}

static int op_release(struct qmgr *q, uint64_t id, struct pending *p)
{
	return qmgr_release_msg(q, id, pending_durable, p);
}

/* One message, by ID: the answer waits for the change to be durable. */
static void run_msg_op(struct qmgr *q, struct ctl_call *c, const struct words *w, const char *verb, msg_op_fn *op)
{
	uint64_t id;
	if (!spool_id_parse(w->v[0], &id))
		return;
	struct pending *p = pending_new(c);
	if (w->json)
		say(p->text, "{\"command\": \"%s\", \"id\": \"%016" PRIx64 "\"}", verb, id);
	else
		say(p->text, "%016" PRIx64 " %s", id, verb);
	int rc = op(q, id, p);
	if (rc < 0)
		pending_failed(p, rc, w->v[0]);
}

/* hold / release: ID, or DOMAIN. */
static void cmd_hold_release(struct qmgr *q, struct ctl_call *c, int argc, char **argv, bool hold)
{
	struct words w;
	if (!get_words(c, argc, argv, 1, 1, &w))
		return;
	const char *verb = hold ? "held" : "released";
	uint64_t id;
	if (spool_id_parse(w.v[0], &id)) {
		run_msg_op(q, c, &w, verb, hold ? op_hold : op_release);
		return;
	}
	char domain[SPOOL_DOMAIN_MAX + 1], text[ANSWER_MAX];
	if (!parse_domain(c, w.v[0], domain))
		return;
	struct qmgr_dest_view v;
	if (hold && !qmgr_dest_view(q, domain, &v)) {
		/* a lasting hold on a name nothing goes to is a typo (or an ID mistyped), not an intent */
		ctl_err(c, "mxvault: %s is not a queue ID, nor a domain backed up here or with mail queued", domain);
		ctl_finish(c, EXIT_NOT_FOUND);
		return;
	}
	int rc = hold ? qmgr_hold_domain(q, domain) : qmgr_release_domain(q, domain);
	if (rc == -ENOENT) {
		ctl_err(c, "mxvault: %s is not held", domain);
		ctl_finish(c, EXIT_NOT_FOUND);
		return;
	}
	if (w.json)
		say(text, "{\"command\": \"%s\", \"domain\": \"%s\"}", verb, domain);
	else
		say(text, "%s %s", domain, verb);
	answer(c, rc, text);
}

static void cmd_hold(void *arg, struct ctl_call *c, int argc, char **argv)
{
	cmd_hold_release(arg, c, argc, argv, true);
}

static void cmd_release(void *arg, struct ctl_call *c, int argc, char **argv)
{
	cmd_hold_release(arg, c, argc, argv, false);
}

static void cmd_delete(void *arg, struct ctl_call *c, int argc, char **argv)
{
	struct words w;
	uint64_t id;
	if (!get_words(c, argc, argv, 1, 1, &w))
		return;
	if (!spool_id_parse(w.v[0], &id)) {
		ctl_err(c, "mxvault: not a queue ID (16 hex digits)");
		ctl_finish(c, EX_USAGE);
		return;
	}
	struct pending *p = pending_new(c);
	bool in_flight = false;
	int rc = qmgr_delete_msg(arg, id, &in_flight, pending_durable, p);
	if (w.json)
		say(p->text,
		    "{\"command\": \"deleted\", \"id\": \"%016" PRIx64 "\", \"in_flight\": %s}", id,
		    in_flight ? "true" : "false");
	else
		say(p->text, "%016" PRIx64 " deleted%s", id,
		    in_flight ? " (once the delivery attempt under way ends)" : "");
	if (rc < 0)
		pending_failed(p, rc, w.v[0]);
}

static void cmd_flush(void *arg, struct ctl_call *c, int argc, char **argv)
{
	struct words w;
	char domain[SPOOL_DOMAIN_MAX + 1], text[ANSWER_MAX];
	if (!get_words(c, argc, argv, 0, 1, &w) || (w.n && !parse_domain(c, w.v[0], domain)))
		return;
	size_t n = qmgr_flush(arg, w.n ? domain : NULL);
	if (w.json)
		say(text, "{\"command\": \"flushed\", \"domain\": %s%s%s, \"jobs\": %zu}",
		    w.n ? "\"" : "", w.n ? domain : "null", w.n ? "\"" : "", n);
	else
		say(text, "flushed %s: %zu job(s) to try now", w.n ? domain : "every destination", n);
	answer(c, 0, text);
}

static void cmd_extend(void *arg, struct ctl_call *c, int argc, char **argv)
{
	struct words w;
	int64_t secs;
	uint64_t id;
	char domain[SPOOL_DOMAIN_MAX + 1];
	if (!get_words(c, argc, argv, 2, 2, &w))
		return;
	if (parse_duration(w.v[1], &secs) < 0 || secs <= 0) {
		ctl_err(c, "mxvault: bad duration '%s' (e.g. 30m, 4h, 2d)", w.v[1]);
		ctl_finish(c, EX_USAGE);
		return;
	}
	if (secs > QMGR_EXTEND_MAX_S) { /* checked here for both forms: the DOMAIN one would say "0 messages" */
		ctl_err(c, "mxvault: the duration is out of range");
		ctl_finish(c, EX_USAGE);
		return;
	}
	bool is_id = spool_id_parse(w.v[0], &id);
	if (!is_id && !parse_domain(c, w.v[0], domain))
		return;
	struct pending *p = pending_new(c);
	size_t n = 1;
	int rc = 0;
	if (is_id)
		rc = qmgr_extend_msg(arg, id, secs, pending_durable, p);
	else
		n = qmgr_extend_domain(arg, domain, secs, pending_durable, p);
	if (rc < 0) {
		pending_failed(p, rc, w.v[0]);
		return;
	}
	/* The callback runs from the event loop, after this: the text is there by then. */
	const char *what = is_id ? w.v[0] : domain;
	if (w.json)
		say(p->text,
		    "{\"command\": \"extended\", \"%s\": \"%s\", \"seconds\": %" PRId64 ", \"messages\": %zu}",
		    is_id ? "id" : "domain", what, secs, n);
	else
		say(p->text, "%s: retention extended by %" PRId64 "s for %zu message(s)",
		    what, secs, n);
	if (n == 0)
		pending_durable(p, 0); /* nothing written: no callback comes */
}

void queue_ctl_register(struct ctl *ctl, struct qmgr *q)
{
	ctl_register(ctl, "queue hold", cmd_hold, q);
	ctl_register(ctl, "queue release", cmd_release, q);
	ctl_register(ctl, "queue delete", cmd_delete, q);
	ctl_register(ctl, "queue flush", cmd_flush, q);
	ctl_register(ctl, "queue extend", cmd_extend, q);
}
