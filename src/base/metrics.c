/*
 * metrics: see metrics.h. The tables below name every series; a family's
 * HELP and TYPE lines are written before its first series. Histogram
 * buckets are fixed (cumulative counts are built at render time).
 */
#include "metrics.h"

#include <string.h>

struct counter_def {
	const char *family;
	const char *help;
	const char *label;  /* "reason=\"relay\"" */
};

#define REJECT(v) {"mxvault_smtp_rejections_total", "SMTP commands or connections refused, by reason.", "reason=\"" v "\""}
#define TLSV(v) {"mxvault_smtp_tls_sessions_total", "Inbound STARTTLS sessions established, by protocol version.", "version=\"" v "\""}
#define DELIV(v) {"mxvault_deliveries_total", "Delivery attempts per recipient, by result.", "result=\"" v "\""}
#define DSN(v) {"mxvault_dsns_total", "Delivery status notifications queued, by action.", "action=\"" v "\""}

static const struct counter_def counter_defs[METRIC_NCOUNTERS] = {
	[METRIC_REJECT_RELAY] = REJECT("relay"),
	[METRIC_REJECT_UNKNOWN_RCPT] = REJECT("unknown_recipient"),
	[METRIC_REJECT_SPF] = REJECT("spf"),
	[METRIC_REJECT_DMARC] = REJECT("dmarc"),
	[METRIC_REJECT_DNSBL] = REJECT("dnsbl"),
	[METRIC_REJECT_RATE] = REJECT("rate"),
	[METRIC_REJECT_GREYLIST] = REJECT("greylist"),
	[METRIC_REJECT_MILTER] = REJECT("milter"),
	[METRIC_REJECT_SIZE] = REJECT("size"),
	[METRIC_REJECT_TLS_REQUIRED] = REJECT("tls_required"),
	[METRIC_REJECT_LIMIT] = REJECT("connection_limit"),
	[METRIC_REJECT_STANDBY] = REJECT("primary_up"),
	[METRIC_TLS_1_0] = TLSV("TLSv1"),
	[METRIC_TLS_1_1] = TLSV("TLSv1.1"),
	[METRIC_TLS_1_2] = TLSV("TLSv1.2"),
	[METRIC_TLS_1_3] = TLSV("TLSv1.3"),
	[METRIC_TLS_OTHER] = TLSV("other"),
	[METRIC_DELIVERED] = DELIV("delivered"),
	[METRIC_DEFERRED] = DELIV("deferred"),
	[METRIC_BOUNCED] = DELIV("bounced"),
	[METRIC_EXPIRED] = DELIV("expired"),
	[METRIC_DSN_FAILED] = DSN("failed"),
	[METRIC_DSN_DELAYED] = DSN("delayed"),
};

#define MAX_BUCKETS 12

struct histogram_def {
	const char *name;
	const char *help;
	double le[MAX_BUCKETS]; /* upper bounds, ascending; +Inf is implicit */
	int nle;
};

static const struct histogram_def histogram_defs[METRIC_NHISTOGRAMS] = {
	[METRIC_H_COMMIT_BATCH] = {"mxvault_spool_commit_batch_messages",
				   "Messages made durable by one group commit (one wake-up of the loop by the spool's I/O thread).",
				   {1, 2, 4, 8, 16, 32, 64, 128, 256}, 9},
	[METRIC_H_FSYNC] = {"mxvault_spool_fsync_duration_seconds", "Time one fdatasync of a spool segment took.",
			    {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}, 12},
	[METRIC_H_DNS] = {"mxvault_dns_query_duration_seconds", "Time from a DNS lookup to its answer (or failure).",
			  {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}, 12},
};

struct histogram {
	uint64_t bucket[MAX_BUCKETS + 1]; /* not cumulative; the last is +Inf */
	uint64_t count;
	double sum;
};

static uint64_t counters[METRIC_NCOUNTERS];
static struct histogram histograms[METRIC_NHISTOGRAMS];

void metrics_inc(enum metric_counter c)
{
	counters[c]++;
}

uint64_t metrics_get(enum metric_counter c)
{
	return counters[c];
}

void metrics_observe(enum metric_histogram h, double v)
{
	const struct histogram_def *d = &histogram_defs[h];
	int i = 0;
	while (i < d->nle && v > d->le[i])
		i++;
	histograms[h].bucket[i]++;
	histograms[h].count++;
	histograms[h].sum += v;
}

enum metric_counter metrics_tls_counter(const char *version)
{
	static const struct {
		const char *name;
		enum metric_counter c;
	} known[] = {{"TLSv1.3", METRIC_TLS_1_3}, {"TLSv1.2", METRIC_TLS_1_2}, {"TLSv1.1", METRIC_TLS_1_1},
		     {"TLSv1", METRIC_TLS_1_0}};
	for (size_t i = 0; i < ARRAY_LEN(known); i++)
		if (strcmp(version, known[i].name) == 0)
			return known[i].c;
	return METRIC_TLS_OTHER;
}

static void render_counters(struct buf *out)
{
	const char *family = NULL;
	for (int c = 0; c < METRIC_NCOUNTERS; c++) {
		const struct counter_def *d = &counter_defs[c];
		if (!family || strcmp(family, d->family) != 0) {
			family = d->family;
			buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", family, d->help, family);
		}
		buf_printf(out, "%s{%s} %llu\n", family, d->label, (unsigned long long)counters[c]);
	}
}

static void render_histogram(struct buf *out, const struct histogram_def *d, const struct histogram *h)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s histogram\n", d->name, d->help, d->name);
	uint64_t cum = 0;
	for (int i = 0; i < d->nle; i++) {
		cum += h->bucket[i];
		buf_printf(out, "%s_bucket{le=\"%g\"} %llu\n", d->name, d->le[i], (unsigned long long)cum);
	}
	buf_printf(out, "%s_bucket{le=\"+Inf\"} %llu\n", d->name, (unsigned long long)h->count);
	buf_printf(out, "%s_sum %.9g\n%s_count %llu\n", d->name, h->sum, d->name, (unsigned long long)h->count);
}

void metrics_render(struct buf *out)
{
	render_counters(out);
	for (int h = 0; h < METRIC_NHISTOGRAMS; h++)
		render_histogram(out, &histogram_defs[h], &histograms[h]);
}

void metrics_reset(void)
{
	memset(counters, 0, sizeof(counters));
	memset(histograms, 0, sizeof(histograms));
}
