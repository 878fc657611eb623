/*
 * web_int: what web.c shares with the pages it serves (web_metrics.c,
 * web_page.c) and with the memory behind them (web_history.c).
 */
#ifndef MXV_WEB_INT_H
#define MXV_WEB_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/util.h"
#include "web.h"

/* The queue over the last day, one sample a minute, in memory only. */
#define WEB_HISTORY_SAMPLES 1440
#define WEB_HISTORY_STEP_S 60
/* Domains beyond this many have no history of their own (the total still counts them). */
#define WEB_HISTORY_DOMAINS 16
/* The last deliveries and bounces shown on the page. */
#define WEB_RECENT 20
/* A spool write failure this recent makes /healthz fail. */
#define WEB_FAILURE_RECENT_S 60

struct web_recent {
	int64_t when;          /* wall seconds */
	const char *what;      /* "delivered", "bounced", "expired" */
	char domain[256];
	char rcpt[320];
	char relay[160];
	int code;
	char reply[240];
};

struct web_history {
	/* The rows of per_domain in use and whose each is: the first WEB_HISTORY_DOMAINS configured
	 * domains, by name, so that a reload adding, dropping or reordering domains moves no row. */
	size_t ndomains;
	char domain[WEB_HISTORY_DOMAINS][256];
	int64_t start;                           /* wall seconds of sample 0 of the ring; 0: none yet */
	size_t head, count;                      /* oldest sample, samples held */
	int64_t when[WEB_HISTORY_SAMPLES];
	uint32_t total[WEB_HISTORY_SAMPLES];     /* messages queued, every destination */
	uint32_t (*per_domain)[WEB_HISTORY_SAMPLES]; /* [WEB_HISTORY_DOMAINS] */
	struct web_recent recent[WEB_RECENT];    /* a ring: newest at recent_head - 1 */
	size_t recent_head, nrecent;
};

struct web_conn {
	struct bufferevent *bev;   /* our reference; evhttp holds the other */
	int64_t accepted_ms;
};

struct web {
	struct web_deps d;
	struct evhttp *http;
	struct evconnlistener *listener;
	struct web_conn conns[WEB_MAX_CONNECTIONS];
	size_t nconns;                  /* connections open (or freed by evhttp since the last tick) */
	int64_t started;                /* wall seconds */
	struct event *tick_ev;          /* samples the queue, watches spool failures */
	uint64_t spool_failures_seen;
	int64_t last_failure;           /* wall seconds of the last spool write failure seen; 0: none */
	struct web_history hist;
};

/*
 * The queue manager's views of every destination, taken once per request
 * (a view walks its destination's jobs), valid while the queue does not
 * change: during one render.
 */
struct web_views {
	struct qmgr_dest_view *v;
	size_t n, cap;
};
void web_views_collect(struct web *w, struct web_views *vs);
void web_views_free(struct web_views *vs);

/* web_history.c */
void web_history_init(struct web_history *h, const struct cfg *cfg);
/* After a reload: the domains kept keep their rows' samples; those added start with none (zeros). */
void web_history_set_domains(struct web_history *h, const struct cfg *cfg);
void web_history_free(struct web_history *h);
/* The row of a configured domain's samples, or -1 when it has none (beyond WEB_HISTORY_DOMAINS). */
int web_history_row(const struct web_history *h, const char *domain);
/* Takes a sample when a step has passed since the last one (or none was taken). */
void web_history_sample(struct web *w, int64_t now);
void web_history_add_recent(struct web_history *h, const struct web_recent *r);
/* The i-th most recent event (0: newest), or NULL. */
const struct web_recent *web_history_recent(const struct web_history *h, size_t i);

/* web_metrics.c: the whole /metrics page. */
void web_metrics_render(struct web *w, struct buf *out);
/* web_page.c: the status page. */
void web_page_render(struct web *w, struct buf *out);

/* web.c: what needs attention (for /healthz and the page's banner): true when healthy. */
bool web_spool_healthy(struct web *w, const char **why);

#endif
