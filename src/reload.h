/*
 * reload: decides whether a new configuration may replace the running one
 * (SIGHUP, `mxvault reload`). It loads the file again as the daemon is
 * now (unprivileged), checks it as `config check` does, and refuses it
 * when a key fixed at start changed: those need a restart, as in Postfix
 * (inet_interfaces) and OpenSMTPD (listen on). It also makes the inbound
 * TLS context the new configuration asks for. Applying the result to the
 * running parts is the composition root's job (daemon.c), which owns them.
 *
 * Blocking: the file and its recipients files are read on the caller's
 * thread (the event loop). That is bounded by the files' size, and a
 * reload is an operator's act, not a peer's; docs/operations.md says so.
 */
#ifndef MXV_RELOAD_H
#define MXV_RELOAD_H

#include "base/cfg.h"
#include "base/util.h"

typedef struct ssl_ctx_st SSL_CTX;

/*
 * Loads running->path again. 0 with *out the new configuration (the
 * privilege fields, user_uid and friends, copied from running), or
 * -EINVAL with every reason in report, one "FILE:LINE: reason" (or
 * "FILE: KEY changed: needs a restart") a line. Warnings of a good file
 * go to report too, as "FILE:LINE: warning: ..." lines.
 */
int reload_load(const struct cfg *running, struct buf *report, struct cfg **out) MUST_CHECK;

/*
 * What differs between old and next, for the report: "[server] changed:
 * KEY, KEY", "domains added: NAME...", "domains removed ...", "[domain
 * NAME] changed: KEY, recipients (N, were M)", a line each; nothing when
 * nothing differs.
 */
void reload_describe(const struct cfg *old, const struct cfg *next, struct buf *out);

/*
 * The inbound TLS context next asks for: its tls_cert and tls_key, or the
 * self-signed pair in the spool. 0 with *out the context (NULL: tls_cert =
 * none), or -EINVAL with the reason in report (the caller keeps the old
 * context: a bad new certificate must not take STARTTLS away).
 */
int reload_server_tls(const struct cfg *next, struct buf *report, SSL_CTX **out) MUST_CHECK;

#endif
