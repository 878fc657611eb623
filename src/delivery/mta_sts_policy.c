/*
 * mta_sts_policy: the pure parts of MTA-STS (RFC 8461): the TXT record,
 * the choice among a name's TXT records, the policy file, and matching an
 * MX host against the policy's patterns. Called by mta_sts.c, the unit
 * tests and the fuzz target; no I/O, no allocation.
 * Outside bytes: every field is length-checked against the ABNF of RFC
 * 8461 3.1 and 3.2; unknown keys are ignored (3.2) whatever their length;
 * anything else malformed makes the record or the policy invalid, which
 * the caller treats as "no policy available" (5.1). Readings of the RFC
 * where it is silent: a policy that repeats version, mode or max_age, or
 * lists more mx patterns than we keep, is invalid (ambiguous, or a host we
 * would wrongly refuse); max_age above a year is cut to a year.
 */
#include "mta_sts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"

#define POLICY_MAX (64 * 1024) /* RFC 8461 3.3: senders may refuse larger bodies */
#define MAX_AGE_LIMIT 31557600 /* RFC 8461 3.2: at most a year */

static bool is_ws(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_alnum(char c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* RFC 8461 3.1: sts-id = 1*32(ALPHA / DIGIT). */
static bool valid_id(const char *v, size_t n)
{
	if (n < 1 || n > 32)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(v[i]))
			return false;
	return true;
}

/* RFC 8461 3.1 and 3.2: ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."). */
static bool valid_ext_name(const char *k, size_t n)
{
	if (n < 1 || n > 32 || !is_alnum(k[0]))
		return false;
	for (size_t i = 1; i < n; i++)
		if (!is_alnum(k[i]) && k[i] != '_' && k[i] != '-' && k[i] != '.')
			return false;
	return true;
}

/* RFC 8461 3.1: sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E). */
static bool valid_txt_ext_value(const char *v, size_t n)
{
	if (n < 1)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x21 || (unsigned char)v[i] > 0x7e || v[i] == ';' || v[i] == '=')
			return false;
	return true;
}

bool mta_sts_txt_is_sts(const char *txt)
{
	/* RFC 8461 3.1: records that do not begin with "v=STSv1;" are discarded (WSP may precede the ';'). */
	if (strncmp(txt, "v=STSv1", 7) != 0)
		return false;
	const char *p = txt + 7;
	while (is_ws(*p))
		p++;
	return *p == ';' || *p == '\0';
}

/* One "name=value" field of the TXT record (n bytes at f, delimiters stripped). */
static int txt_field(const char *f, size_t n, char id[33], bool *have_id)
{
	const char *eq = memchr(f, '=', n);
	if (!eq)
		return -EINVAL;
	size_t kn = (size_t)(eq - f), vn = n - kn - 1;
	if (kn == 2 && memcmp(f, "id", 2) == 0) {
		if (*have_id || !valid_id(eq + 1, vn))
			return -EINVAL;
		memcpy(id, eq + 1, vn);
		id[vn] = '\0';
		*have_id = true;
		return 0;
	}
	return valid_ext_name(f, kn) && valid_txt_ext_value(eq + 1, vn) ? 0 : -EINVAL;
}

int mta_sts_parse_txt(const char *txt, char id[33])
{
	if (!mta_sts_txt_is_sts(txt))
		return -EINVAL;
	const char *p = txt + 7;
	bool have_id = false;
	for (;;) {
		/* sts-field-delim = *WSP ";" *WSP; a final delimiter is allowed. */
		while (is_ws(*p))
			p++;
		if (!*p)
			break;
		if (*p != ';')
			return -EINVAL;
		p++;
		while (is_ws(*p))
			p++;
		if (!*p)
			break;
		size_t n = strcspn(p, "; \t");
		if (txt_field(p, n, id, &have_id) < 0)
			return -EINVAL;
		p += n;
	}
	return have_id ? 0 : -EINVAL;
}

int mta_sts_pick_txt(const char *const *txt, size_t n, char id[33])
{
	size_t found = 0, at = 0;
	for (size_t i = 0; i < n; i++)
		if (mta_sts_txt_is_sts(txt[i])) {
			found++;
			at = i;
		}
	if (found == 0)
		return -ENOENT;
	if (found > 1) /* RFC 8461 3.1: then the domain has no available policy */
		return -EINVAL;
	return mta_sts_parse_txt(txt[at], id);
}

/* A policy's mx value: a host name, or "*." and one (RFC 8461 3.2, 4.1). */
static bool valid_mx_pattern(const char *v, size_t n)
{
	if (n >= 2 && v[0] == '*' && v[1] == '.')
		return is_host_name(v + 2, n - 2);
	return is_host_name(v, n);
}

static int set_why(char *why, size_t n, const char *text)
{
	snprintf(why, n, "%s", text);
	return -EINVAL;
}

/* What has been seen of the fields that must appear once (RFC 8461 3.2). */
struct seen {
	bool version, mode, max_age;
};

static bool key_is(const char *k, size_t kn, const char *name)
{
	return kn == strlen(name) && memcmp(k, name, kn) == 0;
}

static int parse_mode(const char *v, size_t vn, enum mta_sts_mode *mode)
{
	if (key_is(v, vn, "enforce"))
		*mode = MTA_STS_MODE_ENFORCE;
	else if (key_is(v, vn, "testing"))
		*mode = MTA_STS_MODE_TESTING;
	else if (key_is(v, vn, "none"))
		*mode = MTA_STS_MODE_NONE;
	else
		return -EINVAL;
	return 0;
}

/* max_age-value = 1*10(DIGIT); a year at most. */
static int parse_max_age(const char *v, size_t vn, int64_t *age)
{
	if (vn < 1 || vn > 10)
		return -EINVAL;
	int64_t a = 0;
	for (size_t i = 0; i < vn; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		a = a * 10 + (v[i] - '0');
	}
	*age = a > MAX_AGE_LIMIT ? MAX_AGE_LIMIT : a;
	return 0;
}

static int add_mx(struct mta_sts_policy *p, const char *v, size_t vn, char *why, size_t whylen)
{
	if (vn > 2 && v[vn - 1] == '.')
		vn--; /* an absolute name: the same host */
	if (vn >= sizeof(p->mx[0]) || !valid_mx_pattern(v, vn))
		return set_why(why, whylen, "an mx value is not a host name pattern");
	if (p->nmx >= MTA_STS_MAX_MX)
		return set_why(why, whylen, "more mx patterns than we keep");
	memcpy(p->mx[p->nmx], v, vn);
	p->mx[p->nmx][vn] = '\0';
	ascii_lower(p->mx[p->nmx], vn);
	p->nmx++;
	return 0;
}

/* One "key: value" line of the policy (n bytes, no line end); 0, or -EINVAL with why. */
static int policy_line(struct mta_sts_policy *p, const char *line, size_t n, struct seen *seen, char *why,
		       size_t whylen)
{
	const char *colon = memchr(line, ':', n);
	if (!colon)
		return set_why(why, whylen, "a line without ':'");
	size_t kn = (size_t)(colon - line);
	const char *v = colon + 1;
	size_t vn = n - kn - 1;
	while (vn && is_ws(*v))
		v++, vn--;
	while (vn && is_ws(v[vn - 1]))
		vn--;
	if (key_is(line, kn, "version")) {
		if (seen->version || !key_is(v, vn, "STSv1"))
			return set_why(why, whylen, "version is not STSv1, or given twice");
		seen->version = true;
	} else if (key_is(line, kn, "mode")) {
		if (seen->mode || parse_mode(v, vn, &p->mode) < 0)
			return set_why(why, whylen, "mode is not enforce, testing or none, or given twice");
		seen->mode = true;
	} else if (key_is(line, kn, "max_age")) {
		if (seen->max_age || parse_max_age(v, vn, &p->max_age) < 0)
			return set_why(why, whylen, "max_age is not a number of seconds, or given twice");
		seen->max_age = true;
	} else if (key_is(line, kn, "mx")) {
		return add_mx(p, v, vn, why, whylen);
	} else if (!valid_ext_name(line, kn)) {
		return set_why(why, whylen, "a field name that is not one");
	}
	return 0; /* other fields are extensions: ignored (RFC 8461 3.2) */
}

int mta_sts_parse_policy(const char *text, size_t n, struct mta_sts_policy *out, char *why, size_t whylen)
{
	memset(out, 0, sizeof(*out));
	out->max_age = -1;
	if (n > POLICY_MAX)
		return set_why(why, whylen, "the policy is larger than 64 KiB");
	if (memchr(text, '\0', n))
		return set_why(why, whylen, "a NUL byte");
	struct seen seen = {false, false, false};
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(text + i, '\n', n - i);
		size_t e = nl ? (size_t)(nl - text) : n;
		size_t len = e - i;
		if (len && text[i + len - 1] == '\r') /* sts-policy-term = LF / CRLF */
			len--;
		if (len && policy_line(out, text + i, len, &seen, why, whylen) < 0)
			return -EINVAL;
		i = e + 1;
	}
	if (!seen.version || !seen.mode || !seen.max_age)
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
			if (dot && dot != host && strcasecmp(dot + 1, pat + 2) == 0)
				return true;
		} else if (strcasecmp(pat, host) == 0) {
			return true;
		}
	}
	return false;
}
