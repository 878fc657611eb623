/* Unit tests for the spool record and envelope codecs (src/spool_rec.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtpd/smtp_parse.h"
#include "spool/spool_rec.h"

static void make_rec(struct buf *b, uint8_t type, const char *payload)
{
	buf_reset(b);
	spool_rec_append(b, type, 0x1234, payload, (uint32_t)strlen(payload));
}

static void test_record_cases(void **state)
{
	(void)state;
	struct buf b = {0};
	struct spool_rec r;
	struct {
		const char *name;
		void (*mangle)(struct buf *b);
		long expect; /* > 0: the full length */
	} cases[] = {
		{"intact", NULL, SPOOL_REC_HDR_SIZE + 5},
		{"missing end (torn tail)", NULL, -EAGAIN},
		{"bad checksum", NULL, -EBADMSG},
		{"bad magic", NULL, -EBADMSG},
		{"unknown type", NULL, -EBADMSG},
		{"length beyond limit", NULL, -EBADMSG},
		{"header only, cut", NULL, -EAGAIN},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		make_rec(&b, SPOOL_REC_DATA, "hello");
		size_t n = b.len;
		switch (i) {
		case 1: n -= 1; break;
		case 2: b.data[SPOOL_REC_HDR_SIZE + 2] ^= 0x20; break;
		case 3: b.data[0] ^= 1; break;
		case 4: b.data[4] = 99; break;
		case 5: b.data[11] = 0x7f; break;
		case 6: n = 10; break;
		}
		long got = spool_rec_decode(b.data, n, &r);
		if (got != cases[i].expect)
			fail_msg("case '%s': got %ld, expected %ld", cases[i].name, got, cases[i].expect);
	}
	make_rec(&b, SPOOL_REC_COMMIT, "xyz");
	assert_int_equal(spool_rec_decode(b.data, b.len, &r), SPOOL_REC_HDR_SIZE + 3);
	assert_int_equal(r.type, SPOOL_REC_COMMIT);
	assert_true(r.msgid == 0x1234);
	assert_memory_equal(r.payload, "xyz", 3);
	buf_free(&b);
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
	spool_meta_encode(&(struct spool_meta){7, 1800000000, SPOOL_META_WARNED}, &b);
	struct spool_meta m;
	assert_int_equal(spool_meta_decode(b.data, b.len, &m), 0);
	assert_true(m.attempts == 7 && m.next_attempt == 1800000000 && m.flags == SPOOL_META_WARNED);
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_cases),
		cmocka_unit_test(test_envelope_round_trip),
		cmocka_unit_test(test_envelope_rejects),
		cmocka_unit_test(test_updates_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
