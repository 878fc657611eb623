/*
 * Unit tests for smtp_parse: tables of {name, input, expected} per parser,
 * hand-picked cases from the isemail suite (and the whole suite when it is
 * present next to the repository), and the DATA decoder's split invariance.
 * A table test reports every failing case by name, then fails once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/smtp_parse.h"

enum { P_NULL = 1, P_NODOM = 2, P_UTF8 = 4 };
enum { B_NULL = 1, B_QUOTED = 2, B_LITERAL = 4, B_ROUTE = 8, B_UTF8 = 16, B_NODOM = 32 };

static int failures;

static void bad(const char *name, const char *fmt_, ...) PRINTF_LIKE(2, 3);
static void bad(const char *name, const char *fmt_, ...)
{
	va_list ap;
	char msg[512];

	va_start(ap, fmt_);
	vsnprintf(msg, sizeof(msg), fmt_, ap);
	va_end(ap);
	print_error("case \"%s\": %s\n", name, msg);
	failures++;
}

static void check_str(const char *name, const char *what, const char *got, const char *want)
{
	if (strcmp(got, want) != 0)
		bad(name, "%s is \"%s\", want \"%s\"", what, got, want);
}

/* --- smtp_parse_cmd --------------------------------------------------- */

static const struct cmd_case {
	const char *name, *in;
	int rc;
	enum smtp_verb verb;
	const char *args;
} cmd_cases[] = {
	{"plain", "NOOP", 0, SMTP_VERB_NOOP, ""},
	{"lower case", "noop", 0, SMTP_VERB_NOOP, ""},
	{"mixed case with args", "MaIl FROM:<a@b.c>", 0, SMTP_VERB_MAIL, "FROM:<a@b.c>"},
	{"rcpt", "RCPT TO:<a@b.c> NOTIFY=NEVER", 0, SMTP_VERB_RCPT, "TO:<a@b.c> NOTIFY=NEVER"},
	{"ehlo", "EHLO client.example", 0, SMTP_VERB_EHLO, "client.example"},
	{"starttls", "starttls", 0, SMTP_VERB_STARTTLS, ""},
	{"bdat", "BDAT 100 LAST", 0, SMTP_VERB_BDAT, "100 LAST"},
	{"trailing blanks stripped", "HELO x.org \t ", 0, SMTP_VERB_HELO, "x.org"},
	{"only one SP removed", "MAIL  FROM:<>", 0, SMTP_VERB_MAIL, " FROM:<>"},
	{"verb and SP only", "QUIT ", 0, SMTP_VERB_QUIT, ""},
	{"longer word is unknown", "NOOPX", 0, SMTP_VERB_UNKNOWN, ""},
	{"unknown with args", "XCLIENT ADDR=1.2.3.4", 0, SMTP_VERB_UNKNOWN, "ADDR=1.2.3.4"},
	{"extension verb", "X-FOO bar", 0, SMTP_VERB_UNKNOWN, "bar"},
	{"empty", "", -EINVAL, SMTP_VERB_UNKNOWN, ""},
	{"leading space", " NOOP", -EINVAL, SMTP_VERB_UNKNOWN, ""},
	{"colon after verb", "MAIL:FROM:<>", -EINVAL, SMTP_VERB_UNKNOWN, ""},
	{"tab after verb", "NOOP\tx", -EINVAL, SMTP_VERB_UNKNOWN, ""},
	{"cr after verb", "NOOP\r", -EINVAL, SMTP_VERB_UNKNOWN, ""},
};

static void test_cmd_table(void **state)
{
	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(cmd_cases); i++) {
		const struct cmd_case *t = &cmd_cases[i];
		struct smtp_cmd c;
		int rc = smtp_parse_cmd(t->in, strlen(t->in), &c);
		if (rc != t->rc) {
			bad(t->name, "rc %d, want %d", rc, t->rc);
			continue;
		}
		if (rc)
			continue;
		if (c.verb != t->verb)
			bad(t->name, "verb %d, want %d", c.verb, t->verb);
		if (c.args_len != strlen(t->args) || memcmp(c.args, t->args, c.args_len) != 0)
			bad(t->name, "args \"%.*s\", want \"%s\"", (int)c.args_len, c.args, t->args);
	}
	assert_int_equal(failures, 0);
}

static void test_cmd_nul(void **state)
{
	struct smtp_cmd c;

	(void)state;
	assert_int_equal(smtp_parse_cmd("NOOP\0x", 6, &c), -EINVAL);
	assert_int_equal(smtp_parse_cmd("NO\0P", 4, &c), -EINVAL);
}

/* --- smtp_parse_path -------------------------------------------------- */

static const struct path_case {
	const char *name, *in;
	unsigned flags;
	enum smtp_err err;  /* SMTP_ERR_NONE: must parse */
	const char *local, *domain;
	unsigned bits;
	size_t used;        /* 0: all of in */
} path_cases[] = {
	{"simple", "<user@example.org>", 0, 0, "user", "example.org", 0, 0},
	{"domain lower-cased", "<User@Example.ORG>", 0, 0, "User", "example.org", 0, 0},
	{"dotted local", "<first.last@x.org>", 0, 0, "first.last", "x.org", 0, 0},
	{"atext specials", "<!#$%&'*+-/=?^_`{|}~@x.org>", 0, 0, "!#$%&'*+-/=?^_`{|}~", "x.org", 0, 0},
	{"single label domain", "<a@localhost>", 0, 0, "a", "localhost", 0, 0},
	{"numeric labels", "<a@255.255.255.255>", 0, 0, "a", "255.255.255.255", 0, 0},
	{"hyphen inside label", "<a@c--n.com>", 0, 0, "a", "c--n.com", 0, 0},
	{"stops at >", "<a@b.org> SIZE=10", 0, 0, "a", "b.org", 0, 9},
	{"quoted with space", "<\"a b\"@x.org>", 0, 0, "a b", "x.org", B_QUOTED, 0},
	{"quoted at sign", "<\"user@other\"@domain.org>", 0, 0, "user@other", "domain.org", B_QUOTED, 0},
	{"quoted escapes decoded", "<\"a\\\"b\\\\c\\d\"@x.org>", 0, 0, "a\"b\\cd", "x.org", B_QUOTED, 0},
	{"quoted empty", "<\"\"@x.org>", 0, 0, "", "x.org", B_QUOTED, 0},
	{"quoted >", "<\"a>b\"@x.org>", 0, 0, "a>b", "x.org", B_QUOTED, 0},
	{"ipv4 literal", "<a@[127.0.0.1]>", 0, 0, "a", "[127.0.0.1]", B_LITERAL, 0},
	{"ipv4 literal leading zero", "<a@[127.000.0.01]>", 0, 0, "a", "[127.000.0.01]", B_LITERAL, 0},
	{"ipv6 loopback", "<a@[IPv6:::1]>", 0, 0, "a", "[IPv6:::1]", B_LITERAL, 0},
	{"ipv6 tag any case", "<a@[ipv6:2001:DB8::1]>", 0, 0, "a", "[ipv6:2001:DB8::1]", B_LITERAL, 0},
	{"ipv6 full", "<a@[IPv6:1:2:3:4:5:6:7:8]>", 0, 0, "a", "[IPv6:1:2:3:4:5:6:7:8]", B_LITERAL, 0},
	{"ipv6 v4 tail", "<a@[IPv6:::ffff:10.0.0.1]>", 0, 0, "a", "[IPv6:::ffff:10.0.0.1]", B_LITERAL, 0},
	{"general literal", "<a@[x-tag:some.thing]>", 0, 0, "a", "[x-tag:some.thing]", B_LITERAL, 0},
	{"route", "<@a.org,@b.org:u@c.org>", 0, 0, "u", "c.org", B_ROUTE, 0},
	{"route single", "<@a.org:u@c.org>", 0, 0, "u", "c.org", B_ROUTE, 0},
	{"null", "<>", P_NULL, 0, "", "", B_NULL, 0},
	{"null refused", "<>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"postmaster", "<postmaster>", P_NODOM, 0, "postmaster", "", B_NODOM, 0},
	{"postmaster any case", "<PostMaster>", P_NODOM, 0, "PostMaster", "", B_NODOM, 0},
	{"postmaster refused", "<postmaster>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"postmaster with domain", "<Postmaster@x.org>", 0, 0, "Postmaster", "x.org", 0, 0},
	{"quoted postmaster", "<\"postmaster\">", P_NODOM, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"postmaster after route", "<@a.org:postmaster>", P_NODOM, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"other bare local", "<abuse>", P_NODOM, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"utf8 local", "<j\xc3\xb6rg@x.org>", P_UTF8, 0, "j\xc3\xb6rg", "x.org", B_UTF8, 0},
	{"utf8 domain", "<a@b\xc3\xbc\x63her.de>", P_UTF8, 0, "a", "b\xc3\xbc\x63her.de", B_UTF8, 0},
	{"utf8 quoted", "<\"\xe2\x82\xac x\"@x.org>", P_UTF8, 0, "\xe2\x82\xac x", "x.org", B_QUOTED | B_UTF8, 0},
	{"utf8 4-byte", "<\xf0\x9f\x98\x80@x.org>", P_UTF8, 0, "\xf0\x9f\x98\x80", "x.org", B_UTF8, 0},
	{"utf8 without smtputf8", "<j\xc3\xb6rg@x.org>", 0, SMTP_ERR_UTF8, NULL, NULL, 0, 0},
	{"utf8 domain without", "<a@b\xc3\xbc.de>", 0, SMTP_ERR_UTF8, NULL, NULL, 0, 0},
	{"latin1 byte", "<j\xf6rg@x.org>", P_UTF8, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"overlong utf8", "<\xc0\xaf@x.org>", P_UTF8, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"surrogate utf8", "<\xed\xa0\x80@x.org>", P_UTF8, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"truncated utf8", "<a\xc3@x.org>", P_UTF8, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"above U+10FFFF", "<\xf4\x90\x80\x80@x.org>", P_UTF8, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"utf8 in literal", "<a@[\xc3\xbc]>", P_UTF8, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"no brackets", "user@example.org", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"no closing bracket", "<user@example.org", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"trailing dot", "<a@example.org.>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"empty label", "<a@example..org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"leading dot domain", "<a@.example.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"empty domain", "<a@>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"hyphen first", "<a@-x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"hyphen last", "<a@x-.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"underscore domain", "<a@x_y.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"unquoted at", "<user@other@domain.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"empty local", "<@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"leading dot local", "<.a@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"trailing dot local", "<a.@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"double dot local", "<a..b@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"space in local", "<a b@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"space before >", "<a@x.org >", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"space after <", "< a@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"tab in quotes", "<\"a\tb\"@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"control char", "<a\x01@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"del char", "<a\x7f@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"comment", "<(c)a@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"unclosed quote", "<\"a@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"quote then atom", "<\"a\"b@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"quoted dot quoted", "<\"a\".\"b\"@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"escaped control", "<\"a\\\x01\"@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"bad ipv4 octet", "<a@[300.1.1.1]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"short ipv4", "<a@[1.2.3]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"long ipv4", "<a@[1.2.3.4.5]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"ipv4 four digits", "<a@[1.2.3.0004]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"bad ipv6", "<a@[IPv6:1::2::3]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"ipv6 one group compressed", "<a@[IPv6:1:2:3:4:5:6::8]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"ipv6 without tag", "<a@[1:2:3:4:5:6:7:8]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"empty literal", "<a@[]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"general literal no content", "<a@[tag:]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"literal with space", "<a@[RFC 5322 literal]>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"literal unclosed", "<a@[1.2.3.4>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"literal in route", "<@[1.2.3.4]:a@x.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"route without colon", "<@a.org,b@c.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"route empty item", "<@a.org,:b@c.org>", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"empty input", "", 0, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
	{"just <", "<", P_NULL, SMTP_ERR_SYNTAX, NULL, NULL, 0, 0},
};

/* Parses t->in (with an explicit length, so embedded NULs count). */
static void run_path_case(const struct path_case *t)
{
	struct mailaddr a;
	enum smtp_err err = 99;
	size_t used = 99, n = strlen(t->in);
	int rc = smtp_parse_path(t->in, n, t->flags & P_NULL, t->flags & P_NODOM, t->flags & P_UTF8, &a, &used, &err);
	unsigned bits = (a.is_null ? B_NULL : 0) | (a.quoted_local ? B_QUOTED : 0) | (a.domain_literal ? B_LITERAL : 0) |
			(a.has_route ? B_ROUTE : 0) | (a.utf8 ? B_UTF8 : 0) | (a.no_domain ? B_NODOM : 0);

	if (t->err != SMTP_ERR_NONE) {
		if (rc != -EINVAL || err != t->err)
			bad(t->name, "rc %d err %d, want -EINVAL err %d", rc, err, t->err);
		if (rc && (used != 0 || a.local[0] || a.domain[0]))
			bad(t->name, "output not cleared on failure");
		return;
	}
	if (rc != 0 || err != SMTP_ERR_NONE) {
		bad(t->name, "rc %d err %d, want success", rc, err);
		return;
	}
	check_str(t->name, "local", a.local, t->local);
	check_str(t->name, "domain", a.domain, t->domain);
	if (bits != t->bits)
		bad(t->name, "flags %#x, want %#x", bits, t->bits);
	if (used != (t->used ? t->used : n))
		bad(t->name, "used %zu", used);
}

static void test_path_table(void **state)
{
	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(path_cases); i++)
		run_path_case(&path_cases[i]);
	assert_int_equal(failures, 0);
}

static int parse_path_str(const char *s, struct mailaddr *a, enum smtp_err *err)
{
	size_t used;
	return smtp_parse_path(s, strlen(s), false, false, false, a, &used, err);
}

/* "<" local "@" labels... ">" with the given sizes; labels joined by '.'. */
static void make_path(char *out, size_t outsz, char lc, size_t local_len, const size_t *labels, size_t nlabels)
{
	size_t o = 0;

	assert_true(outsz > local_len + 3);
	out[o++] = '<';
	memset(out + o, lc, local_len);
	o += local_len;
	out[o++] = '@';
	for (size_t i = 0; i < nlabels; i++) {
		assert_true(o + labels[i] + 3 < outsz);
		if (i)
			out[o++] = '.';
		memset(out + o, 'a' + (int)(i % 26), labels[i]);
		o += labels[i];
	}
	out[o++] = '>';
	out[o] = '\0';
}

static void test_path_limits(void **state)
{
	char p[1024];
	struct mailaddr a;
	enum smtp_err err;
	size_t l3[] = {3}, l63[] = {63, 3}, l64[] = {64, 3};
	size_t fill[] = {63, 63, 61}; /* 189 octets of domain */

	(void)state;
	make_path(p, sizeof(p), 'x', 64, l3, 1);
	assert_int_equal(parse_path_str(p, &a, &err), 0);
	assert_int_equal(strlen(a.local), 64);
	make_path(p, sizeof(p), 'x', 65, l3, 1);
	assert_int_equal(parse_path_str(p, &a, &err), -EINVAL);
	assert_int_equal(err, SMTP_ERR_PATH_TOO_LONG);
	make_path(p, sizeof(p), 'x', 1, l63, 2);
	assert_int_equal(parse_path_str(p, &a, &err), 0);
	make_path(p, sizeof(p), 'x', 1, l64, 2);
	assert_int_equal(parse_path_str(p, &a, &err), -EINVAL);
	assert_int_equal(err, SMTP_ERR_PATH_TOO_LONG);
	/* 1 + 64 + 1 + 189 + 1 = 256: the longest path. */
	make_path(p, sizeof(p), 'x', 64, fill, 3);
	assert_int_equal(strlen(p), 256);
	assert_int_equal(parse_path_str(p, &a, &err), 0);
	fill[2] = 62;
	make_path(p, sizeof(p), 'x', 64, fill, 3);
	assert_int_equal(parse_path_str(p, &a, &err), -EINVAL);
	assert_int_equal(err, SMTP_ERR_PATH_TOO_LONG);
	/* Quoted: the 64 octets include the quotes. */
	snprintf(p, sizeof(p), "<\"%062d\"@x.org>", 0);
	assert_int_equal(parse_path_str(p, &a, &err), 0);
	assert_int_equal(strlen(a.local), 62);
	snprintf(p, sizeof(p), "<\"%063d\"@x.org>", 0);
	assert_int_equal(parse_path_str(p, &a, &err), -EINVAL);
	assert_int_equal(err, SMTP_ERR_PATH_TOO_LONG);
	/* A domain over 255 octets is too long whatever else is wrong. */
	size_t big[] = {63, 63, 63, 63, 5};
	make_path(p, sizeof(p), 'x', 1, big, 5);
	assert_int_equal(parse_path_str(p, &a, &err), -EINVAL);
	assert_int_equal(err, SMTP_ERR_PATH_TOO_LONG);
}

static void test_path_nul(void **state)
{
	struct mailaddr a;
	enum smtp_err err;
	size_t used;

	(void)state;
	assert_int_equal(smtp_parse_path("<a\0b@x.org>", 11, false, false, false, &a, &used, &err), -EINVAL);
	assert_int_equal(smtp_parse_path("<a@x\0.org>", 10, false, false, false, &a, &used, &err), -EINVAL);
	assert_int_equal(smtp_parse_path("<\"a\0\"@x.org>", 12, false, false, false, &a, &used, &err), -EINVAL);
	/* The length bounds the parse: no reading past n. */
	assert_int_equal(smtp_parse_path("<a@x.org>", 8, false, false, false, &a, &used, &err), -EINVAL);
}

/* Re-formatting a parsed path and parsing it again gives the same result. */
static void test_path_format_roundtrip(void **state)
{
	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(path_cases); i++) {
		const struct path_case *t = &path_cases[i];
		struct mailaddr a, b;
		enum smtp_err err;
		size_t used;
		char out[SMTP_PATH_MAX + 1];
		bool nul = t->flags & P_NULL, nodom = t->flags & P_NODOM, utf8 = t->flags & P_UTF8;

		if (smtp_parse_path(t->in, strlen(t->in), nul, nodom, utf8, &a, &used, &err) < 0)
			continue;
		if (smtp_format_path(&a, out, sizeof(out)) < 0) {
			bad(t->name, "format failed");
			continue;
		}
		if (smtp_parse_path(out, strlen(out), nul, nodom, utf8, &b, &used, &err) < 0) {
			bad(t->name, "reparse of %s failed", out);
			continue;
		}
		if (a.has_route) {
			b.has_route = true;
			b.utf8 = a.utf8;
		}
		if (memcmp(&a, &b, sizeof(a)) != 0)
			bad(t->name, "reparse of %s differs", out);
	}
	assert_int_equal(failures, 0);
	struct mailaddr q;
	enum smtp_err err;
	char out[8];
	assert_int_equal(parse_path_str("<\"a\\\"b\"@x.org>", &q, &err), 0);
	assert_int_equal(smtp_format_path(&q, out, sizeof(out)), -ENOSPC);
}

/*
 * Hand-picked from isemail tests.xml (ids in the names). VALID, DNSWARN and
 * RFC5321 categories must parse; ERR, RFC5322, CFWS and DEPREC must not.
 */
static const struct {
	const char *name, *addr;
	bool valid;
} isemail_cases[] = {
	{"1 empty", "", false},
	{"2 no domain", "test", false},
	{"3 only at", "@", false},
	{"4 empty domain", "test@", false},
	{"5 tld only", "test@io", true},
	{"7 no local", "@iana.org", false},
	{"8 plain", "test@iana.org", true},
	{"14 dotted", "test.test@iana.org", true},
	{"15 dot start", ".test@iana.org", false},
	{"16 dot end", "test.@iana.org", false},
	{"17 consecutive dots", "test..iana.org", false},
	{"19 specials", "!#$%&`*+/=?^`{|}~@iana.org", true},
	{"20 backslash", "test\\@test@iana.org", false},
	{"22 numeric label", "test@123.com", true},
	{"23 numeric tld", "test@iana.123", true},
	{"24 ip-like domain", "test@255.255.255.255", true},
	{"25 64 local", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghiklm@iana.org", true},
	{"26 65 local", "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghiklmn@iana.org", false},
	{"28 64 label", "test@abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghiklm.com", false},
	{"30 hyphen start", "test@-iana.org", false},
	{"31 hyphen end", "test@iana-.com", false},
	{"35 trailing dot", "test@iana.org.", false},
	{"42 quoted", "\"test\"@iana.org", true},
	{"43 quoted empty", "\"\"@iana.org", true},
	{"44 three quotes", "\"\"\"@iana.org", false},
	{"45 quoted pair", "\"\\a\"@iana.org", true},
	{"46 escaped quote", "\"\\\"\"@iana.org", true},
	{"47 unclosed", "\"\\\"@iana.org", false},
	{"48 escaped backslash", "\"\\\\\"@iana.org", true},
	{"51 atext after quoted", "\"test\"test@iana.org", false},
	{"54 deprecated local", "\"test\".\"test\"@iana.org", false},
	{"55 escaped space", "\"test\\ test\"@iana.org", true},
	{"59 quoted too long", "\"abcdefghijklmnopqrstuvwxyz abcdefghijklmnopqrstuvwxyz abcdefghj\"@iana.org", false},
	{"61 ipv4 literal", "test@[255.255.255.255]", true},
	{"62 atom before literal", "test@a[255.255.255.255]", false},
	{"63 three octets", "test@[255.255.255]", false},
	{"65 octet 256", "test@[255.255.255.256]", false},
	{"66 ipv6 untagged", "test@[1111:2222:3333:4444:5555:6666:7777:8888]", false},
	{"67 ipv6 7 groups", "test@[IPv6:1111:2222:3333:4444:5555:6666:7777]", false},
	{"68 ipv6", "test@[IPv6:1111:2222:3333:4444:5555:6666:7777:8888]", true},
	{"71 ipv6 :: for one group", "test@[IPv6:1111:2222:3333:4444:5555:6666::8888]", false},
	{"72 ipv6 compressed", "test@[IPv6:1111:2222:3333:4444:5555::8888]", true},
	{"74 ipv6 single colon", "test@[IPv6::3333:4444:5555:6666:7777:8888]", false},
	{"77 ipv6 all zero", "test@[IPv6:::]", true},
	{"79 ipv6 v4 tail", "test@[IPv6:1111:2222:3333:4444:5555:6666:255.255.255.255]", true},
	{"81 ipv6 compressed v4", "test@[IPv6:1111:2222:3333:4444::255.255.255.255]", true},
	{"85 cfws near at", " test @iana.org", false},
	{"90 comment", "(comment)test@iana.org", false},
	{"99 trailing LF", "test@iana.org\n", false},
	{"100 punycode", "test@xn--hxajbheg2az3al.xn--jxalpdlp", true},
	{"112 rfc5322 domain literal", "test@[RFC-5322-domain-literal]", false},
	{"122 DEL", "\x7f@iana.org", false},
	{"124 DEL quoted", "\"\x7f\"@iana.org", false},
	{"127 CR", "test@iana.org\r", false},
	{"138 BEL quoted", "\"\x07\"@iana.org", false},
	{"139 BEL quoted pair", "\"\\\x07\"@iana.org", false},
	{"157 leading space", " test@iana.org", false},
	{"159 ipv6 colon end", "test@[IPv6:1::2:]", false},
	{"160 escaped non-ascii", "\"test\\\xc2\xa9\"@iana.org", false},
	{"161 slash domain", "test@iana/icann.org", false},
	{"165 comment in local", "test.(comment)test@iana.org", false},
	{"166 tld", "test@org", true},
};

static bool parses_wrapped(const char *addr, size_t n)
{
	char p[2048];
	struct mailaddr a;
	enum smtp_err err;
	size_t used;

	if (n + 3 > sizeof(p))
		return false;
	p[0] = '<';
	memcpy(p + 1, addr, n);
	p[n + 1] = '>';
	return smtp_parse_path(p, n + 2, false, false, false, &a, &used, &err) == 0 && used == n + 2;
}

static void test_path_isemail_picked(void **state)
{
	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(isemail_cases); i++) {
		const char *s = isemail_cases[i].addr;
		if (parses_wrapped(s, strlen(s)) != isemail_cases[i].valid)
			bad(isemail_cases[i].name, "want %s", isemail_cases[i].valid ? "valid" : "invalid");
	}
	/* 57: a NUL inside quotes, which a C string table cannot hold. */
	if (parses_wrapped("\"test\0\"@iana.org", 15))
		bad("57 nul in quotes", "want invalid");
	assert_int_equal(failures, 0);
}

/* --- the whole isemail suite, read at run time when present ----------- */

static char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	char *s;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	*n = (size_t)ftell(f);
	fseek(f, 0, SEEK_SET);
	s = malloc(*n + 1);
	assert_non_null(s);
	assert_int_equal(fread(s, 1, *n, f), *n);
	s[*n] = '\0';
	fclose(f);
	return s;
}

static size_t put_utf8(char *o, unsigned long cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	o[0] = (char)(0xe0 | (cp >> 12));
	o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[2] = (char)(0x80 | (cp & 0x3f));
	return 3;
}

/* XML text to bytes; U+2400+n stands for control character n. */
static size_t xml_unescape(const char *s, size_t n, char *out)
{
	static const struct { const char *ent; char c; } named[] = {
		{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''},
	};
	size_t o = 0;

	for (size_t i = 0; i < n;) {
		size_t k;
		if (s[i] != '&') {
			out[o++] = s[i++];
			continue;
		}
		for (k = 0; k < ARRAY_LEN(named); k++)
			if (strncmp(s + i, named[k].ent, strlen(named[k].ent)) == 0)
				break;
		if (k < ARRAY_LEN(named)) {
			out[o++] = named[k].c;
			i += strlen(named[k].ent);
			continue;
		}
		char *end;
		unsigned long cp = s[i + 2] == 'x' ? strtoul(s + i + 3, &end, 16) : strtoul(s + i + 2, &end, 10);
		if (cp >= 0x2400 && cp < 0x2420)
			out[o++] = (char)(cp - 0x2400);
		else
			o += put_utf8(out + o, cp);
		i = (size_t)(end - s) + 1;
	}
	return o;
}

static bool xml_field(const char *t, const char *tend, const char *tag, const char **v, size_t *vn)
{
	char open[32], close[32], empty[32];
	const char *p, *q;

	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close, sizeof(close), "</%s>", tag);
	snprintf(empty, sizeof(empty), "<%s/>", tag);
	p = strstr(t, open);
	if (p && p < tend && (q = strstr(p, close)) != NULL && q < tend) {
		*v = p + strlen(open);
		*vn = (size_t)(q - *v);
		return true;
	}
	p = strstr(t, empty);
	*v = "";
	*vn = 0;
	return p && p < tend;
}

static const char *isemail_path(void)
{
	static const char *const paths[] = {
		"../shared/testsuites/email-address/isemail/tests.xml",
		"../../shared/testsuites/email-address/isemail/tests.xml",
		"../../../shared/testsuites/email-address/isemail/tests.xml",
	};
	const char *env = getenv("MXV_ISEMAIL_XML");
	FILE *f;

	if (env)
		return env;
	for (size_t i = 0; i < ARRAY_LEN(paths); i++)
		if ((f = fopen(paths[i], "rb")) != NULL) {
			fclose(f);
			return paths[i];
		}
	return NULL;
}

static void test_path_isemail_xml(void **state)
{
	const char *path = isemail_path(), *t, *v, *c;
	size_t n, vn, cn, count = 0;
	char *xml;

	(void)state;
	if (!path || !(xml = slurp(path, &n))) {
		skip();
		return;
	}
	failures = 0;
	for (t = strstr(xml, "<test id=\""); t; t = strstr(t + 1, "<test id=\"")) {
		const char *tend = strstr(t, "</test>");
		char addr[1024], name[64];
		assert_non_null(tend);
		if (!xml_field(t, tend, "address", &v, &vn) || !xml_field(t, tend, "category", &c, &cn) ||
		    vn >= sizeof(addr))
			continue;
		size_t an = xml_unescape(v, vn, addr);
		bool valid = (!strncmp(c, "ISEMAIL_VALID", 13) || !strncmp(c, "ISEMAIL_DNSWARN", 15) ||
			      !strncmp(c, "ISEMAIL_RFC5321", 15)) && an + 2 <= SMTP_PATH_MAX;
		snprintf(name, sizeof(name), "isemail %.*s", (int)strcspn(t + 10, "\""), t + 10);
		if (parses_wrapped(addr, an) != valid)
			bad(name, "%.*s: want %s", (int)an, addr, valid ? "valid" : "invalid");
		count++;
	}
	free(xml);
	print_message("isemail: %zu addresses checked\n", count);
	assert_true(count > 150);
	assert_int_equal(failures, 0);
}

/* --- MAIL and RCPT ---------------------------------------------------- */

static const struct mail_case {
	const char *name, *in;
	enum smtp_err err;
	const char *path;    /* smtp_format_path of the result */
	bool has_size;
	uint64_t size;
	enum smtp_body body;
	bool smtputf8;
	enum smtp_ret ret;
	const char *envid;
} mail_cases[] = {
	{.name = "plain", .in = "FROM:<a@b.org>", .path = "<a@b.org>"},
	{.name = "lower case", .in = "from:<a@b.org>", .path = "<a@b.org>"},
	{.name = "space tolerated", .in = "FROM: <a@b.org>", .path = "<a@b.org>"},
	{.name = "null sender", .in = "FROM:<>", .path = "<>"},
	{.name = "null with size", .in = "FROM:<> SIZE=1000", .path = "<>", .has_size = true, .size = 1000},
	{.name = "all params", .in = "FROM:<a@b.org> SIZE=12 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ314159",
	 .path = "<a@b.org>", .has_size = true, .size = 12, .body = SMTP_BODY_8BITMIME, .smtputf8 = true,
	 .ret = SMTP_RET_HDRS, .envid = "QQ314159"},
	{.name = "params any case", .in = "FROM:<a@b.org> size=0 body=7bit ret=full",
	 .path = "<a@b.org>", .has_size = true, .body = SMTP_BODY_7BIT, .ret = SMTP_RET_FULL},
	{.name = "several spaces", .in = "FROM:<a@b.org>   SIZE=5  BODY=7BIT  ", .path = "<a@b.org>",
	 .has_size = true, .size = 5, .body = SMTP_BODY_7BIT},
	{.name = "size max", .in = "FROM:<a@b.org> SIZE=18446744073709551615", .path = "<a@b.org>",
	 .has_size = true, .size = UINT64_MAX},
	{.name = "envid xtext", .in = "FROM:<a@b.org> ENVID=a+2Bb+3D", .path = "<a@b.org>", .envid = "a+2Bb+3D"},
	{.name = "utf8 with smtputf8", .in = "FROM:<\xc3\xa9@b.org> SMTPUTF8", .path = "<\xc3\xa9@b.org>",
	 .smtputf8 = true},
	{.name = "quoted path with > inside", .in = "FROM:<\"a> b\"@b.org> SIZE=1", .path = "<\"a> b\"@b.org>",
	 .has_size = true, .size = 1},
	{.name = "utf8 without smtputf8", .in = "FROM:<\xc3\xa9@b.org>", .err = SMTP_ERR_UTF8},
	{.name = "utf8 bad with smtputf8", .in = "FROM:<\xc3@b.org> SMTPUTF8", .err = SMTP_ERR_SYNTAX},
	{.name = "two spaces", .in = "FROM:  <a@b.org>", .err = SMTP_ERR_SYNTAX},
	{.name = "no colon", .in = "FROM<a@b.org>", .err = SMTP_ERR_SYNTAX},
	{.name = "bare address", .in = "FROM:a@b.org", .err = SMTP_ERR_SYNTAX},
	{.name = "empty", .in = "", .err = SMTP_ERR_SYNTAX},
	{.name = "junk after path", .in = "FROM:<a@b.org>SIZE=1", .err = SMTP_ERR_SYNTAX},
	{.name = "tab separator", .in = "FROM:<a@b.org>\tSIZE=1", .err = SMTP_ERR_SYNTAX},
	{.name = "bad keyword", .in = "FROM:<a@b.org> -X=1", .err = SMTP_ERR_SYNTAX},
	{.name = "keyword with junk", .in = "FROM:<a@b.org> SI!ZE=1", .err = SMTP_ERR_SYNTAX},
	{.name = "unknown", .in = "FROM:<a@b.org> FOO=bar", .err = SMTP_ERR_PARAM_UNKNOWN},
	{.name = "unknown bare", .in = "FROM:<a@b.org> XYZZY", .err = SMTP_ERR_PARAM_UNKNOWN},
	{.name = "rcpt param on mail", .in = "FROM:<a@b.org> NOTIFY=NEVER", .err = SMTP_ERR_PARAM_UNKNOWN},
	{.name = "size repeated", .in = "FROM:<a@b.org> SIZE=1 SIZE=1", .err = SMTP_ERR_PARAM_BAD},
	{.name = "size repeated case", .in = "FROM:<a@b.org> SIZE=1 size=2", .err = SMTP_ERR_PARAM_BAD},
	{.name = "size no value", .in = "FROM:<a@b.org> SIZE", .err = SMTP_ERR_PARAM_BAD},
	{.name = "size empty", .in = "FROM:<a@b.org> SIZE=", .err = SMTP_ERR_PARAM_BAD},
	{.name = "size letters", .in = "FROM:<a@b.org> SIZE=12k", .err = SMTP_ERR_PARAM_BAD},
	{.name = "size negative", .in = "FROM:<a@b.org> SIZE=-1", .err = SMTP_ERR_PARAM_BAD},
	{.name = "size overflow", .in = "FROM:<a@b.org> SIZE=18446744073709551616", .err = SMTP_ERR_PARAM_BAD},
	{.name = "size 21 digits", .in = "FROM:<a@b.org> SIZE=000000000000000000001", .err = SMTP_ERR_PARAM_BAD},
	{.name = "body binarymime", .in = "FROM:<a@b.org> BODY=BINARYMIME", .err = SMTP_ERR_PARAM_BAD},
	{.name = "body empty", .in = "FROM:<a@b.org> BODY=", .err = SMTP_ERR_PARAM_BAD},
	{.name = "smtputf8 value", .in = "FROM:<a@b.org> SMTPUTF8=yes", .err = SMTP_ERR_PARAM_BAD},
	{.name = "smtputf8 twice", .in = "FROM:<a@b.org> SMTPUTF8 SMTPUTF8", .err = SMTP_ERR_PARAM_BAD},
	{.name = "ret bad", .in = "FROM:<a@b.org> RET=ALL", .err = SMTP_ERR_PARAM_BAD},
	{.name = "envid not xtext", .in = "FROM:<a@b.org> ENVID=a+ZZ", .err = SMTP_ERR_PARAM_BAD},
	{.name = "envid plus at end", .in = "FROM:<a@b.org> ENVID=abc+2", .err = SMTP_ERR_PARAM_BAD},
	{.name = "envid with =", .in = "FROM:<a@b.org> ENVID=a=b", .err = SMTP_ERR_PARAM_BAD},
	{.name = "envid too long", .in = "FROM:<a@b.org> ENVID="
	 "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789X",
	 .err = SMTP_ERR_PARAM_BAD},
	{.name = "envid 100", .in = "FROM:<a@b.org> ENVID="
	 "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789",
	 .path = "<a@b.org>", .envid =
	 "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789"},
	{.name = "path error first", .in = "FROM:<a@@b> FOO", .err = SMTP_ERR_SYNTAX},
};

static void test_mail_table(void **state)
{
	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(mail_cases); i++) {
		const struct mail_case *t = &mail_cases[i];
		struct mailaddr a;
		struct smtp_mail_params p;
		enum smtp_err err = 99;
		char out[SMTP_PATH_MAX + 1];
		int rc = smtp_parse_mail(t->in, strlen(t->in), &a, &p, &err);
		if (rc != (t->err ? -EINVAL : 0) || err != t->err) {
			bad(t->name, "rc %d err %d, want err %d", rc, err, t->err);
			continue;
		}
		if (rc)
			continue;
		assert_int_equal(smtp_format_path(&a, out, sizeof(out)), 0);
		check_str(t->name, "path", out, t->path);
		check_str(t->name, "envid", p.envid, t->envid ? t->envid : "");
		if (p.has_size != t->has_size || p.size != t->size || p.body != t->body || p.smtputf8 != t->smtputf8 ||
		    p.ret != t->ret)
			bad(t->name, "params size %d/%llu body %d utf8 %d ret %d", p.has_size,
			    (unsigned long long)p.size, p.body, p.smtputf8, p.ret);
	}
	assert_int_equal(failures, 0);
}

static const struct rcpt_case {
	const char *name, *in;
	bool smtputf8;
	enum smtp_err err;
	const char *path;
	unsigned notify;
	const char *orcpt;
} rcpt_cases[] = {
	{.name = "plain", .in = "TO:<a@b.org>", .path = "<a@b.org>"},
	{.name = "space tolerated", .in = "to: <a@b.org>", .path = "<a@b.org>"},
	{.name = "postmaster", .in = "TO:<Postmaster>", .path = "<Postmaster>"},
	{.name = "route", .in = "TO:<@x.org:a@b.org>", .path = "<a@b.org>"},
	{.name = "notify never", .in = "TO:<a@b.org> NOTIFY=NEVER", .path = "<a@b.org>",
	 .notify = SMTP_NOTIFY_NEVER},
	{.name = "notify list", .in = "TO:<a@b.org> notify=success,Delay,FAILURE", .path = "<a@b.org>",
	 .notify = SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_DELAY | SMTP_NOTIFY_FAILURE},
	{.name = "orcpt", .in = "TO:<a@b.org> ORCPT=rfc822;a+2Bx@b.org NOTIFY=FAILURE", .path = "<a@b.org>",
	 .notify = SMTP_NOTIFY_FAILURE, .orcpt = "rfc822;a+2Bx@b.org"},
	{.name = "orcpt utf-8 escaped", .in = "TO:<a@b.org> ORCPT=utf-8;j\\x{00F6}rg@b.org", .path = "<a@b.org>",
	 .orcpt = "utf-8;j\\x{00F6}rg@b.org"},
	{.name = "orcpt utf-8 raw", .in = "TO:<\xc3\xa9@b.org> ORCPT=UTF-8;\xc3\xa9@b.org", .smtputf8 = true,
	 .path = "<\xc3\xa9@b.org>", .orcpt = "UTF-8;\xc3\xa9@b.org"},
	{.name = "orcpt utf-8 raw no smtputf8", .in = "TO:<a@b.org> ORCPT=utf-8;\xc3\xa9@b.org",
	 .err = SMTP_ERR_PARAM_BAD},
	{.name = "orcpt utf-8 bad escape", .in = "TO:<a@b.org> ORCPT=utf-8;\\x{zz}", .err = SMTP_ERR_PARAM_BAD},
	{.name = "orcpt utf-8 plus", .in = "TO:<a@b.org> ORCPT=utf-8;a+2Bb", .err = SMTP_ERR_PARAM_BAD},
	{.name = "null refused", .in = "TO:<>", .err = SMTP_ERR_SYNTAX},
	{.name = "other bare local", .in = "TO:<root>", .err = SMTP_ERR_SYNTAX},
	{.name = "utf8 without", .in = "TO:<\xc3\xa9@b.org>", .err = SMTP_ERR_UTF8},
	{.name = "from keyword", .in = "FROM:<a@b.org>", .err = SMTP_ERR_SYNTAX},
	{.name = "unknown", .in = "TO:<a@b.org> SIZE=10", .err = SMTP_ERR_PARAM_UNKNOWN},
	{.name = "notify never combined", .in = "TO:<a@b.org> NOTIFY=NEVER,DELAY", .err = SMTP_ERR_PARAM_BAD},
	{.name = "notify item twice", .in = "TO:<a@b.org> NOTIFY=DELAY,DELAY", .err = SMTP_ERR_PARAM_BAD},
	{.name = "notify empty item", .in = "TO:<a@b.org> NOTIFY=DELAY,", .err = SMTP_ERR_PARAM_BAD},
	{.name = "notify unknown", .in = "TO:<a@b.org> NOTIFY=ALWAYS", .err = SMTP_ERR_PARAM_BAD},
	{.name = "notify no value", .in = "TO:<a@b.org> NOTIFY", .err = SMTP_ERR_PARAM_BAD},
	{.name = "notify repeated", .in = "TO:<a@b.org> NOTIFY=DELAY NOTIFY=FAILURE", .err = SMTP_ERR_PARAM_BAD},
	{.name = "orcpt no type", .in = "TO:<a@b.org> ORCPT=;a@b.org", .err = SMTP_ERR_PARAM_BAD},
	{.name = "orcpt no semicolon", .in = "TO:<a@b.org> ORCPT=a@b.org", .err = SMTP_ERR_PARAM_BAD},
	{.name = "orcpt empty address", .in = "TO:<a@b.org> ORCPT=rfc822;", .err = SMTP_ERR_PARAM_BAD},
	{.name = "orcpt bad xtext", .in = "TO:<a@b.org> ORCPT=rfc822;a+G0", .err = SMTP_ERR_PARAM_BAD},
	{.name = "orcpt bad type", .in = "TO:<a@b.org> ORCPT=rfc(822);a", .err = SMTP_ERR_PARAM_BAD},
};

static void test_rcpt_table(void **state)
{
	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(rcpt_cases); i++) {
		const struct rcpt_case *t = &rcpt_cases[i];
		struct mailaddr a;
		struct smtp_rcpt_params p;
		enum smtp_err err = 99;
		char out[SMTP_PATH_MAX + 1];
		int rc = smtp_parse_rcpt(t->in, strlen(t->in), t->smtputf8, &a, &p, &err);
		if (rc != (t->err ? -EINVAL : 0) || err != t->err) {
			bad(t->name, "rc %d err %d, want err %d", rc, err, t->err);
			continue;
		}
		if (rc)
			continue;
		assert_int_equal(smtp_format_path(&a, out, sizeof(out)), 0);
		check_str(t->name, "path", out, t->path);
		check_str(t->name, "orcpt", p.orcpt, t->orcpt ? t->orcpt : "");
		if (p.notify != t->notify)
			bad(t->name, "notify %#x, want %#x", p.notify, t->notify);
	}
	assert_int_equal(failures, 0);
}

static void test_rcpt_orcpt_limit(void **state)
{
	char in[700];
	struct mailaddr a;
	struct smtp_rcpt_params p;
	enum smtp_err err;
	size_t pre = strlen("TO:<a@b.org> ORCPT=rfc822;");

	(void)state;
	memcpy(in, "TO:<a@b.org> ORCPT=rfc822;", pre);
	memset(in + pre, 'x', 493); /* 7 + 493 = 500 */
	assert_int_equal(smtp_parse_rcpt(in, pre + 493, false, &a, &p, &err), 0);
	assert_int_equal(strlen(p.orcpt), SMTP_ORCPT_MAX);
	memset(in + pre, 'x', 494);
	assert_int_equal(smtp_parse_rcpt(in, pre + 494, false, &a, &p, &err), -EINVAL);
	assert_int_equal(err, SMTP_ERR_PARAM_BAD);
}

/* --- BDAT, HELO, xtext ------------------------------------------------ */

static const struct {
	const char *in;
	int rc;
	uint64_t size;
	bool last;
} bdat_cases[] = {
	{"0", 0, 0, false},
	{"100", 0, 100, false},
	{"100 LAST", 0, 100, true},
	{"0 last", 0, 0, true},
	{"007 LaSt", 0, 7, true},
	{"9223372036854775807", 0, 9223372036854775807ull, false},
	{"9223372036854775808", -EINVAL, 0, false},
	{"99999999999999999999999", -EINVAL, 0, false},
	{"", -EINVAL, 0, false},
	{"LAST", -EINVAL, 0, false},
	{" 100", -EINVAL, 0, false},
	{"100 ", -EINVAL, 0, false},
	{"100  LAST", -EINVAL, 0, false},
	{"100 LAST ", -EINVAL, 0, false},
	{"100 LASTX", -EINVAL, 0, false},
	{"100 FIRST", -EINVAL, 0, false},
	{"-1", -EINVAL, 0, false},
	{"+1", -EINVAL, 0, false},
	{"1e3", -EINVAL, 0, false},
	{"10\tLAST", -EINVAL, 0, false},
};

static void test_bdat_table(void **state)
{
	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(bdat_cases); i++) {
		uint64_t size = 1;
		bool last = true;
		int rc = smtp_parse_bdat(bdat_cases[i].in, strlen(bdat_cases[i].in), &size, &last);
		if (rc != bdat_cases[i].rc || (rc == 0 && (size != bdat_cases[i].size || last != bdat_cases[i].last)))
			bad(bdat_cases[i].in, "rc %d size %llu last %d", rc, (unsigned long long)size, last);
	}
	assert_int_equal(failures, 0);
}

static const struct {
	const char *in;
	int rc;
	const char *out;
} helo_cases[] = {
	{"mx.example.org", 0, "mx.example.org"},
	{"[192.0.2.1]", 0, "[192.0.2.1]"},
	{"  padded  ", 0, "padded"},
	{"under_score", 0, "under_score"},
	{"", -EINVAL, ""},
	{"   ", -EINVAL, ""},
	{"two words", -EINVAL, ""},
	{"tab\there", -EINVAL, ""},
	{"ctl\x01", -EINVAL, ""},
	{"h\xc3\xa9", -EINVAL, ""},
};

static void test_helo_table(void **state)
{
	char out[SMTP_DOMAIN_MAX + 1], big[300];

	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(helo_cases); i++) {
		int rc = smtp_parse_helo(helo_cases[i].in, strlen(helo_cases[i].in), out, sizeof(out));
		if (rc != helo_cases[i].rc)
			bad(helo_cases[i].in, "rc %d", rc);
		else if (rc == 0)
			check_str(helo_cases[i].in, "out", out, helo_cases[i].out);
	}
	assert_int_equal(failures, 0);
	memset(big, 'a', sizeof(big));
	assert_int_equal(smtp_parse_helo(big, 255, out, sizeof(out)), 0);
	assert_int_equal(smtp_parse_helo(big, 256, out, sizeof(out)), -EINVAL);
	assert_int_equal(smtp_parse_helo(big, 10, out, 10), -ENOSPC);
	assert_int_equal(smtp_parse_helo("a\0b", 3, out, sizeof(out)), -EINVAL);
}

static void test_xtext(void **state)
{
	static const struct {
		const char *in;
		int rc;
	} c[] = {
		{"", 0}, {"abc", 0}, {"a+2Bb", 0}, {"+3D", 0}, {"+2b", 0}, {"!~", 0},
		{"a+", -EINVAL}, {"a+2", -EINVAL}, {"+G0", -EINVAL}, {"a=b", -EINVAL},
		{"a b", -EINVAL}, {"\x7f", -EINVAL}, {"\xc3\xa9", -EINVAL},
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_LEN(c); i++)
		assert_int_equal(smtp_check_xtext(c[i].in, strlen(c[i].in)), c[i].rc);
}

/* --- DATA decoder ----------------------------------------------------- */

static const struct data_case {
	const char *name, *in;
	size_t in_len;
	const char *out;
	size_t out_len;
	bool done, bare;
	size_t consumed;  /* 0: all of in */
} data_cases[] = {
#define DC(name, in, out, done, bare, consumed) {name, in, sizeof(in) - 1, out, sizeof(out) - 1, done, bare, consumed}
	DC("simple", "Hello\r\n.\r\n", "Hello\r\n", true, false, 0),
	DC("empty message", ".\r\n", "", true, false, 0),
	DC("empty first line", "\r\n.\r\n", "\r\n", true, false, 0),
	DC("dot-stuffed at start", "..x\r\n.\r\n", ".x\r\n", true, false, 0),
	DC("stuffed dot only", "a\r\n..\r\n.\r\n", "a\r\n.\r\n", true, false, 0),
	DC("lone dot-x unstuffed", ".x\r\n.\r\n", "x\r\n", true, false, 0),
	DC("dot mid line kept", "a.b\r\n a.\r\n.\r\n", "a.b\r\n a.\r\n", true, false, 0),
	DC("pipelined rest", "x\r\n.\r\nQUIT\r\n", "x\r\n", true, false, 6),
	DC("incomplete", "abc", "abc", false, false, 0),
	DC("incomplete held dot", "a\r\n.", "a\r\n", false, false, 0),
	DC("incomplete held dot cr", "a\r\n.\r", "a\r\n", false, false, 0),
	DC("incomplete held cr", "a\r", "a", false, false, 0),
	DC("nul passes", "a\0b\r\n.\r\n", "a\0b\r\n", true, false, 0),
	DC("8bit passes", "\xff\xfe\r\n.\r\n", "\xff\xfe\r\n", true, false, 0),
	DC("smuggle LF.LF", "a\n.\nMAIL FROM:<x@y>\n", "a\n.\nMAIL FROM:<x@y>\n", false, true, 0),
	DC("smuggle CRLF.LF", "a\r\n.\nb\r\n.\r\n", "a\r\n\nb\r\n", true, true, 0),
	DC("smuggle LF.CRLF", "a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n", true, true, 0),
	DC("smuggle CR.CRLF", "a\r.\r\nb\r\n.\r\n", "a\r.\r\nb\r\n", true, true, 0),
	DC("smuggle CR.CR", "a\r.\rb\r\n.\r\n", "a\r.\rb\r\n", true, true, 0),
	DC("smuggle CRLF.CR", "a\r\n.\rb\r\n.\r\n", "a\r\n\rb\r\n", true, true, 0),
	DC("smuggle CRLF.CRCRLF", "a\r\n.\r\r\n.\r\n", "a\r\n\r\r\n", true, true, 0),
	DC("smuggle LF at start", "\n.\r\n.\r\n", "\n.\r\n", true, true, 0),
	DC("smuggle CRCRLF", "a\r\r\n.\r\n", "a\r\r\n", true, true, 0),
	DC("smuggle LF only", "\n.\n", "\n.\n", false, true, 0),
	DC("smuggle CR only", "\r.\r", "\r.", false, true, 0),
	DC("bare LF inside", "a\nb\r\n.\r\n", "a\nb\r\n", true, true, 0),
	DC("crlf then lflf", "a\r\n\n\n.\r\n", "a\r\n\n\n.\r\n", false, true, 0),
#undef DC
};

struct feed_result {
	struct buf out;
	size_t consumed;
	bool done;
	struct smtp_data_dec d;
};

/* Feeds in pieces whose sizes come from next_len; stops at done. */
static void feed_split(const char *in, size_t n, size_t (*next_len)(size_t left, void *arg), void *arg,
		       struct feed_result *r)
{
	memset(r, 0, sizeof(*r));
	while (r->consumed < n && !r->done) {
		size_t len = next_len(n - r->consumed, arg);
		size_t used = smtp_data_feed(&r->d, in + r->consumed, len, &r->out, &r->done);
		assert_true(used <= len);
		assert_true(r->done || used == len);
		r->consumed += used;
	}
}

static size_t whole(size_t left, void *arg)
{
	(void)arg;
	return left;
}

static size_t one(size_t left, void *arg)
{
	(void)left;
	(void)arg;
	return 1;
}

static size_t at_split(size_t left, void *arg)
{
	size_t *k = arg, len = *k && *k < left ? *k : left;
	*k = 0;
	return len;
}

static size_t random_len(size_t left, void *arg)
{
	uint32_t *seed = arg;
	*seed = *seed * 1103515245u + 12345u;
	size_t len = 1 + (*seed >> 16) % 7;
	return len < left ? len : left;
}

static bool same_result(const struct feed_result *a, const struct feed_result *b)
{
	return a->consumed == b->consumed && a->done == b->done && a->out.len == b->out.len &&
	       (a->out.len == 0 || memcmp(a->out.data, b->out.data, a->out.len) == 0) &&
	       a->d.bare_cr_or_lf == b->d.bare_cr_or_lf && a->d.long_lines == b->d.long_lines &&
	       a->d.out_bytes == b->d.out_bytes;
}

static void test_data_table(void **state)
{
	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(data_cases); i++) {
		const struct data_case *t = &data_cases[i];
		size_t n = t->in_len, outn = t->out_len;
		struct feed_result r;
		feed_split(t->in, n, whole, NULL, &r);
		if (r.done != t->done || r.consumed != (t->consumed ? t->consumed : n))
			bad(t->name, "done %d consumed %zu", r.done, r.consumed);
		if (r.out.len != outn || (outn && memcmp(r.out.data, t->out, outn) != 0))
			bad(t->name, "output \"%.*s\"", (int)r.out.len, (const char *)r.out.data);
		if (r.d.bare_cr_or_lf != t->bare)
			bad(t->name, "bare %d", r.d.bare_cr_or_lf);
		if (r.d.out_bytes != r.out.len)
			bad(t->name, "out_bytes %llu", (unsigned long long)r.d.out_bytes);
		buf_free(&r.out);
	}
	assert_int_equal(failures, 0);
}

/* Same result for every way of cutting the input. */
static void check_split_invariance(const char *name, const char *in, size_t n)
{
	struct feed_result ref, r;

	feed_split(in, n, whole, NULL, &ref);
	feed_split(in, n, one, NULL, &r);
	if (!same_result(&ref, &r))
		bad(name, "1-byte feeding differs");
	buf_free(&r.out);
	for (size_t k = 1; k < n; k++) {
		size_t cut = k;
		feed_split(in, n, at_split, &cut, &r);
		if (!same_result(&ref, &r))
			bad(name, "split at %zu differs", k);
		buf_free(&r.out);
	}
	for (uint32_t seed = 1; seed < 50; seed++) {
		uint32_t s = seed;
		feed_split(in, n, random_len, &s, &r);
		if (!same_result(&ref, &r))
			bad(name, "random split seed %u differs", seed);
		buf_free(&r.out);
	}
	buf_free(&ref.out);
}

static void test_data_split_invariance(void **state)
{
	(void)state;
	failures = 0;
	for (size_t i = 0; i < ARRAY_LEN(data_cases); i++)
		check_split_invariance(data_cases[i].name, data_cases[i].in, data_cases[i].in_len);
	static const char mixed[] = "From: a\r\n..dots\r\n.\rx\n.\n\r\r\n..\r\n\r\n.\r\r\n.x\r\nend\r\n.\r\nNEXT";
	check_split_invariance("mixed", mixed, sizeof(mixed) - 1);
	assert_int_equal(failures, 0);
}

/* Lines of 998, 999 and 2000 octets, then a stuffed line of 998 decoded. */
static void test_data_long_lines(void **state)
{
	struct buf in = {0};
	struct feed_result r;
	char line[2000];

	(void)state;
	memset(line, 'a', sizeof(line));
	buf_append(&in, line, 998);
	buf_append(&in, "\r\n", 2);
	buf_append(&in, line, 999);
	buf_append(&in, "\r\n", 2);
	buf_append(&in, line, 2000);
	buf_append(&in, "\r\n.", 3);
	buf_append(&in, line, 998);
	buf_append(&in, "\r\n.\r\n", 5);
	feed_split((const char *)in.data, in.len, whole, NULL, &r);
	assert_true(r.done);
	assert_int_equal(r.d.long_lines, 2);
	assert_int_equal(r.out.len, in.len - 4);
	buf_free(&r.out);
	failures = 0;
	uint32_t seed = 7;
	feed_split((const char *)in.data, in.len, random_len, &seed, &r);
	assert_int_equal(r.d.long_lines, 2);
	buf_free(&r.out);
	buf_free(&in);
}

static void test_data_after_done(void **state)
{
	struct smtp_data_dec d = {0};
	struct buf out = {0};
	bool done = false;

	(void)state;
	assert_int_equal(smtp_data_feed(&d, ".\r\nRSET\r\n", 9, &out, &done), 3);
	assert_true(done);
	assert_int_equal(out.len, 0);
	done = false;
	assert_int_equal(smtp_data_feed(&d, "RSET\r\n", 6, &out, &done), 0);
	assert_true(done);
	assert_int_equal(smtp_data_feed(&d, "", 0, &out, &done), 0);
	buf_free(&out);
}

static void test_data_scan(void **state)
{
	struct smtp_data_dec d = {0};
	char line[1200];

	(void)state;
	smtp_data_scan(&d, ".\r\nabc\r\n", 8);
	assert_false(d.bare_cr_or_lf);
	smtp_data_scan(&d, "abc\r", 4);
	smtp_data_scan(&d, "\nx", 2);
	assert_false(d.bare_cr_or_lf);  /* CRLF split across chunks */
	smtp_data_scan(&d, "\r", 1);
	smtp_data_scan(&d, "y", 1);
	assert_true(d.bare_cr_or_lf);   /* CR then another chunk without LF */
	assert_int_equal(d.out_bytes, 0);

	memset(&d, 0, sizeof(d));
	smtp_data_scan(&d, "a\nb", 3);
	assert_true(d.bare_cr_or_lf);

	memset(&d, 0, sizeof(d));
	memset(line, 'x', sizeof(line));
	smtp_data_scan(&d, line, 500);
	smtp_data_scan(&d, line, 498);
	smtp_data_scan(&d, "\r\n", 2);
	assert_int_equal(d.long_lines, 0);
	smtp_data_scan(&d, line, 500);
	smtp_data_scan(&d, line, 499);
	assert_int_equal(d.long_lines, 1);
	smtp_data_scan(&d, line, 1200);
	smtp_data_scan(&d, "\r\n", 2);
	smtp_data_scan(&d, line, 1200);
	assert_int_equal(d.long_lines, 2);
	assert_false(d.bare_cr_or_lf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cmd_table),
		cmocka_unit_test(test_cmd_nul),
		cmocka_unit_test(test_path_table),
		cmocka_unit_test(test_path_limits),
		cmocka_unit_test(test_path_nul),
		cmocka_unit_test(test_path_format_roundtrip),
		cmocka_unit_test(test_path_isemail_picked),
		cmocka_unit_test(test_path_isemail_xml),
		cmocka_unit_test(test_mail_table),
		cmocka_unit_test(test_rcpt_table),
		cmocka_unit_test(test_rcpt_orcpt_limit),
		cmocka_unit_test(test_bdat_table),
		cmocka_unit_test(test_helo_table),
		cmocka_unit_test(test_xtext),
		cmocka_unit_test(test_data_table),
		cmocka_unit_test(test_data_split_invariance),
		cmocka_unit_test(test_data_long_lines),
		cmocka_unit_test(test_data_after_done),
		cmocka_unit_test(test_data_scan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
