// fuzz-sources: src/smtpd/msg_hdr.c src/base/util.c
/*
 * fuzz_msg_hdr: libFuzzer target for the streaming header scanner. The
 * first two input bytes pick a chunk size for a second, split pass; the
 * rest is the message. Besides memory safety (ASan, UBSan, leaks) it checks
 * properties and aborts when one breaks: the split pass and a one-byte-at-
 * a-time pass agree with the whole-input pass, the Message-ID and the
 * From: values are bounded and free of line breaks, header_len covers all
 * input unless the header section ended, and content_sha256 is the SHA-256
 * of every octet fed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "smtpd/msg_hdr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void scan(const char *p, size_t n, size_t chunk, struct msg_hdr *h)
{
	msg_hdr_init(h);
	for (size_t at = 0; at < n; at += chunk)
		msg_hdr_feed(h, p + at, n - at < chunk ? n - at : chunk);
	msg_hdr_finish(h);
}

static bool same_result(const struct msg_hdr *a, const struct msg_hdr *b)
{
	return a->received == b->received && strcmp(a->message_id, b->message_id) == 0 && a->nfrom == b->nfrom &&
	       strcmp(a->from[0], b->from[0]) == 0 && strcmp(a->from[1], b->from[1]) == 0 &&
	       a->in_body == b->in_body && a->header_len == b->header_len &&
	       memcmp(a->content_sha256, b->content_sha256, 32) == 0;
}

static void check_alone(const struct msg_hdr *h, const char *p, size_t n)
{
	unsigned char want[32];
	unsigned int len = 0;
	size_t idlen = strlen(h->message_id);

	CHECK(idlen <= MSG_HDR_MSGID_MAX);
	CHECK(!memchr(h->message_id, '\r', idlen) && !memchr(h->message_id, '\n', idlen));
	CHECK(idlen == 0 || (h->message_id[0] != ' ' && h->message_id[idlen - 1] != ' '));
	for (size_t i = 0; i < MSG_HDR_FROM_KEEP; i++) {
		size_t flen = strlen(h->from[i]);
		CHECK(flen <= MSG_HDR_FROM_MAX && !memchr(h->from[i], '\r', flen) && !memchr(h->from[i], '\n', flen));
		CHECK(i < h->nfrom || flen == 0);
	}
	CHECK(h->header_len <= n);
	CHECK(h->in_body || h->header_len == n);
	CHECK(h->received <= n / 9);
	CHECK(EVP_Digest(p, n, want, &len, EVP_sha256(), NULL) == 1);
	CHECK(memcmp(want, h->content_sha256, sizeof(want)) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_hdr whole, split, bytes;

	if (size < 2)
		return 0;
	size_t chunk = (size_t)(data[0] | data[1] << 8) % 512 + 1;
	const char *p = (const char *)data + 2;
	size_t n = size - 2;

	scan(p, n, n ? n : 1, &whole);
	check_alone(&whole, p, n);
	scan(p, n, chunk, &split);
	CHECK(same_result(&whole, &split));
	scan(p, n, 1, &bytes);
	CHECK(same_result(&whole, &bytes));
	return 0;
}
