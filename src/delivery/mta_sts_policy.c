/*
 * mta_sts_policy: the pure parts of MTA-STS (RFC 8461): the TXT record,
 * the policy file, and matching an MX host against the policy's patterns.
 * Outside bytes: every field is length-checked, unknown keys are ignored
 * (RFC 8461 3.2), and anything else malformed makes the policy invalid.
 */
#include "mta_sts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#define POLICY_MAX (64 * 1024) /* RFC 8461 3.3: senders may refuse larger bodies */
#define MAX_AGE_LIMIT 31557600 /* RFC 8461 3.2: at most a year */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* RFC 8461 3.1: sts-id = 1*32(ALPHA / DIGIT). */
static bool valid_id(const char *v, size_t n)
{
	if (n < 1 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((v[i] >= '0' && v[i] <= '9') || ((v[i] | 0x20) >= 'a' && (v[i] | 0x20) <= 'z')))
			return false;
	return true;
}

int mta_sts_parse_txt(const char *txt, char id[33])
{
	/* "v=STSv1" must be the first field (RFC 8461 3.1). */
	if (strncmp(txt, "v=STSv1", 7) != 0)
		return -EINVAL;
	const char *p = txt + 7;
	bool have_id = false;
	while (*p) {
		while (is_ws(*p))
			p++;
		if (*p != ';')
			return -EINVAL;
		p++;
		while (is_ws(*p))
			p++;
		if (!*p)
			break;
		const char *k = p, *eq = strchr(p, '='), *end = strchr(p, ';');
		if (!eq || (end && eq > end))
			return -EINVAL;
		const char *v = eq + 1;
		size_t vn = end ? (size_t)(end - v) : strlen(v);
		while (vn && is_ws(v[vn - 1]))
			vn--;
		if ((size_t)(eq - k) == 2 && strncmp(k, "id", 2) == 0) {
			if (!valid_id(v, vn))
				return -EINVAL;
			memcpy(id, v, vn);
			id[vn] = '\0';
			have_id = true;
		}
		p = end ? end : v + strlen(v);
	}
	return have_id ? 0 : -EINVAL;
}

/* A policy's mx value: a host name, or "*." and one (RFC 8461 3.2, 4.1). */
static bool valid_mx_pattern(const char *v)
{
	const char *h = strncmp(v, "*.", 2) == 0 ? v + 2 : v;
	return is_host_name(h, strlen(h));
}

static int set_why(char *why, size_t n, const char *text)
{
	snprintf(why, n, "%s", text);
	return -EINVAL;
}

/* One "key: value" line of the policy; 0, or -EINVAL with why. */
static int policy_line(struct mta_sts_policy *p, const char *line, bool *seen_version, char *why, size_t whylen)
{
	const char *colon = strchr(line, ':');
	if (!colon)
		return set_why(why, whylen, "a line without ':'");
	size_t kn = (size_t)(colon - line);
	const char *v = colon + 1;
	while (is_ws(*v))
		v++;
	char val[256];
	size_t vn = strlen(v);
	while (vn && is_ws(v[vn - 1]))
		vn--;
	if (vn >= sizeof(val))
		return set_why(why, whylen, "a value too long");
	memcpy(val, v, vn);
	val[vn] = '\0';
	if (kn == 7 && strncmp(line, "version", 7) == 0) {
		if (strcmp(val, "STSv1") != 0)
			return set_why(why, whylen, "version is not STSv1");
		*seen_version = true;
	} else if (kn == 4 && strncmp(line, "mode", 4) == 0) {
		if (strcmp(val, "enforce") == 0)
			p->mode = MTA_STS_MODE_ENFORCE;
		else if (strcmp(val, "testing") == 0)
			p->mode = MTA_STS_MODE_TESTING;
		else if (strcmp(val, "none") == 0)
			p->mode = MTA_STS_MODE_NONE;
		else
			return set_why(why, whylen, "mode is not enforce, testing or none");
	} else if (kn == 7 && strncmp(line, "max_age", 7) == 0) {
		char *end;
		if (!vn || vn > 10 || val[0] < '0' || val[0] > '9')
			return set_why(why, whylen, "max_age is not a number");
		unsigned long long a = strtoull(val, &end, 10);
		if (*end)
			return set_why(why, whylen, "max_age is not a number");
		p->max_age = a > MAX_AGE_LIMIT ? MAX_AGE_LIMIT : (int64_t)a;
	} else if (kn == 2 && strncmp(line, "mx", 2) == 0) {
		ascii_lower(val, vn);
		if (!valid_mx_pattern(val))
			return set_why(why, whylen, "an mx value is not a host name pattern");
		if (p->nmx < MTA_STS_MAX_MX)
			memcpy(p->mx[p->nmx++], val, vn + 1);
	}
	return 0; /* other keys are extensions: ignored */
}

int mta_sts_parse_policy(const char *text, size_t n, struct mta_sts_policy *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	out->max_age = -1;
	if (n > POLICY_MAX)
		return set_why(why, whylen, "the policy is larger than 64 KiB");
	bool seen_version = false, seen_mode = false;
	size_t i = 0;
	while (i < n) {
		size_t e = i;
		while (e < n && text[e] != '\n')
			e++;
		size_t len = e - i;
		if (len && text[i + len - 1] == '\r')
			len--;
		char line[512];
		if (len >= sizeof(line))
			return set_why(why, whylen, "a line too long");
		memcpy(line, text + i, len);
		line[len] = '\0';
		if (memchr(line, '\0', len))
			return set_why(why, whylen, "a NUL byte");
		if (len) {
			seen_mode |= strncmp(line, "mode:", 5) == 0;
			if (policy_line(out, line, &seen_version, why, whylen) < 0)
				return -EINVAL;
		}
		i = e + 1;
	}
	if (!seen_version || !seen_mode || out->max_age < 0)
		return set_why(why, whylen, "version, mode or max_age is missing");
	if (out->mode != MTA_STS_MODE_NONE && !out->nmx)
		return set_why(why, whylen, "no mx in the policy");
	return 0;
}

bool mta_sts_mx_matches(const struct mta_sts_policy *p, const char *host)
{
	for (size_t i = 0; i < p->nmx; i++) {
		const char *pat = p->mx[i];
		if (strncmp(pat, "*.", 2) == 0) {
			/* A wildcard stands for exactly one leftmost label (RFC 8461 4.1). */
			const char *dot = strchr(host, '.');
			if (dot && dot != host && strcmp(dot + 1, pat + 2) == 0)
				return true;
		} else if (strcmp(pat, host) == 0) {
			return true;
		}
	}
	return false;
}
