/*
 * milter: one session's connections to its milters (contract: milter.h;
 * the stages that use them: milter_stage.c).
 *
 * Every packet for a milter goes through its queue `q` and is sent by
 * milter_conn_pump(): packets that expect a reply are sent one at a time (`owed` names
 * the command answered next, with a timer), those a milter said it does not
 * answer (SMFIP_NR_*) go out at once, those for stages it does not want
 * (SMFIP_NO*) are dropped. A stage (MAIL, RCPT, end of message) asks the
 * milters in order: it queues the milter's packets, and moves on when that
 * queue has drained with no reply owed. The verdict of a reply lands in
 * mc->stage_v (for the stage), mc->sess_v (connect, helo: the session) or
 * mc->msg_v (content: the message). The stage's callback always runs from
 * its own event (never inside the call that started the stage).
 *
 * Error policy: anything wrong with a milter (connect error, EOF, a
 * malformed or unexpected reply, a timeout) closes it for the session
 * (dead); its verdict is then the default action. Memory: q holds what the
 * milter has not yet taken (counted by milter_sess_held); replies are read
 * with an input high-water mark of one largest packet.
 */
#include "milter_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "base/log.h"


/* --- specs -------------------------------------------------------------------- */

static int spec_addr(const char *spec, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (strncmp(spec, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;
		size_t n = strlen(spec + 5);
		if (spec[5] != '/' || n >= sizeof(un->sun_path))
			return -EINVAL;
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, spec + 5, n + 1);
		*len = sizeof(*un);
		return 0;
	}
	const char *h = strncmp(spec, "inet:", 5) == 0 ? spec + 5 : strncmp(spec, "inet6:", 6) == 0 ? spec + 6 : NULL;
	if (!h)
		return -EINVAL;
	char host[INET6_ADDRSTRLEN + 2];
	const char *colon = strrchr(h, ':');
	if (!colon || (size_t)(colon - h) >= sizeof(host))
		return -EINVAL;
	memcpy(host, h, (size_t)(colon - h));
	host[colon - h] = '\0';
	uint64_t port;
	if (parse_uint(colon + 1, 1, 65535, &port) < 0)
		return -EINVAL;
	char *hp = host;
	size_t hl = strlen(host);
	if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
		host[hl - 1] = '\0';
		hp = host + 1;
	}
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, hp, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		*len = sizeof(*in4);
		return 0;
	}
	if (inet_pton(AF_INET6, hp, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*in6);
		return 0;
	}
	return -EINVAL;
}

/* --- verdicts ---------------------------------------------------------------- */

static void set_verdict(struct milter_verdict *v, enum milter_action a, int code, const char *enh, const char *text)
{
	memset(v, 0, sizeof(*v));
	v->action = a;
	v->code = code;
	if (fmt(v->enh, sizeof(v->enh), "%s", enh) < 0)
		v->enh[0] = '\0';
	if (fmt(v->text, sizeof(v->text), "%s", text) < 0)
		v->text[0] = '\0';
}

void milter_default_verdict(const struct mconn *mc, struct milter_verdict *v)
{
	if (mc->ms->p.dflt == MILTER_DEFAULT_ACCEPT)
		set_verdict(v, MILTER_CONTINUE, 0, "", "");
	else
		set_verdict(v, MILTER_TEMPFAIL, 451, "4.7.1", "Service unavailable - try again later");
	v->by_default = true;
	v->milter = mc->spec;
}

/* The verdict a final reply carries (CONTINUE for continue, accept, skip). */
static void reply_verdict(const struct mconn *mc, const struct milter_reply *r, struct milter_verdict *v)
{
	switch (r->cmd) {
	case SMFIR_REJECT: set_verdict(v, MILTER_REJECT, 550, "5.7.1", "Command rejected"); break;
	case SMFIR_TEMPFAIL: set_verdict(v, MILTER_TEMPFAIL, 451, "4.7.1", "Service unavailable - try again later"); break;
	case SMFIR_DISCARD: set_verdict(v, MILTER_DISCARD, 250, "2.0.0", "Ok"); break;
	case SMFIR_REPLYCODE: {
		char text[MILTER_TEXT_MAX + 1];
		memcpy(text, r->text, r->text_len);
		text[r->text_len] = '\0';
		set_verdict(v, r->code >= 500 ? MILTER_REJECT : MILTER_TEMPFAIL, r->code, "", text);
		break;
	}
	default: set_verdict(v, MILTER_CONTINUE, 0, "", ""); break;
	}
	v->milter = mc->spec;
}

/* --- connections --------------------------------------------------------------- */

void milter_conn_close(struct mconn *mc)
{
	if (mc->bev)
		bufferevent_free(mc->bev);
	mc->bev = NULL;
	if (mc->timer)
		event_free(mc->timer);
	mc->timer = NULL;
	buf_free(&mc->q);
	mc->q_off = 0;
	mc->last_body = SIZE_MAX;
	mc->owed = 0;
}

/* The milter failed: closed for the session; a stage waiting on it goes on with the default action. */
static void mc_dead(struct mconn *mc, const char *why)
{
	if (mc->st == MC_DEAD)
		return;
	log_warn("milter", "milter=%s failed: %s; default action %s for this session", mc->spec, why,
		 mc->ms->p.dflt == MILTER_DEFAULT_ACCEPT ? "accept" : "tempfail");
	mc->st = MC_DEAD;
	milter_conn_close(mc);
	struct milter_sess *ms = mc->ms;
	if (ms->stage != STAGE_NONE && &ms->mc[ms->cur] == mc) {
		milter_default_verdict(mc, &mc->stage_v);
		milter_stage_next(ms);
	}
}

static void arm(struct mconn *mc, int64_t secs)
{
	struct timeval tv = {.tv_sec = secs};
	evtimer_add(mc->timer, &tv);
}

static int64_t timeout_for(const struct mconn *mc, char cmd)
{
	if (cmd == SMFIC_OPTNEG)
		return mc->ms->p.connect_timeout_s;
	if (cmd == SMFIC_BODY || cmd == SMFIC_BODYEOB)
		return mc->ms->p.content_timeout_s;
	return mc->ms->p.command_timeout_s;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct mconn *mc = arg;
	mc_dead(mc, mc->st == MC_CONNECTING ? "no connection or negotiation within milter_connect_timeout"
					    : "no reply within its timeout");
}

static void on_reply(struct mconn *mc, const struct milter_reply *r);

static void on_read(struct bufferevent *bev, void *arg)
{
	struct mconn *mc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		size_t avail = evbuffer_get_length(in);
		if (avail < 4)
			return;
		unsigned char hdr[4];
		evbuffer_copyout(in, hdr, 4);
		uint32_t len = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) | hdr[3];
		if (len == 0 || len > MILTER_REPLY_MAX) {
			mc_dead(mc, "reply longer than the protocol allows");
			return;
		}
		if (avail < (size_t)len + 4)
			return;
		unsigned char *p = evbuffer_pullup(in, (ssize_t)len + 4);
		struct milter_reply r;
		long used = milter_decode_reply(p, (size_t)len + 4, &r);
		if (used <= 0) {
			mc_dead(mc, "malformed reply");
			return;
		}
		on_reply(mc, &r); /* may close mc (then bev is gone) */
		if (mc->st == MC_DEAD || mc->bev != bev)
			return;
		evbuffer_drain(in, (size_t)used);
	}
}

static void on_written(struct bufferevent *bev, void *arg)
{
	(void)bev;
	milter_conn_pump(arg);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct mconn *mc = arg;
	if (what & BEV_EVENT_CONNECTED) {
		struct buf b = {0};
		milter_enc_optneg(&b, MILTER_VERSION, MILTER_OUR_ACTIONS, MILTER_OUR_STEPS);
		bufferevent_write(mc->bev, b.data, b.len);
		buf_free(&b);
		mc->owed = SMFIC_OPTNEG;
		return;
	}
	mc_dead(mc, what & BEV_EVENT_EOF ? "connection closed" : "connection error");
}

static void mc_start(struct mconn *mc)
{
	struct sockaddr_storage ss;
	socklen_t len;
	mc->st = MC_CONNECTING;
	mc->timer = evtimer_new(mc->ms->base, on_timer, mc);
	if (!mc->timer)
		abort(); /* out of memory */
	arm(mc, mc->ms->p.connect_timeout_s);
	mc->bev = bufferevent_socket_new(mc->ms->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!mc->bev)
		abort();
	bufferevent_setcb(mc->bev, on_read, on_written, on_event, mc);
	bufferevent_setwatermark(mc->bev, EV_WRITE, MILTER_OUT_MAX / 2, 0);
	bufferevent_setwatermark(mc->bev, EV_READ, 0, MILTER_REPLY_MAX + 4);
	bufferevent_enable(mc->bev, EV_READ);
	if (spec_addr(mc->spec, &ss, &len) < 0 || bufferevent_socket_connect(mc->bev, (struct sockaddr *)&ss, (int)len) < 0)
		mc_dead(mc, "cannot connect");
}

/* --- the queue ------------------------------------------------------------------- */

/* Does the milter want this command at all (SMFIP_NO*)? */
static bool wanted(const struct mconn *mc, char cmd)
{
	uint32_t s = mc->steps;
	switch (cmd) {
	case SMFIC_CONNECT: return !(s & SMFIP_NOCONNECT);
	case SMFIC_HELO: return !(s & SMFIP_NOHELO);
	case SMFIC_MAIL: return !(s & SMFIP_NOMAIL);
	case SMFIC_RCPT: return !(s & SMFIP_NORCPT);
	case SMFIC_DATA: return !(s & SMFIP_NODATA);
	case SMFIC_HEADER: return !(s & SMFIP_NOHDRS);
	case SMFIC_EOH: return !(s & SMFIP_NOEOH);
	case SMFIC_BODY: return !(s & SMFIP_NOBODY);
	default: return true;
	}
}

/* Does it answer this command (not SMFIP_NR_*; macros, abort and quit are never answered)? */
static bool answered(const struct mconn *mc, char cmd)
{
	uint32_t s = mc->steps;
	switch (cmd) {
	case SMFIC_MACRO: case SMFIC_ABORT: case SMFIC_QUIT: return false;
	case SMFIC_CONNECT: return !(s & SMFIP_NR_CONN);
	case SMFIC_HELO: return !(s & SMFIP_NR_HELO);
	case SMFIC_MAIL: return !(s & SMFIP_NR_MAIL);
	case SMFIC_RCPT: return !(s & SMFIP_NR_RCPT);
	case SMFIC_DATA: return !(s & SMFIP_NR_DATA);
	case SMFIC_HEADER: return !(s & SMFIP_NR_HDR);
	case SMFIC_EOH: return !(s & SMFIP_NR_EOH);
	case SMFIC_BODY: return !(s & SMFIP_NR_BODY);
	default: return true;
	}
}

bool milter_conn_live(const struct mconn *mc)
{
	return mc->st != MC_DEAD && !mc->sess_done;
}

/* Queues a packet the caller encoded in b. */
void milter_conn_enqueue(struct mconn *mc, const struct buf *b)
{
	if (mc->st == MC_NEW)
		mc_start(mc);
	if (mc->st == MC_DEAD)
		return;
	mc->last_body = SIZE_MAX;
	buf_append(&mc->q, b->data, b->len);
}

void milter_conn_drop(struct mconn *mc)
{
	buf_reset(&mc->q);
	mc->q_off = 0;
	mc->last_body = SIZE_MAX;
}

/* Sends what can go now. Then, if the stage waits on this milter and it has nothing left to do, the stage moves on. */
void milter_conn_pump(struct mconn *mc)
{
	if (mc->st != MC_READY)
		return;
	struct evbuffer *out = bufferevent_get_output(mc->bev);
	size_t before = mc->q.len - mc->q_off;
	/* the socket's buffer stays small (replies not owed, SMFIP_NR_*, would otherwise all go there): on_written resumes */
	while (!mc->owed && mc->q_off < mc->q.len && evbuffer_get_length(out) < MILTER_OUT_MAX) {
		const unsigned char *p = (const unsigned char *)mc->q.data + mc->q_off;
		uint32_t len = ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
		char cmd = (char)p[4];
		if (mc->q_off == mc->last_body)
			mc->last_body = SIZE_MAX;
		mc->q_off += (size_t)len + 4;
		if (!wanted(mc, cmd))
			continue;
		bufferevent_write(mc->bev, p, (size_t)len + 4);
		if (answered(mc, cmd)) {
			mc->owed = cmd;
			mc->owed_gen = mc->ms->gen;
			arm(mc, timeout_for(mc, cmd));
		}
	}
	bool sent = mc->q.len - mc->q_off < before;
	/*
	 * Nothing owed yet the queue waits on a full socket: the milter does not
	 * read what it said it will not answer (SMFIP_NR_*). It gets the content
	 * timeout to read on, or it is dead: a stage must never wait untimed.
	 */
	if (!mc->owed && mc->q_off < mc->q.len && (sent || !evtimer_pending(mc->timer, NULL)))
		arm(mc, mc->ms->p.content_timeout_s); /* from the last progress */
	else if (!mc->owed && mc->q_off == mc->q.len)
		evtimer_del(mc->timer);
	if (mc->q_off == mc->q.len)
		milter_conn_drop(mc);
	struct milter_sess *ms = mc->ms;
	if (sent && ms->p.held_changed)
		ms->p.held_changed(ms->p.held_arg);
	if (!mc->owed && mc->q.len == 0 && ms->stage != STAGE_NONE && &ms->mc[ms->cur] == mc)
		milter_stage_next(ms);
}

/* --- replies ---------------------------------------------------------------------- */

static void negotiated(struct mconn *mc, const struct milter_reply *r)
{
	if (r->cmd != SMFIR_OPTNEG || r->version < 2 || r->version > MILTER_VERSION) {
		mc_dead(mc, "bad option negotiation");
		return;
	}
	if ((r->actions & ~MILTER_OUR_ACTIONS) || (r->steps & ~MILTER_OUR_STEPS)) {
		mc_dead(mc, "asks for actions or protocol steps we did not offer");
		return;
	}
	mc->actions = r->actions;
	mc->steps = r->steps;
	mc->owed = 0;
	evtimer_del(mc->timer);
	mc->st = MC_READY;
	milter_conn_pump(mc);
}

static char *dup_n(const char *s, size_t n)
{
	return xstrndup(s, n);
}

/* A change asked for during the end of the message: kept, within bounds, if the milter negotiated it. */
static int take_change(struct mconn *mc, const struct milter_reply *r)
{
	struct milter_changes *ch = &mc->ms->ch;
	uint32_t need = r->cmd == SMFIR_ADDHEADER || r->cmd == SMFIR_INSHEADER ? SMFIF_ADDHDRS
			: r->cmd == SMFIR_CHGHEADER				? SMFIF_CHGHDRS
			: r->cmd == SMFIR_REPLBODY				? SMFIF_CHGBODY
			: r->cmd == SMFIR_QUARANTINE				? SMFIF_QUARANTINE
			: r->cmd == SMFIR_ADDRCPT				? SMFIF_ADDRCPT
			: r->cmd == SMFIR_DELRCPT				? SMFIF_DELRCPT
										: 0;
	if (!need || !(mc->actions & need))
		return -EPROTO;
	switch (r->cmd) {
	case SMFIR_ADDHEADER:
	case SMFIR_INSHEADER:
	case SMFIR_CHGHEADER: {
		if (ch->edit_bytes + r->name_len + r->value_len + 4 > MILTER_EDIT_BYTES_MAX)
			return -E2BIG;
		ch->edits = xrealloc(ch->edits, (ch->nedits + 1) * sizeof(*ch->edits));
		struct milter_edit *e = &ch->edits[ch->nedits++];
		e->op = r->cmd == SMFIR_ADDHEADER ? MILTER_EDIT_ADD : r->cmd == SMFIR_INSHEADER ? MILTER_EDIT_INSERT
												 : MILTER_EDIT_CHANGE;
		e->index = r->index;
		e->name = dup_n(r->name, r->name_len);
		e->value = dup_n(r->value, r->value_len);
		ch->edit_bytes += r->name_len + r->value_len + 4;
		return 0;
	}
	case SMFIR_REPLBODY:
		if (ch->body.len + r->data_len > mc->ms->p.max_message_size)
			return -E2BIG;
		ch->body_replaced = true;
		buf_append(&ch->body, r->data, r->data_len);
		return 0;
	case SMFIR_QUARANTINE:
		free(ch->quarantine);
		ch->quarantine = dup_n(r->text, r->text_len);
		return 0;
	default: /* addrcpt, delrcpt: a backup MX delivers to the recipients it accepted, no others */
		ch->rcpt_changes++;
		log_warn("milter", "milter=%s asked to %s <%.*s>: refused (the envelope is not changed)", mc->spec,
			 milter_reply_name(r->cmd), (int)r->text_len, r->text);
		return 0;
	}
}

/* Where a final reply's verdict goes, by the command it answers. */
static void record(struct mconn *mc, char owed, const struct milter_reply *r)
{
	struct milter_verdict v;
	reply_verdict(mc, r, &v);
	bool accept = r->cmd == SMFIR_ACCEPT;
	switch (owed) {
	case SMFIC_CONNECT:
	case SMFIC_HELO:
		mc->sess_v = v;
		mc->sess_done = accept;
		mc->stage_v = v;
		break;
	case SMFIC_RCPT:
		mc->stage_v = v;
		if (v.action == MILTER_DISCARD) { /* discards the whole message */
			mc->msg_v = v;
			mc->msg_done = true;
		}
		mc->msg_done |= accept;
		break;
	case SMFIC_MAIL:
	case SMFIC_BODYEOB:
		mc->stage_v = v;
		mc->msg_v = v;
		mc->msg_done |= accept || v.action != MILTER_CONTINUE;
		break;
	default: /* content: the verdict waits for the end of the message */
		mc->msg_v = v;
		mc->msg_done |= accept || v.action != MILTER_CONTINUE;
		break;
	}
	if (owed == SMFIC_BODYEOB)
		mc->eom_sent = false;
	if (mc->msg_done || mc->sess_done || v.action != MILTER_CONTINUE) {
		if (owed != SMFIC_RCPT || v.action == MILTER_DISCARD || accept)
			milter_conn_drop(mc); /* what is left of this message (or session) is not sent */
	}
}

static void on_reply(struct mconn *mc, const struct milter_reply *r)
{
	char owed = mc->owed;
	if (owed == SMFIC_OPTNEG) {
		negotiated(mc, r);
		return;
	}
	if (!owed) {
		mc_dead(mc, "reply to nothing");
		return;
	}
	if (r->cmd == SMFIR_PROGRESS) {
		arm(mc, timeout_for(mc, owed)); /* smfi_progress: still working, the clock starts again */
		return;
	}
	if (!milter_reply_is_final(r->cmd) || r->cmd == SMFIR_OPTNEG) {
		int rc = owed == SMFIC_BODYEOB && r->cmd != SMFIR_OPTNEG ? take_change(mc, r) : -EPROTO;
		if (rc < 0)
			mc_dead(mc, rc == -E2BIG ? "changes over the limits" : "unexpected reply");
		return;
	}
	if (r->cmd == SMFIR_SHUTDOWN || r->cmd == SMFIR_CONN_FAIL) {
		mc_dead(mc, "the milter shut down");
		return;
	}
	if (r->cmd == SMFIR_SKIP && owed != SMFIC_BODY) {
		mc_dead(mc, "skip outside the body");
		return;
	}
	mc->owed = 0;
	evtimer_del(mc->timer);
	if (mc->owed_gen != mc->ms->gen && owed != SMFIC_CONNECT && owed != SMFIC_HELO) {
		milter_conn_pump(mc); /* the answer to a message that is over */
		return;
	}
	if (r->cmd == SMFIR_SKIP) {
		/* no more body: drop queued body packets, keep the rest (eoh, eom) */
		struct buf keep = {0};
		for (size_t o = mc->q_off; o < mc->q.len;) {
			const unsigned char *p = (const unsigned char *)mc->q.data + o;
			size_t n = (((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3]) + 4;
			if (p[4] != SMFIC_BODY)
				buf_append(&keep, p, n);
			o += n;
		}
		buf_free(&mc->q);
		mc->q = keep;
		mc->q_off = 0;
		mc->last_body = SIZE_MAX;
	} else {
		record(mc, owed, r);
	}
	milter_conn_pump(mc);
}

