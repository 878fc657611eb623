/*
 * test_metrics: the metrics registry (base/metrics.h) rendered in the
 * Prometheus text format: each family's HELP and TYPE once, counters with
 * their fixed labels, histograms with cumulative buckets, +Inf, _sum and
 * _count; the TLS version names; and the http_listen key (parsed, printed,
 * refused when bad, warned about when not on loopback).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cfg.h"
#include "base/metrics.h"

static size_t count_of(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static char *rendered(void)
{
	struct buf b = {0};
	metrics_render(&b);
	char *s = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return s;
}

static void test_counters(void **state)
{
	(void)state;
	metrics_reset();
	metrics_inc(METRIC_REJECT_RELAY);
	metrics_inc(METRIC_REJECT_RELAY);
	metrics_inc(METRIC_DSN_DELAYED);
	assert_int_equal(metrics_get(METRIC_REJECT_RELAY), 2);
	char *s = rendered();
	assert_non_null(strstr(s, "\nmxvault_smtp_rejections_total{reason=\"relay\"} 2\n"));
	assert_non_null(strstr(s, "\nmxvault_smtp_rejections_total{reason=\"unknown_recipient\"} 0\n"));
	assert_non_null(strstr(s, "\nmxvault_dsns_total{action=\"delayed\"} 1\n"));
	assert_int_equal(count_of(s, "# TYPE mxvault_smtp_rejections_total counter\n"), 1);
	assert_int_equal(count_of(s, "# HELP mxvault_smtp_rejections_total "), 1);
	assert_int_equal(count_of(s, "# TYPE mxvault_deliveries_total counter\n"), 1);
	assert_int_equal(count_of(s, "mxvault_deliveries_total{"), 4);
	free(s);
}

static void test_histogram(void **state)
{
	(void)state;
	metrics_reset();
	metrics_observe(METRIC_H_FSYNC, 0.0007);
	metrics_observe(METRIC_H_FSYNC, 0.003);
	metrics_observe(METRIC_H_FSYNC, 0.005); /* on a bound: counted in it (le) */
	metrics_observe(METRIC_H_FSYNC, 10);    /* beyond every bound: +Inf only */
	char *s = rendered();
	static const char *const want[] = {
		"# TYPE mxvault_spool_fsync_duration_seconds histogram\n",
		"mxvault_spool_fsync_duration_seconds_bucket{le=\"0.0005\"} 0\n",
		"mxvault_spool_fsync_duration_seconds_bucket{le=\"0.001\"} 1\n",
		"mxvault_spool_fsync_duration_seconds_bucket{le=\"0.0025\"} 1\n",
		"mxvault_spool_fsync_duration_seconds_bucket{le=\"0.005\"} 3\n",
		"mxvault_spool_fsync_duration_seconds_bucket{le=\"2.5\"} 3\n",
		"mxvault_spool_fsync_duration_seconds_bucket{le=\"+Inf\"} 4\n",
		"mxvault_spool_fsync_duration_seconds_sum 10.0087\n",
		"mxvault_spool_fsync_duration_seconds_count 4\n",
		"mxvault_dns_query_duration_seconds_bucket{le=\"+Inf\"} 0\n",
		"mxvault_dns_query_duration_seconds_count 0\n",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(s, want[i]))
			fail_msg("missing: %s in\n%s", want[i], s);
	free(s);
}

static void test_tls_versions(void **state)
{
	(void)state;
	assert_int_equal(metrics_tls_counter("TLSv1.3"), METRIC_TLS_1_3);
	assert_int_equal(metrics_tls_counter("TLSv1.2"), METRIC_TLS_1_2);
	assert_int_equal(metrics_tls_counter("TLSv1"), METRIC_TLS_1_0);
	assert_int_equal(metrics_tls_counter("SSLv3"), METRIC_TLS_OTHER);
	assert_int_equal(metrics_tls_counter(""), METRIC_TLS_OTHER);
}

/* Loads a config with [server] line extra; returns cfg_load's result and its messages (caller frees). */
static int load(const char *extra, unsigned flags, struct cfg **c, char **errs)
{
	char dir[] = "/tmp/test_metrics.XXXXXX", path[PATH_MAX];
	assert_non_null(mkdtemp(dir));
	assert_int_equal(fmt(path, sizeof(path), "%s/m.conf", dir), 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f, "[server]\nhostname = mx.test\nspool = %s/spool\n%s\n[domain example.com]\nrecipients = *\n", dir,
		extra);
	fclose(f);
	size_t len = 0;
	FILE *err = open_memstream(errs, &len);
	int rc = cfg_load_flags(path, err, flags | CFG_LOAD_NO_SYSTEM, c);
	fclose(err);
	unlink(path);
	rmdir(dir);
	return rc;
}

static void test_http_listen_key(void **state)
{
	(void)state;
	struct cfg *c;
	char *errs;
	assert_int_equal(load("", 0, &c, &errs), 0);
	assert_null(c->http_listen); /* off by default */
	cfg_unref(c);
	free(errs);

	assert_int_equal(load("http_listen = 127.0.0.1:9325", CFG_LOAD_WARN, &c, &errs), 0);
	assert_string_equal(c->http_listen->text, "127.0.0.1:9325");
	assert_null(strstr(errs, "http_listen")); /* loopback: no warning */
	char *printed = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&printed, &len);
	cfg_print(c, out);
	fclose(out);
	assert_non_null(strstr(printed, "\nhttp_listen = 127.0.0.1:9325\n"));
	free(printed);
	cfg_unref(c);
	free(errs);

	assert_int_equal(load("http_listen = [::1]:9325", CFG_LOAD_WARN, &c, &errs), 0);
	assert_null(strstr(errs, "http_listen"));
	cfg_unref(c);
	free(errs);

	assert_int_equal(load("http_listen = 0.0.0.0:9325", CFG_LOAD_WARN, &c, &errs), 0);
	assert_non_null(strstr(errs, ":4: warning: http_listen 0.0.0.0:9325 is not a loopback address"));
	cfg_unref(c);
	free(errs);

	assert_int_equal(load("http_listen = localhost:80", 0, &c, &errs), -EINVAL);
	assert_non_null(strstr(errs, ":4: bad value for http_listen: 'localhost:80' (expected ADDR:PORT, like "
				     "127.0.0.1:9325)"));
	free(errs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_tls_versions),
		cmocka_unit_test(test_http_listen_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
