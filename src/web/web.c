/*
 * web: see web.h. The listener is ours (an evconnlistener handed to
 * evhttp) so that accepting can pause at WEB_MAX_CONNECTIONS: evhttp 2.1
 * has no such limit, and its timeout is per read, so a peer trickling a
 * request a byte at a time would hold a connection for hours. We make each
 * connection's bufferevent (evhttp_set_bevcb) and keep a reference to it;
 * once a second the connections evhttp has freed are forgotten, and those
 * older than WEB_MAX_LIFE_S are shut down, whatever the peer is doing.
 *
 * The queue manager's events feed the delivery counters of /metrics and
 * the page's last deliveries and bounces; a timer samples the queue for
 * the page's chart and watches the spool's write failures for /healthz.
 */
#include "web_int.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "base/metrics.h"
#include "delivery/qmgr.h"
#include "smtpd/smtp_server.h"
#include "spool/spool.h"

#define TICK_S 1

int web_bind(const struct cfg_addr *addr, int *fd)
{
	int s = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s < 0)
		return -errno;
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s, (const struct sockaddr *)&addr->ss, addr->sslen) < 0 || listen(s, 64) < 0) {
		int err = -errno;
		close(s);
		return err;
	}
	*fd = s;
	return 0;
}

/* --- health ------------------------------------------------------------- */

bool web_spool_healthy(struct web *w, const char **why)
{
	struct spool_stats st;
	spool_get_stats(w->d.sp, &st);
	int64_t now = clock_wall_s();
	if (st.failures > w->spool_failures_seen) {
		w->spool_failures_seen = st.failures;
		w->last_failure = now;
	}
	if (!spool_has_space(w->d.sp)) {
		*why = "the spool is short of space (min_free_space)";
		return false;
	}
	if (w->last_failure && now - w->last_failure < WEB_FAILURE_RECENT_S) {
		*why = "a spool write failed in the last minute";
		return false;
	}
	return true;
}

/* --- the pages ------------------------------------------------------------ */

static void send_page(struct evhttp_request *req, int code, const char *reason, const char *type, struct buf *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "X-Content-Type-Options", "nosniff");
	/* The page is ours entirely: no script or style from elsewhere, none injected. */
	evhttp_add_header(h, "Content-Security-Policy",
			  "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
			  "form-action 'none'; frame-ancestors 'none'");
	struct evbuffer *out = evbuffer_new();
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		char len[32];
		snprintf(len, sizeof(len), "%zu", body->len);
		evhttp_add_header(h, "Content-Length", len);
	} else {
		evbuffer_add(out, body->data, body->len);
	}
	evhttp_send_reply(req, code, reason, out);
	evbuffer_free(out);
}

static void page_metrics(struct web *w, struct evhttp_request *req, struct buf *b)
{
	web_metrics_render(w, b);
	send_page(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
}

static void page_healthz(struct web *w, struct evhttp_request *req, struct buf *b)
{
	const char *why = NULL;
	bool ok = web_spool_healthy(w, &why);
	if (!smtp_server_accepting(w->d.srv)) {
		ok = false;
		why = "the SMTP listeners are not accepting";
	}
	buf_printf(b, "%s\n", ok ? "ok" : why);
	send_page(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", "text/plain; charset=utf-8", b);
}

static void page_status(struct web *w, struct evhttp_request *req, struct buf *b)
{
	web_page_render(w, b);
	send_page(req, 200, "OK", "text/html; charset=utf-8", b);
}

static const struct {
	const char *path;
	void (*fn)(struct web *w, struct evhttp_request *req, struct buf *b);
} pages[] = {
	{"/", page_status},
	{"/metrics", page_metrics},
	{"/healthz", page_healthz},
};

static void on_request(struct evhttp_request *req, void *arg)
{
	struct web *w = arg;
	struct buf b = {0};
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		buf_append_str(&b, "only GET and HEAD\n");
		send_page(req, 405, "Method Not Allowed", "text/plain; charset=utf-8", &b);
		buf_free(&b);
		return;
	}
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	for (size_t i = 0; path && i < ARRAY_LEN(pages); i++) {
		if (strcmp(path, pages[i].path) == 0) {
			pages[i].fn(w, req, &b);
			buf_free(&b);
			return;
		}
	}
	buf_append_str(&b, "not found: try /, /metrics or /healthz\n");
	send_page(req, 404, "Not Found", "text/plain; charset=utf-8", &b);
	buf_free(&b);
}

/* --- connections ---------------------------------------------------------- */

/*
 * evhttp asks for each accepted connection's bufferevent: we make it, and
 * keep a reference to it so that we can tell when evhttp has let it go
 * (bufferevent_free clears its callbacks). That is how connections are
 * counted whatever the peer does; the fd closes with our last reference.
 */
static struct bufferevent *new_connection(struct event_base *base, void *arg)
{
	struct web *w = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (!bev)
		abort(); /* out of memory, as xmalloc */
	if (w->nconns == ARRAY_LEN(w->conns))
		return bev; /* cannot happen: accepting paused at WEB_MAX_CONNECTIONS */
	bufferevent_incref(bev);
	w->conns[w->nconns++] = (struct web_conn){.bev = bev, .accepted_ms = clock_mono_ms()};
	if (w->nconns >= WEB_MAX_CONNECTIONS)
		evconnlistener_disable(w->listener);
	return bev;
}

/* Once a second: forgets the connections evhttp has freed, ends those past WEB_MAX_LIFE_S. */
static void reap_connections(struct web *w)
{
	int64_t now = clock_mono_ms();
	for (size_t i = 0; i < w->nconns;) {
		struct web_conn *c = &w->conns[i];
		bufferevent_data_cb readcb;
		bufferevent_getcb(c->bev, &readcb, NULL, NULL, NULL);
		if (!readcb) {
			bufferevent_decref(c->bev);
			*c = w->conns[--w->nconns];
			continue;
		}
		/* A peer that trickles its request: evhttp's timeout is per read. The shutdown makes evhttp free it. */
		if (now - c->accepted_ms > WEB_MAX_LIFE_S * 1000)
			shutdown(bufferevent_getfd(c->bev), SHUT_RDWR);
		i++;
	}
	if (w->nconns < WEB_MAX_CONNECTIONS)
		evconnlistener_enable(w->listener);
}

/* --- the queue manager's events and the timer ----------------------------- */

static void copy_str(char *out, size_t n, const char *s)
{
	if (fmt(out, n, "%s", s ? s : "") < 0)
		out[n - 1] = '\0'; /* fmt truncated it: kept as far as it goes */
}

static void on_qmgr_event(void *arg, const struct qmgr_event *ev)
{
	struct web *w = arg;
	static const struct {
		enum qmgr_event_kind kind;
		enum metric_counter counter;
		const char *shown; /* on the page's list, or NULL */
	} kinds[] = {
		{QMGR_EV_DELIVERED, METRIC_DELIVERED, "delivered"},
		{QMGR_EV_DEFERRED, METRIC_DEFERRED, NULL},
		{QMGR_EV_BOUNCED, METRIC_BOUNCED, "bounced"},
		{QMGR_EV_EXPIRED, METRIC_EXPIRED, "expired"},
	};
	if (ev->kind == QMGR_EV_DSN) {
		metrics_inc(ev->reply && strcmp(ev->reply, "delayed") == 0 ? METRIC_DSN_DELAYED : METRIC_DSN_FAILED);
		return;
	}
	for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
		if (kinds[i].kind != ev->kind)
			continue;
		metrics_inc(kinds[i].counter);
		if (!kinds[i].shown)
			return;
		struct web_recent r = {.when = clock_wall_s(), .what = kinds[i].shown, .code = ev->code};
		copy_str(r.domain, sizeof(r.domain), ev->dest ? ev->dest->domain : "");
		copy_str(r.rcpt, sizeof(r.rcpt), ev->rcpt);
		copy_str(r.relay, sizeof(r.relay), ev->relay);
		copy_str(r.reply, sizeof(r.reply), ev->reply);
		web_history_add_recent(&w->hist, &r);
		return;
	}
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct web *w = arg;
	reap_connections(w);
	const char *why;
	(void)web_spool_healthy(w, &why); /* notices write failures even when nobody asks */
	web_history_sample(w, clock_wall_s());
}

/* --- start and stop --------------------------------------------------------- */

struct web *web_start(const struct web_deps *deps, int fd)
{
	struct web *w = xcalloc(1, sizeof(*w));
	w->d = *deps;
	w->d.cfg = cfg_ref(deps->cfg); /* its own: a reload may replace the daemon's */
	w->started = clock_wall_s();
	w->http = evhttp_new(deps->base);
	w->listener = evconnlistener_new(deps->base, NULL, NULL, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!w->http || !w->listener || !evhttp_bind_listener(w->http, w->listener))
		abort(); /* only memory can be short here: the socket is bound and listening */
	evhttp_set_max_headers_size(w->http, WEB_MAX_HEADERS);
	evhttp_set_max_body_size(w->http, 0);
	evhttp_set_timeout(w->http, WEB_TIMEOUT_S);
	evhttp_set_allowed_methods(w->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
						    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_bevcb(w->http, new_connection, w);
	evhttp_set_gencb(w->http, on_request, w);
	web_history_init(&w->hist, deps->cfg);
	qmgr_observe(deps->qmgr, on_qmgr_event, w);
	web_history_sample(w, clock_wall_s());
	w->tick_ev = event_new(deps->base, -1, EV_PERSIST, on_tick, w);
	event_add(w->tick_ev, &(struct timeval){TICK_S, 0});
	log_info("web", "listening on %s (/metrics, /healthz, the status page at /)", deps->cfg->http_listen->text);
	return w;
}

static void keep_view(void *arg, const struct qmgr_dest_view *v)
{
	struct web_views *vs = arg;
	if (vs->n == vs->cap) {
		vs->cap = vs->cap ? vs->cap * 2 : 16;
		vs->v = xrealloc(vs->v, vs->cap * sizeof(*vs->v));
	}
	vs->v[vs->n++] = *v;
}

void web_views_collect(struct web *w, struct web_views *vs)
{
	*vs = (struct web_views){0};
	qmgr_each_dest(w->d.qmgr, keep_view, vs);
}

void web_views_free(struct web_views *vs)
{
	free(vs->v);
	vs->v = NULL;
	vs->n = vs->cap = 0;
}

void web_set_cfg(struct web *w, const struct cfg *next)
{
	if (!w)
		return;
	cfg_unref(w->d.cfg);
	w->d.cfg = cfg_ref(next);
	web_history_set_domains(&w->hist, next);
}

void web_free(struct web *w)
{
	if (!w)
		return;
	event_free(w->tick_ev);
	evhttp_free(w->http); /* frees the listener it was bound to, and every connection */
	for (size_t i = 0; i < w->nconns; i++)
		bufferevent_decref(w->conns[i].bev);
	web_history_free(&w->hist);
	cfg_unref(w->d.cfg);
	free(w);
}
