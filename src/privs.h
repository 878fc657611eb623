/*
 * privs: the operating-system side of starting a server safely: raising
 * the file descriptor limit while still root, and dropping root for good.
 * Called by the composition root (daemon.c) only.
 */
#ifndef MXV_PRIVS_H
#define MXV_PRIVS_H

#include <stdint.h>

#include "base/util.h"

/*
 * Raises RLIMIT_NOFILE so that want descriptors fit (the hard limit too,
 * when root may). Returns the soft limit now in force.
 */
uint64_t privs_raise_fd_limit(uint64_t want);

/*
 * Switches the whole process to uid:gid (supplementary groups: gid only)
 * and checks that root cannot be regained. Must run before any thread is
 * started. 0 or -errno.
 */
int privs_drop(uint32_t uid, uint32_t gid) MUST_CHECK;

#endif
