/*
 * test_dmarc: the pure parts of DMARC (record, From: domain, alignment,
 * pct) from tables, and dmarc_check_start against a real resolver: unbound
 * on a loopback port serving _dmarc records (unbound.h, as test_dns.c).
 */
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "auth/dmarc.h"
#include "auth/dmarc_parse.h"
#include "base/dns.h"
#include "unbound.h"

/* ---- the record ---- */

struct rec_case {
	const char *txt;
	int rc;
	enum dmarc_policy p, sp;
	bool adkim_s, aspf_s;
	unsigned pct;
	bool from_rua;
};

static void test_record_table(void **state)
{
	(void)state;
#define N DMARC_P_NONE
#define Q DMARC_P_QUARANTINE
#define R DMARC_P_REJECT
	static const struct rec_case cases[] = {
		{"v=DMARC1; p=reject", 0, R, R, false, false, 100, false},
		{"v=DMARC1;p=quarantine;sp=none;adkim=s;aspf=s;pct=50;", 0, Q, N, true, true, 50, false},
		{"  v = DMARC1 ;\tp = Reject ; SP=quarantine ", 0, R, Q, false, false, 100, false},
		{"V=DMARC1; P=NONE; ADKIM=S", 0, N, N, true, false, 100, false},
		{"v=DMARC1; p=none; pct=0", 0, N, N, false, false, 0, false},
		{"v=DMARC1; p=none; pct=100", 0, N, N, false, false, 100, false},
		{"v=DMARC1; p=reject; p=none", 0, R, R, false, false, 100, false},        /* the first counts */
		{"v=DMARC1; p=reject; junk; =x; rf=bob; ri=x; fo=9", 0, R, R, false, false, 100, false},
		{"v=DMARC1; rua=mailto:d@example.com", 0, N, N, false, false, 100, true}, /* 6.6.3 */
		{"v=DMARC1; p=bogus; rua=bad, mailto:d@example.com", 0, N, N, false, false, 100, true},
		{"v=DMARC1; p=reject; sp=bogus; rua=mailto:d@example.com", 0, N, N, false, false, 100, true},
		{.txt = "v=DMARC1; p=reject; sp=bogus", .rc = -EINVAL},
		{.txt = "v=DMARC1; p=bogus; rua=nouri", .rc = -EINVAL},
		{.txt = "v=DMARC1; rua=mailto:", .rc = -EINVAL},
		{.txt = "v=DMARC1", .rc = -EINVAL},
		{.txt = "v=DMARC1; p=n", .rc = -EINVAL},
		{.txt = "v=DMARC1; p=none; pct=101", .rc = -EINVAL},
		{.txt = "v=DMARC1; p=none; pct=-1", .rc = -EINVAL},
		{.txt = "v=DMARC1; p=none; pct=", .rc = -EINVAL},
		{.txt = "v=DMARC1; p=none; adkim=x", .rc = -EINVAL},
		{.txt = "v=DMARC1; p=none; aspf=relaxed", .rc = -EINVAL},
		{.txt = "p=none; v=DMARC1", .rc = -EINVAL},
		{.txt = "v=dmarc1; p=none", .rc = -EINVAL},
		{.txt = "v=DMARC2; p=none", .rc = -EINVAL},
		{.txt = "v=DMARC1 p=none", .rc = -EINVAL},
		{.txt = "", .rc = -EINVAL},
	};
#undef N
#undef Q
#undef R
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const struct rec_case *c = &cases[i];
		struct dmarc_record r;
		const char *why = NULL;
		int rc = dmarc_parse_record(c->txt, &r, &why);
		if (rc != c->rc)
			fail_msg("%s: rc %d, want %d (%s)", c->txt, rc, c->rc, why ? why : "");
		if (rc < 0) {
			assert_non_null(why);
			continue;
		}
		if (r.p != c->p || r.sp != c->sp || r.adkim_strict != c->adkim_s || r.aspf_strict != c->aspf_s ||
		    r.pct != c->pct || r.p_from_rua != c->from_rua)
			fail_msg("%s: p=%d sp=%d adkim_s=%d aspf_s=%d pct=%u rua=%d", c->txt, r.p, r.sp, r.adkim_strict,
				 r.aspf_strict, r.pct, r.p_from_rua);
	}
}

static void test_txt_is_dmarc(void **state)
{
	(void)state;
	assert_true(dmarc_txt_is_dmarc("v=DMARC1"));
	assert_true(dmarc_txt_is_dmarc("v=DMARC1; p=none"));
	assert_true(dmarc_txt_is_dmarc(" v =\tDMARC1 ;"));
	assert_false(dmarc_txt_is_dmarc("v=DMARC10; p=none"));
	assert_false(dmarc_txt_is_dmarc("v=DMARC1 p=none"));
	assert_false(dmarc_txt_is_dmarc("v=spf1 -all"));
	assert_false(dmarc_txt_is_dmarc(""));
}

/* ---- the From: domain ---- */

static void test_from_table(void **state)
{
	(void)state;
	static const struct {
		const char *value, *domain; /* NULL: -EINVAL */
	} cases[] = {
		{"joe@example.com", "example.com"},
		{"Joe <joe@Example.COM>", "example.com"},
		{"\"Joe, \\\"the\\\" <x@fake.com>\" <joe@real.com>", "real.com"},
		{"(boss@fake.com) joe@real.com (more (nested) comment)", "real.com"},
		{"joe @ sub . example . org", "sub.example.org"},
		{"\"quoted local\"@example.net", "example.net"},
		{"Team: joe@example.com;", "example.com"},
		{"Team: joe@example.com", "example.com"},         /* the missing ";" at the end */
		{"Team: , joe@example.com, ;", "example.com"},    /* obs-mbox-list */
		{"Ren\xc3\xa9 <r@example.fr>", "example.fr"},     /* RFC 6532 UTF-8 in the name */
		{"", NULL},
		{"   ", NULL},
		{"Team:;", NULL},
		{"undisclosed-recipients:;", NULL},
		{"Team: a@x.com, b@y.com;", NULL},
		{"a@x.com, b@x.com", NULL},
		{"Team: a@x.com;, b@y.com", NULL},
		{"joe@[192.0.2.1]", NULL},
		{"joe", NULL},
		{"<joe@example.com", NULL},
		{"joe@example.com>", NULL},
		{"<joe@example.com> trailing", NULL},
		{"Joe <joe>", NULL},
		{"joe@", NULL},
		{"joe@example..com", NULL},
		{"joe@-example.com", NULL},
		{"joe@example.123", NULL},
		{"\"unterminated <joe@example.com>", NULL},
		{"(unterminated joe@example.com", NULL},
		{"joe@example.com)", NULL},
		{"joe@exa\x01mple.com", NULL},
		{"<<joe@example.com>>", NULL},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char dom[256] = "";
		const char *why = NULL;
		int rc = dmarc_from_domain(cases[i].value, dom, sizeof(dom), &why);
		if (cases[i].domain && (rc != 0 || strcmp(dom, cases[i].domain) != 0))
			fail_msg("%s: rc %d %s, want %s", cases[i].value, rc, rc ? why : dom, cases[i].domain);
		if (!cases[i].domain && rc != -EINVAL)
			fail_msg("%s: rc %d (%s), want -EINVAL", cases[i].value, rc, dom);
		if (rc < 0)
			assert_non_null(why);
	}
}

static void test_from_long_domain(void **state)
{
	(void)state;
	char value[600] = "a@", dom[256];
	const char *why;
	for (int i = 0; i < 60; i++)
		strcat(value, "abcd.");
	strcat(value, "com"); /* 303 octets: longer than a domain may be */
	assert_int_equal(dmarc_from_domain(value, dom, sizeof(dom), &why), -EINVAL);
	assert_int_equal(dmarc_from_domain("a@example.com", dom, 8, &why), -EINVAL); /* out too small */
}

/* ---- alignment, the organisational domain, pct ---- */

static void test_org_domain(void **state)
{
	(void)state;
	char org[256];
	assert_true(dmarc_org_domain("mail.example.co.uk", org, sizeof(org)));
	assert_string_equal(org, "example.co.uk");
	assert_true(dmarc_org_domain("A.B.Example.COM", org, sizeof(org)));
	assert_string_equal(org, "example.com");
	assert_true(dmarc_org_domain("x.example.test", org, sizeof(org))); /* the default rule "*" */
	assert_string_equal(org, "example.test");
	assert_false(dmarc_org_domain("co.uk", org, sizeof(org)));
	assert_false(dmarc_org_domain("com", org, sizeof(org)));
	assert_false(dmarc_org_domain(".example.com", org, sizeof(org)));
	assert_false(dmarc_org_domain("a..example.com", org, sizeof(org)));
	assert_false(dmarc_org_domain("", org, sizeof(org)));
	assert_false(dmarc_org_domain("mail.example.com", org, 5)); /* out too small */
}

static void test_aligned(void **state)
{
	(void)state;
	assert_true(dmarc_aligned("mail.example.co.uk", "example.co.uk", false, dmarc_org_domain));
	assert_true(dmarc_aligned("a.example.com", "b.example.com", false, dmarc_org_domain));
	assert_false(dmarc_aligned("a.example.com", "b.example.com", true, dmarc_org_domain));
	assert_false(dmarc_aligned("example.co.uk", "other.co.uk", false, dmarc_org_domain));
	assert_true(dmarc_aligned("Example.COM", "example.com", true, dmarc_org_domain));
	assert_true(dmarc_aligned("example.com.", "example.com", true, dmarc_org_domain));
	assert_true(dmarc_aligned("co.uk", "co.uk", false, dmarc_org_domain)); /* equal, though no org domain */
	assert_false(dmarc_aligned("x.co.uk", "y.co.uk", false, dmarc_org_domain));
	assert_false(dmarc_aligned(".example.com", "example.com", true, dmarc_org_domain));
	assert_false(dmarc_aligned("", "", true, dmarc_org_domain));
	assert_false(dmarc_aligned("example.com..", "example.com.", true, dmarc_org_domain));
}

static void test_pct(void **state)
{
	(void)state;
	for (unsigned d = 0; d < 100; d++) {
		assert_int_equal(dmarc_apply_pct(DMARC_P_REJECT, 100, d), DMARC_P_REJECT);
		assert_int_equal(dmarc_apply_pct(DMARC_P_REJECT, 0, d), DMARC_P_QUARANTINE);
		assert_int_equal(dmarc_apply_pct(DMARC_P_QUARANTINE, 0, d), DMARC_P_NONE);
		assert_int_equal(dmarc_apply_pct(DMARC_P_NONE, 0, d), DMARC_P_NONE);
	}
	assert_int_equal(dmarc_apply_pct(DMARC_P_REJECT, 50, 49), DMARC_P_REJECT);
	assert_int_equal(dmarc_apply_pct(DMARC_P_REJECT, 50, 50), DMARC_P_QUARANTINE);
}

static void test_result_str(void **state)
{
	(void)state;
	assert_string_equal(dmarc_result_str(DMARC_PASS), "pass");
	assert_string_equal(dmarc_result_str(DMARC_PERMERROR), "permerror");
	assert_string_equal(dmarc_result_str((enum dmarc_result)99), "unknown");
}

/* ---- dmarc_check_start against unbound ---- */

static struct unbound srv;
static bool in_start; /* set around dmarc_check_start: the callback must not see it */

static const char *const zone[] = {
	"_dmarc.example.test. TXT \"v=DMARC1; p=reject; sp=quarantine\"",
	"_dmarc.strict.test. TXT \"v=DMARC1; p=reject; aspf=s; adkim=s\"",
	"_dmarc.two.test. TXT \"v=DMARC1; p=reject\"",
	"_dmarc.two.test. TXT \"v=DMARC1; p=none\"",
	"_dmarc.x.mixed.test. TXT \"not dmarc\"",
	"_dmarc.mixed.test. TXT \"v=spf1 -all\"",
	"_dmarc.mixed.test. TXT \"v=DMARC1; p=quarantine\"",
	"_dmarc.pct0.test. TXT \"v=DMARC1; p=reject; pct=0\"",
	"_dmarc.bad.test. TXT \"v=DMARC1; p=maybe\"",
	"_dmarc.split.test. TXT \"v=DMARC1; \" \"p=reject\"",
	"_dmarc.own.sub.example.test. TXT \"v=DMARC1; p=none\"",
	"ready.test. A 192.0.2.1",
};

static void write_zone(FILE *fp)
{
	fprintf(fp, "  local-zone: \"test.\" static\n  local-zone: \"refused.test.\" refuse\n");
	for (size_t i = 0; i < ARRAY_LEN(zone); i++)
		fprintf(fp, "  local-data: '%s'\n", zone[i]);
}

static int group_setup(void **state)
{
	(void)state;
	return unbound_start(&srv, "dmarc", write_zone, "ready.test");
}

static int group_teardown(void **state)
{
	(void)state;
	return unbound_stop(&srv);
}

static int setup(void **state)
{
	return unbound_fixture_setup(state, &srv);
}

static int teardown(void **state)
{
	return unbound_fixture_teardown(state);
}

struct outcome {
	int calls;
	bool reentrant;
	struct dmarc_outcome o;
};

static void on_dmarc(void *arg, const struct dmarc_outcome *o)
{
	struct outcome *r = arg;
	r->calls++;
	r->reentrant |= in_start;
	r->o = *o;
}

/* One message: From: value, SPF result for mail_from, and DKIM passes for the d= in dkim_pass (NULL-ended). */
#define MSG(from_, mail_from_, spf_, ...) \
	(&(struct msg){.from = (from_), .mail_from = (mail_from_), .spf = (spf_), __VA_ARGS__})

struct msg {
	const char *from;
	const char *mail_from;
	enum spf_result spf;
	const char *dkim_pass[3];
	const char *dkim_fail;
};

static struct dmarc_check *start(struct fixture *f, const struct msg *m, struct outcome *r)
{
	const char *froms[] = {m->from};
	struct dkim_sig_result sigs[4];
	size_t nsigs = 0;
	memset(sigs, 0, sizeof(sigs));
	for (size_t i = 0; i < 3 && m->dkim_pass[i]; i++) {
		sigs[nsigs].result = DKIM_PASS;
		snprintf(sigs[nsigs++].domain, sizeof(sigs[0].domain), "%s", m->dkim_pass[i]);
	}
	if (m->dkim_fail) {
		sigs[nsigs].result = DKIM_FAIL;
		snprintf(sigs[nsigs++].domain, sizeof(sigs[0].domain), "%s", m->dkim_fail);
	}
	struct dmarc_input in = {
		.from_values = froms, .nfrom = m->from ? 1 : 0, .mail_from_domain = m->mail_from,
		.spf = m->spf, .dkim = sigs, .ndkim = nsigs,
	};
	memset(r, 0, sizeof(*r));
	in_start = true;
	struct dmarc_check *c = dmarc_check_start(f->d, &in, on_dmarc, r);
	in_start = false;
	assert_int_equal(r->calls, 0);
	return c;
}

/* Runs one check to its end and compares; returns its why. */
static const char *check(struct fixture *f, const struct msg *m, enum dmarc_result want, enum dmarc_policy pol,
			 const char *header_from)
{
	struct outcome r;
	start(f, m, &r);
	assert_true(run_until(f->base, &r.calls, 5000));
	event_base_loop(f->base, EVLOOP_NONBLOCK);
	assert_int_equal(r.calls, 1);
	assert_false(r.reentrant);
	if (r.o.result != want || (want == DMARC_FAIL && r.o.policy != pol))
		fail_msg("From: %s: %s policy %d (%s), want %s policy %d", m->from, dmarc_result_str(r.o.result),
			 r.o.policy, r.o.why, dmarc_result_str(want), pol);
	assert_non_null(r.o.why);
	assert_string_equal(r.o.header_from, header_from);
	return r.o.why;
}

static void test_check_pass_and_fail(void **state)
{
	struct fixture *f = *state;
	const enum dmarc_policy R = DMARC_P_REJECT;
	/* SPF aligned, relaxed: the bounce domain is a subdomain of the author's. */
	check(f, MSG("<a@example.test>", "bounce.example.test", SPF_PASS), DMARC_PASS, R, "example.test");
	/* SPF passed but not aligned, no DKIM: p=reject. */
	check(f, MSG("<a@example.test>", "esp.test", SPF_PASS), DMARC_FAIL, R, "example.test");
	/* Aligned but SPF did not pass. */
	check(f, MSG("<a@example.test>", "example.test", SPF_SOFTFAIL), DMARC_FAIL, R, "example.test");
	/* DKIM: a failing aligned signature does not count, a passing aligned one does. */
	check(f, MSG("<a@example.test>", "esp.test", SPF_PASS, .dkim_pass = {"esp.test"}, .dkim_fail = "example.test"), DMARC_FAIL, R,
	      "example.test");
	check(f, MSG("<a@example.test>", "esp.test", SPF_FAIL, .dkim_pass = {"esp.test", "mail.example.test"}),
	      DMARC_PASS, R, "example.test");
}

static void test_check_subdomain_policy(void **state)
{
	struct fixture *f = *state;
	/* No _dmarc.a.example.test: the organisational domain's record, and its sp=. */
	check(f, MSG("x@a.example.test", "esp.test", SPF_PASS), DMARC_FAIL, DMARC_P_QUARANTINE,
	      "a.example.test");
	check(f, MSG("x@a.example.test", "esp.test", SPF_PASS, .dkim_pass = {"example.test"}), DMARC_PASS,
	      DMARC_P_QUARANTINE, "a.example.test");
	/* A record of its own wins over the organisational domain's. */
	check(f, MSG("x@own.sub.example.test", "esp.test", SPF_PASS), DMARC_FAIL, DMARC_P_NONE,
	      "own.sub.example.test");
	/* Not a DMARC record at the author domain: on to the organisational domain. */
	check(f, MSG("x@x.mixed.test", "esp.test", SPF_PASS), DMARC_FAIL, DMARC_P_QUARANTINE,
	      "x.mixed.test");
	/* A record split into character-strings is joined. */
	check(f, MSG("x@split.test", NULL, SPF_NONE), DMARC_FAIL, DMARC_P_REJECT, "split.test");
}

static void test_check_strict(void **state)
{
	struct fixture *f = *state;
	check(f, MSG("x@strict.test", "mail.strict.test", SPF_PASS, .dkim_pass = {"mail.strict.test"}), DMARC_FAIL,
	      DMARC_P_REJECT, "strict.test");
	check(f, MSG("x@strict.test", "Strict.Test", SPF_PASS), DMARC_PASS, DMARC_P_REJECT, "strict.test");
	check(f, MSG("x@strict.test", "mail.strict.test", SPF_PASS, .dkim_pass = {"STRICT.test"}), DMARC_PASS,
	      DMARC_P_REJECT, "strict.test");
}

static void test_check_none_and_errors(void **state)
{
	struct fixture *f = *state;
	assert_string_equal(check(f, MSG("x@norecord.test", "norecord.test", SPF_PASS), DMARC_NONE, 0, "norecord.test"),
			    "no DMARC record");
	assert_string_equal(check(f, MSG("x@a.norecord.test", "norecord.test", SPF_PASS), DMARC_NONE, 0,
				  "a.norecord.test"),
			    "no DMARC record");
	assert_string_equal(check(f, MSG("x@two.test", "esp.test", SPF_PASS), DMARC_NONE, 0, "two.test"),
			    "more than one DMARC record");
	assert_string_equal(check(f, MSG("x@bad.test", "esp.test", SPF_PASS), DMARC_NONE, 0, "bad.test"), "bad p=");
	check(f, MSG("x@refused.test", "esp.test", SPF_PASS), DMARC_TEMPERROR, 0, "refused.test");
	check(f, MSG("x@a.refused.test", "esp.test", SPF_PASS), DMARC_TEMPERROR, 0, "a.refused.test");
	assert_string_equal(check(f, MSG("a@x.test, b@x.test", "x.test", SPF_PASS), DMARC_PERMERROR, 0, ""),
			    "more than one address in From:");
	assert_string_equal(check(f, MSG(NULL, "x.test", SPF_PASS), DMARC_PERMERROR, 0, ""), "no From: header");
}

static void test_check_two_from_headers(void **state)
{
	struct fixture *f = *state;
	const char *froms[] = {"a@example.test", "a@example.test"};
	struct dmarc_input in = {.from_values = froms, .nfrom = 2, .mail_from_domain = "example.test", .spf = SPF_PASS};
	struct outcome r = {0};
	dmarc_check_start(f->d, &in, on_dmarc, &r);
	assert_int_equal(r.calls, 0);
	assert_true(run_until(f->base, &r.calls, 1000));
	assert_int_equal(r.o.result, DMARC_PERMERROR);
	assert_true(r.o.bad_author);

	/* A From: value cut by the scanner: permerror, never the first author's verdict. */
	in.nfrom = 1;
	in.from_cut = true;
	r = (struct outcome){0};
	dmarc_check_start(f->d, &in, on_dmarc, &r);
	assert_true(run_until(f->base, &r.calls, 1000));
	assert_int_equal(r.o.result, DMARC_PERMERROR);
	assert_true(r.o.bad_author);
	assert_string_equal(r.o.why, "From: header too long");
}

static void test_check_pct(void **state)
{
	struct fixture *f = *state;
	/* pct=0: never sampled, so a reject policy comes out as quarantine (6.6.4). */
	for (int i = 0; i < 3; i++)
		check(f, MSG("x@pct0.test", "esp.test", SPF_PASS), DMARC_FAIL, DMARC_P_QUARANTINE, "pct0.test");
}

static void test_check_cancel(void **state)
{
	struct fixture *f = *state;
	struct outcome r;
	/* While its lookup is out (ASan sees a leak if the check is never freed). */
	dmarc_check_cancel(start(f, MSG("x@a.example.test", "esp.test", SPF_PASS), &r));
	/* Before its deferred permerror. */
	dmarc_check_cancel(start(f, MSG("bad", "esp.test", SPF_PASS), &r));
	int never = 0;
	run_until(f->base, &never, 300);
	assert_int_equal(r.calls, 0);
	dmarc_check_cancel(NULL);
}

static void test_check_dns_free(void **state)
{
	struct fixture *f = *state;
	struct outcome r;
	start(f, MSG("x@example.test", "esp.test", SPF_PASS), &r);
	dns_free(f->d);
	f->d = NULL;
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.o.result, DMARC_TEMPERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_table),
		cmocka_unit_test(test_txt_is_dmarc),
		cmocka_unit_test(test_from_table),
		cmocka_unit_test(test_from_long_domain),
		cmocka_unit_test(test_org_domain),
		cmocka_unit_test(test_aligned),
		cmocka_unit_test(test_pct),
		cmocka_unit_test(test_result_str),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_check_pass_and_fail),
		T(test_check_subdomain_policy),
		T(test_check_strict),
		T(test_check_none_and_errors),
		T(test_check_two_from_headers),
		T(test_check_pct),
		T(test_check_cancel),
		T(test_check_dns_free),
#undef T
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
