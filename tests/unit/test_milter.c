/*
 * Unit tests for the milter codec (milter_proto.c) and the header editor
 * (milter_edit.c): a table of reply packets, one per reply type and each
 * malformation, with what the decoder must give; the length limits; every
 * packet fed one byte at a time (split input); the encoders against bytes
 * written out by hand; header changes applied to a header section.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* The case table gives only the fields each case checks; the rest are zero. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#include "milter/milter_edit.h"
#include "milter/milter_proto.h"

/* A packet: 4-byte length, then cmd and data (data given with its length, NULs inside). */
static size_t packet(unsigned char *out, char cmd, const char *data, size_t n)
{
	uint32_t len = htonl((uint32_t)n + 1);
	memcpy(out, &len, 4);
	out[4] = (unsigned char)cmd;
	memcpy(out + 5, data, n);
	return n + 5;
}

struct reply_case {
	const char *name;
	char cmd;
	const char *data;
	size_t len;
	long rc; /* > 0: ok (the packet's size is checked); or -EBADMSG */
	/* what must be decoded */
	int code;
	const char *text;
	const char *hname, *hvalue;
	uint32_t index;
};

#define D(s) s, sizeof(s) - 1

static const struct reply_case cases[] = {
	{"accept", 'a', D(""), 1},
	{"continue", 'c', D(""), 1},
	{"discard", 'd', D(""), 1},
	{"reject", 'r', D(""), 1},
	{"tempfail", 't', D(""), 1},
	{"progress", 'p', D(""), 1},
	{"skip", 's', D(""), 1},
	{"shutdown", '4', D(""), 1},
	{"conn-fail", 'f', D(""), 1},
	{"accept with data", 'a', D("x"), -EBADMSG},
	{"replycode", 'y', D("550 5.7.1 go away\0"), 1, 550, "5.7.1 go away"},
	{"replycode 4xx", 'y', D("451 4.7.1 later\0"), 1, 451, "4.7.1 later"},
	{"replycode code only", 'y', D("554\0"), 1, 554, ""},
	{"replycode multi-line keeps the first", 'y', D("550-5.7.1 one\r\n550 5.7.1 two\0"), 1, 550, "5.7.1 one"},
	{"replycode 2xx", 'y', D("250 ok\0"), -EBADMSG},
	{"replycode 6xx", 'y', D("650 x\0"), -EBADMSG},
	{"replycode letters", 'y', D("5x0 x\0"), -EBADMSG},
	{"replycode no separator", 'y', D("550x\0"), -EBADMSG},
	{"replycode no NUL", 'y', D("550 x"), -EBADMSG},
	{"replycode control", 'y', D("550 a\x01b\0"), -EBADMSG},
	{"replycode trailing data", 'y', D("550 x\0y"), -EBADMSG},
	{"addheader", 'h', D("X-Spam\0yes\0"), 1, 0, NULL, "X-Spam", "yes"},
	{"addheader folded value", 'h', D("X-Long\0a\n\tb\0"), 1, 0, NULL, "X-Long", "a\n\tb"},
	{"addheader empty name", 'h', D("\0v\0"), -EBADMSG},
	{"addheader colon in name", 'h', D("X:Y\0v\0"), -EBADMSG},
	{"addheader space in name", 'h', D("X Y\0v\0"), -EBADMSG},
	{"addheader control in value", 'h', D("X\0a\x01\0"), -EBADMSG},
	{"addheader value without NUL", 'h', D("X\0v"), -EBADMSG},
	{"addheader extra", 'h', D("X\0v\0z"), -EBADMSG},
	{"insheader", 'i', D("\0\0\0\2X-Top\0first\0"), 1, 0, NULL, "X-Top", "first", 2},
	{"insheader short", 'i', D("\0\0\0"), -EBADMSG},
	{"chgheader", 'm', D("\0\0\0\1Subject\0new\0"), 1, 0, NULL, "Subject", "new", 1},
	{"chgheader delete", 'm', D("\0\0\0\1X-Old\0\0"), 1, 0, NULL, "X-Old", "", 1},
	{"replbody", 'b', D("new body\r\n"), 1},
	{"replbody empty", 'b', D(""), 1},
	{"quarantine", 'q', D("virus\0"), 1, 0, "virus"},
	{"quarantine no NUL", 'q', D("virus"), -EBADMSG},
	{"addrcpt", '+', D("<x@y>\0"), 1, 0, "<x@y>"},
	{"delrcpt", '-', D("<x@y>\0"), 1, 0, "<x@y>"},
	{"addrcpt_par", '2', D("<x@y>\0NOTIFY=NEVER\0"), 1, 0, "<x@y>"},
	{"chgfrom", 'e', D("<a@b>\0"), 1, 0, "<a@b>"},
	{"optneg", 'O', D("\0\0\0\6\0\0\0\1\0\0\0\x10"), 1},
	{"optneg with symlists", 'O', D("\0\0\0\6\0\0\0\1\0\0\0\x10\0\0\0\1{i} j\0"), 1},
	{"optneg short", 'O', D("\0\0\0\6\0\0\0\1"), -EBADMSG},
	{"optneg bad symlist", 'O', D("\0\0\0\6\0\0\0\1\0\0\0\x10\0\0\0\1{i}"), -EBADMSG},
	{"unknown reply", 'Z', D(""), -EBADMSG},
	{"setsymlist alone", 'l', D("\0\0\0\1j\0"), -EBADMSG},
};

static void test_reply_table(void **state)
{
	(void)state;
	unsigned char p[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct reply_case *c = &cases[i];
		size_t n = packet(p, c->cmd, c->data, c->len);
		struct milter_reply r;
		long rc = milter_decode_reply(p, n, &r);
		if (c->rc < 0) {
			if (rc != c->rc)
				fail_msg("%s: rc %ld, want %ld", c->name, rc, c->rc);
			continue;
		}
		if (rc != (long)n)
			fail_msg("%s: rc %ld, want %zu", c->name, rc, n);
		assert_int_equal(r.cmd, c->cmd);
		if (c->code)
			assert_int_equal(r.code, c->code);
		if (c->text) {
			assert_int_equal(r.text_len, strlen(c->text));
			assert_memory_equal(r.text, c->text, r.text_len);
		}
		if (c->hname) {
			assert_int_equal(r.name_len, strlen(c->hname));
			assert_memory_equal(r.name, c->hname, r.name_len);
			assert_int_equal(r.value_len, strlen(c->hvalue));
			assert_memory_equal(r.value, c->hvalue, r.value_len);
			assert_int_equal(r.index, c->index);
		}
	}
}

static void test_optneg_fields(void **state)
{
	(void)state;
	unsigned char p[64];
	size_t n = packet(p, 'O', D("\0\0\0\6\0\0\0\x21\0\x08\0\x10"));
	struct milter_reply r;
	assert_int_equal(milter_decode_reply(p, n, &r), (long)n);
	assert_int_equal(r.version, 6);
	assert_int_equal(r.actions, SMFIF_ADDHDRS | SMFIF_QUARANTINE);
	assert_int_equal(r.steps, SMFIP_NR_BODY | SMFIP_NOBODY);
}

static void test_replbody_chunk(void **state)
{
	(void)state;
	static unsigned char p[MILTER_REPLY_MAX + 8];
	static char data[MILTER_CHUNK_MAX];
	memset(data, 'x', sizeof(data));
	size_t n = packet(p, 'b', data, sizeof(data));
	struct milter_reply r;
	assert_int_equal(milter_decode_reply(p, n, &r), (long)n);
	assert_int_equal(r.data_len, MILTER_CHUNK_MAX);
}

static void test_limits(void **state)
{
	(void)state;
	unsigned char p[8] = {0};
	struct milter_reply r;
	/* a length over the limit is refused from its 4 bytes alone, the data never read */
	uint32_t len = htonl(MILTER_REPLY_MAX + 1);
	memcpy(p, &len, 4);
	assert_int_equal(milter_decode_reply(p, 4, &r), -EMSGSIZE);
	len = htonl(0xffffffffu);
	memcpy(p, &len, 4);
	assert_int_equal(milter_decode_reply(p, 4, &r), -EMSGSIZE);
	len = 0;
	memcpy(p, &len, 4);
	assert_int_equal(milter_decode_reply(p, 4, &r), -EMSGSIZE);
	/* the largest one is only waited for */
	len = htonl(MILTER_REPLY_MAX);
	memcpy(p, &len, 4);
	p[4] = 'b';
	assert_int_equal(milter_decode_reply(p, 5, &r), 0);
	/* a quarantine reason over MILTER_TEXT_MAX */
	static unsigned char big[MILTER_TEXT_MAX + 16];
	static char reason[MILTER_TEXT_MAX + 2];
	memset(reason, 'r', MILTER_TEXT_MAX + 1);
	size_t n = packet(big, 'q', reason, MILTER_TEXT_MAX + 2);
	assert_int_equal(milter_decode_reply(big, n, &r), -EBADMSG);
	n = packet(big, 'q', reason + 1, MILTER_TEXT_MAX + 1); /* exactly MILTER_TEXT_MAX: fine */
	assert_int_equal(milter_decode_reply(big, n, &r), (long)n);
}

/* Every case again, fed a byte at a time: 0 (more) until the whole packet is there, then the same result. */
static void test_split_input(void **state)
{
	(void)state;
	unsigned char p[256];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct reply_case *c = &cases[i];
		size_t n = packet(p, c->cmd, c->data, c->len);
		struct milter_reply r;
		for (size_t k = 0; k < n; k++)
			if (milter_decode_reply(p, k, &r) != 0)
				fail_msg("%s: decoded from %zu of %zu bytes", c->name, k, n);
		long rc = milter_decode_reply(p, n, &r);
		assert_int_equal(rc, c->rc < 0 ? c->rc : (long)n);
	}
	/* two packets back to back: the first is decoded, its size says where the next starts */
	size_t n1 = packet(p, 'c', "", 0);
	size_t n2 = packet(p + n1, 'h', D("A\0b\0"));
	struct milter_reply r;
	assert_int_equal(milter_decode_reply(p, n1 + n2, &r), (long)n1);
	assert_int_equal(r.cmd, 'c');
	assert_int_equal(milter_decode_reply(p + n1, n2, &r), (long)n2);
	assert_int_equal(r.cmd, 'h');
}

static void test_encoders(void **state)
{
	(void)state;
	struct buf b = {0};
	milter_enc_optneg(&b, 6, 0x1ff, 0x1fffff);
	assert_int_equal(b.len, 17);
	assert_memory_equal(b.data, "\0\0\0\x0dO\0\0\0\6\0\0\x01\xff\0\x1f\xff\xff", 17);
	buf_reset(&b);
	milter_enc_connect(&b, "[192.0.2.1]", '4', 25, "192.0.2.1");
	assert_memory_equal(b.data, "\0\0\0\x1a" "C[192.0.2.1]\0" "4\0\x19" "192.0.2.1\0", 30);
	buf_reset(&b);
	const struct milter_macro m[] = {{"j", "mx"}, {"{i}", NULL}, {"_", "x"}};
	milter_enc_macro(&b, 'C', m, 3);
	assert_int_equal(b.len, 4 + 1 + 1 + 5 + 4);
	assert_memory_equal(b.data, "\0\0\0\x0b" "DCj\0mx\0_\0x\0", 15);
	buf_reset(&b);
	const char *args[] = {"<a@b>", "SIZE=1"};
	milter_enc_strs(&b, 'M', args, 2);
	assert_memory_equal(b.data, "\0\0\0\x0e" "M<a@b>\0SIZE=1\0", 18);
	buf_reset(&b);
	milter_enc_header(&b, "Subject", 7, "hi", 2);
	assert_memory_equal(b.data, "\0\0\0\x0c" "LSubject\0hi\0", 16);
	buf_reset(&b);
	milter_enc_body(&b, "abc", 3);
	milter_enc_empty(&b, SMFIC_BODYEOB);
	assert_int_equal(b.len, 13);
	assert_memory_equal(b.data, "\0\0\0\4Babc\0\0\0\1E", 13);
	buf_free(&b);
}

/* --- the header editor ------------------------------------------------------- */

static const char HEAD[] = "Received: from x\r\n\tby y\r\nSubject: old\r\nX-A: 1\r\nx-a: 2\r\n";

static void apply(const struct milter_edit *e, size_t n, const char *want)
{
	struct buf out = {0};
	milter_edit_apply(HEAD, sizeof(HEAD) - 1, e, n, &out);
	buf_append(&out, "", 1);
	assert_string_equal((const char *)out.data, want);
	buf_free(&out);
}

static void test_fields(void **state)
{
	(void)state;
	size_t off = 0;
	struct milter_field f;
	assert_true(milter_next_field(HEAD, sizeof(HEAD) - 1, &off, &f));
	assert_int_equal(f.name_len, 8);
	assert_memory_equal(f.value, "from x\r\n\tby y", f.value_len);
	struct buf v = {0};
	milter_value_for_milter(f.value, f.value_len, &v);
	assert_int_equal(v.len, 12);
	assert_memory_equal(v.data, "from x\n\tby y", 12);
	buf_free(&v);
	assert_true(milter_next_field(HEAD, sizeof(HEAD) - 1, &off, &f));
	assert_memory_equal(f.name, "Subject", f.name_len);
	assert_memory_equal(f.value, "old", f.value_len);
	assert_true(milter_next_field(HEAD, sizeof(HEAD) - 1, &off, &f));
	assert_true(milter_next_field(HEAD, sizeof(HEAD) - 1, &off, &f));
	assert_false(milter_next_field(HEAD, sizeof(HEAD) - 1, &off, &f));
	off = 0;
	assert_false(milter_next_field("no colon here\r\n", 15, &off, &f));
}

static void test_edits(void **state)
{
	(void)state;
	struct milter_edit add = {MILTER_EDIT_ADD, 0, "X-Score", "1"};
	apply(&add, 1, "Received: from x\r\n\tby y\r\nSubject: old\r\nX-A: 1\r\nx-a: 2\r\nX-Score: 1\r\n");
	struct milter_edit ins = {MILTER_EDIT_INSERT, 0, "X-Top", "t"};
	apply(&ins, 1, "X-Top: t\r\nReceived: from x\r\n\tby y\r\nSubject: old\r\nX-A: 1\r\nx-a: 2\r\n");
	struct milter_edit ins_far = {MILTER_EDIT_INSERT, 99, "X-End", "e"};
	apply(&ins_far, 1, "Received: from x\r\n\tby y\r\nSubject: old\r\nX-A: 1\r\nx-a: 2\r\nX-End: e\r\n");
	struct milter_edit chg = {MILTER_EDIT_CHANGE, 2, "X-A", "two"};
	apply(&chg, 1, "Received: from x\r\n\tby y\r\nSubject: old\r\nX-A: 1\r\nX-A: two\r\n");
	struct milter_edit del = {MILTER_EDIT_CHANGE, 1, "subject", ""};
	apply(&del, 1, "Received: from x\r\n\tby y\r\nX-A: 1\r\nx-a: 2\r\n");
	struct milter_edit missing = {MILTER_EDIT_CHANGE, 3, "X-A", "3"};
	apply(&missing, 1, "Received: from x\r\n\tby y\r\nSubject: old\r\nX-A: 1\r\nx-a: 2\r\nX-A: 3\r\n");
	struct milter_edit del_missing = {MILTER_EDIT_CHANGE, 1, "X-None", ""};
	apply(&del_missing, 1, HEAD);
	struct milter_edit folded = {MILTER_EDIT_ADD, 0, "X-F", "a\n\tb"};
	apply(&folded, 1, "Received: from x\r\n\tby y\r\nSubject: old\r\nX-A: 1\r\nx-a: 2\r\nX-F: a\r\n\tb\r\n");
	/* in order: the change sees the field the insert added */
	struct milter_edit seq[] = {{MILTER_EDIT_INSERT, 0, "X-A", "0"}, {MILTER_EDIT_CHANGE, 1, "X-A", "zero"}};
	apply(seq, 2, "X-A: zero\r\nReceived: from x\r\n\tby y\r\nSubject: old\r\nX-A: 1\r\nx-a: 2\r\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reply_table), cmocka_unit_test(test_optneg_fields),
		cmocka_unit_test(test_replbody_chunk), cmocka_unit_test(test_limits),
		cmocka_unit_test(test_split_input), cmocka_unit_test(test_encoders),
		cmocka_unit_test(test_fields), cmocka_unit_test(test_edits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
