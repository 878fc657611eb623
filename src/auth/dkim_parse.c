/*
 * dkim_parse: the DKIM-Signature tag-list (RFC 6376 3.5) and the key record
 * (3.6.1), both tag-lists (3.2). Pure and bounded: fixed-size output, no
 * allocation, so the fuzzer can hammer it. Called by dkim.c.
 * Error policy: anything RFC 6376 calls a syntax error, a missing required
 * tag or an unsupported value is -EINVAL with a reason; dkim.c turns that
 * into permerror (RFC 8601 2.7.1).
 */
#include <errno.h>
#include <string.h>

#include "auth/dkim_parse.h"

#define MAX_TAGS 64

struct tag {
	const char *name, *val;
	size_t nlen, vlen;
};

static bool is_fws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_alpha(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* 1: one tag in *t; 0: the end; -EINVAL: not a tag-spec (RFC 6376 3.2). */
static int tag_next(const char **pp, const char *end, struct tag *t)
{
	const char *p = *pp;
	while (p < end && is_fws(*p))
		p++;
	if (p == end)
		return 0;
	const char *semi = memchr(p, ';', (size_t)(end - p));
	const char *e = semi ? semi : end, *q = p;
	if (!is_alpha(*q))
		return -EINVAL;
	while (q < e && (is_alpha(*q) || is_digit(*q) || *q == '_'))
		q++;
	t->name = p;
	t->nlen = (size_t)(q - p);
	while (q < e && is_fws(*q))
		q++;
	if (q == e || *q != '=')
		return -EINVAL;
	q++;
	while (q < e && is_fws(*q))
		q++;
	const char *ve = e;
	while (ve > q && is_fws(ve[-1]))
		ve--;
	for (const char *c = q; c < ve; c++) {
		unsigned char u = (unsigned char)*c;
		if ((u < 0x21 && !is_fws(*c)) || u > 0x7e)
			return -EINVAL;
	}
	t->val = q;
	t->vlen = (size_t)(ve - q);
	*pp = semi ? semi + 1 : end;
	return 1;
}

/* All the tags of a list, duplicates refused (RFC 6376 3.2). */
static int tag_list(const char *s, size_t n, struct tag *tags, size_t *ntags)
{
	const char *p = s, *end = s + n;
	size_t k = 0;
	int rc;
	while ((rc = tag_next(&p, end, &tags[k])) == 1) {
		for (size_t j = 0; j < k; j++)
			if (tags[j].nlen == tags[k].nlen && memcmp(tags[j].name, tags[k].name, tags[k].nlen) == 0)
				return -EINVAL;
		if (++k == MAX_TAGS)
			return -EINVAL;
	}
	*ntags = k;
	return rc;
}

static bool tag_is(const struct tag *t, const char *name)
{
	return t->nlen == strlen(name) && memcmp(t->name, name, t->nlen) == 0;
}

static bool val_is(const struct tag *t, const char *v)
{
	return ascii_ieq(t->val, t->vlen, v, strlen(v));
}

static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (is_digit(c))
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int dkim_base64_decode(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen)
{
	uint32_t acc = 0;
	size_t bits = 0, len = 0, pad = 0;
	for (size_t i = 0; i < n; i++) {
		if (is_fws(s[i]))
			continue;
		if (s[i] == '=') {
			pad++;
			continue;
		}
		int v = b64_value(s[i]);
		if (v < 0 || pad)
			return -EINVAL;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (len == cap)
				return -EINVAL;
			out[len++] = (unsigned char)(acc >> bits);
		}
	}
	/* Leftover bits: 0 (no pad), 2 (two "="), 4 (one "="); never 6. */
	if (bits == 6 || pad > 2 || (pad && pad != bits / 2))
		return -EINVAL;
	*outlen = len;
	return 0;
}

static int copy_val(const struct tag *t, char *out, size_t cap)
{
	if (t->vlen == 0 || t->vlen >= cap)
		return -EINVAL;
	memcpy(out, t->val, t->vlen);
	out[t->vlen] = '\0';
	return 0;
}

/* A domain or selector: dot-separated labels of letters, digits, "-" and "_". */
static bool is_dns_name(const char *s)
{
	size_t label = 0, n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
			if (++label > 63)
				return false;
		} else {
			return false;
		}
	}
	return label > 0;
}

static int parse_num(const struct tag *t, size_t maxdigits, int64_t *out)
{
	if (t->vlen == 0 || t->vlen > maxdigits)
		return -EINVAL;
	int64_t v = 0;
	for (size_t i = 0; i < t->vlen; i++) {
		if (!is_digit(t->val[i]))
			return -EINVAL;
		v = v * 10 + (t->val[i] - '0');
	}
	*out = v;
	return 0;
}

/* A colon-separated list with FWS around the items; fn sees each item. */
static int each_item(const struct tag *t, int (*fn)(void *, const char *, size_t), void *arg)
{
	const char *p = t->val, *end = t->val + t->vlen;
	for (;;) {
		const char *c = memchr(p, ':', (size_t)(end - p));
		const char *e = c ? c : end, *s = p;
		while (s < e && is_fws(*s))
			s++;
		while (e > s && is_fws(e[-1]))
			e--;
		int rc = fn(arg, s, (size_t)(e - s));
		if (rc)
			return rc;
		if (!c)
			return 0;
		p = c + 1;
	}
}

static int add_h(void *arg, const char *s, size_t n)
{
	struct dkim_sig *sig = arg;
	if (n == 0 || n >= DKIM_NAME_MAX || sig->nh == DKIM_MAX_H)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return -EINVAL;
	memcpy(sig->h[sig->nh], s, n);
	sig->h[sig->nh++][n] = '\0';
	return 0;
}

/* dkim-quoted-printable hex is upper case (RFC 2045 6.7); lower case is taken too. */
static int hex_digit(char c)
{
	static const char digits[] = "0123456789ABCDEF";
	char u = c >= 'a' && c <= 'f' ? (char)(c - 'a' + 'A') : c;
	const char *at = u ? strchr(digits, u) : NULL;
	return at ? (int)(at - digits) : -1;
}

/* i= is dkim-quoted-printable (RFC 6376 2.11): "=XX" escapes, FWS ignored. */
static int decode_i(const struct tag *t, char *out, size_t cap)
{
	size_t n = 0;
	for (size_t k = 0; k < t->vlen; k++) {
		char c = t->val[k];
		if (is_fws(c))
			continue;
		if (c == '=') {
			if (k + 2 >= t->vlen)
				return -EINVAL;
			int hi = hex_digit(t->val[k + 1]), lo = hex_digit(t->val[k + 2]);
			if (hi < 0 || lo < 0)
				return -EINVAL;
			c = (char)(hi * 16 + lo);
			k += 2;
		}
		if (c == '\0' || n + 1 >= cap)
			return -EINVAL;
		out[n++] = c;
	}
	out[n] = '\0';
	return n ? 0 : -EINVAL;
}

/* i='s domain is d= or a subdomain of it (RFC 6376 3.5, i=). */
static bool i_in_d(const char *i, const char *d)
{
	const char *at = strrchr(i, '@');
	if (!at)
		return false;
	const char *dom = at + 1;
	size_t dn = strlen(dom), n = strlen(d);
	if (ascii_ieq(dom, dn, d, n))
		return true;
	return dn > n && dom[dn - n - 1] == '.' && ascii_ieq(dom + dn - n, n, d, n);
}

static int sig_canon(const struct tag *t, struct dkim_sig *sig)
{
	const char *slash = memchr(t->val, '/', t->vlen);
	size_t hn = slash ? (size_t)(slash - t->val) : t->vlen;
	enum dkim_canon *c[2] = { &sig->hcanon, &sig->bcanon };
	const char *part[2] = { t->val, slash ? slash + 1 : NULL };
	size_t len[2] = { hn, slash ? t->vlen - hn - 1 : 0 };
	for (int k = 0; k < 2 && part[k]; k++) {
		if (ascii_ieq(part[k], len[k], "simple", 6))
			*c[k] = DKIM_CANON_SIMPLE;
		else if (ascii_ieq(part[k], len[k], "relaxed", 7))
			*c[k] = DKIM_CANON_RELAXED;
		else
			return -EINVAL;
	}
	return 0;
}

/* Whether a colon-separated list holds one of up to two items. */
struct wanted {
	const char *a, *b;
	bool found;
};

static int has_item(void *arg, const char *s, size_t n)
{
	struct wanted *w = arg;
	if (ascii_ieq(s, n, w->a, strlen(w->a)) || (w->b && ascii_ieq(s, n, w->b, strlen(w->b))))
		w->found = true;
	return 0;
}

static bool list_has(const struct tag *t, const char *a, const char *b)
{
	struct wanted w = { a, b, false };
	(void)each_item(t, has_item, &w);
	return w.found;
}

static int sig_alg(const struct tag *t, struct dkim_sig *sig, const char **why)
{
	size_t n = t->vlen < sizeof(sig->algorithm) ? t->vlen : sizeof(sig->algorithm) - 1;
	memcpy(sig->algorithm, t->val, n);
	sig->algorithm[n] = '\0';
	if (val_is(t, "rsa-sha256"))
		sig->alg = DKIM_ALG_RSA_SHA256;
	else if (val_is(t, "ed25519-sha256"))
		sig->alg = DKIM_ALG_ED25519_SHA256;
	else if (val_is(t, "rsa-sha1"))
		sig->alg = DKIM_ALG_RSA_SHA1;
	else
		return *why = "unsupported algorithm", -EINVAL;
	return 0;
}

static void set_b_prefix(const struct tag *t, struct dkim_sig *sig)
{
	size_t n = 0;
	for (size_t k = 0; k < t->vlen && n < 8; k++)
		if (!is_fws(t->val[k]))
			sig->b_prefix[n++] = t->val[k];
	sig->b_prefix[n] = '\0';
}

/* One tag of a signature: 0, or -EINVAL with *why. */
static int sig_tag(const struct tag *t, struct dkim_sig *sig, unsigned *seen, const char **why)
{
	static const char *const names[] = { "v", "a", "b", "bh", "c", "d", "h", "i", "l", "q", "s", "t", "x" };
	size_t k = 0;
	while (k < ARRAY_LEN(names) && !tag_is(t, names[k]))
		k++;
	if (k == ARRAY_LEN(names))
		return 0; /* unknown tags are ignored (RFC 6376 3.2) */
	*seen |= 1u << k;
	switch (k) {
	case 0: return val_is(t, "1") ? 0 : (*why = "v= is not 1", -EINVAL);
	case 1: return sig_alg(t, sig, why);
	case 2:
		set_b_prefix(t, sig);
		if (dkim_base64_decode(t->val, t->vlen, sig->b, sizeof(sig->b), &sig->blen) || sig->blen == 0)
			return *why = "bad b=", -EINVAL;
		return 0;
	case 3:
		if (dkim_base64_decode(t->val, t->vlen, sig->bh, sizeof(sig->bh), &sig->bhlen) || sig->bhlen == 0)
			return *why = "bad bh=", -EINVAL;
		return 0;
	case 4: return sig_canon(t, sig) ? (*why = "bad c=", -EINVAL) : 0;
	case 5:
		if (copy_val(t, sig->d, sizeof(sig->d)))
			return *why = "bad d=", -EINVAL;
		ascii_lower(sig->d, strlen(sig->d));
		return is_dns_name(sig->d) ? 0 : (*why = "bad d=", -EINVAL);
	case 6: return each_item(t, add_h, sig) ? (*why = "bad h=", -EINVAL) : 0;
	case 7: return decode_i(t, sig->i, sizeof(sig->i)) ? (*why = "bad i=", -EINVAL) : 0;
	case 8: return parse_num(t, 18, &sig->l) ? (*why = "bad l=", -EINVAL) : 0;
	case 9:
		return list_has(t, "dns/txt", NULL) ? 0 : (*why = "unsupported q=", -EINVAL);
	case 10:
		if (copy_val(t, sig->s, sizeof(sig->s)) || !is_dns_name(sig->s))
			return *why = "bad s=", -EINVAL;
		return 0;
	case 11: return parse_num(t, 12, &sig->t) ? (*why = "bad t=", -EINVAL) : 0;
	default: return parse_num(t, 12, &sig->x) ? (*why = "bad x=", -EINVAL) : 0;
	}
}

static bool h_has_from(const struct dkim_sig *sig)
{
	for (size_t k = 0; k < sig->nh; k++)
		if (ascii_ieq(sig->h[k], strlen(sig->h[k]), "from", 4))
			return true;
	return false;
}

int dkim_parse_sig(const char *value, size_t n, struct dkim_sig *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	out->l = out->t = out->x = -1;
	struct tag tags[MAX_TAGS];
	size_t ntags;
	unsigned seen = 0;
	if (tag_list(value, n, tags, &ntags))
		return *why = "tag-list syntax", -EINVAL;
	/* d= and s= first, so that a refusal can still say whose it was. */
	for (size_t k = 0; k < ntags; k++)
		if ((tag_is(&tags[k], "d") || tag_is(&tags[k], "s") || tag_is(&tags[k], "a") || tag_is(&tags[k], "b")) &&
		    sig_tag(&tags[k], out, &seen, why))
			return -EINVAL;
	for (size_t k = 0; k < ntags; k++)
		if (sig_tag(&tags[k], out, &seen, why))
			return -EINVAL;
	/* v a b bh d h s are required (RFC 6376 3.5). */
	const unsigned required = 1u << 0 | 1u << 1 | 1u << 2 | 1u << 3 | 1u << 5 | 1u << 6 | 1u << 10;
	if ((seen & required) != required)
		return *why = "a required tag is missing", -EINVAL;
	if (!h_has_from(out))
		return *why = "h= does not sign From", -EINVAL;
	if (out->i[0] == '\0') {
		if (fmt(out->i, sizeof(out->i), "@%s", out->d))
			return *why = "bad d=", -EINVAL;
	} else if (!i_in_d(out->i, out->d))
		return *why = "i= is not within d=", -EINVAL;
	if (out->t >= 0 && out->x >= 0 && out->x < out->t)
		return *why = "x= before t=", -EINVAL;
	return 0;
}

int dkim_find_b_value(const char *value, size_t n, size_t *start, size_t *end)
{
	const char *p = value, *e = value + n;
	struct tag t;
	while (tag_next(&p, e, &t) == 1) {
		if (tag_is(&t, "b")) {
			const char *eq = memchr(t.name, '=', (size_t)(e - t.name));
			const char *semi = memchr(eq, ';', (size_t)(e - eq));
			*start = (size_t)(eq + 1 - value);
			*end = semi ? (size_t)(semi - value) : n;
			return 0;
		}
	}
	return -EINVAL;
}

struct key_flags {
	bool strict, testing;
};

static int key_flag(void *arg, const char *s, size_t n)
{
	struct key_flags *f = arg;
	if (ascii_ieq(s, n, "s", 1))
		f->strict = true;
	if (ascii_ieq(s, n, "y", 1))
		f->testing = true;
	return 0;
}

/* One tag of a key record (RFC 6376 3.6.1): 0, 1 for p= seen, or -EINVAL. */
static int key_tag(const struct tag *t, size_t index, struct dkim_key *out, const char **why)
{
	struct key_flags f = { 0 };
	if (tag_is(t, "v")) {
		if (index != 0 || t->vlen != 5 || memcmp(t->val, "DKIM1", 5) != 0)
			return *why = "bad key v=", -EINVAL;
	} else if (tag_is(t, "h")) {
		if (!list_has(t, "sha256", NULL))
			return *why = "key h= excludes sha256", -EINVAL;
	} else if (tag_is(t, "k")) {
		if (val_is(t, "rsa"))
			out->type = DKIM_KEY_RSA;
		else if (val_is(t, "ed25519"))
			out->type = DKIM_KEY_ED25519;
		else
			return *why = "unknown key type", -EINVAL;
	} else if (tag_is(t, "s")) {
		if (!list_has(t, "*", "email"))
			return *why = "key not for email", -EINVAL;
	} else if (tag_is(t, "t")) {
		(void)each_item(t, key_flag, &f);
		out->strict = f.strict;
		out->testing = f.testing;
	} else if (tag_is(t, "p")) {
		if (dkim_base64_decode(t->val, t->vlen, out->p, sizeof(out->p), &out->plen))
			return *why = "bad key p=", -EINVAL;
		out->revoked = out->plen == 0;
		return 1;
	}
	return 0;
}

int dkim_parse_key(const char *rec, size_t n, struct dkim_key *out, const char **why)
{
	memset(out, 0, sizeof(*out));
	out->type = DKIM_KEY_RSA;
	struct tag tags[MAX_TAGS];
	size_t ntags;
	bool have_p = false;
	if (tag_list(rec, n, tags, &ntags))
		return *why = "key record syntax", -EINVAL;
	for (size_t k = 0; k < ntags; k++) {
		int rc = key_tag(&tags[k], k, out, why);
		if (rc < 0)
			return rc;
		have_p |= rc == 1;
	}
	if (!have_p)
		return *why = "key record without p=", -EINVAL;
	return 0;
}
