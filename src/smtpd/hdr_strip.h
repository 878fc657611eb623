/*
 * hdr_strip: a streaming filter between the client's content and the spool
 * that removes every Authentication-Results field claiming our
 * authserv-id (RFC 8601 5: a sender must not be able to forge our verdict),
 * with its folded continuation lines, and passes every other byte on
 * unchanged and in order. Results do not depend on how the input is split.
 *
 * The header section is found the way msg_hdr finds it (same rules: it
 * runs to the first empty line, and since the stored message starts with
 * our Received: field, a leading WSP line continues that field and a line
 * that is not a field is kept in the section and ignored: so a client
 * cannot make the fields that follow such a line escape the filter while
 * the primary still reads them as header fields). Only a field named
 * Authentication-Results is held back, until its last continuation line
 * shows whether it is ours (authres_is_ours); everything else streams
 * through at once. A held field longer than HDR_STRIP_HOLD_MAX is removed
 * unread: a primary that trusts our authserv-id must not get a field
 * whose id we could not check.
 */
#ifndef MXV_HDR_STRIP_H
#define MXV_HDR_STRIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define HDR_STRIP_HOLD_MAX 16384

/* Receives the bytes kept, in order, in spans of any size. */
typedef void hdr_strip_out_fn(void *arg, const char *p, size_t n);

struct hdr_strip {
	uint32_t removed;        /* fields removed so far */
	/* private */
	const char *authserv_id; /* NULL: remove nothing */
	hdr_strip_out_fn *out;
	void *arg;
	int state;
	bool cur_held;           /* the current field is an Authentication-Results field, in hold */
	bool cur_dropped;        /* the current field is being removed */
	size_t name_len;
	struct buf hold;
};

void hdr_strip_init(struct hdr_strip *f, const char *authserv_id, hdr_strip_out_fn *out, void *arg);
/* Feeds content bytes (dot-unstuffed, as the spool stores them). */
void hdr_strip_feed(struct hdr_strip *f, const char *p, size_t n);
/* The content ended: decides and passes on what is still held. */
void hdr_strip_finish(struct hdr_strip *f);
/* Releases the hold buffer (also after finish; idempotent). */
void hdr_strip_free(struct hdr_strip *f);

#endif
