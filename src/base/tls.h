/*
 * tls: the OpenSSL contexts the daemon shares. The composition root
 * (daemon.c) creates them once, before privileges are dropped (certificate
 * and key files may be readable by root only), and lends them to the
 * subsystems: the client context to delivery/, the server context to
 * smtpd/. Three files: tls.c (the client context), tls_server.c (the server
 * context, and what a session's TLS looks like in logs and headers),
 * tls_selfsigned.c (the certificate made when none is configured).
 */
#ifndef MXV_TLS_H
#define MXV_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

/*
 * The client context: TLS 1.2 and later, DANE-capable, trusting ca_file (PEM)
 * or, when NULL, the system CA store. NULL on failure.
 */
SSL_CTX *tls_client_context(const char *ca_file);
void tls_context_free(SSL_CTX *ctx);

/* Which of the two files a server context problem is about. */
enum tls_file { TLS_FILE_CERT, TLS_FILE_KEY };

struct tls_error {
	enum tls_file file;
	char text[256]; /* "no certificate found (is it PEM?)", OpenSSL's reason */
};

/*
 * The server context for inbound STARTTLS: the certificate (with its chain,
 * PEM) and its private key, which must match. TLS 1.2 and 1.3 only, the
 * system's cipher defaults with the server's preference, session tickets,
 * ECDHE with the default groups, and buffers released while a session is
 * idle. NULL on failure, with *err saying which file and why. Also how the
 * configuration check validates tls_cert and tls_key.
 */
SSL_CTX *tls_server_context(const char *cert, const char *key, struct tls_error *err);

/* What a session negotiated, for the log and the Received: header. */
struct tls_info {
	char version[16];  /* "TLSv1.3"; empty: no TLS */
	char cipher[64];   /* "TLS_AES_256_GCM_SHA384" */
	int bits, alg_bits;
};

void tls_session_info(const SSL *ssl, struct tls_info *out);
/* "version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256": 0, or -ENOSPC (truncated). */
int tls_format_info(const struct tls_info *ti, char *out, size_t n) MUST_CHECK;
/* The first reason in OpenSSL's error queue (which is emptied), or fallback. */
const char *tls_error_reason(char *buf, size_t n, const char *fallback);

/*
 * The self-signed certificate used when tls_cert is not set: DIR/cert.pem
 * and DIR/key.pem (mode 0600), made for hostname at the first start and
 * reused after (made again if hostname changed). owner: give the new files
 * and DIR to uid:gid (the daemon's user). cert and key (size n) get the
 * paths. 0, or -errno after logging what failed.
 */
int tls_selfsigned_ensure(const char *dir, const char *hostname, bool owner, uint32_t uid, uint32_t gid,
			  char *cert, char *key, size_t n) MUST_CHECK;

#endif
