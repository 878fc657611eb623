/*
 * web_metrics: the /metrics page. The counters and histograms the modules
 * keep (base/metrics.h), then what is true at this moment, read from the
 * queue manager, the SMTP server and the spool. Per-destination series
 * exist only for the backed-up domains of the configuration (bounded, and
 * none of it named by a peer); the DSNs' destinations are summed.
 */
#include "web_int.h"

#include <inttypes.h>
#include <string.h>

#include "base/metrics.h"
#include "delivery/qmgr.h"
#include "smtpd/smtp_server.h"
#include "spool/spool.h"

struct gauge {
	const char *name, *type, *help;
};

/* The per-domain families, in the order they are written. */
enum dest_family { F_QUEUED, F_BYTES, F_OLDEST, F_UP, F_SINCE, F_GUARD, F_CONNS, F_NDEST };

static const struct gauge dest_families[F_NDEST] = {
	[F_QUEUED] = {"mxvault_queue_messages", "gauge", "Messages waiting for delivery to a backed-up domain."},
	[F_BYTES] = {"mxvault_queue_bytes", "gauge", "Bytes of the messages waiting for a backed-up domain."},
	[F_OLDEST] = {"mxvault_queue_oldest_message_age_seconds", "gauge",
		      "Age of the oldest message waiting for a backed-up domain (0: none waits)."},
	[F_UP] = {"mxvault_destination_up", "gauge",
		  "1 unless the domain's primary is in an outage (its mail queues here), 0 while it is."},
	[F_SINCE] = {"mxvault_destination_state_change_timestamp_seconds", "gauge",
		     "When the primary last went down or came up (Unix time; 0: no attempt yet)."},
	[F_GUARD] = {"mxvault_bounce_guard_active", "gauge",
		     "1 while the bounce guard holds the domain's permanent failures as deferred."},
	[F_CONNS] = {"mxvault_destination_connections", "gauge", "Outbound connections open to the domain's primary."},
};

struct scrape {
	struct buf *out;
	enum dest_family family;
	int64_t now;
	uint64_t other_msgs, other_bytes; /* destinations that are not backed-up domains (DSNs) */
};

static double dest_value(enum dest_family f, const struct qmgr_dest_view *v, int64_t now)
{
	switch (f) {
	case F_QUEUED: return (double)v->queued;
	case F_BYTES: return (double)v->queued_bytes;
	case F_OLDEST: return v->oldest_arrival && now > v->oldest_arrival ? (double)(now - v->oldest_arrival) : 0;
	case F_UP: return v->down ? 0 : 1;
	case F_SINCE: return (double)v->state_since;
	case F_GUARD: return v->bounce_guard ? 1 : 0;
	case F_CONNS: return (double)v->connections;
	case F_NDEST: break;
	}
	return 0;
}

static void dest_line(void *arg, const struct qmgr_dest_view *v)
{
	struct scrape *s = arg;
	if (!v->configured) {
		if (s->family == F_QUEUED) {
			s->other_msgs += v->queued;
			s->other_bytes += v->queued_bytes;
		}
		return;
	}
	/* A configured domain is a checked host name: nothing in it needs escaping in a label. */
	buf_printf(s->out, "%s{domain=\"%s\"} %.17g\n", dest_families[s->family].name, v->domain,
		   dest_value(s->family, v, s->now));
}

static void head(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(struct buf *out, const char *name, const char *type, const char *help, uint64_t v)
{
	head(out, name, type, help);
	buf_printf(out, "%s %" PRIu64 "\n", name, v);
}

/* One walk of the queue per scrape (a view walks each destination's jobs), then a family at a time. */
static void render_queue(struct web *w, struct buf *out)
{
	struct web_views vs;
	web_views_collect(w, &vs);
	struct scrape s = {.out = out, .now = clock_wall_s()};
	for (int f = 0; f < F_NDEST; f++) {
		s.family = (enum dest_family)f;
		head(out, dest_families[f].name, dest_families[f].type, dest_families[f].help);
		for (size_t i = 0; i < vs.n; i++)
			dest_line(&s, &vs.v[i]);
	}
	web_views_free(&vs);
	one(out, "mxvault_dsn_queue_messages", "gauge",
	    "Messages waiting for destinations that are not backed-up domains (DSNs to senders).", s.other_msgs);
	one(out, "mxvault_dsn_queue_bytes", "gauge", "Bytes of those messages.", s.other_bytes);
}

static void render_smtpd(struct web *w, struct buf *out)
{
	struct smtpd_stats st;
	smtp_server_get_stats(w->d.srv, &st);
	one(out, "mxvault_smtp_sessions_open", "gauge", "SMTP sessions open now.", st.open);
	one(out, "mxvault_smtp_connections_total", "counter", "SMTP connections accepted (refused ones included).",
	    st.sessions);
	one(out, "mxvault_smtp_messages_accepted_total", "counter", "Messages stored and acknowledged with 250.",
	    st.messages);
	one(out, "mxvault_smtp_duplicates_total", "counter", "Resent messages recognised and not stored again.",
	    st.duplicates);
	one(out, "mxvault_smtp_timeouts_total", "counter", "SMTP sessions ended by a timeout or a deadline.",
	    st.timeouts);
	one(out, "mxvault_smtp_tls_handshake_failures_total", "counter", "Inbound STARTTLS handshakes that failed.",
	    st.tls_failures);
}

static void render_spool(struct web *w, struct buf *out)
{
	struct spool_stats st;
	spool_get_stats(w->d.sp, &st);
	one(out, "mxvault_spool_messages", "gauge", "Messages held in the spool.", st.messages);
	one(out, "mxvault_spool_message_bytes", "gauge", "Stored size of the messages held in the spool.",
	    spool_held_bytes(w->d.sp));
	one(out, "mxvault_spool_segments", "gauge", "Segment files of the spool's log.", st.segments);
	one(out, "mxvault_spool_written_bytes_total", "counter", "Bytes written to the spool's log.", st.bytes);
	one(out, "mxvault_spool_fsyncs_total", "counter", "fdatasync calls on spool segments.", st.syncs);
	one(out, "mxvault_spool_write_failures_total", "counter", "Spool writes or syncs that failed.", st.failures);
	one(out, "mxvault_spool_free_bytes", "gauge", "Free space for the daemon in the spool's file system.",
	    st.free_bytes);
	one(out, "mxvault_spool_min_free_bytes", "gauge",
	    "min_free_space: below this much free space new mail is refused with 452.", w->d.cfg->min_free_space);
	one(out, "mxvault_spool_has_space", "gauge", "1 while the spool accepts new mail (free space above the minimum).",
	    spool_has_space(w->d.sp) ? 1 : 0);
}

void web_metrics_render(struct web *w, struct buf *out)
{
	render_queue(w, out);
	render_smtpd(w, out);
	render_spool(w, out);
	metrics_render(out);
	one(out, "mxvault_start_time_seconds", "gauge", "When the daemon started (Unix time).",
	    (uint64_t)w->started);
}
