/*
 * authres: writes and recognises Authentication-Results (RFC 8601); the
 * contract is in authres.h. Callers: the session (smtpd/auth_step.c) formats
 * the header once the verdicts are in; the header filter of the receive
 * path (smtpd/hdr_strip.c) asks authres_is_ours about each field of that
 * name. Invariants: every piece of peer text goes through put_value or
 * put_comment, which cap it and drop control characters, so the output is
 * one header field whatever the input. Error policy: nothing fails; input
 * that cannot be parsed is "not ours".
 */
#include "authres.h"

#include <string.h>

#define FOLD_AT 78 /* RFC 5322 2.1.1: lines SHOULD stay within 78 characters */

/* --- result keywords (RFC 8601 2.7) --------------------------------------- */

const char *authres_spf_str(enum spf_result r)
{
	static const char *const names[] = {
		[SPF_NONE] = "none",         [SPF_NEUTRAL] = "neutral",     [SPF_PASS] = "pass",
		[SPF_FAIL] = "fail",         [SPF_SOFTFAIL] = "softfail",   [SPF_TEMPERROR] = "temperror",
		[SPF_PERMERROR] = "permerror",
	};
	return (size_t)r < ARRAY_LEN(names) ? names[r] : "permerror";
}

const char *authres_dkim_str(enum dkim_result r)
{
	static const char *const names[] = {
		[DKIM_NONE] = "none",         [DKIM_PASS] = "pass",     [DKIM_FAIL] = "fail",
		[DKIM_NEUTRAL] = "neutral",   [DKIM_POLICY] = "policy", [DKIM_TEMPERROR] = "temperror",
		[DKIM_PERMERROR] = "permerror",
	};
	return (size_t)r < ARRAY_LEN(names) ? names[r] : "permerror";
}

const char *authres_dmarc_str(enum dmarc_result r)
{
	static const char *const names[] = {
		[DMARC_NONE] = "none",           [DMARC_PASS] = "pass",          [DMARC_FAIL] = "fail",
		[DMARC_TEMPERROR] = "temperror", [DMARC_PERMERROR] = "permerror",
	};
	return (size_t)r < ARRAY_LEN(names) ? names[r] : "permerror";
}

const char *authres_iprev_str(enum iprev_result r)
{
	static const char *const names[] = {
		[IPREV_PASS] = "pass",           [IPREV_FAIL] = "fail",
		[IPREV_TEMPERROR] = "temperror", [IPREV_PERMERROR] = "permerror",
	};
	return (size_t)r < ARRAY_LEN(names) ? names[r] : "permerror";
}

/* --- lexical classes -------------------------------------------------------- */

/* RFC 2045 token: US-ASCII printable, no space, none of the tspecials. */
static bool is_token_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

static bool is_cfws_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* --- writing ---------------------------------------------------------------- */

/* The field being written: out, and the length of its current line. */
struct writer {
	struct buf *out;
	size_t col;
	struct buf word; /* the word being built, placed by put_word */
};

/*
 * Places the built word after a space, or on a new folded line when it
 * would pass FOLD_AT, leaving room for the ';' that may follow it.
 */
static void put_word(struct writer *w)
{
	if (w->col > 1 && w->col + 1 + w->word.len + 1 > FOLD_AT) {
		buf_append(w->out, "\r\n\t", 3);
		w->col = 1;
	} else {
		buf_append(w->out, " ", 1);
		w->col++;
	}
	buf_append(w->out, w->word.data, w->word.len);
	w->col += w->word.len;
	buf_reset(&w->word);
}

/* Ends a resinfo: the ';' sticks to the word before it. */
static void put_semicolon(struct writer *w)
{
	buf_append(w->out, ";", 1);
	w->col++;
}

/* s without control characters, at most AUTHRES_MAX_TEXT octets, into clean (NUL-terminated). */
static size_t clean_text(const char *s, char clean[AUTHRES_MAX_TEXT + 1])
{
	size_t n = 0;
	for (; *s && n < AUTHRES_MAX_TEXT; s++)
		if ((unsigned char)*s >= 0x20 && *s != 0x7f)
			clean[n++] = *s;
	clean[n] = '\0';
	return n;
}

/* [local]@domain with both sides tokens: written bare (RFC 8601 2.2 pvalue). */
static bool is_bare_address(const char *s, size_t n)
{
	const char *at = memchr(s, '@', n);
	if (!at || at == s + n - 1)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s + i != at && !is_token_char((unsigned char)s[i]))
			return false;
	return true;
}

/* Appends s to the word as a value: a token, a bare address (when allowed), or a quoted-string. */
static void word_value(struct writer *w, const char *s, bool address)
{
	char clean[AUTHRES_MAX_TEXT + 1];
	size_t n = clean_text(s ? s : "", clean);
	bool token = n > 0;
	for (size_t i = 0; i < n && token; i++)
		token = is_token_char((unsigned char)clean[i]);
	if (token || (address && is_bare_address(clean, n))) {
		buf_append(&w->word, clean, n);
		return;
	}
	buf_append(&w->word, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		if (clean[i] == '"' || clean[i] == '\\')
			buf_append(&w->word, "\\", 1);
		buf_append(&w->word, &clean[i], 1);
	}
	buf_append(&w->word, "\"", 1);
}

/* "name=value" as one word. */
static void put_prop(struct writer *w, const char *name, const char *value, bool address)
{
	buf_append_str(&w->word, name);
	buf_append(&w->word, "=", 1);
	word_value(w, value, address);
	put_word(w);
}

/* "(text)" as one word, with '(', ')' and '\' escaped (RFC 5322 3.2.2). */
static void put_comment(struct writer *w, const char *s)
{
	char clean[AUTHRES_MAX_TEXT + 1];
	size_t n = clean_text(s, clean);
	buf_append(&w->word, "(", 1);
	for (size_t i = 0; i < n; i++) {
		if (clean[i] == '(' || clean[i] == ')' || clean[i] == '\\')
			buf_append(&w->word, "\\", 1);
		buf_append(&w->word, &clean[i], 1);
	}
	buf_append(&w->word, ")", 1);
	put_word(w);
}

/* "; method=result" and its reason, when given. */
static void put_method(struct writer *w, const char *method, const char *result, const char *reason)
{
	put_semicolon(w);
	buf_printf(&w->word, "%s=%s", method, result);
	put_word(w);
	if (reason && *reason)
		put_prop(w, "reason", reason, false);
}

static void put_spf(struct writer *w, const struct authres *r)
{
	put_method(w, "spf", authres_spf_str(r->spf), r->spf_reason);
	if (r->spf_mailfrom && *r->spf_mailfrom)
		put_prop(w, "smtp.mailfrom", r->spf_mailfrom, true);
	else if (r->spf_helo && *r->spf_helo)
		put_prop(w, "smtp.helo", r->spf_helo, false);
}

/* The HELO identity's own result, beside the MAIL FROM one (for <> the MAIL FROM one is it). */
static void put_spf_helo(struct writer *w, const struct authres *r)
{
	put_method(w, "spf", authres_spf_str(r->helo), r->helo_reason);
	if (r->spf_helo && *r->spf_helo)
		put_prop(w, "smtp.helo", r->spf_helo, false);
}

static void put_dkim(struct writer *w, const struct dkim_sig_result *d)
{
	put_method(w, "dkim", authres_dkim_str(d->result), d->result == DKIM_PASS ? NULL : d->why);
	if (d->domain[0])
		put_prop(w, "header.d", d->domain, false);
	if (d->selector[0])
		put_prop(w, "header.s", d->selector, false);
	if (d->b_prefix[0])
		put_prop(w, "header.b", d->b_prefix, false);
}

void authres_format(const struct authres *r, struct buf *out)
{
	struct writer w = {.out = out};
	buf_append_str(out, "Authentication-Results:");
	w.col = strlen("Authentication-Results:");
	word_value(&w, r->authserv_id, false);
	put_word(&w);
	if (!r->spf_ran && !r->helo_ran && !r->dkim_ran && !r->dmarc_ran && !r->iprev_ran) {
		put_semicolon(&w);
		buf_append_str(&w.word, "none");
		put_word(&w);
	}
	if (r->spf_ran)
		put_spf(&w, r);
	if (r->helo_ran)
		put_spf_helo(&w, r);
	if (r->dkim_ran && r->ndkim == 0)
		put_method(&w, "dkim", "none", NULL);
	for (size_t i = 0; r->dkim_ran && i < r->ndkim && i < DKIM_MAX_SIGNATURES; i++)
		put_dkim(&w, &r->dkim[i]);
	if (r->dmarc_ran) {
		put_method(&w, "dmarc", authres_dmarc_str(r->dmarc), r->dmarc_reason);
		if (r->dmarc_from && *r->dmarc_from)
			put_prop(&w, "header.from", r->dmarc_from, false);
	}
	if (r->iprev_ran) {
		put_method(&w, "iprev", authres_iprev_str(r->iprev), NULL);
		if (r->iprev_ip && *r->iprev_ip)
			put_prop(&w, "policy.iprev", r->iprev_ip, false);
		if (r->iprev_name && *r->iprev_name)
			put_comment(&w, r->iprev_name);
	}
	buf_append(out, "\r\n", 2);
	buf_free(&w.word);
}

/* --- recognising ------------------------------------------------------------- */

/* Skips CFWS: white space (CR and LF included) and comments, which nest and hold quoted-pairs. */
static size_t skip_cfws(const char *s, size_t i, size_t n)
{
	unsigned depth = 0;
	for (; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (depth == 0 && is_cfws_space(c))
			continue;
		if (c == '(') {
			depth++;
		} else if (depth > 0 && c == ')') {
			depth--;
		} else if (depth > 0 && c == '\\') {
			i++; /* quoted-pair: the next octet is literal */
		} else if (depth == 0) {
			return i;
		}
	}
	return n;
}

/* The quoted-string at s[i] == '"', unescaped into id; false if unterminated or too long. */
static bool read_quoted(const char *s, size_t i, size_t n, char *id, size_t cap, size_t *len)
{
	*len = 0;
	for (i++; i < n; i++) {
		char c = s[i];
		if (c == '"')
			return true;
		if (c == '\\' && ++i >= n)
			return false;
		if (s[i] == '\r' || s[i] == '\n')
			continue; /* unfolding */
		if (*len == cap)
			return false;
		id[(*len)++] = s[i];
	}
	return false;
}

static bool same_id(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen > 0 && a[alen - 1] == '.')
		alen--;
	if (blen > 0 && b[blen - 1] == '.')
		blen--;
	return alen > 0 && ascii_ieq(a, alen, b, blen);
}

bool authres_is_ours(const char *value, size_t n, const char *authserv_id)
{
	char id[AUTHRES_MAX_TEXT];
	size_t len = 0, i = skip_cfws(value, 0, n);
	if (i >= n)
		return false;
	if (value[i] == '"') {
		if (!read_quoted(value, i, n, id, sizeof(id), &len))
			return false;
	} else {
		while (i + len < n && is_token_char((unsigned char)value[i + len]))
			len++;
		if (len > sizeof(id))
			return false;
		memcpy(id, value + i, len);
	}
	return same_id(id, len, authserv_id, strlen(authserv_id));
}
