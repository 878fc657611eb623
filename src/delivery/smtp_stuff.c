/*
 * smtp_stuff: see smtp_stuff.h. Called by smtp_out while it streams a
 * message body from the spool. Invariant between calls: at most one CR is
 * held back (st->cr), and st->mid_line says whether a "." would start a
 * line. Runs of ordinary bytes are emitted in one piece (this is the hot
 * path of delivery). No errors: every input has an encoding.
 */
#include "smtp_stuff.h"

#include <string.h>

void smtp_stuff_init(struct smtp_stuff *st)
{
	memset(st, 0, sizeof(*st));
}

static void line_end(struct smtp_stuff *st, smtp_stuff_emit_fn *emit, void *arg)
{
	emit(arg, "\r\n", 2);
	st->mid_line = false;
	st->cr = false;
}

void smtp_stuff_feed(struct smtp_stuff *st, const void *data, size_t n, smtp_stuff_emit_fn *emit, void *arg)
{
	const unsigned char *p = data, *end = p + n;
	while (p < end) {
		if (st->cr) {
			/* CR LF, or a bare CR: either way one line end */
			line_end(st, emit, arg);
			if (*p == '\n')
				p++;
			continue;
		}
		if (*p == '\r' || *p == '\n') {
			st->cr = *p == '\r';
			if (!st->cr)
				line_end(st, emit, arg); /* a bare LF */
			p++;
			continue;
		}
		if (!st->mid_line && *p == '.')
			emit(arg, ".", 1);
		const unsigned char *run = p;
		while (p < end && *p != '\r' && *p != '\n')
			p++;
		emit(arg, run, (size_t)(p - run));
		st->mid_line = true;
	}
}

void smtp_stuff_end(struct smtp_stuff *st, smtp_stuff_emit_fn *emit, void *arg)
{
	if (st->cr || st->mid_line)
		line_end(st, emit, arg);
}
