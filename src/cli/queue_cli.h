/*
 * queue_cli: `mxvault queue ...` commands. Reads the spool read-only, so it
 * works whether or not the daemon is running (it sees what is durable).
 */
#ifndef MXV_QUEUE_CLI_H
#define MXV_QUEUE_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "base/cfg.h"
#include "spool/spool.h"

/* Prints the queue, as a table or as a JSON array. Returns an exit code. */
int queue_list(const struct cfg *cfg, bool json, FILE *out);
const char *queue_rcpt_state_name(const struct spool_rcpt *r);

/* The destinations held by the administrator (SPOOL/held-domains), for the states shown. */
struct queue_held {
	struct spool_held *v;
	size_t n;
};
struct spool;
struct spool_msg;
/* 0 or -errno (said on stderr). Free h->v. */
int queue_held_load(struct spool *sp, struct queue_held *h);
/* A recipient's state as shown: queued, deferred, held, quarantined, delivered, bounced, expired. */
const char *queue_state_of(const struct queue_held *h, const struct spool_msg *m, const struct spool_rcpt *r);
/* Quarantined by a milter and not released. */
bool queue_is_quarantined(const struct spool_msg *m);


#endif
