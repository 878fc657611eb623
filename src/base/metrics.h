/*
 * metrics: the daemon's counters and histograms, kept in fixed arrays on
 * the main thread and rendered in the Prometheus text format for the
 * /metrics page (web/). Modules count where things happen, one call each:
 * metrics_inc(METRIC_REJECT_RELAY), metrics_observe(METRIC_H_DNS, secs).
 *
 * Labels come only from the enums below (never from a peer's bytes), so
 * the set of series is fixed at compile time: a scrape is bounded, and a
 * count costs an array increment, no allocation and no lock. Main thread
 * only; the spool's I/O thread hands its observations to the loop first.
 *
 * What the queue manager and the spool know at any moment (queue sizes,
 * up/down, free space) is not counted here: the web module reads it at
 * scrape time.
 */
#ifndef MXV_METRICS_H
#define MXV_METRICS_H

#include <stdint.h>

#include "util.h"

/* Counters; those of one family are contiguous (metrics.c's table says which). */
enum metric_counter {
	/* mxvault_smtp_rejections_total{reason}: refusals, one per refused command or connection */
	METRIC_REJECT_RELAY,
	METRIC_REJECT_UNKNOWN_RCPT,
	METRIC_REJECT_SPF,
	METRIC_REJECT_DMARC,
	METRIC_REJECT_DNSBL,
	METRIC_REJECT_RATE,
	METRIC_REJECT_GREYLIST,
	METRIC_REJECT_MILTER,
	METRIC_REJECT_SIZE,
	METRIC_REJECT_TLS_REQUIRED,
	METRIC_REJECT_LIMIT,       /* max_sessions, max_sessions_per_ip */
	METRIC_REJECT_STANDBY,     /* accept = when-primary-down, and the primary answers */
	/* mxvault_smtp_tls_sessions_total{version}: completed inbound STARTTLS handshakes */
	METRIC_TLS_1_0,
	METRIC_TLS_1_1,
	METRIC_TLS_1_2,
	METRIC_TLS_1_3,
	METRIC_TLS_OTHER,
	/* mxvault_deliveries_total{result}: per recipient */
	METRIC_DELIVERED,
	METRIC_DEFERRED,
	METRIC_BOUNCED,
	METRIC_EXPIRED,
	/* mxvault_dsns_total{action} */
	METRIC_DSN_FAILED,
	METRIC_DSN_DELAYED,
	METRIC_NCOUNTERS
};

enum metric_histogram {
	METRIC_H_COMMIT_BATCH,  /* mxvault_spool_commit_batch_messages: messages made durable per group commit */
	METRIC_H_FSYNC,         /* mxvault_spool_fsync_duration_seconds */
	METRIC_H_DNS,           /* mxvault_dns_query_duration_seconds: lookup to answer */
	METRIC_NHISTOGRAMS
};

void metrics_inc(enum metric_counter c);
void metrics_observe(enum metric_histogram h, double v);
uint64_t metrics_get(enum metric_counter c);
/* The TLS counter for an OpenSSL version name ("TLSv1.3"). */
enum metric_counter metrics_tls_counter(const char *version);
/* Appends every counter and histogram with its HELP and TYPE lines. */
void metrics_render(struct buf *out);
/* Zero everything (unit tests). */
void metrics_reset(void);

#endif
