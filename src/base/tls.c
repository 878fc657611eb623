/*
 * tls: see tls.h. Certificate checks are per connection (smtp_out sets the
 * host name and the verify mode); the context only carries the trust store
 * and the protocol floor.
 */
#include "tls.h"

#include <openssl/ssl.h>

SSL_CTX *tls_client_context(const char *ca_file)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	int ok = ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) : SSL_CTX_set_default_verify_paths(ctx);
	/* DANE (RFC 7672) is enabled per connection, for hosts with validated TLSA records. */
	if (ok != 1 || SSL_CTX_dane_enable(ctx) <= 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void tls_context_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}
