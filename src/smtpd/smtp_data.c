/*
 * smtp_data: the streaming DATA decoder and the BDAT content scanner
 * declared in smtp_parse.h (part of the same pure parsing layer, kept in its
 * own file for size). Called by smtp_in.c as bytes arrive, in any split;
 * the only allocation is the caller's struct buf growing. Finds the end of
 * data (only CRLF "." CRLF), undoes dot-stuffing, and flags bare CR or LF.
 */
#include <string.h>

#include "smtp_parse.h"

/* --- DATA decoding -------------------------------------------------------- */

/*
 * Decoder states. Zero is "start of a line" so a zeroed decoder is ready.
 * Only CR LF ends a line: a bare CR or LF is content (flagged), and a "."
 * after one is content too, which is what defeats SMTP smuggling.
 */
enum {
	DS_BOL = 0,  /* at the start of a line */
	DS_TEXT,     /* inside a line */
	DS_CR,       /* inside a line, a CR held back until we see what follows */
	DS_DOT,      /* a "." at the start of a line, held back */
	DS_DOTCR,    /* "." CR at the start of a line, held back */
	DS_DONE,     /* the end-of-data marker was consumed */
};

static void put_text(struct smtp_data_dec *d, struct buf *out, const char *p, size_t n)
{
	/* Count a long line once, when it crosses the limit. */
	if (d->line_len <= SMTP_TEXT_LINE_MAX - 2 && d->line_len + n > SMTP_TEXT_LINE_MAX - 2)
		d->long_lines++;
	d->line_len += n;
	if (out) {
		buf_append(out, p, n);
		d->out_bytes += n;
	}
}

static void put_crlf(struct smtp_data_dec *d, struct buf *out)
{
	d->line_len = 0;
	if (out) {
		buf_append(out, "\r\n", 2);
		d->out_bytes += 2;
	}
}

static void put_bare(struct smtp_data_dec *d, struct buf *out, const char *c)
{
	d->bare_cr_or_lf = true;
	put_text(d, out, c, 1);
}

/* One byte inside a line (DS_TEXT or DS_CR); shared by DATA and BDAT. */
static void text_byte(struct smtp_data_dec *d, char c, struct buf *out)
{
	if (d->state == DS_CR) {
		if (c == '\n') {
			put_crlf(d, out);
			d->state = DS_BOL;
			return;
		}
		put_bare(d, out, "\r");
		d->state = DS_TEXT;
	}
	if (c == '\r')
		d->state = DS_CR;
	else if (c == '\n')
		put_bare(d, out, "\n");
	else
		put_text(d, out, &c, 1);
}

/* One byte in any state; true when it completed the end-of-data marker. */
static bool data_byte(struct smtp_data_dec *d, char c, struct buf *out)
{
	switch (d->state) {
	case DS_BOL:
		if (c == '.') {
			d->state = DS_DOT;
			return false;
		}
		d->state = DS_TEXT;
		break;
	case DS_DOT:
		if (c == '\r') {
			d->state = DS_DOTCR;
			return false;
		}
		d->state = DS_TEXT;  /* dot-stuffing: the dot goes */
		break;
	case DS_DOTCR:
		if (c == '\n') {
			d->state = DS_DONE;
			return true;
		}
		d->state = DS_CR;  /* the dot goes, the CR turns out bare */
		break;
	}
	text_byte(d, c, out);
	return false;
}

/*
 * Bytes from i up to the next CR or LF. The positions found by memchr are
 * cached so that a buffer full of one kind of line end stays linear.
 */
struct run_finder {
	const char *s;
	size_t n, cr, lf;
};

static size_t next_of(const char *s, size_t n, size_t from, int c)
{
	const char *q = memchr(s + from, c, n - from);
	return q ? (size_t)(q - s) : n;
}

static size_t run_len(struct run_finder *f, size_t i)
{
	if (f->cr < i)
		f->cr = next_of(f->s, f->n, i, '\r');
	if (f->lf < i)
		f->lf = next_of(f->s, f->n, i, '\n');
	return (f->cr < f->lf ? f->cr : f->lf) - i;
}

static void run_init(struct run_finder *f, const char *in, size_t n)
{
	f->s = in;
	f->n = n;
	f->cr = next_of(in, n, 0, '\r');
	f->lf = next_of(in, n, 0, '\n');
}

size_t smtp_data_feed(struct smtp_data_dec *d, const char *in, size_t n, struct buf *out, bool *done)
{
	struct run_finder f;
	size_t i = 0;

	*done = d->state == DS_DONE;
	if (*done || n == 0)
		return 0;
	run_init(&f, in, n);
	while (i < n) {
		if (d->state == DS_BOL && in[i] != '.')
			d->state = DS_TEXT;
		if (d->state == DS_TEXT) {
			size_t len = run_len(&f, i);
			if (len) {
				put_text(d, out, in + i, len);
				i += len;
				continue;
			}
		}
		if (data_byte(d, in[i++], out)) {
			*done = true;
			break;
		}
	}
	return i;
}

void smtp_data_scan(struct smtp_data_dec *d, const char *in, size_t n)
{
	struct run_finder f;
	size_t i = 0;

	if (n == 0)
		return;
	/* No dot handling in BDAT: every state but a held CR is just "in text". */
	if (d->state != DS_CR)
		d->state = DS_TEXT;
	run_init(&f, in, n);
	while (i < n) {
		size_t len = d->state == DS_TEXT ? run_len(&f, i) : 0;
		if (len) {
			put_text(d, NULL, in + i, len);
			i += len;
			continue;
		}
		text_byte(d, in[i++], NULL);
		if (d->state == DS_BOL)
			d->state = DS_TEXT;
	}
}
