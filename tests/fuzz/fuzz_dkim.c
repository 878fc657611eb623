// fuzz-sources: src/auth/dkim_parse.c src/auth/dkim_canon.c src/base/util.c
/*
 * fuzz_dkim: libFuzzer target for the pure parts of DKIM: the
 * DKIM-Signature tag-list (dkim_parse_sig, dkim_find_b_value), the key
 * record (dkim_parse_key) and body and header canonicalisation.
 * The first input byte picks: 0 signature, 1 key record, 2 body (split at
 * the second byte), 3 header field. Besides memory safety it checks: results
 * are 0 or -EINVAL, a failure says why, the same input parses the same
 * twice; a parsed signature has d= in lower case, an i= within d=, an h=
 * that signs From, a b= and bh=, and its b= span is inside the field; a key
 * is revoked exactly when p= is empty; the body output does not depend on
 * the split, ends in CRLF (or is empty, relaxed only), never ends in an empty
 * line, and relaxed output has no tab and no space before CRLF; a relaxed
 * header is one line with a lower-case name.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dkim_canon.h"
#include "auth/dkim_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void fuzz_sig(const char *p, size_t n)
{
	static struct dkim_sig a, b;
	const char *why = NULL, *why2 = NULL;
	int rc = dkim_parse_sig(p, n, &a, &why);
	CHECK(rc == 0 || (rc == -EINVAL && why));
	CHECK(dkim_parse_sig(p, n, &b, &why2) == rc);
	size_t s, e;
	if (dkim_find_b_value(p, n, &s, &e) == 0)
		CHECK(s <= e && e <= n);
	if (rc)
		return;
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	CHECK(a.d[0] && a.s[0] && a.blen > 0 && a.bhlen > 0 && a.nh > 0);
	for (const char *c = a.d; *c; c++)
		CHECK(*c < 'A' || *c > 'Z');
	const char *at = strrchr(a.i, '@');
	CHECK(at);
	size_t dn = strlen(at + 1), n2 = strlen(a.d);
	CHECK(dn >= n2 && ascii_ieq(at + 1 + dn - n2, n2, a.d, n2));
	bool from = false;
	for (size_t k = 0; k < a.nh; k++)
		from |= ascii_ieq(a.h[k], strlen(a.h[k]), "from", 4);
	CHECK(from);
	CHECK(dkim_find_b_value(p, n, &s, &e) == 0);
}

static void fuzz_key(const char *p, size_t n)
{
	static struct dkim_key a, b;
	const char *why = NULL;
	int rc = dkim_parse_key(p, n, &a, &why);
	CHECK(rc == 0 || (rc == -EINVAL && why));
	CHECK(dkim_parse_key(p, n, &b, &why) == rc);
	if (rc == 0) {
		CHECK(memcmp(&a, &b, sizeof(a)) == 0);
		CHECK(a.revoked == (a.plen == 0));
		CHECK(a.type == DKIM_KEY_RSA || a.type == DKIM_KEY_ED25519);
	}
}

static void collect(void *arg, const unsigned char *p, size_t n)
{
	buf_append(arg, p, n);
}

static void body_once(enum dkim_canon c, const unsigned char *p, size_t n, size_t split, struct buf *out)
{
	struct dkim_body b;
	dkim_body_init(&b, c, collect, out);
	dkim_body_feed(&b, p, split);
	dkim_body_feed(&b, p + split, n - split);
	dkim_body_end(&b);
	CHECK(b.emitted == out->len);
}

static void fuzz_body(const unsigned char *p, size_t n)
{
	if (n < 1)
		return;
	size_t split = p[0] % (n);
	p++, n--;
	if (split > n)
		split = n;
	for (int c = DKIM_CANON_SIMPLE; c <= DKIM_CANON_RELAXED; c++) {
		struct buf one = { 0 }, two = { 0 };
		body_once((enum dkim_canon)c, p, n, 0, &one);
		body_once((enum dkim_canon)c, p, n, split, &two);
		CHECK(one.len == two.len && (one.len == 0 || memcmp(one.data, two.data, one.len) == 0));
		CHECK(one.len > 0 || c == DKIM_CANON_RELAXED);
		if (one.len) {
			CHECK(one.len >= 2 && one.data[one.len - 2] == '\r' && one.data[one.len - 1] == '\n');
			CHECK(one.len < 4 || memcmp(one.data + one.len - 4, "\r\n\r\n", 4) != 0 || one.len == 2);
		}
		if (c == DKIM_CANON_RELAXED) {
			CHECK(!memchr(one.data ? one.data : (const unsigned char *)"", '\t', one.len));
			for (size_t k = 0; k + 2 < one.len; k++)
				CHECK(!(one.data[k] == ' ' && one.data[k + 1] == '\r' && one.data[k + 2] == '\n'));
		}
		buf_free(&one);
		buf_free(&two);
	}
}

static void fuzz_header(const char *p, size_t n)
{
	struct buf out = { 0 };
	dkim_canon_header(DKIM_CANON_RELAXED, p, n, false, &out);
	const char *colon = memchr(out.data, ':', out.len);
	CHECK(colon);
	for (const unsigned char *c = out.data; c < (const unsigned char *)colon; c++)
		CHECK(*c < 'A' || *c > 'Z');
	CHECK(!memchr(out.data, '\r', out.len) && !memchr(out.data, '\n', out.len));
	CHECK(out.len == 0 || out.data[out.len - 1] != ' ');
	buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *p = (const char *)data + 1;
	size_t n = size - 1;
	char *copy = malloc(n ? n : 1); /* exactly n bytes: ASan sees a read past the end */
	CHECK(copy);
	memcpy(copy, p, n);
	switch (data[0] & 3) {
	case 0: fuzz_sig(copy, n); break;
	case 1: fuzz_key(copy, n); break;
	case 2: fuzz_body((const unsigned char *)copy, n); break;
	default: fuzz_header(copy, n); break;
	}
	free(copy);
	return 0;
}
