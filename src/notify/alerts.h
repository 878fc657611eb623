/*
 * alerts: decides when the operator is told something (issue 10, section
 * 4) and hands each alert to notify (notify.h), which logs it and runs
 * notify_command. Events, each once per change of state, never per message:
 *
 *   queuing, recovered, drained   a backed-up domain's primary stops
 *                                 answering (mail queues), answers again,
 *                                 and its queue is empty after an outage
 *   bounce-guard, bounce-guard-off  the bounce guard engages, lets go
 *   old-mail, expiring            checked every few seconds: the oldest
 *                                 message passes alert_age; the first one
 *                                 expires within a day
 *   spool-size, disk-space        the spool's files pass alert_spool_size;
 *                                 free space falls under 2 x min_free_space
 *
 * Only backed-up domains ([domain] sections) are watched: the destinations
 * of DSNs (senders' domains) come and go and are nobody's to fix. The
 * table, the environment and examples: docs/operations.md, "Alerts".
 */
#ifndef MXV_ALERTS_H
#define MXV_ALERTS_H

#include "base/cfg.h"

struct event_base;
struct qmgr;
struct spool;
struct alerts;

/* What the daemon lends the alerts; it outlives them (alerts_free comes after qmgr_free). */
struct alerts_deps {
	const struct cfg *cfg; /* a reference is taken */
	struct event_base *base;
	struct qmgr *qmgr;     /* observed, and its views read */
	struct spool *sp;      /* its disk use read */
};

struct alerts *alerts_start(const struct alerts_deps *deps);
/* No alert from here on (the daemon is stopping); commands still running go on until alerts_free. */
void alerts_stop(struct alerts *a);
/* Kills commands still running. NULL is ignored. */
void alerts_free(struct alerts *a);

#endif
