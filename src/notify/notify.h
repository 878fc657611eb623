/*
 * notify: runs the operator's notify_command for an alert, never blocking
 * the event loop. Each alert is a kind ("queuing", "old-mail") and five
 * values handed to the command in its environment (EVENT, DOMAIN, QUEUED,
 * OLDEST_AGE, DETAIL). The command runs as `/bin/sh -c COMMAND` (as the
 * user the daemon runs as), stdin /dev/null, stdout and stderr to a pipe
 * read on the event loop and logged line by line (escaped, at most
 * NOTIFY_LOG_MAX bytes a run); in its own process group, killed whole
 * (SIGKILL) at the timeout. At most one command runs per kind, and one per
 * domain, so that a domain's alerts arrive in the order they happened
 * ("recovered" before "drained"); an alert that must wait joins one queue
 * of at most NOTIFY_QUEUE_MAX (when full, the oldest is dropped, and
 * logged). Children are started with posix_spawn (the daemon has threads)
 * and reaped through a pidfd.
 */
#ifndef MXV_NOTIFY_H
#define MXV_NOTIFY_H

#include <stdint.h>

struct event_base;
struct notify;

#define NOTIFY_QUEUE_MAX 64   /* alerts waiting, in all */
#define NOTIFY_LOG_MAX 4096   /* output bytes logged per run */
#define NOTIFY_DETAIL_MAX 400 /* DETAIL is cut here; bytes other than printable ASCII become '?' */

/* What the command is told: one alert. kind is a string constant of the caller's. */
struct notify_alert {
	const char *kind;   /* EVENT */
	const char *domain; /* DOMAIN, "" for the spool's own alerts */
	uint64_t queued;    /* QUEUED: messages */
	int64_t oldest_age; /* OLDEST_AGE: seconds, 0 when nothing is queued */
	const char *detail; /* DETAIL: a short text for a human */
};

/* command: the shell command line (copied); host: our hostname, given as MXVAULT_HOST. */
struct notify *notify_new(struct event_base *base, const char *command, const char *host, int64_t timeout_s);
/* Logs the alert and runs the command for it now, or once what runs or waits ahead of it of its kind or domain ends. */
void notify_send(struct notify *n, const struct notify_alert *a);
/* Runs still going are killed (and logged); queued alerts are dropped. NULL is ignored. */
void notify_free(struct notify *n);

#endif
