/*
 * Unit tests for delivery status notifications (src/dsn.c): the message
 * structure (headers, MIME boundaries, RFC 3464 fields), the line rules
 * (CRLF only, no line over 998 octets) including under a hostile
 * diagnostic, RET=FULL versus HDRS, ORCPT/ENVID decoding, and dsn_wanted's
 * NOTIFY table. When /usr/bin/python3 exists, its email package parses each
 * DSN back as an independent check of the MIME structure.
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

#include "delivery/dsn.h"
#include "smtpd/smtp_parse.h"

#define ORIGINAL "Received: from a by b\r\nFrom: <s@example.org>\r\nSubject: hello\r\n" \
		 "Message-ID: <m1@example.org>\r\n\r\nThe body line\r\n"

struct fixture {
	struct spool_env env;
	struct spool_rcpt r[2];
	struct dsn_rcpt d[2];
	struct dsn_input in;
	struct buf out;
};

static void setup(struct fixture *f, enum dsn_action action, uint8_t ret)
{
	memset(f, 0, sizeof(*f));
	f->env = (struct spool_env){.sender = "s@example.org", .ret = ret, .arrival = 773615765};
	f->r[0] = (struct spool_rcpt){.addr = "a@example.com", .orcpt = "rfc822;a@example.com"};
	f->r[1] = (struct spool_rcpt){.addr = "b@example.com"};
	f->d[0] = (struct dsn_rcpt){&f->r[0], "5.1.1", "mx1.example.com", "550 5.1.1 <a@example.com>: User unknown",
				    773615800};
	f->d[1] = (struct dsn_rcpt){&f->r[1], "4.4.1", NULL, NULL, 0};
	f->in = (struct dsn_input){
		.reporting_mta = "mx2.example.net", .queue_id = "0123456789abcdef", .env = &f->env,
		.action = action, .rcpts = f->d, .nrcpt = 2, .original = ORIGINAL,
		.original_len = strlen(ORIGINAL), .now = 1700000000, .will_retry_until = 1700432000,
		.boundary_seed = "0123456789abcdef.1700000000",
	};
}

static const char *build(struct fixture *f, size_t max_full)
{
	buf_reset(&f->out);
	dsn_build(&f->in, max_full, &f->out);
	return buf_cstr(&f->out);
}

/* CRLF only, no line over 998 octets, ends with CRLF. */
static void check_lines(const struct buf *b)
{
	size_t col = 0;
	for (size_t i = 0; i < b->len; i++) {
		char c = (char)b->data[i];
		if (c == '\r') {
			if (i + 1 >= b->len || b->data[i + 1] != '\n')
				fail_msg("bare CR at %zu", i);
			i++;
			col = 0;
		} else if (c == '\n') {
			fail_msg("bare LF at %zu", i);
		} else if (++col > 998) {
			fail_msg("line over 998 octets at %zu", i);
		}
	}
	assert_int_equal(col, 0);
}

/* The line "s" appears in m (at the start of a line, whole). */
static bool has_line(const char *m, const char *s)
{
	size_t n = strlen(s);
	for (const char *p = m; (p = strstr(p, s)) != NULL; p++)
		if ((p == m || p[-1] == '\n') && p[n] == '\r' && p[n + 1] == '\n')
			return true;
	return false;
}

static size_t count(const char *m, const char *s)
{
	size_t k = 0;
	for (const char *p = m; (p = strstr(p, s)) != NULL; p++)
		k++;
	return k;
}

static void get_boundary(const char *m, char *out, size_t outsz)
{
	const char *p = strstr(m, "boundary=\"");
	assert_non_null(p);
	p += 10;
	size_t n = strcspn(p, "\"");
	assert_true(n > 0 && n < outsz && n <= 70);
	memcpy(out, p, n);
	out[n] = '\0';
}

/* Three parts, closed once, at the end; nothing after the close. */
static void check_mime(const char *m, size_t nparts)
{
	char b[80], delim[100], close[100];
	get_boundary(m, b, sizeof(b));
	assert_int_equal(fmt(delim, sizeof(delim), "\r\n--%s\r\n", b), 0);
	assert_int_equal(fmt(close, sizeof(close), "\r\n--%s--\r\n", b), 0);
	assert_int_equal(count(m, delim), nparts);
	assert_int_equal(count(m, close), 1);
	assert_string_equal(strstr(m, close), close);
	const char *hdr_end = strstr(m, "\r\n\r\n");
	assert_true(hdr_end && hdr_end < strstr(m, delim));
}

/*
 * Parses the DSN with Python's email package: multipart/report with the
 * given third-part type, a delivery-status part of 1 + nrcpt groups, and
 * the Action of every recipient group. Skipped without /usr/bin/python3.
 */
static void check_python(const struct buf *b, const char *part3, const char *action, size_t nrcpt)
{
	char path[] = "/tmp/test_dsn_XXXXXX", cmd[1536];
	if (access("/usr/bin/python3", X_OK) != 0)
		return;
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b->data, b->len), (ssize_t)b->len);
	close(fd);
	assert_int_equal(fmt(cmd, sizeof(cmd),
			     "/usr/bin/python3 -c 'import email,sys\n"
			     "m=email.message_from_bytes(open(sys.argv[1],\"rb\").read())\n"
			     "assert m.get_content_type()==\"multipart/report\", m.get_content_type()\n"
			     "assert m.get_param(\"report-type\")==\"delivery-status\"\n"
			     "p=m.get_payload(); assert len(p)==3, len(p)\n"
			     "assert p[0].get_content_type()==\"text/plain\"\n"
			     "assert p[1].get_content_type()==\"message/delivery-status\"\n"
			     "g=p[1].get_payload(); assert len(g)==1+%zu, len(g)\n"
			     "assert g[0][\"Reporting-MTA\"]==\"dns; mx2.example.net\"\n"
			     "assert all(x[\"Action\"]==\"%s\" for x in g[1:])\n"
			     "assert p[2].get_content_type()==\"%s\", p[2].get_content_type()\n"
			     "assert not m.defects and not any(x.defects for x in m.walk()), m.defects\n"
			     "' %s",
			     nrcpt, action, part3, path),
			 0);
	int rc = system(cmd);
	unlink(path);
	assert_int_equal(rc, 0);
}

static void test_failed_headers_only(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, DSN_FAILED, SMTP_RET_HDRS);
	const char *m = build(&f, 1 << 20);

	check_lines(&f.out);
	check_mime(m, 3);
	const char *want[] = {
		"From: \"Mail Delivery System\" <MAILER-DAEMON@mx2.example.net>",
		"To: <s@example.org>",
		"Subject: Undelivered Mail Returned to Sender",
		"Date: Tue, 14 Nov 2023 22:13:20 +0000",
		"Message-ID: <0123456789abcdef_1700000000@mx2.example.net>",
		"Auto-Submitted: auto-replied",
		"MIME-Version: 1.0",
		"Content-Type: multipart/report; report-type=delivery-status;",
		"Content-Type: text/plain; charset=us-ascii",
		"Content-Type: message/delivery-status",
		"Content-Type: text/rfc822-headers",
		"Reporting-MTA: dns; mx2.example.net",
		"X-Mxvault-Queue-ID: 0123456789abcdef",
		"Arrival-Date: Thu, 7 Jul 1994 21:16:05 +0000",
		"Original-Recipient: rfc822;a@example.com",
		"Final-Recipient: rfc822; a@example.com",
		"Status: 5.1.1",
		"Remote-MTA: dns; mx1.example.com",
		"Diagnostic-Code: smtp; 550 5.1.1 <a@example.com>: User unknown",
		"Last-Attempt-Date: Thu, 7 Jul 1994 21:16:40 +0000",
		"Final-Recipient: rfc822; b@example.com",
		"Status: 4.4.1",
		"Subject: hello",
		"Message-ID: <m1@example.org>",
		"<a@example.com>",
		"    mx1.example.com said: 550 5.1.1 <a@example.com>: User unknown",
	};
	for (size_t i = 0; i < ARRAY_LEN(want); i++)
		if (!has_line(m, want[i]))
			fail_msg("missing line '%s' in:\n%s", want[i], m);
	assert_int_equal(count(m, "Action: failed\r\n"), 2);
	assert_int_equal(count(m, "Original-Recipient:"), 1);
	assert_int_equal(count(m, "Will-Retry-Until:"), 0);
	assert_int_equal(count(m, "Original-Envelope-Id:"), 0);
	assert_null(strstr(m, "The body line"));
	/* Per-recipient groups are separated by one empty line (RFC 3464 2.1). */
	assert_non_null(strstr(m, "Last-Attempt-Date: Thu, 7 Jul 1994 21:16:40 +0000\r\n\r\nFinal-Recipient: rfc822; b"));
	check_python(&f.out, "text/rfc822-headers", "failed", 2);
	buf_free(&f.out);
}

static void test_ret_full(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, DSN_FAILED, SMTP_RET_FULL);

	const char *m = build(&f, 1 << 20);
	check_lines(&f.out);
	check_mime(m, 3);
	assert_true(has_line(m, "Content-Type: message/rfc822"));
	assert_non_null(strstr(m, "\r\n\r\n" ORIGINAL "\r\n--"));
	check_python(&f.out, "message/rfc822", "failed", 2);

	m = build(&f, strlen(ORIGINAL) - 1); /* too big: headers only */
	assert_true(has_line(m, "Content-Type: text/rfc822-headers"));
	assert_null(strstr(m, "The body line"));

	const char *bare = "Subject: x\nX: y\n\nbody\n"; /* cannot travel unchanged */
	f.in.original = bare;
	f.in.original_len = strlen(bare);
	m = build(&f, 1 << 20);
	check_lines(&f.out);
	assert_non_null(strstr(m, "Content-Type: text/rfc822-headers\r\n\r\nSubject: x\r\nX: y\r\n\r\n--"));

	const char *eight = "Subject: caf\xc3\xa9\r\n\r\nna\xc3\xafve\r\n";
	f.in.original = eight;
	f.in.original_len = strlen(eight);
	m = build(&f, 1 << 20); /* no BODY=8BITMIME: headers, made ASCII */
	assert_true(has_line(m, "Subject: caf??"));
	assert_int_equal(count(m, "Content-Transfer-Encoding"), 0);
	f.env.body = SMTP_BODY_8BITMIME;
	m = build(&f, 1 << 20);
	assert_true(has_line(m, "Content-Type: message/rfc822"));
	assert_int_equal(count(m, "Content-Transfer-Encoding: 8bit\r\n"), 2); /* the part and the message */
	assert_non_null(strstr(m, eight));
	buf_free(&f.out);
}

static void test_delayed(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, DSN_DELAYED, SMTP_RET_UNSPEC);
	f.env.envid = "QQ314159+2Bx";
	const char *m = build(&f, 1 << 20);

	check_lines(&f.out);
	check_mime(m, 3);
	assert_true(has_line(m, "Subject: Delayed Mail (still being retried)"));
	assert_true(has_line(m, "Original-Envelope-Id: QQ314159+x"));
	assert_int_equal(count(m, "Action: delayed\r\n"), 2);
	assert_int_equal(count(m, "Will-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000\r\n"), 2);
	assert_non_null(strstr(m, "Delivery will be tried until Sun, 19 Nov 2023 22:13:20 +0000."));
	assert_true(has_line(m, "Status: 4.4.1"));
	check_python(&f.out, "text/rfc822-headers", "delayed", 2);
	buf_free(&f.out);
}

static void test_hostile_diagnostic(void **state)
{
	(void)state;
	struct fixture f;
	struct buf diag = {0}, host = {0};
	char b[80];

	setup(&f, DSN_FAILED, SMTP_RET_HDRS);
	buf_append_str(&diag, "550 no\r\nX-Injected: yes\r\n\r\n--=_mxv_0123456789abcdef_1700000000--\r\n");
	for (int i = 0; i < 300; i++)
		buf_append_str(&diag, "word ");
	for (int i = 0; i < 5000; i++)
		buf_append_str(&diag, "x");
	buf_append_str(&host, "mx.evil\r\nBcc: victim@example.com");
	f.d[0].diagnostic = buf_cstr(&diag);
	f.d[0].remote_mta = buf_cstr(&host);
	f.d[0].status = "5.1.1\r\nX-Evil: 1";
	f.r[0].orcpt = "rfc822;a+0D+0AX-Orcpt:+20evil@x";
	f.r[1].addr = "b@example.com\r\nX-Addr: evil";
	const char *m = build(&f, 1 << 20);

	check_lines(&f.out);
	check_mime(m, 3);
	get_boundary(m, b, sizeof(b));
	assert_string_not_equal(b, "=_mxv_0123456789abcdef_1700000000");
	for (const char *bad = m; (bad = strstr(bad, "\r\nX-")) != NULL; bad++)
		assert_true(strncmp(bad, "\r\nX-Mxvault-Queue-ID:", 21) == 0);
	assert_null(strstr(m, "\nBcc:"));
	assert_true(has_line(m, "Status: 5.0.0")); /* a malformed status is replaced */
	assert_true(has_line(m, "Original-Recipient: rfc822;a  X-Orcpt: evil@x"));
	assert_non_null(strstr(m, "\r\nDiagnostic-Code: smtp; 550 no X-Injected: yes\r\n --=_mxv_"));
	assert_non_null(strstr(m, "xxx\r\n [...]\r\n")); /* cut at DSN_DIAG_MAX */
	check_python(&f.out, "text/rfc822-headers", "failed", 2);
	buf_free(&diag);
	buf_free(&host);
	buf_free(&f.out);
}

static void test_boundary_collision(void **state)
{
	(void)state;
	struct fixture f;
	char b[80];
	const char *orig = "Subject: x\r\n\r\n--=_mxv_0123456789abcdef_1700000000\r\n";

	setup(&f, DSN_FAILED, SMTP_RET_FULL);
	f.in.original = orig;
	f.in.original_len = strlen(orig);
	const char *m = build(&f, 1 << 20);
	get_boundary(m, b, sizeof(b));
	assert_string_not_equal(b, "=_mxv_0123456789abcdef_1700000000");
	check_mime(m, 3);
	check_python(&f.out, "message/rfc822", "failed", 2);

	f.in.original = NULL; /* nothing to return: two parts */
	f.in.original_len = 0;
	m = build(&f, 1 << 20);
	check_lines(&f.out);
	check_mime(m, 2);
	buf_free(&f.out);
}

static void test_smtputf8(void **state)
{
	(void)state;
	struct fixture f;
	setup(&f, DSN_FAILED, SMTP_RET_HDRS);
	f.env.smtputf8 = true;
	f.r[1].addr = "j\xc3\xb6rg@example.com";
	const char *m = build(&f, 1 << 20);

	check_lines(&f.out);
	check_mime(m, 3);
	assert_true(has_line(m, "Content-Type: message/global-delivery-status"));
	assert_true(has_line(m, "Content-Type: message/global-headers"));
	assert_true(has_line(m, "Final-Recipient: utf-8; j\xc3\xb6rg@example.com"));
	assert_true(has_line(m, "Final-Recipient: rfc822; a@example.com"));
	assert_non_null(strstr(m, "report-type=global-delivery-status"));
	buf_free(&f.out);
}

static void test_wanted(void **state)
{
	(void)state;
	struct spool_env env = {.sender = "s@example.org"};
	struct spool_rcpt r = {0};
	const struct {
		unsigned notify;
		bool failed, delayed;
	} cases[] = {
		{0, true, true},
		{SMTP_NOTIFY_NEVER, false, false},
		{SMTP_NOTIFY_SUCCESS, false, false},
		{SMTP_NOTIFY_FAILURE, true, false},
		{SMTP_NOTIFY_DELAY, false, true},
		{SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, true, true},
		{SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE, true, false},
		{SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY, false, true},
		{SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE | SMTP_NOTIFY_DELAY, true, true},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		r.notify = (uint8_t)cases[i].notify;
		env.sender = "s@example.org";
		env.flags = 0;
		if (dsn_wanted(&env, &r, DSN_FAILED) != cases[i].failed ||
		    dsn_wanted(&env, &r, DSN_DELAYED) != cases[i].delayed)
			fail_msg("notify %#x: wrong answer", cases[i].notify);
		env.sender = "";
		assert_false(dsn_wanted(&env, &r, DSN_FAILED) || dsn_wanted(&env, &r, DSN_DELAYED));
		env.sender = "s@example.org";
		env.flags = SPOOL_ENV_IS_DSN;
		assert_false(dsn_wanted(&env, &r, DSN_FAILED) || dsn_wanted(&env, &r, DSN_DELAYED));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_failed_headers_only),
		cmocka_unit_test(test_ret_full),
		cmocka_unit_test(test_delayed),
		cmocka_unit_test(test_hostile_diagnostic),
		cmocka_unit_test(test_boundary_collision),
		cmocka_unit_test(test_smtputf8),
		cmocka_unit_test(test_wanted),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
