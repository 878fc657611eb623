/*
 * Unit tests for the forged Authentication-Results filter
 * (src/smtpd/hdr_strip.c): a table of messages with what must come out and
 * how many fields are removed, each fed whole, one byte at a time and split
 * in two at every offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "smtpd/hdr_strip.h"

#define ID "mx2.example.net"
#define OURS "Authentication-Results: mx2.example.net; spf=pass smtp.mailfrom=a@b.example\r\n"
#define THEIRS "Authentication-Results: mx.other.example; spf=fail\r\n"

struct strip_case {
	const char *name;
	const char *in;
	const char *out;
	uint32_t removed;
};

static const struct strip_case cases[] = {
	{"nothing to do", "From: a\r\nSubject: x\r\n\r\nbody\r\n", "From: a\r\nSubject: x\r\n\r\nbody\r\n", 0},
	{"ours removed, theirs kept", "From: a\r\n" OURS THEIRS "Subject: x\r\n\r\nbody\r\n",
	 "From: a\r\n" THEIRS "Subject: x\r\n\r\nbody\r\n", 1},
	{"first and last field", OURS "From: a\r\n" OURS "\r\nbody\r\n", "From: a\r\n\r\nbody\r\n", 2},
	{"folded, with continuation lines",
	 "From: a\r\nAuthentication-Results:\r\n\t(comment)\r\n mx2.example.net;\r\n\tspf=pass\r\nSubject: x\r\n\r\nb\r\n",
	 "From: a\r\nSubject: x\r\n\r\nb\r\n", 1},
	{"theirs folded kept whole",
	 "Authentication-Results: other.example;\r\n\tdkim=pass\r\nTo: b\r\n\r\n",
	 "Authentication-Results: other.example;\r\n\tdkim=pass\r\nTo: b\r\n\r\n", 0},
	{"case and WSP before the colon", "authentication-RESULTS : MX2.Example.Net; none\r\nX: y\r\n\r\n",
	 "X: y\r\n\r\n", 1},
	{"quoted id", "Authentication-Results: \"mx2.example.net\"; none\r\n\r\n", "\r\n", 1},
	{"in the body: kept", "From: a\r\n\r\n" OURS, "From: a\r\n\r\n" OURS, 0},
	/* What comes first follows our Received: field in the spool: a leading line hides nothing. */
	{"a leading line that is not a field", "just text\r\n" OURS "\r\n", "just text\r\n\r\n", 1},
	{"a leading continuation line (of our Received:)", " x\r\n" OURS "From: a\r\n\r\nb\r\n",
	 " x\r\nFrom: a\r\n\r\nb\r\n", 1},
	{"empty first line", "\r\n" OURS, "\r\n" OURS, 0},
	{"similar names kept",
	 "Authentication-Result: mx2.example.net; x\r\nAuthentication-Results2: mx2.example.net; x\r\n"
	 "X-Authentication-Results: mx2.example.net; x\r\n\r\n",
	 "Authentication-Result: mx2.example.net; x\r\nAuthentication-Results2: mx2.example.net; x\r\n"
	 "X-Authentication-Results: mx2.example.net; x\r\n\r\n", 0},
	{"other id with ours as a suffix", "Authentication-Results: evil.mx2.example.net; none\r\n\r\n",
	 "Authentication-Results: evil.mx2.example.net; none\r\n\r\n", 0},
	{"ends inside the field", "From: a\r\n" "Authentication-Results: mx2.example.net; spf=pass",
	 "From: a\r\n", 1},
	{"ends inside the name", "From: a\r\nAuthentication-Res", "From: a\r\nAuthentication-Res", 0},
	{"no empty line", "From: a\r\n" OURS, "From: a\r\n", 1},
	{"bare LF line ends", "From: a\n" "Authentication-Results: mx2.example.net; none\n\tspf=pass\nTo: b\n\nbody\n",
	 "From: a\nTo: b\n\nbody\n", 1},
	{"a line that is not a field, then ours", "From: a\r\nnot a field\r\n" OURS "\r\n",
	 "From: a\r\nnot a field\r\n\r\n", 1},
	{"a continuation after a kept field", "From: a\r\n b\r\n" OURS "\r\n", "From: a\r\n b\r\n\r\n", 1},
	{"CR line in the header", "From: a\r\n\rx\r\n" OURS "\r\n", "From: a\r\n\rx\r\n\r\n", 1},
};

struct sink {
	char *data;
	size_t len;
};

static void sink_out(void *arg, const char *p, size_t n)
{
	struct sink *s = arg;
	assert_true(n > 0);
	s->data = realloc(s->data, s->len + n + 1);
	assert_non_null(s->data);
	memcpy(s->data + s->len, p, n);
	s->len += n;
	s->data[s->len] = '\0';
}

/* Runs in split at the given offsets (step 0: whole; else every step bytes after cut). */
static void run(const struct strip_case *c, size_t cut, size_t step)
{
	struct sink out = {0};
	struct hdr_strip f;
	size_t n = strlen(c->in);
	hdr_strip_init(&f, ID, sink_out, &out);
	if (step == 0) {
		hdr_strip_feed(&f, c->in, cut);
		hdr_strip_feed(&f, c->in + cut, n - cut);
	} else {
		for (size_t i = 0; i < n; i += step)
			hdr_strip_feed(&f, c->in + i, n - i < step ? n - i : step);
	}
	hdr_strip_finish(&f);
	if (strcmp(out.data ? out.data : "", c->out) != 0 || f.removed != c->removed)
		fail_msg("%s (cut %zu step %zu): got '%s' removed %u", c->name, cut, step, out.data ? out.data : "",
			 f.removed);
	free(out.data);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		run(&cases[i], strlen(cases[i].in), 0);
		run(&cases[i], 0, 1);
		for (size_t cut = 0; cut <= strlen(cases[i].in); cut++)
			run(&cases[i], cut, 0);
	}
}

/* Without an authserv-id nothing is held or removed. */
static void test_no_id(void **state)
{
	(void)state;
	struct sink out = {0};
	struct hdr_strip f;
	hdr_strip_init(&f, NULL, sink_out, &out);
	hdr_strip_feed(&f, OURS "\r\n", strlen(OURS "\r\n"));
	hdr_strip_finish(&f);
	assert_string_equal(out.data, OURS "\r\n");
	assert_int_equal(f.removed, 0);
	free(out.data);
}

/* A field longer than the hold is removed unread, continuation lines included; the rest is kept. */
static void test_overlong(void **state)
{
	(void)state;
	size_t fill = HDR_STRIP_HOLD_MAX + 100;
	char *in = malloc(fill + 200);
	assert_non_null(in);
	int k = snprintf(in, 200, "From: a\r\nAuthentication-Results: (");
	memset(in + k, 'x', fill);
	snprintf(in + (size_t)k + fill, 200, ") mx.other.example;\r\n\tspf=pass\r\nTo: b\r\n\r\nbody");
	struct sink out = {0};
	struct hdr_strip f;
	hdr_strip_init(&f, ID, sink_out, &out);
	for (size_t i = 0, n = strlen(in); i < n; i += 1000)
		hdr_strip_feed(&f, in + i, n - i < 1000 ? n - i : 1000);
	hdr_strip_finish(&f);
	assert_string_equal(out.data, "From: a\r\nTo: b\r\n\r\nbody");
	assert_int_equal(f.removed, 1);
	free(out.data);
	free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_no_id),
		cmocka_unit_test(test_overlong),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
