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
 * SPOOL belongs to the daemon's user, so whoever runs as that user (a
 * compromised daemon) can plant links there for the next start, when this
 * runs as root. Everything goes through the directory's fd, opened without
 * following a link: a linked SPOOL/tls is refused; temporary files are
 * unlinked and made anew with O_EXCL (never truncated through a hard link,
 * never given away); a certificate or key that is not a plain file of its
 * own (a link, a second name of another file) is not used but made again,
 * so the daemon never loads, as root, a key it was pointed at.
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
	char cert[PATH_MAX], key[PATH_MAX];
};

static int log_openssl(const char *what)
{
	char why[256];
	log_err("tls", "self-signed certificate: %s: %s", what, tls_error_reason(why, sizeof(why), "failed"));
	return -EIO;
}

/* name in dfd is a plain file of its own: not a link, not a second name of another file. */
static bool plain_file(int dfd, const char *name)
{
	struct stat st;
	return fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 1;
}

/* The pair in place is ours and for hostname (it may predate a change of hostname). */
static bool usable(int dfd, const char *hostname)
{
	if (!plain_file(dfd, KEY_NAME) || !plain_file(dfd, CERT_NAME))
		return false;
	int fd = openat(dfd, CERT_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return false;
	}
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

/* Writes one PEM file under a temporary name in dfd, synced and given to its owner. */
static int write_pem(int dfd, const char *tmp, mode_t mode, bool owner, uint32_t uid, uint32_t gid, EVP_PKEY *key,
		     X509 *cert)
{
	/* Whatever has the name (a crash's leftover, or a planted link) goes: O_EXCL makes a new file. */
	if (unlinkat(dfd, tmp, 0) < 0 && errno != ENOENT)
		return -errno;
	int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
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

static int install(int dfd, bool owner, uint32_t uid, uint32_t gid, EVP_PKEY *key, X509 *cert)
{
	int rc = write_pem(dfd, KEY_NAME ".tmp", 0600, owner, uid, gid, key, NULL);
	if (rc == 0)
		rc = write_pem(dfd, CERT_NAME ".tmp", 0644, owner, uid, gid, NULL, cert);
	/* rename replaces a planted link itself, never what it points to. */
	if (rc == 0 && (renameat(dfd, KEY_NAME ".tmp", dfd, KEY_NAME) < 0 ||
			renameat(dfd, CERT_NAME ".tmp", dfd, CERT_NAME) < 0))
		rc = -errno;
	if (rc == 0 && fsync(dfd) < 0)
		rc = -errno;
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
	if (fmt(p->cert, sizeof(p->cert), "%s/" CERT_NAME, dir) < 0 || fmt(p->key, sizeof(p->key), "%s/" KEY_NAME, dir) < 0)
		return -ENAMETOOLONG;
	return 0;
}

/* The directory, made if missing, opened without following a link, and given to the daemon's user. */
static int open_dir(const char *dir, bool owner, uint32_t uid, uint32_t gid, int *dfd)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ELOOP ? -ENOTDIR : -errno; /* a link: not where we write as root */
	struct stat st;
	if (fstat(fd, &st) < 0 ||
	    (owner && (st.st_uid != uid || st.st_gid != gid) && fchown(fd, (uid_t)uid, (gid_t)gid) < 0)) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	*dfd = fd;
	return 0;
}

int tls_selfsigned_ensure(const char *dir, const char *hostname, bool owner, uint32_t uid, uint32_t gid,
			  char *cert_out, char *key_out, size_t n)
{
	struct paths p;
	int dfd = -1;
	int rc = make_paths(&p, dir);
	if (rc == 0 && (fmt(cert_out, n, "%s", p.cert) < 0 || fmt(key_out, n, "%s", p.key) < 0))
		rc = -ENAMETOOLONG;
	if (rc == 0)
		rc = open_dir(dir, owner, uid, gid, &dfd);
	if (rc < 0) {
		log_err("tls", "self-signed certificate in %s: %s", dir,
			rc == -ENOTDIR ? "not a directory (a symbolic link?)" : strerror(-rc));
		return rc;
	}
	if (usable(dfd, hostname)) {
		close(dfd);
		return 0;
	}
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	rc = make_pair(hostname, &key, &cert);
	if (rc < 0)
		log_openssl("cannot make the key and certificate");
	else if ((rc = install(dfd, owner, uid, gid, key, cert)) < 0)
		log_err("tls", "self-signed certificate: cannot write %s: %s", dir, strerror(-rc));
	else
		log_created(&p, hostname, cert);
	EVP_PKEY_free(key);
	X509_free(cert);
	close(dfd);
	return rc;
}
