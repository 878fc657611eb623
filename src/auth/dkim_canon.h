/*
 * dkim_canon: DKIM canonicalisation (RFC 6376 3.4), pure. Header fields are
 * canonicalised one at a time (the caller has the whole field); the body is
 * streamed: dkim_body_feed takes any split of the body and gives the same
 * output as one call, dkim_body_end flushes (and drops the trailing empty
 * lines, 3.4.3 and 3.4.4). Output goes to a callback, in pieces.
 */
#ifndef MXV_DKIM_CANON_H
#define MXV_DKIM_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/dkim_parse.h"
#include "base/util.h"

/*
 * One header field, raw (name, colon, value, folded lines, and the final
 * CRLF if crlf): appended to out canonicalised, with its CRLF only if crlf.
 */
void dkim_canon_header(enum dkim_canon c, const char *raw, size_t n, bool crlf, struct buf *out);

typedef void dkim_out_fn(void *arg, const unsigned char *p, size_t n);

struct dkim_body {
	enum dkim_canon canon;
	dkim_out_fn *out;
	void *arg;
	uint64_t empty_lines; /* CRLFs held back: trailing ones are dropped */
	uint64_t emitted;     /* bytes given to out */
	bool cr;              /* a CR not yet known to start a CRLF */
	bool line_has_text;   /* the current line has something (relaxed: besides WSP) */
	bool wsp;             /* relaxed: WSP held back */
	size_t held;
	unsigned char hold[512];
};

void dkim_body_init(struct dkim_body *b, enum dkim_canon c, dkim_out_fn *out, void *arg);
void dkim_body_feed(struct dkim_body *b, const unsigned char *p, size_t n);
void dkim_body_end(struct dkim_body *b);

#endif
