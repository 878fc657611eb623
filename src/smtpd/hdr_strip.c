/*
 * hdr_strip: removes forged Authentication-Results fields while content
 * streams to the spool (contract in hdr_strip.h). Caller: smtp_in_data.c,
 * between the DATA decoder (or the raw BDAT chunk) and spool_txn_write.
 * A byte-at-a-time state machine over the header section with the same
 * line rules as msg_hdr.c; past it, whole spans pass at once.
 *
 * Invariants: bytes leave in input order. Whenever something is held, no
 * kept byte of the current input is waiting (the run is flushed before a
 * hold starts), so releasing the hold first keeps the order. The hold only
 * ever contains one Authentication-Results field (or the start of a line
 * whose name may still become one), at most HDR_STRIP_HOLD_MAX octets.
 * Error policy: input is never an error.
 */
#include "hdr_strip.h"

#include <string.h>

#include "auth/authres.h"

enum {
	HS_LINE_START = 0, /* at the start of a header line */
	HS_LINE_CR,        /* a line that so far is just CR */
	HS_NAME,           /* in a field name */
	HS_NAME_WSP,       /* WSP after a field name, before the ':' */
	HS_HELD,           /* in an Authentication-Results field, held */
	HS_PASS,           /* in a line that is kept, up to LF */
	HS_DROP,           /* in a line of a removed field, up to LF */
	HS_BODY,           /* past the header section: everything is kept */
};

static const char AR_NAME[] = "authentication-results";
#define AR_NAME_LEN (sizeof(AR_NAME) - 1)

/* One hdr_strip_feed call: the input, the byte at hand and the start of the run of kept bytes not yet sent. */
struct feed {
	const char *p;
	size_t i;
	size_t run;
};

void hdr_strip_init(struct hdr_strip *f, const char *authserv_id, hdr_strip_out_fn *out, void *arg)
{
	memset(f, 0, sizeof(*f));
	f->authserv_id = authserv_id;
	f->out = out;
	f->arg = arg;
	f->state = HS_LINE_START;
}

static bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* ftext = %d33-57 / %d59-126 (RFC 5322 3.6.8) */
static bool is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

static unsigned char lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + ('a' - 'A')) : c;
}

static void flush_run(struct hdr_strip *f, struct feed *in)
{
	if (in->i > in->run)
		f->out(f->arg, in->p + in->run, in->i - in->run);
	in->run = in->i;
}

/* The byte at hand goes into the hold (or is dropped): it leaves the run. */
static void take(struct hdr_strip *f, struct feed *in, bool keep)
{
	flush_run(f, in);
	if (keep)
		buf_append(&f->hold, in->p + in->i, 1);
	in->run = in->i + 1;
}

/* The hold is not a field to remove after all: send it on. */
static void release(struct hdr_strip *f)
{
	if (f->hold.len)
		f->out(f->arg, (const char *)f->hold.data, f->hold.len);
	buf_reset(&f->hold);
}

/* The held field is complete: removed if it is ours, else sent on. */
static void decide(struct hdr_strip *f)
{
	const char *h = (const char *)f->hold.data, *colon = memchr(h, ':', f->hold.len);
	size_t off = (size_t)(colon - h) + 1; /* a held field always has its ':' */
	if (authres_is_ours(h + off, f->hold.len - off, f->authserv_id)) {
		f->removed++;
		buf_reset(&f->hold);
	} else {
		release(f);
	}
}

/* A new line that is not a continuation: the current field is over. */
static void end_field(struct hdr_strip *f)
{
	if (f->cur_held)
		decide(f);
	f->cur_held = false;
	f->cur_dropped = false;
}

/* A line that is not a field: kept in the header section, ignored (as msg_hdr does). */
static void not_a_field(struct hdr_strip *f, unsigned char c)
{
	f->state = c == '\n' ? HS_LINE_START : HS_PASS;
}

static void at_line_start(struct hdr_strip *f, struct feed *in, unsigned char c)
{
	if (is_wsp(c) && (f->cur_held || f->cur_dropped)) {
		take(f, in, f->cur_held); /* a continuation of the field held or removed */
		f->state = f->cur_held ? HS_HELD : HS_DROP;
		return;
	}
	end_field(f);
	if (c == '\n') {
		f->state = HS_BODY; /* the empty line (bare LF) */
	} else if (c == '\r') {
		f->state = HS_LINE_CR;
	} else if (is_wsp(c)) {
		f->state = HS_PASS; /* continues a field we keep (first of all, our Received:) */
	} else if (!is_ftext(c)) {
		not_a_field(f, c);
	} else {
		f->state = HS_NAME;
		f->name_len = 1;
		if (f->authserv_id && lower(c) == (unsigned char)AR_NAME[0])
			take(f, in, true);
	}
}

static void at_name(struct hdr_strip *f, struct feed *in, unsigned char c)
{
	bool held = f->hold.len > 0;
	if (c == ':') {
		if (held && f->name_len == AR_NAME_LEN) {
			take(f, in, true);
			f->cur_held = true;
			f->state = HS_HELD;
			return;
		}
		release(f);
		f->state = HS_PASS;
	} else if (is_wsp(c)) {
		f->state = HS_NAME_WSP;
		if (held)
			take(f, in, true);
	} else if (f->state == HS_NAME && is_ftext(c)) {
		f->name_len++;
		if (held && f->name_len <= AR_NAME_LEN && lower(c) == (unsigned char)AR_NAME[f->name_len - 1])
			take(f, in, true);
		else
			release(f);
	} else {
		release(f);
		not_a_field(f, c);
	}
}

static void in_held(struct hdr_strip *f, struct feed *in, unsigned char c)
{
	take(f, in, true);
	if (c == '\n')
		f->state = HS_LINE_START;
	if (f->hold.len > HDR_STRIP_HOLD_MAX) {
		/* Too long to check: removed unread (hdr_strip.h). */
		buf_reset(&f->hold);
		f->removed++;
		f->cur_held = false;
		f->cur_dropped = true;
		if (c != '\n')
			f->state = HS_DROP;
	}
}

static void header_byte(struct hdr_strip *f, struct feed *in, unsigned char c)
{
	switch (f->state) {
	case HS_LINE_START:
		at_line_start(f, in, c);
		break;
	case HS_LINE_CR:
		if (c == '\n')
			f->state = HS_BODY;
		else
			not_a_field(f, c);
		break;
	case HS_NAME:
	case HS_NAME_WSP:
		at_name(f, in, c);
		break;
	case HS_HELD:
		in_held(f, in, c);
		break;
	case HS_DROP:
		take(f, in, false);
		if (c == '\n')
			f->state = HS_LINE_START;
		break;
	default: /* HS_PASS */
		if (c == '\n')
			f->state = HS_LINE_START;
		break;
	}
}

void hdr_strip_feed(struct hdr_strip *f, const char *p, size_t n)
{
	struct feed in = {.p = p};
	for (; in.i < n && f->state != HS_BODY; in.i++)
		header_byte(f, &in, (unsigned char)p[in.i]);
	in.i = n; /* in the body, the rest is one run */
	flush_run(f, &in);
}

void hdr_strip_finish(struct hdr_strip *f)
{
	if (f->state == HS_NAME || f->state == HS_NAME_WSP)
		release(f); /* the content ended inside a name: not a field */
	else
		end_field(f);
	f->state = HS_BODY;
	hdr_strip_free(f);
}

void hdr_strip_free(struct hdr_strip *f)
{
	buf_free(&f->hold);
}
