/*
 * smtp_stuff: the SMTP client's content encoder (RFC 5321 4.5.2 and 2.3.8).
 * Message bytes in, in any split; DATA content out: every line ends in
 * CRLF (a bare CR or a bare LF becomes CRLF, so no next hop can see a line
 * end we did not mean, the way SMTP smuggling needs) and a line starting
 * with "." gets another "." in front. Pure: output goes to the caller's
 * emit function.
 */
#ifndef MXV_SMTP_STUFF_H
#define MXV_SMTP_STUFF_H

#include <stdbool.h>
#include <stddef.h>

typedef void smtp_stuff_emit_fn(void *arg, const void *p, size_t n);

struct smtp_stuff {
	bool mid_line; /* the last byte out was not a line end */
	bool cr;       /* a CR came last and was held back: CRLF, or bare */
};

void smtp_stuff_init(struct smtp_stuff *st);
void smtp_stuff_feed(struct smtp_stuff *st, const void *p, size_t n, smtp_stuff_emit_fn *emit, void *arg);
/* The content is over: ends its last line with CRLF if open. The "." line is the caller's. */
void smtp_stuff_end(struct smtp_stuff *st, smtp_stuff_emit_fn *emit, void *arg);

#endif
