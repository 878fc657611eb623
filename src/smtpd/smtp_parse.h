/*
 * smtp_parse: pure parsers for what an SMTP client sends us (RFC 5321 and
 * extensions). No I/O, no allocation, no global state: every function takes
 * bytes and a length and fills a caller-owned struct, so each can be fuzzed.
 * Callers: smtp_in.c (the server session). Return convention: 0 on success
 * or a negative errno; SMTP_ERR_* detail codes say which reply to send.
 */
#ifndef MXV_SMTP_PARSE_H
#define MXV_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/smtp_proto.h"
#include "base/util.h"


enum smtp_verb {
	SMTP_VERB_UNKNOWN = 0,
	SMTP_VERB_HELO,
	SMTP_VERB_EHLO,
	SMTP_VERB_MAIL,
	SMTP_VERB_RCPT,
	SMTP_VERB_DATA,
	SMTP_VERB_BDAT,
	SMTP_VERB_RSET,
	SMTP_VERB_NOOP,
	SMTP_VERB_QUIT,
	SMTP_VERB_VRFY,
	SMTP_VERB_EXPN,
	SMTP_VERB_HELP,
	SMTP_VERB_STARTTLS,
	SMTP_VERB_AUTH,
	SMTP_VERB_COUNT
};

struct smtp_cmd {
	enum smtp_verb verb;
	const char *args;  /* points into the line: after the verb and one space */
	size_t args_len;   /* 0 when the command had no argument */
};

/*
 * Splits one command line (CRLF already removed) into verb and arguments.
 * The verb is matched case-insensitively. "MAIL FROM:" and "RCPT TO:" keep
 * "FROM:"/"TO:" in args. -EINVAL: empty line, NUL byte, or a verb not
 * followed by SP or end of line ("NOOPX" is SMTP_VERB_UNKNOWN, returns 0).
 */
int smtp_parse_cmd(const char *line, size_t n, struct smtp_cmd *out) MUST_CHECK;

/*
 * A parsed RFC 5321 Mailbox. Strings are NUL-terminated. A Quoted-string
 * local part is stored decoded: quotes removed and quoted-pairs undone
 * ("a\"b" is stored as a"b), so local never holds a NUL but may hold SP,
 * '@' or '"'. quoted_local says it must be quoted again on the wire:
 * smtp_format_path does that, so no caller writes its own quoting.
 */
struct mailaddr {
	char local[SMTP_LOCAL_MAX * 4 + 3];  /* as written; a Quoted-string is stored decoded (see below) */
	char domain[SMTP_DOMAIN_MAX + 1];     /* lower-cased; for an address literal, "[...]" as written */
	bool is_null;        /* "<>" (only valid as a reverse-path) */
	bool quoted_local;   /* local part was a Quoted-string */
	bool domain_literal; /* domain is an address literal */
	bool has_route;      /* a source route "@a,@b:" was present and dropped (RFC 5321 C) */
	bool utf8;           /* path (route included) had octets >= 0x80: needs SMTPUTF8 */
	bool no_domain;      /* "<postmaster>" form: local part only (RCPT only) */
};

enum smtp_err {
	SMTP_ERR_NONE = 0,
	SMTP_ERR_SYNTAX,         /* 501 5.5.4 / 5.1.3 / 5.1.7: malformed argument or path */
	SMTP_ERR_PATH_TOO_LONG,  /* 501 5.1.3 / 5.1.7 (limits of RFC 5321 4.5.3.1) */
	SMTP_ERR_UTF8,           /* 553 5.6.7: non-ASCII without SMTPUTF8 (RFC 6531 3.7.4.1) */
	SMTP_ERR_PARAM_UNKNOWN,  /* 555 5.5.4: unrecognised ESMTP parameter */
	SMTP_ERR_PARAM_BAD,      /* 501 5.5.4: known parameter with a bad value or repeated */
};

/*
 * Parses a path "<...>" at the start of s. allow_null: "<>" accepted
 * (reverse-path). allow_no_domain: "<postmaster>" (case-insensitive) is
 * accepted with no_domain set. allow_utf8: SMTPUTF8 was given on MAIL.
 * *used gets the number of bytes consumed (the closing '>').
 * Accepts: dot-atom and quoted local parts, domains, IPv4/IPv6/general
 * address literals, a source route (dropped). Rejects everything else,
 * including a trailing dot in the domain, empty labels, labels > 63,
 * an unquoted '@' in the local part and a bare local part.
 */
int smtp_parse_path(const char *s, size_t n, bool allow_null, bool allow_no_domain, bool allow_utf8,
		    struct mailaddr *out, size_t *used, enum smtp_err *err) MUST_CHECK;

/*
 * The inverse of smtp_parse_path: writes "<local@domain>" (or "<>",
 * "<postmaster>") NUL-terminated to out, re-quoting a quoted local part with
 * '"' and '\\' escaped. 0, or -ENOSPC when outsz is too small
 * (SMTP_PATH_MAX + 1 always suffices for a parsed path).
 */
int smtp_format_path(const struct mailaddr *a, char *out, size_t outsz) MUST_CHECK;

struct smtp_mail_params {
	uint64_t size;       /* SIZE=, 0 when absent */
	bool has_size;
	enum smtp_body body; /* BODY= */
	bool smtputf8;       /* SMTPUTF8 */
	enum smtp_ret ret;   /* RET= (RFC 3461) */
	char envid[SMTP_ENVID_MAX + 1]; /* ENVID=, still xtext-encoded as received, "" when absent */
};

struct smtp_rcpt_params {
	unsigned notify;                 /* SMTP_NOTIFY_* bits; 0 when absent */
	char orcpt[SMTP_ORCPT_MAX + 1];  /* ORCPT= value as received ("rfc822;xtext"), "" when absent */
};

/*
 * "FROM:<path> [params]" (args of MAIL). Parameter keywords are
 * case-insensitive; each may appear once. Known: SIZE, BODY=7BIT|8BITMIME,
 * SMTPUTF8, RET=FULL|HDRS, ENVID=xtext. A space between "FROM:" and "<" is
 * tolerated (common client behaviour).
 */
int smtp_parse_mail(const char *args, size_t n, struct mailaddr *from, struct smtp_mail_params *p,
		    enum smtp_err *err) MUST_CHECK;

/* "TO:<path> [params]": NOTIFY=NEVER|SUCCESS,FAILURE,DELAY and ORCPT=addr-type;xtext. */
int smtp_parse_rcpt(const char *args, size_t n, bool smtputf8, struct mailaddr *to, struct smtp_rcpt_params *p,
		    enum smtp_err *err) MUST_CHECK;

/* "chunk-size [LAST]" (RFC 3030). chunk-size is 1*DIGIT and must fit in 63 bits. */
int smtp_parse_bdat(const char *args, size_t n, uint64_t *size, bool *last) MUST_CHECK;

/*
 * HELO/EHLO argument: one token of printable ASCII (no SP), at most 255
 * octets, copied NUL-terminated to out. Whether it is a valid host name is
 * a policy question, not a syntax one. Empty or more than one token: -EINVAL.
 */
int smtp_parse_helo(const char *args, size_t n, char *out, size_t outsz) MUST_CHECK;

/* xtext (RFC 3461 4): 0 if s is valid xtext ("+XX" hex escapes, printable ASCII otherwise). */
int smtp_check_xtext(const char *s, size_t n) MUST_CHECK;

/*
 * Streaming DATA decoder: finds the end of data (only CRLF "." CRLF; the
 * CRLF that precedes the dot belongs to the message), undoes dot-stuffing,
 * and flags bare CR or bare LF anywhere in the content (SMTP smuggling).
 * Content lines longer than SMTP_TEXT_LINE_MAX are counted, not changed.
 * The very start of the data counts as the start of a line. Only CRLF ends
 * a line (for the marker, dot-stuffing and long_lines alike): bare CR and
 * LF are passed through as content, so "\n.\n" or "\r\n.\n" never end
 * the data. A "." at the start of a line is removed unless CRLF follows it,
 * also when a bare CR or LF follows it. Output does not depend on how the
 * input is split across calls.
 */
struct smtp_data_dec {
	uint8_t state;        /* private */
	bool bare_cr_or_lf;   /* saw CR not followed by LF, or LF not preceded by CR */
	size_t line_len;      /* private: octets in the current line so far */
	uint64_t long_lines;  /* lines over 998 octets (excluding CRLF) */
	uint64_t out_bytes;   /* total octets appended to out */
};

/*
 * Feeds n bytes. Appends decoded content to out and returns the number of
 * input bytes consumed; when the end-of-data marker is consumed, *done is
 * set and the bytes after it are not consumed (they are the next command).
 */
size_t smtp_data_feed(struct smtp_data_dec *d, const char *in, size_t n, struct buf *out, bool *done);

/*
 * Checks raw content (BDAT chunks) for bare CR / bare LF and long lines.
 * State carries across chunks; call with the decoder used for the message.
 * A CR that ends a chunk is held until the next one; one that ends the
 * last chunk is never flagged (nothing can follow it to make it smuggle).
 */
void smtp_data_scan(struct smtp_data_dec *d, const char *in, size_t n);

#endif
