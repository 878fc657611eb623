// fuzz-sources: src/delivery/mta_sts_policy.c src/base/util.c
/*
 * fuzz_mta_sts: libFuzzer target for the pure parts of MTA-STS: the policy
 * file a domain's HTTPS server sends (mta_sts_parse_policy), its TXT
 * records (mta_sts_parse_txt, mta_sts_pick_txt) and mx matching.
 * The first input byte picks: bit 0 set, the rest is TXT records, one per
 * line (each also parsed alone); clear, the rest is a policy body.
 * Besides memory safety it checks: results are 0 or the documented errors;
 * an id is 1-32 letters and digits; a pick succeeds only with exactly one
 * record that begins as an STS one, and gives that record's id; a parsed
 * policy has a mode, a max_age within a year, mx patterns that are lower
 * case, NUL-terminated and match a host built from them (and a wildcard
 * never matches its own base name nor two labels more); the same input
 * parses the same twice; a failure always says why.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "delivery/mta_sts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define MAX_RECORDS 8

static void check_id(const char id[33])
{
	size_t n = strlen(id);
	CHECK(n >= 1 && n <= 32);
	for (size_t i = 0; i < n; i++)
		CHECK((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z'));
}

static void fuzz_txt(const char *p, size_t n)
{
	char *copy = malloc(n + 1);
	CHECK(copy);
	memcpy(copy, p, n);
	copy[n] = '\0';
	const char *recs[MAX_RECORDS];
	size_t nrecs = 0;
	for (char *s = copy, *nl; s && nrecs < MAX_RECORDS; s = nl) {
		nl = strchr(s, '\n');
		if (nl)
			*nl++ = '\0';
		recs[nrecs++] = s;
	}
	size_t sts = 0, last = 0;
	for (size_t i = 0; i < nrecs; i++) {
		char id[33];
		int rc = mta_sts_parse_txt(recs[i], id);
		CHECK(rc == 0 || rc == -EINVAL);
		CHECK(rc != 0 || mta_sts_txt_is_sts(recs[i]));
		if (rc == 0)
			check_id(id);
		if (mta_sts_txt_is_sts(recs[i]))
			sts++, last = i;
	}
	char id[33];
	int rc = mta_sts_pick_txt(recs, nrecs, id);
	CHECK(rc == 0 || rc == -EINVAL || rc == -ENOENT);
	CHECK((rc == -ENOENT) == (sts == 0));
	if (rc == 0) {
		CHECK(sts == 1);
		char again[33];
		CHECK(mta_sts_parse_txt(recs[last], again) == 0 && strcmp(again, id) == 0);
		check_id(id);
	}
	free(copy);
}

static void check_policy(const struct mta_sts_policy *p)
{
	CHECK(p->mode == MTA_STS_MODE_NONE || p->mode == MTA_STS_MODE_TESTING || p->mode == MTA_STS_MODE_ENFORCE);
	CHECK(p->max_age >= 0 && p->max_age <= 31557600);
	CHECK(p->nmx <= MTA_STS_MAX_MX && (p->nmx > 0 || p->mode == MTA_STS_MODE_NONE));
	for (size_t i = 0; i < p->nmx; i++) {
		const char *pat = p->mx[i];
		size_t len = strnlen(pat, sizeof(p->mx[i]));
		CHECK(len > 0 && len < sizeof(p->mx[i]));
		for (size_t k = 0; k < len; k++)
			CHECK(pat[k] < 'A' || pat[k] > 'Z');
		/* The pattern alone in a policy: what it matches, and what it must not. */
		static struct mta_sts_policy one;
		memset(&one, 0, sizeof(one));
		one.nmx = 1;
		memcpy(one.mx[0], pat, len + 1);
		char host[300];
		if (pat[0] == '*') {
			CHECK(pat[1] == '.');
			CHECK(!mta_sts_mx_matches(&one, pat + 2));
			memcpy(host, "a", 1);
			memcpy(host + 1, pat + 1, len); /* "a.rest" and its NUL */
			CHECK(mta_sts_mx_matches(&one, host) && mta_sts_mx_matches(p, host));
			memcpy(host, "b.a", 3);
			memcpy(host + 3, pat + 1, len); /* "b.a.rest": two labels more */
			CHECK(!mta_sts_mx_matches(&one, host));
		} else {
			CHECK(mta_sts_mx_matches(&one, pat) && mta_sts_mx_matches(p, pat));
		}
	}
}

static void fuzz_policy(const char *p, size_t n)
{
	char *body = malloc(n ? n : 1); /* exactly n bytes: ASan sees a read past the end */
	CHECK(body);
	memcpy(body, p, n);
	struct mta_sts_policy *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	CHECK(a && b);
	char why[128] = "", why2[128] = "";
	int rc = mta_sts_parse_policy(body, n, a, why, sizeof(why));
	CHECK(rc == 0 || rc == -EINVAL);
	CHECK(rc == 0 || why[0]);
	int rc2 = mta_sts_parse_policy(body, n, b, why2, sizeof(why2));
	CHECK(rc == rc2);
	if (rc == 0) {
		check_policy(a);
		CHECK(a->mode == b->mode && a->max_age == b->max_age && a->nmx == b->nmx);
		for (size_t i = 0; i < a->nmx; i++)
			CHECK(strcmp(a->mx[i], b->mx[i]) == 0);
	}
	free(a);
	free(b);
	free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		fuzz_txt((const char *)data + 1, size - 1);
	else
		fuzz_policy((const char *)data + 1, size - 1);
	return 0;
}
