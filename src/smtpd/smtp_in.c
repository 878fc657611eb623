/*
 * smtp_in: the life of one inbound SMTP session (RFC 5321). This file owns
 * the session object: its socket (a libevent bufferevent), its timer, the
 * wait state and every way a session ends. Commands are answered in
 * smtp_in_cmd.c, message content in smtp_in_data.c; smtp_server creates
 * sessions (smtp_in_new) and hears back once, through ctx->ended.
 *
 * Every session ends, whatever the peer does:
 * - reset or write error: freed at once (or when its wait ends);
 * - half-close (FIN): what it pipelined is answered, then it is closed;
 * - silence: command_timeout / data_timeout between reads (421);
 * - trickling: min_data_rate while content is owed, max_session_time in
 *   all (421);
 * - not reading our replies: we stop reading it (back-pressure), and its
 *   timeouts run; once closing, a hard deadline (CLOSE_GRACE_MS) frees it
 *   even if the last reply can never be written;
 * - STARTTLS: a failed, abandoned or slow handshake (command_timeout,
 *   max_session_time) ends the session; nothing is read as a command until
 *   the handshake is done.
 *
 * TLS (RFC 3207): after STARTTLS, s->bev is an OpenSSL filter over the
 * socket's bufferevent ("raw" below), so the rest of the session is the
 * same code reading and writing s->bev. Two things then look at raw too:
 * back-pressure (raw's write high-water mark makes the filter stop
 * encrypting, so unread replies pile up in s->bev's output as in clear),
 * and closing (a reply is only sent once raw's output is empty).
 * Freeing happens only from top-level callbacks, never inside a handler,
 * and never while a wait is pending (see smtp_in_int.h).
 *
 * Error policy: peer input never aborts; every bad input gets a reply with
 * an RFC 3463 code.
 */
#include "smtp_in_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "base/log.h"
#include "base/metrics.h"

/*
 * Unread replies we hold for one client. A client that pipelines commands
 * and never reads would otherwise make the output buffer grow without bound;
 * past this we stop reading it until the replies have been taken.
 */
#define SMTP_IN_OUT_MAX (64 * 1024)
/* Input read ahead of processing, per session (a bound on memory per session). */
#define SMTP_IN_READ_MAX (64 * 1024)
/* How long a closing session may take to flush its last reply. */
#define CLOSE_GRACE_MS 5000
/* min_data_rate: a content phase may start slower than the rate for this long. */
#define DATA_RATE_GRACE_MS 5000

static void process_input(struct smtp_in *s);
static void on_read(struct bufferevent *bev, void *arg);
static void on_written(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* --- replies ----------------------------------------------------------- */

void smtp_in_reply(struct smtp_in *s, int code, const char *enh, const char *f, ...)
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

bool smtp_in_add_errors(struct smtp_in *s, uint32_t n)
{
	if (s->state == SMTP_IN_CLOSING)
		return true;
	s->errors += n;
	if (s->errors < s->cfg->max_errors)
		return false;
	log_info("smtpd", "session=%" PRIu64 " client=%s too many errors", s->no, s->ip);
	smtp_in_reply(s, 421, "4.7.0", "%s Error: too many errors, closing connection", s->cfg->hostname);
	smtp_in_close_after_reply(s);
	return true;
}

void smtp_in_reply_error(struct smtp_in *s, int code, const char *enh, const char *text)
{
	smtp_in_reply(s, code, enh, "%s", text);
	smtp_in_add_errors(s, 1);
}

void smtp_in_log_reject(struct smtp_in *s, const char *what, const char *value, int code, const char *enh,
			const char *text)
{
	char safe[320], safe_text[600]; /* the text may carry a domain's own words (an SPF exp=): escaped too */
	log_info("smtpd", "session=%" PRIu64 " client=%s %s=%s reject=\"%d %s %s\"", s->no, s->ip, what,
		 log_safe(safe, sizeof(safe), value, strlen(value)), code, enh,
		 log_safe(safe_text, sizeof(safe_text), text, strlen(text)));
}

void smtp_in_set_timeout(struct smtp_in *s, int64_t seconds)
{
	struct timeval tv = {(time_t)seconds, 0};
	bufferevent_set_timeouts(s->bev, &tv, &tv);
}

/* --- deadlines ----------------------------------------------------------- */

/* Receiving a message's content: DATA, or a BDAT message between its first chunk and LAST. */
static bool in_content(const struct smtp_in *s)
{
	/* DATA waiting (on the checks, on the commit) has all its content: the rate no longer applies. */
	return (s->state == SMTP_IN_DATA && !s->wait_k) ||
	       (s->bdat_used && (s->state == SMTP_IN_BDAT || s->state == SMTP_IN_MAIL) && !s->wait_k);
}

/* When the content phase falls below min_data_rate; INT64_MAX when not in one. */
static int64_t rate_deadline(const struct smtp_in *s)
{
	uint64_t rate = s->cfg->min_data_rate;
	if (!rate || !in_content(s) || s->paused)
		return INT64_MAX;
	uint64_t allowed = s->content_bytes / rate * 1000 + s->content_bytes % rate * 1000 / rate;
	return s->content_start_ms + s->content_paused_ms + DATA_RATE_GRACE_MS + (int64_t)allowed;
}

static int64_t next_deadline(const struct smtp_in *s)
{
	if (s->state == SMTP_IN_CLOSING)
		return s->closing_deadline_ms;
	int64_t r = rate_deadline(s);
	return r < s->deadline_ms ? r : s->deadline_ms;
}

/* Arms the timer for the nearest deadline. Deadlines only move later, so a
 * timer that fires early just re-arms. */
static void arm_timer(struct smtp_in *s)
{
	int64_t left = next_deadline(s) - clock_mono_ms();
	if (left < 0)
		left = 0;
	struct timeval tv = {(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
	event_add(s->timer, &tv);
}

void smtp_in_content_started(struct smtp_in *s)
{
	s->content_start_ms = clock_mono_ms();
	s->content_paused_ms = 0;
	s->content_bytes = 0;
	arm_timer(s);
}

/* --- ending ------------------------------------------------------------ */

/* Under TLS, the socket's own bufferevent below the filter; NULL in clear. */
static struct bufferevent *raw_bev(const struct smtp_in *s)
{
	return bufferevent_get_underlying(s->bev);
}

/* Reply bytes not yet handed to the kernel: ours, and under TLS the records below. */
static size_t unsent(const struct smtp_in *s)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(s->bev));
	struct bufferevent *raw = raw_bev(s);
	return raw ? n + evbuffer_get_length(bufferevent_get_output(raw)) : n;
}

/* Under TLS the filter's write callback only means "encrypted": the timer frees once raw is flushed too. */
static void on_raw_sent(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	(void)info;
	struct smtp_in *s = arg;
	if (evbuffer_get_length(buf) == 0 && s->state == SMTP_IN_CLOSING)
		event_active(s->timer, EV_TIMEOUT, 0);
}

static void session_free(struct smtp_in *s)
{
	if (s->tx)
		spool_txn_abort(s->tx); /* never reached while a commit is pending: see smtp_in_wait */
	s->tx = NULL;
	smtp_in_drop_content(s);
	smtp_in_auth_free(s);
	smtp_in_milter_free(s);
	smtp_in_connect_free(s);
	spool_cancel_room(s->ctx->sp, &s->room);
	log_info("smtpd", "session=%" PRIu64 " client=%s disconnect messages=%" PRIu32 " errors=%" PRIu32, s->no,
		 s->ip, s->messages, s->errors);
	s->ctx->ended(s->ctx->owner, s->no, s->client_key);
	cfg_unref(s->cfg);
	event_free(s->timer);
	bufferevent_free(s->bev);
	spool_env_free(&s->env);
	htab_free(&s->rcpt_seen);
	buf_free(&s->dbuf);
	free(s->helo);
	free(s);
}

void smtp_in_close_after_reply(struct smtp_in *s)
{
	if (s->state == SMTP_IN_CLOSING)
		return;
	s->state = SMTP_IN_CLOSING;
	s->closing_deadline_ms = clock_mono_ms() + CLOSE_GRACE_MS;
	spool_cancel_room(s->ctx->sp, &s->room);
	s->paused = false;
	bufferevent_disable(s->bev, EV_READ);
	struct timeval grace = {CLOSE_GRACE_MS / 1000, 0};
	bufferevent_set_timeouts(s->bev, NULL, &grace);
	bufferevent_enable(s->bev, EV_WRITE);
	if (raw_bev(s))
		evbuffer_add_cb(bufferevent_get_output(raw_bev(s)), on_raw_sent, s);
	/* Freed by the write callback once flushed, or by the timer: never here. */
	if (unsent(s) == 0)
		event_active(s->timer, EV_TIMEOUT, 0);
	else
		arm_timer(s);
}

void smtp_in_end_421(struct smtp_in *s, const char *enh, const char *text)
{
	if (s->wait_k) {
		if (!s->doomed) {
			s->doomed = SMTP_IN_DOOM_TIMEOUT;
			s->doom_text = text;
		}
		return;
	}
	if (s->state == SMTP_IN_CLOSING)
		return;
	smtp_in_reply(s, 421, enh, "%s %s", s->cfg->hostname, text);
	smtp_in_close_after_reply(s);
}

/* The peer is gone (reset, or nothing more can be written to it). */
static void peer_gone(struct smtp_in *s)
{
	if (s->wait_k) {
		s->doomed = SMTP_IN_DOOM_GONE;
		bufferevent_disable(s->bev, EV_READ | EV_WRITE);
		return;
	}
	session_free(s);
}

/* --- the wait state ------------------------------------------------------ */

void smtp_in_wait(struct smtp_in *s, smtp_in_cont_fn *k, smtp_in_cancel_fn *cancel)
{
	s->wait_k = k;
	s->wait_cancel = cancel;
	bufferevent_disable(s->bev, EV_READ);
}

void smtp_in_resume(struct smtp_in *s, int result)
{
	smtp_in_cont_fn *k = s->wait_k;
	s->wait_k = NULL;
	s->wait_cancel = NULL;
	k(s, result);
	if (s->wait_k)
		return; /* k waits again (the commit after the checks): the doom waits for that wait's end */
	if (s->doomed == SMTP_IN_DOOM_GONE) {
		session_free(s);
		return;
	}
	if (s->doomed == SMTP_IN_DOOM_TIMEOUT) {
		s->doomed = SMTP_IN_DOOM_NONE;
		smtp_in_end_421(s, "4.4.2", s->doom_text);
	}
	if (s->state == SMTP_IN_CLOSING)
		return;
	if (!s->out_full)
		bufferevent_enable(s->bev, EV_READ);
	process_input(s); /* whatever the client pipelined meanwhile */
}

/* --- back-pressure -------------------------------------------------------- */

static void room_again(void *arg)
{
	struct smtp_in *s = arg;
	s->paused = false;
	s->content_paused_ms += clock_mono_ms() - s->paused_since_ms;
	arm_timer(s);
	if (!s->out_full && !s->wait_k)
		bufferevent_enable(s->bev, EV_READ);
	process_input(s);
}

/* The spool has max_pending_bytes waiting for the disk: stop reading content. */
static bool pause_for_room(struct smtp_in *s)
{
	if (!spool_is_congested(s->ctx->sp))
		return false;
	s->paused = true;
	s->paused_since_ms = clock_mono_ms();
	bufferevent_disable(s->bev, EV_READ);
	spool_wait_room(s->ctx->sp, &s->room, room_again, s);
	return true;
}

/* --- input --------------------------------------------------------------- */

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
		smtp_in_reply_error(s, 500, "5.5.2", "Error: line too long");
		return true;
	}
	char line[SMTP_PARAM_LINE_MAX + 1];
	evbuffer_remove(in, line, len);
	if (len < 2 || line[len - 2] != '\r' || memchr(line, '\r', len - 2)) {
		smtp_in_reply_error(s, 500, "5.5.2", "Error: bare CR or LF in command (lines end with CRLF)");
		return true;
	}
	smtp_in_command(s, line, len - 2);
	return true;
}

/* One step of input in the current state; false when more input is needed. */
static bool input_step(struct smtp_in *s, struct evbuffer *in)
{
	if (!evbuffer_get_length(in))
		return false;
	switch (s->state) {
	case SMTP_IN_DATA:
		return !pause_for_room(s) && smtp_in_feed_data(s, in);
	case SMTP_IN_BDAT:
		return !pause_for_room(s) && smtp_in_feed_bdat(s, in);
	default:
		return read_command(s, in);
	}
}

static void process_input(struct smtp_in *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	if (s->state == SMTP_IN_TLS_HANDSHAKE || smtp_in_early_talker(s))
		return;
	/* STARTTLS ends the loop: in is the old, clear-text input buffer. */
	while (s->state != SMTP_IN_CLOSING && s->state != SMTP_IN_TLS_HANDSHAKE && !s->wait_k && !s->paused) {
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) > SMTP_IN_OUT_MAX) {
			s->out_full = true; /* on_written resumes */
			bufferevent_disable(s->bev, EV_READ);
			return;
		}
		if (!input_step(s, in))
			break;
	}
	if (s->eof && s->state != SMTP_IN_CLOSING && s->state != SMTP_IN_TLS_HANDSHAKE && !s->wait_k && !s->paused &&
	    !s->out_full) {
		/* The peer said all it will say: answer it, then close. */
		if (s->state == SMTP_IN_DATA || s->state == SMTP_IN_BDAT)
			log_info("smtpd", "session=%" PRIu64 " client=%s closed the connection in the middle of a message",
				 s->no, s->ip);
		smtp_in_close_after_reply(s);
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	process_input(arg);
}

/* After the last reply: a client that waits for it (OpenSSL's s_client, Postfix) sees a clean end. */
static void send_close_notify(struct smtp_in *s)
{
	if (!raw_bev(s) || s->close_notified)
		return;
	s->close_notified = true;
	SSL_shutdown(bufferevent_openssl_get_ssl(s->bev));
	ERR_clear_error();
}

/*
 * The output buffer is empty (or was: under TLS this runs deferred, so look
 * again): a closing session is done; a blocked one reads again.
 */
static void on_written(struct bufferevent *bev, void *arg)
{
	(void)bev;
	struct smtp_in *s = arg;
	if (s->state == SMTP_IN_CLOSING) {
		if (s->wait_k)
			return;
		if (unsent(s) == 0) {
			session_free(s);
			return;
		}
		/* The filter runs this callback deferred: by now more replies may wait to be encrypted. */
		if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
			send_close_notify(s); /* the last reply is encrypted: say we are done; on_raw_sent frees */
		return;
	}
	if (!s->out_full)
		return;
	s->out_full = false;
	if (!s->wait_k && !s->paused)
		bufferevent_enable(s->bev, EV_READ);
	process_input(s);
}

/* --- TLS ------------------------------------------------------------------- */

bool smtp_in_is_encrypted(const struct smtp_in *s)
{
	return s->tls.version[0] != '\0';
}

/* The handshake did not finish (an event or the session deadline): the session ends, from a top-level callback. */
static void handshake_failed(struct smtp_in *s, const char *why)
{
	char safe[200];
	s->ctx->stats->tls_failures++;
	log_info("smtpd", "session=%" PRIu64 " client=%s starttls failed reason=\"%s\"", s->no, s->ip,
		 log_safe(safe, sizeof(safe), why, strlen(why)));
	session_free(s);
}

static void handshake_done(struct smtp_in *s)
{
	char desc[160];
	tls_session_info(bufferevent_openssl_get_ssl(s->bev), &s->tls);
	if (tls_format_info(&s->tls, desc, sizeof(desc)) < 0)
		desc[0] = '\0';
	s->ctx->stats->tls_sessions++;
	metrics_inc(metrics_tls_counter(s->tls.version));
	log_info("smtpd", "session=%" PRIu64 " client=%s starttls %s", s->no, s->ip, desc);
	s->state = SMTP_IN_HELO;
	if (s->shutdown) { /* the server began stopping during the handshake */
		smtp_in_reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
		smtp_in_close_after_reply(s);
		return;
	}
	process_input(s); /* a client may have pipelined its EHLO right behind its Finished */
}

static void handshake_event(struct smtp_in *s, short what)
{
	char why[160];
	if (what & BEV_EVENT_CONNECTED) {
		handshake_done(s);
		return;
	}
	unsigned long e = bufferevent_get_openssl_error(s->bev);
	if (e && ERR_reason_error_string(e))
		snprintf(why, sizeof(why), "%s", ERR_reason_error_string(e));
	else
		snprintf(why, sizeof(why), "%s", (what & BEV_EVENT_TIMEOUT) ? "timeout"
					       : (what & BEV_EVENT_EOF)  ? "connection closed during the handshake"
									 : "handshake error");
	while (bufferevent_get_openssl_error(s->bev))
		; /* the rest of this session's queue */
	handshake_failed(s, why);
}

/* What the client sent after STARTTLS came in clear: it must not run as if it came over TLS (CVE-2011-0411). */
static void discard_pipelined(struct smtp_in *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t n = evbuffer_get_length(in);
	if (!n)
		return;
	evbuffer_drain(in, n);
	log_info("smtpd", "session=%" PRIu64 " client=%s starttls discarded=%zu bytes pipelined in clear", s->no,
		 s->ip, n);
}

/* RFC 3207 4.2: the client must say EHLO again, and knows nothing from before. */
static void forget_session(struct smtp_in *s)
{
	smtp_in_txn_reset(s);
	free(s->helo);
	s->helo = xstrdup("unknown");
	s->esmtp = false;
	s->discarding = false;
}

/* s->bev becomes the filter over the socket's bufferevent, with the same callbacks and limits. */
static void wrap_in_tls(struct smtp_in *s, SSL *ssl)
{
	struct bufferevent *raw = s->bev;
	s->bev = bufferevent_openssl_filter_new(s->ctx->base, raw, ssl, BUFFEREVENT_SSL_ACCEPTING,
						BEV_OPT_CLOSE_ON_FREE);
	if (!s->bev)
		abort(); /* only out of memory: fatal, as for xmalloc */
	/* The filter owns raw's callbacks now; its deadlines are the filter's, its limits ours. */
	bufferevent_set_timeouts(raw, NULL, NULL);
	bufferevent_setwatermark(raw, EV_READ, 0, SMTP_IN_READ_MAX);
	bufferevent_setwatermark(raw, EV_WRITE, 0, SMTP_IN_OUT_MAX);
	bufferevent_setcb(s->bev, on_read, on_written, on_event, s);
	/*
	 * No read high-water mark on the filter: libevent answers every drain
	 * under one with an SSL_read that reserves 16-32 KiB of input buffer,
	 * which then sits empty in every idle session (measured: 44 KiB per
	 * idle TLS session with it). The input stays bounded without it: one
	 * pass decrypts at most what raw holds (SMTP_IN_READ_MAX), and
	 * process_input consumes it all or stops reading.
	 */
	smtp_in_set_timeout(s, s->cfg->command_timeout);
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

void smtp_in_start_tls(struct smtp_in *s)
{
	SSL *ssl = SSL_new(s->ctx->tls);
	if (!ssl) {
		ERR_clear_error();
		smtp_in_reply(s, 454, "4.7.0", "TLS not available due to temporary reason");
		return;
	}
	/* Into raw's output before the filter exists, so it goes out in clear, ahead of the handshake. */
	smtp_in_reply(s, 220, "2.0.0", "Ready to start TLS");
	discard_pipelined(s);
	forget_session(s);
	s->state = SMTP_IN_TLS_HANDSHAKE;
	wrap_in_tls(s, ssl);
}

/* --- events ---------------------------------------------------------------- */

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct smtp_in *s = arg;
	if (s->state == SMTP_IN_CLOSING) {
		peer_gone(s); /* the last reply will not be taken */
		return;
	}
	if (s->state == SMTP_IN_TLS_HANDSHAKE) {
		handshake_event(s, what);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		s->ctx->stats->timeouts++;
		log_info("smtpd", "session=%" PRIu64 " client=%s timeout state=%d", s->no, s->ip, (int)s->state);
		smtp_in_end_421(s, "4.4.2", "Error: timeout exceeded");
		return;
	}
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
		s->eof = true;
		process_input(s);
		return;
	}
	peer_gone(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_in *s = arg;
	int64_t now = clock_mono_ms();
	if (s->state == SMTP_IN_CLOSING) {
		if (now >= s->closing_deadline_ms || unsent(s) == 0)
			peer_gone(s);
		else
			arm_timer(s);
		return;
	}
	if (s->state == SMTP_IN_TLS_HANDSHAKE && now >= s->deadline_ms) {
		s->ctx->stats->timeouts++;
		handshake_failed(s, "session time limit exceeded");
		return;
	}
	const char *why = now >= s->deadline_ms ? "Error: session time limit exceeded"
			  : now >= rate_deadline(s) ? "Error: data rate too low"
						    : NULL;
	if (!why) {
		arm_timer(s);
		return;
	}
	s->ctx->stats->timeouts++;
	log_info("smtpd", "session=%" PRIu64 " client=%s %s state=%d", s->no, s->ip,
		 now >= s->deadline_ms ? "session-deadline" : "data-rate-too-low", (int)s->state);
	smtp_in_end_421(s, "4.4.2", why);
}

/* --- creation and shutdown ----------------------------------------------- */

void smtp_in_shutdown(struct smtp_in *s)
{
	s->shutdown = true;
	/* A handshake in progress is told once it is done (handshake_done). */
	if (s->state == SMTP_IN_DATA || s->state == SMTP_IN_BDAT || s->state == SMTP_IN_CLOSING ||
	    s->state == SMTP_IN_TLS_HANDSHAKE || s->wait_k)
		return;
	if (!smtp_in_greet_abandon(s)) /* a 421 cannot end a 220- reply (RFC 5321 4.2.1): then only close */
		smtp_in_reply(s, 421, "4.3.2", "%s Service shutting down", s->cfg->hostname);
	smtp_in_close_after_reply(s);
}

void smtp_in_destroy(struct smtp_in *s)
{
	if (s->wait_cancel)
		s->wait_cancel(s);
	s->wait_k = NULL;
	/* libevent may close the socket only when the loop is freed: let the peer know now. */
	shutdown(bufferevent_getfd(s->bev), SHUT_RDWR);
	session_free(s);
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
	s->deadline_ms = clock_mono_ms() + s->cfg->max_session_time * 1000;
	sockaddr_ip(sa, s->ip, sizeof(s->ip));
	smtp_server_client_key(sa, s->client_key, sizeof(s->client_key));
	s->timer = evtimer_new(ctx->base, on_timer, s);
	s->bev = bufferevent_socket_new(ctx->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(s->bev, on_read, on_written, on_event, s);
	/* Back-pressure: stop reading a client that outruns us. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, SMTP_IN_READ_MAX);
	smtp_in_set_timeout(s, s->cfg->command_timeout);
	arm_timer(s);
	log_info("smtpd", "session=%" PRIu64 " client=%s connect%s%s", s->no, s->ip, refuse ? " refused=" : "",
		 refuse ? refuse : "");
	if (refuse) {
		smtp_in_reply(s, 421, "4.7.0", "%s %s", s->cfg->hostname, refuse);
		smtp_in_close_after_reply(s);
		return s;
	}
	bufferevent_enable(s->bev, EV_READ | EV_WRITE);
	smtp_in_auth_connect(s, sa);
	smtp_in_connect_start(s, sa);
	return s;
}
