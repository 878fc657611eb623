// fuzz-sources: src/base/dns_wire.c
/*
 * fuzz_dns_tlsa: libFuzzer target for dns_parse_tlsa, the TLSA answer
 * parser (the bytes come from the resolver, which copies them from any
 * name server). Besides memory safety it checks: a malformed message gives
 * -EINVAL with nothing returned and secure false; a parsed one returns at
 * most DNS_TLSA_MAX records, each with association data, and secure is the
 * header's AD bit.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool secure = true;
	struct dns_tlsa *r = (struct dns_tlsa *)1;
	size_t n = 99;
	int rc = dns_parse_tlsa(data, size, &secure, &r, &n);
	if (rc < 0) {
		CHECK(rc == -EINVAL && r == NULL && n == 0 && !secure);
		return 0;
	}
	CHECK(rc == 0 && r != NULL && n <= DNS_TLSA_MAX);
	CHECK(secure == ((data[3] & 0x20) != 0));
	for (size_t i = 0; i < n; i++) {
		CHECK(r[i].len > 0 && r[i].data != NULL);
		volatile unsigned char sink = r[i].data[r[i].len - 1]; /* ASan: the whole buffer is ours */
		(void)sink;
	}
	dns_tlsa_free(r, n);
	return 0;
}
