/*
 * Unit tests for the spool record and envelope codecs (src/spool/spool_rec.c):
 * v2 records verify only with their key, v1 records only in a v1 segment,
 * and an envelope at the configured limits fits in one record.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "base/cfg.h"
#include "smtpd/smtp_parse.h"
#include "spool/spool_rec.h"
#include "spool_v1.h"

static const unsigned char key_a[SPOOL_KEY_SIZE] = "0123456789abcdef0123456789abcdef";
static const unsigned char key_b[SPOOL_KEY_SIZE] = "0123456789abcdef0123456789abcdeF";

enum rec_kind { V2_KEY_A, V2_KEY_B, V1 };
enum { NO_CUT = -1 };
#define V2_LEN(n) (SPOOL_REC_HDR_SIZE + (n))

/*
 * Each case: a record of "hello" made as kind and followed by zeros (as if
 * more of a segment followed), bytes xor-ed at up to two offsets, then cut
 * to the first cut bytes.
 */
static const struct rec_case {
	const char *name;
	enum rec_kind kind;
	struct { int off; unsigned char x; } flip[2];
	int cut;
	bool legacy;  /* decoded as a v1 segment's record */
	long expect;  /* > 0: the full length */
} rec_cases[] = {
	{"good record", V2_KEY_A, {{-1, 0}}, NO_CUT, false, V2_LEN(5)},
	{"bad MAC: a payload byte flipped", V2_KEY_A, {{SPOOL_REC_HDR_SIZE + 2, 0x20}}, NO_CUT, false, -EBADMSG},
	{"bad MAC: a MAC byte flipped", V2_KEY_A, {{30, 0x01}}, NO_CUT, false, -EBADMSG},
	{"bad header tag: the id flipped", V2_KEY_A, {{12, 0x01}}, NO_CUT, false, -EBADMSG},
	{"bad header tag: a tag byte flipped", V2_KEY_A, {{20, 0x80}}, NO_CUT, false, -EBADMSG},
	{"wrong key", V2_KEY_B, {{-1, 0}}, NO_CUT, false, -EBADMSG},
	{"truncated payload (torn tail)", V2_KEY_A, {{-1, 0}}, V2_LEN(4), false, -EAGAIN},
	{"truncated header", V2_KEY_A, {{-1, 0}}, 10, false, -EAGAIN},
	{"wrong magic", V2_KEY_A, {{0, 0x01}}, NO_CUT, false, -EBADMSG},
	{"unknown type", V2_KEY_A, {{4, 0x60}}, NO_CUT, false, -EBADMSG},
	{"nonzero padding", V2_KEY_A, {{6, 0x01}}, NO_CUT, false, -EBADMSG},
	{"length beyond the limit", V2_KEY_A, {{11, 0x7f}}, NO_CUT, false, -EBADMSG},
	/* Forged header claiming the largest payload: refused before any payload is read, not "torn". */
	{"forged 16 MiB header, bytes missing", V2_KEY_A, {{8, 0x05}, {11, 0x01}}, 100, false, -EBADMSG},
	{"v1 record in a v2 segment", V1, {{-1, 0}}, NO_CUT, false, -EBADMSG},
	{"v1 record in a v1 segment", V1, {{-1, 0}}, NO_CUT, true, SPOOL_REC_V1_HDR_SIZE + 5},
	{"v1 record, bad CRC", V1, {{SPOOL_REC_V1_HDR_SIZE + 1, 0x04}}, NO_CUT, true, -EBADMSG},
	{"v1 record, torn", V1, {{-1, 0}}, SPOOL_REC_V1_HDR_SIZE + 2, true, -EAGAIN},
	{"v2 record in a v1 segment", V2_KEY_A, {{-1, 0}}, NO_CUT, true, -EBADMSG},
};

static void build_case(const struct rec_case *c, struct spool_mac *a, struct spool_mac *b, struct buf *out,
		       size_t *n)
{
	buf_reset(out);
	if (c->kind == V1)
		v1_rec(out, SPOOL_REC_DATA, 0x1234, "hello", 5);
	else
		spool_rec_append(c->kind == V2_KEY_A ? a : b, out, SPOOL_REC_DATA, 0x1234, "hello", 5);
	static const unsigned char zeros[64];
	buf_append(out, zeros, sizeof(zeros));
	for (size_t i = 0; i < ARRAY_LEN(c->flip); i++)
		if (c->flip[i].x)
			out->data[c->flip[i].off] ^= c->flip[i].x;
	*n = c->cut == NO_CUT ? out->len : (size_t)c->cut;
}

static void test_record_cases(void **state)
{
	(void)state;
	struct spool_mac *a, *b;
	assert_int_equal(spool_mac_new(key_a, &a), 0);
	assert_int_equal(spool_mac_new(key_b, &b), 0);
	struct buf buf = {0};
	struct spool_rec r;
	for (size_t i = 0; i < ARRAY_LEN(rec_cases); i++) {
		const struct rec_case *c = &rec_cases[i];
		size_t n;
		build_case(c, a, b, &buf, &n);
		long got = c->legacy ? spool_rec_decode_v1(buf.data, n, &r) : spool_rec_decode(a, buf.data, n, &r);
		if (got != c->expect)
			fail_msg("case '%s': got %ld, expected %ld", c->name, got, c->expect);
	}
	buf_reset(&buf);
	spool_rec_append(a, &buf, SPOOL_REC_COMMIT, 0x1234, "xyz", 3);
	assert_int_equal(spool_rec_decode(a, buf.data, buf.len, &r), V2_LEN(3));
	assert_int_equal(r.type, SPOOL_REC_COMMIT);
	assert_true(r.msgid == 0x1234);
	assert_memory_equal(r.payload, "xyz", 3);
	/* A segment's first bytes tell its format. */
	assert_false(spool_seg_is_v1(buf.data, buf.len));
	buf_reset(&buf);
	v1_rec(&buf, SPOOL_REC_SEGMENT, 1, "x", 1);
	assert_true(spool_seg_is_v1(buf.data, buf.len));
	assert_false(spool_seg_is_v1(buf.data, 3));
	spool_mac_free(a);
	spool_mac_free(b);
	buf_free(&buf);
}

static void test_envelope_round_trip(void **state)
{
	(void)state;
	struct spool_rcpt rcpts[2] = {
		{.addr = "alice@example.com", .orcpt = "rfc822;alice@example.com", .notify = SMTP_NOTIFY_FAILURE},
		{.addr = "\"b c\"@example.com", .state = SPOOL_RCPT_DELIVERED, .code = 250, .reply = "250 ok"},
	};
	struct spool_env env = {
		.sender = "s@x.org", .envid = "e1", .body = SMTP_BODY_8BITMIME, .ret = SMTP_RET_HDRS,
		.smtputf8 = true, .size_param = 999, .client_addr = "192.0.2.1", .client_helo = "h.x.org",
		.proto = "ESMTP", .arrival = 1700000000, .body_size = 4242, .nrcpt = 2, .rcpts = rcpts,
	};
	struct buf b = {0};
	spool_env_encode(&env, &b);
	struct spool_env out;
	assert_int_equal(spool_env_decode(b.data, b.len, &out), 0);
	assert_string_equal(out.sender, "s@x.org");
	assert_string_equal(out.envid, "e1");
	assert_int_equal(out.body, SMTP_BODY_8BITMIME);
	assert_true(out.smtputf8);
	assert_true(out.arrival == 1700000000 && out.body_size == 4242 && out.size_param == 999);
	assert_int_equal(out.nrcpt, 2);
	assert_string_equal(out.rcpts[0].orcpt, "rfc822;alice@example.com");
	assert_int_equal(out.rcpts[0].notify, SMTP_NOTIFY_FAILURE);
	assert_string_equal(out.rcpts[1].addr, "\"b c\"@example.com");
	assert_int_equal(out.rcpts[1].state, SPOOL_RCPT_DELIVERED);
	assert_string_equal(out.rcpts[1].reply, "250 ok");
	spool_env_free(&out);

	/* Every truncation of a valid envelope is refused or decodes cleanly; none crashes. */
	for (size_t n = 0; n < b.len; n++) {
		if (spool_env_decode(b.data, n, &out) == 0)
			spool_env_free(&out);
	}
	buf_free(&b);
}

static void test_envelope_rejects(void **state)
{
	(void)state;
	struct spool_env out;
	/* No sender, no recipients, truncated field, NUL inside a string. */
	static const unsigned char no_rcpt[] = {1, 1, 0, 0, 0, 'a'};
	static const unsigned char truncated[] = {1, 9, 0, 0, 0, 'a'};
	static const unsigned char nul[] = {1, 2, 0, 0, 0, 'a', 0};
	assert_int_equal(spool_env_decode(no_rcpt, sizeof(no_rcpt), &out), -EBADMSG);
	assert_int_equal(spool_env_decode(truncated, sizeof(truncated), &out), -EBADMSG);
	assert_int_equal(spool_env_decode(nul, sizeof(nul), &out), -EBADMSG);
	assert_int_equal(spool_env_decode(NULL, 0, &out), -EBADMSG);
}

static void test_updates_round_trip(void **state)
{
	(void)state;
	struct buf b = {0};
	spool_rcpt_update_encode(&(struct spool_rcpt_update){3, SPOOL_RCPT_FAILED, 550, "550 5.1.1 no"}, &b);
	struct spool_rcpt_update u;
	size_t rl;
	assert_int_equal(spool_rcpt_update_decode(b.data, b.len, &u, &rl), 0);
	assert_int_equal(u.index, 3);
	assert_int_equal(u.state, SPOOL_RCPT_FAILED);
	assert_int_equal(u.code, 550);
	assert_int_equal(rl, strlen("550 5.1.1 no"));
	buf_reset(&b);
	spool_meta_encode(&(struct spool_meta){.attempts = 7, .next_attempt = 1800000000, .flags = SPOOL_META_WARNED}, &b);
	struct spool_meta m;
	assert_int_equal(spool_meta_decode(b.data, b.len, &m), 0);
	assert_true(m.attempts == 7 && m.next_attempt == 1800000000 && m.flags == SPOOL_META_WARNED);
	buf_free(&b);
}

/* The queue-control fields (issue 10): round trip; a META record written before them still decodes. */
static void test_meta_hold_and_extension(void **state)
{
	(void)state;
	struct buf b = {0};
	struct spool_meta in = {2, 1800000000, SPOOL_META_HELD | SPOOL_META_RELEASED, 86400, 1790000000}, m;
	spool_meta_encode(&in, &b);
	assert_int_equal(spool_meta_decode(b.data, b.len, &m), 0);
	/* field by field: the struct's padding is not part of the value */
	assert_true(m.attempts == in.attempts && m.next_attempt == in.next_attempt && m.flags == in.flags &&
		    m.extend_s == in.extend_s && m.held_since == in.held_since);
	/* attempts 3, next 5, flags WARNED: the three fields an older daemon wrote, byte for byte. */
	static const unsigned char old[] = {1, 8, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 2, 8, 0, 0, 0, 5, 0, 0, 0,
					    0, 0, 0, 0, 3, 8, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
	assert_int_equal(spool_meta_decode(old, sizeof(old), &m), 0);
	assert_true(m.attempts == 3 && m.next_attempt == 5 && m.flags == SPOOL_META_WARNED && m.extend_s == 0 &&
		    m.held_since == 0);
	/* Nothing set: nothing new written, so an older daemon reads it as before. */
	buf_reset(&b);
	spool_meta_encode(&(struct spool_meta){3, 5, SPOOL_META_WARNED, 0, 0}, &b);
	assert_int_equal(b.len, sizeof(old));
	assert_memory_equal(b.data, old, sizeof(old));
	/* A field from a later version is skipped. */
	static const unsigned char later[] = {9, 1, 0, 0, 0, 7, 1, 1, 0, 0, 0, 4};
	assert_int_equal(spool_meta_decode(later, sizeof(later), &m), 0);
	assert_int_equal(m.attempts, 4);
	buf_free(&b);
}

static char *filled(size_t n, char c)
{
	char *s = malloc(n + 1);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/*
 * Milters' changes kept in the envelope (issue 9): the edited header section
 * with how many stored octets it replaces, and the quarantine reason. Read
 * back and copied; absent reads as NULL; a head_skip past the body is refused.
 */
static void test_envelope_milter_fields(void **state)
{
	(void)state;
	struct spool_rcpt rcpt = {.addr = "bob@example.com"};
	struct spool_env env = {.sender = "s@x.org", .nrcpt = 1, .rcpts = &rcpt, .body_size = 100,
				.head = "X-Top: 1\r\nReceived: from x\r\n", .head_skip = 40, .quarantine = "virus"};
	struct buf b = {0};
	struct spool_env out, copy;
	spool_env_encode(&env, &b);
	assert_int_equal(spool_env_decode(b.data, b.len, &out), 0);
	assert_string_equal(out.head, env.head);
	assert_int_equal(out.head_skip, 40);
	assert_string_equal(out.quarantine, "virus");
	spool_env_copy(&copy, &out);
	assert_string_equal(copy.head, env.head);
	assert_ptr_not_equal(copy.head, out.head);
	assert_string_equal(copy.quarantine, "virus");
	spool_env_free(&copy);
	spool_env_free(&out);

	buf_reset(&b);
	env.head_skip = 101; /* more than the stored body */
	spool_env_encode(&env, &b);
	assert_int_equal(spool_env_decode(b.data, b.len, &out), -EBADMSG);

	buf_reset(&b);
	env.head = NULL;
	env.quarantine = NULL;
	spool_env_encode(&env, &b);
	assert_int_equal(spool_env_decode(b.data, b.len, &out), 0);
	assert_null(out.head);
	assert_null(out.quarantine);
	spool_env_free(&out);
	buf_free(&b);
}

/*
 * The Authentication-Results header kept beside the body (issue 8): an
 * optional TLV field. Written and read back; an envelope without it (every
 * one written before it existed, v1 and v2) reads as NULL; one over
 * SPOOL_AUTH_HEADER_MAX is not written, and is refused when read.
 */
static void test_envelope_auth_header(void **state)
{
	(void)state;
	struct spool_rcpt rcpt = {.addr = "bob@example.com"};
	const char *hdr = "Authentication-Results: mx2.example.net;\r\n\tspf=pass smtp.mailfrom=s@x.org\r\n";
	struct spool_env env = {.sender = "s@x.org", .nrcpt = 1, .rcpts = &rcpt, .auth_header = (char *)hdr};
	struct buf b = {0};
	struct spool_env out, copy;
	spool_env_encode(&env, &b);
	assert_int_equal(spool_env_decode(b.data, b.len, &out), 0);
	assert_string_equal(out.auth_header, hdr);
	spool_env_copy(&copy, &out);
	assert_string_equal(copy.auth_header, hdr);
	assert_ptr_not_equal(copy.auth_header, out.auth_header);
	spool_env_free(&copy);
	spool_env_free(&out);

	buf_reset(&b);
	env.auth_header = NULL;
	spool_env_encode(&env, &b);
	assert_int_equal(spool_env_decode(b.data, b.len, &out), 0);
	assert_null(out.auth_header);
	spool_env_free(&out);

	char *big = filled(SPOOL_AUTH_HEADER_MAX + 1, 'A');
	buf_reset(&b);
	env.auth_header = big;
	spool_env_encode(&env, &b);
	assert_int_equal(spool_env_decode(b.data, b.len, &out), 0);
	assert_null(out.auth_header);
	spool_env_free(&out);
	/* Hand-made: tag 14 with a value one over the limit, after a valid envelope. */
	buf_reset(&b);
	env.auth_header = NULL;
	spool_env_encode(&env, &b);
	unsigned char th[5] = {14};
	uint32_t n = SPOOL_AUTH_HEADER_MAX + 1;
	for (int i = 0; i < 4; i++)
		th[1 + i] = (unsigned char)(n >> (8 * i)); /* little-endian, as in docs/spool.md */
	buf_append(&b, th, 5);
	buf_append(&b, big, n);
	assert_int_equal(spool_env_decode(b.data, b.len, &out), -EBADMSG);
	free(big);
	buf_free(&b);
}

/* What the _Static_assert in spool_rec.c claims, checked against the encoder itself. */
static void test_envelope_at_the_limits_fits(void **state)
{
	(void)state;
	char *addr = filled(SMTP_PATH_MAX, 'a'), *orcpt = filled(SMTP_ORCPT_MAX, 'o');
	char *long_reply = filled(4 * SPOOL_REPLY_MAX, 'r'), *helo = filled(SMTP_CMD_LINE_MAX, 'h');
	char *reply = spool_reply_dup(long_reply, strlen(long_reply)); /* as every path that stores one does */
	struct spool_rcpt *r = calloc(CFG_MAX_RECIPIENTS, sizeof(*r));
	for (size_t i = 0; i < CFG_MAX_RECIPIENTS; i++)
		r[i] = (struct spool_rcpt){.addr = addr, .orcpt = orcpt, .notify = 0xff, .state = SPOOL_RCPT_FAILED,
					   .code = 554, .reply = reply};
	struct spool_env env = {
		.sender = addr, .envid = filled(SMTP_ENVID_MAX, 'e'), .client_addr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
		.client_helo = helo, .proto = "UTF8SMTPSA", .arrival = INT64_MAX, .body_size = UINT64_MAX,
		.size_param = UINT64_MAX, .flags = UINT32_MAX, .has_dedup_key = true, .nrcpt = CFG_MAX_RECIPIENTS,
		.rcpts = r, .auth_header = filled(SPOOL_AUTH_HEADER_MAX, 'A'),
	};
	struct buf b = {0};
	spool_env_encode(&env, &b);
	assert_true(b.len <= SPOOL_REC_MAX_PAYLOAD);
	struct spool_env out;
	assert_int_equal(spool_env_decode(b.data, b.len, &out), 0);
	assert_int_equal(out.nrcpt, CFG_MAX_RECIPIENTS);
	assert_int_equal(strlen(out.rcpts[CFG_MAX_RECIPIENTS - 1].reply), SPOOL_REPLY_MAX);
	assert_int_equal(strlen(out.auth_header), SPOOL_AUTH_HEADER_MAX);
	spool_env_free(&out);
	buf_free(&b);
	free(r);
	free(env.envid);
	free(env.auth_header);
	free(addr), free(orcpt), free(long_reply), free(helo), free(reply);
}

static void test_reply_is_cut_at_a_character(void **state)
{
	(void)state;
	char s[SPOOL_REPLY_MAX + 8];
	memset(s, 'x', sizeof(s));
	memcpy(s + SPOOL_REPLY_MAX - 1, "\xc3\xa9", 2); /* an e-acute across the limit */
	char *c = spool_reply_dup(s, sizeof(s));
	assert_int_equal(strlen(c), SPOOL_REPLY_MAX - 1);
	free(c);
	c = spool_reply_dup("250 ok", 6);
	assert_string_equal(c, "250 ok");
	free(c);
	assert_null(spool_reply_dup(NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_cases),
		cmocka_unit_test(test_envelope_round_trip),
		cmocka_unit_test(test_envelope_rejects),
		cmocka_unit_test(test_envelope_auth_header),
		cmocka_unit_test(test_envelope_milter_fields),
		cmocka_unit_test(test_updates_round_trip),
		cmocka_unit_test(test_meta_hold_and_extension),
		cmocka_unit_test(test_envelope_at_the_limits_fits),
		cmocka_unit_test(test_reply_is_cut_at_a_character),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
