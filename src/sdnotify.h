/*
 * sdnotify: tells the service manager where the daemon is in its life
 * (sd_notify(3), libsystemd): READY once the listeners and the spool are
 * up, RELOADING and READY again around a reload, STOPPING at the stop,
 * with a STATUS line each time. Does nothing when NOTIFY_SOCKET is unset
 * (not started by systemd with Type=notify). Called by daemon.c only.
 */
#ifndef MXV_SDNOTIFY_H
#define MXV_SDNOTIFY_H

#include "base/util.h"

void notify_ready(const char *fmt, ...) PRINTF_LIKE(1, 2);
void notify_reloading(void);
void notify_stopping(void);

#endif
