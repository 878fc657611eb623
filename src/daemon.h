/*
 * daemon: the composition root of `mxvault serve`. Starts every part in
 * order and stops them in reverse; owns the services several parts share.
 */
#ifndef MXV_DAEMON_H
#define MXV_DAEMON_H

#include <stdbool.h>

#include "base/cfg.h"

struct daemon;

/*
 * Runs the server until SIGTERM or SIGINT; returns the process exit code.
 * SIGHUP reloads (daemon_reload). background: fork (serve -d). Writes the
 * pid file (pid_file; SPOOL/mxvault.pid with background) and refuses to
 * start when it names a live process.
 */
int daemon_run(const struct cfg *cfg, bool background);

/*
 * Loads the configuration file again and, if it is good and changes no key
 * fixed at start, puts it in force: new sessions and deliveries use it,
 * those under way finish with theirs; a new certificate serves new TLS
 * sessions (a bad one keeps the old, and says why). Returns 0, or -1 when
 * the old configuration stays in force. report gets a human-readable
 * account either way: "FILE:LINE: reason" lines, or what was done. For
 * the control socket (mxvault reload); SIGHUP calls it too.
 */
int daemon_reload(struct daemon *d, struct buf *report);

#endif
