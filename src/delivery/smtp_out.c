/*
 * smtp_out: see smtp_out.h. Owns one outbound connection: its bufferevent,
 * its reply deadline, the reply being parsed and the job in progress.
 * Called by the queue manager (qmgr_conn.c), which owns the jobs. States:
 *   CONNECT -> BANNER -> EHLO (-> HELO) [-> STARTTLS -> TLS -> EHLO] -> READY
 *   READY -> MAIL (MAIL and RCPT replies) -> DATA (354) -> STREAM -> DOT -> READY
 *   READY -> QUIT -> closed
 * Until READY a failure moves on to the next address; after it, a failure
 * reports every recipient still open with code 0 and ends the connection.
 * Replies from the peer are hostile input (smtp_reply.c bounds and checks
 * them), and so is its pace: every reply has a deadline that reading does
 * not extend. Invariant: at most one reply is being parsed, and the
 * deadline is armed exactly while we wait for the peer. The owner's
 * callbacks may call back into nothing here but smtp_out_resume; the
 * connection is freed from the event loop after ended() returns.
 */
#include "smtp_out.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/smtp_proto.h"
#include "dane.h"
#include "smtp_reply.h"
#include "smtp_stuff.h"

#define STREAM_CHUNK (64 * 1024)
#define READ_HIGH (4 * SMTP_REPLY_LINE_MAX) /* input buffered before we must find a line end */

enum out_state {
	OUT_CONNECT, OUT_BANNER, OUT_EHLO, OUT_HELO, OUT_STARTTLS, OUT_TLS, OUT_READY,
	OUT_MAIL, OUT_RSET, OUT_DATA, OUT_STREAM, OUT_HOLD_DOT, OUT_DOT, OUT_QUIT, OUT_CLOSED,
};

struct smtp_out {
	struct event_base *base;
	struct smtp_out_params p;
	struct smtp_out_addr *addrs;
	const struct smtp_out_cb *cb;
	void *arg;
	struct bufferevent *bev;
	struct event *start_ev;
	struct event *deadline_ev;
	const char *waiting_for;  /* what the deadline is for, for the log */
	size_t addr_i;
	enum out_state st;
	bool tls_on;
	bool tls_refused_here; /* "may": this address failed TLS, retry it in clear */
	bool tlsa_none_added;  /* DANE: OpenSSL took none of the records: encrypt only */
	bool was_ready;
	char tls_version[16];
	const char *tls_label;    /* what the session got, once TLS is up */
	struct smtp_caps caps;
	char peer[340];
	char why[SMTP_REPLY_TEXT_MAX + 64]; /* the last failure, for ended() */
	enum smtp_out_end fail_how;
	struct smtp_reply rep;          /* the reply being read */
	/* the job in progress */
	struct smtp_out_job *job;
	uint32_t cmd_sent, replies;     /* MAIL + RCPTs sent / answered */
	bool mail_ok;
	int mail_code;
	char mail_reply[SMTP_REPLY_TEXT_MAX + 1];
	int *rcpt_code;                 /* per recipient: RCPT reply code, -1 not yet */
	uint32_t accepted;
	uint64_t stream_off;
	struct smtp_stuff stuff;
	unsigned char *chunk;
};

static void try_address(struct smtp_out *c);

/* Waits at most secs for the peer: a reply, the connect, the TLS handshake. */
static void expect(struct smtp_out *c, int64_t secs, const char *what)
{
	struct timeval tv = {(time_t)secs, 0};
	c->waiting_for = what;
	evtimer_add(c->deadline_ev, &tv);
}

static void say(struct smtp_out *c, const char *f, ...) PRINTF_LIKE(2, 3);
static void say(struct smtp_out *c, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), f, ap);
	va_end(ap);
	evbuffer_add(bufferevent_get_output(c->bev), "\r\n", 2);
	expect(c, c->p.reply_timeout_s, "a reply");
}

const char *smtp_out_peer(const struct smtp_out *c)
{
	return c->peer;
}

const char *smtp_out_peer_host(const struct smtp_out *c)
{
	return c->addr_i < c->p.naddrs ? c->addrs[c->addr_i].host : "";
}

const char *smtp_out_tls(const struct smtp_out *c)
{
	return c->tls_on ? c->tls_version : NULL;
}

const char *smtp_out_tls_label(const struct smtp_out *c)
{
	return c->tls_on ? c->tls_label : "none";
}

/* What the current address must get. */
static const struct smtp_out_tls *addr_tls(const struct smtp_out *c)
{
	return &c->addrs[c->addr_i].tls;
}

/* --- ending ------------------------------------------------------------ */

static void free_conn(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_out *c = arg;
	if (c->bev)
		bufferevent_free(c->bev);
	event_free(c->start_ev);
	event_free(c->deadline_ev);
	free(c->addrs);
	free(c->rcpt_code);
	free(c->chunk);
	free(c);
}

/* Reports what is still open in the current job with code 0 (no answer). */
static void orphan_job(struct smtp_out *c)
{
	struct smtp_out_job *j = c->job;
	if (!j)
		return;
	c->job = NULL;
	for (uint32_t k = 0; k < j->n; k++)
		if (c->rcpt_code[k] < 0 || (c->rcpt_code[k] >= 200 && c->rcpt_code[k] < 300))
			c->cb->rcpt_done(c->arg, j, k, 0, c->why);
	c->cb->job_done(c->arg, j);
}

static void finish(struct smtp_out *c, enum smtp_out_end how)
{
	if (c->st == OUT_CLOSED)
		return;
	c->st = OUT_CLOSED;
	evtimer_del(c->start_ev);
	evtimer_del(c->deadline_ev);
	if (c->bev)
		bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	orphan_job(c);
	c->cb->ended(c->arg, c, how, c->why);
	event_base_once(c->base, -1, EV_TIMEOUT, free_conn, c, &(struct timeval){0, 0});
}

void smtp_out_abort(struct smtp_out *c)
{
	snprintf(c->why, sizeof(c->why), "delivery stopped");
	finish(c, SMTP_OUT_BROKEN);
}

/* Something failed. Before READY: next address. After: the connection ends. */
static void fail(struct smtp_out *c, enum smtp_out_end how, const char *f, ...) PRINTF_LIKE(3, 4);
static void fail(struct smtp_out *c, enum smtp_out_end how, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vsnprintf(c->why, sizeof(c->why), f, ap);
	va_end(ap);
	if (c->was_ready) {
		finish(c, SMTP_OUT_BROKEN);
		return;
	}
	if (how > c->fail_how)
		c->fail_how = how;
	evtimer_del(c->deadline_ev);
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	c->cb->addr_failed(c->arg, c, c->why);
	c->addr_i++;
	c->tls_refused_here = false; /* the next address gets its own chance at TLS */
	try_address(c);
}

/* A reply outside what the command allows: the peer is not speaking SMTP to us. */
static void protocol_error(struct smtp_out *c, enum smtp_cmd cmd)
{
	fail(c, SMTP_OUT_BROKEN, "protocol error: %s answered with \"%s\"", smtp_cmd_name(cmd), c->rep.text);
}

/* --- jobs -------------------------------------------------------------- */

static void notify_param(char *out, size_t n, unsigned notify)
{
	if (notify & SMTP_NOTIFY_NEVER) {
		snprintf(out, n, " NOTIFY=NEVER");
		return;
	}
	snprintf(out, n, " NOTIFY=%s%s%s%s", notify & SMTP_NOTIFY_SUCCESS ? "SUCCESS," : "",
		 notify & SMTP_NOTIFY_FAILURE ? "FAILURE," : "", notify & SMTP_NOTIFY_DELAY ? "DELAY," : "", "");
	size_t l = strlen(out);
	if (l && out[l - 1] == ',')
		out[l - 1] = '\0';
}

static void send_rcpt(struct smtp_out *c, uint32_t k)
{
	const struct spool_rcpt *r = &c->job->m->env.rcpts[c->job->rcpts[k]];
	char notify[64] = "";
	if (c->caps.dsn && r->notify)
		notify_param(notify, sizeof(notify), r->notify);
	if (c->caps.dsn && r->orcpt)
		say(c, "RCPT TO:<%s>%s ORCPT=%s", r->addr, notify, r->orcpt);
	else
		say(c, "RCPT TO:<%s>%s", r->addr, notify);
}

/* What goes out after DATA: the message as spool_msg_read_out gives it (our header, milters' changes, the body). */
static uint64_t content_size(const struct spool_msg *m)
{
	return spool_msg_out_size(m);
}

static void send_mail(struct smtp_out *c)
{
	const struct spool_env *e = &c->job->m->env;
	char params[256] = "";
	size_t n = 0;
	if (c->caps.size)
		n += (size_t)snprintf(params + n, sizeof(params) - n, " SIZE=%" PRIu64, content_size(c->job->m));
	if (e->body == SMTP_BODY_8BITMIME && c->caps.eightbit)
		n += (size_t)snprintf(params + n, sizeof(params) - n, " BODY=8BITMIME");
	if (e->smtputf8 && c->caps.smtputf8)
		n += (size_t)snprintf(params + n, sizeof(params) - n, " SMTPUTF8");
	if (c->caps.dsn && e->ret)
		n += (size_t)snprintf(params + n, sizeof(params) - n, " RET=%s", e->ret == SMTP_RET_FULL ? "FULL" : "HDRS");
	if (c->caps.dsn && e->envid && n < sizeof(params))
		snprintf(params + n, sizeof(params) - n, " ENVID=%s", e->envid);
	say(c, "MAIL FROM:<%s>%s", e->sender, params);
}

/* A requirement of the message the next hop cannot meet: a permanent failure, never sent broken. */
static const char *unmet_requirement(const struct smtp_out *c, const struct spool_env *e)
{
	if (e->smtputf8 && !c->caps.smtputf8)
		return "554 5.6.7 The next hop does not support SMTPUTF8, which this message needs";
	if (e->body == SMTP_BODY_8BITMIME && !c->caps.eightbit)
		return "554 5.6.3 The next hop does not support 8BITMIME, which this message needs";
	if (c->caps.size && c->caps.size_max && content_size(c->job->m) > c->caps.size_max)
		return "552 5.3.4 Message too big for the next hop";
	return NULL;
}

static void end_job(struct smtp_out *c)
{
	struct smtp_out_job *j = c->job;
	c->job = NULL;
	c->cb->job_done(c->arg, j);
}

static void next_job(struct smtp_out *c);

static void fail_whole_job(struct smtp_out *c, int code, const char *reply)
{
	for (uint32_t k = 0; k < c->job->n; k++)
		if (c->rcpt_code[k] < 0 || (c->rcpt_code[k] >= 200 && c->rcpt_code[k] < 300))
			c->cb->rcpt_done(c->arg, c->job, k, code, reply);
	end_job(c);
}

static void start_job(struct smtp_out *c, struct smtp_out_job *j)
{
	c->job = j;
	free(c->rcpt_code);
	c->rcpt_code = xcalloc(j->n ? j->n : 1, sizeof(*c->rcpt_code));
	for (uint32_t k = 0; k < j->n; k++)
		c->rcpt_code[k] = -1;
	c->cmd_sent = c->replies = c->accepted = 0;
	c->mail_ok = false;
	c->mail_code = 0;
	const char *unmet = unmet_requirement(c, &j->m->env);
	if (unmet) {
		fail_whole_job(c, atoi(unmet), unmet);
		next_job(c);
		return;
	}
	c->st = OUT_MAIL;
	send_mail(c);
	c->cmd_sent = 1;
	/* RFC 2920: with PIPELINING, MAIL and every RCPT go out in one write. */
	uint32_t upto = c->caps.pipelining ? j->n : 0;
	for (uint32_t k = 0; k < upto; k++, c->cmd_sent++)
		send_rcpt(c, k);
}

static void next_job(struct smtp_out *c)
{
	if (c->st == OUT_CLOSED)
		return;
	struct smtp_out_job *j = c->p.probe ? NULL : c->cb->next_job(c->arg, c);
	if (!j) {
		c->st = OUT_QUIT;
		say(c, "QUIT");
		return;
	}
	start_job(c, j);
}

/* --- content ----------------------------------------------------------- */

static void emit_out(void *arg, const void *p, size_t n)
{
	evbuffer_add(arg, p, n);
}

static void send_dot(struct smtp_out *c)
{
	evbuffer_add(bufferevent_get_output(c->bev), ".\r\n", 3);
	c->job->dot_sent = true;
	c->st = OUT_DOT;
	expect(c, c->p.final_reply_timeout_s, "the reply to the final dot");
}

void smtp_out_resume(struct smtp_out *c)
{
	if (c->st == OUT_HOLD_DOT)
		send_dot(c);
}

static void stream_more(struct smtp_out *c)
{
	const struct spool_msg *m = c->job->m;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	if (!c->chunk)
		c->chunk = xmalloc(STREAM_CHUNK);
	uint64_t size = spool_msg_out_size(m);
	while (c->stream_off < size && evbuffer_get_length(out) < 4 * STREAM_CHUNK) {
		long r = spool_msg_read_out(c->p.sp, m, c->stream_off, c->chunk, STREAM_CHUNK);
		if (r <= 0) {
			char id[17];
			spool_id_str(m->id, id);
			log_err("delivery", "id=%s cannot read the message body: %s", id, r < 0 ? strerror((int)-r) : "short");
			fail(c, SMTP_OUT_BROKEN, "451 4.3.0 local error reading the queued message");
			return;
		}
		smtp_stuff_feed(&c->stuff, c->chunk, (size_t)r, emit_out, out);
		c->stream_off += (uint64_t)r;
	}
	if (c->stream_off < size)
		return;
	smtp_stuff_end(&c->stuff, emit_out, out);
	if (c->cb->dot_ready && !c->cb->dot_ready(c->arg, c->job)) {
		c->st = OUT_HOLD_DOT; /* the owner calls smtp_out_resume */
		return;
	}
	send_dot(c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct smtp_out *c = arg;
	if (c->st == OUT_STREAM)
		stream_more(c);
}

/* --- replies ----------------------------------------------------------- */

static void start_tls(struct smtp_out *c);

static void now_ready(struct smtp_out *c)
{
	c->st = OUT_READY;
	if (!c->was_ready) {
		c->was_ready = true;
		log_debug("delivery", "peer=%s ready tls=%s", c->peer, c->tls_on ? c->tls_version : "no");
		c->cb->ready(c->arg, c);
		if (c->st == OUT_CLOSED)
			return;
	}
	next_job(c);
}

static void after_ehlo(struct smtp_out *c)
{
	bool want_tls = c->p.ssl_ctx && !c->tls_on && !c->tls_refused_here;
	if (want_tls && c->caps.starttls) {
		c->st = OUT_STARTTLS;
		say(c, "STARTTLS");
		return;
	}
	if (addr_tls(c)->level != SMTP_OUT_TLS_MAY && !c->tls_on) {
		fail(c, SMTP_OUT_BUSY, "451 4.7.4 TLS is required (%s) but %s", addr_tls(c)->label,
		     !c->p.ssl_ctx ? "no TLS client is available" : c->caps.starttls ? "failed" : "STARTTLS is not offered");
		return;
	}
	now_ready(c);
}

static void say_ehlo(struct smtp_out *c)
{
	c->st = OUT_EHLO;
	memset(&c->caps, 0, sizeof(c->caps));
	say(c, "EHLO %s", c->p.helo);
}

/* A refusal before the session: 4yz says "later" (busy), 5yz "not here". */
static enum smtp_out_end refusal(enum smtp_verdict v)
{
	return v == SMTP_VERDICT_TEMPFAIL ? SMTP_OUT_BUSY : SMTP_OUT_UNREACHABLE;
}

/* The replies before the session: greeting, EHLO, HELO, STARTTLS. */
static void on_reply_session(struct smtp_out *c, int code)
{
	enum smtp_cmd cmd = c->st == OUT_BANNER ? SMTP_CMD_GREETING
			    : c->st == OUT_EHLO ? SMTP_CMD_EHLO
			    : c->st == OUT_HELO ? SMTP_CMD_HELO
			    : SMTP_CMD_STARTTLS;
	enum smtp_verdict v = smtp_reply_verdict(cmd, code);
	if (v == SMTP_VERDICT_PROTOCOL) {
		protocol_error(c, cmd);
		return;
	}
	switch (cmd) {
	case SMTP_CMD_GREETING:
		if (v != SMTP_VERDICT_OK)
			fail(c, refusal(v), "greeting: %s", c->rep.text);
		else
			say_ehlo(c);
		return;
	case SMTP_CMD_EHLO:
		if (v == SMTP_VERDICT_OK) {
			c->caps = c->rep.caps;
			after_ehlo(c);
		} else if (code == 421) {
			fail(c, SMTP_OUT_BUSY, "EHLO: %s", c->rep.text);
		} else {
			c->st = OUT_HELO; /* RFC 5321 3.2: an old server, try HELO */
			say(c, "HELO %s", c->p.helo);
		}
		return;
	case SMTP_CMD_HELO:
		if (v != SMTP_VERDICT_OK)
			fail(c, refusal(v), "HELO: %s", c->rep.text);
		else
			after_ehlo(c);
		return;
	default: /* STARTTLS */
		if (v == SMTP_VERDICT_OK)
			start_tls(c);
		else if (addr_tls(c)->level == SMTP_OUT_TLS_MAY)
			now_ready(c);
		else
			fail(c, SMTP_OUT_BUSY, "451 4.7.4 TLS is required (%s) but STARTTLS was refused: %s",
			     addr_tls(c)->label, c->rep.text);
		return;
	}
}

/* A RCPT reply, or its MAIL's refusal, which stands for every RCPT after it. */
static void rcpt_reply(struct smtp_out *c, uint32_t k, int code)
{
	int eff = c->mail_ok ? code : c->mail_code;
	c->rcpt_code[k] = eff;
	if (c->mail_ok && smtp_reply_verdict(SMTP_CMD_RCPT, code) == SMTP_VERDICT_OK)
		c->accepted++;
	else
		c->cb->rcpt_done(c->arg, c->job, k, eff, c->mail_ok ? c->rep.text : c->mail_reply);
}

static void on_reply_mail(struct smtp_out *c, int code)
{
	if (c->replies >= c->cmd_sent) {
		protocol_error(c, SMTP_CMD_RCPT); /* a reply nothing asked for */
		return;
	}
	uint32_t idx = c->replies++;
	enum smtp_cmd cmd = idx == 0 ? SMTP_CMD_MAIL : SMTP_CMD_RCPT;
	enum smtp_verdict v = smtp_reply_verdict(cmd, code);
	if (v == SMTP_VERDICT_PROTOCOL) {
		protocol_error(c, cmd);
		return;
	}
	if (idx == 0) {
		c->mail_ok = v == SMTP_VERDICT_OK;
		c->mail_code = code;
		snprintf(c->mail_reply, sizeof(c->mail_reply), "%s", c->rep.text);
		if (!c->mail_ok && !c->caps.pipelining) {
			fail_whole_job(c, code, c->rep.text);
			next_job(c);
			return;
		}
	} else {
		rcpt_reply(c, idx - 1, code);
	}
	if (!c->caps.pipelining && c->cmd_sent < c->job->n + 1) {
		send_rcpt(c, c->cmd_sent - 1);
		c->cmd_sent++;
		return;
	}
	if (c->replies < c->job->n + 1) {
		expect(c, c->p.reply_timeout_s, "a reply"); /* the next pipelined reply */
		return;
	}
	if (c->accepted == 0) {
		end_job(c);
		/* A transaction may be open (MAIL accepted): close it before the next. */
		c->st = OUT_RSET;
		say(c, "RSET");
		return;
	}
	c->st = OUT_DATA;
	say(c, "DATA");
}

static void report_accepted(struct smtp_out *c, int code)
{
	for (uint32_t k = 0; k < c->job->n; k++)
		if (c->rcpt_code[k] >= 200 && c->rcpt_code[k] < 300)
			c->cb->rcpt_done(c->arg, c->job, k, code, c->rep.text);
	end_job(c);
}

static void on_reply_data(struct smtp_out *c, int code)
{
	enum smtp_verdict v = smtp_reply_verdict(SMTP_CMD_DATA, code);
	if (v == SMTP_VERDICT_PROTOCOL) {
		/* Never "accepted": no content went out (a 250 here is a lie or a desync). */
		protocol_error(c, SMTP_CMD_DATA);
		return;
	}
	if (v != SMTP_VERDICT_OK) {
		report_accepted(c, code);
		c->st = OUT_RSET;
		say(c, "RSET");
		return;
	}
	c->st = OUT_STREAM;
	c->stream_off = 0;
	smtp_stuff_init(&c->stuff);
	stream_more(c); /* no deadline while we write: the write timeout watches a stalled peer */
}

static void on_reply(struct smtp_out *c, int code)
{
	switch (c->st) {
	case OUT_BANNER:
	case OUT_EHLO:
	case OUT_HELO:
	case OUT_STARTTLS:
		on_reply_session(c, code);
		return;
	case OUT_MAIL:
		on_reply_mail(c, code);
		return;
	case OUT_RSET:
		if (smtp_reply_verdict(SMTP_CMD_RSET, code) == SMTP_VERDICT_OK)
			next_job(c);
		else
			fail(c, SMTP_OUT_BROKEN, "RSET: %s", c->rep.text);
		return;
	case OUT_DATA:
		on_reply_data(c, code);
		return;
	case OUT_DOT:
		if (smtp_reply_verdict(SMTP_CMD_DOT, code) == SMTP_VERDICT_PROTOCOL) {
			protocol_error(c, SMTP_CMD_DOT);
			return;
		}
		report_accepted(c, code);
		next_job(c);
		return;
	case OUT_QUIT:
		snprintf(c->why, sizeof(c->why), "%s", c->rep.text);
		finish(c, SMTP_OUT_DONE);
		return;
	default: /* a reply while we send content or wait for nothing */
		fail(c, SMTP_OUT_BROKEN, "protocol error: unexpected reply \"%s\"", c->rep.text);
		return;
	}
}

/* One line of a reply; false when the connection moved on (failed, closed, new bev). */
static bool handle_line(struct smtp_out *c, const char *line, size_t n)
{
	if (c->rep.lines == 0)
		smtp_reply_init(&c->rep, c->st == OUT_EHLO);
	int rc = smtp_reply_feed(&c->rep, line, n);
	if (rc < 0) {
		/* The start of the line, for the log (which escapes what is not printable). */
		fail(c, SMTP_OUT_BROKEN, "protocol error: %s: \"%.*s\"", smtp_reply_strerror(rc), (int)(n < 40 ? n : 40),
		     line);
		return false;
	}
	if (rc == SMTP_REPLY_MORE)
		return true;
	struct bufferevent *bev = c->bev;
	evtimer_del(c->deadline_ev);
	c->rep.lines = 0; /* the next line starts a new reply */
	on_reply(c, c->rep.code);
	return c->st != OUT_CLOSED && c->bev == bev;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct smtp_out *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (c->st != OUT_CLOSED && c->bev == bev) {
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		if (!line) {
			if (evbuffer_get_length(in) > SMTP_REPLY_LINE_MAX)
				fail(c, SMTP_OUT_BROKEN, "protocol error: %s", smtp_reply_strerror(-EMSGSIZE));
			return;
		}
		bool go_on = handle_line(c, line, n);
		free(line);
		if (!go_on)
			return;
	}
}

/* --- connecting -------------------------------------------------------- */

static void on_event(struct bufferevent *bev, short what, void *arg);

static void setup_bev(struct smtp_out *c, struct bufferevent *bev)
{
	c->bev = bev;
	bufferevent_setcb(bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(bev, EV_WRITE, 2 * STREAM_CHUNK, 0);
	bufferevent_setwatermark(bev, EV_READ, 0, READ_HIGH);
	/* Replies are timed by the deadline; a write that cannot proceed by this. */
	struct timeval tv = {(time_t)c->p.reply_timeout_s, 0};
	bufferevent_set_timeouts(bev, NULL, &tv);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/*
 * What the certificate is checked against. The handshake itself never
 * fails on a certificate (SSL_VERIFY_NONE): the verdict is read when it is
 * done (check_peer), so a failure can say why, and MTA-STS testing can
 * report it and go on.
 */
static int tls_set_peer_checks(SSL *ssl, const char *host, const struct smtp_out_tls *t, bool *none_added)
{
	*none_added = false;
	SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	if (SSL_set_tlsext_host_name(ssl, host) != 1)
		return -1;
	if (t->level == SMTP_OUT_TLS_DANE) {
		if (SSL_dane_enable(ssl, host) <= 0)
			return -1;
		/* RFC 7672 3.1.1: a DANE-EE(3) match binds the key, not a name. */
		SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
		int added = 0;
		for (size_t i = 0; t->tlsa && i < t->tlsa->n; i++) {
			const struct dane_tlsa *r = &t->tlsa->r[i];
			added += SSL_dane_tlsa_add(ssl, r->usage, r->selector, r->mtype, r->data, r->len) > 0;
		}
		/*
		 * Records OpenSSL refuses (a full certificate or key that does not
		 * parse) are unusable; with none left, RFC 7672 2.2 still asks for
		 * TLS, without authentication (check_peer).
		 */
		*none_added = added == 0;
		return 0;
	}
	if (t->level == SMTP_OUT_TLS_VERIFY || t->report_only)
		return SSL_set1_host(ssl, host) == 1 ? 0 : -1;
	return 0;
}

/*
 * The handshake is done: does the certificate pass what this address
 * requires? false when the connection failed (the next address is tried).
 */
static bool check_peer(struct smtp_out *c, SSL *ssl)
{
	const struct smtp_out_tls *t = addr_tls(c);
	bool checked = t->level == SMTP_OUT_TLS_VERIFY || t->level == SMTP_OUT_TLS_DANE || t->report_only;
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_ERR_UNSPECIFIED;
	/*
	 * X509_V_OK is also what a session without a peer certificate reports
	 * (an anonymous cipher): no certificate is no authentication. Under
	 * DANE, OK must also come from a TLSA match (SSL_get0_dane_authority),
	 * never from the trust store alone.
	 */
	if (vr == X509_V_OK && checked && (!SSL_get0_peer_certificate(ssl) ||
					  (t->level == SMTP_OUT_TLS_DANE && SSL_get0_dane_authority(ssl, NULL, NULL) < 0)))
		vr = X509_V_ERR_UNSPECIFIED;
	c->tls_label = t->label;
	if (t->level == SMTP_OUT_TLS_DANE && c->tlsa_none_added) {
		c->tls_label = "dane-encrypted";
		return true;
	}
	if (!checked || vr == X509_V_OK)
		return true;
	const char *err = X509_verify_cert_error_string(vr);
	if (t->report_only) {
		log_info("delivery", "peer=%s MTA-STS testing: the policy would have failed: %s (%s)", c->peer,
			 t->fail_reply, err);
		c->tls_label = "may-encrypted";
		return true;
	}
	/* fail_reply names what a policy is about (a TLSA match, a name); any other failure is said as it is. */
	bool about_name = t->level == SMTP_OUT_TLS_DANE || vr == X509_V_ERR_HOSTNAME_MISMATCH;
	if (about_name)
		fail(c, SMTP_OUT_BUSY, "%s (%s: %s)", t->fail_reply, c->addrs[c->addr_i].host, err);
	else
		fail(c, SMTP_OUT_BUSY, "451 4.7.5 certificate verification failed (%s; %s: %s)", t->label,
		     c->addrs[c->addr_i].host, err);
	return false;
}

static void start_tls(struct smtp_out *c)
{
	if (evbuffer_get_length(bufferevent_get_input(c->bev))) {
		/* Bytes after the 220 came in clear: whoever sent them could be anyone. */
		fail(c, SMTP_OUT_BROKEN, "protocol error: data after the reply to STARTTLS");
		return;
	}
	SSL *ssl = SSL_new(c->p.ssl_ctx);
	if (!ssl || tls_set_peer_checks(ssl, c->addrs[c->addr_i].host, addr_tls(c), &c->tlsa_none_added) < 0) {
		SSL_free(ssl);
		fail(c, SMTP_OUT_BUSY, "TLS setup failed");
		return;
	}
	struct bufferevent *tb =
		bufferevent_openssl_filter_new(c->base, c->bev, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
	if (!tb) {
		SSL_free(ssl);
		fail(c, SMTP_OUT_BUSY, "TLS setup failed");
		return;
	}
	c->st = OUT_TLS;
	setup_bev(c, tb);
	expect(c, c->p.reply_timeout_s, "the TLS handshake");
}

static void tls_failed(struct smtp_out *c)
{
	unsigned long e = bufferevent_get_openssl_error(c->bev);
	char err[256] = "handshake failed";
	if (e)
		ERR_error_string_n(e, err, sizeof(err));
	if (addr_tls(c)->level == SMTP_OUT_TLS_MAY) {
		/* Opportunistic TLS (RFC 7435): a broken handshake is no reason to keep mail; retry in clear. */
		log_info("delivery", "peer=%s TLS failed (%s); retrying without TLS", c->peer, err);
		c->tls_refused_here = true;
		evtimer_del(c->deadline_ev);
		bufferevent_free(c->bev);
		c->bev = NULL;
		try_address(c);
		return;
	}
	fail(c, SMTP_OUT_BUSY, "451 4.7.5 TLS handshake failed (%s): %s", addr_tls(c)->label, err);
}

static void on_connected(struct smtp_out *c)
{
	if (c->st == OUT_TLS) {
		c->tls_on = true;
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
		snprintf(c->tls_version, sizeof(c->tls_version), "%s", ssl ? SSL_get_version(ssl) : "TLS");
		if (check_peer(c, ssl))
			say_ehlo(c);
		return;
	}
	/* Small writes (a held final dot, a lone command) must not wait for a delayed ACK. */
	int one = 1;
	setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->st = OUT_BANNER;
	expect(c, c->p.reply_timeout_s, "the greeting");
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct smtp_out *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		on_connected(c);
		return;
	}
	if (c->st == OUT_TLS && !(what & BEV_EVENT_TIMEOUT)) {
		tls_failed(c);
		return;
	}
	if (c->st == OUT_QUIT) {
		finish(c, SMTP_OUT_DONE);
		return;
	}
	const char *what_s = what & BEV_EVENT_TIMEOUT ? "timeout: the peer does not read"
			     : what & BEV_EVENT_EOF ? "connection closed"
						    : NULL;
	fail(c, c->st == OUT_CONNECT ? SMTP_OUT_UNREACHABLE : SMTP_OUT_BROKEN, "%s%s", what_s ? what_s : "",
	     what_s ? "" : strerror(EVUTIL_SOCKET_ERROR() ? EVUTIL_SOCKET_ERROR() : ECONNRESET));
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_out *c = arg;
	if (c->st == OUT_CONNECT)
		fail(c, SMTP_OUT_UNREACHABLE, "timeout: no connection within %" PRId64 "s", c->p.connect_timeout_s);
	else
		fail(c, SMTP_OUT_BROKEN, "timeout: %s took over %" PRId64 "s", c->waiting_for,
		     c->st == OUT_DOT ? c->p.final_reply_timeout_s : c->p.reply_timeout_s);
}

static void format_peer(struct smtp_out *c, const struct smtp_out_addr *a)
{
	char ip[64] = "?";
	uint16_t port = 0;
	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
	}
	snprintf(c->peer, sizeof(c->peer), "%s[%s]:%u", a->host, ip, port);
}

static void try_address(struct smtp_out *c)
{
	if (c->addr_i >= c->p.naddrs) {
		finish(c, c->fail_how ? c->fail_how : SMTP_OUT_UNREACHABLE);
		return;
	}
	const struct smtp_out_addr *a = &c->addrs[c->addr_i];
	format_peer(c, a);
	c->st = OUT_CONNECT;
	c->tls_on = false;
	c->rep.lines = 0;
	setup_bev(c, bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE));
	expect(c, c->p.connect_timeout_s, "connection");
	if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&a->ss, (int)a->len) < 0)
		fail(c, SMTP_OUT_UNREACHABLE, "connect: %s", strerror(errno));
}

static void start_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	try_address(arg);
}

struct smtp_out *smtp_out_start(struct event_base *base, const struct smtp_out_params *p, const struct smtp_out_cb *cb,
				void *arg)
{
	struct smtp_out *c = xcalloc(1, sizeof(*c));
	c->base = base;
	c->p = *p;
	c->addrs = xcalloc(p->naddrs ? p->naddrs : 1, sizeof(*c->addrs));
	memcpy(c->addrs, p->addrs, p->naddrs * sizeof(*c->addrs));
	c->p.addrs = c->addrs;
	c->cb = cb;
	c->arg = arg;
	snprintf(c->why, sizeof(c->why), "no address to try");
	c->deadline_ev = evtimer_new(base, on_deadline, c);
	/* From the loop, so no callback runs inside the caller. */
	struct timeval now = {0, 0};
	c->start_ev = evtimer_new(base, start_cb, c);
	evtimer_add(c->start_ev, &now);
	return c;
}
