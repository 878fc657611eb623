/*
 * tls: see tls.h. Certificate checks are per connection (smtp_out sets the
 * host name and the verify mode); the context only carries the trust store
 * and the protocol floor.
 */
#include "tls.h"

#include <openssl/ssl.h>

SSL_CTX *tls_client_context(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_default_verify_paths(ctx);
	return ctx;
}

void tls_context_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}
