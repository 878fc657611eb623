/*
 * Test helper: builds records of spool format v1 (CRC-32, no key), as
 * spools written before records had a MAC hold them, and as a sender could
 * forge them in message content. Used by test_spool_rec.c and test_spool.c.
 */
#ifndef MXV_TEST_SPOOL_V1_H
#define MXV_TEST_SPOOL_V1_H

#include "spool/spool_rec.h"

static inline void v1_put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void v1_rec(struct buf *b, uint8_t type, uint64_t id, const void *payload, uint32_t len)
{
	unsigned char h[SPOOL_REC_V1_HDR_SIZE] = {0};
	v1_put32(h, SPOOL_REC_MAGIC_V1);
	h[4] = type;
	v1_put32(h + 8, len);
	v1_put32(h + 12, (uint32_t)id);
	v1_put32(h + 16, (uint32_t)(id >> 32));
	v1_put32(h + 20, crc32_of(crc32_of(0, h, sizeof(h)), payload, len));
	buf_append(b, h, sizeof(h));
	buf_append(b, payload, len);
}

#endif
