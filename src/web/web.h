/*
 * web: the daemon's HTTP listener (http_listen, off by default) for the
 * people and programs watching it (issue 10):
 *
 *   /metrics      the Prometheus text format (web_metrics.c)
 *   /healthz      200 "ok" when the SMTP listeners accept and the spool can
 *                 write; 503 and the reasons otherwise
 *   /             the status page: a person reads it at a glance (web_page.c)
 *
 * It runs on the daemon's event loop (libevent's evhttp), reads what the
 * queue manager, the SMTP server and the spool know at the moment of each
 * request, and changes nothing. Bounded: GET and HEAD only (405 otherwise),
 * request headers at most WEB_MAX_HEADERS bytes, no body, WEB_TIMEOUT_S
 * between reads, WEB_MAX_LIFE_S for a whole connection, at most
 * WEB_MAX_CONNECTIONS at once (accepting pauses there). There is no authentication: the page shows domains, addresses
 * and replies, so config check warns when http_listen is not loopback.
 */
#ifndef MXV_WEB_H
#define MXV_WEB_H

#include <stdint.h>

#include "base/cfg.h"

#define WEB_MAX_HEADERS 8192
#define WEB_TIMEOUT_S 10
#define WEB_MAX_CONNECTIONS 32
#define WEB_MAX_LIFE_S 30

struct event_base;
struct qmgr;
struct smtp_server;
struct spool;
struct web;

/* What the daemon lends the web module; all of it outlives it. */
struct web_deps {
	const struct cfg *cfg;         /* the module takes its own reference */
	struct event_base *base;
	struct qmgr *qmgr;
	struct smtp_server *srv;
	struct spool *sp;
};

/* Binds and listens on addr, before the privilege drop (a port under 1024 needs root): 0 and *fd, or -errno. */
int web_bind(const struct cfg_addr *addr, int *fd) MUST_CHECK;
/* Serves on fd (taken over); starts the queue history and watches the queue manager's events. */
struct web *web_start(const struct web_deps *deps, int fd);
/* A reload: pages name what next says (its own reference; the old one is dropped). NULL w is fine. */
void web_set_cfg(struct web *w, const struct cfg *next);
/* Stops listening and frees; NULL is fine. */
void web_free(struct web *w);

#endif
