/*
 * Unit tests for the streaming header scanner (src/msg_hdr.c): a table of
 * messages with the expected Received: count, Message-ID, header length and
 * body, each checked fed whole, one byte at a time, and split at every
 * offset; plus body hashes against known SHA-256 values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "smtpd/msg_hdr.h"

struct hdr_case {
	const char *name;
	const char *in;
	uint32_t received;
	const char *msgid;
	bool in_body;
	size_t header_len; /* the body is in + header_len */
};

static const struct hdr_case cases[] = {
	{"plain", "Received: a\r\nReceived: b\r\nSubject: x\r\n\r\nbody\r\n", 2, "", true, 40},
	{"case-insensitive names", "received: a\r\nRECEIVED: b\r\nReCeIvEd: c\r\n\r\n", 3, "", true, 41},
	{"folded Received counts once", "Received: from a\r\n\tby b\r\n  for c;\r\n date\r\nX: y\r\n\r\nB", 1, "",
	 true, 50},
	{"Received in the body is not counted", "Received: a\r\n\r\nReceived: b\r\n", 1, "", true, 15},
	{"Received-SPF is another field", "Received-SPF: pass\r\nXReceived: a\r\n\r\n", 0, "", true, 36},
	{"obs WSP before the colon", "Received : a\r\nMessage-ID\t: <a@b>\r\n\r\n", 1, "<a@b>", true, 36},
	{"Message-ID", "Message-ID: <abc@example.com>\r\n\r\nx", 0, "<abc@example.com>", true, 33},
	{"Message-ID lower case, no space", "message-id:<x@y>\r\n\r\n", 0, "<x@y>", true, 20},
	{"Message-ID folded", "Message-ID:\r\n <abc@\r\n\texample.com>  \r\nTo: a\r\n\r\n", 0,
	 "<abc@\texample.com>", true, 47},
	{"Message-ID with inner spaces", "Message-Id:   < a b @ c >   \r\n\r\n", 0, "< a b @ c >", true, 32},
	{"Message-ID missing", "Subject: hi\r\n\r\nMessage-ID: <body@x>\r\n", 0, "", true, 15},
	{"duplicate Message-ID: first wins", "Message-ID: <1@x>\r\nMessage-ID: <2@x>\r\n\r\n", 0, "<1@x>", true, 40},
	{"Message-ID with controls", "Message-ID: <a\rb\x01" "c@x>\r\n\r\n", 0, "<abc@x>", true, 25},
	/* What comes first follows our Received: field: never "no header section" (a forged field could hide). */
	{"leading line not a field", "Hello there\r\nReceived: x\r\n\r\n", 1, "", true, 28},
	{"leading space continues our Received:", " Received: x\r\n\r\n", 0, "", true, 16},
	{"leading colon after space", "Dear Sir: hello\r\nMessage-ID: <m@x>\r\n\r\n", 0, "<m@x>", true, 38},
	{"leading mbox From line", "From a@b Mon Jan 1\r\nReceived: x\r\n\r\n", 1, "", true, 35},
	{"leading line starts with CR", "\rReceived: x\r\nReceived: y\r\n\r\n", 1, "", true, 29},
	{"unterminated word", "justbody", 0, "", false, 8},
	{"empty header section", "\r\nReceived: x\r\n", 0, "", true, 2},
	{"empty header section, LF", "\nbody", 0, "", true, 1},
	{"no blank line: all header", "Received: a\r\nMessage-ID: <q@r>\r\n", 1, "<q@r>", false, 32},
	{"no blank line, no final CRLF", "Received: a\r\nMessage-ID: <q@r>", 1, "<q@r>", false, 30},
	{"LF LF ends the header", "Received: a\nMessage-ID: <q@r>\n\nbody\n", 1, "<q@r>", true, 31},
	{"garbage line in the header is skipped", "Received: a\r\nnot a field\r\n continued\r\nReceived: b\r\n\r\n", 2, "",
	 true, 53},
	{"garbage line ends the Message-ID", "Message-ID: <a@b>\r\n?? bad\r\n <more>\r\n\r\n", 0, "<a@b>", true, 38},
	{"bare CR line inside the header", "Received: a\r\n\rX: y\r\n\r\n", 1, "", true, 22},
	{"empty input", "", 0, "", false, 0},
};

static void sha256_of(const void *p, size_t n, unsigned char out[32])
{
	unsigned int len = 0;
	assert_int_equal(EVP_Digest(p, n, out, &len, EVP_sha256(), NULL), 1);
	assert_int_equal(len, 32);
}

/* Feeds in at the given cut points (sorted, each <= n). */
static void scan(const char *in, size_t n, const size_t *cuts, size_t ncuts, struct msg_hdr *h)
{
	size_t at = 0;
	msg_hdr_init(h);
	for (size_t i = 0; i < ncuts; i++) {
		msg_hdr_feed(h, in + at, cuts[i] - at);
		at = cuts[i];
	}
	msg_hdr_feed(h, in + at, n - at);
	msg_hdr_finish(h);
}

static void check_case(const struct hdr_case *c, const struct msg_hdr *h)
{
	size_t n = strlen(c->in);
	unsigned char want[32];

	if (h->received != c->received || strcmp(h->message_id, c->msgid) != 0 || h->in_body != c->in_body ||
	    h->header_len != c->header_len)
		fail_msg("case '%s': received %u msgid '%s' in_body %d header_len %llu", c->name, h->received,
			 h->message_id, h->in_body, (unsigned long long)h->header_len);
	sha256_of(c->in, n, want);
	if (memcmp(h->content_sha256, want, 32) != 0)
		fail_msg("case '%s': body hash differs", c->name);
}

static void test_cases(void **state)
{
	(void)state;
	struct msg_hdr h;
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		scan(cases[i].in, strlen(cases[i].in), NULL, 0, &h);
		check_case(&cases[i], &h);
	}
}

static bool same_result(const struct msg_hdr *a, const struct msg_hdr *b)
{
	return a->received == b->received && strcmp(a->message_id, b->message_id) == 0 &&
	       a->in_body == b->in_body && a->header_len == b->header_len &&
	       memcmp(a->content_sha256, b->content_sha256, 32) == 0;
}

static void test_split_invariance(void **state)
{
	(void)state;
	struct msg_hdr whole, part;
	size_t cuts[4096];

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		const char *in = cases[i].in;
		size_t n = strlen(in);
		scan(in, n, NULL, 0, &whole);
		for (size_t k = 0; k < n; k++)
			cuts[k] = k;
		scan(in, n, cuts, n, &part);
		if (!same_result(&whole, &part))
			fail_msg("case '%s': 1-byte feeding differs", cases[i].name);
		for (size_t a = 0; a <= n; a++)
			for (size_t b = a; b <= n; b++) {
				size_t two[2] = {a, b};
				scan(in, n, two, 2, &part);
				if (!same_result(&whole, &part))
					fail_msg("case '%s': split at %zu,%zu differs", cases[i].name, a, b);
			}
	}
}

static void hex(const unsigned char *d, char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* Values from `printf ... | sha256sum`, independent of our own use of EVP. */
static void test_known_hashes(void **state)
{
	(void)state;
	struct msg_hdr h;
	char got[65];
	const char *m1 = "Subject: x\r\n\r\nhello\r\n";

	scan(m1, strlen(m1), NULL, 0, &h);
	hex(h.content_sha256, got);
	assert_string_equal(got, "090bcbd4edc487bcb38faf9e765f805b6a8efe1c7086c2c9bc8ba85d70da2905");

	scan("", 0, NULL, 0, &h); /* nothing at all */
	hex(h.content_sha256, got);
	assert_string_equal(got, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

	scan("Body line\r\n", 11, NULL, 0, &h); /* no header: all body */
	hex(h.content_sha256, got);
	assert_string_equal(got, "5a0cd487d0a3f59c68c5f0d7d0a984ba633209451cb3a45c4e3c0205c28120e7");
}

static void test_long_values(void **state)
{
	(void)state;
	struct buf b = {0};
	struct msg_hdr h;

	/* A Message-ID longer than the cap, folded many times; a 100 KB field name. */
	buf_append_str(&b, "Message-ID: <");
	for (int i = 0; i < 400; i++)
		buf_append_str(&b, "abcdefgh\r\n ");
	buf_append_str(&b, "@x>\r\n");
	for (int i = 0; i < 100000; i++)
		buf_append_str(&b, "R");
	buf_append_str(&b, ": v\r\nReceived: z\r\n\r\nbody");
	scan((const char *)b.data, b.len, NULL, 0, &h);
	assert_int_equal(strlen(h.message_id), MSG_HDR_MSGID_MAX);
	assert_memory_equal(h.message_id, "<abcdefgh abcdefgh", 18);
	assert_int_equal(h.received, 1);
	assert_true(h.in_body);
	assert_int_equal(h.header_len, b.len - 4);

	/* A 100 KB first line without a colon is a line that is not a field, in the header section. */
	buf_reset(&b);
	for (int i = 0; i < 100000; i++)
		buf_append_str(&b, "x");
	buf_append_str(&b, " no: no\r\n\r\n");
	size_t cuts[] = {1, 4096, 65536, 99999};
	scan((const char *)b.data, b.len, cuts, ARRAY_LEN(cuts), &h);
	unsigned char want[32];
	sha256_of(b.data, b.len, want);
	assert_int_equal(h.header_len, b.len);
	assert_memory_equal(h.content_sha256, want, 32);
	buf_free(&b);
}

/* From: values for DMARC: unfolded, trimmed, counted; the same in every split. */
static const struct {
	const char *in;
	uint32_t nfrom;
	const char *from0, *from1;
} from_cases[] = {
	{"From: Alice <a@example.com>\r\nTo: b\r\n\r\nFrom: body\r\n", 1, "Alice <a@example.com>", ""},
	{"from:a@x\r\n\r\n", 1, "a@x", ""},
	{"From:\r\n \"A, B\"\r\n\t<a@example.com>  \r\n\r\n", 1, "\"A, B\"\t<a@example.com>", ""},
	{"From: a@x\r\nFROM : b@y\r\nFrom: c@z\r\n\r\n", 3, "a@x", "b@y"},
	{"Reply-To: a@x\r\nFromage: b\r\nX-From: c\r\n\r\n", 0, "", ""},
	{"From a@b Mon Jan 1\r\nFrom: x@y\r\n\r\n", 1, "x@y", ""}, /* a leading line hides nothing */
	{" x\r\nFrom: <s@paypal.example>\r\n\r\n", 1, "<s@paypal.example>", ""},
	{"From: a@x", 1, "a@x", ""},
	{"Subject: s\r\nFrom: a\rb@x\r\n\r\n", 1, "ab@x", ""},
};

static void test_from(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(from_cases) / sizeof(from_cases[0]); i++) {
		const char *in = from_cases[i].in;
		size_t n = strlen(in);
		for (size_t cut = 0; cut <= n; cut++) {
			struct msg_hdr h;
			scan(in, n, &cut, 1, &h);
			if (h.nfrom != from_cases[i].nfrom || strcmp(h.from[0], from_cases[i].from0) != 0 ||
			    strcmp(h.from[1], from_cases[i].from1) != 0)
				fail_msg("case %zu cut %zu: %u '%s' '%s'", i, cut, h.nfrom, h.from[0], h.from[1]);
		}
	}
	/* A long value is capped, still NUL-terminated. */
	char big[3000];
	int k = snprintf(big, sizeof(big), "From: ");
	memset(big + k, 'a', sizeof(big) - (size_t)k - 5);
	memcpy(big + sizeof(big) - 5, "\r\n\r\n", 5);
	struct msg_hdr h;
	scan(big, strlen(big), NULL, 0, &h);
	assert_int_equal(h.nfrom, 1);
	assert_int_equal(strlen(h.from[0]), MSG_HDR_FROM_MAX);
	assert_true(h.from_cut);

	/* Regression: a cut list must not pass for its first author ("<a@x>," then 1000 spaces, then another). */
	struct buf b = {0};
	buf_append_str(&b, "From: <a@attacker.example>,");
	for (int i = 0; i < 20; i++)
		buf_append_str(&b, "\r\n                                                  ");
	buf_append_str(&b, "<service@paypal.example>\r\n\r\n");
	scan((const char *)b.data, b.len, NULL, 0, &h);
	assert_true(h.from_cut);
	buf_free(&b);
	scan("From: <a@x.example>\r\n\r\n", 24, NULL, 0, &h);
	assert_false(h.from_cut);
}

static void test_free_unfinished(void **state)
{
	(void)state;
	struct msg_hdr h;
	msg_hdr_init(&h);
	msg_hdr_feed(&h, "Received: a\r\n\r\nbody", 19);
	msg_hdr_free(&h);
	msg_hdr_free(&h); /* idempotent */
	assert_null(h.sha);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cases),
		cmocka_unit_test(test_split_invariance),
		cmocka_unit_test(test_known_hashes),
		cmocka_unit_test(test_long_values),
		cmocka_unit_test(test_free_unfinished),
		cmocka_unit_test(test_from),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
