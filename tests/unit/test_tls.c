/*
 * test_tls: the pure parts of the TLS module and the self-signed
 * certificate: how a session's TLS is described (log line, Received:
 * header), and the certificate made at the first start, reused at the
 * next, made again for a new host name, and loadable as a server context.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"
#include "base/tls.h"

static char tmp[PATH_MAX];

static void test_format_info(void **state)
{
	(void)state;
	struct tls_info ti = {"TLSv1.3", "TLS_AES_256_GCM_SHA384", 256, 256};
	char out[128];
	assert_int_equal(tls_format_info(&ti, out, sizeof(out)), 0);
	assert_string_equal(out, "version=TLSv1.3 cipher=TLS_AES_256_GCM_SHA384 bits=256/256");
	struct tls_info t12 = {"TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", 128, 128};
	assert_int_equal(tls_format_info(&t12, out, sizeof(out)), 0);
	assert_string_equal(out, "version=TLSv1.2 cipher=ECDHE-ECDSA-AES128-GCM-SHA256 bits=128/128");
	/* Too small: reported, never a silently cut clause. */
	assert_int_equal(tls_format_info(&ti, out, 20), -ENOSPC);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	char *buf = xcalloc(1, 8192);
	size_t n = fread(buf, 1, 8191, f);
	assert_true(n > 0);
	fclose(f);
	return buf;
}

static void test_selfsigned(void **state)
{
	(void)state;
	char dir[PATH_MAX + 8], cert[PATH_MAX + 32], key[PATH_MAX + 32];
	assert_int_equal(fmt(dir, sizeof(dir), "%s/tls", tmp), 0);
	assert_int_equal(tls_selfsigned_ensure(dir, "mx.example.net", false, 0, 0, cert, key, sizeof(cert)), 0);
	struct stat st;
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(dir, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	char *first = slurp(cert);
	assert_non_null(strstr(first, "-----BEGIN CERTIFICATE-----"));

	struct tls_error e;
	SSL_CTX *ctx = tls_server_context(cert, key, &e);
	assert_non_null(ctx);
	tls_context_free(ctx);

	/* The second start reuses it. */
	assert_int_equal(tls_selfsigned_ensure(dir, "mx.example.net", false, 0, 0, cert, key, sizeof(cert)), 0);
	char *second = slurp(cert);
	assert_string_equal(first, second);
	free(second);

	/* A new host name gets a new certificate. */
	assert_int_equal(tls_selfsigned_ensure(dir, "mx2.example.net", false, 0, 0, cert, key, sizeof(cert)), 0);
	second = slurp(cert);
	assert_string_not_equal(first, second);
	free(second);
	free(first);

	/* A key without its certificate (a crash between the renames) is made again, as a pair. */
	assert_int_equal(unlink(cert), 0);
	assert_int_equal(tls_selfsigned_ensure(dir, "mx2.example.net", false, 0, 0, cert, key, sizeof(cert)), 0);
	ctx = tls_server_context(cert, key, &e);
	assert_non_null(ctx);
	tls_context_free(ctx);
}

/*
 * SPOOL/tls is written as root, but SPOOL belongs to the daemon's user: a
 * compromised daemon can plant links there for the next start. Nothing may
 * be written, truncated or given away through them.
 */
static void test_selfsigned_refuses_links(void **state)
{
	(void)state;
	char dir[PATH_MAX + 16], elsewhere[PATH_MAX + 16], victim[PATH_MAX + 32], planted[PATH_MAX + 32];
	char cert[PATH_MAX + 32], key[PATH_MAX + 32];
	assert_int_equal(fmt(elsewhere, sizeof(elsewhere), "%s/etc", tmp), 0);
	assert_int_equal(mkdir(elsewhere, 0755), 0);

	/* SPOOL/tls a symbolic link to another directory: refused, nothing written there. */
	assert_int_equal(fmt(dir, sizeof(dir), "%s/linked/tls", tmp), 0);
	assert_int_equal(fmt(planted, sizeof(planted), "%s/linked", tmp), 0);
	assert_int_equal(mkdir(planted, 0700), 0);
	assert_int_equal(symlink(elsewhere, dir), 0);
	assert_true(tls_selfsigned_ensure(dir, "mx.example.net", false, 0, 0, cert, key, sizeof(cert)) < 0);
	assert_int_equal(fmt(victim, sizeof(victim), "%s/key.pem", elsewhere), 0);
	assert_int_equal(access(victim, F_OK), -1);
	assert_int_equal(fmt(victim, sizeof(victim), "%s/key.pem.tmp", elsewhere), 0);
	assert_int_equal(access(victim, F_OK), -1);

	/* A temporary name that is a hard link to another file: that file is left as it was. */
	assert_int_equal(fmt(dir, sizeof(dir), "%s/hard/tls", tmp), 0);
	assert_int_equal(fmt(planted, sizeof(planted), "%s/hard", tmp), 0);
	assert_int_equal(mkdir(planted, 0700), 0);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(fmt(victim, sizeof(victim), "%s/shadow", elsewhere), 0);
	FILE *f = fopen(victim, "we");
	assert_non_null(f);
	fputs("root:secret\n", f);
	fclose(f);
	assert_int_equal(chmod(victim, 0644), 0);
	assert_int_equal(fmt(planted, sizeof(planted), "%s/key.pem.tmp", dir), 0);
	assert_int_equal(link(victim, planted), 0);
	assert_int_equal(tls_selfsigned_ensure(dir, "mx.example.net", false, 0, 0, cert, key, sizeof(cert)), 0);
	char *was = slurp(victim);
	assert_string_equal(was, "root:secret\n");
	free(was);
	struct stat st;
	assert_int_equal(stat(victim, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);

	/* The key a symbolic link to a key elsewhere (read as root): replaced by a new pair, the target untouched. */
	assert_int_equal(fmt(planted, sizeof(planted), "%s/key.pem", dir), 0);
	assert_int_equal(unlink(planted), 0);
	assert_int_equal(symlink(victim, planted), 0);
	assert_int_equal(tls_selfsigned_ensure(dir, "mx.example.net", false, 0, 0, cert, key, sizeof(cert)), 0);
	assert_int_equal(lstat(key, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	was = slurp(victim);
	assert_string_equal(was, "root:secret\n");
	free(was);
	struct tls_error e;
	SSL_CTX *ctx = tls_server_context(cert, key, &e);
	assert_non_null(ctx);
	tls_context_free(ctx);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	log_set_level(LOG_LVL_WARN);
	if (fmt(tmp, sizeof(tmp), "/tmp/test_tls.XXXXXX") < 0 || !mkdtemp(tmp))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_info),
		cmocka_unit_test(test_selfsigned),
		cmocka_unit_test(test_selfsigned_refuses_links),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
