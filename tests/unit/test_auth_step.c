/*
 * Unit tests for src/smtpd/auth_step.c: the replies SPF and DMARC verdicts
 * give under each per-domain mode (a table), the header a session stores
 * ("none" when no method ran), and what a new transaction forgets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "smtpd/auth_step.h"

static const struct {
	enum spf_mode mode;
	bool ran;
	enum spf_result res;
	int code; /* 0: accepted */
	const char *enh;
} spf_cases[] = {
	{SPF_MODE_REJECT, true, SPF_FAIL, 550, "5.7.23"},
	{SPF_MODE_REJECT, true, SPF_TEMPERROR, 451, "4.7.24"},
	{SPF_MODE_REJECT, true, SPF_PERMERROR, 0, NULL}, /* issue 8: permerror is tagged only */
	{SPF_MODE_REJECT, true, SPF_SOFTFAIL, 0, NULL},
	{SPF_MODE_REJECT, true, SPF_PASS, 0, NULL},
	{SPF_MODE_REJECT, true, SPF_NONE, 0, NULL},
	{SPF_MODE_REJECT, false, SPF_FAIL, 0, NULL}, /* no result (yet): nothing to refuse */
	{SPF_MODE_TAG, true, SPF_FAIL, 0, NULL},
	{SPF_MODE_TAG, true, SPF_TEMPERROR, 0, NULL},
	{SPF_MODE_OFF, true, SPF_FAIL, 0, NULL},
};

static void test_spf_refusals(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(spf_cases) / sizeof(spf_cases[0]); i++) {
		struct cfg_domain d = {.name = "example.com", .spf = spf_cases[i].mode};
		struct auth_results r = {0};
		if (spf_cases[i].ran)
			auth_results_set_spf(&r, spf_cases[i].res, NULL);
		char buf[512];
		struct auth_reply out = {0};
		bool refused = auth_rcpt_refusal(&d, &r, buf, sizeof(buf), &out);
		if (refused != (spf_cases[i].code != 0) || (refused && (out.code != spf_cases[i].code ||
								       strcmp(out.enh, spf_cases[i].enh) != 0)))
			fail_msg("case %zu: refused %d code %d", i, refused, out.code);
	}
	/* Not a domain of ours (NULL): never refused here. */
	struct auth_results r = {0};
	auth_results_set_spf(&r, SPF_FAIL, NULL);
	char buf[512];
	struct auth_reply out;
	assert_false(auth_rcpt_refusal(NULL, &r, buf, sizeof(buf), &out));
}

/* The domain's explanation goes into the reply, on one line, printable ASCII only. */
static void test_spf_explanation(void **state)
{
	(void)state;
	struct cfg_domain d = {.name = "example.com", .spf = SPF_MODE_REJECT};
	struct auth_results r = {0};
	auth_results_set_spf(&r, SPF_FAIL, "Not\r\n250 ok\tsee http://x.example/why \xc3\xa9");
	char buf[512];
	struct auth_reply out;
	assert_true(auth_rcpt_refusal(&d, &r, buf, sizeof(buf), &out));
	assert_string_equal(out.text, "SPF validation failed: Not250 oksee http://x.example/why ");
	auth_results_set_spf(&r, SPF_FAIL, NULL);
	assert_true(auth_rcpt_refusal(&d, &r, buf, sizeof(buf), &out));
	assert_string_equal(out.text, "SPF validation failed");
}

static void test_dmarc_refusals(void **state)
{
	(void)state;
	struct auth_results r = {0};
	struct auth_reply out;
	assert_false(auth_dmarc_refusal(true, &r, &out)); /* no result */
	struct dmarc_outcome o = {.result = DMARC_FAIL, .policy = DMARC_P_REJECT, .header_from = "example.org"};
	auth_results_set_dmarc(&r, &o);
	assert_true(auth_dmarc_refusal(true, &r, &out));
	assert_int_equal(out.code, 550);
	assert_string_equal(out.enh, "5.7.1");
	assert_false(auth_dmarc_refusal(false, &r, &out)); /* tag */
	o.policy = DMARC_P_QUARANTINE;
	auth_results_set_dmarc(&r, &o);
	assert_false(auth_dmarc_refusal(true, &r, &out)); /* accepted and tagged */
	o = (struct dmarc_outcome){.result = DMARC_TEMPERROR};
	auth_results_set_dmarc(&r, &o);
	assert_true(auth_dmarc_refusal(true, &r, &out));
	assert_int_equal(out.code, 451);
	assert_string_equal(out.enh, "4.7.1");
	o = (struct dmarc_outcome){.result = DMARC_PERMERROR, .policy = DMARC_P_REJECT};
	auth_results_set_dmarc(&r, &o);
	assert_false(auth_dmarc_refusal(true, &r, &out)); /* the domain's broken record: tagged */
	/* Regression: a From: the parser cannot name an author in bypassed enforce (RFC 7489 6.6.1). */
	o = (struct dmarc_outcome){.result = DMARC_PERMERROR, .bad_author = true};
	auth_results_set_dmarc(&r, &o);
	assert_true(auth_dmarc_refusal(true, &r, &out));
	assert_int_equal(out.code, 550);
	assert_string_equal(out.enh, "5.7.1");
	assert_false(auth_dmarc_refusal(false, &r, &out)); /* tag */
}

static void test_dmarc_enforced(void **state)
{
	(void)state;
	struct cfg *c = NULL;
	char path[] = "/tmp/test_auth_step.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	FILE *f = fdopen(fd, "w");
	fputs("[server]\nhostname = mx.example.net\nspool = /tmp\n"
	      "[domain a.example]\nrecipients = *\ndmarc = enforce\n"
	      "[domain b.example]\nrecipients = *\n"
	      "[domain c.example]\nrecipients = *\ndmarc = off\n", f);
	fclose(f);
	assert_int_equal(cfg_load_flags(path, stderr, CFG_LOAD_NO_SYSTEM, &c), 0);
	unlink(path);
	struct spool_rcpt rs[3] = {{.addr = "x@c.example"}, {.addr = "y@B.example"}, {.addr = "z@a.example"}};
	assert_false(auth_dmarc_wanted(c, rs, 1));
	assert_true(auth_dmarc_wanted(c, rs, 2));
	assert_false(auth_dmarc_enforced(c, rs, 2));
	assert_true(auth_dmarc_enforced(c, rs, 3));
	cfg_unref(c);
}

static void test_header(void **state)
{
	(void)state;
	struct auth_results r = {0};
	char *h = auth_header(&r, "mx2.example.net", "a@b.example", "client.example", "192.0.2.1");
	assert_string_equal(h, "Authentication-Results: mx2.example.net; none\r\n");
	free(h);

	auth_results_set_iprev(&r, IPREV_PASS, "mail.b.example");
	auth_results_set_spf(&r, SPF_PASS, NULL);
	struct dkim_sig_result sig = {.result = DKIM_PASS, .domain = "b.example", .selector = "s", .b_prefix = "abcd"};
	auth_results_set_dkim(&r, &sig, 1);
	struct dmarc_outcome o = {.result = DMARC_PASS, .header_from = "b.example", .why = "aligned"};
	auth_results_set_dmarc(&r, &o);
	h = auth_header(&r, "mx2.example.net", "a@b.example", "client.example", "192.0.2.1");
	assert_string_equal(h, "Authentication-Results: mx2.example.net; spf=pass smtp.mailfrom=a@b.example;\r\n"
			       "\tdkim=pass header.d=b.example header.s=s header.b=abcd; dmarc=pass\r\n"
			       "\theader.from=b.example; iprev=pass policy.iprev=192.0.2.1 (mail.b.example)\r\n");
	free(h);

	/* A new transaction forgets SPF, DKIM and DMARC; iprev belongs to the session. */
	auth_results_reset(&r);
	h = auth_header(&r, "mx2.example.net", "", "client.example", "192.0.2.1");
	assert_string_equal(h, "Authentication-Results: mx2.example.net; iprev=pass policy.iprev=192.0.2.1\r\n"
			       "\t(mail.b.example)\r\n");
	free(h);

	/* Null sender: SPF's identity is the HELO name, and its verdict the HELO check's. */
	r.null_sender = true;
	auth_results_set_helo(&r, SPF_NEUTRAL, NULL);
	r.iprev_ran = false;
	h = auth_header(&r, "mx2.example.net", "", "client.example", "192.0.2.1");
	assert_string_equal(h, "Authentication-Results: mx2.example.net; spf=neutral smtp.helo=client.example\r\n");
	free(h);

	/* A sender: both identities, MAIL FROM first; the HELO verdict outlives the transaction. */
	auth_results_reset(&r);
	r.null_sender = false;
	auth_results_set_spf(&r, SPF_PASS, NULL);
	h = auth_header(&r, "mx2.example.net", "a@b.example", "client.example", "192.0.2.1");
	assert_string_equal(h, "Authentication-Results: mx2.example.net; spf=pass smtp.mailfrom=a@b.example;\r\n"
			       "\tspf=neutral smtp.helo=client.example\r\n");
	free(h);
	auth_results_forget_helo(&r);
	h = auth_header(&r, "mx2.example.net", "a@b.example", "client.example", "192.0.2.1");
	assert_string_equal(h, "Authentication-Results: mx2.example.net; spf=pass smtp.mailfrom=a@b.example\r\n");
	free(h);
}

/*
 * The HELO identity (RFC 7208 2.3): its fail refuses under spf = reject
 * whatever MAIL FROM says; its temperror only for <> (then it is the MAIL
 * FROM identity, 2.4); and DMARC aligns with it only for <>.
 */
static void test_helo_identity(void **state)
{
	(void)state;
	struct cfg_domain d = {.name = "example.com", .spf = SPF_MODE_REJECT};
	char buf[512];
	struct auth_reply out;
	struct auth_results r = {0};
	auth_results_set_helo(&r, SPF_FAIL, "helo not allowed");
	assert_true(auth_rcpt_refusal(&d, &r, buf, sizeof(buf), &out));
	assert_int_equal(out.code, 550);
	assert_string_equal(out.enh, "5.7.23");
	assert_string_equal(out.text, "SPF validation failed: helo not allowed");
	auth_results_set_spf(&r, SPF_PASS, NULL);
	assert_true(auth_rcpt_refusal(&d, &r, buf, sizeof(buf), &out)); /* a HELO fail is conclusive */
	d.spf = SPF_MODE_TAG;
	assert_false(auth_rcpt_refusal(&d, &r, buf, sizeof(buf), &out));
	d.spf = SPF_MODE_REJECT;

	memset(&r, 0, sizeof(r));
	auth_results_set_helo(&r, SPF_TEMPERROR, NULL);
	assert_false(auth_rcpt_refusal(&d, &r, buf, sizeof(buf), &out)); /* the MAIL FROM identity decides */
	r.null_sender = true;
	assert_true(auth_rcpt_refusal(&d, &r, buf, sizeof(buf), &out));
	assert_int_equal(out.code, 451);
	assert_string_equal(out.enh, "4.7.24");

	bool ran;
	memset(&r, 0, sizeof(r));
	auth_results_set_helo(&r, SPF_PASS, NULL);
	assert_int_equal(auth_mailfrom_spf(&r, &ran), SPF_NONE);
	assert_false(ran);
	auth_results_set_spf(&r, SPF_SOFTFAIL, NULL);
	assert_int_equal(auth_mailfrom_spf(&r, &ran), SPF_SOFTFAIL);
	assert_true(ran);
	r.null_sender = true;
	assert_int_equal(auth_mailfrom_spf(&r, &ran), SPF_PASS);
	assert_true(ran);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spf_refusals),
		cmocka_unit_test(test_spf_explanation),
		cmocka_unit_test(test_dmarc_refusals),
		cmocka_unit_test(test_dmarc_enforced),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_helo_identity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
