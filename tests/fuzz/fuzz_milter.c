// fuzz-sources: src/milter/milter_proto.c src/milter/milter_edit.c src/base/util.c
/*
 * fuzz_milter: libFuzzer target for the milter reply decoder (what a
 * milter sends us) and the header editor it feeds. The input is a stream
 * of reply packets, decoded one after the other as the client does (a
 * packet's size says where the next starts; an error or "need more" ends
 * the stream). Besides memory safety it checks properties and aborts when
 * one breaks: results are a size within the input, 0, or the documented
 * errors; no packet over MILTER_REPLY_MAX is taken; every string decoded
 * lies inside the packet, has the length said and holds no NUL; names have
 * no colon or control; reply codes are 4xx/5xx. Header changes decoded are
 * applied to a fixed header section (bounded output).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "milter/milter_edit.h"
#include "milter/milter_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_inside(const void *s, size_t n, const uint8_t *p, size_t len)
{
	const uint8_t *q = s;
	CHECK(q >= p && q + n <= p + len);
	CHECK(memchr(s, '\0', n) == NULL);
}

static const char HEAD[] = "Received: from a\r\n\tby b\r\nSubject: s\r\nX-A: 1\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	struct milter_edit edits[16];
	size_t nedits = 0;
	char names[16][MILTER_NAME_MAX + 1], values[16][512];
	while (off < size) {
		struct milter_reply r;
		long rc = milter_decode_reply(data + off, size - off, &r);
		CHECK(rc == 0 || rc == -EBADMSG || rc == -EMSGSIZE || (rc >= 5 && (size_t)rc <= size - off));
		if (rc <= 0)
			break;
		CHECK((size_t)rc <= MILTER_REPLY_MAX + 4);
		const uint8_t *p = data + off;
		if (r.name) {
			check_inside(r.name, r.name_len, p, (size_t)rc);
			CHECK(r.name_len > 0 && r.name_len <= MILTER_NAME_MAX);
			CHECK(memchr(r.name, ':', r.name_len) == NULL);
			check_inside(r.value, r.value_len, p, (size_t)rc);
		}
		if (r.text)
			check_inside(r.text, r.text_len, p, (size_t)rc);
		if (r.cmd == SMFIR_REPLYCODE)
			CHECK(r.code >= 400 && r.code <= 599);
		if (r.cmd == SMFIR_REPLBODY)
			CHECK(r.data == p + 5 && r.data_len == (size_t)rc - 5);
		if (r.name && nedits < 16 && r.value_len < sizeof(values[0])) {
			memcpy(names[nedits], r.name, r.name_len);
			names[nedits][r.name_len] = '\0';
			memcpy(values[nedits], r.value, r.value_len);
			values[nedits][r.value_len] = '\0';
			edits[nedits] = (struct milter_edit){
				.op = r.cmd == SMFIR_ADDHEADER ? MILTER_EDIT_ADD
				      : r.cmd == SMFIR_INSHEADER ? MILTER_EDIT_INSERT : MILTER_EDIT_CHANGE,
				.index = r.index, .name = names[nedits], .value = values[nedits]};
			nedits++;
		}
		off += (size_t)rc;
	}
	struct buf out = {0};
	milter_edit_apply(HEAD, sizeof(HEAD) - 1, edits, nedits, &out);
	/* each edit adds at most one field of name, value (LF grown to CRLF) and ": \r\n" */
	CHECK(out.len <= sizeof(HEAD) - 1 + nedits * (MILTER_NAME_MAX + 2 * 512 + 4));
	buf_free(&out);
	return 0;
}
