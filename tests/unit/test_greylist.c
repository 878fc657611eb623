/*
 * Unit tests for src/smtpd/greylist.c over a real store (src/store/kv.c,
 * LMDB in a temporary directory): the first attempt is deferred, a retry
 * passes after the delay and lets the network through, a retry after the
 * window starts over, the networks (/24, /64, IPv4-mapped), persistence
 * across a reopen, and the sweep.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "smtpd/greylist.h"
#include "store/kv.h"

#define T0 1764000000
#define DELAY 300

struct fixture {
	char dir[64];
	struct kv *kv;
	struct greylist *g;
};

static void open_store(struct fixture *f)
{
	int fd = open(f->dir, O_RDONLY | O_DIRECTORY);
	assert_true(fd >= 0);
	assert_int_equal(kv_open(fd, 1 << 20, 1, &f->kv), 0);
	close(fd);
	f->g = greylist_new(f->kv, DELAY);
}

static void close_store(struct fixture *f)
{
	greylist_free(f->g);
	kv_close(f->kv);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	strcpy(f->dir, "/tmp/test_greylist.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	open_store(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	close_store(f);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static struct sockaddr_storage v4(const char *ip)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *a = (struct sockaddr_in *)&ss;
	a->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
	return ss;
}

static struct sockaddr_storage v6(const char *ip)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
	a->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
	return ss;
}

static bool check(struct fixture *f, const struct sockaddr_storage *ss, const char *from, const char *to, int64_t now,
		  int64_t *retry_in)
{
	return greylist_check(f->g, (const struct sockaddr *)ss, from, to, now, retry_in);
}

static void test_first_deferred_retry_passes(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_storage c = v4("192.0.2.10");
	int64_t left = 0;
	assert_false(check(f, &c, "a@x.example", "bob@d.example", T0, &left));
	assert_int_equal(left, DELAY);
	assert_false(check(f, &c, "a@x.example", "bob@d.example", T0 + 100, &left)); /* too early */
	assert_int_equal(left, DELAY - 100);
	/* another address of the same /24, the addresses in another case: the same triplet */
	struct sockaddr_storage c2 = v4("192.0.2.99");
	assert_true(check(f, &c2, "A@X.example", "Bob@D.example", T0 + DELAY, &left));
	/* the network now passes for anything */
	assert_true(check(f, &c, "other@y.example", "carol@d.example", T0 + DELAY + 1, &left));
	struct sockaddr_storage elsewhere = v4("198.51.100.1");
	assert_false(check(f, &elsewhere, "other@y.example", "carol@d.example", T0 + DELAY + 1, &left));
	/* ... for 30 days */
	assert_false(check(f, &c, "third@z.example", "carol@d.example", T0 + DELAY + GREYLIST_PASS_TTL + 1, &left));
}

static void test_retry_after_window_starts_over(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_storage c = v4("203.0.113.5");
	int64_t left = 0;
	assert_false(check(f, &c, "a@x.example", "b@d.example", T0, &left));
	assert_false(check(f, &c, "a@x.example", "b@d.example", T0 + GREYLIST_RETRY_WINDOW + 1, &left));
	assert_int_equal(left, DELAY);
	assert_true(check(f, &c, "a@x.example", "b@d.example", T0 + GREYLIST_RETRY_WINDOW + 1 + DELAY, &left));
}

static void test_networks(void **state)
{
	(void)state;
	char net[64];
	struct sockaddr_storage a = v4("192.0.2.200");
	greylist_network((struct sockaddr *)&a, net, sizeof(net));
	assert_string_equal(net, "192.0.2.0/24");
	struct sockaddr_storage b = v6("2001:db8:1:2:aaaa::1");
	greylist_network((struct sockaddr *)&b, net, sizeof(net));
	assert_string_equal(net, "2001:db8:1:2::/64");
	struct sockaddr_storage m = v6("::ffff:192.0.2.7");
	greylist_network((struct sockaddr *)&m, net, sizeof(net));
	assert_string_equal(net, "192.0.2.0/24");
}

static void test_remembered_across_reopen(void **state)
{
	struct fixture *f = *state;
	struct sockaddr_storage c = v6("2001:db8:5::1");
	int64_t left = 0;
	assert_false(check(f, &c, "a@x.example", "b@d.example", T0, &left));
	close_store(f);
	open_store(f);
	assert_true(check(f, &c, "a@x.example", "b@d.example", T0 + DELAY, &left)); /* the first attempt was kept */
}

static void test_sweep(void **state)
{
	struct fixture *f = *state;
	int64_t left = 0;
	for (int i = 0; i < 10; i++) {
		char from[32];
		snprintf(from, sizeof(from), "s%d@x.example", i);
		struct sockaddr_storage c = v4("192.0.2.1");
		check(f, &c, from, "b@d.example", T0, &left);
	}
	assert_int_equal(kv_count(f->kv), 10);
	assert_int_equal(greylist_sweep(f->g, T0 + 10), 0); /* nothing stale yet */
	size_t gone = 0;
	for (int i = 0; i < 5 && gone < 10; i++) /* bounded batches, resuming where they stopped */
		gone += greylist_sweep(f->g, T0 + GREYLIST_RETRY_WINDOW + 1);
	assert_int_equal(gone, 10);
	assert_int_equal(kv_count(f->kv), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_deferred_retry_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_after_window_starts_over, setup, teardown),
		cmocka_unit_test(test_networks),
		cmocka_unit_test_setup_teardown(test_remembered_across_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sweep, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
