/*
 * test_policy_callout: the replies to RCPT once the primary was asked
 * (policy_callout_reply) and the sanitising of the primary's text
 * (policy_sanitise_reply): a table of {reply in, text out}, then every
 * verify result under each unknown_during_outage.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtpd/policy.h"

static void test_sanitise(void **state)
{
	(void)state;
	static const struct {
		const char *in, *out;
	} cases[] = {
		{"550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown",
		 "<bob@example.com>: Recipient address rejected: User unknown"},
		{"550 No such user", "No such user"},
		{"553-5.1.1 first line second line", "first line second line"},
		{"550", ""},
		{"550 5.1.1", ""},
		{"550 bad\x01\x7f\xc3\xa9 bytes  ", "bad bytes"},
		{"not a reply at all", "not a reply at all"},
		{"", ""},
	};
	char out[POLICY_PRIMARY_TEXT_MAX + 1];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		policy_sanitise_reply(cases[i].in, out, sizeof(out));
		assert_string_equal(out, cases[i].out);
	}
	char longer[1000];
	memset(longer, 'a', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	policy_sanitise_reply(longer, out, sizeof(out));
	assert_int_equal(strlen(out), POLICY_PRIMARY_TEXT_MAX);
	char tiny[4];
	policy_sanitise_reply("550 5.1.1 abcdef", tiny, sizeof(tiny));
	assert_string_equal(tiny, "abc");
}

static void test_replies(void **state)
{
	(void)state;
	struct policy_reply r;
	char buf[300];
	policy_callout_reply(VERIFY_ACCEPTED, "250 2.1.5 Ok", OUTAGE_TEMPFAIL, &r, buf, sizeof(buf));
	assert_int_equal(r.code, 250);
	policy_callout_reply(VERIFY_REFUSED, "550 5.1.1 nobody\r\nhere", OUTAGE_ACCEPT, &r, buf, sizeof(buf));
	assert_int_equal(r.code, 550);
	assert_string_equal(r.enh, "5.1.1");
	assert_string_equal(r.text, "Recipient address rejected by the primary: nobodyhere");
	policy_callout_reply(VERIFY_REFUSED, "554", OUTAGE_ACCEPT, &r, buf, sizeof(buf));
	assert_string_equal(r.text, "Recipient address rejected by the primary: User unknown");
	policy_callout_reply(VERIFY_TEMPFAIL, "450 4.2.1 busy", OUTAGE_ACCEPT, &r, buf, sizeof(buf));
	assert_int_equal(r.code, 451);
	assert_string_equal(r.enh, "4.3.0");
	policy_callout_reply(VERIFY_TIMEOUT, "", OUTAGE_ACCEPT, &r, buf, sizeof(buf));
	assert_int_equal(r.code, 451);
	assert_string_equal(r.enh, "4.4.3");
	static const struct {
		enum outage_mode m;
		int code;
		const char *enh;
	} outage[] = {{OUTAGE_TEMPFAIL, 451, "4.3.0"}, {OUTAGE_ACCEPT, 250, "2.1.5"}, {OUTAGE_REJECT, 550, "5.1.1"}};
	for (size_t i = 0; i < 3; i++) {
		policy_callout_reply(VERIFY_UNREACHABLE, "", outage[i].m, &r, buf, sizeof(buf));
		assert_int_equal(r.code, outage[i].code);
		assert_string_equal(r.enh, outage[i].enh);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sanitise),
		cmocka_unit_test(test_replies),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
