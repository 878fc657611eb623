/*
 * Unit tests for the pure parts of MTA-STS (mta_sts_policy.c,
 * mta_sts_cache.c): tables of TXT records, of TXT record sets and of policy
 * files with what each must give; mx matching; and the cache file format
 * (round trip, a damaged or cut file refused, a file in a temporary
 * directory written and read back).
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "base/dns.h"
#include "delivery/mta_sts.h"
#include "delivery/mta_sts_cache.h"

struct txt_case {
	const char *name, *txt;
	int rc;
	const char *id;
};

static const struct txt_case txt_cases[] = {
	{"rfc example", "v=STSv1; id=20160831085700Z;", 0, "20160831085700Z"},
	{"no final delimiter", "v=STSv1; id=abc", 0, "abc"},
	{"no spaces", "v=STSv1;id=abc;", 0, "abc"},
	{"tabs and spaces", "v=STSv1 \t;\t id=abc \t; ", 0, "abc"},
	{"extension after", "v=STSv1; id=abc; ext_1=some-value", 0, "abc"},
	{"extension before", "v=STSv1; x.y-z=1; id=abc", 0, "abc"},
	{"id of 32", "v=STSv1; id=0123456789abcdefABCDEF0123456789", 0, "0123456789abcdefABCDEF0123456789"},
	{"id of 33", "v=STSv1; id=0123456789abcdefABCDEF0123456789a", -EINVAL, NULL},
	{"empty id", "v=STSv1; id=;", -EINVAL, NULL},
	{"id with a dash", "v=STSv1; id=ab-c;", -EINVAL, NULL},
	{"id with a space inside", "v=STSv1; id=ab c;", -EINVAL, NULL},
	{"no id", "v=STSv1;", -EINVAL, NULL},
	{"two ids", "v=STSv1; id=a; id=b", -EINVAL, NULL},
	{"v= not first", "id=abc; v=STSv1;", -EINVAL, NULL},
	{"wrong version", "v=STSv2; id=abc;", -EINVAL, NULL},
	{"version glued", "v=STSv10; id=abc;", -EINVAL, NULL},
	{"version case", "V=STSv1; id=abc;", -EINVAL, NULL},
	{"id case", "v=STSv1; ID=abc;", -EINVAL, NULL},
	{"empty field", "v=STSv1;; id=abc", -EINVAL, NULL},
	{"extension without value", "v=STSv1; id=abc; ext=", -EINVAL, NULL},
	{"extension name bad", "v=STSv1; id=abc; _x=1", -EINVAL, NULL},
	{"extension without '='", "v=STSv1; id=abc; flag", -EINVAL, NULL},
	{"extension value with '='", "v=STSv1; id=abc; x=a=b", -EINVAL, NULL},
	{"spf record", "v=spf1 -all", -EINVAL, NULL},
	{"empty", "", -EINVAL, NULL},
};

static void test_txt(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(txt_cases) / sizeof(txt_cases[0]); i++) {
		const struct txt_case *c = &txt_cases[i];
		char id[33] = "";
		int rc = mta_sts_parse_txt(c->txt, id);
		if (rc != c->rc)
			fail_msg("%s: rc %d, want %d", c->name, rc, c->rc);
		if (c->id && strcmp(id, c->id) != 0)
			fail_msg("%s: id '%s', want '%s'", c->name, id, c->id);
	}
}

static void test_pick_txt(void **state)
{
	(void)state;
	char id[33];
	const char *one[] = {"v=spf1 -all", "v=STSv1; id=abc;", "google-site-verification=x"};
	assert_int_equal(mta_sts_pick_txt(one, 3, id), 0);
	assert_string_equal(id, "abc");
	const char *two[] = {"v=STSv1; id=abc;", "v=STSv1; id=def;"};
	assert_int_equal(mta_sts_pick_txt(two, 2, id), -EINVAL); /* RFC 8461 3.1: more than one is none */
	const char *none[] = {"v=spf1 -all", "v=STSv10; id=abc"};
	assert_int_equal(mta_sts_pick_txt(none, 2, id), -ENOENT);
	assert_int_equal(mta_sts_pick_txt(NULL, 0, id), -ENOENT);
	const char *bad[] = {"v=STSv1; id=not-valid"};
	assert_int_equal(mta_sts_pick_txt(bad, 1, id), -EINVAL);
	const char *ws[] = {"v=STSv1 ; id=x1"};
	assert_int_equal(mta_sts_pick_txt(ws, 1, id), 0);
	assert_string_equal(id, "x1");
}

struct policy_case {
	const char *name, *text;
	int rc;
	enum mta_sts_mode mode;
	int64_t max_age;
	size_t nmx;
};

#define LONG_EXT "x: " \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" \
	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"

static const struct policy_case policy_cases[] = {
	{"enforce crlf", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\n"
			 "max_age: 604800\r\n", 0, MTA_STS_MODE_ENFORCE, 604800, 2},
	{"testing lf", "version: STSv1\nmode: testing\nmx: mx1.example.com\nmax_age: 86400\n", 0, MTA_STS_MODE_TESTING,
	 86400, 1},
	{"none without mx", "version: STSv1\nmode: none\nmax_age: 0\n", 0, MTA_STS_MODE_NONE, 0, 0},
	{"no final line end", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 10", 0, MTA_STS_MODE_ENFORCE, 10,
	 1},
	{"any order, blank lines", "max_age: 5\n\nmx: a.example\nmode: enforce\nversion: STSv1\n", 0,
	 MTA_STS_MODE_ENFORCE, 5, 1},
	{"unknown keys ignored", "version: STSv1\nmode: enforce\nfoo: bar baz\nx-y.z: 1\nmx: a.example\nmax_age: 9\n",
	 0, MTA_STS_MODE_ENFORCE, 9, 1},
	{"long unknown value", "version: STSv1\nmode: none\n" LONG_EXT "max_age: 9\n", 0, MTA_STS_MODE_NONE, 9, 0},
	{"spaces around values", "version:   STSv1  \nmode:\tenforce\t\nmx: a.example \nmax_age: 9\n", 0,
	 MTA_STS_MODE_ENFORCE, 9, 1},
	{"max_age at the limit", "version: STSv1\nmode: none\nmax_age: 31557600\n", 0, MTA_STS_MODE_NONE, 31557600, 0},
	{"max_age cut to a year", "version: STSv1\nmode: none\nmax_age: 9999999999\n", 0, MTA_STS_MODE_NONE, 31557600,
	 0},
	{"mx upper case", "version: STSv1\nmode: enforce\nmx: MAIL.Example.COM\nmax_age: 1\n", 0, MTA_STS_MODE_ENFORCE,
	 1, 1},
	{"mx absolute", "version: STSv1\nmode: enforce\nmx: mail.example.com.\nmax_age: 1\n", 0, MTA_STS_MODE_ENFORCE,
	 1, 1},
	{"max_age of 11 digits", "version: STSv1\nmode: none\nmax_age: 10000000000\n", -EINVAL, 0, 0, 0},
	{"max_age negative", "version: STSv1\nmode: none\nmax_age: -1\n", -EINVAL, 0, 0, 0},
	{"max_age with a unit", "version: STSv1\nmode: none\nmax_age: 1d\n", -EINVAL, 0, 0, 0},
	{"max_age empty", "version: STSv1\nmode: none\nmax_age:\n", -EINVAL, 0, 0, 0},
	{"no version", "mode: enforce\nmx: a.example\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"no mode", "version: STSv1\nmx: a.example\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"no max_age", "version: STSv1\nmode: enforce\nmx: a.example\n", -EINVAL, 0, 0, 0},
	{"enforce without mx", "version: STSv1\nmode: enforce\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"testing without mx", "version: STSv1\nmode: testing\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"bad mode", "version: STSv1\nmode: enforcing\nmx: a.example\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"mode case", "version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"bad version", "version: STSv2\nmode: none\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"mode twice", "version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"max_age twice", "version: STSv1\nmode: none\nmax_age: 1\nmax_age: 2\n", -EINVAL, 0, 0, 0},
	{"a line without ':'", "version: STSv1\nmode: none\nmax_age: 1\njunk\n", -EINVAL, 0, 0, 0},
	{"space before ':'", "version : STSv1\nmode: none\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"mx not a host", "version: STSv1\nmode: enforce\nmx: a_b.example\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"mx wildcard in the middle", "version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"mx bare wildcard", "version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"mx empty", "version: STSv1\nmode: enforce\nmx:\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"a lone CR", "version: STSv1\rmode: none\nmax_age: 1\n", -EINVAL, 0, 0, 0},
	{"empty", "", -EINVAL, 0, 0, 0},
};

static void test_policy(void **state)
{
	(void)state;
	struct mta_sts_policy p;
	for (size_t i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]); i++) {
		const struct policy_case *c = &policy_cases[i];
		char why[128] = "";
		int rc = mta_sts_parse_policy(c->text, strlen(c->text), &p, why, sizeof(why));
		if (rc != c->rc)
			fail_msg("%s: rc %d (%s), want %d", c->name, rc, why, c->rc);
		if (rc < 0) {
			if (!why[0])
				fail_msg("%s: no why", c->name);
			continue;
		}
		if (p.mode != c->mode || p.max_age != c->max_age || p.nmx != c->nmx)
			fail_msg("%s: mode %d max_age %lld nmx %zu", c->name, p.mode, (long long)p.max_age, p.nmx);
	}
}

static void test_policy_details(void **state)
{
	(void)state;
	struct mta_sts_policy p;
	char why[128];
	const char *t = "version: STSv1\nmode: enforce\nmx: MAIL.Example.COM.\nmx: *.Example.net\nmax_age: 1\n";
	assert_int_equal(mta_sts_parse_policy(t, strlen(t), &p, why, sizeof(why)), 0);
	assert_string_equal(p.mx[0], "mail.example.com");
	assert_string_equal(p.mx[1], "*.example.net");
	/* A NUL anywhere, and a body over 64 KiB, are refused. */
	const char nul[] = "version: STSv1\nmode: none\nmax_age: 1\nx: a\0b\n";
	assert_int_equal(mta_sts_parse_policy(nul, sizeof(nul) - 1, &p, why, sizeof(why)), -EINVAL);
	size_t big = 64 * 1024 + 1;
	char *b = malloc(big);
	assert_non_null(b);
	memset(b, '\n', big);
	memcpy(b, "version: STSv1\nmode: none\nmax_age: 1\n", 37);
	assert_int_equal(mta_sts_parse_policy(b, big, &p, why, sizeof(why)), -EINVAL);
	assert_int_equal(mta_sts_parse_policy(b, big - 1, &p, why, sizeof(why)), 0);
	free(b);
	/* More mx patterns than kept: refused rather than some hosts wrongly left out. */
	struct buf many = {0};
	buf_append_str(&many, "version: STSv1\nmode: enforce\nmax_age: 1\n");
	for (int i = 0; i < MTA_STS_MAX_MX; i++)
		buf_printf(&many, "mx: mx%d.example.com\n", i);
	assert_int_equal(mta_sts_parse_policy((const char *)many.data, many.len, &p, why, sizeof(why)), 0);
	buf_append_str(&many, "mx: one-more.example.com\n");
	assert_int_equal(mta_sts_parse_policy((const char *)many.data, many.len, &p, why, sizeof(why)), -EINVAL);
	buf_free(&many);
}

static void test_mx_matches(void **state)
{
	(void)state;
	struct mta_sts_policy p;
	char why[128];
	const char *t = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmax_age: 1\n";
	assert_int_equal(mta_sts_parse_policy(t, strlen(t), &p, why, sizeof(why)), 0);
	assert_true(mta_sts_mx_matches(&p, "mail.example.com"));          /* exact */
	assert_true(mta_sts_mx_matches(&p, "MAIL.example.COM"));          /* case */
	assert_false(mta_sts_mx_matches(&p, "mail2.example.com"));
	assert_false(mta_sts_mx_matches(&p, "a.mail.example.com"));       /* exact means exact */
	assert_false(mta_sts_mx_matches(&p, "example.com"));
	assert_true(mta_sts_mx_matches(&p, "mx1.example.net"));           /* one label */
	assert_true(mta_sts_mx_matches(&p, "MX1.Example.NET"));
	assert_false(mta_sts_mx_matches(&p, "a.mx1.example.net"));        /* not two labels */
	assert_false(mta_sts_mx_matches(&p, "example.net"));              /* not zero */
	assert_false(mta_sts_mx_matches(&p, ".example.net"));             /* not an empty label */
	assert_false(mta_sts_mx_matches(&p, "mx1.example.net.evil"));
	assert_false(mta_sts_mx_matches(&p, "mx1xexample.net"));
	assert_false(mta_sts_mx_matches(&p, ""));
}

static void test_cache_format(void **state)
{
	(void)state;
	const char *text = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 3600\r\n";
	struct buf b = {0};
	mta_sts_cache_format(&b, 1700000000, "abc123", text, strlen(text));
	struct mta_sts_policy p;
	int64_t at = 0;
	assert_int_equal(mta_sts_cache_parse((const char *)b.data, b.len, &p, &at), 0);
	assert_int_equal(at, 1700000000);
	assert_string_equal(p.id, "abc123");
	assert_int_equal(p.mode, MTA_STS_MODE_ENFORCE);
	assert_int_equal(p.max_age, 3600);
	/* Cut short anywhere, or with a byte changed in the header: refused. */
	for (size_t n = 0; n < b.len; n++)
		if (mta_sts_cache_parse((const char *)b.data, n, &p, &at) == 0)
			fail_msg("a file cut at %zu was taken", n);
	b.data[0] = 'X';
	assert_int_equal(mta_sts_cache_parse((const char *)b.data, b.len, &p, &at), -EINVAL);
	buf_free(&b);
	/* A bad id, or a policy that does not parse. */
	mta_sts_cache_format(&b, 1, "a-b", text, strlen(text));
	assert_int_equal(mta_sts_cache_parse((const char *)b.data, b.len, &p, &at), -EINVAL);
	buf_reset(&b);
	mta_sts_cache_format(&b, 1, "ab", "mode: enforce\n", 14);
	assert_int_equal(mta_sts_cache_parse((const char *)b.data, b.len, &p, &at), -EINVAL);
	buf_free(&b);
}

/* A fresh cache directory under /tmp (its name in dir): its fd. */
static int cache_dir_new(char dir[64])
{
	snprintf(dir, 64, "/tmp/mxv-sts-XXXXXX");
	assert_non_null(mkdtemp(dir));
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	return fd;
}

static void test_cache_files(void **state)
{
	(void)state;
	char dir[64];
	int fd = cache_dir_new(dir);
	const char *text = "version: STSv1\nmode: testing\nmx: *.example.org\nmax_age: 60\n";
	assert_int_equal(mta_sts_cache_store(fd, "example.org", 42, "id1", text, strlen(text)), 0);
	assert_int_equal(mta_sts_cache_store(fd, "example.org", 43, "id2", text, strlen(text)), 0); /* replaced */
	struct mta_sts_policy p;
	int64_t at;
	assert_int_equal(mta_sts_cache_load(fd, "example.org", 43, &p, &at), 0);
	assert_int_equal(at, 43);
	assert_string_equal(p.id, "id2");
	assert_int_equal(mta_sts_cache_load(fd, "other.org", 43, &p, &at), -ENOENT);
	/* Names that could leave the directory or hit a temporary file are refused. */
	assert_int_equal(mta_sts_cache_store(fd, "../x.org", 1, "a", text, strlen(text)), -EINVAL);
	assert_int_equal(mta_sts_cache_store(fd, ".tmp-example.org", 1, "a", text, strlen(text)), -EINVAL);
	assert_int_equal(mta_sts_cache_load(fd, "a/b.org", 43, &p, &at), -EINVAL);
	/* A damaged file is ignored (the next fetch replaces it). */
	int w = openat(fd, "example.org", O_WRONLY | O_TRUNC);
	assert_true(w >= 0);
	assert_int_equal(write(w, "mxvault-mta-sts 1\n", 18), 18);
	close(w);
	assert_int_equal(mta_sts_cache_load(fd, "example.org", 43, &p, &at), -EINVAL);
	assert_int_equal(unlinkat(fd, "example.org", 0), 0);
	close(fd);
	assert_int_equal(rmdir(dir), 0);
}

static void on_policy(void *arg, enum mta_sts_status st, const struct mta_sts_policy *p, const char *why)
{
	(void)p;
	(void)why;
	*(int *)arg = (int)st;
}

/*
 * A hand-edited cache file whose fetched_at is far in the future: refused
 * by mta_sts_cache_load, ignored when the daemon loads it (mta_sts_get),
 * and fetched_at + max_age never overflows (UBSan in `make asan` aborted
 * on it in entry_load before the check).
 */
static void test_cache_future_fetched_at(void **state)
{
	(void)state;
	char dir[64];
	int fd = cache_dir_new(dir);
	const char *text = "version: STSv1\nmode: enforce\nmx: mx.example.org\nmax_age: 86400\n";
	assert_int_equal(mta_sts_cache_store(fd, "example.org", INT64_MAX - 1, "id1", text, strlen(text)), 0);
	struct mta_sts_policy p;
	int64_t at;
	assert_int_equal(mta_sts_cache_load(fd, "example.org", 1700000000, &p, &at), -EINVAL);
	assert_int_equal(mta_sts_cache_load(fd, "example.org", INT64_MAX - 1, &p, &at), -EINVAL); /* no overflow */
	/* Within the skew (a clock stepped back) the file holds; beyond it, not. */
	assert_int_equal(mta_sts_cache_store(fd, "example.org", 1700000300, "id1", text, strlen(text)), 0);
	assert_int_equal(mta_sts_cache_load(fd, "example.org", 1700000000, &p, &at), 0);
	assert_int_equal(at, 1700000300);
	assert_int_equal(mta_sts_cache_load(fd, "example.org", 1699999999, &p, &at), -EINVAL);
	assert_int_equal(mta_sts_cache_store(fd, "example.org", INT64_MAX - 1, "id1", text, strlen(text)), 0);
	struct event_base *base = event_base_new();
	assert_non_null(base);
	struct dns *dns;
	assert_int_equal(dns_open(base, "127.0.0.1:9", 1000, &dns), 0); /* never asked: the loop does not run */
	int cache = dup(fd);
	assert_true(cache >= 0);
	struct mta_sts *m = mta_sts_new(base, dns, cache, NULL);
	assert_non_null(m);
	int st = -1;
	mta_sts_get(m, "example.org", on_policy, &st); /* loads the file */
	mta_sts_free(m);
	assert_int_equal(st, MTA_STS_CANCELLED);
	dns_free(dns);
	event_base_free(base);
	assert_int_equal(unlinkat(fd, "example.org", 0), 0);
	close(fd);
	assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_txt),
		cmocka_unit_test(test_pick_txt),
		cmocka_unit_test(test_policy),
		cmocka_unit_test(test_policy_details),
		cmocka_unit_test(test_mx_matches),
		cmocka_unit_test(test_cache_format),
		cmocka_unit_test(test_cache_files),
		cmocka_unit_test(test_cache_future_fetched_at),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
