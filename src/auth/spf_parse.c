/*
 * spf_parse: the SPF record parser, macro expander and CIDR matching of
 * RFC 7208, pure (no I/O) so that they are unit-tested and fuzzed alone.
 * Called by spf.c. Every syntax error of 12 (the ABNF) is -EINVAL, which
 * spf.c turns into permerror; nothing here trusts a length it did not
 * count. A parsed record's strings point into the record text.
 */
#include "spf_parse.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

bool spf_is_record(const char *txt)
{
	return ascii_ieq(txt, strnlen(txt, 6), "v=spf1", 6) && (txt[6] == ' ' || txt[6] == '\0');
}

bool spf_domain_is_valid(const char *d)
{
	size_t n = strlen(d), label = 0, labels = 0;
	if (n && d[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = d[i];
		if (c == '.') {
			if (label == 0)
				return false;
			labels++;
			label = 0;
		} else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false; /* a literal, or bytes no host name has */
		}
	}
	return label > 0 && labels >= 1;
}

/* ---- macros (section 7.1) ---- */

static bool is_delim(char c)
{
	return strchr(".-+,/_=", c) != NULL && c != '\0';
}

/*
 * Reads one macro-expand at s[0] == '%'; returns its length, or 0 for a
 * syntax error. letter: the macro letter (lower case) or '%', '_', '-'.
 */
static size_t macro_scan(const char *s, size_t len, bool exp, char *letter)
{
	if (len < 2)
		return 0;
	if (s[1] == '%' || s[1] == '_' || s[1] == '-') {
		*letter = s[1];
		return 2;
	}
	if (s[1] != '{' || len < 4)
		return 0;
	char l = lower(s[2]);
	if (!strchr("slodiphv", l) && !(exp && strchr("crt", l)))
		return 0;
	*letter = l;
	size_t i = 3;
	if (i < len && s[i] == '0')
		return 0; /* keep no part at all: no meaning (7.1) */
	while (i < len && is_digit(s[i]))
		i++;
	if (i < len && lower(s[i]) == 'r')
		i++;
	while (i < len && is_delim(s[i]))
		i++;
	return i < len && s[i] == '}' ? i + 1 : 0;
}

/* A macro-string (7.1): macro-expand or macro-literal (%x21-24 / %x26-7E; space too in exp). */
static bool macro_string_ok(const char *s, size_t len, bool exp)
{
	for (size_t i = 0; i < len;) {
		char letter;
		if (s[i] == '%') {
			size_t m = macro_scan(s + i, len - i, exp, &letter);
			if (!m)
				return false;
			i += m;
		} else if ((unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f) {
			i++;
		} else if (exp && s[i] == ' ') {
			i++;
		} else {
			return false;
		}
	}
	return true;
}

bool spf_uses_p(const char *s, size_t len)
{
	for (size_t i = 0; i + 2 < len; i++)
		if (s[i] == '%' && s[i + 1] == '{' && lower(s[i + 2]) == 'p')
			return true;
		else if (s[i] == '%' && s[i + 1] == '%')
			i++;
	return false;
}

/* toplabel (12): alphanumeric with a letter, or with an inner dash. */
static bool toplabel_ok(const char *s, size_t n)
{
	bool alpha = false, dash = false;
	if (n == 0 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (is_alpha(s[i]))
			alpha = true;
		else if (s[i] == '-')
			dash = true;
		else if (!is_digit(s[i]))
			return false;
	}
	return alpha || dash;
}

/* domain-spec = macro-string domain-end; domain-end = "." toplabel ["."] / macro-expand. */
static bool domain_spec_ok(const char *s, size_t len)
{
	if (len == 0 || !macro_string_ok(s, len, false))
		return false;
	if (s[len - 1] == '}' || (len >= 2 && s[len - 2] == '%'))
		return true; /* ends in a macro-expand (the scan above checked it) */
	size_t end = len;
	if (s[end - 1] == '.')
		end--;
	size_t dot = end;
	while (dot > 0 && s[dot - 1] != '.')
		dot--;
	return dot > 0 && toplabel_ok(s + dot, end - dot);
}

static void put_escaped(struct buf *b, const char *v, size_t n, bool escape)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (escape && !(is_alpha((char)c) || is_digit((char)c) || strchr("-._~", c)))
			buf_printf(b, "%%%02X", c);
		else
			buf_append(b, &v[i], 1);
	}
}

static void macro_value(const struct spf_macro_env *env, char letter, struct buf *v)
{
	static const char hex[] = "0123456789abcdef";
	char ip[INET6_ADDRSTRLEN];
	const char *s = NULL;
	switch (letter) {
	case 's': s = env->sender; break;
	case 'l': s = env->local; break;
	case 'o': s = env->sender_domain; break;
	case 'd': s = env->domain; break;
	case 'h': s = env->helo; break;
	case 'r': s = env->receiver ? env->receiver : "unknown"; break;
	case 'p': s = env->ptr ? env->ptr : "unknown"; break;
	case 'v': s = env->family == AF_INET6 ? "ip6" : "in-addr"; break;
	case 't': buf_printf(v, "%" PRId64, env->now); return;
	case 'c':
		if (inet_ntop(env->family, env->ip, ip, sizeof(ip)))
			buf_append_str(v, ip);
		return;
	case 'i':
		if (env->family == AF_INET6) {
			for (int k = 0; k < 16; k++)
				buf_printf(v, "%s%c.%c", k ? "." : "", hex[env->ip[k] >> 4], hex[env->ip[k] & 15]);
		} else {
			buf_printf(v, "%u.%u.%u.%u", env->ip[0], env->ip[1], env->ip[2], env->ip[3]);
		}
		return;
	default: break;
	}
	if (s)
		buf_append_str(v, s);
}

/* Applies digits, 'r' and delimiters (7.3) to the value of one macro, appending to out. */
static void macro_transform(const char *m, size_t mlen, const char *val, size_t vlen, struct buf *out)
{
	size_t i = 3, digits = 0;
	bool has_digits = false, reverse = false;
	while (i < mlen && is_digit(m[i])) {
		if (digits < 1000)
			digits = digits * 10 + (size_t)(m[i] - '0');
		has_digits = true;
		i++;
	}
	if (i < mlen && lower(m[i]) == 'r') {
		reverse = true;
		i++;
	}
	const char *delims = m + i;
	size_t ndelims = mlen - 1 - i;
	if (ndelims == 0) {
		delims = ".";
		ndelims = 1;
	}
	/* Split into parts at any delimiter, keep their bounds. */
	size_t nparts = 1;
	for (size_t k = 0; k < vlen; k++)
		nparts += memchr(delims, val[k], ndelims) != NULL;
	size_t *start = xcalloc(nparts, sizeof(*start)), *end = xcalloc(nparts, sizeof(*end));
	size_t p = 0;
	for (size_t k = 0; k <= vlen; k++) {
		if (k == vlen || memchr(delims, val[k], ndelims)) {
			end[p++] = k;
			if (p < nparts)
				start[p] = k + 1;
		}
	}
	size_t keep = has_digits && digits < nparts ? digits : nparts;
	bool uc = m[2] >= 'A' && m[2] <= 'Z';
	for (size_t k = 0; k < keep; k++) {
		/* The rightmost `keep` parts, in (possibly reversed) order. */
		size_t idx = reverse ? keep - 1 - k : nparts - keep + k;
		if (k)
			buf_append(out, ".", 1);
		put_escaped(out, val + start[idx], end[idx] - start[idx], uc);
	}
	free(start);
	free(end);
}

/* Cuts whole labels from the left until the name fits 253 characters (7.3). */
static void domain_trim(struct buf *b)
{
	while (b->len && b->data[b->len - 1] == '.')
		b->len--;
	size_t off = 0;
	while (b->len - off > 253) {
		const char *dot = memchr(b->data + off, '.', b->len - off);
		off = dot ? (size_t)(dot - (const char *)b->data) + 1 : b->len;
	}
	if (off) {
		memmove(b->data, b->data + off, b->len - off);
		b->len -= off;
	}
}

int spf_expand(const char *s, size_t len, const struct spf_macro_env *env, bool exp, char *out, size_t n)
{
	if (!macro_string_ok(s, len, exp))
		return -EINVAL;
	struct buf b = {0}, v = {0};
	int rc = 0;
	for (size_t i = 0; i < len && rc == 0;) {
		char letter;
		if (s[i] != '%') {
			buf_append(&b, &s[i++], 1);
			continue;
		}
		size_t m = macro_scan(s + i, len - i, exp, &letter);
		if (letter == '%' || letter == '_' || letter == '-') {
			buf_append_str(&b, letter == '%' ? "%" : letter == '_' ? " " : "%20");
		} else {
			buf_reset(&v);
			macro_value(env, letter, &v);
			macro_transform(s + i, m, (const char *)v.data, v.len, &b);
		}
		i += m;
		if (b.len > SPF_EXPAND_MAX)
			rc = -E2BIG;
	}
	if (rc == 0 && !exp)
		domain_trim(&b);
	if (rc == 0 && b.len >= n)
		rc = -E2BIG;
	if (rc == 0) {
		if (b.len)
			memcpy(out, b.data, b.len);
		out[b.len] = '\0';
	}
	buf_free(&b);
	buf_free(&v);
	return rc;
}

/* ---- the record (4.6, 5, 6) ---- */

bool spf_cidr_match(int family, const unsigned char *ip, const unsigned char *net, unsigned bits)
{
	unsigned max = family == AF_INET6 ? 128 : 32;
	if (bits > max)
		return false;
	size_t whole = bits / 8;
	if (memcmp(ip, net, whole) != 0)
		return false;
	if (bits % 8 == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - bits % 8));
	return (ip[whole] & mask) == (net[whole] & mask);
}

/* "/" 1*DIGIT without a leading zero, at most max. */
static bool cidr_ok(const char *s, size_t n, unsigned max, unsigned *out)
{
	if (n == 0 || n > 3 || (n > 1 && s[0] == '0'))
		return false;
	unsigned v = 0;
	for (size_t i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return false;
		v = v * 10 + (unsigned)(s[i] - '0');
	}
	if (v > max)
		return false;
	*out = v;
	return true;
}

/* Length of the trailing "/" 1*DIGIT of s[0..n), 0 if none. */
static size_t trailing_slash_digits(const char *s, size_t n)
{
	size_t k = n;
	while (k > 0 && is_digit(s[k - 1]))
		k--;
	return k < n && k > 0 && s[k - 1] == '/' ? n - k + 1 : 0;
}

/* dual-cidr-length at the end of arg (a, mx): strips it, checks it. */
static int dual_cidr(const char *arg, size_t *len, struct spf_term *t)
{
	size_t n = *len, k = trailing_slash_digits(arg, n);
	if (k && n > k && arg[n - k - 1] == '/') {
		if (!cidr_ok(arg + n - k + 1, k - 1, 128, &t->cidr6))
			return -EINVAL;
		n -= k + 1;
		k = trailing_slash_digits(arg, n);
	}
	if (k) {
		if (!cidr_ok(arg + n - k + 1, k - 1, 32, &t->cidr4))
			return -EINVAL;
		n -= k;
	}
	*len = n;
	return 0;
}

/* ip4:network[/len] or ip6:network[/len]. */
static int parse_ip(const char *arg, size_t n, bool v6, struct spf_term *t)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *slash = memchr(arg, '/', n);
	size_t alen = slash ? (size_t)(slash - arg) : n;
	if (alen == 0 || alen >= sizeof(addr))
		return -EINVAL;
	memcpy(addr, arg, alen);
	addr[alen] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, addr, t->ip) != 1)
		return -EINVAL;
	unsigned *bits = v6 ? &t->cidr6 : &t->cidr4;
	*bits = v6 ? 128 : 32;
	if (slash && !cidr_ok(slash + 1, n - alen - 1, v6 ? 128 : 32, bits))
		return -EINVAL;
	return 0;
}

static const struct {
	const char *name;
	enum spf_mech mech;
	bool spec_required, spec_allowed, cidr;
} mechs[] = {
	{"all", SPF_M_ALL, false, false, false},
	{"include", SPF_M_INCLUDE, true, true, false},
	{"a", SPF_M_A, false, true, true},
	{"mx", SPF_M_MX, false, true, true},
	{"ptr", SPF_M_PTR, false, true, false},
	{"ip4", SPF_M_IP4, true, false, false},
	{"ip6", SPF_M_IP6, true, false, false},
	{"exists", SPF_M_EXISTS, true, true, false},
};

static int parse_mech(const char *s, size_t n, struct spf_term *t)
{
	t->qual = SPF_PASS;
	if (n && strchr("+-~?", s[0])) {
		t->qual = s[0] == '+' ? SPF_PASS : s[0] == '-' ? SPF_FAIL : s[0] == '~' ? SPF_SOFTFAIL : SPF_NEUTRAL;
		s++;
		n--;
	}
	size_t name = 0;
	while (name < n && s[name] != ':' && s[name] != '/')
		name++;
	size_t i = 0;
	while (i < ARRAY_LEN(mechs) && !ascii_ieq(s, name, mechs[i].name, strlen(mechs[i].name)))
		i++;
	if (i == ARRAY_LEN(mechs))
		return -EINVAL;
	t->mech = mechs[i].mech;
	t->cidr4 = 32;
	t->cidr6 = 128;
	const char *arg = s + name;
	size_t alen = n - name;
	if (t->mech == SPF_M_IP4 || t->mech == SPF_M_IP6)
		return alen && arg[0] == ':' ? parse_ip(arg + 1, alen - 1, t->mech == SPF_M_IP6, t) : -EINVAL;
	if (mechs[i].cidr && dual_cidr(arg, &alen, t) < 0)
		return -EINVAL;
	if (alen == 0)
		return mechs[i].spec_required ? -EINVAL : 0;
	if (arg[0] != ':' || !mechs[i].spec_allowed || !domain_spec_ok(arg + 1, alen - 1))
		return -EINVAL;
	t->spec = arg + 1;
	t->spec_len = alen - 1;
	return 0;
}

/* name "=" macro-string; redirect and exp at most once each (6). */
static int parse_modifier(const char *s, size_t n, size_t eq, struct spf_record *r)
{
	const char *v = s + eq + 1;
	size_t vlen = n - eq - 1;
	const char **slot = NULL;
	size_t *slot_len = NULL;
	if (ascii_ieq(s, eq, "redirect", 8)) {
		slot = &r->redirect;
		slot_len = &r->redirect_len;
	} else if (ascii_ieq(s, eq, "exp", 3)) {
		slot = &r->exp;
		slot_len = &r->exp_len;
	} else {
		return macro_string_ok(v, vlen, true) ? 0 : -EINVAL; /* unknown: ignored (6) */
	}
	if (*slot || !domain_spec_ok(v, vlen))
		return -EINVAL;
	*slot = v;
	*slot_len = vlen;
	return 0;
}

/* Where a term is a modifier: the offset of its "=" after a valid name, else 0. */
static size_t modifier_eq(const char *s, size_t n)
{
	if (n == 0 || !is_alpha(s[0]))
		return 0;
	size_t i = 1;
	while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || strchr("-_.", s[i])))
		i++;
	return i < n && s[i] == '=' ? i : 0;
}

int spf_parse_record(const char *txt, struct spf_record *out)
{
	memset(out, 0, sizeof(*out));
	if (!spf_is_record(txt))
		return -EINVAL;
	/* One slot per run of non-spaces: a record of spaces costs nothing. */
	size_t len = strlen(txt), cap = 0;
	for (size_t i = 6; i < len; i++)
		cap += txt[i] != ' ' && txt[i - 1] == ' ';
	out->terms = xcalloc(cap ? cap : 1, sizeof(*out->terms));
	for (size_t i = 6; i < len;) {
		if (txt[i] == ' ') {
			i++;
			continue;
		}
		if (i == 6) /* "v=spf1" runs into the first term */
			goto bad;
		size_t n = 0;
		while (i + n < len && txt[i + n] != ' ')
			n++;
		size_t eq = modifier_eq(txt + i, n);
		if (eq) {
			if (parse_modifier(txt + i, n, eq, out) < 0)
				goto bad;
		} else if (n && txt[i] == '=') {
			goto bad; /* a modifier without a name */
		} else {
			assert(out->n < cap);
			if (parse_mech(txt + i, n, &out->terms[out->n]) < 0)
				goto bad;
			out->n++;
		}
		i += n;
	}
	return 0;
bad:
	spf_record_free(out);
	return -EINVAL;
}

void spf_record_free(struct spf_record *r)
{
	free(r->terms);
	memset(r, 0, sizeof(*r));
}
