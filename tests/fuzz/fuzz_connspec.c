// fuzz-sources: src/base/connspec.c src/base/util.c
/*
 * fuzz_connspec: libFuzzer target for the parsers of the abuse defences at
 * connect (connspec.h). The first input byte picks: 0, a DNSBL site
 * (connspec_parse_dnsbl, and connspec_parse_zone on the same text); 1, a
 * rate; 2, a CIDR block. The copy is exactly the input's size plus the NUL,
 * so ASan sees any read past the end.
 * Besides memory safety it checks: results are 0 or -EINVAL, the same twice;
 * a parsed site keeps its text, has a lower-case host-name zone, a weight
 * within +-CONNSPEC_WEIGHT_MAX and at most CONNSPEC_CODES_MAX patterns, and
 * lists an address the same way twice (without codes: exactly 127/8); a
 * rate and a block print to text that parses back to the same value; a
 * block contains its own network address.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/connspec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void site(const char *s)
{
	static struct connspec_dnsbl a, b;
	int rc = connspec_parse_dnsbl(s, &a);
	CHECK(rc == 0 || rc == -EINVAL);
	CHECK(connspec_parse_dnsbl(s, &b) == rc);
	char zone[254];
	int zrc = connspec_parse_zone(s, zone);
	CHECK(zrc == 0 || zrc == -EINVAL);
	if (rc < 0)
		return;
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	CHECK(strcmp(a.text, s) == 0);
	CHECK(is_host_name(a.zone, strlen(a.zone)));
	for (const char *p = a.zone; *p; p++)
		CHECK(!(*p >= 'A' && *p <= 'Z'));
	CHECK(a.weight >= -CONNSPEC_WEIGHT_MAX && a.weight <= CONNSPEC_WEIGHT_MAX);
	CHECK(a.ncodes <= CONNSPEC_CODES_MAX);
	if (!strpbrk(s, "=*"))
		CHECK(zrc == 0 && strcmp(zone, a.zone) == 0);
	const uint8_t probes[][4] = {{127, 0, 0, 2}, {127, 0, 0, 1}, {10, 0, 0, 2}, {127, 1, 2, 3}, {255, 255, 255, 255}};
	for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
		bool m = connspec_dnsbl_matches(&a, probes[i]);
		CHECK(m == connspec_dnsbl_matches(&a, probes[i]));
		if (!a.ncodes)
			CHECK(m == (probes[i][0] == 127));
	}
}

static void rate(const char *s)
{
	struct connspec_rate a, b;
	int rc = connspec_parse_rate(s, &a);
	CHECK(rc == 0 || rc == -EINVAL);
	if (rc < 0)
		return;
	CHECK(a.count == 0 || a.period == 1 || a.period == 60 || a.period == 3600);
	char buf[32];
	CHECK(connspec_parse_rate(connspec_fmt_rate(buf, sizeof(buf), &a), &b) == 0);
	CHECK(a.count == b.count && (a.count == 0 || a.period == b.period));
}

static void block(const char *s)
{
	struct connspec_cidr a, b;
	int rc = connspec_parse_cidr(s, &a);
	CHECK(rc == 0 || rc == -EINVAL);
	if (rc < 0)
		return;
	CHECK(a.family == AF_INET || a.family == AF_INET6);
	CHECK(a.bits <= (a.family == AF_INET ? 32 : 128));
	char buf[64];
	CHECK(connspec_parse_cidr(connspec_fmt_cidr(buf, sizeof(buf), &a), &b) == 0);
	CHECK(memcmp(&a, &b, sizeof(a)) == 0);
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (a.family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, a.addr, 4);
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, a.addr, 16);
	}
	/* An IPv4-mapped network inside an IPv6 block is compared as IPv4: skip that corner. */
	if (a.family == AF_INET || !IN6_IS_ADDR_V4MAPPED((struct in6_addr *)a.addr))
		CHECK(connspec_cidr_match(&a, 1, (const struct sockaddr *)&ss));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4096)
		return 0;
	char *s = malloc(size);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if (strlen(s) == size - 1) { /* no NUL inside: a configuration value never has one */
		switch (data[0] % 3) {
		case 0:
			site(s);
			break;
		case 1:
			rate(s);
			break;
		default:
			block(s);
		}
	}
	free(s);
	return 0;
}
