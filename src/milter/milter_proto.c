/*
 * milter_proto: packet encoders and the reply decoder of the milter
 * protocol (see milter_proto.h). Pure: no I/O, the decoder does not
 * allocate and trusts nothing: every string must be NUL-terminated inside
 * its packet, every length is bounded, and a reply whose data does not fit
 * its command is -EBADMSG (the caller then treats the milter as broken).
 */
#include "milter_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

/* --- encoders ---------------------------------------------------------------- */

static void put_u32(struct buf *b, uint32_t v)
{
	uint32_t be = htonl(v);
	buf_append(b, &be, 4);
}

/* Starts a packet; returns where its length goes, patched by end_packet. */
static size_t begin_packet(struct buf *b, char cmd)
{
	size_t at = b->len;
	put_u32(b, 0);
	buf_append(b, &cmd, 1);
	return at;
}

static void end_packet(struct buf *b, size_t at)
{
	uint32_t be = htonl((uint32_t)(b->len - at - 4));
	memcpy(b->data + at, &be, 4);
}

static void put_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s) + 1);
}

void milter_enc_optneg(struct buf *b, uint32_t version, uint32_t actions, uint32_t steps)
{
	size_t at = begin_packet(b, SMFIC_OPTNEG);
	put_u32(b, version);
	put_u32(b, actions);
	put_u32(b, steps);
	end_packet(b, at);
}

void milter_enc_connect(struct buf *b, const char *hostname, char family, uint16_t port, const char *addr)
{
	size_t at = begin_packet(b, SMFIC_CONNECT);
	put_str(b, hostname);
	buf_append(b, &family, 1);
	if (family != 'U') {
		uint16_t be = htons(port);
		buf_append(b, &be, 2);
		put_str(b, addr);
	}
	end_packet(b, at);
}

void milter_enc_macro(struct buf *b, char stage, const struct milter_macro *m, size_t n)
{
	size_t at = begin_packet(b, SMFIC_MACRO);
	buf_append(b, &stage, 1);
	for (size_t i = 0; i < n; i++) {
		if (!m[i].value)
			continue;
		put_str(b, m[i].name);
		put_str(b, m[i].value);
	}
	end_packet(b, at);
}

void milter_enc_str(struct buf *b, char cmd, const char *s)
{
	milter_enc_strs(b, cmd, &s, 1);
}

void milter_enc_strs(struct buf *b, char cmd, const char *const *v, size_t n)
{
	size_t at = begin_packet(b, cmd);
	for (size_t i = 0; i < n; i++)
		put_str(b, v[i]);
	end_packet(b, at);
}

void milter_enc_header(struct buf *b, const char *name, size_t nlen, const char *value, size_t vlen)
{
	size_t at = begin_packet(b, SMFIC_HEADER);
	buf_append(b, name, nlen);
	buf_append(b, "", 1);
	buf_append(b, value, vlen);
	buf_append(b, "", 1);
	end_packet(b, at);
}

void milter_enc_empty(struct buf *b, char cmd)
{
	end_packet(b, begin_packet(b, cmd));
}

void milter_enc_body(struct buf *b, const void *p, size_t n)
{
	size_t at = begin_packet(b, SMFIC_BODY);
	buf_append(b, p, n);
	end_packet(b, at);
}

/* --- the decoder ------------------------------------------------------------- */

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return ntohl(v);
}

/* A NUL-terminated string at *p within [*p, end): its length; *p moves past the NUL. -EBADMSG without one. */
static long take_str(const unsigned char **p, const unsigned char *end, const char **s)
{
	const unsigned char *nul = memchr(*p, '\0', (size_t)(end - *p));
	if (!nul)
		return -EBADMSG;
	*s = (const char *)*p;
	long n = (long)(nul - *p);
	*p = nul + 1;
	return n;
}

static bool is_field_name(const char *s, size_t n)
{
	if (n == 0 || n > MILTER_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 33 || (unsigned char)s[i] > 126 || s[i] == ':')
			return false;
	return true;
}

/* A header value: any octet but NUL and controls other than TAB, CR and LF (folding). */
static bool is_field_value(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if ((c < 32 && c != '\t' && c != '\r' && c != '\n') || c == 0x7f)
			return false;
	}
	return true;
}

/* Text we may repeat in a reply or a log: printable, at most MILTER_TEXT_MAX. */
static bool is_text(const char *s, size_t n)
{
	if (n > MILTER_TEXT_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 32 || s[i] == 0x7f)
			return false;
	return true;
}

/* name\0value\0, nothing after. */
static int take_header(const unsigned char *p, const unsigned char *end, struct milter_reply *r)
{
	long nl = take_str(&p, end, &r->name);
	if (nl < 0)
		return -EBADMSG;
	long vl = take_str(&p, end, &r->value);
	if (vl < 0 || p != end)
		return -EBADMSG;
	r->name_len = (size_t)nl;
	r->value_len = (size_t)vl;
	if (!is_field_name(r->name, r->name_len) || !is_field_value(r->value, r->value_len))
		return -EBADMSG;
	return 0;
}

/* One string that must be all the data (with optional further strings when more is true). */
static int take_text(const unsigned char *p, const unsigned char *end, struct milter_reply *r, bool more)
{
	long n = take_str(&p, end, &r->text);
	if (n < 0 || (!more && p != end) || !is_text(r->text, (size_t)n))
		return -EBADMSG;
	r->text_len = (size_t)n;
	return 0;
}

/*
 * "550 5.7.1 text" (smfi_setreply) or a multi-line one (smfi_setmlreply,
 * lines joined by CRLF): the code must be 4xx or 5xx; only the first line
 * is kept (the text after the code and its separator).
 */
static int take_replycode(const unsigned char *p, const unsigned char *end, struct milter_reply *r)
{
	const char *s;
	long n = take_str(&p, end, &s);
	if (n < 3 || p != end)
		return -EBADMSG;
	if ((s[0] != '4' && s[0] != '5') || s[1] < '0' || s[1] > '9' || s[2] < '0' || s[2] > '9')
		return -EBADMSG;
	if (n > 3 && s[3] != ' ' && s[3] != '-')
		return -EBADMSG;
	r->code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	const char *t = n > 3 ? s + 4 : s + 3;
	size_t tl = (size_t)(s + n - t);
	const char *crlf = memchr(t, '\r', tl);
	if (crlf)
		tl = (size_t)(crlf - t);
	if (!is_text(t, tl))
		return -EBADMSG;
	r->text = t;
	r->text_len = tl;
	return 0;
}

/* The options reply: three words, then optional symbol lists (where, list\0), which we take but do not use. */
static int take_optneg(const unsigned char *p, const unsigned char *end, struct milter_reply *r)
{
	if (end - p < 12)
		return -EBADMSG;
	r->version = get_u32(p);
	r->actions = get_u32(p + 4);
	r->steps = get_u32(p + 8);
	p += 12;
	while (p < end) {
		const char *list;
		if (end - p < 4)
			return -EBADMSG;
		p += 4;
		if (take_str(&p, end, &list) < 0)
			return -EBADMSG;
	}
	return 0;
}

static int decode_data(char cmd, const unsigned char *p, const unsigned char *end, struct milter_reply *r)
{
	switch (cmd) {
	case SMFIR_ACCEPT:
	case SMFIR_CONTINUE:
	case SMFIR_DISCARD:
	case SMFIR_REJECT:
	case SMFIR_TEMPFAIL:
	case SMFIR_PROGRESS:
	case SMFIR_SKIP:
	case SMFIR_SHUTDOWN:
	case SMFIR_CONN_FAIL:
		return p == end ? 0 : -EBADMSG;
	case SMFIR_REPLYCODE:
		return take_replycode(p, end, r);
	case SMFIR_ADDHEADER:
		return take_header(p, end, r);
	case SMFIR_INSHEADER:
	case SMFIR_CHGHEADER:
		if (end - p < 4)
			return -EBADMSG;
		r->index = get_u32(p);
		return take_header(p + 4, end, r);
	case SMFIR_REPLBODY:
		r->data = p;
		r->data_len = (size_t)(end - p);
		return 0;
	case SMFIR_QUARANTINE:
	case SMFIR_ADDRCPT:
	case SMFIR_DELRCPT:
		return take_text(p, end, r, false);
	case SMFIR_ADDRCPT_PAR:
	case SMFIR_CHGFROM:
		return take_text(p, end, r, true); /* ESMTP parameters may follow: not used */
	case SMFIR_OPTNEG:
		return take_optneg(p, end, r);
	default:
		return -EBADMSG;
	}
}

long milter_decode_reply(const unsigned char *p, size_t n, struct milter_reply *r)
{
	if (n < 4)
		return 0;
	uint32_t len = get_u32(p);
	if (len == 0 || len > MILTER_REPLY_MAX)
		return -EMSGSIZE;
	if (n - 4 < len)
		return 0;
	memset(r, 0, sizeof(*r));
	r->cmd = (char)p[4];
	int rc = decode_data(r->cmd, p + 5, p + 4 + len, r);
	if (rc < 0)
		return rc;
	return (long)len + 4;
}

bool milter_reply_is_final(char cmd)
{
	switch (cmd) {
	case SMFIR_ACCEPT:
	case SMFIR_CONTINUE:
	case SMFIR_DISCARD:
	case SMFIR_REJECT:
	case SMFIR_TEMPFAIL:
	case SMFIR_REPLYCODE:
	case SMFIR_SKIP:
	case SMFIR_SHUTDOWN:
	case SMFIR_CONN_FAIL:
	case SMFIR_OPTNEG:
		return true;
	default:
		return false;
	}
}

const char *milter_reply_name(char cmd)
{
	switch (cmd) {
	case SMFIR_ACCEPT: return "accept";
	case SMFIR_CONTINUE: return "continue";
	case SMFIR_DISCARD: return "discard";
	case SMFIR_REJECT: return "reject";
	case SMFIR_TEMPFAIL: return "tempfail";
	case SMFIR_REPLYCODE: return "replycode";
	case SMFIR_SKIP: return "skip";
	case SMFIR_SHUTDOWN: return "shutdown";
	case SMFIR_CONN_FAIL: return "conn-fail";
	case SMFIR_OPTNEG: return "optneg";
	case SMFIR_ADDHEADER: return "addheader";
	case SMFIR_INSHEADER: return "insheader";
	case SMFIR_CHGHEADER: return "chgheader";
	case SMFIR_REPLBODY: return "replbody";
	case SMFIR_QUARANTINE: return "quarantine";
	case SMFIR_ADDRCPT: return "addrcpt";
	case SMFIR_DELRCPT: return "delrcpt";
	case SMFIR_ADDRCPT_PAR: return "addrcpt-par";
	case SMFIR_CHGFROM: return "chgfrom";
	case SMFIR_PROGRESS: return "progress";
	case SMFIR_SETSYMLIST: return "setsymlist";
	default: return "unknown";
	}
}
