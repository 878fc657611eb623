/*
 * ctl_client: the command line's end of the daemon's control socket
 * (src/ctl/ctl.h has the protocol). Blocking, with a deadline on every
 * wait: this runs in `mxvault queue ...`, `reload` and `drill`, never in
 * the daemon.
 */
#ifndef MXV_CTL_CLIENT_H
#define MXV_CTL_CLIENT_H

#include <stddef.h>
#include <stdio.h>

#include "base/util.h"

/* The exit status when no daemon answers on the socket (sysexits EX_UNAVAILABLE). */
#define CTL_EXIT_NOT_RUNNING 69

struct ctl_conn;

/*
 * Connects, waiting at most timeout_ms (< 0: no limit) when the socket's
 * backlog is full (a daemon that does not accept: hung, or not ours), and
 * as long for each send: 0, or -errno (-ENOENT, -ECONNREFUSED: no daemon is
 * running; -ETIMEDOUT).
 */
int ctl_connect(const char *path, int timeout_ms, struct ctl_conn **out) MUST_CHECK;
/* Sends one request: the words argv[0..argc). 0 or -errno. */
int ctl_send(struct ctl_conn *cn, int argc, char *const argv[]) MUST_CHECK;
/*
 * The next reply line: its kind ('o' stdout, 'e' stderr, 'x' the exit
 * status) and its text in *text (NUL-ended, *len bytes; valid until the next
 * call). 0 at the end of the reply stream, -ETIMEDOUT after timeout_ms
 * (< 0: no limit), -EPROTO for a line that is not one, -errno.
 */
int ctl_read(struct ctl_conn *cn, int timeout_ms, char *kind, const char **text, size_t *len) MUST_CHECK;
void ctl_disconnect(struct ctl_conn *cn);

/*
 * One whole call for a command line: sends argv, copies the reply's lines
 * to out and err as they come (escaped where out or err is a terminal:
 * the socket's directory is the daemon's user's, not root's), and returns
 * the daemon's exit status. When no daemon answers: says so on err ("the
 * daemon is not running") and returns CTL_EXIT_NOT_RUNNING. timeout_ms bounds the connect, the send and
 * each wait for a line.
 */
int ctl_run(const char *path, int argc, char *const argv[], int timeout_ms, FILE *out, FILE *err);

#endif
