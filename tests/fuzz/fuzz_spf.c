// fuzz-sources: src/auth/spf_parse.c src/base/util.c
/*
 * fuzz_spf: libFuzzer target for the pure half of SPF: the record parser
 * (spf_parse_record) and the macro expander (spf_expand), RFC 7208.
 * The first input byte picks: bit 0 set, the rest is a macro-string,
 * expanded as a domain-spec and as exp text (bit 1: an IPv6 client);
 * clear, the rest is a record ("v=spf1 " is put in front when bit 1 is set).
 * Besides memory safety it checks: results are 0 or the documented errors;
 * a parsed record's strings lie inside the input, its CIDR lengths are in
 * range and its qualifiers valid; a domain expansion is at most 253
 * characters with no trailing dot; an expansion fits SPF_EXPAND_MAX; the
 * same input gives the same result twice.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "auth/spf_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_record(const char *txt)
{
	struct spf_record r, r2;
	int rc = spf_parse_record(txt, &r);
	CHECK(rc == 0 || rc == -EINVAL);
	int rc2 = spf_parse_record(txt, &r2);
	CHECK(rc == rc2);
	if (rc < 0) {
		CHECK(r.terms == NULL && r.n == 0);
		return;
	}
	size_t len = strlen(txt);
	CHECK(spf_is_record(txt));
	CHECK(r.n == r2.n);
	for (size_t i = 0; i < r.n; i++) {
		const struct spf_term *t = &r.terms[i];
		CHECK(t->qual == SPF_PASS || t->qual == SPF_FAIL || t->qual == SPF_SOFTFAIL || t->qual == SPF_NEUTRAL);
		CHECK(t->cidr4 <= 32 && t->cidr6 <= 128);
		CHECK(!t->spec || (t->spec > txt && t->spec + t->spec_len <= txt + len && t->spec_len > 0));
		CHECK(memcmp(t, &r2.terms[i], sizeof(*t)) == 0);
	}
	CHECK(!r.redirect || r.redirect + r.redirect_len <= txt + len);
	CHECK(!r.exp || r.exp + r.exp_len <= txt + len);
	spf_record_free(&r);
	spf_record_free(&r2);
}

static void check_expand(const char *s, size_t n, int family)
{
	struct spf_macro_env env = {
		.sender = "strong-bad@email.example.com", .local = "strong-bad",
		.sender_domain = "email.example.com", .domain = "email.example.com",
		.helo = "mx.example.org", .receiver = "mx.example.net", .ptr = NULL,
		.family = family, .ip = {192, 0, 2, 3, 0x20, 1, 0xd, 0xb8}, .now = 1700000000,
	};
	static char out[SPF_EXPAND_MAX + 1], again[SPF_EXPAND_MAX + 1];
	for (int exp = 0; exp < 2; exp++) {
		int rc = spf_expand(s, n, &env, exp, out, sizeof(out));
		CHECK(rc == 0 || rc == -EINVAL || rc == -E2BIG);
		int rc2 = spf_expand(s, n, &env, exp, again, sizeof(again));
		CHECK(rc == rc2);
		if (rc < 0)
			continue;
		size_t len = strlen(out);
		CHECK(len <= SPF_EXPAND_MAX && strcmp(out, again) == 0);
		if (!exp)
			CHECK(len <= 253 && (len == 0 || out[len - 1] != '.'));
	}
	(void)spf_uses_p(s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 8192)
		return 0;
	uint8_t mode = data[0];
	char *s = malloc(size + 8);
	if (!s)
		abort();
	size_t off = 0;
	if (!(mode & 1) && (mode & 2)) {
		memcpy(s, "v=spf1 ", 7);
		off = 7;
	}
	memcpy(s + off, data + 1, size - 1);
	s[off + size - 1] = '\0';
	if (mode & 1)
		check_expand(s, strlen(s), (mode & 2) ? AF_INET6 : AF_INET);
	else
		check_record(s);
	free(s);
	return 0;
}
