/*
 * dmarc_parse: the pure parts of RFC 7489 (see dmarc_parse.h). Owns no
 * state; called by dmarc.c, the unit tests, the suite driver and the fuzz
 * target. Everything it reads comes from a peer (a From: header, a TXT
 * record): every length is checked, nothing is trusted to be terminated
 * anywhere but at its NUL, and a failure is -EINVAL with a static reason.
 */
#include "auth/dmarc_parse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool is_wsp(char c)
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

/* --- the record ------------------------------------------------------- */

/* One tag-spec of a record, trimmed: name and value point into the record. */
struct tag {
	const char *name, *value;
	size_t nlen, vlen;
};

static void trim(const char **p, size_t *n)
{
	while (*n && is_wsp(**p))
		(*p)++, (*n)--;
	while (*n && is_wsp((*p)[*n - 1]))
		(*n)--;
}

/* The tag-spec in [s, s + n): false when it has no "=" or no name. */
static bool split_tag(const char *s, size_t n, struct tag *t)
{
	const char *eq = memchr(s, '=', n);
	if (!eq)
		return false;
	t->name = s;
	t->nlen = (size_t)(eq - s);
	t->value = eq + 1;
	t->vlen = n - t->nlen - 1;
	trim(&t->name, &t->nlen);
	trim(&t->value, &t->vlen);
	return t->nlen > 0;
}

static bool tag_is(const struct tag *t, const char *name)
{
	return ascii_ieq(t->name, t->nlen, name, strlen(name));
}

static bool value_is(const struct tag *t, const char *v)
{
	return ascii_ieq(t->value, t->vlen, v, strlen(v));
}

bool dmarc_txt_is_dmarc(const char *txt)
{
	size_t n = strcspn(txt, ";");
	struct tag t;
	/* "DMARC1" is %x-coded in the ABNF (6.4): case-sensitive; "v" is not. */
	return split_tag(txt, n, &t) && tag_is(&t, "v") && t.vlen == 6 && memcmp(t.value, "DMARC1", 6) == 0;
}

static int parse_policy(const struct tag *t, enum dmarc_policy *p)
{
	if (value_is(t, "none"))
		*p = DMARC_P_NONE;
	else if (value_is(t, "quarantine"))
		*p = DMARC_P_QUARANTINE;
	else if (value_is(t, "reject"))
		*p = DMARC_P_REJECT;
	else
		return -EINVAL;
	return 0;
}

static int parse_mode(const struct tag *t, bool *strict)
{
	if (value_is(t, "r"))
		*strict = false;
	else if (value_is(t, "s"))
		*strict = true;
	else
		return -EINVAL;
	return 0;
}

/* pct = 1*3DIGIT (6.4), at most 100; leading zeros tolerated. */
static int parse_pct(const struct tag *t, unsigned *pct)
{
	unsigned v = 0;
	if (t->vlen == 0 || t->vlen > 8)
		return -EINVAL;
	for (size_t i = 0; i < t->vlen; i++) {
		if (!is_digit(t->value[i]))
			return -EINVAL;
		v = v * 10 + (unsigned)(t->value[i] - '0');
	}
	if (v > 100)
		return -EINVAL;
	*pct = v;
	return 0;
}

/* Whether one element of rua= starts as a URI: scheme ":" something (RFC 3986 3.1). */
static bool is_uri(const char *s, size_t n)
{
	trim(&s, &n);
	if (n == 0 || !is_alpha(s[0]))
		return false;
	size_t i = 1;
	while (i < n && (is_alpha(s[i]) || is_digit(s[i]) || s[i] == '+' || s[i] == '-' || s[i] == '.'))
		i++;
	return i + 1 < n && s[i] == ':';
}

static bool rua_has_uri(const struct tag *t)
{
	const char *p = t->value, *end = t->value + t->vlen;
	while (p < end) {
		const char *comma = memchr(p, ',', (size_t)(end - p));
		const char *stop = comma ? comma : end;
		if (is_uri(p, (size_t)(stop - p)))
			return true;
		p = comma ? comma + 1 : end;
	}
	return false;
}

/* What the tags after v= said; seen_* keeps the first of a repeated tag. */
struct rec_state {
	struct dmarc_record r;
	bool seen_p, seen_sp, seen_adkim, seen_aspf, seen_pct, seen_rua;
	bool bad_p, bad_sp, rua_ok;
	const char *why;
};

static void take_tag(struct rec_state *st, const struct tag *t)
{
	if (tag_is(t, "p") && !st->seen_p) {
		st->seen_p = true;
		st->bad_p = parse_policy(t, &st->r.p) < 0;
	} else if (tag_is(t, "sp") && !st->seen_sp) {
		st->seen_sp = true;
		st->bad_sp = parse_policy(t, &st->r.sp) < 0;
		st->r.has_sp = !st->bad_sp;
	} else if (tag_is(t, "adkim") && !st->seen_adkim) {
		st->seen_adkim = true;
		if (parse_mode(t, &st->r.adkim_strict) < 0)
			st->why = "bad adkim=";
	} else if (tag_is(t, "aspf") && !st->seen_aspf) {
		st->seen_aspf = true;
		if (parse_mode(t, &st->r.aspf_strict) < 0)
			st->why = "bad aspf=";
	} else if (tag_is(t, "pct") && !st->seen_pct) {
		st->seen_pct = true;
		if (parse_pct(t, &st->r.pct) < 0)
			st->why = "bad pct=";
	} else if (tag_is(t, "rua") && !st->seen_rua) {
		st->seen_rua = true;
		st->rua_ok = rua_has_uri(t);
	}
	/* Anything else (ruf, fo, rf, ri, unknown tags) is ignored (6.3). */
}

int dmarc_parse_record(const char *txt, struct dmarc_record *out, const char **why)
{
	struct rec_state st;
	memset(&st, 0, sizeof(st));
	st.r.pct = 100;
	if (!dmarc_txt_is_dmarc(txt)) {
		*why = txt[strspn(txt, " \t\r\n")] ? "not v=DMARC1 first" : "empty record";
		return -EINVAL;
	}
	const char *p = txt + strcspn(txt, ";");
	while (*p == ';') {
		p++;
		size_t n = strcspn(p, ";");
		struct tag t;
		if (split_tag(p, n, &t))
			take_tag(&st, &t);
		p += n;
	}
	if (st.why) {
		*why = st.why;
		return -EINVAL;
	}
	if (!st.seen_p || st.bad_p || st.bad_sp) {
		/* 6.6.3 step 6: with a usable rua=, act as if p=none. */
		if (!st.rua_ok) {
			*why = st.bad_sp ? "bad sp=" : st.seen_p ? "bad p=" : "no p=";
			return -EINVAL;
		}
		st.r.p = DMARC_P_NONE;
		st.r.has_sp = false;
		st.r.p_from_rua = true;
	}
	if (!st.r.has_sp)
		st.r.sp = st.r.p;
	*out = st.r;
	return 0;
}

/* --- the From: header ---------------------------------------------------- */

enum tok_type { TOK_END = 0, TOK_WORD, TOK_QUOTED, TOK_DLIT, TOK_SPECIAL };

struct tok {
	enum tok_type type;
	const char *p; /* TOK_WORD: the atom */
	size_t n;
	char c;        /* TOK_SPECIAL */
};

/* The end of a comment that opens at s ('('), nested, or NULL if unterminated. */
static const char *skip_comment(const char *s)
{
	int depth = 0;
	for (; *s; s++) {
		if (*s == '\\' && s[1])
			s++;
		else if (*s == '(')
			depth++;
		else if (*s == ')' && --depth == 0)
			return s + 1;
	}
	return NULL;
}

/* The end of a quoted string or domain literal opening at s, or NULL. */
static const char *skip_quoted(const char *s, char close)
{
	for (s++; *s; s++) {
		if (*s == '\\' && s[1])
			s++;
		else if (*s == close)
			return s + 1;
	}
	return NULL;
}

static bool is_atext(unsigned char c)
{
	/* RFC 5322 3.2.3 atext, plus any octet above 127 (RFC 6532 3.2). */
	return c > 0x20 && c != 0x7f && !strchr("()<>[]:;@\\,.\"", c);
}

/* RFC 5322 lexical tokens of s, CFWS dropped; -EINVAL on a stray or unclosed one. */
static int lex(const char *s, struct tok *toks, size_t *ntoks)
{
	size_t n = 0;
	while (*s) {
		const char *start = s;
		if (is_wsp(*s)) {
			s++;
			continue;
		}
		struct tok *t = &toks[n];
		if (*s == '(') {
			if (!(s = skip_comment(s)))
				return -EINVAL;
			continue;
		} else if (*s == '"' || *s == '[') {
			if (!(s = skip_quoted(s, *s == '"' ? '"' : ']')))
				return -EINVAL;
			t->type = *start == '"' ? TOK_QUOTED : TOK_DLIT;
		} else if (strchr("<>:;@,.", *s)) {
			t->type = TOK_SPECIAL;
			t->c = *s++;
		} else if (is_atext((unsigned char)*s)) {
			while (is_atext((unsigned char)*s))
				s++;
			t->type = TOK_WORD;
		} else {
			return -EINVAL; /* a control character, ')', ']' or '\' */
		}
		t->p = start;
		t->n = (size_t)(s - start);
		n++;
	}
	toks[n].type = TOK_END;
	*ntoks = n;
	return 0;
}

static bool is_special(const struct tok *t, char c)
{
	return t->type == TOK_SPECIAL && t->c == c;
}

/* Words and dots: a phrase, or a local-part (obs forms included). */
static size_t skip_words(const struct tok *t, size_t i)
{
	while (t[i].type == TOK_WORD || t[i].type == TOK_QUOTED || is_special(&t[i], '.'))
		i++;
	return i;
}

struct from_state {
	const struct tok *t;
	size_t i;
	size_t count;      /* mailboxes seen */
	char domain[256];  /* the first one's */
	const char *why;
};

/* domain = atom *("." atom) at st->i; the first mailbox's is kept. */
static int parse_domain(struct from_state *st)
{
	char d[256];
	size_t len = 0;
	const struct tok *t = st->t;
	if (t[st->i].type == TOK_DLIT) {
		st->why = "address literal in From:";
		return -EINVAL;
	}
	for (;;) {
		if (t[st->i].type != TOK_WORD || len + t[st->i].n + 1 >= sizeof(d)) {
			st->why = "bad domain in From:";
			return -EINVAL;
		}
		memcpy(d + len, t[st->i].p, t[st->i].n);
		len += t[st->i].n;
		st->i++;
		if (!is_special(&t[st->i], '.'))
			break;
		d[len++] = '.';
		st->i++;
	}
	d[len] = '\0';
	ascii_lower(d, len);
	if (!is_host_name(d, len)) {
		st->why = "From: domain is not a host name";
		return -EINVAL;
	}
	if (st->count++ == 0)
		memcpy(st->domain, d, len + 1);
	return 0;
}

/* mailbox = name-addr / addr-spec (3.4); a phrase before a bare addr-spec is tolerated. */
static int parse_mailbox(struct from_state *st)
{
	const struct tok *t = st->t;
	size_t j = skip_words(t, st->i);
	if (is_special(&t[j], '<')) {
		st->i = skip_words(t, j + 1);
		if (st->i == j + 1 || !is_special(&t[st->i], '@')) {
			st->why = "no local@domain in <> of From:";
			return -EINVAL;
		}
		st->i++;
		if (parse_domain(st) < 0)
			return -EINVAL;
		if (!is_special(&t[st->i], '>')) {
			st->why = "unclosed <> in From:";
			return -EINVAL;
		}
		st->i++;
		return 0;
	}
	if (j == st->i || !is_special(&t[j], '@')) {
		st->why = "no address in From:";
		return -EINVAL;
	}
	st->i = j + 1;
	return parse_domain(st);
}

/* group = display-name ":" [mailbox-list] ";" (3.4); at the end, the ";" may be missing. */
static int parse_group(struct from_state *st)
{
	const struct tok *t = st->t;
	for (;;) {
		if (is_special(&t[st->i], ';')) {
			st->i++;
			return 0;
		}
		if (t[st->i].type == TOK_END)
			return 0;
		if (is_special(&t[st->i], ',')) {
			st->i++; /* obs-mbox-list: empty members */
			continue;
		}
		if (parse_mailbox(st) < 0)
			return -EINVAL;
		if (!is_special(&t[st->i], ',') && !is_special(&t[st->i], ';') && t[st->i].type != TOK_END) {
			st->why = "junk after an address in From:";
			return -EINVAL;
		}
	}
}

static int parse_address_list(struct from_state *st)
{
	const struct tok *t = st->t;
	while (t[st->i].type != TOK_END) {
		if (is_special(&t[st->i], ',')) {
			st->i++; /* obs-addr-list: empty members */
			continue;
		}
		size_t j = skip_words(t, st->i);
		int rc;
		if (j > st->i && is_special(&t[j], ':')) {
			st->i = j + 1;
			rc = parse_group(st);
		} else {
			rc = parse_mailbox(st);
		}
		if (rc < 0)
			return rc;
		if (t[st->i].type != TOK_END && !is_special(&t[st->i], ',')) {
			st->why = "junk after an address in From:";
			return -EINVAL;
		}
	}
	return 0;
}

int dmarc_from_domain(const char *value, char *out, size_t n, const char **why)
{
	/* Every token is at least one byte: strlen + 1 entries hold them and the end. */
	struct tok *toks = xcalloc(strlen(value) + 1, sizeof(*toks));
	struct from_state st = {.t = toks};
	size_t ntoks;
	int rc = -EINVAL;
	if (lex(value, toks, &ntoks) < 0)
		st.why = "unparseable From:";
	else if (parse_address_list(&st) < 0)
		(void)0; /* st.why says why */
	else if (st.count == 0)
		st.why = "no address in From:";
	else if (st.count > 1)
		st.why = "more than one address in From:";
	else if (fmt(out, n, "%s", st.domain) < 0)
		st.why = "From: domain too long";
	else
		rc = 0;
	free(toks);
	if (rc < 0)
		*why = st.why;
	return rc;
}

/* --- alignment and pct ------------------------------------------------- */

/* A lower-case copy without one trailing dot; false for an empty label or too long. */
static bool norm_domain(const char *s, char *out, size_t n)
{
	size_t len = strlen(s);
	if (len && s[len - 1] == '.')
		len--;
	if (len == 0 || len >= n)
		return false;
	memcpy(out, s, len);
	out[len] = '\0';
	ascii_lower(out, len);
	return out[0] != '.' && out[len - 1] != '.' && !strstr(out, "..");
}

bool dmarc_aligned(const char *a, const char *b, bool strict, dmarc_org_fn *org)
{
	char na[256], nb[256], oa[256], ob[256];
	if (!norm_domain(a, na, sizeof(na)) || !norm_domain(b, nb, sizeof(nb)))
		return false;
	if (strcmp(na, nb) == 0)
		return true;
	if (strict)
		return false;
	return org(na, oa, sizeof(oa)) && org(nb, ob, sizeof(ob)) && strcmp(oa, ob) == 0;
}

enum dmarc_policy dmarc_apply_pct(enum dmarc_policy p, unsigned pct, unsigned draw)
{
	if (draw < pct)
		return p;
	return p == DMARC_P_REJECT ? DMARC_P_QUARANTINE : DMARC_P_NONE;
}
