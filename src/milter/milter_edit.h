/*
 * milter_edit: the header section of a message as milters see it and
 * change it. Pure (no I/O), bounded by its inputs: splits a stored header
 * section into fields, and applies a milter's header changes to it.
 * Used by smtpd (what it sends to milters, what it stores) and unit-tested.
 */
#ifndef MXV_MILTER_EDIT_H
#define MXV_MILTER_EDIT_H

#include <stdbool.h>
#include <stddef.h>

#include "base/util.h"
#include "milter.h"

/* One field of a header section: name, and the value as a milter gets it. */
struct milter_field {
	const char *start;  /* the whole field, its CRLF included */
	size_t len;
	const char *name;
	size_t name_len;
	const char *value;  /* after the colon and one space, CRLF at its end excluded */
	size_t value_len;
};

/*
 * The next field of head[*off..n) (CRLF line ends, continuation lines
 * start with space or tab). False at the end, or for a line that is no
 * field (no colon): then *off is left at it.
 */
bool milter_next_field(const char *head, size_t n, size_t *off, struct milter_field *f);

/*
 * A value for the milter: CRLF inside it (folding) becomes LF, as
 * Sendmail and Postfix send it. Appends to out.
 */
void milter_value_for_milter(const char *v, size_t n, struct buf *out);

/*
 * Applies edits, in order, to the header section head[0..n) and writes
 * the result to out (CRLF line ends; values from milters get CRLF for
 * LF). ADD appends; INSERT puts the field before the index-th field
 * (0-based; past the end appends); CHANGE replaces the index-th field
 * (1-based) of that name, case-insensitively, deletes it when the value
 * is "", and appends a new field when there is no such field.
 */
void milter_edit_apply(const char *head, size_t n, const struct milter_edit *e, size_t ne, struct buf *out);

#endif
