/*
 * tls_selfsigned: the certificate inbound STARTTLS uses when tls_cert is
 * not set (see tls.h), so that a new backup MX offers encryption from its
 * first start, as Debian's MTAs do with their "snakeoil" certificate.
 * Senders that do not verify (most of them, for MX hosts without DANE or
 * MTA-STS) encrypt; senders that do need a real certificate (README).
 *
 * Called by daemon.c once, as root, before privileges are dropped: the
 * files are given to the daemon's user. They live in SPOOL/tls/, which the
 * spool ignores (it reads only its segments and its key).
 *
 * Crash safety: both files are written under temporary names, synced, and
 * renamed key first, certificate last, then the directory is synced. The
 * certificate's presence means the pair is complete; a key without one is
 * simply made again.
 *
 * Error policy: -errno (or -EIO for OpenSSL failures) after logging.
 */
#include "tls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "log.h"

#define CERT_NAME "cert.pem"
#define KEY_NAME "key.pem"
/* Nobody verifies it, so it need not expire while the daemon runs: ten years. */
#define VALID_DAYS 3650

struct paths {
	char dir[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
};

static int log_openssl(const char *what)
{
	char why[256];
	log_err("tls", "self-signed certificate: %s: %s", what, tls_error_reason(why, sizeof(why), "failed"));
	return -EIO;
}

/* The certificate in place is for hostname (it may predate a change of hostname). */
static bool usable(const char *cert, const char *hostname)
{
	FILE *f = fopen(cert, "re");
	if (!f)
		return false;
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	bool ok = x && X509_check_host(x, hostname, 0, 0, NULL) == 1;
	X509_free(x);
	ERR_clear_error();
	return ok;
}

static int add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	int ok = e && X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	return ok ? 0 : -EIO;
}

static int set_identity(X509 *x, const char *hostname)
{
	unsigned char serial[16];
	char san[300];
	if (RAND_bytes(serial, sizeof(serial)) != 1)
		return -EIO;
	serial[0] &= 0x7f; /* a positive serial number (RFC 5280 4.1.2.2) */
	BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
	int ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
	BN_free(bn);
	X509_NAME *name = X509_get_subject_name(x);
	ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)hostname, -1, -1, 0);
	ok = ok && X509_set_issuer_name(x, name);
	ok = ok && fmt(san, sizeof(san), "DNS:%s", hostname) == 0;
	/* A server certificate for one name, as a public CA would issue it. */
	if (!ok || add_ext(x, NID_subject_alt_name, san) < 0 ||
	    add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
	    add_ext(x, NID_ext_key_usage, "serverAuth") < 0)
		return -EIO;
	return 0;
}

/*
 * ECDSA P-256: every TLS 1.2 and 1.3 client supports it, the key is made in
 * a millisecond (RSA 2048 takes a noticeable moment on a small VPS), and its
 * handshakes cost the server less CPU than RSA's.
 */
static int make_pair(const char *hostname, EVP_PKEY **key, X509 **cert)
{
	*key = EVP_EC_gen("P-256");
	*cert = X509_new();
	if (!*key || !*cert)
		return -EIO;
	X509 *x = *cert;
	if (!X509_set_version(x, X509_VERSION_3) || !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), VALID_DAYS, 0, NULL) || !X509_set_pubkey(x, *key))
		return -EIO;
	if (set_identity(x, hostname) < 0 || !X509_sign(x, *key, EVP_sha256()))
		return -EIO;
	return 0;
}

/* Writes one PEM file under a temporary name, synced and given to its owner. */
static int write_pem(const char *tmp, mode_t mode, bool owner, uint32_t uid, uint32_t gid, EVP_PKEY *key,
		     X509 *cert)
{
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (fchmod(fd, mode) < 0 || (owner && fchown(fd, (uid_t)uid, (gid_t)gid) < 0))
		rc = -errno;
	FILE *f = rc == 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		rc = rc ? rc : -errno;
		close(fd);
		return rc;
	}
	int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
	if (!ok || fflush(f) != 0 || fsync(fd) < 0)
		rc = ok ? -errno : -EIO;
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int install(const struct paths *p, bool owner, uint32_t uid, uint32_t gid, EVP_PKEY *key, X509 *cert)
{
	char tmp_key[PATH_MAX + 8], tmp_cert[PATH_MAX + 8];
	if (fmt(tmp_key, sizeof(tmp_key), "%s.tmp", p->key) < 0 ||
	    fmt(tmp_cert, sizeof(tmp_cert), "%s.tmp", p->cert) < 0)
		return -ENAMETOOLONG;
	int rc = write_pem(tmp_key, 0600, owner, uid, gid, key, NULL);
	if (rc == 0)
		rc = write_pem(tmp_cert, 0644, owner, uid, gid, NULL, cert);
	if (rc == 0 && (rename(tmp_key, p->key) < 0 || rename(tmp_cert, p->cert) < 0))
		rc = -errno;
	if (rc == 0)
		rc = sync_dir(p->dir);
	return rc;
}

static void log_created(const struct paths *p, const char *hostname, X509 *cert)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	char hex[EVP_MAX_MD_SIZE * 2 + 1] = "";
	if (X509_digest(cert, EVP_sha256(), md, &n))
		for (unsigned int i = 0; i < n; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
	log_info("tls", "created a self-signed certificate for hostname=%s cert=%s key=%s sha256=%s", hostname,
		 p->cert, p->key, hex);
}

static int make_paths(struct paths *p, const char *dir)
{
	if (fmt(p->dir, sizeof(p->dir), "%s", dir) < 0 || fmt(p->cert, sizeof(p->cert), "%s/" CERT_NAME, dir) < 0 ||
	    fmt(p->key, sizeof(p->key), "%s/" KEY_NAME, dir) < 0)
		return -ENAMETOOLONG;
	return 0;
}

static int prepare_dir(const char *dir, bool owner, uint32_t uid, uint32_t gid)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (owner && chown(dir, (uid_t)uid, (gid_t)gid) < 0)
		return -errno;
	return 0;
}

int tls_selfsigned_ensure(const char *dir, const char *hostname, bool owner, uint32_t uid, uint32_t gid,
			  char *cert_out, char *key_out, size_t n)
{
	struct paths p;
	int rc = make_paths(&p, dir);
	if (rc == 0 && (fmt(cert_out, n, "%s", p.cert) < 0 || fmt(key_out, n, "%s", p.key) < 0))
		rc = -ENAMETOOLONG;
	if (rc == 0 && usable(p.cert, hostname))
		return 0;
	if (rc == 0)
		rc = prepare_dir(dir, owner, uid, gid);
	if (rc < 0) {
		log_err("tls", "self-signed certificate in %s: %s", dir, strerror(-rc));
		return rc;
	}
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	rc = make_pair(hostname, &key, &cert);
	if (rc < 0)
		log_openssl("cannot make the key and certificate");
	else if ((rc = install(&p, owner, uid, gid, key, cert)) < 0)
		log_err("tls", "self-signed certificate: cannot write %s: %s", dir, strerror(-rc));
	else
		log_created(&p, hostname, cert);
	EVP_PKEY_free(key);
	X509_free(cert);
	return rc;
}
