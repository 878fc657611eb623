/*
 * Unit tests for the SMTP client's reply parser (smtp_reply.c): a table of
 * replies, line by line, with the result each line must give, the code and
 * text kept, and the EHLO extensions found; then the limits (line length,
 * lines per reply, text kept) and the verdict table for every command.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "delivery/smtp_reply.h"

#define MAX_LINES 6

struct reply_case {
	const char *name;
	bool ehlo;
	const char *lines[MAX_LINES]; /* fed in order until NULL */
	int last_rc;                  /* what the last line fed returns */
	int code;                     /* when last_rc is SMTP_REPLY_DONE */
	const char *text;
};

static const struct reply_case cases[] = {
	{"single", false, {"250 2.0.0 Ok"}, SMTP_REPLY_DONE, 250, "250 2.0.0 Ok"},
	{"code only", false, {"220"}, SMTP_REPLY_DONE, 220, "220"},
	{"multi-line joined", false, {"250-first", "250-second", "250 third"}, SMTP_REPLY_DONE, 250,
	 "250 first second third"},
	{"empty continuation", false, {"250-", "250 end"}, SMTP_REPLY_DONE, 250, "250 end"},
	{"controls dropped", false, {"550 bad\x01\x7fuser\ttab"}, SMTP_REPLY_DONE, 550, "550 badusertab"},
	{"continuation pending", false, {"250-more to come"}, SMTP_REPLY_MORE, 0, NULL},
	{"lowest code", false, {"200 x"}, SMTP_REPLY_DONE, 200, "200 x"},
	{"highest code", false, {"559 x"}, SMTP_REPLY_DONE, 559, "559 x"},
	{"first digit 1", false, {"199 x"}, -EBADMSG, 0, NULL},
	{"first digit 6", false, {"600 x"}, -EBADMSG, 0, NULL},
	{"second digit 6", false, {"260 x"}, -EBADMSG, 0, NULL},
	{"second digit 9", false, {"599 x"}, -EBADMSG, 0, NULL},
	{"not digits", false, {"2x0 x"}, -EBADMSG, 0, NULL},
	{"too short", false, {"25"}, -EBADMSG, 0, NULL},
	{"empty", false, {""}, -EBADMSG, 0, NULL},
	{"no separator", false, {"250ok"}, -EBADMSG, 0, NULL},
	{"tab separator", false, {"250\tok"}, -EBADMSG, 0, NULL},
	{"codes differ", false, {"250-a", "251 b"}, -EBADMSG, 0, NULL},
	{"leading space", false, {" 250 x"}, -EBADMSG, 0, NULL},
};

static int feed_str(struct smtp_reply *r, const char *s)
{
	return smtp_reply_feed(r, s, strlen(s));
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct reply_case *c = &cases[i];
		struct smtp_reply r;
		smtp_reply_init(&r, c->ehlo);
		int rc = SMTP_REPLY_MORE;
		for (size_t k = 0; k < MAX_LINES && c->lines[k]; k++) {
			assert_int_equal(rc, SMTP_REPLY_MORE);
			rc = feed_str(&r, c->lines[k]);
		}
		if (rc != c->last_rc)
			fail_msg("case \"%s\": rc %d, want %d", c->name, rc, c->last_rc);
		if (rc == SMTP_REPLY_DONE) {
			assert_int_equal(r.code, c->code);
			if (strcmp(r.text, c->text) != 0)
				fail_msg("case \"%s\": text \"%s\", want \"%s\"", c->name, r.text, c->text);
		}
	}
}

static void test_nul_inside_line(void **state)
{
	(void)state;
	struct smtp_reply r;
	smtp_reply_init(&r, false);
	assert_int_equal(smtp_reply_feed(&r, "451 a\0b", 7), SMTP_REPLY_DONE);
	assert_string_equal(r.text, "451 ab");
	smtp_reply_init(&r, false);
	assert_int_equal(smtp_reply_feed(&r, "25\0 x", 5), -EBADMSG);
}

static void test_ehlo_caps(void **state)
{
	(void)state;
	static const char *lines[] = {
		"250-mx.test Hello", "250-PIPELINING", "250-size 10240000", "250-8BITMIME", "250-SMTPUTF8",
		"250-DSN", "250-STARTTLS", "250-ENHANCEDSTATUSCODES", "250 CHUNKING",
	};
	struct smtp_reply r;
	smtp_reply_init(&r, true);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		assert_int_equal(feed_str(&r, lines[i]), i + 1 < sizeof(lines) / sizeof(lines[0]) ? SMTP_REPLY_MORE
												   : SMTP_REPLY_DONE);
	assert_true(r.caps.pipelining && r.caps.size && r.caps.eightbit && r.caps.smtputf8 && r.caps.dsn &&
		    r.caps.starttls);
	assert_int_equal(r.caps.size_max, 10240000);
}

static void test_ehlo_caps_strict(void **state)
{
	(void)state;
	struct smtp_reply r;
	/* The first line is the server's name, never an extension; keywords match whole. */
	smtp_reply_init(&r, true);
	assert_int_equal(feed_str(&r, "250-STARTTLS"), SMTP_REPLY_MORE);
	assert_int_equal(feed_str(&r, "250-PIPELININGX"), SMTP_REPLY_MORE);
	assert_int_equal(feed_str(&r, "250-SIZE 12x"), SMTP_REPLY_MORE);
	assert_int_equal(feed_str(&r, "250 SIZE 99999999999999999999"), SMTP_REPLY_DONE);
	assert_false(r.caps.starttls);
	assert_false(r.caps.pipelining);
	assert_true(r.caps.size);
	assert_int_equal(r.caps.size_max, 0); /* unusable: no limit known */
	/* Not an EHLO reply: no extensions. */
	smtp_reply_init(&r, false);
	assert_int_equal(feed_str(&r, "250-x"), SMTP_REPLY_MORE);
	assert_int_equal(feed_str(&r, "250 STARTTLS"), SMTP_REPLY_DONE);
	assert_false(r.caps.starttls);
}

static void test_line_limit(void **state)
{
	(void)state;
	char line[SMTP_REPLY_LINE_MAX + 2];
	memset(line, 'a', sizeof(line));
	memcpy(line, "250 ", 4);
	struct smtp_reply r;
	smtp_reply_init(&r, false);
	assert_int_equal(smtp_reply_feed(&r, line, SMTP_REPLY_LINE_MAX), SMTP_REPLY_DONE);
	assert_int_equal(strlen(r.text), SMTP_REPLY_TEXT_MAX);
	smtp_reply_init(&r, false);
	assert_int_equal(smtp_reply_feed(&r, line, SMTP_REPLY_LINE_MAX + 1), -EMSGSIZE);
}

static void test_lines_limit(void **state)
{
	(void)state;
	struct smtp_reply r;
	smtp_reply_init(&r, true);
	for (int i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		assert_int_equal(feed_str(&r, "250-x"), SMTP_REPLY_MORE);
	assert_int_equal(feed_str(&r, "250-x"), -E2BIG);
	assert_int_equal(feed_str(&r, "250 x"), -E2BIG); /* even the last line: the reply is over the cap */
	assert_true(r.len <= SMTP_REPLY_TEXT_MAX);
	/* A reply of exactly the cap is fine. */
	smtp_reply_init(&r, false);
	for (int i = 0; i < SMTP_REPLY_LINES_MAX - 1; i++)
		assert_int_equal(feed_str(&r, "250-x"), SMTP_REPLY_MORE);
	assert_int_equal(feed_str(&r, "250 x"), SMTP_REPLY_DONE);
}

static void test_code_valid(void **state)
{
	(void)state;
	int valid = 0;
	for (int code = 0; code < 1000; code++)
		valid += smtp_reply_code_valid(code);
	assert_int_equal(valid, 4 * 6 * 10); /* 2-5, 0-5, 0-9 */
	assert_true(smtp_reply_code_valid(354));
	assert_false(smtp_reply_code_valid(299));
	assert_false(smtp_reply_code_valid(199));
	assert_false(smtp_reply_code_valid(560));
}

struct verdict_case {
	enum smtp_cmd cmd;
	int code;
	enum smtp_verdict want;
};

static void test_verdicts(void **state)
{
	(void)state;
	static const struct verdict_case vc[] = {
		{SMTP_CMD_GREETING, 220, SMTP_VERDICT_OK},     {SMTP_CMD_GREETING, 250, SMTP_VERDICT_PROTOCOL},
		{SMTP_CMD_GREETING, 421, SMTP_VERDICT_TEMPFAIL}, {SMTP_CMD_GREETING, 554, SMTP_VERDICT_PERMFAIL},
		{SMTP_CMD_EHLO, 250, SMTP_VERDICT_OK},         {SMTP_CMD_EHLO, 299, SMTP_VERDICT_PROTOCOL},
		{SMTP_CMD_EHLO, 220, SMTP_VERDICT_PROTOCOL},   {SMTP_CMD_EHLO, 502, SMTP_VERDICT_PERMFAIL},
		{SMTP_CMD_HELO, 250, SMTP_VERDICT_OK},         {SMTP_CMD_STARTTLS, 220, SMTP_VERDICT_OK},
		{SMTP_CMD_STARTTLS, 250, SMTP_VERDICT_PROTOCOL}, {SMTP_CMD_STARTTLS, 454, SMTP_VERDICT_TEMPFAIL},
		{SMTP_CMD_MAIL, 250, SMTP_VERDICT_OK},         {SMTP_CMD_MAIL, 251, SMTP_VERDICT_PROTOCOL},
		{SMTP_CMD_RCPT, 250, SMTP_VERDICT_OK},         {SMTP_CMD_RCPT, 251, SMTP_VERDICT_OK},
		{SMTP_CMD_RCPT, 252, SMTP_VERDICT_PROTOCOL},   {SMTP_CMD_RCPT, 550, SMTP_VERDICT_PERMFAIL},
		{SMTP_CMD_RCPT, 599, SMTP_VERDICT_PROTOCOL},   {SMTP_CMD_RCPT, 450, SMTP_VERDICT_TEMPFAIL},
		{SMTP_CMD_DATA, 354, SMTP_VERDICT_OK},         {SMTP_CMD_DATA, 250, SMTP_VERDICT_PROTOCOL},
		{SMTP_CMD_DATA, 334, SMTP_VERDICT_PROTOCOL},   {SMTP_CMD_DATA, 554, SMTP_VERDICT_PERMFAIL},
		{SMTP_CMD_DATA, 451, SMTP_VERDICT_TEMPFAIL},   {SMTP_CMD_DOT, 250, SMTP_VERDICT_OK},
		{SMTP_CMD_DOT, 354, SMTP_VERDICT_PROTOCOL},    {SMTP_CMD_DOT, 252, SMTP_VERDICT_PROTOCOL},
		{SMTP_CMD_DOT, 552, SMTP_VERDICT_PERMFAIL},    {SMTP_CMD_RSET, 250, SMTP_VERDICT_OK},
		{SMTP_CMD_QUIT, 221, SMTP_VERDICT_OK},         {SMTP_CMD_QUIT, 250, SMTP_VERDICT_PROTOCOL},
		{SMTP_CMD_MAIL, 0, SMTP_VERDICT_PROTOCOL},     {SMTP_CMD_MAIL, 1000, SMTP_VERDICT_PROTOCOL},
	};
	for (size_t i = 0; i < sizeof(vc) / sizeof(vc[0]); i++)
		if (smtp_reply_verdict(vc[i].cmd, vc[i].code) != vc[i].want)
			fail_msg("%s %d: verdict %d, want %d", smtp_cmd_name(vc[i].cmd), vc[i].code,
				 smtp_reply_verdict(vc[i].cmd, vc[i].code), vc[i].want);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_nul_inside_line),
		cmocka_unit_test(test_ehlo_caps),
		cmocka_unit_test(test_ehlo_caps_strict),
		cmocka_unit_test(test_line_limit),
		cmocka_unit_test(test_lines_limit),
		cmocka_unit_test(test_code_valid),
		cmocka_unit_test(test_verdicts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
