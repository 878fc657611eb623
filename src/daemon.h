/*
 * daemon: the composition root of `mxvault serve`. Starts every part in
 * order and stops them in reverse; owns the services several parts share.
 */
#ifndef MXV_DAEMON_H
#define MXV_DAEMON_H

#include <stdbool.h>

#include "base/cfg.h"

/* Runs the server until SIGTERM or SIGINT; returns the process exit code. */
int daemon_run(const struct cfg *cfg, bool background);

#endif
