/*
 * tls: the OpenSSL contexts the daemon shares. The composition root
 * (daemon.c) creates them once, before privileges are dropped (certificate
 * and key files may be readable by root only), and lends them to the
 * subsystems: the client context to delivery/, the server context (issue 7)
 * to smtpd/.
 */
#ifndef MXV_TLS_H
#define MXV_TLS_H

typedef struct ssl_ctx_st SSL_CTX;

/*
 * The client context: TLS 1.2 and later, DANE-capable, trusting ca_file (PEM)
 * or, when NULL, the system CA store. NULL on failure.
 */
SSL_CTX *tls_client_context(const char *ca_file);
void tls_context_free(SSL_CTX *ctx);

#endif
