/*
 * check_probe: one SMTP conversation with an MX host for `mxvault check`,
 * a blocking client with a deadline on the connect and on every reply
 * (a CLI may block; the daemon never calls this). It reads the banner,
 * says EHLO, takes STARTTLS when offered (certificate chain and name
 * checked against the MX name, the handshake kept even when they fail, to
 * go on), then MAIL FROM:<> and three RCPTs: postmaster@DOMAIN, an
 * address that cannot exist at DOMAIN, and one at a foreign domain (the
 * open-relay test); then RSET and QUIT. It never sends DATA.
 * The peer is hostile: replies go through delivery's bounded reply parser
 * (line length, line count), and only bounded text is kept.
 */
#ifndef MXV_CHECK_PROBE_H
#define MXV_CHECK_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "base/util.h"
#include "delivery/smtp_reply.h"

typedef struct ssl_ctx_st SSL_CTX;

/* How far a probe got. */
enum check_probe_stage {
	PROBE_CONNECT = 0, /* no connection */
	PROBE_BANNER,      /* connected; no (valid) banner */
	PROBE_EHLO,        /* banner; EHLO (and HELO) refused */
	PROBE_DONE,        /* the conversation ran (RCPT codes below are set) */
};

#define CHECK_PROBE_EXT_MAX 256

struct check_probe {
	enum check_probe_stage stage;
	char error[SMTP_REPLY_TEXT_MAX + 64]; /* what stopped it, when stage < PROBE_DONE */
	char banner[SMTP_REPLY_TEXT_MAX + 1];
	char ehlo_name[256];      /* the first word after 250 in the EHLO reply */
	char ext[CHECK_PROBE_EXT_MAX]; /* the extension keywords, space-separated */
	bool starttls;            /* offered */
	bool tls;                 /* the handshake succeeded */
	char tls_error[200];      /* the handshake's failure */
	bool cert_ok;             /* the chain verifies against the trust store */
	bool name_ok;             /* the certificate names the MX host */
	char cert_error[160];
	char tls_version[16];
	int postmaster;           /* RCPT codes; 0: not asked (MAIL refused, or connection lost) */
	int unknown;
	int relay;
	char mail_reply[SMTP_REPLY_TEXT_MAX + 1]; /* MAIL's reply when it was refused */
};

/*
 * Probes sa (port set) as host for domain. ctx: a client context (trust
 * store loaded). unknown_rcpt / relay_rcpt: the two addresses to ask for.
 * timeout_ms: the connect and each reply; end_ms (clock_mono_ms): no wait
 * goes past it. Fills *out; never fails as such.
 */
void check_probe_run(const struct sockaddr *sa, socklen_t salen, const char *host, const char *domain,
		     const char *helo, const char *unknown_rcpt, const char *relay_rcpt, SSL_CTX *ctx,
		     int timeout_ms, int64_t end_ms, struct check_probe *out);
/* Bounded text for display: vsnprintf into dst, cut silently where it does not fit. */
void check_text(char *dst, size_t n, const char *f, ...) PRINTF_LIKE(3, 4);

/* Only the connect and the banner, then QUIT: is the host reachable on its port? */
void check_probe_reach(const struct sockaddr *sa, socklen_t salen, int timeout_ms, int64_t end_ms,
		       struct check_probe *out);

#endif
