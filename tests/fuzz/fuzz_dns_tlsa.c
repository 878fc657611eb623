// fuzz-sources: src/base/dns_wire.c
/*
 * fuzz_dns_tlsa: libFuzzer target for dns_parse_tlsa, the wire-format
 * parser of a resolver's TLSA answer (the bytes come from the network,
 * through c-ares, unparsed). The input is the whole DNS message.
 * Besides memory safety it checks: the result is 0 or -EINVAL; on -EINVAL
 * nothing is returned; on 0 at most DNS_TLSA_MAX records, each with a
 * non-empty association that lies wholly inside the message and equals the
 * bytes there (ASan checks the reads of every byte), and the secure flag is
 * the message's AD bit.
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
	/* A private copy of exactly size bytes, so ASan sees any read past the end. */
	unsigned char *msg = malloc(size ? size : 1);
	CHECK(msg);
	memcpy(msg, data, size);
	bool secure = true;
	struct dns_tlsa *r = (struct dns_tlsa *)1;
	size_t n = 99;
	int rc = dns_parse_tlsa(msg, size, &secure, &r, &n);
	CHECK(rc == 0 || rc == -EINVAL);
	if (rc < 0) {
		CHECK(r == NULL && n == 0 && !secure);
	} else {
		CHECK(size >= 12);
		CHECK(r != NULL && n <= DNS_TLSA_MAX);
		CHECK(secure == ((msg[3] & 0x20) != 0));
		for (size_t i = 0; i < n; i++) {
			CHECK(r[i].len > 0 && r[i].len <= size);
			CHECK(r[i].data != NULL);
			CHECK(memmem(msg, size, r[i].data, r[i].len) != NULL);
		}
	}
	dns_tlsa_free(r, n);
	free(msg);
	return 0;
}
