/* Unit tests for MX selection (route_select_mx) and DSN status extraction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "delivery/route.h"
#include "delivery/qmgr_int.h"

static unsigned first(unsigned n)
{
	(void)n;
	return 0;
}

static unsigned last(unsigned n)
{
	return n - 1;
}

static size_t select_case(struct dns_mx *mx, size_t n, unsigned (*rnd)(unsigned))
{
	static const char *self[] = {"backup.test", "mx-alias.test"};
	return route_select_mx(mx, n, self, 2, rnd);
}

static void test_only_more_preferred_than_us(void **state)
{
	(void)state;
	struct dns_mx mx[] = {{30, "mx3.test"}, {20, "backup.test"}, {10, "mx1.test"}};
	size_t n = select_case(mx, 3, first);
	assert_int_equal(n, 1);
	assert_string_equal(mx[0].host, "mx1.test");
}

static void test_equal_to_us_is_not_better(void **state)
{
	(void)state;
	struct dns_mx mx[] = {{10, "mx1.test"}, {20, "peer.test"}, {20, "BACKUP.test"}};
	assert_int_equal(select_case(mx, 3, first), 1);
	struct dns_mx alias[] = {{10, "mx1.test"}, {5, "mx-alias.test"}};
	assert_int_equal(select_case(alias, 2, first), 0); /* we are the best MX: a loop */
}

static void test_not_listed_keeps_all(void **state)
{
	(void)state;
	struct dns_mx mx[] = {{20, "b.test"}, {10, "a.test"}};
	assert_int_equal(select_case(mx, 2, first), 2);
	assert_string_equal(mx[0].host, "a.test");
	assert_string_equal(mx[1].host, "b.test");
}

static void test_equal_preferences_are_shuffled(void **state)
{
	(void)state;
	struct dns_mx a[] = {{10, "x.test"}, {10, "y.test"}, {20, "z.test"}};
	struct dns_mx b[] = {{10, "x.test"}, {10, "y.test"}, {20, "z.test"}};
	select_case(a, 3, first);
	select_case(b, 3, last);
	assert_string_not_equal(a[0].host, b[0].host);
	assert_string_equal(a[2].host, "z.test"); /* never across preferences */
	assert_string_equal(b[2].host, "z.test");
}

static void test_capped_after_sorting(void **state)
{
	(void)state;
	struct dns_mx mx[40];
	for (int i = 0; i < 40; i++) { /* preferences 39 .. 0: the best come last */
		mx[i].pref = (uint16_t)(39 - i);
		snprintf(mx[i].host, sizeof(mx[i].host), "mx%02d.test", 39 - i);
	}
	assert_int_equal(select_case(mx, 40, first), ROUTE_MAX_MX);
	for (int i = 0; i < ROUTE_MAX_MX; i++)
		assert_int_equal(mx[i].pref, i); /* the most preferred ones */
	/* Fewer than the cap, or cut earlier by ourselves: unchanged. */
	struct dns_mx few[] = {{10, "a.test"}, {20, "backup.test"}, {30, "c.test"}};
	assert_int_equal(select_case(few, 3, first), 1);
}

static void test_status_of(void **state)
{
	(void)state;
	char st[16];
	qmgr_status_of(550, "550 5.1.1 <a@b>: User unknown", st);
	assert_string_equal(st, "5.1.1");
	qmgr_status_of(550, "550 User unknown", st);
	assert_string_equal(st, "5.0.0");
	qmgr_status_of(452, "452 4.2.2 Mailbox full", st);
	assert_string_equal(st, "4.2.2");
	qmgr_status_of(550, "550 4.2.2 class mismatch", st);
	assert_string_equal(st, "5.0.0");
	qmgr_status_of(0, NULL, st);
	assert_string_equal(st, "4.0.0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_only_more_preferred_than_us),
		cmocka_unit_test(test_equal_to_us_is_not_better),
		cmocka_unit_test(test_not_listed_keeps_all),
		cmocka_unit_test(test_equal_preferences_are_shuffled),
		cmocka_unit_test(test_capped_after_sorting),
		cmocka_unit_test(test_status_of),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
