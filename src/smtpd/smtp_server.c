/*
 * smtp_server: see smtp_server.h. Owns the listeners, the session table and
 * the per-client-network counts; creates each session with the shared
 * struct smtp_in_ctx and hears back only when it ends.
 *
 * Accepting is guarded: when the process runs out of file descriptors
 * (EMFILE, ENFILE) the listeners pause for a moment instead of spinning on
 * a connection that cannot be accepted, and the error is logged at most
 * once a second.
 */
#include "smtp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/metrics.h"
#include "dedup.h"
#include "ratelimit.h"
#include "greylist.h"
#include "store/kv.h"
#include "smtp_in.h"
#include "spool/spool.h"

#define ACCEPT_PAUSE_MS 100
/* Clients remembered by each rate table (ratelimit.h: the least recently seen are forgotten first). */
#define RATE_TABLE_MAX 65536

struct smtp_server {
	const struct cfg *cfg;       /* a reference */
	struct event_base *base;
	int *fds;                    /* bound sockets, until the listeners own them */
	struct evconnlistener **listeners;
	size_t nlisteners;
	struct htab sessions;        /* session number -> struct smtp_in */
	struct htab per_client;      /* client key -> open sessions (as a pointer-sized count) */
	uint64_t next_no;
	bool closing;
	struct smtp_in_ctx ctx;      /* handed to every session */
	struct smtpd_stats stats;
	struct event *resume_ev;     /* re-enables accepting after EMFILE */
	struct ratelimit *conn_rate; /* connections per client key (max_connection_rate) */
	int64_t last_accept_log_ms;
	struct kv *grey_store;       /* greylisting's memory (SPOOL/greylist), when a domain greylists */
	struct event *grey_sweep_ev;
};

void smtp_server_client_key(const struct sockaddr *sa, char *out, size_t n)
{
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)n);
			return;
		}
		struct in6_addr net;
		memset(&net, 0, sizeof(net));
		memcpy(&net, a, 8);
		char ip[INET6_ADDRSTRLEN];
		inet_ntop(AF_INET6, &net, ip, sizeof(ip));
		snprintf(out, n, "%s/64", ip);
		return;
	}
	if (!inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n))
		snprintf(out, n, "unknown");
}

/* Open sessions of a client network, after adding delta; one with none is forgotten. */
static intptr_t client_count(struct smtp_server *srv, const char *key, intptr_t delta)
{
	size_t len = strlen(key);
	intptr_t n = (intptr_t)htab_get_str(&srv->per_client, key, len) + delta;
	if (delta == 0)
		return n;
	if (n > 0)
		htab_put_str(&srv->per_client, key, len, (void *)n);
	else
		htab_del_str(&srv->per_client, key, len);
	return n;
}

static void session_ended(void *owner, uint64_t no, const char *client_key)
{
	struct smtp_server *srv = owner;
	htab_del_u64(&srv->sessions, no);
	client_count(srv, client_key, -1);
	srv->stats.open--;
}

static void remember_queued(void *arg, struct spool_msg *m)
{
	struct dedup *dd = arg;
	if (m->env.has_dedup_key)
		dedup_add(dd, m->env.dedup_key, m->id, m->env.arrival);
}

/* max_connection_rate: every connection counts, the refused ones too (a client that keeps trying stays refused). */
static bool connection_rate_exceeded(struct smtp_server *srv, const struct sockaddr *sa, const char *key)
{
	const struct cfg *c = srv->cfg;
	const struct connspec_rate *r = &c->max_connection_rate;
	if (!r->count || connspec_cidr_match(c->rate_limit_exceptions, c->nrate_limit_exceptions, sa))
		return false;
	return ratelimit_hit(srv->conn_rate, key, r->period, clock_mono_ms() / 1000) > r->count;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	(void)salen;
	struct smtp_server *srv = arg;
	char key[INET6_ADDRSTRLEN + 4];
	smtp_server_client_key(sa, key, sizeof(key));
	const char *refuse = NULL;
	enum metric_counter why = METRIC_REJECT_LIMIT;
	if (srv->stats.open >= srv->cfg->max_sessions)
		refuse = "Error: too many connections";
	else if ((uint32_t)client_count(srv, key, 0) >= srv->cfg->max_sessions_per_ip)
		refuse = "Error: too many connections from your network";
	if (connection_rate_exceeded(srv, sa, key) && !refuse) {
		refuse = "Error: too many connections from your address (max_connection_rate)";
		why = METRIC_REJECT_RATE;
	}
	if (refuse)
		metrics_inc(why);
	client_count(srv, key, +1);
	srv->stats.open++;
	srv->stats.sessions++;
	srv->stats.refused += refuse != NULL;
	uint64_t no = ++srv->next_no;
	/* Every live session is in the table, for shutdown; it leaves through session_ended. */
	htab_put_u64(&srv->sessions, no, smtp_in_new(&srv->ctx, fd, sa, no, refuse));
}

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_server *srv = arg;
	if (srv->closing)
		return;
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_enable(srv->listeners[i]);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	struct smtp_server *srv = arg;
	int err = EVUTIL_SOCKET_ERROR();
	int64_t now = clock_mono_ms();
	if (now - srv->last_accept_log_ms >= 1000) {
		srv->last_accept_log_ms = now;
		log_err("smtpd", "accept: %s (sessions open: %" PRIu32 ")", strerror(err), srv->stats.open);
	}
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return;
	/* The connection stays in the backlog: pause rather than spin on it. */
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_disable(srv->listeners[i]);
	event_add(srv->resume_ev, &(struct timeval){0, ACCEPT_PAUSE_MS * 1000});
}

static int bind_one(const struct cfg_addr *a)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (a->ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->ss, a->sslen) < 0 || listen(fd, 1024) < 0) {
		int err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int smtp_server_bind(const struct cfg *cfg, struct smtp_server **out)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	srv->cfg = cfg_ref(cfg);
	srv->fds = xcalloc(cfg->nlisten, sizeof(*srv->fds));
	srv->listeners = xcalloc(cfg->nlisten, sizeof(*srv->listeners));
	for (size_t i = 0; i < cfg->nlisten; i++)
		srv->fds[i] = -1;
	for (size_t i = 0; i < cfg->nlisten; i++) {
		int fd = bind_one(&cfg->listen[i]);
		if (fd < 0) {
			fprintf(stderr, "mxvault: cannot listen on %s: %s\n", cfg->listen[i].text, strerror(-fd));
			smtp_server_free(srv);
			return fd;
		}
		srv->fds[i] = fd;
	}
	*out = srv;
	return 0;
}

/* What greylisting remembers: plenty for millions of triplets, bounded all the same. */
#define GREY_STORE_BYTES (256ULL << 20)
#define GREY_SYNC_S 5
#define GREY_SWEEP_S 60

static void grey_sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct smtp_server *srv = arg;
	greylist_sweep(srv->ctx.greylist, clock_wall_s());
}

/*
 * Greylisting's store, in SPOOL/greylist, when some domain greylists. A
 * store that cannot be opened turns greylisting off (logged): it is a
 * filter, and mail must not wait on it.
 */
static void start_greylist(struct smtp_server *srv, struct spool *sp)
{
	const struct cfg *cfg = srv->cfg;
	bool wanted = false;
	for (size_t i = 0; i < cfg->ndomains; i++)
		wanted |= cfg->domains[i].greylist;
	if (!wanted)
		return;
	int dirfd = spool_open_subdir(sp, "greylist");
	int rc = dirfd < 0 ? dirfd : kv_open(dirfd, GREY_STORE_BYTES, GREY_SYNC_S, &srv->grey_store);
	if (dirfd >= 0)
		close(dirfd); /* the store has opened its files */
	if (rc < 0) {
		log_err("smtpd", "cannot open SPOOL/greylist (%s): greylisting is off", strerror(-rc));
		return;
	}
	srv->ctx.greylist = greylist_new(srv->grey_store, cfg->greylist_delay);
	srv->grey_sweep_ev = event_new(srv->base, -1, EV_PERSIST, grey_sweep, srv);
	event_add(srv->grey_sweep_ev, &(struct timeval){GREY_SWEEP_S, 0});
	log_info("smtpd", "greylisting: delay=%" PRId64 "s entries=%zu", cfg->greylist_delay, kv_count(srv->grey_store));
}

int smtp_server_start(struct smtp_server *srv, const struct smtpd_deps *deps)
{
	const struct cfg *cfg = srv->cfg;
	srv->base = deps->base;
	srv->ctx = (struct smtp_in_ctx){
		.cfg = cfg, .base = deps->base, .sp = deps->sp, .dns = deps->dns, .tls = deps->tls, .stats = &srv->stats,
		.verifier = deps->verifier, .learned = deps->learned,
		.standby = deps->standby,
		.ended = session_ended, .owner = srv,
	};
	srv->conn_rate = ratelimit_new(RATE_TABLE_MAX);
	srv->ctx.msg_rate = ratelimit_new(RATE_TABLE_MAX);
	srv->ctx.greeted = ratelimit_new(RATE_TABLE_MAX);
	if (cfg->dedup_window > 0) {
		srv->ctx.dedup = dedup_new(cfg->dedup_window);
		spool_each_msg(deps->sp, remember_queued, srv->ctx.dedup);
	}
	start_greylist(srv, deps->sp);
	srv->resume_ev = event_new(deps->base, -1, 0, resume_accepting, srv);
	for (size_t i = 0; i < cfg->nlisten; i++) {
		struct evconnlistener *l =
			evconnlistener_new(deps->base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE, -1, srv->fds[i]);
		if (!l)
			return -ENOMEM;
		srv->fds[i] = -1;
		evconnlistener_set_error_cb(l, on_accept_error);
		srv->listeners[srv->nlisteners++] = l;
		log_info("smtpd", "listening on %s", cfg->listen[i].text);
	}
	return 0;
}

void smtp_server_shutdown(struct smtp_server *srv)
{
	srv->closing = true;
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_disable(srv->listeners[i]);
	/* Collect first: a session may end (and leave the table) as it is told. */
	size_t n;
	void **v = htab_values(&srv->sessions, &n);
	for (size_t i = 0; i < n; i++)
		smtp_in_shutdown(v[i]);
	free(v);
}

void smtp_server_set_cfg(struct smtp_server *srv, const struct cfg *cfg, SSL_CTX *tls)
{
	const struct cfg *old = srv->cfg;
	srv->cfg = cfg_ref(cfg);
	srv->ctx.cfg = srv->cfg; /* each session took its own reference when it began */
	srv->ctx.tls = tls;
	cfg_unref(old);
}

bool smtp_server_idle(const struct smtp_server *srv)
{
	return srv->stats.open == 0;
}

bool smtp_server_accepting(const struct smtp_server *srv)
{
	return srv->nlisteners > 0 && !srv->closing && !evtimer_pending(srv->resume_ev, NULL);
}

void smtp_server_get_stats(const struct smtp_server *srv, struct smtpd_stats *st)
{
	*st = srv->stats;
}

void smtp_server_free(struct smtp_server *srv)
{
	if (!srv)
		return;
	/* Sessions still open after the drain: end them before the spool goes. */
	size_t n;
	void **v = htab_values(&srv->sessions, &n);
	for (size_t i = 0; i < n; i++)
		smtp_in_destroy(v[i]);
	free(v);
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i]);
	for (size_t i = 0; i < srv->cfg->nlisten; i++)
		if (srv->fds[i] >= 0)
			close(srv->fds[i]);
	if (srv->resume_ev)
		event_free(srv->resume_ev);
	free(srv->fds);
	free(srv->listeners);
	htab_free(&srv->sessions);
	htab_free(&srv->per_client);
	dedup_free(srv->ctx.dedup);
	ratelimit_free(srv->conn_rate);
	ratelimit_free(srv->ctx.msg_rate);
	ratelimit_free(srv->ctx.greeted);
	if (srv->grey_sweep_ev)
		event_free(srv->grey_sweep_ev);
	greylist_free(srv->ctx.greylist);
	kv_close(srv->grey_store);
	cfg_unref(srv->cfg);
	free(srv);
}
