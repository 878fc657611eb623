/*
 * smtp_out: one outbound SMTP connection (RFC 5321 client) to a next hop.
 * It tries a list of addresses in order until one greets it, says EHLO
 * (HELO if EHLO is refused), upgrades with STARTTLS when offered or
 * required, then asks its owner (the scheduler) for jobs and sends them one
 * after another over the same connection, with PIPELINING when offered.
 * Every recipient's outcome is reported as soon as the reply is read. Only
 * the reply a command defines counts as success (smtp_reply.h); any other
 * reply outside 4yz/5yz is a protocol error that ends the connection, and
 * recipients still open are reported with code 0 (deferred, never sent).
 * It never touches the spool except to read message bodies.
 */
#ifndef MXV_SMTP_OUT_H
#define MXV_SMTP_OUT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/cfg.h"
#include "spool/spool.h"

struct event_base;
struct smtp_out;
typedef struct ssl_ctx_st SSL_CTX;

struct dane_records;

/* The TLS an address must get, decided before connecting (tls_policy.h). */
enum smtp_out_tls_level {
	SMTP_OUT_TLS_MAY = 0, /* STARTTLS when offered; in clear when it is not, or fails (RFC 7435) */
	SMTP_OUT_TLS_ENCRYPT, /* TLS required, any certificate */
	SMTP_OUT_TLS_VERIFY,  /* TLS required, a certificate valid for host under the trust store */
	SMTP_OUT_TLS_DANE,    /* TLS required, a certificate matching host's TLSA records (RFC 7672) */
};

struct smtp_out_tls {
	enum smtp_out_tls_level level;
	/* What logs call a session that got this TLS: "dane-verified", "mta-sts", "verified", "may-encrypted". */
	const char *label;
	/* The deferral when the certificate fails: "451 4.7.5 TLSA record did not match". */
	const char *fail_reply;
	/* MTA-STS testing (RFC 8461 5): checked as VERIFY, a failure is logged, delivery goes on as MAY. */
	bool report_only;
	const struct dane_records *tlsa; /* DANE: usable records; must outlive the connection */
};

struct smtp_out_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char host[256];    /* the name the address belongs to (TLS verification, logs) */
	struct smtp_out_tls tls;
};

/* What to send: the scheduler owns it; smtp_out fills in the outcome fields. */
struct smtp_out_job {
	struct spool_msg *m;
	uint32_t *rcpts;      /* indices into m->env.rcpts */
	uint32_t n;
	bool dot_sent;        /* the final "." went out: a lost reply may mean a duplicate */
};

enum smtp_out_end {
	SMTP_OUT_DONE = 0,        /* QUIT after the last job */
	SMTP_OUT_UNREACHABLE,     /* no address answered with a usable greeting */
	SMTP_OUT_BUSY,            /* greeted with 421/4xx, or TLS required but unavailable */
	SMTP_OUT_BROKEN,          /* timeout, reset or protocol error */
};

struct smtp_out_cb {
	/* The next job for this connection, or NULL to say QUIT. */
	struct smtp_out_job *(*next_job)(void *arg, struct smtp_out *c);
	/* A recipient's outcome; code 0: no answer (connection lost). */
	void (*rcpt_done)(void *arg, struct smtp_out_job *j, uint32_t k, int code, const char *reply);
	/* Every recipient of j has been reported. */
	void (*job_done)(void *arg, struct smtp_out_job *j);
	/*
	 * The content of j has been sent: may the final dot go? false: hold it
	 * until smtp_out_resume. NULL means always yes.
	 */
	bool (*dot_ready)(void *arg, struct smtp_out_job *j);
	/* Greeted and EHLO (and TLS, if any) done. */
	void (*ready)(void *arg, struct smtp_out *c);
	/*
	 * An address failed before the session was ready (the next one is
	 * tried after this returns): why, for the owner's rate-limited log.
	 */
	void (*addr_failed)(void *arg, struct smtp_out *c, const char *why);
	/* The connection is over; c is freed right after. why: a reply or error text. */
	void (*ended)(void *arg, struct smtp_out *c, enum smtp_out_end how, const char *why);
};

struct smtp_out_params {
	const char *helo;          /* our hostname */
	SSL_CTX *ssl_ctx;          /* NULL: never STARTTLS (then every address must be MAY) */
	const struct smtp_out_addr *addrs;
	size_t naddrs;
	bool probe;                /* greet, EHLO, QUIT: only to see whether the host is up */
	struct spool *sp;
	/*
	 * Deadlines, each from the moment we start waiting, never extended by
	 * bytes arriving (a peer trickling a byte a second gets no longer):
	 */
	int64_t connect_timeout_s;     /* TCP connect */
	int64_t reply_timeout_s;       /* each reply, the TLS handshake, and a write that cannot proceed */
	int64_t final_reply_timeout_s; /* the reply to the final dot */
};

struct smtp_out *smtp_out_start(struct event_base *base, const struct smtp_out_params *p, const struct smtp_out_cb *cb,
				void *arg);
/* Stops at once: pending recipients are reported with code 0, then ended(BROKEN). */
void smtp_out_abort(struct smtp_out *c);
/* Sends the final dot that dot_ready held back. */
void smtp_out_resume(struct smtp_out *c);
/* The host and address currently connected, "mx1.example[192.0.2.1]:25", for logs. */
const char *smtp_out_peer(const struct smtp_out *c);
/* The host name alone, "mx1.example" (RFC 3464 Remote-MTA). */
const char *smtp_out_peer_host(const struct smtp_out *c);
/* The TLS version of the session ("TLSv1.3"), or NULL in clear. */
const char *smtp_out_tls(const struct smtp_out *c);
/* The TLS the session got, for logs: the address's label, or "none" in clear. */
const char *smtp_out_tls_label(const struct smtp_out *c);

#endif
