/*
 * web_page: the status page at /, one HTML document made on each request:
 * a banner when something needs attention, each backed-up domain with its
 * primary's state (up or down since when), its queue and oldest message,
 * an inline SVG chart of the queue over the last day (web_history.c), and
 * the last deliveries and bounces. No script and no external asset; the
 * page reloads itself (meta refresh). Everything a peer wrote (addresses,
 * relays, replies) is HTML-escaped, and anything that is not well-formed
 * UTF-8 or is a control character is shown as U+FFFD.
 */
#include "web_int.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#include "delivery/qmgr.h"
#include "spool/spool.h"

#define REFRESH_S 15
#define CHART_W 720
#define CHART_H 180
#define CHART_MIN_SPAN_S 600
#define CHART_DOMAINS 6 /* lines of their own; beyond this only the total is drawn */

static const char *const chart_colors[CHART_DOMAINS] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b",
							  "#e377c2"};

static void html(struct buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		size_t len = c >= 0x80 ? utf8_seq_len(p + i, n - i) : 1;
		if (c >= 0x80 && len) {
			buf_append(out, p + i, len);
			i += len;
			continue;
		}
		i++;
		switch (c) {
		case '&': buf_append_str(out, "&amp;"); break;
		case '<': buf_append_str(out, "&lt;"); break;
		case '>': buf_append_str(out, "&gt;"); break;
		case '"': buf_append_str(out, "&quot;"); break;
		case '\'': buf_append_str(out, "&#39;"); break;
		default:
			if (c < 0x20 || c == 0x7f || c >= 0x80)
				buf_append_str(out, "\xef\xbf\xbd");
			else
				buf_append(out, &c, 1);
		}
	}
}

static void utc_as(struct buf *out, int64_t t, bool seconds)
{
	time_t tt = (time_t)t;
	struct tm tm;
	char s[40];
	gmtime_r(&tt, &tm);
	if (strftime(s, sizeof(s), seconds ? "%Y-%m-%d %H:%M:%S UTC" : "%Y-%m-%d %H:%M UTC", &tm) > 0)
		buf_append_str(out, s);
}

static void utc(struct buf *out, int64_t t)
{
	utc_as(out, t, false);
}

static void span(struct buf *out, int64_t secs)
{
	if (secs < 0)
		secs = 0;
	if (secs < 60)
		buf_printf(out, "%" PRId64 "s", secs);
	else if (secs < 3600)
		buf_printf(out, "%" PRId64 "m", secs / 60);
	else if (secs < 86400)
		buf_printf(out, "%" PRId64 "h %" PRId64 "m", secs / 3600, secs / 60 % 60);
	else
		buf_printf(out, "%" PRId64 "d %" PRId64 "h", secs / 86400, secs / 3600 % 24);
}

/* --- what needs attention -------------------------------------------------- */

struct overview {
	struct web *w;
	const struct web_views *views; /* taken once for the whole page */
	int64_t now;
	size_t down, guarded, old, queued;
	struct buf banner; /* <li> items */
};

static void note_dest(void *arg, const struct qmgr_dest_view *v)
{
	struct overview *o = arg;
	o->queued += v->queued;
	if (!v->configured)
		return;
	if (v->down) {
		buf_append_str(&o->banner, "<li>The primary of ");
		html(&o->banner, v->domain);
		buf_append_str(&o->banner, " is down since ");
		utc(&o->banner, v->state_since);
		buf_append_str(&o->banner, ": its mail queues here.</li>");
	}
	if (v->bounce_guard) {
		buf_append_str(&o->banner, "<li>The bounce guard holds ");
		html(&o->banner, v->domain);
		buf_append_str(&o->banner, "'s permanent failures as deferred: check the primary.</li>");
	}
	if (v->oldest_arrival && o->now - v->oldest_arrival > o->w->d.cfg->alert_age) {
		buf_append_str(&o->banner, "<li>The oldest message for ");
		html(&o->banner, v->domain);
		buf_append_str(&o->banner, " has waited ");
		span(&o->banner, o->now - v->oldest_arrival);
		buf_append_str(&o->banner, ".</li>");
	}
}

static void render_banner(struct overview *o, struct buf *out)
{
	const char *why = NULL;
	if (!web_spool_healthy(o->w, &why)) {
		buf_append_str(&o->banner, "<li>");
		html(&o->banner, why);
		buf_append_str(&o->banner, ".</li>");
	}
	if (o->banner.len) {
		buf_append_str(out, "<div class=\"banner attention\" role=\"alert\"><strong>Needs attention</strong><ul>");
		buf_append(out, o->banner.data, o->banner.len);
		buf_append_str(out, "</ul></div>\n");
	} else {
		buf_append_str(out, "<div class=\"banner ok\">All primaries answer; nothing needs attention.</div>\n");
	}
}

/* --- the domains ----------------------------------------------------------- */

static void domain_row(void *arg, const struct qmgr_dest_view *v)
{
	struct overview *o = arg;
	struct buf *out = &o->banner; /* reused: the rows are written after the banner is out */
	if (!v->configured)
		return;
	buf_append_str(out, "<tr><td class=\"domain\">");
	html(out, v->domain);
	if (!v->state_since)
		buf_append_str(out, "</td><td class=\"state unknown\">not tried yet");
	else {
		buf_printf(out, "</td><td class=\"state %s\">%s since ", v->down ? "down" : "up", v->down ? "down" : "up");
		utc(out, v->state_since);
		buf_append_str(out, " (");
		span(out, o->now - v->state_since);
		buf_append_str(out, ")");
	}
	if (v->bounce_guard)
		buf_append_str(out, ", bounce guard on");
	buf_printf(out, "</td><td class=\"queued num\">%zu</td><td class=\"num\">%" PRIu64 "</td><td>", v->queued,
		   v->queued_bytes);
	if (v->oldest_arrival)
		span(out, o->now - v->oldest_arrival);
	else
		buf_append_str(out, "&ndash;");
	buf_printf(out, "</td><td class=\"num\">%" PRIu32 "</td></tr>\n", v->connections);
}

static void render_domains(struct overview *o, struct buf *out)
{
	buf_reset(&o->banner);
	buf_append_str(out, "<h2>Domains</h2>\n<table class=\"domains\"><thead><tr><th>Domain</th><th>Primary</th>"
			    "<th>Queued</th><th>Bytes</th><th>Oldest</th><th>Connections</th></tr></thead><tbody>\n");
	for (size_t i = 0; i < o->views->n; i++)
		domain_row(o, &o->views->v[i]);
	buf_append(out, o->banner.data, o->banner.len);
	buf_append_str(out, "</tbody></table>\n");
}

/* --- the chart --------------------------------------------------------------- */

struct chart {
	const struct web_history *h;
	int64_t now;
	int64_t span;          /* seconds across: a day, or since the first sample (at least CHART_MIN_SPAN_S) */
	uint32_t top;
	uint32_t now_total, now_domain[CHART_DOMAINS];
	size_t ndomain;
	const char *names[CHART_DOMAINS];
	int row[CHART_DOMAINS]; /* of each line's domain in the history */
};

static void chart_now(void *arg, const struct qmgr_dest_view *v)
{
	struct chart *c = arg;
	uint32_t n = v->queued > UINT32_MAX ? UINT32_MAX : (uint32_t)v->queued;
	c->now_total += n;
	int row = v->configured && c->ndomain < CHART_DOMAINS ? web_history_row(c->h, v->domain) : -1;
	if (row >= 0) {
		c->names[c->ndomain] = v->domain;
		c->row[c->ndomain] = row;
		c->now_domain[c->ndomain++] = n;
	}
}

static void point_at(struct buf *out, const struct chart *c, int64_t t, uint32_t v);

/* The line steps: a value holds until the next sample. */
static void point(struct buf *out, const struct chart *c, int64_t t, uint32_t v, uint32_t *prev, bool *first)
{
	if (!*first && v != *prev)
		point_at(out, c, t, *prev);
	point_at(out, c, t, v);
	*prev = v;
	*first = false;
}

static void point_at(struct buf *out, const struct chart *c, int64_t t, uint32_t v)
{
	double x = (double)(t - (c->now - c->span)) / (double)c->span * CHART_W;
	double y = CHART_H - (double)v / c->top * (CHART_H - 10);
	buf_printf(out, "%.1f,%.1f ", x < 0 ? 0 : x, y);
}

/* One line: series -1 is the total, else a domain's. */
static void polyline(struct buf *out, const struct chart *c, int series, const char *color)
{
	const struct web_history *h = c->h;
	buf_printf(out, "<polyline class=\"series %s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"",
		   series < 0 ? "total" : "domain", color, series < 0 ? "2.5" : "1.5");
	uint32_t prev = 0;
	bool first = true;
	for (size_t i = 0; i < h->count; i++) {
		size_t k = (h->head + i) % WEB_HISTORY_SAMPLES;
		if (h->when[k] >= c->now - c->span)
			point(out, c, h->when[k], series < 0 ? h->total[k] : h->per_domain[c->row[series]][k], &prev, &first);
	}
	point(out, c, c->now, series < 0 ? c->now_total : c->now_domain[series], &prev, &first);
	buf_append_str(out, "\"/>\n");
}

static void render_chart(struct web *w, const struct web_views *vs, int64_t now, struct buf *out)
{
	struct chart c = {.h = &w->hist, .now = now, .top = 1, .span = 86400};
	if (c.h->count && now - c.h->when[c.h->head] < c.span)
		c.span = now - c.h->when[c.h->head] < CHART_MIN_SPAN_S ? CHART_MIN_SPAN_S : now - c.h->when[c.h->head];
	for (size_t i = 0; i < vs->n; i++)
		chart_now(&c, &vs->v[i]);
	for (size_t i = 0; i < c.h->count; i++)
		if (c.h->total[(c.h->head + i) % WEB_HISTORY_SAMPLES] > c.top)
			c.top = c.h->total[(c.h->head + i) % WEB_HISTORY_SAMPLES];
	if (c.now_total > c.top)
		c.top = c.now_total;
	buf_printf(out, "<h2>Queue, over the last day (kept in memory since the start)</h2>\n<svg class=\"chart\" role=\"img\" viewBox=\"0 0 %d %d\" "
			"width=\"%d\" height=\"%d\"><title>Messages queued over the last 24 hours</title>\n",
		   CHART_W, CHART_H + 20, CHART_W, CHART_H + 20);
	buf_printf(out, "<line x1=\"0\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#999\"/>\n", CHART_H, CHART_W, CHART_H);
	buf_printf(out, "<text x=\"2\" y=\"12\" font-size=\"11\">%" PRIu32 "</text>", c.top);
	buf_printf(out, "<text x=\"2\" y=\"%d\" font-size=\"11\">", CHART_H + 15);
	span(out, c.span);
	buf_append_str(out, " ago</text>");
	buf_printf(out, "<text x=\"%d\" y=\"%d\" font-size=\"11\" text-anchor=\"end\">now</text>\n", CHART_W - 2,
		   CHART_H + 15);
	if (c.ndomain > 1)
		for (size_t d = 0; d < c.ndomain; d++)
			polyline(out, &c, (int)d, chart_colors[d]);
	polyline(out, &c, -1, "#222");
	buf_append_str(out, "</svg>\n<p class=\"legend\"><span style=\"color:#222\">&#9644; all destinations</span>");
	for (size_t d = 0; c.ndomain > 1 && d < c.ndomain; d++) {
		buf_printf(out, " <span style=\"color:%s\">&#9644; ", chart_colors[d]);
		html(out, c.names[d]);
		buf_append_str(out, "</span>");
	}
	buf_append_str(out, "</p>\n");
}

/* --- the last deliveries and bounces ----------------------------------------- */

static void render_recent(struct web *w, struct buf *out)
{
	buf_append_str(out, "<h2>Last deliveries and bounces</h2>\n");
	if (!w->hist.nrecent) {
		buf_append_str(out, "<p class=\"none\">None since the daemon started.</p>\n");
		return;
	}
	buf_append_str(out, "<table class=\"recent\"><thead><tr><th>When</th><th>Result</th><th>Recipient</th>"
			    "<th>Relay</th><th>Reply</th></tr></thead><tbody>\n");
	for (size_t i = 0; i < w->hist.nrecent; i++) {
		const struct web_recent *r = web_history_recent(&w->hist, i);
		buf_append_str(out, "<tr><td class=\"when\">");
		utc_as(out, r->when, true);
		buf_printf(out, "</td><td class=\"%s\">%s</td><td>", r->what, r->what);
		html(out, r->rcpt);
		buf_append_str(out, "</td><td>");
		html(out, r->relay);
		buf_append_str(out, "</td><td>");
		if (r->reply[0])
			html(out, r->reply); /* the whole reply line, its code included */
		else if (r->code)
			buf_printf(out, "%d", r->code);
		buf_append_str(out, "</td></tr>\n");
	}
	buf_append_str(out, "</tbody></table>\n");
}

static const char style[] =
	"body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}"
	"h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.4em 0 .4em}"
	".meta{color:#666;font-size:.9em}"
	".banner{padding:.6em 1em;border-radius:4px;margin:1em 0}.banner ul{margin:.3em 0 0;padding-left:1.2em}"
	".attention{background:#fde2e1;border:1px solid #d9534f}.ok{background:#e3f4e1;border:1px solid #5cb85c}"
	"table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}"
	".num{text-align:right}.down{color:#c9302c;font-weight:bold}.up{color:#2d7a2d}.unknown{color:#666}"
	".bounced,.expired{color:#c9302c}.delivered{color:#2d7a2d}"
	"svg.chart{border:1px solid #ddd;background:#fafafa;max-width:100%;height:auto}"
	".legend span{margin-right:1em}td.when,td.state{white-space:nowrap}";

void web_page_render(struct web *w, struct buf *out)
{
	struct web_views views;
	web_views_collect(w, &views);
	struct overview o = {.w = w, .views = &views, .now = clock_wall_s()};
	const struct cfg *cfg = w->d.cfg;
	buf_printf(out, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
			"<meta http-equiv=\"refresh\" content=\"%d\"><link rel=\"icon\" href=\"data:,\">"
			"<meta name=\"viewport\" content=\"width=device-width\"><title>mxvault: ",
		   REFRESH_S);
	html(out, cfg->hostname);
	buf_printf(out, "</title><style>%s</style></head><body>\n<h1>mxvault on ", style);
	html(out, cfg->hostname);
	buf_append_str(out, "</h1>\n<p class=\"meta\">Backup MX. This page was made at ");
	utc(out, o.now);
	buf_printf(out, " and reloads every %d seconds.</p>\n", REFRESH_S);
	for (size_t i = 0; i < views.n; i++)
		note_dest(&o, &views.v[i]);
	render_banner(&o, out);
	render_domains(&o, out);
	render_chart(w, &views, o.now, out);
	render_recent(w, out);
	buf_append_str(out, "</body></html>\n");
	buf_free(&o.banner);
	web_views_free(&views);
}
