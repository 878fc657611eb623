/*
 * smtp_in: one inbound SMTP session (see smtp_in.c). Internal to smtpd/:
 * smtp_server creates sessions and hands each the context below at
 * creation; a session never calls back into the server except through
 * ctx->ended, once, when it is freed.
 */
#ifndef MXV_SMTP_IN_H
#define MXV_SMTP_IN_H

#include <stdint.h>
#include <sys/socket.h>

#include "base/cfg.h"
#include "smtp_server.h"

struct event_base;
struct spool;
struct dedup;
struct dns;
struct smtp_in;
struct ratelimit;

/* Shared by every session of a server; owned by the server. */
struct smtp_in_ctx {
	const struct cfg *cfg;
	struct event_base *base;
	struct spool *sp;
	struct dedup *dedup;       /* NULL when dedup_window is 0 */
	struct dns *dns;
	SSL_CTX *tls;              /* STARTTLS is offered when not NULL */
	const struct standby *standby; /* standby mode: whose primaries answer (base/standby.h) */
	struct greylist *greylist; /* NULL: no domain greylists */
	struct smtpd_stats *stats;
	const struct verifier *verifier; /* callouts to the primary; NULL: none (unknown addresses get 451) */
	struct learned *learned;   /* recipients learned from the primary; NULL: none */
	struct ratelimit *msg_rate; /* MAIL commands per client key (max_message_rate) */
	struct ratelimit *greeted;  /* addresses that waited for the whole greeting (greet_pause) */
	/* The session is being freed: release its slot (client_key: smtp_server_client_key). */
	void (*ended)(void *owner, uint64_t session_no, const char *client_key);
	void *owner;
};

/*
 * A session on an accepted socket (it owns fd from here on). refuse: the
 * session only answers 421 with this text and closes. Never NULL, and never
 * freed before smtp_in_new returns: it ends later, from the event loop.
 */
struct smtp_in *smtp_in_new(const struct smtp_in_ctx *ctx, int fd, const struct sockaddr *sa, uint64_t session_no,
			    const char *refuse);
/* Server shutdown: an idle session says 421 and closes; a busy one closes after its message. */
void smtp_in_shutdown(struct smtp_in *s);
/*
 * Server teardown: frees the session now, also one waiting on the spool
 * (whose callback is withdrawn: the commit goes on, the 250 is never sent).
 */
void smtp_in_destroy(struct smtp_in *s);

#endif
