/*
 * qmgr_dsn: what the scheduler tells senders. Bounces for refused and
 * expired recipients and the one delay warning per message, built by dsn.c
 * and queued in the spool like any message (null sender, flagged as a DSN so
 * it is never bounced itself), to be delivered by the sender domain's MX.
 * The DSN is appended to the log before the recipient's final state, so a
 * crash can repeat a bounce but never lose one.
 */
#include "qmgr_int.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/smtp_proto.h"

#define DSN_MAX_FULL (10u << 20)  /* RET=FULL returns at most this much */
#define DSN_MAX_HEADERS (256u << 10)

void qmgr_status_of(int code, const char *reply, char out[16])
{
	/* "550 5.1.1 text": use the enhanced code when its class agrees with the reply's. */
	const char *p = reply ? reply : "";
	if (strlen(p) > 4 && isdigit((unsigned char)p[0]) && p[3] == ' ')
		p += 4;
	int cls, subj, det, n = 0;
	if (sscanf(p, "%1d.%3d.%3d%n", &cls, &subj, &det, &n) == 3 && n > 0 && cls == code / 100 &&
	    (p[n] == ' ' || p[n] == '\0')) {
		snprintf(out, 16, "%d.%d.%d", cls, subj, det);
		return;
	}
	snprintf(out, 16, "%d.0.0", code / 100 == 2 ? 2 : code / 100 == 5 ? 5 : 4);
}

static void on_dsn_queued(void *arg, int err)
{
	(void)arg;
	if (err)
		log_err("delivery", "could not queue a DSN: %s", strerror(-err));
}

/* The original as it was sent on (spool_msg_read_out: our header, milters' changes, the body). */
static void read_original(struct qmgr *s, const struct spool_msg *m, struct buf *b)
{
	uint64_t want = m->env.ret == SMTP_RET_FULL ? DSN_MAX_FULL : DSN_MAX_HEADERS;
	uint64_t size = spool_msg_out_size(m);
	if (want > size)
		want = size;
	buf_reserve(b, (size_t)want + 1);
	long r = spool_msg_read_out(s->sp, m, 0, b->data + b->len, (size_t)want);
	b->len += r > 0 ? (size_t)r : 0;
}

static void queue_dsn(struct qmgr *s, const struct spool_msg *m, struct buf *text)
{
	struct spool_rcpt to = {.addr = m->env.sender};
	struct spool_env env = {
		.sender = "",
		.client_addr = "127.0.0.1",
		.client_helo = s->cfg->hostname,
		.proto = "local",
		.arrival = clock_wall_s(),
		.flags = SPOOL_ENV_IS_DSN,
		.smtputf8 = m->env.smtputf8,
		.nrcpt = 1,
		.rcpts = &to,
	};
	/* dsn.c returns 8-bit text only from an 8BITMIME or SMTPUTF8 original: say so on the way out. */
	for (size_t i = 0; i < text->len; i++)
		if (text->data[i] & 0x80) {
			env.body = SMTP_BODY_8BITMIME;
			break;
		}
	struct spool_txn *tx = spool_txn_begin(s->sp);
	spool_txn_write(tx, text->data, text->len);
	char id[17], orig[17];
	spool_id_str(spool_txn_id(tx), id);
	spool_id_str(m->id, orig);
	log_info("delivery", "id=%s dsn-for=%s to=<%s>", id, orig, m->env.sender);
	spool_txn_commit(tx, &env, on_dsn_queued, NULL);
	s->st.dsns++;
}

void qmgr_send_dsn(struct qmgr *s, struct spool_msg *m, const struct qmgr_dsn_rcpt *rs, size_t n,
		   const struct qmgr_dsn_req *req)
{
	struct dsn_rcpt *dr = xcalloc(n ? n : 1, sizeof(*dr));
	char (*codes)[16] = xcalloc(n ? n : 1, sizeof(*codes));
	size_t k = 0;
	int64_t now = clock_wall_s();
	for (size_t i = 0; i < n; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[rs[i].idx];
		if (!dsn_wanted(&m->env, r, req->action))
			continue;
		if (req->status)
			snprintf(codes[k], sizeof(codes[k]), "%s", req->status);
		else
			qmgr_status_of(rs[i].code, rs[i].reply, codes[k]);
		dr[k] = (struct dsn_rcpt){r, codes[k], req->remote_mta, rs[i].reply, rs[i].code ? now : 0};
		k++;
	}
	if (k) {
		char qid[17], seed[64];
		spool_id_str(m->id, qid);
		snprintf(seed, sizeof(seed), "%s.%" PRIu64 ".%" PRId64, qid, ++s->dsn_seq, now);
		struct buf orig = {0}, text = {0};
		read_original(s, m, &orig);
		struct dsn_input in = {
			.reporting_mta = s->cfg->hostname,
			.queue_id = qid,
			.env = &m->env,
			.action = req->action,
			.rcpts = dr,
			.nrcpt = k,
			.original = (const char *)orig.data,
			.original_len = orig.len,
			.now = now,
			.will_retry_until = req->will_retry_until,
			.boundary_seed = seed,
		};
		dsn_build(&in, DSN_MAX_FULL, &text);
		queue_dsn(s, m, &text);
		qmgr_emit_dsn(s, m, req->action == DSN_DELAYED ? "delayed" : "failed");
		buf_free(&orig);
		buf_free(&text);
	}
	free(codes);
	free(dr);
}

#define EXPIRED_REPLY "451 4.4.7 Delivery time expired: no attempt succeeded"

void qmgr_expire_job(struct qmgr *s, struct job *j)
{
	struct spool_msg *m = j->out.m;
	char id[17];
	spool_id_str(m->id, id);
	struct qmgr_dsn_rcpt *rs = xcalloc(j->out.n ? j->out.n : 1, sizeof(*rs));
	for (uint32_t k = 0; k < j->out.n; k++) {
		const struct spool_rcpt *r = &m->env.rcpts[j->out.rcpts[k]];
		log_info("delivery", "id=%s to=<%s> status=expired reply=\"%s\"", id, r->addr, r->reply ? r->reply : "");
		/* Never tried to an answer: the DSN and the record say why, in the same words. */
		rs[k] = r->reply ? (struct qmgr_dsn_rcpt){j->out.rcpts[k], r->code, r->reply}
				 : (struct qmgr_dsn_rcpt){j->out.rcpts[k], 451, EXPIRED_REPLY};
	}
	struct qmgr_dsn_req req = {
		.action = DSN_FAILED,
		.status = "4.4.7",
		.remote_mta = j->relay_host[0] ? j->relay_host : NULL,
	};
	qmgr_send_dsn(s, m, rs, j->out.n, &req);
	/* Each setter copies the reply before it replaces the one rs[k] may point to. */
	for (uint32_t k = 0; k < j->out.n; k++) {
		qmgr_emit_rcpt(j, rs[k].idx, QMGR_EV_EXPIRED, rs[k].code, rs[k].reply);
		spool_msg_set_rcpt(s->sp, m, rs[k].idx, SPOOL_RCPT_EXPIRED, rs[k].code, rs[k].reply, NULL, NULL);
	}
	free(rs);
	s->st.expired += j->out.n;
	qmgr_job_finished(s, j);
}

void qmgr_maybe_warn(struct qmgr *s, struct job *j, int64_t now)
{
	struct spool_msg *m = j->out.m;
	if (!j->warn_at || now < j->warn_at || (m->meta.flags & SPOOL_META_WARNED))
		return;
	struct qmgr_dsn_rcpt *rs = xcalloc(m->env.nrcpt ? m->env.nrcpt : 1, sizeof(*rs));
	size_t n = 0;
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		if (r->state == SPOOL_RCPT_PENDING)
			rs[n++] = (struct qmgr_dsn_rcpt){i, r->code, r->reply};
	}
	struct qmgr_dsn_req req = {
		.action = DSN_DELAYED,
		.remote_mta = j->relay_host[0] ? j->relay_host : NULL,
		.will_retry_until = j->expire_at, /* retries stop, and the message bounces, then */
	};
	qmgr_send_dsn(s, m, rs, n, &req);
	free(rs);
	struct spool_meta meta = m->meta;
	meta.flags |= SPOOL_META_WARNED;
	spool_msg_set_meta(s->sp, m, &meta, NULL, NULL);
}
