/*
 * smtp_in_cmd: the commands of a session, one handler per verb, picked from
 * a table (RFC 5321 with PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
 * ENHANCEDSTATUSCODES, CHUNKING, DSN and STARTTLS). Handlers only reply and change
 * the session's state; they never free the session (smtp_in.c does that
 * from its callbacks). Called by smtp_in.c for each complete command line.
 *
 * Errors and refusals: a malformed or out-of-sequence command counts toward
 * max_errors at once. A refused recipient counts only when its transaction
 * ends without a stored message: a sender whose message has one real
 * recipient among many stale ones is not cut off, while a client that only
 * harvests addresses still is (and no transaction may collect more than
 * max_recipients refusals).
 */
#include "smtp_in_int.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/metrics.h"
#include "base/standby.h"
#include "greylist.h"
#include "policy.h"
#include "store/learned.h"

static const struct canned NEED_HELO = {503, "5.5.1", "Error: send HELO/EHLO first"};
static const struct canned NEED_MAIL = {503, "5.5.1", "Error: need MAIL command"};
static const struct canned NEED_RCPT = {503, "5.5.1", "Error: need RCPT command"};
static const struct canned NO_VALID_RCPT = {554, "5.5.1", "Error: no valid recipients"};
static const struct canned DATA_AFTER_BDAT = {503, "5.5.1", "Error: DATA after BDAT"};
static const struct canned DATA_SYNTAX = {501, "5.5.4", "Syntax: DATA"};

/* --- transaction ------------------------------------------------------- */

void smtp_in_txn_reset(struct smtp_in *s)
{
	if (s->tx)
		spool_txn_abort(s->tx);
	s->tx = NULL;
	spool_env_free(&s->env);
	smtp_in_auth_txn_reset(s);
	smtp_in_milter_txn_reset(s);
	auth_results_reset(&s->auth);
	htab_free(&s->rcpt_seen);
	s->rejected_rcpts = 0;
	s->rcpt_refused = false;
	s->too_big = false;
	s->bdat_used = false;
	s->bdat_error = NULL;
	smtp_in_drop_content(s);
	if (s->state != SMTP_IN_HELO && s->state != SMTP_IN_CLOSING)
		s->state = SMTP_IN_READY;
}

/*
 * A stored message forgives its refusals, up to max_recipients in a whole
 * session: a harvester that adds a real recipient to each of its probes (say
 * postmaster, who is always accepted) still runs out.
 */
bool smtp_in_txn_end(struct smtp_in *s, bool stored)
{
	uint32_t refused = s->rejected_rcpts;
	if (stored) {
		uint32_t room = s->cfg->max_recipients > s->forgiven ? s->cfg->max_recipients - s->forgiven : 0;
		uint32_t f = refused < room ? refused : room;
		s->forgiven += f;
		refused -= f;
	}
	smtp_in_txn_reset(s);
	if (refused && smtp_in_add_errors(s, refused))
		return true;
	if (!s->shutdown || s->state == SMTP_IN_CLOSING)
		return false;
	/* The server is stopping: this session's message, if any, is settled. */
	smtp_in_reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
	smtp_in_close_after_reply(s);
	return true;
}

/* --- replies to bad input ---------------------------------------------- */

/* The argument as the log shows it: the address alone when it parsed. */
static const char *log_value(const struct mailaddr *a, const char *args, char *buf, size_t n)
{
	if (a && smtp_format_path(a, buf, n) == 0)
		return buf;
	return args;
}

static void reply_parse_error(struct smtp_in *s, enum smtp_err e, const char *what, const char *args)
{
	static const struct canned r[] = {
		[SMTP_ERR_NONE] = {501, "5.5.4", "Syntax error"},
		[SMTP_ERR_SYNTAX] = {501, "5.1.7", "Bad address syntax"},
		[SMTP_ERR_PATH_TOO_LONG] = {501, "5.1.7", "Address too long"},
		[SMTP_ERR_UTF8] = {553, "5.6.7", "Non-ASCII address requires SMTPUTF8"},
		[SMTP_ERR_PARAM_UNKNOWN] = {555, "5.5.4", "Unsupported parameter"},
		[SMTP_ERR_PARAM_BAD] = {501, "5.5.4", "Bad parameter value"},
	};
	size_t i = (size_t)e < ARRAY_LEN(r) ? (size_t)e : 0;
	const char *enh = r[i].enh;
	if (strcmp(what, "to") == 0 && (e == SMTP_ERR_SYNTAX || e == SMTP_ERR_PATH_TOO_LONG))
		enh = "5.1.3";
	smtp_in_log_reject(s, what, args, r[i].code, enh, r[i].text);
	smtp_in_reply_error(s, r[i].code, enh, r[i].text);
}

static bool needs_helo(struct smtp_in *s)
{
	if (s->state != SMTP_IN_HELO)
		return false;
	smtp_in_reply_error(s, NEED_HELO.code, NEED_HELO.enh, NEED_HELO.text);
	return true;
}

/* --- HELO, EHLO, MAIL, RCPT -------------------------------------------- */

/* RFC 3207 4.2: not once TLS is on. */
static bool offers_starttls(const struct smtp_in *s)
{
	return s->ctx->tls && !smtp_in_is_encrypted(s);
}

static void rerun_held(struct smtp_in *s, int unused);

/*
 * The command waits on the checks, then runs again with their verdicts in:
 * a RCPT that needs SPF's verdict; a RSET or HELO/EHLO that would abandon
 * a check still running (smtp_in_auth_would_abandon).
 */
static void hold_for_checks(struct smtp_in *s, const struct smtp_cmd *c)
{
	s->held_verb = c->verb;
	memcpy(s->held_args, c->args, c->args_len); /* at most SMTP_PARAM_LINE_MAX: the line limit */
	s->held_args_len = c->args_len;
	smtp_in_auth_wait(s, rerun_held);
}

static void cmd_helo(struct smtp_in *s, const struct smtp_cmd *c, bool ehlo)
{
	char name[256];
	if (smtp_parse_helo(c->args, c->args_len, name, sizeof(name)) < 0) {
		smtp_in_reply_error(s, 501, "5.5.4", ehlo ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
		return;
	}
	if (smtp_in_auth_would_abandon(s, name)) {
		hold_for_checks(s, c);
		return;
	}
	if (s->state == SMTP_IN_MAIL && smtp_in_txn_end(s, false))
		return;
	free(s->helo);
	s->helo = xstrdup(name);
	s->esmtp = ehlo;
	s->state = SMTP_IN_READY;
	smtp_in_txn_reset(s);
	smtp_in_auth_helo(s);
	if (!ehlo) {
		smtp_in_reply(s, 250, "", "%s", s->cfg->hostname);
		return;
	}
	evbuffer_add_printf(bufferevent_get_output(s->bev),
			    "250-%s\r\n250-PIPELINING\r\n250-SIZE %" PRIu64 "\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
			    "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n%s250 DSN\r\n",
			    s->cfg->hostname, s->cfg->max_message_size, offers_starttls(s) ? "250-STARTTLS\r\n" : "");
}

static void cmd_ehlo(struct smtp_in *s, const struct smtp_cmd *c)
{
	cmd_helo(s, c, true);
}

static void cmd_helo_only(struct smtp_in *s, const struct smtp_cmd *c)
{
	cmd_helo(s, c, false);
}

/* The parameters of MAIL that the session can check itself; NULL when fine. */
static const struct canned *mail_refusal(struct smtp_in *s, const struct smtp_mail_params *mp)
{
	static const struct canned too_big = {552, "5.3.4", "Message size exceeds fixed limit"};
	static const struct canned no_space = {452, "4.3.1", "Insufficient system storage"};
	if (mp->has_size && mp->size > s->cfg->max_message_size)
		return &too_big;
	if (!spool_has_space(s->ctx->sp))
		return &no_space;
	return NULL;
}

static void cmd_mail(struct smtp_in *s, const struct smtp_cmd *c)
{
	if (needs_helo(s))
		return;
	if (s->state == SMTP_IN_MAIL) {
		smtp_in_reply_error(s, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	struct mailaddr from;
	struct smtp_mail_params mp;
	enum smtp_err e = SMTP_ERR_NONE;
	char args[SMTP_PARAM_LINE_MAX + 1], path[SMTP_PATH_MAX + 8];
	memcpy(args, c->args, c->args_len);
	args[c->args_len] = '\0';
	if (smtp_parse_mail(c->args, c->args_len, &from, &mp, &e) < 0) {
		reply_parse_error(s, e, "from", args);
		return;
	}
	if (!s->esmtp && (mp.has_size || mp.body || mp.smtputf8 || mp.ret || mp.envid[0])) {
		reply_parse_error(s, SMTP_ERR_PARAM_UNKNOWN, "from", args);
		return;
	}
	if (smtp_format_path(&from, path, sizeof(path)) < 0) {
		reply_parse_error(s, SMTP_ERR_PATH_TOO_LONG, "from", args);
		return;
	}
	if (smtp_in_message_rate_exceeded(s))
		return;
	const struct canned *no = mail_refusal(s, &mp);
	if (no) {
		if (no->code == 552)
			metrics_inc(METRIC_REJECT_SIZE);
		smtp_in_log_reject(s, "from", path, no->code, no->enh, no->text);
		smtp_in_reply(s, no->code, no->enh, "%s", no->text);
		return;
	}
	smtp_in_txn_reset(s);
	path[strlen(path) - 1] = '\0';
	s->env.sender = xstrdup(from.is_null ? "" : path + 1);
	s->env.envid = mp.envid[0] ? xstrdup(mp.envid) : NULL;
	s->env.body = (uint8_t)mp.body;
	s->env.ret = (uint8_t)mp.ret;
	s->env.smtputf8 = mp.smtputf8;
	s->env.size_param = mp.size;
	s->state = SMTP_IN_MAIL;
	smtp_in_auth_mail(s, &from); /* SPF runs while the recipients come */
	if (!smtp_in_milter_mail(s)) /* else the milters answer */
		smtp_in_reply(s, 250, "2.1.0", "Ok");
}


/* Adds addr unless the transaction has it already (any case): a hash, not a scan. */
static void add_rcpt(struct smtp_in *s, const char *addr, const struct smtp_rcpt_params *rp)
{
	char key[SMTP_PATH_MAX + 1];
	size_t n = strlen(addr);
	memcpy(key, addr, n + 1);
	ascii_lower(key, n);
	if (htab_get_str(&s->rcpt_seen, key, n))
		return;
	htab_put_str(&s->rcpt_seen, key, n, (void *)1);
	s->env.rcpts = xrealloc(s->env.rcpts, (s->env.nrcpt + 1) * sizeof(*s->env.rcpts));
	s->env.rcpts[s->env.nrcpt++] = (struct spool_rcpt){
		.addr = xstrdup(addr),
		.orcpt = rp->orcpt[0] ? xstrdup(rp->orcpt) : NULL,
		.notify = (uint8_t)rp->notify,
	};
}

/* A recipient refused by policy: counted when the transaction ends (see the file comment). */
static void refuse_rcpt(struct smtp_in *s, const char *logged, int code, const char *enh, const char *text)
{
	s->rcpt_refused = true;
	smtp_in_log_reject(s, "to", logged, code, enh, text);
	smtp_in_reply(s, code, enh, "%s", text);
	if (++s->rejected_rcpts >= s->cfg->max_recipients) {
		log_info("smtpd", "session=%" PRIu64 " client=%s too many refused recipients", s->no, s->ip);
		smtp_in_end_421(s, "4.7.0", "Error: too many refused recipients");
	}
}

static void verify_answered(void *arg, enum verify_result r, const char *reply);
static void verify_cont(struct smtp_in *s, int unused);

static void verify_cancel(struct smtp_in *s)
{
	if (s->verify)
		s->ctx->verifier->cancel(s->ctx->verifier->impl, s->verify);
	s->verify = NULL;
}

/*
 * recipients = callout, for an address the file does not list: what was
 * learned from the primary answers at once; otherwise the primary is asked
 * and the command waits, then runs again with the answer (s->verify_have).
 * False: accepted, go on. True: refused, or waiting.
 */
static bool rcpt_by_primary(struct smtp_in *s, const struct smtp_cmd *c, const struct cfg_domain *dom,
			    const char *addr, const char *logged)
{
	enum verify_result r;
	if (s->verify_have) {
		s->verify_have = false;
		r = s->verify_result;
	} else {
		enum learned_verdict v = s->ctx->learned ? learned_get(s->ctx->learned, addr, clock_wall_s(), NULL)
							: LEARNED_UNKNOWN;
		if (v == LEARNED_GOOD)
			return false;
		if (v == LEARNED_BAD) {
			metrics_inc(METRIC_REJECT_UNKNOWN_RCPT);
			refuse_rcpt(s, logged, 550, "5.1.1", "Recipient address rejected: User unknown");
			return true;
		}
		r = VERIFY_TEMPFAIL;
		s->verify_reply[0] = '\0';
		if (s->ctx->verifier) {
			const struct verifier *vf = s->ctx->verifier;
			s->verify = vf->start(vf->impl, dom, addr, verify_answered, s, &r);
			if (s->verify) {
				s->held_verb = c->verb;
				memmove(s->held_args, c->args, c->args_len); /* c may be the command held for the checks */
				s->held_args_len = c->args_len;
				smtp_in_wait(s, verify_cont, verify_cancel);
				return true;
			}
		}
	}
	struct policy_reply pr;
	char text[POLICY_PRIMARY_TEXT_MAX + 64];
	policy_callout_reply(r, s->verify_reply, dom->unknown_during_outage, &pr, text, sizeof(text));
	if (pr.code == 250)
		return false;
	if (pr.code == 550)
		metrics_inc(METRIC_REJECT_UNKNOWN_RCPT);
	refuse_rcpt(s, logged, pr.code, pr.enh, pr.text);
	return true;
}

/*
 * Greylisting (issue 9, smtpd/greylist.h): the first attempt of a (client
 * network, sender, recipient) triplet is deferred, unless the sender passes
 * SPF for a domain that publishes a DMARC policy (it has a name at stake:
 * waiting on it gains nothing). Returns -1 when the RCPT waits (held: it
 * runs again), 0 to go on, 1 when refused (the reply is sent).
 */
static int greylist_step(struct smtp_in *s, const struct smtp_cmd *c, const struct cfg_domain *dom, const char *addr,
			 const char *logged)
{
	if (!dom || !dom->greylist || !s->ctx->greylist)
		return 0;
	if (smtp_in_dnswl_listed(s)) /* known: cmd_rcpt waited for the DNS lists */
		return 0;
	if (s->spf) { /* the exemption needs MAIL FROM's SPF verdict */
		hold_for_checks(s, c);
		return -1;
	}
	bool ran;
	if (!s->auth.null_sender && auth_mailfrom_spf(&s->auth, &ran) == SPF_PASS && ran) {
		enum sender_policy p = smtp_in_auth_sender_policy(s);
		if (p == SENDER_POLICY_PENDING) {
			hold_for_checks(s, c);
			return -1;
		}
		if (p == SENDER_POLICY_YES)
			return 0;
	}
	int64_t retry_in = 0;
	if (greylist_check(s->ctx->greylist, (const struct sockaddr *)&s->peer, s->env.sender, addr, clock_wall_s(),
			   &retry_in))
		return 0;
	char text[80];
	snprintf(text, sizeof(text), "Greylisted, try again in %" PRId64 " seconds", retry_in);
	metrics_inc(METRIC_REJECT_GREYLIST);
	refuse_rcpt(s, logged, 451, "4.7.1", text);
	return 1;
}

/* For smtp_in_milter.c: a recipient the milters let through, or refused. */
void smtp_in_add_rcpt(struct smtp_in *s, const char *addr, const struct smtp_rcpt_params *rp)
{
	add_rcpt(s, addr, rp);
}

void smtp_in_refuse_rcpt(struct smtp_in *s, const char *logged, int code, const char *enh, const char *text)
{
	refuse_rcpt(s, logged, code, enh, text);
}

/* policy_rcpt's refusals, told apart by their codes (policy.c): TLS first, relay, unknown user. */
static void count_policy_refusal(const struct policy_reply *pr)
{
	if (pr->code == 530)
		metrics_inc(METRIC_REJECT_TLS_REQUIRED);
	else if (strcmp(pr->enh, "5.7.1") == 0)
		metrics_inc(METRIC_REJECT_RELAY);
	else if (strcmp(pr->enh, "5.1.1") == 0)
		metrics_inc(METRIC_REJECT_UNKNOWN_RCPT);
}

static void cmd_rcpt(struct smtp_in *s, const struct smtp_cmd *c)
{
	if (needs_helo(s))
		return;
	if (s->state != SMTP_IN_MAIL) {
		smtp_in_reply_error(s, NEED_MAIL.code, NEED_MAIL.enh, NEED_MAIL.text);
		return;
	}
	char args[SMTP_PARAM_LINE_MAX + 1], shown[SMTP_PATH_MAX + 8];
	memcpy(args, c->args, c->args_len);
	args[c->args_len] = '\0';
	struct mailaddr to;
	struct smtp_rcpt_params rp;
	enum smtp_err e = SMTP_ERR_NONE;
	if (smtp_parse_rcpt(c->args, c->args_len, s->env.smtputf8, &to, &rp, &e) < 0) {
		s->rcpt_refused = true;
		reply_parse_error(s, e, "to", args);
		return;
	}
	const char *logged = log_value(&to, args, shown, sizeof(shown));
	/* The DNS lists (smtp_in_connect.c): the first RCPT waits for them, so the refusal names the recipient. */
	if (smtp_in_dnsbl_pending(s)) {
		hold_for_checks(s, c);
		return;
	}
	if (smtp_in_dnsbl_refuse(s, logged))
		return;
	if (s->env.nrcpt >= s->cfg->max_recipients) {
		smtp_in_log_reject(s, "to", logged, 452, "4.5.3", "Error: too many recipients");
		smtp_in_reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	struct policy_reply pr;
	char addr[SMTP_PATH_MAX + 1];
	policy_rcpt(s->cfg, &to, smtp_in_is_encrypted(s), &pr, addr, sizeof(addr));
	bool ask_primary = pr.code == POLICY_ASK_PRIMARY;
	if (pr.code != 250 && !ask_primary) {
		count_policy_refusal(&pr);
		refuse_rcpt(s, logged, pr.code, pr.enh, pr.text);
		return;
	}
	const struct cfg_domain *dom = cfg_find_domain(s->cfg, to.domain);
	/* Standby mode: while the primary answers, its mail goes there (base/standby.h). */
	if (dom && dom->accept == ACCEPT_WHEN_PRIMARY_DOWN && standby_primary_up(s->ctx->standby, dom->name)) {
		metrics_inc(METRIC_REJECT_STANDBY);
		refuse_rcpt(s, logged, 451, "4.7.0", "Primary is up, deliver there");
		return;
	}
	/* SPF, for a domain that asked for reject (auth_step.h: the check runs from MAIL FROM). */
	if (dom && dom->spf == SPF_MODE_REJECT && smtp_in_auth_spf_pending(s)) {
		hold_for_checks(s, c);
		return;
	}
	char why[AUTHRES_MAX_TEXT + 64];
	struct auth_reply ar;
	if (auth_rcpt_refusal(dom, &s->auth, why, sizeof(why), &ar)) {
		metrics_inc(METRIC_REJECT_SPF);
		refuse_rcpt(s, logged, ar.code, ar.enh, ar.text);
		return;
	}
	if (greylist_step(s, c, dom, addr, logged) != 0)
		return;
	if (ask_primary && rcpt_by_primary(s, c, dom, addr, logged))
		return;
	if (smtp_in_milter_rcpt(s, addr, &rp))
		return; /* the milters answer */
	add_rcpt(s, addr, &rp);
	smtp_in_reply(s, 250, "2.1.5", "Ok");
}

/* --- DATA, BDAT --------------------------------------------------------- */

/* The reply for DATA or BDAT when there is nothing to send it for, or NULL. */
static const struct canned *no_transaction_reply(const struct smtp_in *s)
{
	if (s->state == SMTP_IN_HELO)
		return &NEED_HELO;
	if (s->state != SMTP_IN_MAIL)
		return &NEED_MAIL;
	if (s->env.nrcpt == 0)
		return s->rcpt_refused ? &NO_VALID_RCPT : &NEED_RCPT;
	return NULL;
}

static void cmd_data(struct smtp_in *s, const struct smtp_cmd *c)
{
	const struct canned *err = no_transaction_reply(s);
	if (!err && s->bdat_used)
		err = &DATA_AFTER_BDAT;
	if (!err && c->args_len)
		err = &DATA_SYNTAX;
	if (err) {
		smtp_in_reply_error(s, err->code, err->enh, err->text);
		return;
	}
	smtp_in_txn_begin_content(s);
	s->state = SMTP_IN_DATA;
	smtp_in_set_timeout(s, s->cfg->data_timeout);
	smtp_in_content_started(s);
	smtp_in_reply(s, 354, "", "End data with <CR><LF>.<CR><LF>");
}

static void cmd_bdat(struct smtp_in *s, const struct smtp_cmd *c)
{
	uint64_t size;
	bool last;
	if (smtp_parse_bdat(c->args, c->args_len, &size, &last) < 0) {
		/* The chunk's length is unknown, so the stream cannot be followed. */
		smtp_in_reply(s, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
		smtp_in_close_after_reply(s);
		return;
	}
	s->bdat_error = no_transaction_reply(s);
	s->before_bdat = s->state;
	s->bdat_left = size;
	s->bdat_last = last;
	bool first_chunk = !s->bdat_used;
	if (!s->bdat_error) {
		s->bdat_used = true;
		smtp_in_txn_begin_content(s);
	}
	s->state = SMTP_IN_BDAT;
	if (first_chunk && s->bdat_used)
		smtp_in_content_started(s); /* the data rate spans the message, not one chunk */
	if (size == 0) {
		smtp_in_end_of_chunk(s);
		return;
	}
	smtp_in_set_timeout(s, s->cfg->data_timeout);
}

/* --- the rest ----------------------------------------------------------- */

static void cmd_rset(struct smtp_in *s, const struct smtp_cmd *c)
{
	if (smtp_in_auth_would_abandon(s, NULL)) {
		hold_for_checks(s, c);
		return;
	}
	if (smtp_in_txn_end(s, false))
		return;
	smtp_in_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	smtp_in_reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	smtp_in_reply(s, 221, "2.0.0", "Bye");
	smtp_in_close_after_reply(s);
}

static void cmd_vrfy(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	/* Never confirm addresses: that would hand out the recipient list. */
	smtp_in_reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_help(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	smtp_in_reply(s, 214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY");
}

/*
 * RFC 3207. Not inside a transaction (the envelope would straddle clear and
 * encrypted halves), and only once. smtp_in_start_tls does the rest,
 * including throwing away whatever was pipelined behind the command.
 */
static void cmd_starttls(struct smtp_in *s, const struct smtp_cmd *c)
{
	static const struct canned syntax = {501, "5.5.4", "Syntax: STARTTLS"};
	static const struct canned twice = {503, "5.5.1", "Error: TLS already active"};
	static const struct canned in_txn = {503, "5.5.1", "Error: STARTTLS not allowed inside a transaction"};
	const struct canned *err = c->args_len ? &syntax
				   : smtp_in_is_encrypted(s) ? &twice
				   : s->state == SMTP_IN_MAIL ? &in_txn
							      : NULL;
	if (!s->ctx->tls) {
		smtp_in_reply_error(s, 502, "5.5.1", "Error: command not implemented");
		return;
	}
	if (err) {
		smtp_in_reply_error(s, err->code, err->enh, err->text);
		return;
	}
	smtp_in_start_tls(s);
}

static void cmd_not_offered(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	smtp_in_reply_error(s, 502, "5.5.1", "Error: command not implemented");
}

static void cmd_unknown(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	smtp_in_reply_error(s, 500, "5.5.2", "Error: command not recognized");
}

typedef void smtp_cmd_fn(struct smtp_in *s, const struct smtp_cmd *c);

static smtp_cmd_fn *const handlers[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = cmd_unknown,
	[SMTP_VERB_HELO] = cmd_helo_only,
	[SMTP_VERB_EHLO] = cmd_ehlo,
	[SMTP_VERB_MAIL] = cmd_mail,
	[SMTP_VERB_RCPT] = cmd_rcpt,
	[SMTP_VERB_DATA] = cmd_data,
	[SMTP_VERB_BDAT] = cmd_bdat,
	[SMTP_VERB_RSET] = cmd_rset,
	[SMTP_VERB_NOOP] = cmd_noop,
	[SMTP_VERB_QUIT] = cmd_quit,
	[SMTP_VERB_VRFY] = cmd_vrfy,
	[SMTP_VERB_EXPN] = cmd_not_offered,
	[SMTP_VERB_HELP] = cmd_help,
	[SMTP_VERB_STARTTLS] = cmd_starttls,
	[SMTP_VERB_AUTH] = cmd_not_offered,
};

/* The checks a held command waited on answered (or ran out of time): it runs again. */
static void rerun_held(struct smtp_in *s, int unused)
{
	(void)unused;
	struct smtp_cmd c = {.verb = s->held_verb, .args = s->held_args, .args_len = s->held_args_len};
	handlers[c.verb](s, &c);
	if (!s->auth_waiting)
		smtp_in_auth_wait_over(s); /* answered: the next wait has a clock of its own */
}

/* The primary answered (the verifier's callback; the session is alive: it waits on it). */
static void verify_answered(void *arg, enum verify_result r, const char *reply)
{
	struct smtp_in *s = arg;
	s->verify = NULL;
	s->verify_have = true;
	s->verify_result = r;
	policy_sanitise_reply(reply ? reply : "", s->verify_reply, sizeof(s->verify_reply));
	smtp_in_resume(s, 0);
}

/* The RCPT that waited on the primary runs again, with the answer in s->verify_result. */
static void verify_cont(struct smtp_in *s, int unused)
{
	(void)unused;
	struct smtp_cmd c = {.verb = s->held_verb, .args = s->held_args, .args_len = s->held_args_len};
	handlers[c.verb](s, &c);
	s->verify_have = false;
}

void smtp_in_command(struct smtp_in *s, const char *line, size_t n)
{
	struct smtp_cmd c;
	if (smtp_parse_cmd(line, n, &c) < 0) {
		smtp_in_reply_error(s, 500, "5.5.2", "Error: bad syntax");
		return;
	}
	bool long_ok = c.verb == SMTP_VERB_MAIL || c.verb == SMTP_VERB_RCPT;
	if (!long_ok && n + 2 > SMTP_CMD_LINE_MAX) {
		smtp_in_reply_error(s, 500, "5.5.2", "Error: line too long");
		return;
	}
	handlers[c.verb](s, &c);
}
