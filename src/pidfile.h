/*
 * pidfile: the file that names the running daemon's process (pid_file,
 * written by `serve -d`, and in the foreground when pid_file is set). A
 * file that names a live process means another mxvault runs: the start is
 * refused. One that names a dead one is stale (a crash) and replaced.
 * The file's directory is kept open from the write (as root) to the
 * removal (as the daemon's user, who may no longer be able to reach it by
 * name). Called by daemon.c only, before and after the event loop runs.
 */
#ifndef MXV_PIDFILE_H
#define MXV_PIDFILE_H

#include <limits.h>
#include <sys/types.h>

#include "base/util.h"

struct pidfile {
	int dirfd;               /* -1: nothing written */
	char name[NAME_MAX + 1]; /* the file's name in that directory */
};

/* 0, or -EEXIST with *other set when path names a live process, or -errno of reading it. */
int pidfile_check(const char *path, pid_t *other) MUST_CHECK;
/* Writes this process's id to path (0644, replaced atomically) and fills pf. 0 or -errno. */
int pidfile_write(const char *path, struct pidfile *pf) MUST_CHECK;
/*
 * Removes the file if it still names this process (a newer daemon's file
 * is left alone) and closes pf. A directory the user cannot write leaves
 * the file behind: stale, it is replaced at the next start.
 */
void pidfile_remove(struct pidfile *pf);

#endif
