// fuzz-sources: src/delivery/smtp_reply.c src/base/util.c
/*
 * fuzz_smtp_reply: libFuzzer target for the SMTP client's reply parser.
 * The first input byte picks EHLO parsing (bit 0); the rest is what a peer
 * sends, cut into lines at LF (a CR before it is dropped, as the client's
 * line reader does). Lines are fed in order; after a complete reply or an
 * error the parser starts over, as the client does for the next reply.
 * Besides memory safety it checks properties and aborts when one breaks:
 * results are only MORE, DONE or the documented errors; the text kept is
 * bounded, NUL-terminated, free of control characters and starts with the
 * code; a code kept is valid by the ABNF and every verdict is in range;
 * no reply goes past the line cap.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/smtp_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_done(const struct smtp_reply *r)
{
	CHECK(smtp_reply_code_valid(r->code));
	CHECK(r->len <= SMTP_REPLY_TEXT_MAX && r->len >= 3);
	CHECK(strlen(r->text) == r->len);
	for (size_t i = 0; i < r->len; i++)
		CHECK((unsigned char)r->text[i] >= 0x20 && r->text[i] != 0x7f);
	CHECK(r->text[0] - '0' == r->code / 100 && r->text[1] - '0' == r->code / 10 % 10 &&
	      r->text[2] - '0' == r->code % 10);
	CHECK(!r->caps.size_max || r->caps.size);
	for (int cmd = SMTP_CMD_GREETING; cmd <= SMTP_CMD_QUIT; cmd++) {
		enum smtp_verdict v = smtp_reply_verdict((enum smtp_cmd)cmd, r->code);
		CHECK(v == SMTP_VERDICT_OK || v == SMTP_VERDICT_TEMPFAIL || v == SMTP_VERDICT_PERMFAIL ||
		      v == SMTP_VERDICT_PROTOCOL);
		CHECK(v != SMTP_VERDICT_TEMPFAIL || r->code / 100 == 4);
		CHECK(v != SMTP_VERDICT_PERMFAIL || r->code / 100 == 5);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	bool ehlo = data[0] & 1;
	const char *p = (const char *)data + 1, *end = (const char *)data + size;
	struct smtp_reply r;
	smtp_reply_init(&r, ehlo);
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		size_t fed = n && p[n - 1] == '\r' ? n - 1 : n;
		uint32_t before = r.lines;
		int rc = smtp_reply_feed(&r, p, fed);
		CHECK(rc == SMTP_REPLY_MORE || rc == SMTP_REPLY_DONE || rc == -EBADMSG || rc == -EMSGSIZE ||
		      rc == -E2BIG);
		CHECK(r.lines <= SMTP_REPLY_LINES_MAX);
		CHECK(r.len <= SMTP_REPLY_TEXT_MAX && r.text[r.len] == '\0');
		CHECK(rc < 0 ? r.lines == before : r.lines == before + 1);
		CHECK(rc != -EMSGSIZE || fed > SMTP_REPLY_LINE_MAX);
		if (rc == SMTP_REPLY_DONE)
			check_done(&r);
		if (rc != SMTP_REPLY_MORE)
			smtp_reply_init(&r, ehlo);
		p += n + (nl != NULL);
	}
	return 0;
}
