/*
 * queue_cli: `mxvault queue ...` commands. Reads the spool read-only, so it
 * works whether or not the daemon is running (it sees what is durable).
 */
#ifndef MXV_QUEUE_CLI_H
#define MXV_QUEUE_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "base/cfg.h"
#include "spool/spool_rec.h"

/* Prints the queue, as a table or as a JSON array. Returns an exit code. */
int queue_list(const struct cfg *cfg, bool json, FILE *out);
const char *queue_rcpt_state_name(const struct spool_rcpt *r);

#endif
