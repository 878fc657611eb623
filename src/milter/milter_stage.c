/*
 * milter_stage: the stages a session asks its milters about (contract:
 * milter.h): MAIL, RCPT and the end of message wait for a verdict, taken
 * from the milters in configuration order; content is queued for every
 * milter still in the message. The connections and their queues are
 * milter.c's.
 */
#include "milter_int.h"

#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static void stage_at(struct milter_sess *ms);

/* --- stages ------------------------------------------------------------------------ */

static void on_done_ev(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct milter_sess *ms = arg;
	milter_done_fn *done = ms->done;
	ms->done = NULL;
	ms->stage = STAGE_NONE;
	if (done)
		done(ms->arg, &ms->v);
}

static void stage_finish(struct milter_sess *ms, const struct milter_verdict *v)
{
	ms->v = *v;
	ms->stage = STAGE_NONE;
	event_active(ms->done_ev, 0, 0);
}

/*
 * The current milter is through with the stage (or was never asked): its
 * verdict decides, or the next one is asked. A milter is through when its
 * queue has drained with no reply owed: milter_conn_pump() calls back here then.
 */
void milter_stage_next(struct milter_sess *ms)
{
	const struct milter_verdict *v = &ms->mc[ms->cur].stage_v;
	if (v->action != MILTER_CONTINUE) {
		stage_finish(ms, v);
		return;
	}
	if (++ms->cur == ms->n) {
		struct milter_verdict ok = {.action = MILTER_CONTINUE};
		stage_finish(ms, &ok);
		return;
	}
	stage_at(ms);
}

/* Asks mc[cur]: its packets are queued, its verdict preset in stage_v. */
static void stage_at(struct milter_sess *ms)
{
	struct mconn *mc = &ms->mc[ms->cur];
	switch (mc->st) {
	case MC_DEAD:
		milter_default_verdict(mc, &mc->stage_v);
		milter_stage_next(ms);
		return;
	case MC_READY:
		milter_conn_pump(mc);
		return;
	case MC_NEW: /* never needed: nothing to say */
		milter_stage_next(ms);
		return;
	case MC_CONNECTING: /* negotiated() pumps, or mc_dead() moves on */
		return;
	}
}

static void stage_start(struct milter_sess *ms, enum ms_stage st, milter_done_fn *done, void *arg)
{
	ms->stage = st;
	ms->done = done;
	ms->arg = arg;
	ms->cur = 0;
	stage_at(ms);
}

/* Connect and HELO, the first time and when the name changed. */
static void queue_session(struct mconn *mc, const struct milter_conn_info *ci, struct buf *b)
{
	if (!mc->connect_sent) {
		char underscore[300];
		if (fmt(underscore, sizeof(underscore), "%s [%s]", ci->client_name, ci->client_addr) < 0)
			underscore[0] = '\0';
		const struct milter_macro m[] = {
			{"j", ci->hostname}, {"{daemon_name}", ci->hostname}, {"{client_addr}", ci->client_addr},
			{"{client_name}", ci->client_name}, {"_", underscore},
		};
		milter_enc_macro(b, SMFIC_CONNECT, m, ARRAY_LEN(m));
		milter_enc_connect(b, ci->client_name, ci->family == AF_INET6 ? '6' : '4', ci->client_port,
				   ci->client_addr);
		mc->connect_sent = true;
	}
	if (ci->helo && (!mc->helo_sent || strcmp(mc->helo_sent, ci->helo) != 0)) {
		const struct milter_macro m[] = {{"{tls_version}", ci->tls_version[0] ? ci->tls_version : NULL}};
		milter_enc_macro(b, SMFIC_HELO, m, ARRAY_LEN(m));
		milter_enc_str(b, SMFIC_HELO, ci->helo);
		free(mc->helo_sent);
		mc->helo_sent = xstrdup(ci->helo);
	}
}

void milter_sess_mail(struct milter_sess *ms, const struct milter_conn_info *ci, const char *const *args, size_t nargs,
		      milter_done_fn *done, void *arg)
{
	milter_sess_end_message(ms);
	for (size_t i = 0; i < ms->n; i++) {
		struct mconn *mc = &ms->mc[i];
		memset(&mc->stage_v, 0, sizeof(mc->stage_v));
		memset(&mc->msg_v, 0, sizeof(mc->msg_v));
		mc->msg_done = false;
		mc->eom_sent = false;
		if (!milter_conn_live(mc))
			continue;
		if (mc->sess_v.action != MILTER_CONTINUE) { /* refused at connect or HELO: every MAIL is */
			mc->stage_v = mc->sess_v;
			continue;
		}
		struct buf b = {0};
		queue_session(mc, ci, &b);
		const struct milter_macro m[] = {{"{mail_addr}", args[0]}, {"{i}", ci->queue_id[0] ? ci->queue_id : NULL}};
		milter_enc_macro(&b, SMFIC_MAIL, m, ARRAY_LEN(m));
		milter_enc_strs(&b, SMFIC_MAIL, args, nargs);
		milter_conn_enqueue(mc, &b);
		buf_free(&b);
		mc->in_msg = true;
	}
	stage_start(ms, STAGE_MAIL, done, arg);
}

void milter_sess_rcpt(struct milter_sess *ms, const struct milter_conn_info *ci, const char *const *args, size_t nargs,
		      milter_done_fn *done, void *arg)
{
	(void)ci;
	for (size_t i = 0; i < ms->n; i++) {
		struct mconn *mc = &ms->mc[i];
		memset(&mc->stage_v, 0, sizeof(mc->stage_v));
		if (!milter_conn_live(mc) || mc->msg_done)
			continue;
		struct buf b = {0};
		const struct milter_macro m[] = {{"{rcpt_addr}", args[0]}};
		milter_enc_macro(&b, SMFIC_RCPT, m, ARRAY_LEN(m));
		milter_enc_strs(&b, SMFIC_RCPT, args, nargs);
		milter_conn_enqueue(mc, &b);
		buf_free(&b);
	}
	stage_start(ms, STAGE_RCPT, done, arg);
}

/* Queues the same packets for every milter still in the message. */
static void broadcast(struct milter_sess *ms, const struct buf *b)
{
	for (size_t i = 0; i < ms->n; i++) {
		struct mconn *mc = &ms->mc[i];
		if (milter_conn_live(mc) && !mc->msg_done) {
			milter_conn_enqueue(mc, b);
			milter_conn_pump(mc);
		}
	}
}

void milter_sess_data(struct milter_sess *ms, const struct milter_conn_info *ci)
{
	struct buf b = {0};
	const struct milter_macro m[] = {{"{i}", ci->queue_id}};
	milter_enc_macro(&b, SMFIC_DATA, m, ARRAY_LEN(m));
	milter_enc_empty(&b, SMFIC_DATA);
	broadcast(ms, &b);
	buf_free(&b);
}

void milter_sess_header(struct milter_sess *ms, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct buf b = {0};
	milter_enc_header(&b, name, nlen, value, vlen);
	broadcast(ms, &b);
	buf_free(&b);
}

void milter_sess_eoh(struct milter_sess *ms)
{
	struct buf b = {0};
	milter_enc_empty(&b, SMFIC_EOH);
	broadcast(ms, &b);
	buf_free(&b);
}

/* Appends to the last unsent body packet while it has room, else starts a new one. */
static void queue_body(struct mconn *mc, const unsigned char *p, size_t n)
{
	while (n) {
		if (mc->last_body != SIZE_MAX) {
			unsigned char *h = (unsigned char *)mc->q.data + mc->last_body;
			size_t have = (((size_t)h[0] << 24) | ((size_t)h[1] << 16) | ((size_t)h[2] << 8) | h[3]) - 1;
			size_t k = MILTER_CHUNK_MAX - have < n ? MILTER_CHUNK_MAX - have : n;
			buf_append(&mc->q, p, k);
			h = (unsigned char *)mc->q.data + mc->last_body; /* q may have moved */
			uint32_t be = htonl((uint32_t)(have + k + 1));
			memcpy(h, &be, 4);
			p += k;
			n -= k;
			if (have + k == MILTER_CHUNK_MAX)
				mc->last_body = SIZE_MAX;
			continue;
		}
		size_t at = mc->q.len;
		size_t k = n < MILTER_CHUNK_MAX ? n : MILTER_CHUNK_MAX;
		struct buf b = {0};
		milter_enc_body(&b, p, k);
		milter_conn_enqueue(mc, &b);
		buf_free(&b);
		if (k < MILTER_CHUNK_MAX)
			mc->last_body = at;
		p += k;
		n -= k;
	}
}

void milter_sess_body(struct milter_sess *ms, const void *p, size_t n)
{
	for (size_t i = 0; i < ms->n && n; i++) {
		struct mconn *mc = &ms->mc[i];
		if (milter_conn_live(mc) && !mc->msg_done && mc->st != MC_DEAD) {
			queue_body(mc, p, n);
			milter_conn_pump(mc);
		}
	}
}

static void changes_reset(struct milter_changes *ch)
{
	for (size_t i = 0; i < ch->nedits; i++) {
		free(ch->edits[i].name);
		free(ch->edits[i].value);
	}
	free(ch->edits);
	buf_free(&ch->body);
	free(ch->quarantine);
	memset(ch, 0, sizeof(*ch));
}

void milter_sess_eom(struct milter_sess *ms, const struct milter_conn_info *ci, milter_done_fn *done, void *arg)
{
	changes_reset(&ms->ch);
	for (size_t i = 0; i < ms->n; i++) {
		struct mconn *mc = &ms->mc[i];
		mc->stage_v = mc->msg_v; /* a verdict given during the content stands */
		if (!milter_conn_live(mc) || mc->msg_done)
			continue;
		struct buf b = {0};
		const struct milter_macro m[] = {{"{i}", ci->queue_id}};
		milter_enc_macro(&b, SMFIC_BODYEOB, m, ARRAY_LEN(m));
		milter_enc_empty(&b, SMFIC_BODYEOB);
		milter_conn_enqueue(mc, &b);
		buf_free(&b);
		mc->eom_sent = true;
	}
	/* every milter works on its end of message at once; their verdicts are taken in order */
	stage_start(ms, STAGE_EOM, done, arg);
	for (size_t i = 0; i < ms->n; i++)
		milter_conn_pump(&ms->mc[i]);
}

const struct milter_changes *milter_sess_changes(const struct milter_sess *ms)
{
	return &ms->ch;
}

void milter_sess_end_message(struct milter_sess *ms)
{
	ms->gen++;
	for (size_t i = 0; i < ms->n; i++) {
		struct mconn *mc = &ms->mc[i];
		if (mc->st == MC_DEAD || !mc->in_msg)
			continue;
		mc->in_msg = false;
		milter_conn_drop(mc);
		struct buf b = {0};
		milter_enc_empty(&b, SMFIC_ABORT);
		milter_conn_enqueue(mc, &b);
		buf_free(&b);
		milter_conn_pump(mc);
	}
	changes_reset(&ms->ch);
}

size_t milter_sess_held(const struct milter_sess *ms)
{
	size_t n = ms->ch.edit_bytes + ms->ch.body.len;
	for (size_t i = 0; i < ms->n; i++)
		n += ms->mc[i].q.len - ms->mc[i].q_off;
	return n;
}

/* --- life ---------------------------------------------------------------------------- */

struct milter_sess *milter_sess_new(struct event_base *base, const struct milter_params *p)
{
	struct milter_sess *ms = xcalloc(1, sizeof(*ms));
	ms->base = base;
	ms->p = *p;
	ms->n = p->n;
	ms->mc = xcalloc(p->n, sizeof(*ms->mc));
	for (size_t i = 0; i < p->n; i++) {
		ms->mc[i].ms = ms;
		ms->mc[i].spec = p->specs[i];
		ms->mc[i].last_body = SIZE_MAX;
	}
	ms->done_ev = event_new(base, -1, 0, on_done_ev, ms);
	if (!ms->done_ev)
		abort();
	return ms;
}

void milter_sess_cancel(struct milter_sess *ms)
{
	ms->done = NULL;
	ms->stage = STAGE_NONE;
	event_del(ms->done_ev);
}

void milter_sess_free(struct milter_sess *ms)
{
	if (!ms)
		return;
	for (size_t i = 0; i < ms->n; i++) {
		struct mconn *mc = &ms->mc[i];
		milter_conn_close(mc);
		free(mc->helo_sent);
	}
	changes_reset(&ms->ch);
	event_free(ms->done_ev);
	free(ms->mc);
	free(ms);
}
