/*
 * smtp_reply: see smtp_reply.h. Owns nothing but the caller's struct;
 * called by smtp_out for every line it reads, and by the unit and fuzz
 * tests. Invariants: r->len <= SMTP_REPLY_TEXT_MAX and r->text is always
 * NUL-terminated; r->lines never passes SMTP_REPLY_LINES_MAX; a code kept is
 * valid by the ABNF. Error policy: a line we cannot read exactly is an
 * error returned to the caller, who ends the session (a protocol error is a
 * deferral, never a delivery or a bounce).
 */
#include "smtp_reply.h"

#include <errno.h>
#include <string.h>

void smtp_reply_init(struct smtp_reply *r, bool ehlo)
{
	memset(r, 0, sizeof(*r));
	r->ehlo = ehlo;
}

bool smtp_reply_code_valid(int code)
{
	return code >= 200 && code <= 559 && code / 10 % 10 <= 5;
}

static int line_code(const char *line, size_t n)
{
	for (size_t i = 0; i < 3; i++)
		if (i >= n || line[i] < '0' || line[i] > '9')
			return -1;
	int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	return smtp_reply_code_valid(code) ? code : -1;
}

/* Appends text (controls dropped), a space between lines, up to the cap. */
static void add_text(struct smtp_reply *r, const char *p, size_t n)
{
	if (n == 0)
		return;
	if (r->len && r->len < SMTP_REPLY_TEXT_MAX)
		r->text[r->len++] = ' ';
	for (size_t i = 0; i < n && r->len < SMTP_REPLY_TEXT_MAX; i++)
		if ((unsigned char)p[i] >= 0x20 && p[i] != 0x7f)
			r->text[r->len++] = p[i];
	r->text[r->len] = '\0';
}

/* Is the keyword kw (n bytes) name, alone or followed by a parameter? */
static bool is_kw(const char *kw, size_t n, const char *name, const char **param)
{
	size_t l = strlen(name);
	if (n < l || !ascii_ieq(kw, l, name, l) || (n > l && kw[l] != ' '))
		return false;
	if (param)
		*param = n > l ? kw + l + 1 : NULL;
	return true;
}

/* SIZE's parameter: digits only, no overflow; 0 ("no limit known") otherwise. */
static uint64_t size_param(const char *p, size_t n)
{
	uint64_t v = 0;
	if (n == 0 || n > 19)
		return 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	return v;
}

/* One ehlo-line (RFC 5321 4.1.1.1): a keyword and its parameters. */
static void parse_ehlo_line(struct smtp_caps *c, const char *kw, size_t n)
{
	const char *param;
	if (is_kw(kw, n, "PIPELINING", NULL))
		c->pipelining = true;
	else if (is_kw(kw, n, "SIZE", &param)) {
		c->size = true;
		c->size_max = param ? size_param(param, n - (size_t)(param - kw)) : 0;
	} else if (is_kw(kw, n, "8BITMIME", NULL))
		c->eightbit = true;
	else if (is_kw(kw, n, "SMTPUTF8", NULL))
		c->smtputf8 = true;
	else if (is_kw(kw, n, "DSN", NULL))
		c->dsn = true;
	else if (is_kw(kw, n, "STARTTLS", NULL))
		c->starttls = true;
}

int smtp_reply_feed(struct smtp_reply *r, const char *line, size_t n)
{
	if (n > SMTP_REPLY_LINE_MAX)
		return -EMSGSIZE;
	if (r->lines >= SMTP_REPLY_LINES_MAX)
		return -E2BIG;
	int code = line_code(line, n);
	if (code < 0 || (n > 3 && line[3] != ' ' && line[3] != '-'))
		return -EBADMSG;
	if (r->lines > 0 && code != r->code)
		return -EBADMSG; /* RFC 5321 4.2.1: every line of a reply has the same code */
	bool last = n == 3 || line[3] == ' ';
	const char *text = n > 4 ? line + 4 : line + n;
	size_t tn = n > 4 ? n - 4 : 0;
	if (r->lines == 0) {
		r->code = code;
		memcpy(r->text, line, 3); /* "250-text" is kept as "250 text" */
		r->len = 3;
		r->text[r->len] = '\0';
		add_text(r, text, tn);
	} else {
		add_text(r, text, tn);
		if (r->ehlo)
			parse_ehlo_line(&r->caps, text, tn);
	}
	r->lines++;
	return last ? SMTP_REPLY_DONE : SMTP_REPLY_MORE;
}

const char *smtp_reply_strerror(int err)
{
	switch (err) {
	case -EMSGSIZE: return "reply line too long";
	case -E2BIG: return "reply has too many lines";
	case -EBADMSG: return "malformed reply";
	default: return "bad reply";
	}
}

static const struct {
	const char *name;
	int ok1, ok2;
} cmds[] = {
	[SMTP_CMD_GREETING] = {"greeting", 220, 220},
	[SMTP_CMD_EHLO] = {"EHLO", 250, 250},
	[SMTP_CMD_HELO] = {"HELO", 250, 250},
	[SMTP_CMD_STARTTLS] = {"STARTTLS", 220, 220},
	[SMTP_CMD_MAIL] = {"MAIL", 250, 250},
	[SMTP_CMD_RCPT] = {"RCPT", 250, 251},
	[SMTP_CMD_DATA] = {"DATA", 354, 354},
	[SMTP_CMD_DOT] = {"end of data", 250, 250},
	[SMTP_CMD_RSET] = {"RSET", 250, 250},
	[SMTP_CMD_QUIT] = {"QUIT", 221, 221},
};

enum smtp_verdict smtp_reply_verdict(enum smtp_cmd cmd, int code)
{
	if ((size_t)cmd >= ARRAY_LEN(cmds) || !smtp_reply_code_valid(code))
		return SMTP_VERDICT_PROTOCOL;
	if (code == cmds[cmd].ok1 || code == cmds[cmd].ok2)
		return SMTP_VERDICT_OK;
	if (code / 100 == 4)
		return SMTP_VERDICT_TEMPFAIL;
	if (code / 100 == 5)
		return SMTP_VERDICT_PERMFAIL;
	return SMTP_VERDICT_PROTOCOL;
}

const char *smtp_cmd_name(enum smtp_cmd cmd)
{
	return (size_t)cmd < ARRAY_LEN(cmds) ? cmds[cmd].name : "command";
}
