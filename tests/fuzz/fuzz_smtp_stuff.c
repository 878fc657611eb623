// fuzz-sources: src/delivery/smtp_stuff.c src/smtpd/smtp_data.c src/base/util.c
/*
 * fuzz_smtp_stuff: libFuzzer target for the SMTP client's content encoder.
 * Message content is the sender's, so the encoder must never let a next hop
 * see an end of data, or a line end, that we did not mean. The input's first
 * byte picks a split point; the rest is message content. Checks, aborting
 * when one breaks:
 *  - the output does not depend on how the content is split across calls;
 *  - every CR in the output is followed by LF and every LF preceded by CR;
 *  - a receiver (our own DATA decoder, the one smtpd uses) reading the
 *    output followed by ".\r\n" finds the end of data exactly there, sees no
 *    bare CR or LF, and gets back the content with every line end made CRLF
 *    (and a last line ended).
 */
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "delivery/smtp_stuff.h"
#include "smtpd/smtp_parse.h"

#define CHECK(c) ((c) ? (void)0 : abort())

static void emit(void *arg, const void *p, size_t n)
{
	buf_append(arg, p, n);
}

static void encode(const unsigned char *p, size_t n, size_t cut, struct buf *out)
{
	struct smtp_stuff st;
	smtp_stuff_init(&st);
	smtp_stuff_feed(&st, p, cut, emit, out);
	smtp_stuff_feed(&st, p + cut, n - cut, emit, out);
	smtp_stuff_end(&st, emit, out);
}

/* What a receiver must get back: line ends made CRLF, the last line ended. */
static void normalise(const unsigned char *p, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			i++;
		if (p[i] == '\r' || p[i] == '\n')
			buf_append(out, "\r\n", 2);
		else
			buf_append(out, &p[i], 1);
	}
	if (out->len && (out->len < 2 || memcmp(out->data + out->len - 2, "\r\n", 2) != 0))
		buf_append(out, "\r\n", 2);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);
int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (size < 1)
		return 0;
	const unsigned char *p = data + 1;
	size_t n = size - 1, cut = n ? data[0] % (n + 1) : 0;
	struct buf whole = {0}, split = {0}, want = {0}, got = {0};
	encode(p, n, 0, &whole);
	encode(p, n, cut, &split);
	CHECK(whole.len == split.len && (whole.len == 0 || memcmp(whole.data, split.data, whole.len) == 0));
	for (size_t i = 0; i < whole.len; i++) {
		if (whole.data[i] == '\r')
			CHECK(i + 1 < whole.len && whole.data[i + 1] == '\n');
		if (whole.data[i] == '\n')
			CHECK(i > 0 && whole.data[i - 1] == '\r');
	}
	buf_append(&whole, ".\r\n", 3);
	struct smtp_data_dec dec;
	memset(&dec, 0, sizeof(dec));
	bool done = false;
	size_t used = smtp_data_feed(&dec, (const char *)whole.data, whole.len, &got, &done);
	CHECK(done && used == whole.len && !dec.bare_cr_or_lf);
	normalise(p, n, &want);
	CHECK(got.len == want.len && (got.len == 0 || memcmp(got.data, want.data, got.len) == 0));
	buf_free(&whole);
	buf_free(&split);
	buf_free(&want);
	buf_free(&got);
	return 0;
}
