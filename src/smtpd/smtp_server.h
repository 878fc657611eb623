/*
 * smtp_server: the SMTP server as the daemon sees it. It binds the
 * listening sockets first (as root, before privileges are dropped), then
 * starts accepting once the daemon hands it what sessions need: the spool,
 * the shared resolver and the server TLS context (for STARTTLS). It owns the session
 * table and enforces the connection limits: in all, and per client
 * network (an IPv4 address, or an IPv6 /64, which one host usually has
 * whole). Shutdown stops accepting, lets a session in the middle of a
 * message finish it, and tells idle ones 421.
 */
#ifndef MXV_SMTP_SERVER_H
#define MXV_SMTP_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "base/cfg.h"

struct event_base;
struct spool;
struct dns;
struct smtp_server;
typedef struct ssl_ctx_st SSL_CTX;

/* What the daemon lends the server; it outlives the server. */
struct smtpd_deps {
	const struct cfg *cfg;   /* the server takes its own reference */
	struct event_base *base;
	struct spool *sp;
	struct dns *dns;         /* the shared resolver, for policy steps */
	SSL_CTX *tls;            /* the server context for STARTTLS; NULL: not offered */
	const struct verifier *verifier; /* recipients = callout: asks the primary (base/verify.h) */
	struct learned *learned; /* recipients learned from the primary (store/learned.h) */
	const struct standby *standby; /* whose primaries answer (accept = when-primary-down); NULL: none */
};

/* Counters, for the log and (later) metrics. */
struct smtpd_stats {
	uint64_t sessions;       /* accepted connections */
	uint64_t refused;        /* connections refused by a limit (421) */
	uint64_t messages;       /* messages stored (250) */
	uint64_t duplicates;     /* resent messages recognised and not stored again */
	uint64_t timeouts;       /* sessions ended by a timeout or deadline */
	uint64_t tls_sessions;   /* STARTTLS handshakes completed */
	uint64_t tls_failures;   /* STARTTLS handshakes failed or abandoned */
	uint32_t open;           /* sessions open now */
};

/* Binds and listens on every cfg->listen address; accepts nothing yet. */
int smtp_server_bind(const struct cfg *cfg, struct smtp_server **out) MUST_CHECK;
/* Starts accepting connections. */
int smtp_server_start(struct smtp_server *srv, const struct smtpd_deps *deps) MUST_CHECK;
/* Stops accepting; idle sessions get 421, busy ones finish their message. */
void smtp_server_shutdown(struct smtp_server *srv);
/*
 * A reload: sessions that begin from now on get cfg (a reference is
 * taken) and offer STARTTLS with tls (NULL: not offered); sessions already
 * open keep the configuration they began with, and a STARTTLS they have
 * not yet started uses tls. The daemon keeps the old TLS context alive no
 * longer than OpenSSL's own reference counts need (SSL_CTX_free). The keys
 * fixed at start (reload.c: listen, dedup_window, greylist_delay...) are
 * not looked at again.
 */
void smtp_server_set_cfg(struct smtp_server *srv, const struct cfg *cfg, SSL_CTX *tls);
/* True once every session has ended. */
bool smtp_server_idle(const struct smtp_server *srv);
void smtp_server_get_stats(const struct smtp_server *srv, struct smtpd_stats *st);
/* True while every listener accepts: started, not stopping, not paused by a lack of descriptors (/healthz). */
bool smtp_server_accepting(const struct smtp_server *srv);
void smtp_server_free(struct smtp_server *srv);

/*
 * The key sessions are counted under for max_sessions_per_ip: the IPv4
 * address, or the /64 of an IPv6 address ("2001:db8:1:2::/64"). IPv4-mapped
 * IPv6 addresses count as IPv4. out has room for INET6_ADDRSTRLEN + 4.
 */
void smtp_server_client_key(const struct sockaddr *sa, char *out, size_t n);

#endif
