/*
 * test_spf: the pure half of SPF (auth/spf_parse.c): macro expansion with
 * the examples of RFC 7208 7.4, the record parser (a table of records that
 * parse and of syntax errors, 4.6 and 12), CIDR matching and the 4.3
 * domain check. The DNS half runs in the suites (tests/suites/run_spf.py).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "auth/spf_parse.h"

static struct spf_macro_env env4(void)
{
	struct spf_macro_env e = {
		.sender = "strong-bad@email.example.com", .local = "strong-bad",
		.sender_domain = "email.example.com", .domain = "email.example.com",
		.helo = "mx.example.org", .receiver = "mx.example.net",
		.family = AF_INET, .ip = {192, 0, 2, 3}, .now = 1234,
	};
	return e;
}

static void expect_expand(const struct spf_macro_env *e, const char *in, bool exp, const char *want)
{
	char out[SPF_EXPAND_MAX + 1];
	int rc = spf_expand(in, strlen(in), e, exp, out, sizeof(out));
	if (rc != 0 || strcmp(out, want) != 0)
		fail_msg("%s: rc %d, got \"%s\", want \"%s\"", in, rc, rc ? "" : out, want);
}

/* RFC 7208 7.4, every example. */
static void test_rfc_examples_ip4(void **state)
{
	(void)state;
	struct spf_macro_env e = env4();
	static const char *const cases[][2] = {
		{"%{s}", "strong-bad@email.example.com"},
		{"%{o}", "email.example.com"},
		{"%{d}", "email.example.com"},
		{"%{d4}", "email.example.com"},
		{"%{d3}", "email.example.com"},
		{"%{d2}", "example.com"},
		{"%{d1}", "com"},
		{"%{dr}", "com.example.email"},
		{"%{d2r}", "example.email"},
		{"%{l}", "strong-bad"},
		{"%{l-}", "strong.bad"},
		{"%{lr}", "strong-bad"},
		{"%{lr-}", "bad.strong"},
		{"%{l1r-}", "strong"},
		{"%{ir}.%{v}._spf.%{d2}", "3.2.0.192.in-addr._spf.example.com"},
		{"%{lr-}.lp._spf.%{d2}", "bad.strong.lp._spf.example.com"},
		{"%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "bad.strong.lp.3.2.0.192.in-addr._spf.example.com"},
		{"%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "3.2.0.192.in-addr.strong.lp._spf.example.com"},
		{"%{d2}.trusted-domains.example.net", "example.com.trusted-domains.example.net"},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		expect_expand(&e, cases[i][0], false, cases[i][1]);
}

static void test_rfc_examples_ip6(void **state)
{
	(void)state;
	struct spf_macro_env e = env4();
	e.family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::cb01", e.ip), 1);
	expect_expand(&e, "%{ir}.%{v}._spf.%{d2}",
		      false, "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
	expect_expand(&e, "%{c}", true, "2001:db8::cb01");
}

/* Escapes, upper case (URL-escaped), exp-only letters, the 253 cut, errors. */
static void test_expand_rules(void **state)
{
	(void)state;
	struct spf_macro_env e = env4();
	expect_expand(&e, "%%%_%-", true, "% %20");
	expect_expand(&e, "%{S}", false, "strong-bad%40email.example.com");
	expect_expand(&e, "%{L}", false, "strong-bad");
	expect_expand(&e, "%{c} %{r} %{t} %{p}", true, "192.0.2.3 mx.example.net 1234 unknown");
	expect_expand(&e, "%{d}.", false, "email.example.com");
	expect_expand(&e, "%{d}.", true, "email.example.com.");
	expect_expand(&e, "%{l+-}", false, "strong.bad");
	char out[SPF_EXPAND_MAX + 1];
	static const char *const bad[] = {"%", "%x", "%{", "%{x}", "%{d", "%{d0}", "%{c}", "%{t}", "a b", "\x80"};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		if (spf_expand(bad[i], strlen(bad[i]), &e, false, out, sizeof(out)) != -EINVAL)
			fail_msg("%s expanded", bad[i]);
	/* 7.3: a long name loses whole labels on the left until it fits 253. */
	char spec[400];
	for (int i = 0; i < 30; i++)
		memcpy(spec + 10 * i, "abcdefghi.", 10);
	memcpy(spec + 300, "%{d}", 5);
	assert_int_equal(spf_expand(spec, strlen(spec), &e, false, out, sizeof(out)), 0);
	assert_true(strlen(out) <= 253 && strlen(out) > 240);
	assert_string_equal(out + strlen(out) - strlen("email.example.com"), "email.example.com");
	assert_int_equal(out[0], 'a');
	assert_true(spf_uses_p("a.%{p}", 6) && !spf_uses_p("%%{p}", 5) && !spf_uses_p("%{d}", 4));
}

struct rec_case {
	const char *txt;
	int rc;
	size_t n;
};

static void test_parse_table(void **state)
{
	(void)state;
	static const struct rec_case cases[] = {
		{"v=spf1", 0, 0},
		{"v=spf1 -all", 0, 1},
		{"V=SpF1 ~ALL", 0, 1},
		{"v=spf1  a  -all ", 0, 2},
		{"v=spf1 a/24//64 mx:example.com/30 ptr ptr:example.org exists:%{i}.x.example.com -all", 0, 6},
		{"v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 ip6:::1 include:_spf.example.com ?all", 0, 5},
		{"v=spf1 redirect=_spf.example.com exp=explain.%{d} moo.cow-far_out=man:dog/cat", 0, 0},
		{"v=spf1 a:a:b.example.com", 0, 1},
		{"v=spf10", -EINVAL, 0},
		{"v=spf1-all", -EINVAL, 0},
		{"spf1 -all", -EINVAL, 0},
		{"v=spf1 -all.", -EINVAL, 0},
		{"v=spf1 -all moo", -EINVAL, 0},
		{"v=spf1 all/24", -EINVAL, 0},
		{"v=spf1 a/33", -EINVAL, 0},
		{"v=spf1 a//129", -EINVAL, 0},
		{"v=spf1 ip4:1.2.3.4/032", -EINVAL, 0},
		{"v=spf1 ip4:1.2.3.4//32", -EINVAL, 0},
		{"v=spf1 ip4:1.2.3", -EINVAL, 0},
		{"v=spf1 ip6:2001:db8::/129", -EINVAL, 0},
		{"v=spf1 a:foo-bar", -EINVAL, 0},
		{"v=spf1 a:example.123", -EINVAL, 0},
		{"v=spf1 a:example.-com", -EINVAL, 0},
		{"v=spf1 a:", -EINVAL, 0},
		{"v=spf1 include", -EINVAL, 0},
		{"v=spf1 include:example.com/24", -EINVAL, 0},
		{"v=spf1 exists:example.com/24", -EINVAL, 0},
		{"v=spf1 ptr/0", -EINVAL, 0},
		{"v=spf1 redirect=a.example.com redirect=b.example.com", -EINVAL, 0},
		{"v=spf1 exp=a.example.com exp=b.example.com", -EINVAL, 0},
		{"v=spf1 redirect=", -EINVAL, 0},
		{"v=spf1 redirect:example.com", -EINVAL, 0},
		{"v=spf1 =example.com", -EINVAL, 0},
		{"v=spf1 a:ctrl.example.com\rptr -all", -EINVAL, 0},
		{"v=spf1 a:%{H}.bar -all", 0, 2},
		{"v=spf1 a:foo.%{c}.example.com", -EINVAL, 0},
		{"v=spf1 moo=%", -EINVAL, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct spf_record r;
		int rc = spf_parse_record(cases[i].txt, &r);
		if (rc != cases[i].rc || (rc == 0 && r.n != cases[i].n))
			fail_msg("\"%s\": rc %d n %zu", cases[i].txt, rc, rc == 0 ? r.n : 0);
		spf_record_free(&r);
	}
}

static void test_parse_fields(void **state)
{
	(void)state;
	struct spf_record r;
	const char *txt = "v=spf1 ~mx:example.com/30//64 ip4:192.0.2.128/28 -a//0 redirect=r.example.com exp=e.example.com";
	assert_int_equal(spf_parse_record(txt, &r), 0);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.terms[0].mech, SPF_M_MX);
	assert_int_equal(r.terms[0].qual, SPF_SOFTFAIL);
	assert_int_equal(r.terms[0].cidr4, 30);
	assert_int_equal(r.terms[0].cidr6, 64);
	assert_int_equal(r.terms[0].spec_len, strlen("example.com"));
	assert_memory_equal(r.terms[0].spec, "example.com", r.terms[0].spec_len);
	assert_int_equal(r.terms[1].mech, SPF_M_IP4);
	assert_int_equal(r.terms[1].qual, SPF_PASS);
	assert_int_equal(r.terms[1].cidr4, 28);
	assert_memory_equal(r.terms[1].ip, "\xc0\x00\x02\x80", 4);
	assert_int_equal(r.terms[2].mech, SPF_M_A);
	assert_int_equal(r.terms[2].qual, SPF_FAIL);
	assert_null(r.terms[2].spec);
	assert_int_equal(r.terms[2].cidr4, 32);
	assert_int_equal(r.terms[2].cidr6, 0);
	assert_memory_equal(r.redirect, "r.example.com", r.redirect_len);
	assert_memory_equal(r.exp, "e.example.com", r.exp_len);
	spf_record_free(&r);
	assert_true(spf_is_record("v=spf1") && spf_is_record("V=SPF1 a"));
	assert_false(spf_is_record("v=spf10") || spf_is_record("v=spf") || spf_is_record(""));
}

static void test_cidr(void **state)
{
	(void)state;
	unsigned char a[16], b[16];
	assert_int_equal(inet_pton(AF_INET, "192.0.2.130", a), 1);
	assert_int_equal(inet_pton(AF_INET, "192.0.2.128", b), 1);
	assert_true(spf_cidr_match(AF_INET, a, b, 25));
	assert_true(spf_cidr_match(AF_INET, a, b, 30));
	assert_false(spf_cidr_match(AF_INET, a, b, 31));
	assert_false(spf_cidr_match(AF_INET, a, b, 32));
	assert_true(spf_cidr_match(AF_INET, a, b, 0));
	assert_false(spf_cidr_match(AF_INET, a, b, 33));
	assert_int_equal(inet_pton(AF_INET6, "2001:db8:1234::cafe:babe", a), 1);
	assert_int_equal(inet_pton(AF_INET6, "2001:db8:1235::", b), 1);
	assert_true(spf_cidr_match(AF_INET6, a, b, 47));
	assert_false(spf_cidr_match(AF_INET6, a, b, 48));
	assert_true(spf_cidr_match(AF_INET6, a, a, 128));
	assert_false(spf_cidr_match(AF_INET6, a, b, 129));
}

static void test_domain_valid(void **state)
{
	(void)state;
	assert_true(spf_domain_is_valid("example.com"));
	assert_true(spf_domain_is_valid("example.com."));
	assert_true(spf_domain_is_valid("_spf.example.com"));
	assert_false(spf_domain_is_valid("A2345678"));
	assert_false(spf_domain_is_valid("[1.2.3.5]"));
	assert_false(spf_domain_is_valid("a...example.com"));
	assert_false(spf_domain_is_valid(""));
	assert_false(spf_domain_is_valid(
		"A123456789012345678901234567890123456789012345678901234567890123.example.com"));
	assert_true(spf_domain_is_valid(
		"A12345678901234567890123456789012345678901234567890123456789012.example.com"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc_examples_ip4),
		cmocka_unit_test(test_rfc_examples_ip6),
		cmocka_unit_test(test_expand_rules),
		cmocka_unit_test(test_parse_table),
		cmocka_unit_test(test_parse_fields),
		cmocka_unit_test(test_cidr),
		cmocka_unit_test(test_domain_valid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
