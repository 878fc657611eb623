/*
 * smtp_in: one inbound SMTP session (RFC 5321, with PIPELINING, SIZE,
 * 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, CHUNKING and DSN).
 *
 * The session reads commands line by line from its bufferevent, replies
 * through the same bufferevent, and streams message content into a spool
 * transaction. After the end of data it stops reading and waits for the
 * spool's durability callback; only then does it answer 250 and go on with
 * whatever the client pipelined behind the message.
 *
 * States: HELO (greeted) -> READY (after HELO/EHLO) -> MAIL (transaction
 * open; recipients collect in env) -> DATA or BDAT (content) -> COMMIT
 * (waiting for the disk) -> READY. CLOSING flushes the last reply. The TLS
 * issue adds STARTTLS to the command table; after the handshake it must drop
 * the transaction (txn_reset) and the HELO name and return to HELO
 * (RFC 3207 4.2).
 * Error policy: peer input never aborts; every bad input gets a reply with
 * an RFC 3463 code, and max_errors of them end the session with 421.
 */
#include "smtp_in.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dedup.h"
#include "base/log.h"
#include "msg_hdr.h"
#include "policy.h"
#include "smtp_parse.h"
#include "spool/spool.h"

enum smtp_in_state {
	SMTP_IN_HELO,
	SMTP_IN_READY,
	SMTP_IN_MAIL,
	SMTP_IN_DATA,
	SMTP_IN_BDAT,
	SMTP_IN_COMMIT,
	SMTP_IN_CLOSING,
};

struct smtp_in {
	const struct smtp_in_ctx *ctx;
	const struct cfg *cfg;   /* a reference, held for the session's life */
	struct bufferevent *bev;
	uint64_t no;
	char ip[INET6_ADDRSTRLEN];
	char client_key[INET6_ADDRSTRLEN + 4]; /* what max_sessions_per_ip counts */
	char *helo;
	bool esmtp;
	enum smtp_in_state state;
	uint32_t errors;
	bool discarding;     /* dropping the rest of an over-long command line */
	bool shutdown;       /* server stopping: close after this transaction */
	uint32_t messages;

	/* The transaction. env collects what the spool will store. */
	struct spool_env env;
	uint32_t rejected_rcpts;
	struct spool_txn *tx;
	struct smtp_data_dec dec;
	struct msg_hdr *hdr;    /* Received: count, Message-ID, body hash */
	struct buf dbuf;
	bool too_big;
	uint64_t bdat_left;
	bool bdat_last;
	const struct canned *bdat_error; /* the reply owed when the chunk is consumed */
	enum smtp_in_state before_bdat;
	bool bdat_used;
	bool out_full;       /* stopped reading until the client reads its replies */
};

static void process_input(struct smtp_in *s);

/*
 * Unread replies we hold for one client. A client that pipelines commands
 * and never reads would otherwise make the output buffer grow without bound;
 * past this we stop reading it until the replies have been taken.
 */
#define SMTP_IN_OUT_MAX (64 * 1024)

struct canned {
	int code;
	const char *enh;
	const char *text;
};

static const struct canned NEED_HELO = {503, "5.5.1", "Error: send HELO/EHLO first"};
static const struct canned NEED_MAIL = {503, "5.5.1", "Error: need MAIL command"};
static const struct canned NEED_RCPT = {503, "5.5.1", "Error: need RCPT command"};
static const struct canned NO_VALID_RCPT = {554, "5.5.1", "Error: no valid recipients"};
static const struct canned DATA_AFTER_BDAT = {503, "5.5.1", "Error: DATA after BDAT"};
static const struct canned DATA_SYNTAX = {501, "5.5.4", "Syntax: DATA"};
static const struct canned TOO_BIG = {552, "5.3.4", "Message size exceeds fixed maximum message size"};

/* --- replies ----------------------------------------------------------- */

static void reply(struct smtp_in *s, int code, const char *enh, const char *f, ...) PRINTF_LIKE(4, 5);
static void reply(struct smtp_in *s, int code, const char *enh, const char *f, ...)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	char text[512];
	va_list ap;
	va_start(ap, f);
	vsnprintf(text, sizeof(text), f, ap);
	va_end(ap);
	if (enh[0])
		evbuffer_add_printf(out, "%d %s %s\r\n", code, enh, text);
	else
		evbuffer_add_printf(out, "%d %s\r\n", code, text);
}

static void hdr_drop(struct smtp_in *s)
{
	if (s->hdr) {
		msg_hdr_free(s->hdr);
		free(s->hdr);
		s->hdr = NULL;
	}
}

static void session_free(struct smtp_in *s)
{
	if (s->tx) {
		if (s->state == SMTP_IN_COMMIT)
			spool_txn_forget(s->tx);
		else
			spool_txn_abort(s->tx);
	}
	hdr_drop(s); /* a session that ends in DATA, BDAT or COMMIT still holds it */
	log_info("smtpd", "session=%" PRIu64 " client=%s disconnect messages=%" PRIu32 " errors=%" PRIu32, s->no,
		 s->ip, s->messages, s->errors);
	s->ctx->ended(s->ctx->owner, s->no, s->client_key);
	cfg_unref(s->cfg);
	bufferevent_free(s->bev);
	spool_env_free(&s->env);
	buf_free(&s->dbuf);
	free(s->helo);
	free(s);
}

static void on_flushed(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct smtp_in *s = arg;
	if (s->state == SMTP_IN_CLOSING)
		session_free(s);
}

/* Sends what is queued, then closes: the state that follows 221 and 421. */
static void close_after_reply(struct smtp_in *s)
{
	s->state = SMTP_IN_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setcb(s->bev, NULL, on_flushed, NULL, s);
	bufferevent_enable(s->bev, EV_WRITE);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		session_free(s);
}

/* A reply to bad input: counts toward max_errors. */
static void reply_error(struct smtp_in *s, int code, const char *enh, const char *text)
{
	reply(s, code, enh, "%s", text);
	if (++s->errors >= s->cfg->max_errors) {
		log_info("smtpd", "session=%" PRIu64 " client=%s too many errors", s->no, s->ip);
		reply(s, 421, "4.7.0", "%s Error: too many errors, closing connection", s->cfg->hostname);
		close_after_reply(s);
	}
}

static void log_reject(struct smtp_in *s, const char *what, const char *arg, int code, const char *enh,
		       const char *text)
{
	char safe[160];
	log_info("smtpd", "session=%" PRIu64 " client=%s %s=\"%s\" reject=\"%d %s %s\"", s->no, s->ip, what,
		 log_safe(safe, sizeof(safe), arg, strlen(arg)), code, enh, text);
}

/* --- transaction ------------------------------------------------------- */

static void txn_reset(struct smtp_in *s)
{
	if (s->tx && s->state != SMTP_IN_COMMIT)
		spool_txn_abort(s->tx);
	s->tx = NULL;
	spool_env_free(&s->env);
	s->rejected_rcpts = 0;
	s->too_big = false;
	s->bdat_used = false;
	s->bdat_error = NULL;
	memset(&s->dec, 0, sizeof(s->dec));
	buf_free(&s->dbuf);
	hdr_drop(s);
	if (s->state != SMTP_IN_HELO && s->state != SMTP_IN_CLOSING)
		s->state = SMTP_IN_READY;
}

static const char *proto_keyword(const struct smtp_in *s)
{
	/* RFC 3848 and RFC 6531 3.7.3 "with" keywords. */
	if (!s->esmtp)
		return "SMTP";
	return s->env.smtputf8 ? "UTF8SMTP" : "ESMTP";
}

static void write_received(struct smtp_in *s)
{
	char id[17], date[64], rcpt[SMTP_PATH_MAX + 16] = "";
	time_t now = time(NULL);
	struct tm tm;
	spool_id_str(spool_txn_id(s->tx), id);
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (s->env.nrcpt == 1 && fmt(rcpt, sizeof(rcpt), "\r\n\tfor <%s>", s->env.rcpts[0].addr) < 0)
		rcpt[0] = '\0';
	struct buf b = {0};
	buf_printf(&b, "Received: from %s ([%s])\r\n\tby %s (mxvault) with %s id %s%s;\r\n\t%s\r\n", s->helo, s->ip,
		   s->cfg->hostname, proto_keyword(s), id, rcpt, date);
	spool_txn_write(s->tx, b.data, b.len);
	buf_free(&b);
}

static void txn_begin_content(struct smtp_in *s)
{
	if (s->tx)
		return;
	s->tx = spool_txn_begin(s->ctx->sp);
	memset(&s->dec, 0, sizeof(s->dec));
	s->hdr = xmalloc(sizeof(*s->hdr));
	msg_hdr_init(s->hdr);
	write_received(s);
}

static void content_out(struct smtp_in *s, const void *p, size_t n)
{
	if (s->too_big || n == 0)
		return;
	if (spool_txn_size(s->tx) + n > s->cfg->max_message_size) {
		s->too_big = true;
		return;
	}
	msg_hdr_feed(s->hdr, p, n);
	spool_txn_write(s->tx, p, n);
}

static void on_committed(void *arg, int err)
{
	struct smtp_in *s = arg;
	char id[17];
	uint64_t qid = spool_txn_id(s->tx);
	spool_id_str(qid, id);
	s->tx = NULL; /* the spool frees it */
	if (err == 0) {
		s->messages++;
		struct dedup *dd = s->ctx->dedup;
		if (dd && s->env.has_dedup_key)
			dedup_add(dd, s->env.dedup_key, qid, clock_wall_s());
		reply(s, 250, "2.0.0", "Ok: queued as %s", id);
		log_info("smtpd", "session=%" PRIu64 " client=%s id=%s from=<%s> nrcpt=%" PRIu32 " result=queued", s->no,
			 s->ip, id, s->env.sender, s->env.nrcpt);
	} else if (err == -ENOSPC) {
		reply(s, 452, "4.3.1", "Insufficient system storage");
		log_err("smtpd", "session=%" PRIu64 " client=%s id=%s result=deferred reason=\"%s\"", s->no, s->ip, id,
			strerror(-err));
	} else {
		reply(s, 451, "4.3.0", "Error: queue file write error");
		log_err("smtpd", "session=%" PRIu64 " client=%s id=%s result=deferred reason=\"%s\"", s->no, s->ip, id,
			strerror(-err));
	}
	s->state = SMTP_IN_READY;
	txn_reset(s);
	if (s->shutdown) {
		reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
		close_after_reply(s);
		return;
	}
	bufferevent_enable(s->bev, EV_READ);
	process_input(s); /* whatever the client pipelined behind the message */
}

/* Hop limit (RFC 5321 6.3): counting the Received: header we add. */
static bool too_many_hops(const struct smtp_in *s)
{
	return s->hdr->received + 1 > s->cfg->max_hops;
}

/* A message sent again after a lost 250: answer 250 for the copy already queued. */
static bool is_duplicate(struct smtp_in *s)
{
	struct dedup *dd = s->ctx->dedup;
	uint64_t orig;
	if (!dd || !s->hdr->message_id[0])
		return false;
	dedup_key(s->hdr->message_id, &s->env, s->hdr->body_sha256, s->env.dedup_key);
	s->env.has_dedup_key = true;
	if (!dedup_find(dd, s->env.dedup_key, clock_wall_s(), &orig))
		return false;
	char orig_id[17];
	spool_id_str(orig, orig_id);
	reply(s, 250, "2.0.0", "Ok: queued as %s", orig_id);
	log_info("smtpd", "session=%" PRIu64 " client=%s from=<%s> duplicate-of=%s result=accepted-not-stored", s->no,
		 s->ip, s->env.sender, orig_id);
	txn_reset(s);
	return true;
}

/* End of DATA or BDAT LAST: refuse, or hand the message to the spool. */
static void end_of_message(struct smtp_in *s)
{
	const char *why = NULL;
	int code = 0;
	const char *enh = NULL;
	msg_hdr_finish(s->hdr);
	if (s->dec.bare_cr_or_lf && s->cfg->reject_bare_lf) {
		code = 550, enh = "5.6.0", why = "Message contains bare CR or LF characters (not allowed)";
	} else if (s->too_big) {
		code = TOO_BIG.code, enh = TOO_BIG.enh, why = TOO_BIG.text;
	} else if (too_many_hops(s)) {
		code = 554, enh = "5.4.6", why = "Too many hops (Received: headers): mail loop?";
	}
	if (why) {
		reply(s, code, enh, "%s", why);
		log_reject(s, "data", s->env.sender, code, enh, why);
		txn_reset(s);
		return;
	}
	if (is_duplicate(s))
		return;
	s->env.arrival = clock_wall_s();
	s->env.client_addr = xstrdup(s->ip);
	s->env.client_helo = xstrdup(s->helo);
	s->env.proto = xstrdup(proto_keyword(s));
	s->state = SMTP_IN_COMMIT;
	bufferevent_disable(s->bev, EV_READ);
	spool_txn_commit(s->tx, &s->env, on_committed, s);
}

/* --- content ----------------------------------------------------------- */

/* data_timeout while content is owed (DATA, a BDAT chunk), else command_timeout. */
static void set_timeout(struct smtp_in *s, int64_t seconds)
{
	struct timeval tv = {(time_t)seconds, 0};
	bufferevent_set_timeouts(s->bev, &tv, &tv);
}

/* DATA: decode what is buffered; false when more input is needed. */
static bool feed_data(struct smtp_in *s, struct evbuffer *in)
{
	struct evbuffer_iovec v;
	if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
		return false;
	bool done = false;
	buf_reset(&s->dbuf);
	size_t used = smtp_data_feed(&s->dec, v.iov_base, v.iov_len, &s->dbuf, &done);
	content_out(s, s->dbuf.data, s->dbuf.len);
	evbuffer_drain(in, used);
	if (s->dbuf.cap > SPOOL_DATA_CHUNK * 2)
		buf_free(&s->dbuf);
	if (done) {
		set_timeout(s, s->cfg->command_timeout);
		end_of_message(s);
	}
	return true;
}

static void end_of_chunk(struct smtp_in *s)
{
	s->state = s->before_bdat;
	set_timeout(s, s->cfg->command_timeout);
	if (!s->bdat_error && s->too_big)
		s->bdat_error = &TOO_BIG;
	if (s->bdat_error) {
		const struct canned *err = s->bdat_error;
		if (s->state == SMTP_IN_MAIL)
			txn_reset(s);
		reply_error(s, err->code, err->enh, err->text);
		return;
	}
	if (!s->bdat_last) {
		reply(s, 250, "2.0.0", "Ok: chunk received");
		return;
	}
	end_of_message(s);
}

/* BDAT: consume chunk bytes; false when more input is needed. */
static bool feed_bdat(struct smtp_in *s, struct evbuffer *in)
{
	struct evbuffer_iovec v;
	if (s->bdat_left && evbuffer_peek(in, -1, NULL, &v, 1) < 1)
		return false;
	if (s->bdat_left) {
		size_t k = v.iov_len < s->bdat_left ? v.iov_len : (size_t)s->bdat_left;
		if (!s->bdat_error) {
			smtp_data_scan(&s->dec, v.iov_base, k);
			content_out(s, v.iov_base, k);
		}
		evbuffer_drain(in, k);
		s->bdat_left -= k;
	}
	if (s->bdat_left == 0)
		end_of_chunk(s);
	return true;
}

/* --- commands ---------------------------------------------------------- */

static void cmd_helo(struct smtp_in *s, const struct smtp_cmd *c, bool ehlo)
{
	char name[256];
	if (smtp_parse_helo(c->args, c->args_len, name, sizeof(name)) < 0) {
		reply_error(s, 501, "5.5.4", ehlo ? "Syntax: EHLO hostname" : "Syntax: HELO hostname");
		return;
	}
	free(s->helo);
	s->helo = xstrdup(name);
	s->esmtp = ehlo;
	s->state = SMTP_IN_READY;
	txn_reset(s);
	if (!ehlo) {
		reply(s, 250, "", "%s", s->cfg->hostname);
		return;
	}
	evbuffer_add_printf(bufferevent_get_output(s->bev),
			    "250-%s\r\n250-PIPELINING\r\n250-SIZE %" PRIu64 "\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
			    "250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 DSN\r\n",
			    s->cfg->hostname, s->cfg->max_message_size);
}

static void cmd_ehlo_(struct smtp_in *s, const struct smtp_cmd *c)
{
	cmd_helo(s, c, true);
}

static void cmd_helo_(struct smtp_in *s, const struct smtp_cmd *c)
{
	cmd_helo(s, c, false);
}

static void reply_parse_error(struct smtp_in *s, enum smtp_err e, const char *what, const char *arg)
{
	static const struct { int code; const char *enh; const char *text; } r[] = {
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
	log_reject(s, what, arg, r[i].code, enh, r[i].text);
	reply_error(s, r[i].code, enh, r[i].text);
}

static bool needs_helo(struct smtp_in *s)
{
	if (s->state != SMTP_IN_HELO)
		return false;
	reply_error(s, NEED_HELO.code, NEED_HELO.enh, NEED_HELO.text);
	return true;
}

static void cmd_mail(struct smtp_in *s, const struct smtp_cmd *c)
{
	if (needs_helo(s))
		return;
	if (s->state == SMTP_IN_MAIL) {
		reply_error(s, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	struct mailaddr from;
	struct smtp_mail_params mp;
	enum smtp_err e = SMTP_ERR_NONE;
	char arg[SMTP_PARAM_LINE_MAX + 1];
	memcpy(arg, c->args, c->args_len);
	arg[c->args_len] = '\0';
	if (smtp_parse_mail(c->args, c->args_len, &from, &mp, &e) < 0) {
		reply_parse_error(s, e, "from", arg);
		return;
	}
	if (!s->esmtp && (mp.has_size || mp.body || mp.smtputf8 || mp.ret || mp.envid[0])) {
		reply_parse_error(s, SMTP_ERR_PARAM_UNKNOWN, "from", arg);
		return;
	}
	if (mp.has_size && mp.size > s->cfg->max_message_size) {
		log_reject(s, "from", arg, 552, "5.3.4", "Message size exceeds fixed limit");
		reply(s, 552, "5.3.4", "Message size exceeds fixed limit");
		return;
	}
	if (!spool_has_space(s->ctx->sp)) {
		log_reject(s, "from", arg, 452, "4.3.1", "Insufficient system storage");
		reply(s, 452, "4.3.1", "Insufficient system storage");
		return;
	}
	char path[SMTP_PATH_MAX + 8];
	if (smtp_format_path(&from, path, sizeof(path)) < 0) {
		reply_parse_error(s, SMTP_ERR_PATH_TOO_LONG, "from", arg);
		return;
	}
	txn_reset(s);
	path[strlen(path) - 1] = '\0';
	s->env.sender = xstrdup(from.is_null ? "" : path + 1);
	s->env.envid = mp.envid[0] ? xstrdup(mp.envid) : NULL;
	s->env.body = (uint8_t)mp.body;
	s->env.ret = (uint8_t)mp.ret;
	s->env.smtputf8 = mp.smtputf8;
	s->env.size_param = mp.size;
	s->state = SMTP_IN_MAIL;
	reply(s, 250, "2.1.0", "Ok");
}

static bool rcpt_is_duplicate(const struct smtp_in *s, const char *addr)
{
	for (uint32_t i = 0; i < s->env.nrcpt; i++)
		if (ascii_ieq(s->env.rcpts[i].addr, strlen(s->env.rcpts[i].addr), addr, strlen(addr)))
			return true;
	return false;
}

static void cmd_rcpt(struct smtp_in *s, const struct smtp_cmd *c)
{
	if (needs_helo(s))
		return;
	if (s->state != SMTP_IN_MAIL) {
		reply_error(s, NEED_MAIL.code, NEED_MAIL.enh, NEED_MAIL.text);
		return;
	}
	char arg[SMTP_PARAM_LINE_MAX + 1];
	memcpy(arg, c->args, c->args_len);
	arg[c->args_len] = '\0';
	if (s->env.nrcpt >= s->cfg->max_recipients) {
		log_reject(s, "to", arg, 452, "4.5.3", "Error: too many recipients");
		reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	struct mailaddr to;
	struct smtp_rcpt_params rp;
	enum smtp_err e = SMTP_ERR_NONE;
	if (smtp_parse_rcpt(c->args, c->args_len, s->env.smtputf8, &to, &rp, &e) < 0) {
		s->rejected_rcpts++;
		reply_parse_error(s, e, "to", arg);
		return;
	}
	struct policy_reply pr;
	char addr[SMTP_PATH_MAX + 1];
	policy_rcpt(s->cfg, &to, &pr, addr, sizeof(addr));
	if (pr.code != 250) {
		s->rejected_rcpts++;
		log_reject(s, "to", arg, pr.code, pr.enh, pr.text);
		reply_error(s, pr.code, pr.enh, pr.text);
		return;
	}
	if (!rcpt_is_duplicate(s, addr)) {
		s->env.rcpts = xrealloc(s->env.rcpts, (s->env.nrcpt + 1) * sizeof(*s->env.rcpts));
		s->env.rcpts[s->env.nrcpt++] = (struct spool_rcpt){
			.addr = xstrdup(addr),
			.orcpt = rp.orcpt[0] ? xstrdup(rp.orcpt) : NULL,
			.notify = (uint8_t)rp.notify,
		};
	}
	reply(s, 250, "2.1.5", "Ok");
}

/* The reply for DATA or BDAT when there is nothing to send it for, or NULL. */
static const struct canned *no_transaction_reply(const struct smtp_in *s)
{
	if (s->state == SMTP_IN_HELO)
		return &NEED_HELO;
	if (s->state != SMTP_IN_MAIL)
		return &NEED_MAIL;
	if (s->env.nrcpt == 0)
		return s->rejected_rcpts ? &NO_VALID_RCPT : &NEED_RCPT;
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
		reply_error(s, err->code, err->enh, err->text);
		return;
	}
	txn_begin_content(s);
	s->state = SMTP_IN_DATA;
	set_timeout(s, s->cfg->data_timeout);
	reply(s, 354, "", "End data with <CR><LF>.<CR><LF>");
}

static void cmd_bdat(struct smtp_in *s, const struct smtp_cmd *c)
{
	uint64_t size;
	bool last;
	if (smtp_parse_bdat(c->args, c->args_len, &size, &last) < 0) {
		/* The chunk's length is unknown, so the stream cannot be followed. */
		reply(s, 501, "5.5.4", "Syntax: BDAT chunk-size [LAST]");
		close_after_reply(s);
		return;
	}
	s->bdat_error = no_transaction_reply(s);
	s->before_bdat = s->state;
	s->bdat_left = size;
	s->bdat_last = last;
	if (!s->bdat_error) {
		s->bdat_used = true;
		txn_begin_content(s);
	}
	s->state = SMTP_IN_BDAT;
	if (size == 0)
		end_of_chunk(s);
	else
		set_timeout(s, s->cfg->data_timeout);
}

static void cmd_rset(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	txn_reset(s);
	reply(s, 250, "2.0.0", "Ok");
}

static void cmd_noop(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, 250, "2.0.0", "Ok");
}

static void cmd_quit(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, 221, "2.0.0", "Bye");
	close_after_reply(s);
}

static void cmd_vrfy(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	/* Never confirm addresses: that would hand out the recipient list. */
	reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message and attempt delivery");
}

static void cmd_help(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	reply(s, 214, "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY");
}

static void cmd_not_offered(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	reply_error(s, 502, "5.5.1", "Error: command not implemented");
}

static void cmd_unknown(struct smtp_in *s, const struct smtp_cmd *c)
{
	(void)c;
	reply_error(s, 500, "5.5.2", "Error: command not recognized");
}

typedef void smtp_cmd_fn(struct smtp_in *s, const struct smtp_cmd *c);

static smtp_cmd_fn *const handlers[SMTP_VERB_COUNT] = {
	[SMTP_VERB_UNKNOWN] = cmd_unknown,
	[SMTP_VERB_HELO] = cmd_helo_,
	[SMTP_VERB_EHLO] = cmd_ehlo_,
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
	[SMTP_VERB_STARTTLS] = cmd_not_offered, /* the seam for the TLS issue */
	[SMTP_VERB_AUTH] = cmd_not_offered,
};

static void handle_line(struct smtp_in *s, const char *line, size_t n)
{
	struct smtp_cmd c;
	if (smtp_parse_cmd(line, n, &c) < 0) {
		reply_error(s, 500, "5.5.2", "Error: bad syntax");
		return;
	}
	bool long_ok = c.verb == SMTP_VERB_MAIL || c.verb == SMTP_VERB_RCPT;
	if (!long_ok && n + 2 > SMTP_CMD_LINE_MAX) {
		reply_error(s, 500, "5.5.2", "Error: line too long");
		return;
	}
	handlers[c.verb](s, &c);
}

/* Takes one command line off the input; false when more input is needed. */
static bool read_command(struct smtp_in *s, struct evbuffer *in)
{
	size_t avail = evbuffer_get_length(in);
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
	if (eol.pos < 0) {
		if (avail > SMTP_PARAM_LINE_MAX) {
			evbuffer_drain(in, avail);
			s->discarding = true;
		}
		return false;
	}
	size_t len = (size_t)eol.pos + 1;
	if (s->discarding || len > SMTP_PARAM_LINE_MAX) {
		evbuffer_drain(in, len);
		s->discarding = false;
		reply_error(s, 500, "5.5.2", "Error: line too long");
		return true;
	}
	char line[SMTP_PARAM_LINE_MAX + 1];
	evbuffer_remove(in, line, len);
	if (len < 2 || line[len - 2] != '\r' || memchr(line, '\r', len - 2)) {
		reply_error(s, 500, "5.5.2", "Error: bare CR or LF in command (lines end with CRLF)");
		return true;
	}
	handle_line(s, line, len - 2);
	return true;
}

static void process_input(struct smtp_in *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	for (;;) {
		bool more;
		if (s->state != SMTP_IN_CLOSING &&
		    evbuffer_get_length(bufferevent_get_output(s->bev)) > SMTP_IN_OUT_MAX) {
			s->out_full = true; /* on_written resumes */
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		switch (s->state) {
		case SMTP_IN_COMMIT:
		case SMTP_IN_CLOSING:
			return;
		case SMTP_IN_DATA:
			more = evbuffer_get_length(in) && feed_data(s, in);
			break;
		case SMTP_IN_BDAT:
			more = evbuffer_get_length(in) && feed_bdat(s, in);
			break;
		default:
			more = evbuffer_get_length(in) && read_command(s, in);
			break;
		}
		if (!more)
			return;
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	process_input(arg);
}

/* The output buffer is empty: if we stopped reading for it, read again. */
static void on_written(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct smtp_in *s = arg;
	if (!s->out_full)
		return;
	s->out_full = false;
	if (s->state != SMTP_IN_COMMIT)
		bufferevent_enable(s->bev, EV_READ);
	process_input(s);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct smtp_in *s = arg;
	if ((what & BEV_EVENT_TIMEOUT) && s->state != SMTP_IN_CLOSING) {
		log_info("smtpd", "session=%" PRIu64 " client=%s timeout state=%d", s->no, s->ip, (int)s->state);
		reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->cfg->hostname);
		close_after_reply(s);
		return;
	}
	session_free(s);
}

void smtp_in_shutdown(struct smtp_in *s)
{
	s->shutdown = true;
	if (s->state == SMTP_IN_DATA || s->state == SMTP_IN_BDAT || s->state == SMTP_IN_COMMIT ||
	    s->state == SMTP_IN_CLOSING)
		return;
	reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
	close_after_reply(s);
}

static void sockaddr_ip(const struct sockaddr *sa, char *out, size_t n)
{
	const void *a = sa->sa_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
						  : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (!inet_ntop(sa->sa_family, a, out, (socklen_t)n))
		snprintf(out, n, "unknown");
	if (sa->sa_family == AF_INET6 && strncmp(out, "::ffff:", 7) == 0 && strchr(out, '.'))
		memmove(out, out + 7, strlen(out + 7) + 1);
}

struct smtp_in *smtp_in_new(const struct smtp_in_ctx *ctx, int fd, const struct sockaddr *sa, uint64_t session_no,
			    const char *refuse)
{
	struct smtp_in *s = xcalloc(1, sizeof(*s));
	s->ctx = ctx;
	s->cfg = cfg_ref(ctx->cfg);
	s->no = session_no;
	s->helo = xstrdup("unknown");
	sockaddr_ip(sa, s->ip, sizeof(s->ip));
	smtp_server_client_key(sa, s->client_key, sizeof(s->client_key));
	s->bev = bufferevent_socket_new(ctx->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(s->bev, on_read, on_written, on_event, s);
	/* Back-pressure: stop reading a client that outruns us. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, 256 * 1024);
	set_timeout(s, s->cfg->command_timeout);
	log_info("smtpd", "session=%" PRIu64 " client=%s connect%s%s", s->no, s->ip, refuse ? " refused=" : "",
		 refuse ? refuse : "");
	if (refuse) {
		reply(s, 421, "4.7.0", "%s %s", s->cfg->hostname, refuse);
		close_after_reply(s);
		return s;
	}
	reply(s, 220, "", "%s ESMTP mxvault", s->cfg->hostname);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	return s;
}
