/*
 * callout: see callout.h. Owns the destinations (one per domain asked
 * about), their queues of requests and their connections. Called by the
 * SMTP server through the verifier the daemon builds (base/verify.h), and
 * by libevent and the resolver. States of a connection:
 *   RESOLVE -> CONNECT -> BANNER -> EHLO (-> HELO) -> IDLE
 *   IDLE -> MAIL -> RCPT -> RSET -> IDLE ...;  IDLE -> QUIT -> freed
 * Before IDLE a failure moves on to the next address, and past the last
 * one the destination is unreachable. After it, a failure ends the
 * connection and its request gets VERIFY_TEMPFAIL (VERIFY_TIMEOUT if its
 * time ran out). Replies are hostile input, parsed by smtp_reply.c; every
 * wait for the peer has a deadline (callout_timeout).
 *
 * Invariants: a request is either queued on its destination or held by
 * exactly one connection (conn->req); dest->nconn counts its connections,
 * dest->nstarting those not yet IDLE once, which each take a queued
 * request when ready. A request's done runs only from an event callback
 * (never from callout_start), after the request is unlinked; it may call
 * callout_start and callout_cancel again.
 */
#include "callout.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "base/log.h"
#include "route.h"
#include "smtp_reply.h"
#include "store/learned.h"

#define QUIT_WAIT_S 2
#define CONNECT_MIN_MS 250 /* a connect given less is not worth trying */
#define READ_HIGH (4 * SMTP_REPLY_LINE_MAX)

enum co_state { CO_RESOLVE, CO_CONNECT, CO_BANNER, CO_EHLO, CO_HELO, CO_IDLE, CO_MAIL, CO_RCPT, CO_RSET, CO_QUIT };

struct co_dest;
struct co_conn;

struct verify_req {
	struct co_dest *dest;
	struct co_conn *conn;     /* the connection asking, or NULL while queued */
	struct verify_req *next;  /* in the destination's queue */
	verify_done_fn *done;     /* NULL once cancelled */
	void *arg;
	/* Requests for the same address while this one is asked share its answer. */
	struct verify_req *leader;       /* a follower's: the request it waits on */
	struct verify_req *followers;    /* a leader's: who waits on it */
	struct verify_req *next_follower;
	struct event *deadline;
	char addr[LEARNED_KEY_MAX + 1];
};

struct co_conn {
	struct co_dest *dest;
	struct co_conn *next;
	enum co_state st;
	uint32_t gen;             /* the destination's gen when it was opened */
	bool detached;            /* callout_stop while resolving: freed by the route callback */
	bool was_ready;
	struct bufferevent *bev;
	struct event *timer;      /* the reply deadline, or the idle time */
	struct smtp_out_addr *addrs;
	size_t naddrs, ai;
	struct smtp_reply rep;
	struct verify_req *req;
	char why[SMTP_REPLY_TEXT_MAX + 64];
};

struct co_dest {
	struct callout *co;
	char *domain;
	const struct cfg *cfg;    /* a reference: the configuration cd belongs to */
	const struct cfg_domain *cd;
	struct verify_req *qhead, *qtail;
	size_t qlen;
	struct co_conn *conns;
	uint32_t nconn, nstarting;
	int64_t down_until_ms;    /* unreachable: requests get VERIFY_UNREACHABLE at once until then */
	uint32_t gen;             /* bumped when a reload moves the primary: older connections are not reused */
};

struct callout {
	const struct cfg *cfg;    /* a reference; callout_set_cfg swaps it */
	struct event_base *base;
	struct learned *learned;
	struct route_ctx *route;
	struct htab dests;        /* domain -> struct co_dest */
	bool stopping;
};

static void pump(struct co_dest *d);
static void try_address(struct co_conn *c);

/* --- requests ------------------------------------------------------------ */

static void req_free(struct verify_req *q)
{
	if (q->deadline)
		event_free(q->deadline);
	free(q);
}

/* Answers q (already unlinked from queue and connection) and its followers, and frees them. */
static void answer(struct verify_req *q, enum verify_result r, const char *reply)
{
	verify_done_fn *done = q->done;
	void *arg = q->arg;
	struct verify_req *f = q->followers;
	req_free(q);
	if (done)
		done(arg, r, reply);
	while (f) {
		struct verify_req *next = f->next_follower;
		f->leader = NULL;
		answer(f, r, reply);
		f = next;
	}
}

static void unfollow(struct verify_req *f)
{
	for (struct verify_req **pp = &f->leader->followers; *pp; pp = &(*pp)->next_follower)
		if (*pp == f) {
			*pp = f->next_follower;
			break;
		}
	f->leader = NULL;
}

static struct verify_req *dequeue(struct co_dest *d)
{
	struct verify_req *q = d->qhead;
	if (!q)
		return NULL;
	d->qhead = q->next;
	if (!d->qhead)
		d->qtail = NULL;
	d->qlen--;
	q->next = NULL;
	return q;
}

static void unqueue(struct co_dest *d, struct verify_req *q)
{
	struct verify_req **pp = &d->qhead, *prev = NULL;
	while (*pp && *pp != q) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (!*pp)
		return;
	*pp = q->next;
	if (d->qtail == q)
		d->qtail = prev;
	d->qlen--;
	q->next = NULL;
}

/* --- connections: ending ------------------------------------------------- */

static void conn_free(struct co_conn *c)
{
	struct co_dest *d = c->dest;
	for (struct co_conn **pp = &d->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	d->nconn--;
	if (!c->was_ready)
		d->nstarting--;
	if (c->bev)
		bufferevent_free(c->bev);
	if (c->timer)
		event_free(c->timer);
	free(c->addrs);
	free(c);
}

/* The session broke after it was up: its request (if any) is not answered by the primary. */
static void conn_broken(struct co_conn *c, enum verify_result r)
{
	struct co_dest *d = c->dest;
	struct verify_req *q = c->req;
	log_info("callout", "dest=%s peer=%s session ended: %s", d->domain,
		 c->ai < c->naddrs ? c->addrs[c->ai].host : "-", c->why);
	c->req = NULL;
	conn_free(c);
	if (q)
		answer(q, r, "");
	pump(d);
}

/* No address answered: the destination is down for a while, and everyone waiting is told so. */
static void conn_unreachable(struct co_conn *c)
{
	struct co_dest *d = c->dest;
	struct callout *co = d->co;
	log_info("callout", "dest=%s unreachable: %s", d->domain, c->why);
	d->down_until_ms = clock_mono_ms() + co->cfg->probe_interval * 1000;
	struct verify_req *mine = c->req;
	c->req = NULL;
	conn_free(c);
	if (mine)
		answer(mine, VERIFY_UNREACHABLE, "");
	struct verify_req *q;
	while ((q = dequeue(d)))
		answer(q, VERIFY_UNREACHABLE, "");
}

static void fail_address(struct co_conn *c, const char *f, ...) PRINTF_LIKE(2, 3);
static void fail_address(struct co_conn *c, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vsnprintf(c->why, sizeof(c->why), f, ap);
	va_end(ap);
	if (c->was_ready) {
		conn_broken(c, VERIFY_TEMPFAIL);
		return;
	}
	if (c->bev) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	evtimer_del(c->timer);
	c->ai++;
	try_address(c);
}

/* --- connections: talking ------------------------------------------------ */

static void expect_ms(struct co_conn *c, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
	evtimer_add(c->timer, &tv);
}

static void expect(struct co_conn *c, int64_t secs)
{
	expect_ms(c, secs * 1000);
}

static void say(struct co_conn *c, const char *f, ...) PRINTF_LIKE(2, 3);
static void say(struct co_conn *c, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	evbuffer_add_vprintf(bufferevent_get_output(c->bev), f, ap);
	va_end(ap);
	evbuffer_add(bufferevent_get_output(c->bev), "\r\n", 2);
	smtp_reply_init(&c->rep, c->st == CO_EHLO);
	expect(c, c->dest->co->cfg->callout_timeout);
}

static void start_request(struct co_conn *c, struct verify_req *q)
{
	c->req = q;
	q->conn = c;
	c->st = CO_MAIL;
	say(c, "MAIL FROM:<>");
}

/* Ready for a request: the next queued one, or idle until CALLOUT_IDLE_S. */
static void take_next(struct co_conn *c)
{
	struct co_dest *d = c->dest;
	if (c->gen != d->gen) {
		/* A connection to the primary of before a reload: its request is answered, and it goes. */
		conn_free(c);
		pump(d);
		return;
	}
	struct verify_req *q = d->co->stopping ? NULL : dequeue(d);
	if (q) {
		start_request(c, q);
		return;
	}
	c->st = CO_IDLE;
	expect(c, CALLOUT_IDLE_S);
}

static void now_ready(struct co_conn *c)
{
	if (!c->was_ready) {
		c->was_ready = true;
		c->dest->nstarting--;
		c->dest->down_until_ms = 0;
	}
	take_next(c);
}

/* The primary answered RCPT: record it, answer the request, and RSET. */
static void rcpt_answered(struct co_conn *c)
{
	struct verify_req *q = c->req;
	struct callout *co = c->dest->co;
	int code = c->rep.code;
	enum smtp_verdict v = smtp_reply_verdict(SMTP_CMD_RCPT, code);
	enum verify_result r = v == SMTP_VERDICT_OK ? VERIFY_ACCEPTED
			       : v == SMTP_VERDICT_PERMFAIL ? VERIFY_REFUSED
							    : VERIFY_TEMPFAIL;
	if (co->learned && (r == VERIFY_ACCEPTED || r == VERIFY_REFUSED))
		learned_put(co->learned, q->addr, r == VERIFY_ACCEPTED, clock_wall_s());
	log_info("callout", "to=<%s> peer=%s result=%s reply=\"%s\"", q->addr, c->addrs[c->ai].host,
		 r == VERIFY_ACCEPTED ? "accepted" : r == VERIFY_REFUSED ? "refused" : "tempfail", c->rep.text);
	char reply[SMTP_REPLY_TEXT_MAX + 1];
	memcpy(reply, c->rep.text, sizeof(reply));
	c->req = NULL;
	c->st = CO_RSET;
	say(c, "RSET");
	answer(q, r, reply);
}

static void on_reply(struct co_conn *c)
{
	int code = c->rep.code;
	evtimer_del(c->timer);
	switch (c->st) {
	case CO_BANNER:
		if (smtp_reply_verdict(SMTP_CMD_GREETING, code) != SMTP_VERDICT_OK) {
			fail_address(c, "greeting: %s", c->rep.text);
			return;
		}
		c->st = CO_EHLO;
		say(c, "EHLO %s", c->dest->co->cfg->hostname);
		return;
	case CO_EHLO:
		if (smtp_reply_verdict(SMTP_CMD_EHLO, code) == SMTP_VERDICT_OK) {
			now_ready(c);
		} else if (code >= 500 && code < 600) {
			c->st = CO_HELO;
			say(c, "HELO %s", c->dest->co->cfg->hostname);
		} else {
			fail_address(c, "EHLO: %s", c->rep.text);
		}
		return;
	case CO_HELO:
		if (smtp_reply_verdict(SMTP_CMD_HELO, code) == SMTP_VERDICT_OK)
			now_ready(c);
		else
			fail_address(c, "HELO: %s", c->rep.text);
		return;
	case CO_MAIL:
		if (smtp_reply_verdict(SMTP_CMD_MAIL, code) != SMTP_VERDICT_OK) {
			/* The null sender refused: no verdict on the recipient. */
			snprintf(c->why, sizeof(c->why), "MAIL FROM:<> refused: %s", c->rep.text);
			conn_broken(c, VERIFY_TEMPFAIL);
			return;
		}
		c->st = CO_RCPT;
		say(c, "RCPT TO:<%s>", c->req->addr);
		return;
	case CO_RCPT:
		if (smtp_reply_verdict(SMTP_CMD_RCPT, code) == SMTP_VERDICT_PROTOCOL) {
			snprintf(c->why, sizeof(c->why), "protocol error: RCPT answered with \"%s\"", c->rep.text);
			conn_broken(c, VERIFY_TEMPFAIL);
			return;
		}
		rcpt_answered(c);
		return;
	case CO_RSET:
		if (smtp_reply_verdict(SMTP_CMD_RSET, code) != SMTP_VERDICT_OK) {
			snprintf(c->why, sizeof(c->why), "RSET: %s", c->rep.text);
			conn_broken(c, VERIFY_TEMPFAIL);
			return;
		}
		take_next(c);
		return;
	case CO_QUIT:
		conn_free(c);
		return;
	default:
		snprintf(c->why, sizeof(c->why), "unexpected reply \"%s\"", c->rep.text);
		if (c->was_ready)
			conn_broken(c, VERIFY_TEMPFAIL);
		else
			fail_address(c, "%s", c->why);
		return;
	}
}

/* A connection of d still uses bev (libevent keeps bev's memory until this callback returns). */
static bool conn_has_bev(const struct co_dest *d, const struct bufferevent *bev)
{
	for (const struct co_conn *x = d->conns; x; x = x->next)
		if (x->bev == bev)
			return true;
	return false;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct co_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		size_t n;
		char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
		if (!line) {
			if (evbuffer_get_length(in) > READ_HIGH) {
				if (c->st == CO_IDLE || c->st == CO_QUIT)
					conn_free(c);
				else
					fail_address(c, "reply line too long");
			}
			return;
		}
		if (c->st == CO_IDLE) {
			free(line); /* nothing asked: the peer talks out of turn; drop the connection */
			conn_free(c);
			return;
		}
		int rc = smtp_reply_feed(&c->rep, line, n);
		free(line);
		if (rc < 0) {
			if (c->st == CO_QUIT) {
				conn_free(c);
				return;
			}
			fail_address(c, "bad reply: %s", smtp_reply_strerror(rc));
			return;
		}
		if (rc == SMTP_REPLY_DONE) {
			struct bufferevent *mine = c->bev;
			struct co_dest *d = c->dest;
			on_reply(c);
			/* on_reply may have freed c (and this bufferevent): read on only if both are still ours. */
			if (!conn_has_bev(d, mine))
				return;
		}
	}
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	struct co_conn *c = arg;
	if (what & BEV_EVENT_CONNECTED) {
		evtimer_del(c->timer);
		c->st = CO_BANNER;
		smtp_reply_init(&c->rep, false);
		expect(c, c->dest->co->cfg->callout_timeout);
		return;
	}
	if (c->st == CO_IDLE || c->st == CO_QUIT) {
		conn_free(c);
		return;
	}
	int e = EVUTIL_SOCKET_ERROR();
	fail_address(c, "%s", (what & BEV_EVENT_EOF) ? "connection closed" : evutil_socket_error_to_string(e));
}

static void request_timed_out(struct verify_req *q);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct co_conn *c = arg;
	switch (c->st) {
	case CO_IDLE:
		c->st = CO_QUIT;
		say(c, "QUIT");
		expect(c, QUIT_WAIT_S);
		return;
	case CO_QUIT:
		conn_free(c);
		return;
	default:
		/*
		 * The request's own deadline and this reply timer run the same
		 * length and often end in the same clock tick, in either order:
		 * the request times out the same way whichever comes first.
		 */
		if (c->req && c->was_ready) {
			request_timed_out(c->req);
			return;
		}
		fail_address(c, "timeout %s", c->st == CO_CONNECT ? "connecting" : "waiting for a reply");
	}
}

/*
 * Connect timeout per address, in ms: the addresses share 90% of the
 * callout's time, so that a primary taking no connection is found
 * unreachable (and unknown_during_outage decides) before the request's own
 * deadline, not in the same clock tick, where either could win.
 */
static int64_t connect_timeout_ms(const struct co_conn *c)
{
	const struct cfg *cfg = c->dest->co->cfg;
	int64_t t = cfg->callout_timeout * 900 / (int64_t)(c->naddrs ? c->naddrs : 1);
	if (t > cfg->delivery_connect_timeout * 1000)
		t = cfg->delivery_connect_timeout * 1000;
	return t < CONNECT_MIN_MS ? CONNECT_MIN_MS : t;
}

static void try_address(struct co_conn *c)
{
	if (c->ai >= c->naddrs) {
		conn_unreachable(c);
		return;
	}
	struct callout *co = c->dest->co;
	const struct smtp_out_addr *a = &c->addrs[c->ai];
	c->st = CO_CONNECT;
	c->bev = bufferevent_socket_new(co->base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH + 1);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	expect_ms(c, connect_timeout_ms(c));
	if (bufferevent_socket_connect(c->bev, (const struct sockaddr *)&a->ss, (int)a->len) < 0)
		fail_address(c, "connect: %s", strerror(errno));
}

static void on_route(void *arg, const struct route_result *r)
{
	struct co_conn *c = arg;
	if (c->detached) {
		free(c);
		return;
	}
	if (r->status != ROUTE_OK || r->naddrs == 0) {
		snprintf(c->why, sizeof(c->why), "no route: %s", r->why);
		conn_unreachable(c);
		return;
	}
	c->addrs = xcalloc(r->naddrs, sizeof(*c->addrs));
	memcpy(c->addrs, r->addrs, r->naddrs * sizeof(*c->addrs));
	c->naddrs = r->naddrs;
	try_address(c);
}

static void conn_new(struct co_dest *d)
{
	struct co_conn *c = xcalloc(1, sizeof(*c));
	c->dest = d;
	c->st = CO_RESOLVE;
	c->gen = d->gen;
	c->timer = evtimer_new(d->co->base, on_timer, c);
	c->next = d->conns;
	d->conns = c;
	d->nconn++;
	d->nstarting++;
	route_resolve(d->co->route, d->domain, d->cd, on_route, c);
}

/* --- scheduling ---------------------------------------------------------- */

static bool is_down(const struct co_dest *d)
{
	return d->down_until_ms && clock_mono_ms() < d->down_until_ms;
}

static void pump(struct co_dest *d)
{
	struct callout *co = d->co;
	while (d->qhead && !co->stopping) {
		if (is_down(d)) {
			struct verify_req *q;
			while ((q = dequeue(d)))
				answer(q, VERIFY_UNREACHABLE, "");
			return;
		}
		struct co_conn *idle = NULL;
		for (struct co_conn *c = d->conns; c && !idle; c = c->next)
			if (c->st == CO_IDLE)
				idle = c;
		if (idle) {
			evtimer_del(idle->timer);
			start_request(idle, dequeue(d));
			continue;
		}
		if (d->qlen > d->nstarting && d->nconn < co->cfg->max_connections_per_destination) {
			conn_new(d);
			continue;
		}
		return;
	}
}

/*
 * q got no answer within callout_timeout: 451 4.4.3, and a connection that
 * stalls on it is of no further use.
 */
static void request_timed_out(struct verify_req *q)
{
	struct co_dest *d = q->dest;
	log_info("callout", "to=<%s> dest=%s timeout after %" PRId64 "s", q->addr, d->domain,
		 d->co->cfg->callout_timeout);
	if (q->leader) {
		unfollow(q);
		answer(q, VERIFY_TIMEOUT, "");
		return;
	}
	struct co_conn *c = q->conn;
	if (c) {
		c->req = NULL;
		conn_free(c);
	} else {
		unqueue(d, q);
	}
	answer(q, VERIFY_TIMEOUT, "");
	pump(d);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	request_timed_out(arg);
}

/*
 * The destination of a domain, bound to the module's configuration (not
 * to the asking session's, which may end first); NULL when a session still
 * on an older configuration asks for a domain the current one dropped.
 */
static struct co_dest *dest_get(struct callout *co, const struct cfg_domain *asked)
{
	size_t n = strlen(asked->name);
	struct co_dest *d = htab_get_str(&co->dests, asked->name, n);
	if (d)
		return d;
	const struct cfg_domain *cd = cfg_find_domain(co->cfg, asked->name);
	if (!cd || !cd->callout)
		return NULL;
	d = xcalloc(1, sizeof(*d));
	d->co = co;
	d->domain = xstrdup(cd->name);
	d->cfg = cfg_ref(co->cfg);
	d->cd = cd;
	htab_put_str(&co->dests, d->domain, n, d);
	return d;
}

/* A request for addr (any case) queued or being asked at d, or NULL. */
static struct verify_req *find_leader(struct co_dest *d, const char *addr)
{
	for (struct verify_req *q = d->qhead; q; q = q->next)
		if (strcasecmp(q->addr, addr) == 0)
			return q;
	for (struct co_conn *c = d->conns; c; c = c->next)
		if (c->req && strcasecmp(c->req->addr, addr) == 0)
			return c->req;
	return NULL;
}

struct verify_req *callout_start(void *impl, const struct cfg_domain *cd, const char *addr, verify_done_fn *done,
				 void *arg, enum verify_result *now)
{
	struct callout *co = impl;
	struct co_dest *d = dest_get(co, cd);
	if (!d) {
		*now = VERIFY_TEMPFAIL;
		return NULL;
	}
	if (is_down(d) || co->stopping) {
		*now = VERIFY_UNREACHABLE;
		return NULL;
	}
	if (d->qlen >= CALLOUT_QUEUE_MAX || strlen(addr) > LEARNED_KEY_MAX) {
		*now = VERIFY_TEMPFAIL;
		return NULL;
	}
	struct verify_req *q = xcalloc(1, sizeof(*q));
	q->dest = d;
	q->done = done;
	q->arg = arg;
	memcpy(q->addr, addr, strlen(addr) + 1);
	q->deadline = evtimer_new(co->base, on_deadline, q);
	struct timeval tv = {(time_t)co->cfg->callout_timeout, 0};
	evtimer_add(q->deadline, &tv);
	struct verify_req *leader = find_leader(d, addr);
	if (leader) {
		/* Already being asked (many sessions, one address): one callout answers all. */
		q->leader = leader;
		q->next_follower = leader->followers;
		leader->followers = q;
		return q;
	}
	if (d->qtail)
		d->qtail->next = q;
	else
		d->qhead = q;
	d->qtail = q;
	d->qlen++;
	pump(d); /* never answers q here: a connection takes it only once it is ready */
	return q;
}

void callout_cancel(void *impl, struct verify_req *q)
{
	(void)impl;
	if (q->leader) {
		unfollow(q);
		req_free(q);
		return;
	}
	if (q->conn || q->followers) {
		/*
		 * Being asked, or others wait on it: it goes on (the answer is
		 * still learned and handed to the followers), telling nobody here.
		 */
		q->done = NULL;
		return;
	}
	unqueue(q->dest, q);
	req_free(q);
}

struct callout *callout_new(const struct callout_deps *deps)
{
	struct callout *co = xcalloc(1, sizeof(*co));
	co->cfg = cfg_ref(deps->cfg);
	co->base = deps->base;
	co->learned = deps->learned;
	co->route = route_new(deps->cfg, deps->dns);
	return co;
}

static void stop_dest(void *val, void *arg)
{
	(void)arg;
	struct co_dest *d = val;
	struct co_conn *c = d->conns;
	while (c) {
		struct co_conn *next = c->next;
		if (c->st == CO_RESOLVE) {
			/* The resolver's cancellation frees it. */
			c->detached = true;
			event_free(c->timer);
			c->timer = NULL;
			for (struct co_conn **pp = &d->conns; *pp; pp = &(*pp)->next)
				if (*pp == c) {
					*pp = c->next;
					break;
				}
			d->nconn--;
			d->nstarting--;
		} else {
			if (c->st == CO_IDLE) {
				/* Best effort, without waiting: the peer sees a polite end. */
				evutil_socket_t fd = bufferevent_getfd(c->bev);
				if (fd >= 0 && send(fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
					log_debug("callout", "dest=%s QUIT not sent: %s", d->domain, strerror(errno));
			}
			struct verify_req *q = c->req;
			c->req = NULL;
			if (q) {
				q->conn = NULL;
				answer(q, VERIFY_TEMPFAIL, "");
			}
			conn_free(c);
		}
		c = next;
	}
	struct verify_req *q;
	while ((q = dequeue(d)))
		answer(q, VERIFY_TEMPFAIL, "");
}

void callout_stop(struct callout *co)
{
	co->stopping = true;
	htab_each(&co->dests, stop_dest, NULL);
}

static void free_dest(void *val, void *arg)
{
	(void)arg;
	struct co_dest *d = val;
	free(d->domain);
	cfg_unref(d->cfg);
	free(d);
}

/* A destination whose domain is still configured moves to the new section; one dropped keeps its old one. */
static void rebind_dest(void *val, void *arg)
{
	struct co_dest *d = val;
	const struct cfg *cfg = arg;
	const struct cfg_domain *cd = cfg_find_domain(cfg, d->domain);
	if (!cd || !cd->callout)
		return;
	if (cfg_domain_key_differs(d->cd, cd, "primary")) {
		d->gen++;
		/* Idle ones go now; busy ones after their answer (take_next); those still resolving see gen too. */
		for (struct co_conn *c = d->conns, *next; c; c = next) {
			next = c->next;
			if (c->st == CO_IDLE)
				conn_free(c);
		}
	}
	cfg_unref(d->cfg);
	d->cfg = cfg_ref(cfg);
	d->cd = cd;
}

void callout_set_cfg(struct callout *co, const struct cfg *cfg)
{
	const struct cfg *old = co->cfg;
	co->cfg = cfg_ref(cfg);
	htab_each(&co->dests, rebind_dest, (void *)cfg);
	cfg_unref(old);
}

void callout_free(struct callout *co)
{
	if (!co)
		return;
	if (!co->stopping)
		callout_stop(co);
	htab_each(&co->dests, free_dest, NULL);
	htab_free(&co->dests);
	route_free(co->route);
	cfg_unref(co->cfg);
	free(co);
}
