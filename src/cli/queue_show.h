/*
 * queue_show: `mxvault queue show ID [--body]` and `queue export DIR`. Both
 * read the spool read-only (spool_open_readonly, as `queue list`), so they
 * work whether or not the daemon runs; they see what is durable.
 */
#ifndef MXV_QUEUE_SHOW_H
#define MXV_QUEUE_SHOW_H

#include <stdbool.h>
#include <stdio.h>

#include "base/cfg.h"

/* The header section (or, body: the whole message) is printed as it would be sent on. Exit code; 1: no such ID. */
int queue_show(const struct cfg *cfg, const char *id, bool json, bool body, FILE *out);
/*
 * Writes DIR/ID.eml (the message as it would be sent on, LF line ends, for
 * `sendmail -t` or `swaks --data @ID.eml`) and DIR/ID.json (its envelope)
 * for each queued message; DIR is made (0700) if missing. Exit code.
 */
int queue_export(const struct cfg *cfg, const char *dir, bool json, FILE *out);

#endif
