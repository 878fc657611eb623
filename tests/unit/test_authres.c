/*
 * Unit tests for src/auth/authres.c: the Authentication-Results field we
 * write (exact output for each method, quoting, comments, folding before
 * 78 characters, "none" when nothing ran, peer text that cannot break the
 * field) and the recogniser of fields that claim our authserv-id (a table
 * of values, with comments, quoting, case and folding).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "auth/authres.h"

static char *format(const struct authres *r)
{
	static char text[4096];
	struct buf b = {0};
	authres_format(r, &b);
	assert_true(b.len < sizeof(text));
	memcpy(text, b.data, b.len);
	text[b.len] = '\0';
	buf_free(&b);
	return text;
}

/* Every line ends in CRLF, is at most max long, and every line after the first starts with a tab. */
static void assert_lines(const char *s, size_t max)
{
	size_t nlines = 0;
	while (*s) {
		const char *crlf = strstr(s, "\r\n");
		assert_non_null(crlf);
		assert_true((size_t)(crlf - s) <= max);
		assert_null(memchr(s, '\n', (size_t)(crlf - s)));
		assert_null(memchr(s, '\r', (size_t)(crlf - s)));
		if (nlines++)
			assert_int_equal(s[0], '\t');
		s = crlf + 2;
	}
	assert_true(nlines > 0);
}

static void test_none(void **state)
{
	(void)state;
	struct authres r = {.authserv_id = "mx2.example.net"};
	assert_string_equal(format(&r), "Authentication-Results: mx2.example.net; none\r\n");
}

static void test_every_method(void **state)
{
	(void)state;
	struct dkim_sig_result sigs[2] = {
		{.result = DKIM_PASS, .domain = "example.com", .selector = "sel1", .b_prefix = "abc+/=12"},
		{.result = DKIM_FAIL, .domain = "example.org", .selector = "s2", .b_prefix = "Zz09",
		 .why = "body hash mismatch"},
	};
	struct authres r = {
		.authserv_id = "mx2.example.net",
		.spf_ran = true, .spf = SPF_PASS, .spf_mailfrom = "alice@example.com",
		.dkim_ran = true, .dkim = sigs, .ndkim = 2,
		.dmarc_ran = true, .dmarc = DMARC_PASS, .dmarc_from = "example.com",
		.iprev_ran = true, .iprev = IPREV_PASS, .iprev_ip = "192.0.2.1", .iprev_name = "mail.example.com",
	};
	const char *s = format(&r);
	assert_string_equal(s, "Authentication-Results: mx2.example.net; spf=pass\r\n"
			       "\tsmtp.mailfrom=alice@example.com; dkim=pass header.d=example.com\r\n"
			       "\theader.s=sel1 header.b=\"abc+/=12\"; dkim=fail reason=\"body hash mismatch\"\r\n"
			       "\theader.d=example.org header.s=s2 header.b=Zz09; dmarc=pass\r\n"
			       "\theader.from=example.com; iprev=pass policy.iprev=192.0.2.1\r\n"
			       "\t(mail.example.com)\r\n");
	assert_lines(s, 78);
}

static void test_spf_variants(void **state)
{
	(void)state;
	struct authres r = {.authserv_id = "mx", .spf_ran = true, .spf = SPF_FAIL, .spf_helo = "client.example",
			    .spf_reason = "Not \"allowed\" \\ here"};
	assert_string_equal(format(&r), "Authentication-Results: mx; spf=fail reason=\"Not \\\"allowed\\\" \\\\ here\"\r\n"
					"\tsmtp.helo=client.example\r\n");
	/* An address that is not local@token is quoted; an empty one is left out. */
	r = (struct authres){.authserv_id = "mx", .spf_ran = true, .spf = SPF_SOFTFAIL,
			     .spf_mailfrom = "\"a b\"@example.com"};
	assert_string_equal(format(&r), "Authentication-Results: mx; spf=softfail "
					"smtp.mailfrom=\"\\\"a b\\\"@example.com\"\r\n");
	r = (struct authres){.authserv_id = "mx", .spf_ran = true, .spf = SPF_TEMPERROR, .spf_mailfrom = ""};
	assert_string_equal(format(&r), "Authentication-Results: mx; spf=temperror\r\n");
}

static void test_dkim_none_and_dmarc(void **state)
{
	(void)state;
	struct authres r = {.authserv_id = "mx", .dkim_ran = true, .dmarc_ran = true, .dmarc = DMARC_PERMERROR,
			    .dmarc_reason = "more than one From"};
	assert_string_equal(format(&r), "Authentication-Results: mx; dkim=none; dmarc=permerror\r\n"
					"\treason=\"more than one From\"\r\n");
	r = (struct authres){.authserv_id = "mx", .iprev_ran = true, .iprev = IPREV_TEMPERROR, .iprev_ip = "2001:db8::1"};
	assert_string_equal(format(&r), "Authentication-Results: mx; iprev=temperror policy.iprev=\"2001:db8::1\"\r\n");
}

/* Text from peers (exp= explanations, PTR names) never ends the field nor the comment. */
static void test_hostile_text(void **state)
{
	(void)state;
	char longtext[2000];
	memset(longtext, 'x', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	struct authres r = {.authserv_id = "mx", .spf_ran = true, .spf = SPF_FAIL,
			    .spf_reason = "a\r\nX-Evil: 1\r\n\tb", .iprev_ran = true, .iprev = IPREV_PASS,
			    .iprev_ip = "192.0.2.1", .iprev_name = "x) (y\\\r\nZ: z", .spf_mailfrom = longtext};
	const char *s = format(&r);
	assert_null(strstr(s, "\r\nX-Evil"));
	assert_null(strstr(s, "\r\nZ:"));
	assert_non_null(strstr(s, "reason=\"aX-Evil: 1b\""));
	assert_non_null(strstr(s, "(x\\) \\(y\\\\Z: z)"));
	assert_lines(s, 998);
	/* The long value is cut to AUTHRES_MAX_TEXT. */
	const char *v = strstr(s, "smtp.mailfrom=");
	assert_non_null(v);
	v += strlen("smtp.mailfrom=");
	assert_int_equal(strcspn(v, ";"), AUTHRES_MAX_TEXT);
}

/* Every piece at its longest and all quotes (each doubled): within AUTHRES_MAX_LEN. */
static void test_longest(void **state)
{
	(void)state;
	char q[AUTHRES_MAX_TEXT * 2];
	memset(q, '"', sizeof(q) - 1);
	q[sizeof(q) - 1] = '\0';
	struct dkim_sig_result sigs[DKIM_MAX_SIGNATURES];
	for (size_t i = 0; i < DKIM_MAX_SIGNATURES; i++) {
		sigs[i] = (struct dkim_sig_result){.result = DKIM_PERMERROR, .why = q};
		memset(sigs[i].domain, '"', sizeof(sigs[i].domain) - 1);
		memset(sigs[i].selector, '"', sizeof(sigs[i].selector) - 1);
		memset(sigs[i].b_prefix, '"', sizeof(sigs[i].b_prefix) - 1);
	}
	struct authres r = {
		.authserv_id = q, .spf_ran = true, .spf = SPF_PERMERROR, .spf_mailfrom = q, .spf_reason = q,
		.dkim_ran = true, .dkim = sigs, .ndkim = DKIM_MAX_SIGNATURES,
		.dmarc_ran = true, .dmarc = DMARC_PERMERROR, .dmarc_from = q, .dmarc_reason = q,
		.iprev_ran = true, .iprev = IPREV_PERMERROR, .iprev_ip = q, .iprev_name = "((((((((((((((((((((((((((((",
	};
	struct buf b = {0};
	authres_format(&r, &b);
	assert_true(b.len > AUTHRES_MAX_LEN * 3 / 4); /* the worst case is near the bound: it is not loose */
	assert_true(b.len <= AUTHRES_MAX_LEN);
	buf_free(&b);
}

/* Many signatures: folded, never over 78 where a space can go. */
static void test_folding(void **state)
{
	(void)state;
	struct dkim_sig_result sigs[DKIM_MAX_SIGNATURES + 2];
	memset(sigs, 0, sizeof(sigs));
	for (size_t i = 0; i < DKIM_MAX_SIGNATURES + 2; i++) {
		sigs[i].result = DKIM_PASS;
		snprintf(sigs[i].domain, sizeof(sigs[i].domain), "sub%zu.a-rather-long-domain-name.example.com", i);
		snprintf(sigs[i].selector, sizeof(sigs[i].selector), "selector-%zu", i);
		snprintf(sigs[i].b_prefix, sizeof(sigs[i].b_prefix), "AbCdEf%zu", i);
	}
	struct authres r = {.authserv_id = "mx2.example.net", .dkim_ran = true, .dkim = sigs,
			    .ndkim = DKIM_MAX_SIGNATURES + 2};
	const char *s = format(&r);
	assert_lines(s, 78);
	/* No more than DKIM_MAX_SIGNATURES results are written. */
	size_t n = 0;
	for (const char *p = s; (p = strstr(p, "dkim=")); p++)
		n++;
	assert_int_equal(n, DKIM_MAX_SIGNATURES);
}

static const struct {
	const char *value;
	bool ours;
} recog[] = {
	{" mx2.example.net; spf=pass", true},
	{"mx2.example.net;spf=pass", true},
	{" MX2.Example.NET; spf=pass", true},
	{" mx2.example.net.; spf=pass", true},
	{" mx2.example.net 1; spf=pass", true},
	{" mx2.example.net", true},
	{" (comment) mx2.example.net; spf=pass", true},
	{" (nested (comment \\) here)) mx2.example.net; none", true},
	{"\r\n\t(folded)\r\n mx2.example.net\r\n\t; spf=pass", true},
	{" \"mx2.example.net\"; spf=pass", true},
	{" \"mx2.exa\\mple.net\"; spf=pass", true},
	{" mx2.example.net(comment); spf=pass", true},
	{" mx2.example.net/evil; spf=pass", true},
	{" mx.example.net; spf=pass", false},
	{" mx2.example.net.evil; spf=pass", false},
	{" evil.mx2.example.net; spf=pass", false},
	{" mx2.example.ne; spf=pass", false},
	{" (mx2.example.net) other.example; spf=pass", false},
	{" (unterminated mx2.example.net; spf=pass", false},
	{" \"mx2.example.net; spf=pass", false},
	{"", false},
	{"   ", false},
	{" ; spf=pass", false},
	{" \"\"; spf=pass", false},
	{" mx2.example.net..; spf=pass", false},
};

static void test_recognise(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(recog) / sizeof(recog[0]); i++) {
		bool got = authres_is_ours(recog[i].value, strlen(recog[i].value), "mx2.example.net");
		if (got != recog[i].ours)
			fail_msg("case %zu '%s': expected %d", i, recog[i].value, recog[i].ours);
	}
	/* Our own output is recognised as ours. */
	struct authres r = {.authserv_id = "mx2.example.net"};
	const char *s = format(&r) + strlen("Authentication-Results:");
	assert_true(authres_is_ours(s, strlen(s), "mx2.example.net"));
	assert_false(authres_is_ours(s, strlen(s), "mx3.example.net"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_every_method),
		cmocka_unit_test(test_spf_variants),
		cmocka_unit_test(test_dkim_none_and_dmarc),
		cmocka_unit_test(test_hostile_text),
		cmocka_unit_test(test_folding),
		cmocka_unit_test(test_longest),
		cmocka_unit_test(test_recognise),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
