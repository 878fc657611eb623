/*
 * smtp_in_connect: a session's abuse defences at connect (issue 9 section
 * 3; docs/operations.md): the DNS list check started at connect and
 * enforced at the first RCPT, greet_pause and its early-talker test, and
 * the message rate. (The connection rate is counted by smtp_server before a
 * session exists.) Called by smtp_in.c (connect, input during the greeting,
 * free), smtp_in_cmd.c (MAIL, RCPT) and smtp_in_auth.c (a wait that ran
 * out of time).
 *
 * Invariants: s->dnsbl is non-NULL exactly while its callback is owed, and
 * is cancelled when the session is freed; s->greet_timer is non-NULL
 * exactly while the greeting is incomplete, and freed with the session.
 * The DNS list check joins the checks a RCPT waits on (smtp_in_auth_wait):
 * its answer resumes a waiting session, and a wait that runs out of time
 * takes the verdict from what has answered. Error policy: a DNS failure
 * never blocks (dnsbl.h); nothing here fails.
 */
#include "smtp_in_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/metrics.h"
#include "dnsbl.h"
#include "ratelimit.h"

/* How long a client that passed greet_pause is greeted at once. */
#define GREET_REMEMBER_S (24 * 3600)

/* --- DNS lists ---------------------------------------------------------------- */

static void note_verdict(struct smtp_in *s, const struct dnsbl_verdict *v, bool expired)
{
	if (v->blocked)
		s->dnsbl_blocked = fmt(s->dnsbl_zone, sizeof(s->dnsbl_zone), "%s", v->zone) == 0;
	s->dnswl_listed = v->allowed[0] != '\0';
	if (!v->listed[0] && !v->allowed[0] && !v->failed[0])
		return;
	log_info("smtpd", "session=%" PRIu64 " client=%s dnsbl score=%d listed=%s allowed=%s %s=%s verdict=%s", s->no,
		 s->ip, v->score, v->listed[0] ? v->listed : "-", v->allowed[0] ? v->allowed : "-",
		 expired ? "no-answer" : "failed", v->failed[0] ? v->failed : "-", v->blocked ? "block" : "pass");
}

static void on_dnsbl(void *arg, const struct dnsbl_verdict *v)
{
	struct smtp_in *s = arg;
	s->dnsbl = NULL;
	note_verdict(s, v, false);
	smtp_in_auth_answered(s);
}

bool smtp_in_dnsbl_pending(const struct smtp_in *s)
{
	return s->dnsbl != NULL;
}

bool smtp_in_dnswl_listed(const struct smtp_in *s)
{
	return s->dnswl_listed;
}

void smtp_in_dnsbl_expire(struct smtp_in *s)
{
	if (!s->dnsbl)
		return;
	struct dnsbl_verdict v;
	dnsbl_check_now(s->dnsbl, &v);
	s->dnsbl = NULL;
	note_verdict(s, &v, true);
}

bool smtp_in_dnsbl_refuse(struct smtp_in *s, const char *rcpt)
{
	if (!s->dnsbl_blocked)
		return false;
	char text[400], safe_from[320], safe_to[320];
	if (fmt(text, sizeof(text), "Service unavailable; client [%s] blocked using %s", s->ip, s->dnsbl_zone) < 0)
		text[0] = '\0'; /* an address and a zone always fit */
	const char *from = s->env.sender ? s->env.sender : "";
	log_info("smtpd", "session=%" PRIu64 " client=%s from=<%s> to=%s dnsbl=%s reject=\"554 5.7.1 %s\"", s->no,
		 s->ip, log_safe(safe_from, sizeof(safe_from), from, strlen(from)),
		 log_safe(safe_to, sizeof(safe_to), rcpt, strlen(rcpt)), s->dnsbl_zone, text);
	metrics_inc(METRIC_REJECT_DNSBL);
	smtp_in_reply(s, 554, "5.7.1", "%s", text);
	smtp_in_close_after_reply(s);
	return true;
}

/* --- greet_pause ---------------------------------------------------------------- */

static void greet_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_in *s = arg;
	event_free(s->greet_timer);
	s->greet_timer = NULL;
	if (s->state == SMTP_IN_CLOSING)
		return; /* ended during the pause (shutdown, a vanished peer): not a pass */
	ratelimit_hit(s->ctx->greeted, s->ip, GREET_REMEMBER_S, clock_mono_ms() / 1000);
	smtp_in_reply(s, 220, "", "%s ESMTP mxvault", s->cfg->hostname);
}

void smtp_in_greet(struct smtp_in *s)
{
	int64_t now = clock_mono_ms() / 1000;
	if (!s->cfg->greet_pause || ratelimit_count(s->ctx->greeted, s->ip, GREET_REMEMBER_S, now)) {
		smtp_in_reply(s, 220, "", "%s ESMTP mxvault", s->cfg->hostname);
		return;
	}
	/* RFC 5321 4.2.1: a multiline reply; a client must wait for its last line before it speaks. */
	evbuffer_add_printf(bufferevent_get_output(s->bev), "220-%s ESMTP mxvault\r\n", s->cfg->hostname);
	s->greet_timer = evtimer_new(s->ctx->base, greet_done, s);
	if (!s->greet_timer)
		abort(); /* out of memory */
	struct timeval tv = {.tv_sec = s->cfg->greet_pause};
	evtimer_add(s->greet_timer, &tv);
}

bool smtp_in_greet_abandon(struct smtp_in *s)
{
	if (!s->greet_timer)
		return false;
	event_free(s->greet_timer);
	s->greet_timer = NULL;
	return true;
}

bool smtp_in_early_talker(struct smtp_in *s)
{
	if (!s->greet_timer)
		return false;
	size_t n = evbuffer_get_length(bufferevent_get_input(s->bev));
	if (!n)
		return false;
	event_free(s->greet_timer);
	s->greet_timer = NULL;
	s->ctx->stats->refused++;
	log_info("smtpd", "session=%" PRIu64 " client=%s early talker: %zu bytes before the greeting was complete",
		 s->no, s->ip, n);
	smtp_in_reply(s, 554, "5.5.0", "%s Error: SMTP protocol synchronization", s->cfg->hostname);
	smtp_in_close_after_reply(s);
	return true;
}

/* --- the message rate ------------------------------------------------------------- */

bool smtp_in_message_rate_exceeded(struct smtp_in *s)
{
	const struct connspec_rate *r = &s->cfg->max_message_rate;
	if (!r->count || connspec_cidr_match(s->cfg->rate_limit_exceptions, s->cfg->nrate_limit_exceptions,
					     (const struct sockaddr *)&s->peer))
		return false;
	uint32_t n = ratelimit_hit(s->ctx->msg_rate, s->client_key, r->period, clock_mono_ms() / 1000);
	if (n <= r->count)
		return false;
	char rate[32];
	log_info("smtpd", "session=%" PRIu64 " client=%s network=%s message rate limit exceeded (max_message_rate %s)",
		 s->no, s->ip, s->client_key, connspec_fmt_rate(rate, sizeof(rate), r));
	metrics_inc(METRIC_REJECT_RATE);
	smtp_in_end_421(s, "4.7.0", "Error: too many messages from your address (max_message_rate)");
	return true;
}

/* --- the session's start and end ----------------------------------------------------- */

void smtp_in_connect_start(struct smtp_in *s, const struct sockaddr *sa)
{
	if (dnsbl_wanted(s->cfg))
		s->dnsbl = dnsbl_check_start(s->ctx->dns, s->cfg, sa, on_dnsbl, s);
	smtp_in_greet(s);
}

void smtp_in_connect_free(struct smtp_in *s)
{
	dnsbl_check_cancel(s->dnsbl);
	s->dnsbl = NULL;
	if (s->greet_timer)
		event_free(s->greet_timer);
	s->greet_timer = NULL;
}
