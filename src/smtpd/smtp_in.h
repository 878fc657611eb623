/*
 * smtp_in: the inbound SMTP side. smtp_server owns the listening sockets,
 * the session counts and limits; each accepted connection becomes a
 * struct smtp_in session (smtp_in.c), a state machine driven by libevent
 * bufferevents. Sessions hand messages to the spool and answer 250 only
 * from the spool's durability callback.
 */
#ifndef MXV_SMTP_IN_H
#define MXV_SMTP_IN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/cfg.h"

struct event_base;
struct spool;
struct smtp_server;
struct smtp_in;

int smtp_server_start(const struct cfg *cfg, struct event_base *base, struct spool *sp,
		      struct smtp_server **out) MUST_CHECK;
/* Stops accepting; idle sessions get 421, busy ones finish their message. */
void smtp_server_shutdown(struct smtp_server *srv);
/* True once every session has ended. */
bool smtp_server_idle(const struct smtp_server *srv);
void smtp_server_free(struct smtp_server *srv);

/* Used by smtp_in.c */
const struct cfg *smtp_server_cfg(const struct smtp_server *srv);
struct spool *smtp_server_spool(const struct smtp_server *srv);
bool smtp_server_is_closing(const struct smtp_server *srv);
struct event_base *smtp_server_base(const struct smtp_server *srv);
/* NULL when dedup_window is 0. */
struct dedup *smtp_server_dedup(const struct smtp_server *srv);
void smtp_server_session_started(struct smtp_server *srv, uint64_t session_no, struct smtp_in *s);
void smtp_server_session_ended(struct smtp_server *srv, uint64_t session_no, const char *ip);

/* Creates a session on an accepted socket; refuse: answer 421 with this text and close. */
void smtp_in_new(struct smtp_server *srv, int fd, const struct sockaddr *sa, socklen_t salen, uint64_t session_no,
		 const char *refuse);
/* Server shutdown: an idle session says 421 and closes; a busy one closes after its message. */
void smtp_in_shutdown(struct smtp_in *s);

#endif
