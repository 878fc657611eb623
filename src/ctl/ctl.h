/*
 * ctl: the daemon's control socket (issue 10). A UNIX stream socket
 * (control_socket, default SPOOL/control, mode 0600, owned by the user the
 * daemon runs as) on which `mxvault queue ...`, `reload` and `drill` ask
 * the running daemon to act. Parts of the daemon register commands by name;
 * this module only carries requests and replies, bounded, on the event loop.
 *
 * The wire protocol (ctl_client.c is the other end):
 *   request: the command's words, each ended by a NUL, then one more NUL
 *            ("queue\0hold\0ID\0\0"); at most CTL_MAX_ARGS words and
 *            CTL_MAX_REQUEST bytes in all.
 *   reply:   lines, each "o TEXT\n" (for the client's stdout) or
 *            "e TEXT\n" (stderr), and a last line "x CODE\n": the client's
 *            exit status. TEXT holds no newline; a reply line may carry
 *            any other byte (the client writes it as it is to a pipe or
 *            a file, escaped to a terminal).
 * A command may answer at once or later (a drill waits for a delivery);
 * it may also stream lines before it finishes.
 *
 * Only the daemon's user (and root) can connect: the socket's mode is the
 * access control, as for Postfix's public/ and OpenSMTPD's smtpd.sock.
 */
#ifndef MXV_CTL_H
#define MXV_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define CTL_MAX_ARGS 32
#define CTL_MAX_REQUEST 8192
#define CTL_MAX_CLIENTS 16

struct event_base;
struct ctl;
struct ctl_call;

/*
 * A command's handler: argv[0..argc) are the request's words (argv[0] is
 * the command's first word), valid until the call finishes. It answers
 * with ctl_out/ctl_err and ends the call with ctl_finish, now or later:
 * exactly once, even when the client has gone away (c stays valid until
 * then, whatever the client does); after ctl_finish, c is no longer its.
 */
typedef void ctl_cmd_fn(void *arg, struct ctl_call *c, int argc, char **argv);
/*
 * The client went away (or the daemon stops) before the call finished: what
 * the handler still writes is dropped; it should stop its work and call
 * ctl_finish (here or later), which frees c.
 */
typedef void ctl_gone_fn(void *arg, struct ctl_call *c);

/*
 * Binds the socket at path (an existing socket there is replaced, unless a
 * daemon answers on it: -EADDRINUSE), mode 0600, given to uid:gid when
 * owner is set. Called before the privilege drop: the path above a spool
 * may not be searchable by the daemon's user. That user owns the spool, so
 * nothing is done by name after bind (no chmod or chown a swapped name could
 * redirect); a name swapped meanwhile fails it with -EEXIST. 0 and *fd, or -errno.
 */
int ctl_bind(const char *path, bool owner, uint32_t uid, uint32_t gid, int *fd) MUST_CHECK;
/* Listens on fd from ctl_bind (taken over) on the event loop. */
struct ctl *ctl_open(struct event_base *base, const char *path, int fd);
/*
 * Registers a command: name is one word ("reload") or two ("queue hold");
 * a request is matched on its first two words, then its first.
 */
void ctl_register(struct ctl *ctl, const char *name, ctl_cmd_fn *fn, void *arg);
/* Stops listening, removes the socket, closes every connection (gone handlers of unfinished calls run). */
void ctl_close(struct ctl *ctl);

/* Text for the client's stdout / stderr; it may hold several lines ("\n" ends each). */
void ctl_out(struct ctl_call *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
void ctl_err(struct ctl_call *c, const char *fmt, ...) PRINTF_LIKE(2, 3);
/* n bytes for stdout as they are (a message's body): split into lines at "\n". */
void ctl_out_bytes(struct ctl_call *c, const void *p, size_t n);
/* Ends the call with the client's exit status; c must not be used after this. */
void ctl_finish(struct ctl_call *c, int exit_code);
/* Called if the client goes away before ctl_finish (a drill interrupted). */
void ctl_on_gone(struct ctl_call *c, ctl_gone_fn *fn, void *arg);
/* True when the request holds the word "--json" (the handler still sees it in argv). */
bool ctl_wants_json(const struct ctl_call *c);

#endif
