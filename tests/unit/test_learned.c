/*
 * test_learned: the learned-recipient store (src/store/learned.c) on a real
 * LMDB environment in a temporary directory: put and get (any case), good
 * overwritten by bad, expiry by the caller's clock, read-your-writes before
 * the writer thread applied a put, reopening (the entries survive a close),
 * the entry cap, a damaged data file moved aside, and the files' mode.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "store/learned.h"

#define TTL 3600
#define NOW 1700000000

static char dir[64];

static int dirfd_of(void)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(fd >= 0);
	return fd;
}

static struct learned *open_store(uint64_t max)
{
	struct learned *l = NULL;
	assert_int_equal(learned_open(dirfd_of(), dir, TTL, max, &l), 0);
	assert_non_null(l);
	return l;
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mxv-learned-XXXXXX");
	assert_non_null(mkdtemp(dir));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	return 0;
}

static void test_put_get(void **state)
{
	(void)state;
	struct learned *l = open_store(0);
	int64_t when = -1;
	assert_int_equal(learned_get(l, "alice@example.com", NOW, &when), LEARNED_UNKNOWN);
	assert_int_equal(when, 0);
	learned_put(l, "Alice@Example.COM", true, NOW);
	learned_put(l, "bob@example.com", false, NOW - 10);
	/* Seen at once, applied or not. */
	assert_int_equal(learned_get(l, "alice@example.com", NOW, &when), LEARNED_GOOD);
	assert_int_equal(when, NOW);
	learned_flush(l);
	assert_int_equal(learned_get(l, "ALICE@example.com", NOW, NULL), LEARNED_GOOD);
	assert_int_equal(learned_get(l, "bob@example.com", NOW, &when), LEARNED_BAD);
	assert_int_equal(when, NOW - 10);
	assert_int_equal(learned_get(l, "carol@example.com", NOW, NULL), LEARNED_UNKNOWN);
	/* A later answer replaces the earlier one. */
	learned_put(l, "alice@example.com", false, NOW + 5);
	assert_int_equal(learned_get(l, "alice@example.com", NOW + 5, NULL), LEARNED_BAD);
	learned_flush(l);
	assert_int_equal(learned_get(l, "alice@example.com", NOW + 5, NULL), LEARNED_BAD);
	struct learned_stats st;
	learned_get_stats(l, &st);
	assert_int_equal(st.entries, 2);
	learned_close(l);
}

static void test_expire(void **state)
{
	(void)state;
	struct learned *l = open_store(0);
	learned_put(l, "old@example.com", true, NOW - TTL - 1);
	learned_put(l, "edge@example.com", true, NOW - TTL);
	assert_int_equal(learned_get(l, "old@example.com", NOW, NULL), LEARNED_UNKNOWN); /* still queued */
	learned_flush(l);
	assert_int_equal(learned_get(l, "old@example.com", NOW, NULL), LEARNED_UNKNOWN);
	assert_int_equal(learned_get(l, "old@example.com", NOW - 1, NULL), LEARNED_GOOD);
	assert_int_equal(learned_get(l, "edge@example.com", NOW, NULL), LEARNED_GOOD);
	assert_int_equal(learned_get(l, "edge@example.com", NOW + 1, NULL), LEARNED_UNKNOWN);
	learned_close(l);
}

static void test_reopen(void **state)
{
	(void)state;
	struct learned *l = open_store(0);
	learned_put(l, "kept@example.com", true, NOW);
	learned_put(l, "refused@example.com", false, NOW);
	learned_close(l); /* applies the queue and syncs */
	struct stat st;
	char path[128];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	l = open_store(0);
	assert_int_equal(learned_get(l, "kept@example.com", NOW, NULL), LEARNED_GOOD);
	assert_int_equal(learned_get(l, "refused@example.com", NOW, NULL), LEARNED_BAD);
	learned_close(l);
}

static void test_cap(void **state)
{
	(void)state;
	struct learned *l = open_store(3);
	char a[64];
	for (int i = 0; i < 5; i++) {
		snprintf(a, sizeof(a), "u%d@example.com", i);
		learned_put(l, a, true, NOW);
		learned_flush(l);
	}
	assert_int_equal(learned_get(l, "u2@example.com", NOW, NULL), LEARNED_GOOD);
	assert_int_equal(learned_get(l, "u3@example.com", NOW, NULL), LEARNED_UNKNOWN);
	learned_put(l, "u0@example.com", false, NOW); /* an update still goes in */
	learned_flush(l);
	assert_int_equal(learned_get(l, "u0@example.com", NOW, NULL), LEARNED_BAD);
	struct learned_stats st;
	learned_get_stats(l, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.dropped, 2);
	/* Too long for a key: dropped, never stored. */
	char big[LEARNED_KEY_MAX + 10];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	learned_put(l, big, true, NOW);
	assert_int_equal(learned_get(l, big, NOW, NULL), LEARNED_UNKNOWN);
	learned_close(l);
}

static void test_damaged_file(void **state)
{
	(void)state;
	char path[128];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	for (int i = 0; i < 2000; i++)
		fputs("not an lmdb file ", f);
	fclose(f);
	struct learned *l = open_store(0);
	assert_int_equal(learned_get(l, "any@example.com", NOW, NULL), LEARNED_UNKNOWN);
	learned_put(l, "any@example.com", true, NOW);
	learned_close(l);
	snprintf(path, sizeof(path), "%s/data.mdb.broken", dir);
	assert_int_equal(access(path, F_OK), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
