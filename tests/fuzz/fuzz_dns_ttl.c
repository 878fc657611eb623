// fuzz-sources: src/base/dns_wire.c
/*
 * fuzz_dns_ttl: libFuzzer target for dns_answer_ttl, which reads the MX
 * TTL out of a resolver's answer (bytes from the network, through c-ares,
 * unparsed) for `mxvault check`. The input is the whole DNS message; the
 * type asked for is MX and then every type the message's first answer
 * could have. Besides memory safety it checks: the result is 0, -ENOENT
 * or -EINVAL, and *ttl is written only on 0.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *msg = malloc(size ? size : 1); /* exactly size bytes: ASan sees a read past the end */
	CHECK(msg);
	memcpy(msg, data, size);
	static const uint16_t types[] = {15 /* MX */, 1 /* A */, 5 /* CNAME */, 52 /* TLSA */};
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		uint32_t ttl = 0xdeadbeef;
		int rc = dns_answer_ttl(msg, size, types[i], &ttl);
		CHECK(rc == 0 || rc == -ENOENT || rc == -EINVAL);
		if (rc < 0)
			CHECK(ttl == 0xdeadbeef);
	}
	free(msg);
	return 0;
}
