/*
 * smtp_in_auth: a session's calls into the sender-authentication engines
 * of auth/ (the map is in auth_step.h): iprev at connect, SPF from MAIL
 * FROM and from HELO, DKIM over the content, DMARC at the end of data. The verdicts go
 * into s->auth (auth_step.c), which decides refusals and writes the header.
 * Called by smtp_in.c (connect, free), smtp_in_cmd.c (MAIL, RCPT, reset)
 * and smtp_in_data.c (content, end of data).
 *
 * Bounded waits: a reply (RCPT, the end of data) waits at most
 * auth_timeout for the checks; then every check still running is given up
 * as a temperror (auth_expired), so slow or dead DNS delays a reply by a
 * known time, never by a chain of resolver timeouts. The DKIM verifier's
 * copy of the header section is held against max_pending_bytes.
 *
 * Invariants: each engine object is non-NULL exactly while its callback is
 * owed to us (DKIM: until the transaction ends); every one is cancelled or
 * freed when the transaction resets or the session is freed, so no engine
 * calls back into a freed session. A callback resumes the session only
 * when it waits on the checks (auth_waiting): SPF and iprev often finish
 * while the session is busy with something else, and then only leave their
 * result. Error policy: a check that cannot run is a temperror of its own
 * (the engines say so); nothing here fails.
 */
#include "smtp_in_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/dkim.h"
#include "auth/dmarc.h"
#include "auth/iprev.h"
#include "auth/spf.h"
#include "base/log.h"

#include <event2/event.h>

/*
 * Every check runs (for the header and DMARC) unless every domain has
 * spf = off and dmarc = off: then none runs and the header says "none".
 * SPF runs for a domain with spf = off too when its dmarc is not off:
 * DMARC needs the SPF result (an aligned SPF pass is a DMARC pass), and
 * spf = off only means that SPF itself refuses nothing.
 */
static bool any_check(const struct cfg *c)
{
	for (size_t i = 0; i < c->ndomains; i++)
		if (c->domains[i].spf != SPF_MODE_OFF || c->domains[i].dmarc != DMARC_MODE_OFF)
			return true;
	return false;
}

/* A check answered: go on if the session waits on the checks. */
void smtp_in_auth_answered(struct smtp_in *s)
{
	if (s->auth_waiting) {
		s->auth_waiting = false;
		smtp_in_resume(s, 0);
	}
}

static void cancel_sender_policy(struct smtp_in *s, enum sender_policy then);

/* --- iprev, at connect ------------------------------------------------------ */

static void on_iprev(void *arg, enum iprev_result r, const char *name)
{
	struct smtp_in *s = arg;
	s->iprev = NULL;
	auth_results_set_iprev(&s->auth, r, name);
	smtp_in_auth_answered(s);
}

void smtp_in_auth_connect(struct smtp_in *s, const struct sockaddr *sa)
{
	memcpy(&s->peer, sa, sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	if (any_check(s->cfg))
		s->iprev = iprev_check_start(s->ctx->dns, sa, on_iprev, s);
}

/* --- SPF, from HELO and from MAIL FROM ------------------------------------------ */

static struct spf_check *start_spf(struct smtp_in *s, const char *domain, const char *sender, spf_fn *fn)
{
	struct spf_request rq = {.domain = domain, .sender = sender, .helo = s->helo, .receiver = s->cfg->hostname};
	memcpy(&rq.ip, &s->peer, sizeof(rq.ip));
	return spf_check_start(s->ctx->dns, &rq, fn, s);
}

static void on_spf_helo(void *arg, enum spf_result r, const char *explanation)
{
	struct smtp_in *s = arg;
	s->spf_helo = NULL;
	auth_results_set_helo(&s->auth, r, explanation);
	smtp_in_auth_answered(s);
}

static void cancel_helo(struct smtp_in *s)
{
	if (s->spf_helo)
		spf_check_cancel(s->spf_helo);
	s->spf_helo = NULL;
}

static bool same_helo(const struct smtp_in *s, const char *name)
{
	return (s->spf_helo || s->auth.helo_ran) && strcasecmp(s->spf_helo_name, name) == 0;
}

bool smtp_in_auth_would_abandon(const struct smtp_in *s, const char *helo_name)
{
	if (s->spf)
		return true;
	return helo_name && s->spf_helo && !same_helo(s, helo_name);
}

void smtp_in_auth_helo(struct smtp_in *s)
{
	if (same_helo(s, s->helo))
		return; /* the same name again (after STARTTLS): its check stands */
	cancel_helo(s);
	auth_results_forget_helo(&s->auth);
	s->spf_helo_name[0] = '\0';
	if (!any_check(s->cfg))
		return;
	if (fmt(s->spf_helo_name, sizeof(s->spf_helo_name), "%s", s->helo) < 0)
		s->spf_helo_name[0] = '\0'; /* longer than a domain: cannot happen (smtp_parse_helo) */
	if (s->helo[0] == '[') { /* an address literal is no domain: none, without a lookup (RFC 7208 2.3) */
		auth_results_set_helo(&s->auth, SPF_NONE, NULL);
		return;
	}
	char sender[SMTP_PATH_MAX + 16];
	if (fmt(sender, sizeof(sender), "postmaster@%s", s->helo) < 0)
		return; /* a HELO name is at most 255 octets: cannot happen */
	s->spf_helo = start_spf(s, s->helo, sender, on_spf_helo);
}

static void on_spf(void *arg, enum spf_result r, const char *explanation)
{
	struct smtp_in *s = arg;
	s->spf = NULL;
	auth_results_set_spf(&s->auth, r, explanation);
	smtp_in_auth_answered(s);
}

void smtp_in_auth_mail(struct smtp_in *s, const struct mailaddr *from)
{
	s->auth.null_sender = from->is_null; /* then the HELO check is the MAIL FROM one (RFC 7208 2.4) */
	if (!any_check(s->cfg) || from->is_null)
		return;
	char sender[SMTP_PATH_MAX + 16];
	if (fmt(sender, sizeof(sender), "%s@%s", from->local, from->domain) < 0)
		return; /* longer than any path we accept: cannot happen */
	s->spf = start_spf(s, from->domain, sender, on_spf);
}

bool smtp_in_auth_spf_pending(const struct smtp_in *s)
{
	return s->spf || s->spf_helo;
}

/* --- waiting on the checks, at most auth_timeout --------------------------------- */

static void cancel_wait(struct smtp_in *s)
{
	s->auth_waiting = false;
	if (s->auth_timer)
		evtimer_del(s->auth_timer);
}

/* Server teardown while the session waits on a check: withdraw every callback. */
static void cancel_checks(struct smtp_in *s)
{
	cancel_wait(s);
	smtp_in_auth_txn_reset(s);
	cancel_helo(s);
	if (s->iprev)
		iprev_check_cancel(s->iprev);
	s->iprev = NULL;
}

static const char TOO_SLOW[] = "no answer within auth_timeout";

/*
 * auth_timeout has passed with the session still waiting: every check still
 * running is a temperror, and a DMARC check not yet started is not started
 * (its verdict is a temperror too). The session then goes on once.
 */
static void auth_expired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_in *s = arg;
	if (!s->auth_waiting)
		return;
	s->auth_waiting = false; /* the callbacks below only leave their result */
	s->auth_expired = true;
	log_info("smtpd", "session=%" PRIu64 " client=%s auth checks timed out:%s%s%s%s%s%s", s->no, s->ip,
		 s->spf ? " spf" : "", s->spf_helo ? " spf-helo" : "", s->iprev ? " iprev" : "",
		 s->dkim && s->dkim_finishing && !s->auth.dkim_ran ? " dkim" : "",
		 s->dmarc || s->sender_policy_check ? " dmarc" : "", s->dnsbl ? " dnsbl" : "");
	smtp_in_dnsbl_expire(s);
	if (s->spf) {
		spf_check_cancel(s->spf);
		s->spf = NULL;
		auth_results_set_spf(&s->auth, SPF_TEMPERROR, NULL);
	}
	if (s->spf_helo) {
		cancel_helo(s);
		auth_results_set_helo(&s->auth, SPF_TEMPERROR, NULL);
	}
	if (s->iprev) {
		iprev_check_cancel(s->iprev);
		s->iprev = NULL;
		auth_results_set_iprev(&s->auth, IPREV_TEMPERROR, NULL);
	}
	if (s->dkim && s->dkim_finishing && !s->auth.dkim_ran)
		dkim_expire(s->dkim); /* calls on_dkim now */
	if (s->dmarc) {
		dmarc_check_cancel(s->dmarc);
		s->dmarc = NULL;
		struct dmarc_outcome o = {.result = DMARC_TEMPERROR, .why = TOO_SLOW};
		auth_results_set_dmarc(&s->auth, &o);
	}
	if (s->sender_policy_check)
		cancel_sender_policy(s, SENDER_POLICY_NO); /* no exemption on a guess */
	smtp_in_resume(s, 0);
}

/*
 * The clock of one wait (a RCPT, or the whole end of data) starts with its
 * first call here and stops at smtp_in_auth_wait_over; the same wait
 * resumed by one answer and waiting again keeps its deadline, and once it
 * has run out (auth_expired) nothing in that wait waits again.
 */
void smtp_in_auth_wait(struct smtp_in *s, smtp_in_cont_fn *k)
{
	if (!s->auth_timer)
		s->auth_timer = evtimer_new(s->ctx->base, auth_expired, s);
	if (!s->auth_timer)
		abort(); /* out of memory */
	if (!s->auth_episode) {
		struct timeval tv = {.tv_sec = s->cfg->auth_timeout};
		evtimer_add(s->auth_timer, &tv);
		s->auth_episode = true;
		s->auth_expired = false;
	}
	s->auth_waiting = true;
	smtp_in_wait(s, k, cancel_checks);
}

void smtp_in_auth_wait_over(struct smtp_in *s)
{
	s->auth_episode = false;
	if (s->auth_timer)
		evtimer_del(s->auth_timer);
}

/* --- DKIM, over the content --------------------------------------------------- */

void smtp_in_auth_content_start(struct smtp_in *s)
{
	if (any_check(s->cfg))
		s->dkim = dkim_verify_new(s->ctx->base, s->ctx->dns, clock_wall_s());
}

/* Keeps what the spool counts as held equal to what the verifier buffers. */
static void sync_dkim_hold(struct smtp_in *s)
{
	size_t now = s->dkim ? dkim_buffered(s->dkim) : 0;
	if (now > s->dkim_held)
		spool_hold_bytes(s->ctx->sp, now - s->dkim_held);
	else if (now < s->dkim_held)
		spool_release_bytes(s->ctx->sp, s->dkim_held - now);
	s->dkim_held = now;
}

void smtp_in_auth_feed(struct smtp_in *s, const void *p, size_t n)
{
	if (!s->dkim)
		return;
	dkim_feed(s->dkim, p, n);
	sync_dkim_hold(s);
}

static void on_dkim(void *arg, const struct dkim_sig_result *r, size_t n)
{
	struct smtp_in *s = arg;
	auth_results_set_dkim(&s->auth, r, n);
	smtp_in_auth_answered(s); /* s->dkim is freed when the transaction ends, not inside its own callback */
}

/* --- DMARC, at the end of data ------------------------------------------------- */

static void on_dmarc(void *arg, const struct dmarc_outcome *o)
{
	struct smtp_in *s = arg;
	s->dmarc = NULL;
	auth_results_set_dmarc(&s->auth, o);
	smtp_in_auth_answered(s);
}

static void start_dmarc(struct smtp_in *s)
{
	const char *from_values[MSG_HDR_FROM_KEEP];
	size_t nfrom = s->hdr->nfrom < MSG_HDR_FROM_KEEP ? s->hdr->nfrom : MSG_HDR_FROM_KEEP;
	for (size_t i = 0; i < nfrom; i++)
		from_values[i] = s->hdr->from[i];
	const char *at = strrchr(s->env.sender, '@');
	bool spf_ran;
	struct dmarc_input in = {
		.from_values = from_values,
		.nfrom = nfrom, /* more than one From: is a permerror whatever they say: two are enough to say so */
		.from_cut = s->hdr->from_cut,
		.mail_from_domain = at ? at + 1 : s->helo,
		.spf = auth_mailfrom_spf(&s->auth, &spf_ran),
		.dkim = s->auth.dkim,
		.ndkim = s->auth.ndkim,
	};
	s->dmarc_started = true;
	s->dmarc = dmarc_check_start(s->ctx->dns, &in, on_dmarc, s);
}

/*
 * The end of data: every check that still runs is waited for, in turn
 * (SPF, DKIM, iprev, then DMARC, which needs the first two); then `then`
 * runs, with every verdict in s->auth. Needs s->hdr (the From: values).
 */
static void next_check(struct smtp_in *s, int unused)
{
	(void)unused;
	if (s->spf || s->spf_helo || s->iprev || s->dmarc) {
		smtp_in_auth_wait(s, next_check);
		return;
	}
	if (s->dkim && !s->auth.dkim_ran) {
		if (!s->dkim_finishing) {
			s->dkim_finishing = true;
			dkim_finish(s->dkim, on_dkim, s);
			sync_dkim_hold(s); /* the header copy is gone once the body is over */
		}
		if (!s->auth_expired) {
			smtp_in_auth_wait(s, next_check);
			return;
		}
		dkim_expire(s->dkim); /* the wait ran out on SPF: no new wait for the keys (calls on_dkim now) */
	}
	if (!s->dmarc_started && auth_dmarc_wanted(s->cfg, s->env.rcpts, s->env.nrcpt)) {
		if (s->auth_expired) {
			/* the wait is over: DMARC gets no time of its own */
			s->dmarc_started = true;
			struct dmarc_outcome o = {.result = DMARC_TEMPERROR, .why = TOO_SLOW};
			auth_results_set_dmarc(&s->auth, &o);
		} else {
			start_dmarc(s);
			smtp_in_auth_wait(s, next_check);
			return;
		}
	}
	smtp_in_auth_wait_over(s);
	smtp_in_cont_fn *then = s->auth_then;
	s->auth_then = NULL;
	then(s, 0);
}

void smtp_in_auth_end_of_data(struct smtp_in *s, smtp_in_cont_fn *then)
{
	s->auth_then = then;
	smtp_in_auth_wait_over(s); /* a wait of its own */
	s->auth_expired = false;
	next_check(s, 0);
}

/* --- does the sender's domain publish DMARC (greylisting's exemption) ------------------ */

static void on_sender_policy(void *arg, const struct dmarc_outcome *o)
{
	struct smtp_in *s = arg;
	s->sender_policy_check = NULL;
	/* A record that parses gives pass or fail; none, or an error, is no published policy. */
	s->sender_policy = o->result == DMARC_PASS || o->result == DMARC_FAIL ? SENDER_POLICY_YES : SENDER_POLICY_NO;
	smtp_in_auth_answered(s);
}

enum sender_policy smtp_in_auth_sender_policy(struct smtp_in *s)
{
	if (s->sender_policy != SENDER_POLICY_UNKNOWN)
		return s->sender_policy;
	const char *at = s->env.sender ? strrchr(s->env.sender, '@') : NULL;
	char from[SMTP_PATH_MAX + 8];
	if (!at || fmt(from, sizeof(from), "<%s>", s->env.sender) < 0)
		return s->sender_policy = SENDER_POLICY_NO;
	/* The DMARC engine's tree walk on a From: of the sender itself: a record found is a policy. */
	const char *values[1] = {from};
	struct dmarc_input in = {.from_values = values, .nfrom = 1, .mail_from_domain = at + 1, .spf = SPF_PASS};
	s->sender_policy = SENDER_POLICY_PENDING;
	s->sender_policy_check = dmarc_check_start(s->ctx->dns, &in, on_sender_policy, s);
	return SENDER_POLICY_PENDING;
}

static void cancel_sender_policy(struct smtp_in *s, enum sender_policy then)
{
	if (s->sender_policy_check)
		dmarc_check_cancel(s->sender_policy_check);
	s->sender_policy_check = NULL;
	s->sender_policy = then;
}

/* --- the end of a transaction, of a session ----------------------------------------- */

void smtp_in_auth_txn_reset(struct smtp_in *s)
{
	if (s->spf)
		spf_check_cancel(s->spf);
	s->spf = NULL;
	if (s->dkim)
		dkim_free(s->dkim);
	s->dkim = NULL;
	sync_dkim_hold(s);
	s->dkim_finishing = false;
	if (s->dmarc)
		dmarc_check_cancel(s->dmarc);
	s->dmarc = NULL;
	s->dmarc_started = false;
	cancel_sender_policy(s, SENDER_POLICY_UNKNOWN);
}

void smtp_in_auth_free(struct smtp_in *s)
{
	cancel_checks(s);
	if (s->auth_timer)
		event_free(s->auth_timer);
	s->auth_timer = NULL;
}
