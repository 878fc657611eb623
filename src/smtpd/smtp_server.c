/*
 * smtp_server: the listening sockets and the session table. Enforces the
 * connection limits (total and per client address) at accept time, and
 * runs the graceful shutdown: stop accepting, let busy sessions finish
 * their message, tell idle ones 421.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/listener.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dedup.h"
#include "base/log.h"
#include "spool/spool.h"
#include "smtp_in.h"

struct smtp_server {
	const struct cfg *cfg;
	struct event_base *base;
	struct spool *sp;
	struct evconnlistener **listeners;
	size_t nlisteners;
	struct htab sessions; /* session number -> struct smtp_in */
	struct htab per_ip;   /* client address -> open sessions (as a pointer-sized count) */
	uint64_t next_no;
	bool closing;
	struct dedup *dedup;
};

struct dedup *smtp_server_dedup(const struct smtp_server *srv)
{
	return srv->dedup;
}

static void remember_queued(void *arg, struct spool_msg *m)
{
	struct smtp_server *srv = arg;
	if (m->env.has_dedup_key)
		dedup_add(srv->dedup, m->env.dedup_key, m->id, m->env.arrival);
}

const struct cfg *smtp_server_cfg(const struct smtp_server *srv)
{
	return srv->cfg;
}

struct spool *smtp_server_spool(const struct smtp_server *srv)
{
	return srv->sp;
}

struct event_base *smtp_server_base(const struct smtp_server *srv)
{
	return srv->base;
}

bool smtp_server_is_closing(const struct smtp_server *srv)
{
	return srv->closing;
}

/* Open sessions from ip, after adding delta; an address with none is forgotten. */
static intptr_t ip_count(struct smtp_server *srv, const char *ip, intptr_t delta)
{
	size_t len = strlen(ip);
	intptr_t n = (intptr_t)htab_get_str(&srv->per_ip, ip, len) + delta;
	if (delta == 0)
		return n;
	if (n > 0)
		htab_put_str(&srv->per_ip, ip, len, (void *)n);
	else
		htab_del_str(&srv->per_ip, ip, len);
	return n;
}

void smtp_server_session_started(struct smtp_server *srv, uint64_t no, struct smtp_in *s)
{
	htab_put_u64(&srv->sessions, no, s);
}

void smtp_server_session_ended(struct smtp_server *srv, uint64_t no, const char *ip)
{
	htab_del_u64(&srv->sessions, no);
	ip_count(srv, ip, -1);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	struct smtp_server *srv = arg;
	char ip[64] = "";
	const void *a = sa->sa_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)sa)->sin6_addr
						  : (const void *)&((struct sockaddr_in *)sa)->sin_addr;
	inet_ntop(sa->sa_family, a, ip, sizeof(ip));
	const char *refuse = NULL;
	if (srv->sessions.count >= srv->cfg->max_sessions)
		refuse = "Error: too many connections";
	else if ((uint32_t)ip_count(srv, ip, 0) >= srv->cfg->max_sessions_per_ip)
		refuse = "Error: too many connections from your address";
	ip_count(srv, ip, +1);
	smtp_in_new(srv, fd, sa, (socklen_t)salen, ++srv->next_no, refuse);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	/* EMFILE and friends: log and keep going; libevent retries on the next event. */
	log_err("smtpd", "accept: %s", strerror(errno));
}

static int listen_on(struct smtp_server *srv, const struct cfg_addr *a)
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
	struct evconnlistener *l = evconnlistener_new(srv->base, on_accept, srv, LEV_OPT_CLOSE_ON_FREE, -1, fd);
	if (!l) {
		close(fd);
		return -ENOMEM;
	}
	evconnlistener_set_error_cb(l, on_accept_error);
	srv->listeners[srv->nlisteners++] = l;
	log_info("smtpd", "listening on %s", a->text);
	return 0;
}

int smtp_server_start(const struct cfg *cfg, struct event_base *base, struct spool *sp, struct smtp_server **out)
{
	struct smtp_server *srv = xcalloc(1, sizeof(*srv));
	srv->cfg = cfg;
	srv->base = base;
	srv->sp = sp;
	srv->listeners = xcalloc(cfg->nlisten, sizeof(*srv->listeners));
	if (cfg->dedup_window > 0) {
		srv->dedup = dedup_new(cfg->dedup_window);
		spool_each_msg(sp, remember_queued, srv);
	}
	for (size_t i = 0; i < cfg->nlisten; i++) {
		int rc = listen_on(srv, &cfg->listen[i]);
		if (rc < 0) {
			fprintf(stderr, "mxvault: cannot listen on %s: %s\n", cfg->listen[i].text, strerror(-rc));
			smtp_server_free(srv);
			return rc;
		}
	}
	*out = srv;
	return 0;
}

struct shutdown_ctx {
	struct smtp_in **v;
	size_t n;
};

static void collect_session(void *val, void *arg)
{
	struct shutdown_ctx *c = arg;
	c->v[c->n++] = val;
}

void smtp_server_shutdown(struct smtp_server *srv)
{
	srv->closing = true;
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_disable(srv->listeners[i]);
	/* Collect first: a session may end (and leave the table) as it is told. */
	struct shutdown_ctx c = {xcalloc(srv->sessions.count + 1, sizeof(*c.v)), 0};
	htab_each(&srv->sessions, collect_session, &c);
	for (size_t i = 0; i < c.n; i++)
		smtp_in_shutdown(c.v[i]);
	free(c.v);
}

bool smtp_server_idle(const struct smtp_server *srv)
{
	return srv->sessions.count == 0;
}

void smtp_server_free(struct smtp_server *srv)
{
	if (!srv)
		return;
	for (size_t i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i]);
	free(srv->listeners);
	htab_free(&srv->sessions);
	htab_free(&srv->per_ip);
	dedup_free(srv->dedup);
	free(srv);
}
