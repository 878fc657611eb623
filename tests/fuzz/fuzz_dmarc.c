// fuzz-sources: src/auth/dmarc_parse.c src/base/util.c
/*
 * fuzz_dmarc: libFuzzer target for the pure parts of DMARC: the policy
 * record (dmarc_parse_record, dmarc_txt_is_dmarc), the author domain of a
 * From: value (dmarc_from_domain) and alignment (dmarc_aligned, with a
 * stand-in organisational domain: the last two labels, so libpsl stays out).
 * The first input byte picks: bit 0 set, the rest is a record; clear, a
 * From: value. Both copies are exactly the input's size plus the NUL, so
 * ASan sees any read past the end.
 * Besides memory safety it checks: results are 0 or -EINVAL, a failure
 * says why; the same input gives the same result twice; a parsed record has
 * policies in range, pct at most 100, sp equal to p unless sp= was valid,
 * and only a record that passes dmarc_txt_is_dmarc parses; a From: domain
 * is a lower-case host name, aligned with itself strictly and relaxed, with
 * its upper-case form strictly, and with "x." plus itself relaxed only.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dmarc_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static bool last_two_labels(const char *domain, char *out, size_t n)
{
	const char *dot = strrchr(domain, '.');
	if (!dot || dot == domain)
		return false;
	const char *p = dot;
	while (p > domain && p[-1] != '.')
		p--;
	return fmt(out, n, "%s", p) == 0;
}

static void fuzz_record(const char *txt)
{
	struct dmarc_record a, b;
	const char *why = NULL, *why2 = NULL;
	int rc = dmarc_parse_record(txt, &a, &why);
	CHECK(rc == 0 || rc == -EINVAL);
	CHECK(rc == 0 || (why && why[0]));
	CHECK(rc != 0 || dmarc_txt_is_dmarc(txt));
	int rc2 = dmarc_parse_record(txt, &b, &why2);
	CHECK(rc == rc2);
	if (rc < 0)
		return;
	CHECK(a.p <= DMARC_P_REJECT && a.sp <= DMARC_P_REJECT && a.pct <= 100);
	CHECK(a.has_sp || a.sp == a.p);
	CHECK(!a.p_from_rua || (a.p == DMARC_P_NONE && !a.has_sp));
	CHECK(a.p == b.p && a.sp == b.sp && a.pct == b.pct && a.adkim_strict == b.adkim_strict &&
	      a.aspf_strict == b.aspf_strict && a.p_from_rua == b.p_from_rua);
	for (unsigned d = 0; d < 100; d += 33)
		CHECK(dmarc_apply_pct(a.p, a.pct, d) <= a.p);
}

static void fuzz_from(const char *value)
{
	char dom[256], again[256];
	const char *why = NULL;
	int rc = dmarc_from_domain(value, dom, sizeof(dom), &why);
	CHECK(rc == 0 || rc == -EINVAL);
	CHECK(rc == 0 || (why && why[0]));
	CHECK(rc == dmarc_from_domain(value, again, sizeof(again), &why));
	if (rc < 0)
		return;
	size_t len = strlen(dom);
	CHECK(strcmp(dom, again) == 0 && is_host_name(dom, len));
	char upper[256], sub[260];
	memcpy(upper, dom, len + 1);
	for (size_t i = 0; i < len; i++)
		if (upper[i] >= 'a' && upper[i] <= 'z')
			upper[i] = (char)(upper[i] - 'a' + 'A');
	CHECK(dmarc_aligned(dom, dom, true, last_two_labels));
	CHECK(dmarc_aligned(dom, dom, false, last_two_labels));
	CHECK(dmarc_aligned(upper, dom, true, last_two_labels));
	CHECK(fmt(sub, sizeof(sub), "x.%s", dom) == 0);
	CHECK(!dmarc_aligned(sub, dom, true, last_two_labels));
	CHECK(dmarc_aligned(sub, dom, false, last_two_labels) == (strchr(dom, '.') != NULL));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *s = malloc(size);
	CHECK(s);
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	if (data[0] & 1)
		fuzz_record(s);
	else
		fuzz_from(s);
	free(s);
	return 0;
}
