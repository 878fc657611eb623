/*
 * test_connspec: the parsers of the abuse defences at connect (connspec.h)
 * from tables of {text, expected}: DNSBL sites with their answer codes and
 * weights, rates, CIDR blocks and the match of an address against a list;
 * and the bounded rate table (ratelimit.h), with time passed in.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "base/connspec.h"
#include "smtpd/ratelimit.h"

static bool matches(const struct connspec_dnsbl *z, const char *ip)
{
	uint8_t a[4];
	assert_int_equal(inet_pton(AF_INET, ip, a), 1);
	return connspec_dnsbl_matches(z, a);
}

static void test_dnsbl_sites(void **state)
{
	(void)state;
	static const struct {
		const char *spec, *zone;
		int weight;
		const char *yes[3], *no[3];
	} ok[] = {
		{"zen.example.org", "zen.example.org", 1, {"127.0.0.2", "127.255.0.1"}, {"128.0.0.2", "10.0.0.1"}},
		{"Zen.Example.ORG.", "zen.example.org", 1, {"127.0.0.2"}, {"126.0.0.2"}},
		{"bl.test=127.0.0.2", "bl.test", 1, {"127.0.0.2"}, {"127.0.0.3", "127.0.1.2"}},
		{"bl.test=127.0.0.[2..11]*3", "bl.test", 3, {"127.0.0.2", "127.0.0.11", "127.0.0.5"},
		 {"127.0.0.1", "127.0.0.12"}},
		{"bl.test=127.0.[0;1].[2;4..5];127.0.9.9", "bl.test", 1, {"127.0.1.5", "127.0.0.2", "127.0.9.9"},
		 {"127.0.2.2", "127.0.0.3", "127.0.9.8"}},
		{"bl.test*-2", "bl.test", -2, {"127.0.0.1"}, {"1.2.3.4"}},
		{"bl.test=127.0.0.[0..255]*1000", "bl.test", 1000, {"127.0.0.0", "127.0.0.255"}, {"127.0.1.0"}},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct connspec_dnsbl z;
		if (connspec_parse_dnsbl(ok[i].spec, &z) != 0)
			fail_msg("refused: %s", ok[i].spec);
		assert_string_equal(z.zone, ok[i].zone);
		assert_string_equal(z.text, ok[i].spec);
		assert_int_equal(z.weight, ok[i].weight);
		for (size_t j = 0; j < 3 && ok[i].yes[j]; j++)
			if (!matches(&z, ok[i].yes[j]))
				fail_msg("%s should list %s", ok[i].spec, ok[i].yes[j]);
		for (size_t j = 0; j < 3 && ok[i].no[j]; j++)
			if (matches(&z, ok[i].no[j]))
				fail_msg("%s should not list %s", ok[i].spec, ok[i].no[j]);
	}
	static const char *const bad[] = {
		"", "=127.0.0.2", "bl..test", "bl_test", "bl.test=", "bl.test=127.0.0", "bl.test=127.0.0.2.1",
		"bl.test=127.0.0.256", "bl.test=127.0.0.[2..1]", "bl.test=127.0.0.[2", "bl.test=127.0.0.[]",
		"bl.test=127.0.0.[-1..2]", "bl.test=127.0.0.2;", "bl.test*", "bl.test*x", "bl.test*1001", "bl.test*2*3",
		"bl.test*2=127.0.0.2", "bl.test=127.0.0.2*", "bl.test=127.0.0.-2", "bl.test=1;2;3",
		("b.t=1.1.1.1;1.1.1.2;1.1.1.3;1.1.1.4;1.1.1.5;1.1.1.6;1.1.1.7;1.1.1.8;1.1.1.9;1.1.1.10;1.1.1.11;1.1.1.12;"
		 "1.1.1.13;1.1.1.14;1.1.1.15;1.1.1.16;1.1.1.17"), /* 17 patterns: one too many */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct connspec_dnsbl z;
		if (connspec_parse_dnsbl(bad[i], &z) != -EINVAL)
			fail_msg("accepted: '%s'", bad[i]);
	}
}

static void test_rates(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		uint32_t count;
		int64_t period;
		const char *printed;
	} ok[] = {
		{"60/m", 60, 60, "60/m"}, {"600/h", 600, 3600, "600/h"}, {"1/s", 1, 1, "1/s"},
		{"1000000/h", 1000000, 3600, "1000000/h"}, {"0", 0, 0, "0"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct connspec_rate r;
		char buf[32];
		assert_int_equal(connspec_parse_rate(ok[i].text, &r), 0);
		assert_int_equal(r.count, ok[i].count);
		assert_int_equal(r.period, ok[i].period);
		assert_string_equal(connspec_fmt_rate(buf, sizeof(buf), &r), ok[i].printed);
	}
	static const char *const bad[] = {"", "60", "60/", "60/d", "60/mm", "/m", "-1/m", "0/m", "1000001/h",
					  "6O/m", "60 /m", "00"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct connspec_rate r;
		if (connspec_parse_rate(bad[i], &r) != -EINVAL)
			fail_msg("accepted: '%s'", bad[i]);
	}
}

static struct sockaddr_storage addr(const char *ip)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	return ss;
}

static void test_cidrs(void **state)
{
	(void)state;
	static const struct {
		const char *text, *printed;
	} ok[] = {
		{"127.0.0.0/8", "127.0.0.0/8"}, {"10.1.2.3/8", "10.0.0.0/8"}, {"192.0.2.1", "192.0.2.1"},
		{"192.0.2.1/32", "192.0.2.1"}, {"0.0.0.0/0", "0.0.0.0/0"}, {"::1", "::1"},
		{"2001:db8::1/32", "2001:db8::/32"}, {"2001:db8:0:1::/63", "2001:db8::/63"}, {"::/0", "::/0"},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct connspec_cidr c;
		char buf[64];
		if (connspec_parse_cidr(ok[i].text, &c) != 0)
			fail_msg("refused: %s", ok[i].text);
		assert_string_equal(connspec_fmt_cidr(buf, sizeof(buf), &c), ok[i].printed);
	}
	static const char *const bad[] = {"", "/8", "127.0.0.0/", "127.0.0.0/33", "::1/129", "127.0.0/8",
					  "127.0.0.0/-1", "127.0.0.0/8x", "localhost", "1.2.3.4/08x"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct connspec_cidr c;
		if (connspec_parse_cidr(bad[i], &c) != -EINVAL)
			fail_msg("accepted: '%s'", bad[i]);
	}

	struct connspec_cidr list[3];
	assert_int_equal(connspec_parse_cidr("127.0.0.0/8", &list[0]), 0);
	assert_int_equal(connspec_parse_cidr("::1", &list[1]), 0);
	assert_int_equal(connspec_parse_cidr("2001:db8:80::/41", &list[2]), 0);
	static const struct {
		const char *ip;
		bool in;
	} m[] = {
		{"127.0.0.1", true},      {"127.255.255.255", true}, {"128.0.0.1", false},
		{"::ffff:127.0.0.9", true}, {"::1", true},          {"::2", false},
		{"2001:db8:80::1", true}, {"2001:db8:ff::1", true},  {"2001:db8:100::1", false},
		{"2001:db8:7f::1", false},
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		struct sockaddr_storage ss = addr(m[i].ip);
		if (connspec_cidr_match(list, 3, (const struct sockaddr *)&ss) != m[i].in)
			fail_msg("%s: expected %s", m[i].ip, m[i].in ? "inside" : "outside");
	}
	struct sockaddr_storage ss = addr("127.0.0.1");
	assert_false(connspec_cidr_match(list, 0, (const struct sockaddr *)&ss));
}

static void test_rate_table_windows(void **state)
{
	(void)state;
	struct ratelimit *t = ratelimit_new(16);
	/* 60 s windows starting with the first event */
	assert_int_equal(ratelimit_hit(t, "192.0.2.1", 60, 1000), 1);
	assert_int_equal(ratelimit_hit(t, "192.0.2.1", 60, 1030), 2);
	assert_int_equal(ratelimit_hit(t, "192.0.2.1", 60, 1059), 3);
	assert_int_equal(ratelimit_count(t, "192.0.2.1", 60, 1059), 3);
	assert_int_equal(ratelimit_hit(t, "192.0.2.2", 60, 1059), 1); /* keys apart */
	assert_int_equal(ratelimit_count(t, "192.0.2.1", 60, 1060), 0); /* the window is over: forgotten */
	assert_int_equal(ratelimit_size(t), 1);
	assert_int_equal(ratelimit_hit(t, "192.0.2.1", 60, 1060), 1);
	assert_int_equal(ratelimit_count(t, "nobody", 60, 1060), 0);
	/* a clock that went back never makes a window live longer */
	assert_int_equal(ratelimit_hit(t, "192.0.2.1", 60, 10), 1);
	ratelimit_free(t);
}

static void test_rate_table_bounded(void **state)
{
	(void)state;
	struct ratelimit *t = ratelimit_new(100);
	char key[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
		ratelimit_hit(t, key, 3600, 5);
		assert_true(ratelimit_size(t) <= 100);
	}
	assert_int_equal(ratelimit_size(t), 100);
	/* the least recently used went first: the last 100 are there, the first are not */
	assert_int_equal(ratelimit_count(t, "10.0.3.231", 3600, 5), 1); /* i = 999 */
	assert_int_equal(ratelimit_count(t, "10.0.3.132", 3600, 5), 1); /* i = 900 */
	assert_int_equal(ratelimit_count(t, "10.0.3.131", 3600, 5), 0); /* i = 899 */
	/* a key used again moves to the back, and outlives newer ones */
	ratelimit_hit(t, "10.0.3.132", 3600, 5);
	for (int i = 0; i < 99; i++) {
		snprintf(key, sizeof(key), "x%d", i);
		ratelimit_hit(t, key, 3600, 6);
	}
	assert_int_equal(ratelimit_count(t, "10.0.3.132", 3600, 6), 2);
	assert_int_equal(ratelimit_count(t, "10.0.3.133", 3600, 6), 0);
	/* a key longer than a table key is cut, not overflowed */
	char long_key[200];
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	assert_int_equal(ratelimit_hit(t, long_key, 3600, 6), 1);
	assert_int_equal(ratelimit_hit(t, long_key, 3600, 6), 2);
	ratelimit_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dnsbl_sites),
		cmocka_unit_test(test_rates),
		cmocka_unit_test(test_cidrs),
		cmocka_unit_test(test_rate_table_windows),
		cmocka_unit_test(test_rate_table_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
