/*
 * smtp_in_data: message content of a session, from DATA or BDAT to the
 * reply after the spool's commit. Content streams into a spool transaction
 * as it arrives (our Received: header first), through the DATA decoder
 * (dot-unstuffing, smuggling checks), the header scanner (hop count,
 * Message-ID, content hash; it sees the content as the client sent it)
 * and the filter that removes Authentication-Results fields claiming our
 * authserv-id (hdr_strip: what the spool gets). At the end of data the message is refused, or
 * recognised as a resend, or committed: the session then waits
 * (smtp_in_wait) and answers 250 only from the spool's durability callback.
 * Called by smtp_in.c (input) and smtp_in_cmd.c (DATA, BDAT).
 */
#include "smtp_in_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/metrics.h"
#include "dedup.h"

const struct canned SMTP_IN_TOO_BIG = {552, "5.3.4", "Message size exceeds fixed maximum message size"};

static const char *proto_keyword(const struct smtp_in *s)
{
	/* RFC 3848 and RFC 6531 3.7.3 "with" keywords; HELO over TLS says SMTPS, as Postfix does. */
	bool tls = smtp_in_is_encrypted(s);
	if (!s->esmtp)
		return tls ? "SMTPS" : "SMTP";
	if (s->env.smtputf8)
		return tls ? "UTF8SMTPS" : "UTF8SMTP";
	return tls ? "ESMTPS" : "ESMTP";
}

/* "\r\n\t(version=TLSv1.3 cipher=... bits=256/256)", a comment as Sendmail writes it; "" in clear. */
static void tls_comment(const struct smtp_in *s, char *out, size_t n)
{
	char desc[160];
	out[0] = '\0';
	if (smtp_in_is_encrypted(s) && (tls_format_info(&s->tls, desc, sizeof(desc)) < 0 ||
					fmt(out, n, "\r\n\t(%s)", desc) < 0))
		out[0] = '\0';
}

static void write_received(struct smtp_in *s)
{
	char id[17], date[64], rcpt[SMTP_PATH_MAX + 16] = "", tls[192];
	time_t now = time(NULL);
	struct tm tm;
	spool_id_str(spool_txn_id(s->tx), id);
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (s->env.nrcpt == 1 && fmt(rcpt, sizeof(rcpt), "\r\n\tfor <%s>", s->env.rcpts[0].addr) < 0)
		rcpt[0] = '\0';
	struct buf b = {0};
	tls_comment(s, tls, sizeof(tls));
	buf_printf(&b, "Received: from %s ([%s])\r\n\tby %s (mxvault) with %s id %s%s%s;\r\n\t%s\r\n", s->helo, s->ip,
		   s->cfg->hostname, proto_keyword(s), id, tls, rcpt, date);
	spool_txn_write(s->tx, b.data, b.len);
	smtp_in_milter_content(s, b.data, b.len);
	buf_free(&b);
}

static void stripped_out(void *arg, const char *p, size_t n)
{
	struct smtp_in *s = arg;
	spool_txn_write(s->tx, p, n);
	smtp_in_milter_content(s, p, n);
}

void smtp_in_txn_begin_content(struct smtp_in *s)
{
	if (s->tx)
		return;
	s->tx = spool_txn_begin(s->ctx->sp);
	memset(&s->dec, 0, sizeof(s->dec));
	s->hdr = xmalloc(sizeof(*s->hdr));
	msg_hdr_init(s->hdr);
	hdr_strip_init(&s->strip, s->cfg->authserv_id, stripped_out, s);
	smtp_in_auth_content_start(s);
	smtp_in_milter_content_start(s);
	write_received(s);
}

void smtp_in_drop_content(struct smtp_in *s)
{
	if (s->hdr) {
		msg_hdr_free(s->hdr);
		free(s->hdr);
		s->hdr = NULL;
	}
	hdr_strip_free(&s->strip);
	memset(&s->dec, 0, sizeof(s->dec));
	buf_free(&s->dbuf);
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
	smtp_in_auth_feed(s, p, n); /* DKIM: the content as the client sent it, dot-unstuffed */
	hdr_strip_feed(&s->strip, p, n);
}

/* --- the commit ----------------------------------------------------------- */

/* The continuation of the commit wait: the message is durable, or failed. */
static void commit_done(struct smtp_in *s, int err)
{
	char id[17];
	uint64_t qid = spool_txn_id(s->tx);
	spool_id_str(qid, id);
	s->tx = NULL; /* the spool frees it */
	if (err == 0) {
		s->messages++;
		s->ctx->stats->messages++;
		if (s->ctx->dedup && s->env.has_dedup_key)
			dedup_add(s->ctx->dedup, s->env.dedup_key, qid, clock_wall_s());
		smtp_in_reply(s, 250, "2.0.0", "Ok: queued as %s", id);
		log_info("smtpd", "session=%" PRIu64 " client=%s id=%s from=<%s> nrcpt=%" PRIu32 " proto=%s result=queued",
			 s->no, s->ip, id, s->env.sender, s->env.nrcpt, s->env.proto);
	} else {
		bool full = err == -ENOSPC;
		smtp_in_reply(s, full ? 452 : 451, full ? "4.3.1" : "4.3.0", "%s",
			      full ? "Insufficient system storage" : "Error: queue file write error");
		log_err("smtpd", "session=%" PRIu64 " client=%s id=%s result=deferred reason=\"%s\"", s->no, s->ip, id,
			strerror(-err));
	}
	s->state = SMTP_IN_READY;
	smtp_in_txn_end(s, err == 0);
}

/* Server teardown while the commit is pending: the spool must not call us back. */
static void commit_cancel(struct smtp_in *s)
{
	spool_txn_forget(s->tx);
	s->tx = NULL;
}

static void on_committed(void *arg, int err)
{
	smtp_in_resume(arg, err);
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
	dedup_key(s->hdr->message_id, &s->env, s->hdr->content_sha256, s->env.dedup_key);
	s->env.has_dedup_key = true;
	if (!dedup_find(dd, s->env.dedup_key, clock_wall_s(), &orig))
		return false;
	char orig_id[17];
	spool_id_str(orig, orig_id);
	s->ctx->stats->duplicates++;
	smtp_in_reply(s, 250, "2.0.0", "Ok: queued as %s", orig_id);
	log_info("smtpd", "session=%" PRIu64 " client=%s from=<%s> duplicate-of=%s result=accepted-not-stored", s->no,
		 s->ip, s->env.sender, orig_id);
	smtp_in_txn_end(s, false); /* nothing stored: its refusals count (a harvester could resend forever) */
	return true;
}

/* Why the message at hand must be refused, or NULL. */
static const struct canned *refusal(const struct smtp_in *s)
{
	static const struct canned bare = {550, "5.6.0", "Message contains bare CR or LF characters (not allowed)"};
	static const struct canned hops = {554, "5.4.6", "Too many hops (Received: headers): mail loop?"};
	if (s->dec.bare_cr_or_lf && s->cfg->reject_bare_lf)
		return &bare;
	if (s->too_big)
		return &SMTP_IN_TOO_BIG;
	if (too_many_hops(s))
		return &hops;
	return NULL;
}

static void commit_message(struct smtp_in *s, int unused);
static void store_message(struct smtp_in *s, int unused);

/* End of DATA or BDAT LAST: refuse, or run the checks, then hand the message to the spool and wait. */
static void end_of_message(struct smtp_in *s)
{
	msg_hdr_finish(s->hdr);
	hdr_strip_finish(&s->strip); /* what it still holds goes to the spool (or is removed) */
	if (s->strip.removed)
		log_info("smtpd", "session=%" PRIu64 " client=%s removed=%" PRIu32
			 " reason=\"Authentication-Results claiming our authserv-id\"", s->no, s->ip, s->strip.removed);
	smtp_in_set_timeout(s, s->cfg->command_timeout);
	const struct canned *why = refusal(s);
	if (why) {
		if (why == &SMTP_IN_TOO_BIG)
			metrics_inc(METRIC_REJECT_SIZE);
		smtp_in_reply(s, why->code, why->enh, "%s", why->text);
		smtp_in_log_reject(s, "from", s->env.sender, why->code, why->enh, why->text);
		smtp_in_txn_end(s, false);
		return;
	}
	if (is_duplicate(s))
		return;
	smtp_in_auth_end_of_data(s, commit_message);
}

/* Every check is in: refuse for DMARC, or store the message with our header and wait for the disk. */
static void commit_message(struct smtp_in *s, int unused)
{
	(void)unused;
	/* DMARC, when a recipient's domain enforces it: refused before the commit, so nothing is stored. */
	struct auth_reply ar;
	if (auth_dmarc_refusal(auth_dmarc_enforced(s->cfg, s->env.rcpts, s->env.nrcpt), &s->auth, &ar)) {
		metrics_inc(METRIC_REJECT_DMARC);
		smtp_in_reply(s, ar.code, ar.enh, "%s", ar.text);
		smtp_in_log_reject(s, "from", s->env.sender, ar.code, ar.enh, ar.text);
		smtp_in_txn_end(s, false); /* aborts the spool transaction */
		return;
	}
	if (!smtp_in_milter_eom(s, store_message))
		store_message(s, 0);
}

/* The message is accepted: store it with our header and wait for the disk. */
static void store_message(struct smtp_in *s, int unused)
{
	(void)unused;
	/* Our verdict, sent on in front of the stored content (docs/spool.md). */
	if (s->cfg->authserv_id)
		s->env.auth_header = auth_header(&s->auth, s->cfg->authserv_id, s->env.sender, s->helo, s->ip);
	s->env.arrival = clock_wall_s();
	s->env.client_addr = xstrdup(s->ip);
	s->env.client_helo = xstrdup(s->helo);
	s->env.proto = xstrdup(proto_keyword(s));
	smtp_in_drop_content(s);
	s->state = SMTP_IN_MAIL; /* until the commit answers */
	smtp_in_wait(s, commit_done, commit_cancel);
	spool_txn_commit(s->tx, &s->env, on_committed, s);
}

/* --- DATA and BDAT ---------------------------------------------------------- */

bool smtp_in_feed_data(struct smtp_in *s, struct evbuffer *in)
{
	struct evbuffer_iovec v;
	if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
		return false;
	bool done = false;
	buf_reset(&s->dbuf);
	size_t used = smtp_data_feed(&s->dec, v.iov_base, v.iov_len, &s->dbuf, &done);
	content_out(s, s->dbuf.data, s->dbuf.len);
	evbuffer_drain(in, used);
	s->content_bytes += used;
	if (s->dbuf.cap > SPOOL_DATA_CHUNK * 2)
		buf_free(&s->dbuf);
	if (done)
		end_of_message(s);
	return true;
}

void smtp_in_end_of_chunk(struct smtp_in *s)
{
	s->state = s->before_bdat;
	smtp_in_set_timeout(s, s->cfg->command_timeout);
	if (!s->bdat_error && s->too_big)
		s->bdat_error = &SMTP_IN_TOO_BIG;
	if (s->bdat_error) {
		const struct canned *err = s->bdat_error;
		smtp_in_reply_error(s, err->code, err->enh, err->text);
		if (s->state == SMTP_IN_MAIL && err == &SMTP_IN_TOO_BIG)
			metrics_inc(METRIC_REJECT_SIZE); /* once: the transaction ends here */
		if (s->state == SMTP_IN_MAIL)
			smtp_in_txn_end(s, false);
		return;
	}
	if (!s->bdat_last) {
		smtp_in_reply(s, 250, "2.0.0", "Ok: chunk received");
		return;
	}
	end_of_message(s);
}

bool smtp_in_feed_bdat(struct smtp_in *s, struct evbuffer *in)
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
		s->content_bytes += k;
	}
	if (s->bdat_left == 0)
		smtp_in_end_of_chunk(s);
	return true;
}
