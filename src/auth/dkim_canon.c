/*
 * dkim_canon: simple and relaxed canonicalisation of header fields and of
 * the body (RFC 6376 3.4.1-3.4.4). Pure; called by dkim.c, per signature.
 * The body is a byte-at-a-time state machine, so where the caller's chunks
 * split the body (even inside a CRLF) cannot change the output; output is
 * batched through a small buffer so the hash sees few, large updates.
 */
#include <string.h>

#include "auth/dkim_canon.h"

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool ends_crlf(const char *raw, size_t n)
{
	return n >= 2 && raw[n - 2] == '\r' && raw[n - 1] == '\n';
}

void dkim_canon_header(enum dkim_canon c, const char *raw, size_t n, bool crlf, struct buf *out)
{
	if (ends_crlf(raw, n))
		n -= 2;
	if (c == DKIM_CANON_SIMPLE) {
		buf_append(out, raw, n);
	} else {
		const char *colon = memchr(raw, ':', n);
		size_t nn = colon ? (size_t)(colon - raw) : n;
		while (nn > 0 && is_wsp(raw[nn - 1]))
			nn--;
		for (size_t k = 0; k < nn; k++) {
			char l = raw[k] >= 'A' && raw[k] <= 'Z' ? (char)(raw[k] - 'A' + 'a') : raw[k];
			if (!is_wsp(l) && l != '\r' && l != '\n') /* a name folded before its colon, unfolded */
				buf_append(out, &l, 1);
		}
		buf_append(out, ":", 1);
		bool space = false, any = false;
		for (size_t k = colon ? (size_t)(colon - raw) + 1 : n; k < n; k++) {
			char ch = raw[k];
			if (ch == '\r' || ch == '\n')
				continue; /* unfolding */
			if (is_wsp(ch)) {
				space = any;
				continue;
			}
			if (space)
				buf_append(out, " ", 1);
			buf_append(out, &ch, 1);
			space = false;
			any = true;
		}
	}
	if (crlf)
		buf_append(out, "\r\n", 2);
}

void dkim_body_init(struct dkim_body *b, enum dkim_canon c, dkim_out_fn *out, void *arg)
{
	memset(b, 0, sizeof(*b));
	b->canon = c;
	b->out = out;
	b->arg = arg;
}

static void body_flush(struct dkim_body *b)
{
	if (b->held)
		b->out(b->arg, b->hold, b->held);
	b->held = 0;
}

static void put(struct dkim_body *b, unsigned char c)
{
	b->hold[b->held++] = c;
	b->emitted++;
	if (b->held == sizeof(b->hold))
		body_flush(b);
}

/* A byte that is part of a line's text: the empty lines before it count now. */
static void text(struct dkim_body *b, unsigned char c)
{
	for (; b->empty_lines; b->empty_lines--) {
		put(b, '\r');
		put(b, '\n');
	}
	if (b->wsp)
		put(b, ' ');
	b->wsp = false;
	put(b, c);
	b->line_has_text = true;
}

static void end_of_line(struct dkim_body *b)
{
	if (b->line_has_text) {
		put(b, '\r');
		put(b, '\n');
	} else {
		b->empty_lines++;
	}
	b->line_has_text = false;
	b->wsp = false;
}

void dkim_body_feed(struct dkim_body *b, const unsigned char *p, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		unsigned char c = p[k];
		if (b->cr) {
			b->cr = false;
			if (c == '\n') {
				end_of_line(b);
				continue;
			}
			text(b, '\r');
		}
		if (c == '\r')
			b->cr = true;
		else if (b->canon == DKIM_CANON_RELAXED && is_wsp((char)c))
			b->wsp = true;
		else
			text(b, c);
	}
}

void dkim_body_end(struct dkim_body *b)
{
	if (b->cr)
		text(b, '\r');
	b->cr = false;
	b->wsp = false;
	if (b->line_has_text)
		end_of_line(b); /* a last line without CRLF gets one (3.4.3, 3.4.4) */
	b->empty_lines = 0;
	if (b->canon == DKIM_CANON_SIMPLE && b->emitted == 0) {
		put(b, '\r'); /* simple: an empty body is one CRLF (3.4.3) */
		put(b, '\n');
	}
	body_flush(b);
}
