/*
 * smtp_parse: the grammar of what an SMTP client sends us (RFC 5321 4.1.2
 * and the extensions we advertise: SIZE, 8BITMIME, SMTPUTF8, DSN, CHUNKING).
 * Called by smtp_in.c; see smtp_parse.h for the contract of each function.
 * Pure: no I/O, no global state, no allocation (the DATA decoder is in
 * smtp_data.c). Parsers validate the whole input and
 * report the first problem as -EINVAL plus an SMTP_ERR_* detail; the output
 * struct is left zeroed on failure so a caller can never use half a result.
 */
#include "smtp_parse.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

/* --- character classes (RFC 5321 4.1.2, RFC 5322 3.2.3) --------------- */

static bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_hex(int c)
{
	return is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
}

static bool is_atext(int c)
{
	return is_alpha(c) || is_digit(c) || (c > 0 && c < 0x80 && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* dcontent: printable US-ASCII except "[", "\" and "]". */
static bool is_dcontent(int c)
{
	return (c >= 33 && c <= 90) || (c >= 94 && c <= 126);
}

/* --- commands ------------------------------------------------------------ */

static const struct {
	const char *name;
	enum smtp_verb verb;
} verbs[] = {
	{"HELO", SMTP_VERB_HELO}, {"EHLO", SMTP_VERB_EHLO}, {"MAIL", SMTP_VERB_MAIL},
	{"RCPT", SMTP_VERB_RCPT}, {"DATA", SMTP_VERB_DATA}, {"BDAT", SMTP_VERB_BDAT},
	{"RSET", SMTP_VERB_RSET}, {"NOOP", SMTP_VERB_NOOP}, {"QUIT", SMTP_VERB_QUIT},
	{"VRFY", SMTP_VERB_VRFY}, {"EXPN", SMTP_VERB_EXPN}, {"HELP", SMTP_VERB_HELP},
	{"STARTTLS", SMTP_VERB_STARTTLS}, {"AUTH", SMTP_VERB_AUTH},
};

int smtp_parse_cmd(const char *line, size_t n, struct smtp_cmd *out)
{
	size_t v = 0;

	out->verb = SMTP_VERB_UNKNOWN;
	out->args = line + n;
	out->args_len = 0;
	if (n == 0 || memchr(line, '\0', n))
		return -EINVAL;
	/* Letters, digits and '-' so that "X-FOO" is an unknown verb, not junk. */
	while (v < n && (is_alpha(line[v]) || is_digit(line[v]) || line[v] == '-'))
		v++;
	if (v == 0 || (v < n && line[v] != ' '))
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_LEN(verbs); i++)
		if (ascii_ieq(line, v, verbs[i].name, strlen(verbs[i].name)))
			out->verb = verbs[i].verb;
	if (v == n)
		return 0;
	out->args = line + v + 1;
	out->args_len = n - v - 1;
	/* Clients append stray blanks; they carry no meaning in any argument. */
	while (out->args_len && (out->args[out->args_len - 1] == ' ' || out->args[out->args_len - 1] == '\t'))
		out->args_len--;
	return 0;
}

/* --- paths --------------------------------------------------------------- */

struct cursor {
	const unsigned char *s;
	size_t n;
	size_t pos;
	bool allow_utf8;
	bool utf8;  /* a non-ASCII sequence was accepted */
	enum smtp_err err;
};

static int peek(const struct cursor *c)
{
	return c->pos < c->n ? c->s[c->pos] : -1;
}

static int fail(struct cursor *c, enum smtp_err e)
{
	c->err = e;
	return -EINVAL;
}

/* Accepts the UTF-8 sequence at the cursor (not consumed); *len gets its size. */
static int take_utf8(struct cursor *c, size_t *len)
{
	if (!c->allow_utf8)
		return fail(c, SMTP_ERR_UTF8);
	*len = utf8_seq_len(c->s + c->pos, c->n - c->pos);
	if (*len == 0)
		return fail(c, SMTP_ERR_SYNTAX);
	c->utf8 = true;
	return 0;
}

/* Dot-string = Atom *("." Atom); atext gains UTF8-non-ascii with SMTPUTF8. */
static int parse_dot_string(struct cursor *c, char *out)
{
	size_t start = c->pos, o = 0;
	bool need_atom = true;

	for (;;) {
		int ch = peek(c);
		size_t len = 1;

		if (ch == '.') {
			if (need_atom)
				return fail(c, SMTP_ERR_SYNTAX);
			need_atom = true;
		} else if (ch >= 0x80) {
			if (take_utf8(c, &len) < 0)
				return -EINVAL;
			need_atom = false;
		} else if (is_atext(ch)) {
			need_atom = false;
		} else {
			break;
		}
		if (c->pos + len - start > SMTP_LOCAL_MAX)
			return fail(c, SMTP_ERR_PATH_TOO_LONG);
		memcpy(out + o, c->s + c->pos, len);
		o += len;
		c->pos += len;
	}
	out[o] = '\0';
	return need_atom ? fail(c, SMTP_ERR_SYNTAX) : 0;
}

/*
 * Quoted-string = DQUOTE *(qtextSMTP / quoted-pairSMTP) DQUOTE. Stored
 * decoded (quotes and backslashes removed); the 64-octet limit applies to
 * the form as written, quotes included.
 */
static int parse_quoted(struct cursor *c, char *out)
{
	size_t start = c->pos++, o = 0;

	for (;;) {
		int ch = peek(c);
		size_t len = 1, skip = 0;

		if (ch == '"')
			break;
		if (ch == '\\') {
			int next = c->pos + 1 < c->n ? c->s[c->pos + 1] : -1;
			if (next < 32 || next > 126)
				return fail(c, SMTP_ERR_SYNTAX);
			skip = 1;
		} else if (ch >= 0x80) {
			if (take_utf8(c, &len) < 0)
				return -EINVAL;
		} else if (ch < 32 || ch > 126) {
			return fail(c, SMTP_ERR_SYNTAX);
		}
		/* +1: the closing quote still has to fit. */
		if (c->pos + skip + len - start + 1 > SMTP_LOCAL_MAX)
			return fail(c, SMTP_ERR_PATH_TOO_LONG);
		memcpy(out + o, c->s + c->pos + skip, len);
		o += len;
		c->pos += skip + len;
	}
	c->pos++;
	out[o] = '\0';
	return 0;
}

/* sub-domain = Let-dig [Ldh-str]; with SMTPUTF8 also U-labels (RFC 6531 3.3). */
static int parse_label(struct cursor *c)
{
	size_t start = c->pos;
	int last = -1;

	for (;;) {
		int ch = peek(c);
		size_t len = 1;

		if (ch >= 0x80) {
			if (take_utf8(c, &len) < 0)
				return -EINVAL;
		} else if (!is_alpha(ch) && !is_digit(ch) && ch != '-') {
			break;
		}
		if (c->pos == start && ch == '-')
			return fail(c, SMTP_ERR_SYNTAX);
		last = ch;
		c->pos += len;
		if (c->pos - start > 63)
			return fail(c, SMTP_ERR_PATH_TOO_LONG);
	}
	if (c->pos == start || last == '-')
		return fail(c, SMTP_ERR_SYNTAX);
	return 0;
}

/* Domain = sub-domain *("." sub-domain), copied lower-cased when out is set. */
static int parse_domain(struct cursor *c, char *out)
{
	size_t start = c->pos, len;

	for (;;) {
		if (parse_label(c) < 0)
			return -EINVAL;
		if (peek(c) != '.')
			break;
		c->pos++;
	}
	len = c->pos - start;
	if (len > SMTP_DOMAIN_MAX)
		return fail(c, SMTP_ERR_PATH_TOO_LONG);
	if (out) {
		memcpy(out, c->s + start, len);
		out[len] = '\0';
		ascii_lower(out, len);
	}
	return 0;
}

/* IPv4-address-literal = Snum 3("." Snum), Snum = 1*3DIGIT in 0..255. */
static bool is_ipv4(const char *s, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, digits = 0;
		if (part > 0 && (i >= n || s[i++] != '.'))
			return false;
		while (i < n && is_digit(s[i]) && digits < 3) {
			v = v * 10 + (unsigned)(s[i++] - '0');
			digits++;
		}
		if (digits == 0 || v > 255)
			return false;
	}
	return i == n;
}

/*
 * IPv6-addr (RFC 5321 4.1.3). inet_pton does the syntax; RFC 5321 also
 * says "::" stands for at least two groups, so a compressed form may name
 * at most six (an IPv4 tail counts as two).
 */
static bool is_ipv6(const char *s, size_t n)
{
	char tmp[INET6_ADDRSTRLEN];
	unsigned char addr[16];
	unsigned groups = 0;

	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET6, tmp, addr) != 1)
		return false;
	if (!strstr(tmp, "::"))
		return true;
	for (size_t i = 0; i < n; i++)
		if (s[i] != ':' && (i == 0 || s[i - 1] == ':'))
			groups++;
	if (memchr(s, '.', n))
		groups++;
	return groups <= 6;
}

/*
 * General-address-literal = Standardized-tag ":" 1*dcontent. We narrow the
 * tag to start with a letter: no registered tag starts otherwise, and this
 * keeps "[1111:2222:...]" (an IPv6 address without its tag) out.
 */
static bool is_literal_body(const char *s, size_t n)
{
	const char *colon = memchr(s, ':', n);
	size_t tlen;

	if (!colon)
		return is_ipv4(s, n);
	tlen = (size_t)(colon - s);
	if (ascii_ieq(s, tlen, "IPv6", 4))
		return is_ipv6(colon + 1, n - tlen - 1);
	if (tlen == 0 || !is_alpha(s[0]) || s[tlen - 1] == '-' || tlen + 1 == n)
		return false;
	for (size_t i = 0; i < tlen; i++)
		if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* address-literal = "[" ... "]", kept as written, brackets included. */
static int parse_literal(struct cursor *c, char *out)
{
	size_t start = c->pos++, len;

	while (c->pos < c->n && is_dcontent(c->s[c->pos]))
		c->pos++;
	if (peek(c) != ']')
		return fail(c, SMTP_ERR_SYNTAX);
	c->pos++;
	len = c->pos - start;
	if (len > SMTP_DOMAIN_MAX)
		return fail(c, SMTP_ERR_PATH_TOO_LONG);
	if (!is_literal_body((const char *)c->s + start + 1, len - 2))
		return fail(c, SMTP_ERR_SYNTAX);
	memcpy(out, c->s + start, len);
	out[len] = '\0';
	return 0;
}

/* A-d-l = At-domain *("," At-domain) ":" (RFC 5321 4.1.2, Appendix C). */
static int parse_route(struct cursor *c)
{
	for (;;) {
		c->pos++;  /* '@' */
		if (parse_domain(c, NULL) < 0)
			return -EINVAL;
		if (peek(c) == ':') {
			c->pos++;
			return 0;
		}
		if (peek(c) != ',')
			return fail(c, SMTP_ERR_SYNTAX);
		c->pos++;
		if (peek(c) != '@')
			return fail(c, SMTP_ERR_SYNTAX);
	}
}

static int parse_mailbox(struct cursor *c, bool allow_no_domain, struct mailaddr *out)
{
	out->quoted_local = peek(c) == '"';
	if ((out->quoted_local ? parse_quoted(c, out->local) : parse_dot_string(c, out->local)) < 0)
		return -EINVAL;
	if (peek(c) == '>' && allow_no_domain && !out->quoted_local &&
	    ascii_ieq(out->local, strlen(out->local), "postmaster", 10)) {
		out->no_domain = true;
		return 0;
	}
	if (peek(c) != '@')
		return fail(c, SMTP_ERR_SYNTAX);
	c->pos++;
	if (peek(c) == '[') {
		out->domain_literal = true;
		return parse_literal(c, out->domain);
	}
	return parse_domain(c, out->domain);
}

static int parse_path(struct cursor *c, bool allow_null, bool allow_no_domain, struct mailaddr *out)
{
	if (peek(c) != '<')
		return fail(c, SMTP_ERR_SYNTAX);
	c->pos++;
	if (peek(c) == '>') {
		c->pos++;
		out->is_null = true;
		return allow_null ? 0 : fail(c, SMTP_ERR_SYNTAX);
	}
	if (peek(c) == '@') {
		if (parse_route(c) < 0)
			return -EINVAL;
		out->has_route = true;
	}
	/* RFC 5321 4.1.1.3 spells "<Postmaster>" without a route. */
	if (parse_mailbox(c, allow_no_domain && !out->has_route, out) < 0)
		return -EINVAL;
	if (peek(c) != '>')
		return fail(c, SMTP_ERR_SYNTAX);
	c->pos++;
	return c->pos > SMTP_PATH_MAX ? fail(c, SMTP_ERR_PATH_TOO_LONG) : 0;
}

int smtp_parse_path(const char *s, size_t n, bool allow_null, bool allow_no_domain, bool allow_utf8,
		    struct mailaddr *out, size_t *used, enum smtp_err *err)
{
	struct cursor c = {.s = (const unsigned char *)s, .n = n, .allow_utf8 = allow_utf8};

	memset(out, 0, sizeof(*out));
	*used = 0;
	if (parse_path(&c, allow_null, allow_no_domain, out) < 0) {
		memset(out, 0, sizeof(*out));
		*err = c.err;
		return -EINVAL;
	}
	out->utf8 = c.utf8;
	*used = c.pos;
	*err = SMTP_ERR_NONE;
	return 0;
}

/* --- formatting a path back (inverse of smtp_parse_path) ----------------- */

int smtp_format_path(const struct mailaddr *a, char *out, size_t outsz)
{
	char local[2 * sizeof(a->local) + 2];  /* room for every octet escaped */
	size_t o = 0;

	if (a->quoted_local)
		local[o++] = '"';
	for (const char *q = a->local; *q; q++) {
		if (a->quoted_local && (*q == '"' || *q == '\\'))
			local[o++] = '\\';
		local[o++] = *q;
	}
	if (a->quoted_local)
		local[o++] = '"';
	local[o] = '\0';
	if (a->is_null)
		return fmt(out, outsz, "<>");
	if (a->no_domain)
		return fmt(out, outsz, "<%s>", local);
	return fmt(out, outsz, "<%s@%s>", local, a->domain);
}

/* --- ESMTP parameters (RFC 5321 4.1.2 Mail-parameters) ------------------ */

struct param_ctx {
	void *params;   /* struct smtp_mail_params or struct smtp_rcpt_params */
	bool smtputf8;
};

/* Checks one value (NULL when the keyword had no "="): 0 or -EINVAL. */
typedef int param_fn(struct param_ctx *ctx, const char *v, size_t n);

struct param_def {
	const char *name;
	param_fn *fn;
};

/* Position of v[0..n) among words, case-insensitively; -1 if absent. */
static int word_index(const char *v, size_t n, const char *const *words, int count)
{
	for (int k = 0; v && k < count; k++)
		if (ascii_ieq(v, n, words[k], strlen(words[k])))
			return k;
	return -1;
}

/* size-value = 1*20DIGIT (RFC 1870); it must also fit our counter. */
static int param_size(struct param_ctx *ctx, const char *v, size_t n)
{
	struct smtp_mail_params *p = ctx->params;
	uint64_t x = 0;

	if (!v || n == 0 || n > 20)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned d = (unsigned)(v[i] - '0');
		if (!is_digit(v[i]) || x > (UINT64_MAX - d) / 10)
			return -EINVAL;
		x = x * 10 + d;
	}
	p->size = x;
	p->has_size = true;
	return 0;
}

static int param_body(struct param_ctx *ctx, const char *v, size_t n)
{
	static const char *const words[] = {"7BIT", "8BITMIME"};
	struct smtp_mail_params *p = ctx->params;
	int k = word_index(v, n, words, 2);

	p->body = k == 0 ? SMTP_BODY_7BIT : SMTP_BODY_8BITMIME;
	return k < 0 ? -EINVAL : 0;
}

static int param_smtputf8(struct param_ctx *ctx, const char *v, size_t n)
{
	struct smtp_mail_params *p = ctx->params;

	(void)n;
	p->smtputf8 = true;
	return v ? -EINVAL : 0;
}

static int param_ret(struct param_ctx *ctx, const char *v, size_t n)
{
	static const char *const words[] = {"FULL", "HDRS"};
	struct smtp_mail_params *p = ctx->params;
	int k = word_index(v, n, words, 2);

	p->ret = k == 0 ? SMTP_RET_FULL : SMTP_RET_HDRS;
	return k < 0 ? -EINVAL : 0;
}

static int param_envid(struct param_ctx *ctx, const char *v, size_t n)
{
	struct smtp_mail_params *p = ctx->params;

	if (!v || n == 0 || n > SMTP_ENVID_MAX || smtp_check_xtext(v, n) < 0)
		return -EINVAL;
	memcpy(p->envid, v, n);
	p->envid[n] = '\0';
	return 0;
}

/* NOTIFY=NEVER, or a list of SUCCESS, FAILURE, DELAY (RFC 3461 4.1). */
static int param_notify(struct param_ctx *ctx, const char *v, size_t n)
{
	/* In the order of the SMTP_NOTIFY_* bits. */
	static const char *const words[] = {"NEVER", "SUCCESS", "FAILURE", "DELAY"};
	struct smtp_rcpt_params *p = ctx->params;

	for (size_t i = 0; v && i <= n;) {
		const char *comma = memchr(v + i, ',', n - i);
		size_t len = comma ? (size_t)(comma - (v + i)) : n - i;
		int k = word_index(v + i, len, words, 4);
		if (k < 0 || (p->notify & (1u << k)))
			return -EINVAL;
		p->notify |= 1u << k;
		i += len + 1;
	}
	if (!p->notify || ((p->notify & SMTP_NOTIFY_NEVER) && p->notify != SMTP_NOTIFY_NEVER))
		return -EINVAL;
	return 0;
}

/*
 * utf-8-addr-xtext / utf-8-addr-unitext (RFC 6533 3): printable ASCII but
 * "+", "=" and "\", escapes "\x{HEX}", and raw UTF-8 only under SMTPUTF8.
 * HEXPOINT's finer rules (no escaping of what could be sent raw) are not
 * enforced: the value is relayed as received, never interpreted.
 */
static bool is_utf8_addr_text(const char *v, size_t n, bool smtputf8)
{
	const unsigned char *s = (const unsigned char *)v;
	size_t i = 0;

	while (i < n) {
		size_t hex = 0, len;
		if (s[i] == '\\') {
			if (n - i < 5 || s[i + 1] != 'x' || s[i + 2] != '{')
				return false;
			for (i += 3; i < n && is_hex(s[i]) && hex < 6; i++)
				hex++;
			if (hex < 2 || i >= n || s[i++] != '}')
				return false;
		} else if (s[i] >= 0x80) {
			if (!smtputf8 || (len = utf8_seq_len(s + i, n - i)) == 0)
				return false;
			i += len;
		} else if (s[i] < 33 || s[i] > 126 || s[i] == '+' || s[i] == '=') {
			return false;
		} else {
			i++;
		}
	}
	return n > 0;
}

/* ORCPT=addr-type ";" xtext (RFC 3461 4.2), stored as received. */
static int param_orcpt(struct param_ctx *ctx, const char *v, size_t n)
{
	struct smtp_rcpt_params *p = ctx->params;
	const char *semi = v ? memchr(v, ';', n) : NULL;
	size_t tlen;

	if (!semi || n > SMTP_ORCPT_MAX)
		return -EINVAL;
	tlen = (size_t)(semi - v);
	if (tlen == 0 || tlen + 1 == n)
		return -EINVAL;
	for (size_t i = 0; i < tlen; i++)
		if (!is_atext(v[i]) || v[i] == '=')
			return -EINVAL;
	if (ascii_ieq(v, tlen, "utf-8", 5)) {
		if (!is_utf8_addr_text(semi + 1, n - tlen - 1, ctx->smtputf8))
			return -EINVAL;
	} else if (smtp_check_xtext(semi + 1, n - tlen - 1) < 0) {
		return -EINVAL;
	}
	memcpy(p->orcpt, v, n);
	p->orcpt[n] = '\0';
	return 0;
}

static const struct param_def mail_params[] = {
	{"SIZE", param_size}, {"BODY", param_body}, {"SMTPUTF8", param_smtputf8},
	{"RET", param_ret}, {"ENVID", param_envid},
};

static const struct param_def rcpt_params[] = {
	{"NOTIFY", param_notify}, {"ORCPT", param_orcpt},
};

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool is_keyword(const char *s, size_t n)
{
	if (n == 0 || s[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alpha(s[i]) && !is_digit(s[i]) && s[i] != '-')
			return false;
	return true;
}

static int parse_param(const char *t, size_t n, const struct param_def *defs, size_t ndefs, unsigned *seen,
		       struct param_ctx *ctx, enum smtp_err *err)
{
	const char *eq = memchr(t, '=', n);
	size_t klen = eq ? (size_t)(eq - t) : n, k;

	*err = SMTP_ERR_SYNTAX;
	if (!is_keyword(t, klen))
		return -EINVAL;
	for (k = 0; k < ndefs; k++)
		if (ascii_ieq(t, klen, defs[k].name, strlen(defs[k].name)))
			break;
	*err = SMTP_ERR_PARAM_UNKNOWN;
	if (k == ndefs)
		return -EINVAL;
	*err = SMTP_ERR_PARAM_BAD;
	if ((*seen & (1u << k)) || defs[k].fn(ctx, eq ? eq + 1 : NULL, eq ? n - klen - 1 : 0) < 0)
		return -EINVAL;
	*seen |= 1u << k;
	*err = SMTP_ERR_NONE;
	return 0;
}

/* What follows a path: nothing, or SP-separated parameters. */
static int parse_params(const char *s, size_t n, const struct param_def *defs, size_t ndefs,
			struct param_ctx *ctx, enum smtp_err *err)
{
	unsigned seen = 0;
	size_t i = 0;

	while (i < n) {
		size_t start;
		if (s[i] != ' ') {
			*err = SMTP_ERR_SYNTAX;
			return -EINVAL;
		}
		while (i < n && s[i] == ' ')
			i++;
		start = i;
		while (i < n && s[i] != ' ')
			i++;
		if (i > start && parse_param(s + start, i - start, defs, ndefs, &seen, ctx, err) < 0)
			return -EINVAL;
	}
	*err = SMTP_ERR_NONE;
	return 0;
}

/* What differs between MAIL and RCPT. */
struct path_cmd {
	const char *prefix;  /* "FROM:" or "TO:" */
	bool allow_null, allow_no_domain;
	const struct param_def *defs;
	size_t ndefs;
};

static const struct path_cmd mail_cmd = {"FROM:", true, false, mail_params, ARRAY_LEN(mail_params)};
static const struct path_cmd rcpt_cmd = {"TO:", false, true, rcpt_params, ARRAY_LEN(rcpt_params)};

/* prefix, one optional SP (a common client habit), path, parameters. */
static int parse_path_cmd(const char *args, size_t n, const struct path_cmd *cmd, bool allow_utf8,
			  struct mailaddr *a, struct param_ctx *ctx, enum smtp_err *err)
{
	size_t k = strlen(cmd->prefix), used;

	*err = SMTP_ERR_SYNTAX;
	if (n < k || !ascii_ieq(args, k, cmd->prefix, k))
		return -EINVAL;
	k += n > k && args[k] == ' ';
	if (smtp_parse_path(args + k, n - k, cmd->allow_null, cmd->allow_no_domain, allow_utf8, a, &used, err) < 0)
		return -EINVAL;
	k += used;
	return parse_params(args + k, n - k, cmd->defs, cmd->ndefs, ctx, err);
}

int smtp_parse_mail(const char *args, size_t n, struct mailaddr *from, struct smtp_mail_params *p,
		    enum smtp_err *err)
{
	struct param_ctx ctx = {.params = p};
	int rc;

	memset(p, 0, sizeof(*p));
	/* SMTPUTF8 comes after the path it governs: accept UTF-8, judge after. */
	rc = parse_path_cmd(args, n, &mail_cmd, true, from, &ctx, err);
	if (rc == 0 && from->utf8 && !p->smtputf8) {
		*err = SMTP_ERR_UTF8;
		rc = -EINVAL;
	}
	if (rc < 0) {
		memset(from, 0, sizeof(*from));
		memset(p, 0, sizeof(*p));
	}
	return rc;
}

int smtp_parse_rcpt(const char *args, size_t n, bool smtputf8, struct mailaddr *to, struct smtp_rcpt_params *p,
		    enum smtp_err *err)
{
	struct param_ctx ctx = {.params = p, .smtputf8 = smtputf8};
	int rc;

	memset(p, 0, sizeof(*p));
	rc = parse_path_cmd(args, n, &rcpt_cmd, smtputf8, to, &ctx, err);
	if (rc < 0) {
		memset(to, 0, sizeof(*to));
		memset(p, 0, sizeof(*p));
	}
	return rc;
}

/* --- BDAT, HELO, xtext --------------------------------------------------- */

int smtp_parse_bdat(const char *args, size_t n, uint64_t *size, bool *last)
{
	uint64_t v = 0;
	size_t i = 0;

	*size = 0;
	*last = false;
	for (; i < n && is_digit(args[i]); i++) {
		unsigned d = (unsigned)(args[i] - '0');
		if (v > ((uint64_t)INT64_MAX - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (i == 0)
		return -EINVAL;
	if (i < n) {
		if (n - i != 5 || args[i] != ' ' || !ascii_ieq(args + i + 1, 4, "LAST", 4))
			return -EINVAL;
		*last = true;
	}
	*size = v;
	return 0;
}

int smtp_parse_helo(const char *args, size_t n, char *out, size_t outsz)
{
	/* Extra blanks around the one token are noise, not a second token. */
	while (n && args[0] == ' ') {
		args++;
		n--;
	}
	while (n && (args[n - 1] == ' ' || args[n - 1] == '\t'))
		n--;
	if (outsz)
		out[0] = '\0';
	if (n == 0 || n > SMTP_DOMAIN_MAX)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (args[i] < 33 || args[i] > 126)
			return -EINVAL;
	if (outsz <= n)
		return -ENOSPC;
	memcpy(out, args, n);
	out[n] = '\0';
	return 0;
}

/*
 * xtext = *(xchar / "+" 2HEXCHAR). RFC 3461 wants upper-case hex; we also
 * take lower case, as Postfix does, since the value is relayed verbatim.
 */
int smtp_check_xtext(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '+') {
			if (n - i < 3 || !is_hex(s[i + 1]) || !is_hex(s[i + 2]))
				return -EINVAL;
			i += 2;
		} else if (s[i] < 33 || s[i] > 126 || s[i] == '=') {
			return -EINVAL;
		}
	}
	return 0;
}
