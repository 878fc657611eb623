/*
 * smtp_in_milter: a session's calls into its milters (milter/milter.h),
 * when `[server] milter` is set. MAIL and RCPT wait (smtp_in_wait) for the
 * milters' verdict before their reply; the content is copied to them as it
 * goes to the spool (our Received: first, then what hdr_strip passes), the
 * header section split into fields and kept in memory (bounded by
 * MILTER_HEAD_MAX, held against max_pending_bytes) so that their changes
 * can be applied; the end of the message waits for their verdict before
 * the commit. Called by smtp_in_cmd.c (MAIL, RCPT, reset), smtp_in_data.c
 * (content, end of message) and smtp_in.c (free).
 *
 * What a verdict does: reject and tempfail (or the code a milter gave,
 * 4xx/5xx only) answer the command (at RCPT: that recipient only); discard
 * answers 250 and drops the message (logged); a milter that fails gives the
 * default action (milter_default_action). Header changes are stored beside
 * the body (env.head, sent in place of the stored header section); a
 * replaced body makes a new spool transaction (Received: and the header
 * section, then the new body); quarantine stores the message held
 * (env.quarantine: never delivered, shown by `queue list`).
 *
 * Invariants: s->milter exists from the first MAIL of a session with
 * milters to the session's end; s->milter_held is what this file holds
 * with spool_hold_bytes, released whenever the message ends.
 */
#include "smtp_in_int.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/metrics.h"
#include "milter/milter.h"
#include "milter/milter_edit.h"

static void sync_hold(struct smtp_in *s)
{
	size_t now = s->milter ? s->mhead.len + milter_sess_held(s->milter) : s->mhead.len;
	if (now > s->milter_held)
		spool_hold_bytes(s->ctx->sp, now - s->milter_held);
	else if (now < s->milter_held)
		spool_release_bytes(s->ctx->sp, s->milter_held - now);
	s->milter_held = now;
}

static void held_changed(void *arg)
{
	sync_hold(arg);
}

static void conn_info(const struct smtp_in *s, struct milter_conn_info *ci, char *qid, char *name, size_t namelen)
{
	const struct sockaddr *sa = (const struct sockaddr *)&s->peer;
	if (fmt(name, namelen, "[%s]", s->ip) < 0)
		name[0] = '\0';
	qid[0] = '\0';
	if (s->tx)
		spool_id_str(spool_txn_id(s->tx), qid);
	*ci = (struct milter_conn_info){
		.client_addr = s->ip,
		.client_name = name,
		.family = sa->sa_family,
		.client_port = sa->sa_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port)
							 : ntohs(((const struct sockaddr_in *)sa)->sin_port),
		.hostname = s->cfg->hostname,
		.helo = s->helo,
		.tls_version = s->tls.version,
		.queue_id = qid,
	};
}

#define CONN_INFO(s, ci)                  \
	char qid_[17], name_[INET6_ADDRSTRLEN + 3]; \
	struct milter_conn_info ci;       \
	conn_info(s, &ci, qid_, name_, sizeof(name_))

/* The milters' wait was withdrawn (server teardown). */
static void cancel_milter(struct smtp_in *s)
{
	milter_sess_cancel(s->milter);
}

static void milter_done(void *arg, const struct milter_verdict *v)
{
	struct smtp_in *s = arg;
	s->mverdict = *v;
	smtp_in_resume(s, 0);
}

static void log_verdict(struct smtp_in *s, const char *stage, const struct milter_verdict *v)
{
	log_info("smtpd", "session=%" PRIu64 " client=%s milter=%s stage=%s verdict=%s%s code=%d text=\"%s\"", s->no,
		 s->ip, v->milter ? v->milter : "-", stage,
		 v->action == MILTER_REJECT ? "reject" : v->action == MILTER_TEMPFAIL ? "tempfail" : "discard",
		 v->by_default ? " (default action)" : "", v->code, v->text);
}

/* --- MAIL, RCPT ---------------------------------------------------------------- */

static void mail_answered(struct smtp_in *s, int unused)
{
	(void)unused;
	const struct milter_verdict *v = &s->mverdict;
	if (v->action == MILTER_REJECT || v->action == MILTER_TEMPFAIL) {
		log_verdict(s, "mail", v);
		metrics_inc(METRIC_REJECT_MILTER);
		smtp_in_log_reject(s, "from", s->env.sender, v->code, v->enh, v->text);
		smtp_in_reply(s, v->code, v->enh, "%s", v->text);
		smtp_in_txn_reset(s);
		return;
	}
	if (v->action == MILTER_DISCARD) {
		log_verdict(s, "mail", v);
		s->milter_discard = true;
	}
	smtp_in_reply(s, 250, "2.1.0", "Ok");
}

bool smtp_in_milter_mail(struct smtp_in *s)
{
	if (!s->cfg->nmilters)
		return false;
	if (!s->milter) {
		struct milter_params p = {
			.specs = s->cfg->milters,
			.n = s->cfg->nmilters,
			.dflt = s->cfg->milter_default_accept ? MILTER_DEFAULT_ACCEPT : MILTER_DEFAULT_TEMPFAIL,
			.connect_timeout_s = s->cfg->milter_connect_timeout,
			.command_timeout_s = s->cfg->milter_command_timeout,
			.content_timeout_s = s->cfg->milter_content_timeout,
			.max_message_size = s->cfg->max_message_size,
			.held_changed = held_changed,
			.held_arg = s,
		};
		s->milter = milter_sess_new(s->ctx->base, &p);
	}
	char from[SMTP_PATH_MAX + 3];
	if (fmt(from, sizeof(from), "<%s>", s->env.sender) < 0)
		from[0] = '\0'; /* cannot happen: the path was parsed within SMTP_PATH_MAX */
	const char *args[] = {from};
	CONN_INFO(s, ci);
	smtp_in_wait(s, mail_answered, cancel_milter);
	milter_sess_mail(s->milter, &ci, args, 1, milter_done, s);
	return true;
}

static void rcpt_answered(struct smtp_in *s, int unused)
{
	(void)unused;
	const struct milter_verdict *v = &s->mverdict;
	if (v->action == MILTER_REJECT || v->action == MILTER_TEMPFAIL) {
		log_verdict(s, "rcpt", v);
		metrics_inc(METRIC_REJECT_MILTER);
		smtp_in_refuse_rcpt(s, s->mrcpt_addr, v->code, v->enh, v->text);
		return;
	}
	if (v->action == MILTER_DISCARD) {
		log_verdict(s, "rcpt", v);
		s->milter_discard = true;
	}
	smtp_in_add_rcpt(s, s->mrcpt_addr, &s->mrcpt_params);
	smtp_in_reply(s, 250, "2.1.5", "Ok");
}

bool smtp_in_milter_rcpt(struct smtp_in *s, const char *addr, const struct smtp_rcpt_params *rp)
{
	if (!s->milter)
		return false;
	if (fmt(s->mrcpt_addr, sizeof(s->mrcpt_addr), "%s", addr) < 0)
		return false; /* cannot happen: addr fits SMTP_PATH_MAX */
	s->mrcpt_params = *rp;
	char to[SMTP_PATH_MAX + 3];
	if (fmt(to, sizeof(to), "<%s>", addr) < 0)
		return false;
	const char *args[] = {to};
	CONN_INFO(s, ci);
	smtp_in_wait(s, rcpt_answered, cancel_milter);
	milter_sess_rcpt(s->milter, &ci, args, 1, milter_done, s);
	return true;
}

/* --- content ------------------------------------------------------------------- */

void smtp_in_milter_content_start(struct smtp_in *s)
{
	if (!s->milter)
		return;
	buf_reset(&s->mhead);
	s->mhead_done = false;
	s->mhead_over = false;
	s->mhead_scan = 0;
	CONN_INFO(s, ci);
	milter_sess_data(s->milter, &ci);
}

/* The header section is complete: its fields go to the milters, then the end of headers. */
static void send_headers(struct smtp_in *s)
{
	struct milter_field f;
	size_t off = 0;
	struct buf v = {0};
	const char *h = (const char *)s->mhead.data;
	while (milter_next_field(h, s->mhead.len, &off, &f)) {
		buf_reset(&v);
		milter_value_for_milter(f.value, f.value_len, &v);
		milter_sess_header(s->milter, f.name, f.name_len, (const char *)v.data, v.len);
	}
	buf_free(&v);
	milter_sess_eoh(s->milter);
	s->mhead_done = true;
}

/* What goes to the spool goes to the milters: the header section is kept until its blank line, then the body streams. */
void smtp_in_milter_content(struct smtp_in *s, const void *p, size_t n)
{
	if (!s->milter || s->mhead_over || n == 0)
		return;
	if (s->mhead_done) {
		milter_sess_body(s->milter, p, n);
		sync_hold(s);
		return;
	}
	buf_append(&s->mhead, p, n);
	const char *h = (const char *)s->mhead.data;
	size_t from = s->mhead_scan > 2 ? s->mhead_scan - 2 : 0;
	const char *end = NULL;
	for (size_t i = from; i + 3 <= s->mhead.len; i++)
		if (h[i] == '\n' && h[i + 1] == '\r' && h[i + 2] == '\n') {
			end = h + i + 1;
			break;
		}
	s->mhead_scan = s->mhead.len;
	if (!end) {
		if (s->mhead.len > MILTER_HEAD_MAX) { /* the milters get no headers: their verdict is the default */
			s->mhead_over = true;
			buf_free(&s->mhead);
		}
		sync_hold(s);
		return;
	}
	size_t head_len = (size_t)(end - h);
	size_t body_at = head_len + 2; /* after the blank line */
	struct buf rest = {0};
	buf_append(&rest, h + body_at, s->mhead.len - body_at);
	s->mhead.len = head_len;
	s->mhead_over = head_len > MILTER_HEAD_MAX;
	if (!s->mhead_over)
		send_headers(s);
	if (rest.len && !s->mhead_over)
		milter_sess_body(s->milter, rest.data, rest.len);
	buf_free(&rest);
	sync_hold(s);
}

/* --- the end of the message ------------------------------------------------------- */

static void eom_answered(struct smtp_in *s, int unused);

bool smtp_in_milter_eom(struct smtp_in *s, smtp_in_cont_fn *then)
{
	if (!s->milter)
		return false;
	if (!s->mhead_done && !s->mhead_over) /* no blank line: all of it was header */
		send_headers(s);
	s->milter_then = then;
	CONN_INFO(s, ci);
	smtp_in_wait(s, eom_answered, cancel_milter);
	milter_sess_eom(s->milter, &ci, milter_done, s);
	return true;
}

/* The body a milter gave: CRLF line ends (a bare LF becomes CRLF), ending with one. */
static void write_new_body(struct smtp_in *s, const struct buf *body)
{
	struct buf b = {0};
	const unsigned char *p = body->data;
	for (size_t i = 0; i < body->len; i++) {
		if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r'))
			buf_append(&b, "\r", 1);
		buf_append(&b, p + i, 1);
		if (b.len >= SPOOL_DATA_CHUNK) {
			spool_txn_write(s->tx, b.data, b.len);
			buf_reset(&b);
		}
	}
	if (body->len && p[body->len - 1] != '\n')
		buf_append(&b, "\r\n", 2);
	spool_txn_write(s->tx, b.data, b.len);
	buf_free(&b);
}

/*
 * A new transaction has a new queue id: our Received: header (the first
 * field we kept, unless a milter changed it) says the new one. Both ids are
 * 16 hex digits, so the field keeps its length.
 */
static void renew_received_id(struct smtp_in *s, struct buf *head, const char *old_id)
{
	size_t off = 0;
	struct milter_field ours;
	if (!milter_next_field((const char *)s->mhead.data, s->mhead.len, &off, &ours))
		return;
	unsigned char *at = memmem(head->data, head->len, ours.start, ours.len);
	char pat[24], new_id[17];
	if (!at || fmt(pat, sizeof(pat), " id %s", old_id) < 0)
		return;
	unsigned char *idp = memmem(at, ours.len, pat, strlen(pat));
	if (!idp)
		return;
	spool_id_str(spool_txn_id(s->tx), new_id);
	memcpy(idp + 4, new_id, 16);
}

/* Header changes and a new body become part of what is stored. */
static void apply_changes(struct smtp_in *s, const struct milter_changes *ch)
{
	char id[17];
	spool_id_str(spool_txn_id(s->tx), id);
	struct buf head = {0};
	if (ch->nedits)
		milter_edit_apply((const char *)s->mhead.data, s->mhead.len, ch->edits, ch->nedits, &head);
	if (ch->body_replaced) {
		/* a new transaction: the header section (changed or not), the blank line, the new body */
		spool_txn_abort(s->tx);
		s->tx = spool_txn_begin(s->ctx->sp);
		if (!ch->nedits)
			buf_append(&head, s->mhead.data, s->mhead.len);
		renew_received_id(s, &head, id);
		spool_txn_write(s->tx, head.data, head.len);
		spool_txn_write(s->tx, "\r\n", 2);
		write_new_body(s, &ch->body);
	} else if (ch->nedits) {
		s->env.head = xstrndup((const char *)head.data, head.len);
		s->env.head_skip = s->mhead.len;
	}
	if (ch->quarantine)
		s->env.quarantine = spool_reply_dup(ch->quarantine, strlen(ch->quarantine));
	if (ch->nedits || ch->body_replaced || ch->quarantine)
		log_info("smtpd", "session=%" PRIu64 " client=%s id=%s milter header-changes=%zu body-replaced=%s%s%s%s",
			 s->no, s->ip, id, ch->nedits, ch->body_replaced ? "yes" : "no",
			 ch->quarantine ? " quarantined=\"" : "", ch->quarantine ? s->env.quarantine : "",
			 ch->quarantine ? "\"" : "");
	buf_free(&head);
}

static void eom_answered(struct smtp_in *s, int unused)
{
	(void)unused;
	struct milter_verdict v = s->mverdict;
	if (v.action == MILTER_CONTINUE && s->milter_discard) {
		v = (struct milter_verdict){.action = MILTER_DISCARD};
	} else if (v.action == MILTER_CONTINUE && s->mhead_over) {
		/*
		 * The milters never saw this message (its header section is over
		 * MILTER_HEAD_MAX). milter_default_action is for a milter that is
		 * down, not for a client that chooses to skip the filters: refused.
		 */
		v = (struct milter_verdict){.action = MILTER_REJECT, .code = 552};
		memcpy(v.enh, "5.3.4", 6);
		snprintf(v.text, sizeof(v.text), "Header section too long for the content filters");
	}
	if (v.action == MILTER_REJECT || v.action == MILTER_TEMPFAIL) {
		log_verdict(s, "eom", &v);
		metrics_inc(METRIC_REJECT_MILTER);
		smtp_in_reply(s, v.code, v.enh, "%s", v.text);
		smtp_in_log_reject(s, "from", s->env.sender, v.code, v.enh, v.text);
		smtp_in_txn_end(s, false);
		return;
	}
	if (v.action == MILTER_DISCARD) {
		char id[17];
		spool_id_str(spool_txn_id(s->tx), id);
		log_info("smtpd", "session=%" PRIu64 " client=%s id=%s from=<%s> nrcpt=%" PRIu32
			 " result=discarded milter=%s", s->no, s->ip, id, s->env.sender, s->env.nrcpt,
			 v.milter ? v.milter : "-");
		smtp_in_reply(s, 250, "2.0.0", "Ok: queued as %s", id);
		smtp_in_txn_end(s, true);
		return;
	}
	if (!s->mhead_over)
		apply_changes(s, milter_sess_changes(s->milter));
	smtp_in_cont_fn *then = s->milter_then;
	s->milter_then = NULL;
	then(s, 0);
}

/* --- ends -------------------------------------------------------------------------- */

void smtp_in_milter_txn_reset(struct smtp_in *s)
{
	if (s->milter)
		milter_sess_end_message(s->milter);
	buf_free(&s->mhead);
	s->mhead_done = false;
	s->mhead_over = false;
	s->mhead_scan = 0;
	s->milter_discard = false;
	sync_hold(s);
}

void smtp_in_milter_free(struct smtp_in *s)
{
	milter_sess_free(s->milter);
	s->milter = NULL;
	buf_free(&s->mhead);
	sync_hold(s);
}
