/*
 * Unit tests for the SMTP client's content encoder (smtp_stuff.c): a table
 * of {name, input, expected DATA content}, each also fed one byte at a time
 * and in every two-piece split, which must give the same bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/util.h"
#include "delivery/smtp_stuff.h"

struct stuff_case {
	const char *name, *in, *want;
	size_t in_len, want_len; /* 0: strlen */
};

static const struct stuff_case cases[] = {
	{"empty", "", "", 0, 0},
	{"crlf kept", "a\r\nb\r\n", "a\r\nb\r\n", 0, 0},
	{"last line closed", "a\r\nb", "a\r\nb\r\n", 0, 0},
	{"bare lf", "a\nb\n", "a\r\nb\r\n", 0, 0},
	{"bare cr", "a\rb\r", "a\r\nb\r\n", 0, 0},
	{"cr cr lf", "a\r\r\nb", "a\r\n\r\nb\r\n", 0, 0},
	{"lf cr", "a\n\rb", "a\r\n\r\nb\r\n", 0, 0},
	{"leading dot", ".a\r\n", "..a\r\n", 0, 0},
	{"dot line", "a\r\n.\r\nb", "a\r\n..\r\nb\r\n", 0, 0},
	{"smuggling via bare cr", "line1\r.\r\nMAIL FROM:<x>\r\n", "line1\r\n..\r\nMAIL FROM:<x>\r\n", 0, 0},
	{"smuggling via bare lf", "line1\n.\nRCPT TO:<y>\n", "line1\r\n..\r\nRCPT TO:<y>\r\n", 0, 0},
	{"dot not at start", "a.b\r\n", "a.b\r\n", 0, 0},
	{"only a dot", ".", "..\r\n", 0, 0},
	{"trailing bare cr", "a\r", "a\r\n", 0, 0},
	{"nul kept", "a\0b\r\n", "a\0b\r\n", 5, 5},
};

static void emit(void *arg, const void *p, size_t n)
{
	buf_append(arg, p, n);
}

/* Encodes in[0..n) in pieces of at most `piece` bytes after a first piece of `first`. */
static void encode(const char *in, size_t n, size_t first, size_t piece, struct buf *out)
{
	struct smtp_stuff st;
	smtp_stuff_init(&st);
	buf_reset(out);
	size_t at = first < n ? first : n;
	smtp_stuff_feed(&st, in, at, emit, out);
	while (at < n) {
		size_t k = n - at < piece ? n - at : piece;
		smtp_stuff_feed(&st, in + at, k, emit, out);
		at += k;
	}
	smtp_stuff_end(&st, emit, out);
}

static void check(const struct stuff_case *c, const struct buf *out, const char *how)
{
	size_t wn = c->want_len ? c->want_len : strlen(c->want);
	if (out->len != wn || (wn && memcmp(out->data, c->want, wn) != 0))
		fail_msg("case \"%s\" (%s): got %zu bytes \"%.*s\"", c->name, how, out->len, (int)out->len,
			 (const char *)out->data);
}

static void test_table(void **state)
{
	(void)state;
	struct buf out = {0};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct stuff_case *c = &cases[i];
		size_t n = c->in_len ? c->in_len : strlen(c->in);
		encode(c->in, n, n, n + 1, &out);
		check(c, &out, "whole");
		encode(c->in, n, 0, 1, &out);
		check(c, &out, "byte by byte");
		for (size_t cut = 0; cut <= n; cut++) {
			encode(c->in, n, cut, n + 1, &out);
			check(c, &out, "split");
		}
	}
	buf_free(&out);
}

/* Whatever comes in, no line of what goes out can end the data early. */
static void test_no_early_end(void **state)
{
	(void)state;
	static const char alphabet[] = {'\r', '\n', '.', 'x'};
	struct buf out = {0};
	char in[6];
	for (unsigned v = 0; v < 4096; v++) { /* every string of 6 over the alphabet */
		for (size_t k = 0, x = v; k < sizeof(in); k++, x /= 4)
			in[k] = alphabet[x % 4];
		encode(in, sizeof(in), 0, 1, &out);
		assert_true(out.len >= 2);
		assert_memory_equal(out.data + out.len - 2, "\r\n", 2);
		for (size_t i = 0; i < out.len; i++) {
			if (out.data[i] == '\r')
				assert_true(i + 1 < out.len && out.data[i + 1] == '\n');
			if (out.data[i] == '\n')
				assert_true(i > 0 && out.data[i - 1] == '\r');
			if (out.data[i] == '.' && (i == 0 || out.data[i - 1] == '\n'))
				assert_true(i + 1 < out.len && out.data[i + 1] == '.'); /* stuffed */
		}
	}
	buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_no_early_end),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
