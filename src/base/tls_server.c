/*
 * tls_server: the server context for inbound STARTTLS (see tls.h), and how
 * a session's TLS is described in the log and in the Received: header.
 * Called by daemon.c (the context, once, as root) and by cfg.c (the same
 * call checks tls_cert and tls_key, so a configuration that passes `config
 * check` is one the daemon can load). Sessions only read what was
 * negotiated.
 *
 * Error policy: loading reports which file is wrong and OpenSSL's reason,
 * and returns NULL; nothing here aborts.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Session ids and tickets are only reused within this context. */
static const unsigned char SESSION_ID_CONTEXT[] = "mxvault-smtpd";

const char *tls_error_reason(char *buf, size_t n, const char *fallback)
{
	unsigned long e = ERR_get_error();
	if (!e) {
		snprintf(buf, n, "%s", fallback);
		return buf;
	}
	const char *reason = ERR_reason_error_string(e);
	if (reason)
		snprintf(buf, n, "%s", reason);
	else
		ERR_error_string_n(e, buf, n);
	ERR_clear_error();
	return buf;
}

/* what, then OpenSSL's own words: "no PEM certificate in the file (no start line)". */
static SSL_CTX *fail(SSL_CTX *ctx, struct tls_error *err, enum tls_file file, const char *what)
{
	char reason[160];
	err->file = file;
	if (strcmp(tls_error_reason(reason, sizeof(reason), what), what) == 0 ||
	    fmt(err->text, sizeof(err->text), "%s (%s)", what, reason) < 0)
		snprintf(err->text, sizeof(err->text), "%s", what);
	SSL_CTX_free(ctx);
	return NULL;
}

/* Opened by us first: "No such file or directory" reads better than OpenSSL's "system lib". */
static bool readable(const char *path, struct tls_error *err, enum tls_file file)
{
	FILE *f = fopen(path, "re");
	if (f) {
		fclose(f);
		return true;
	}
	err->file = file;
	snprintf(err->text, sizeof(err->text), "cannot read: %s", strerror(errno));
	return false;
}

static void set_policy(SSL_CTX *ctx)
{
	/* TLS 1.0 and 1.1 are deprecated (RFC 8996); 1.2 is what senders still need. */
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	/* Our order of the system's cipher list wins: a client cannot talk us down. */
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* A backup MX holds many idle sessions: free the 34 KiB of record buffers while idle. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/*
	 * Tickets (on by default) resume sessions without a server-side cache;
	 * the id context makes them ours. The internal cache would keep every
	 * TLS 1.2 session for 5 minutes (up to 20,480): memory for nothing when
	 * tickets do the job.
	 */
	SSL_CTX_set_session_id_context(ctx, SESSION_ID_CONTEXT, sizeof(SESSION_ID_CONTEXT) - 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	/* OpenSSL 3 offers ECDHE (X25519, P-256, ...) by default: forward secrecy without DH parameters. */
}

#define MISMATCH "the private key does not match the certificate"

/* Loading a key checks it against the certificate already loaded: a key of another pair fails there. */
static bool is_mismatch(unsigned long e)
{
	return ERR_GET_LIB(e) == ERR_LIB_X509 &&
	       (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH || ERR_GET_REASON(e) == X509_R_KEY_TYPE_MISMATCH);
}

SSL_CTX *tls_server_context(const char *cert, const char *key, struct tls_error *err)
{
	ERR_clear_error();
	if (!readable(cert, err, TLS_FILE_CERT) || !readable(key, err, TLS_FILE_KEY))
		return NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx)
		return fail(NULL, err, TLS_FILE_CERT, "cannot create a TLS context");
	set_policy(ctx);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		return fail(ctx, err, TLS_FILE_CERT, "no PEM certificate in the file");
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		return fail(ctx, err, TLS_FILE_KEY,
			    is_mismatch(ERR_peek_last_error()) ? MISMATCH : "no PEM private key in the file");
	if (SSL_CTX_check_private_key(ctx) != 1)
		return fail(ctx, err, TLS_FILE_KEY, MISMATCH);
	return ctx;
}

void tls_session_info(const SSL *ssl, struct tls_info *out)
{
	memset(out, 0, sizeof(*out));
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	snprintf(out->version, sizeof(out->version), "%s", SSL_get_version(ssl));
	snprintf(out->cipher, sizeof(out->cipher), "%s", c ? SSL_CIPHER_get_name(c) : "unknown");
	out->bits = c ? SSL_CIPHER_get_bits(c, &out->alg_bits) : 0;
}

int tls_format_info(const struct tls_info *ti, char *out, size_t n)
{
	/* Sendmail's form; Postfix says the same in other words. */
	return fmt(out, n, "version=%s cipher=%s bits=%d/%d", ti->version, ti->cipher, ti->bits, ti->alg_bits);
}
