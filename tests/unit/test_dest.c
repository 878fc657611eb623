/*
 * Unit tests for the destination policy (dest.c) on a fake clock: the
 * clock is a number the test moves; nothing sleeps. Backoff (doubling,
 * capped, attempts already under way not counted twice, reset on
 * recovery), the bounce guard (window, on, release, off, hold expiry, a
 * window too small to judge) and the failure-log rate limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "delivery/dest.h"

static const struct dest_params params = {
	.retry_min_s = 60, .retry_max_s = 600, .guard_percent = 50, .guard_hold_s = 3600,
};

static void test_backoff_doubles_and_caps(void **state)
{
	(void)state;
	struct dest_policy dp;
	int64_t now = 1000000;
	dest_policy_init(&dp, &params);
	assert_true(dest_may_connect(&dp, now));
	static const int64_t want[] = {60, 120, 240, 480, 600, 600};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_true(dest_attempt_failed(&dp, now));
		assert_int_equal(dp.backoff_s, want[i]);
		assert_false(dest_may_connect(&dp, now));
		assert_false(dest_may_connect(&dp, now + want[i] * 1000 - 1));
		now += want[i] * 1000; /* the gate opens exactly then */
		assert_true(dest_may_connect(&dp, now));
	}
}

static void test_failures_under_way_count_once(void **state)
{
	(void)state;
	struct dest_policy dp;
	int64_t now = 5000;
	dest_policy_init(&dp, &params);
	assert_true(dest_attempt_failed(&dp, now));
	/* Three more connections that started before the outage fail now: no doubling. */
	for (int i = 0; i < 3; i++)
		assert_false(dest_attempt_failed(&dp, now + 10));
	assert_int_equal(dp.backoff_s, 60);
	/* A probe failing while the gate is closed does not count either. */
	assert_false(dest_attempt_failed(&dp, now + 30000));
	assert_true(dest_attempt_failed(&dp, now + 60000));
	assert_int_equal(dp.backoff_s, 120);
}

static void test_recovery_resets(void **state)
{
	(void)state;
	struct dest_policy dp;
	dest_policy_init(&dp, &params);
	assert_false(dest_session_up(&dp)); /* never down: nothing to end */
	dest_attempt_failed(&dp, 0);
	dest_attempt_failed(&dp, 60000);
	assert_true(dp.down);
	assert_true(dest_session_up(&dp));
	assert_false(dp.down);
	assert_int_equal(dp.backoff_s, 0);
	assert_true(dest_may_connect(&dp, 60001));
	assert_false(dest_session_up(&dp)); /* a second session ends nothing */
	assert_true(dest_attempt_failed(&dp, 70000));
	assert_int_equal(dp.backoff_s, 60); /* a new outage starts from retry_min */
}

/* Judges n replies of code; returns the last guard change. */
static enum dest_guard_change judge_n(struct dest_policy *dp, int n, int code, int64_t now, enum dest_verdict *last)
{
	enum dest_guard_change ch = DEST_GUARD_SAME;
	for (int i = 0; i < n; i++)
		*last = dest_judge(dp, code, now, &ch);
	return ch;
}

static void test_guard_on_after_recovery(void **state)
{
	(void)state;
	struct dest_policy dp;
	enum dest_verdict v;
	dest_policy_init(&dp, &params);
	dest_attempt_failed(&dp, 0);
	assert_true(dest_session_up(&dp));
	assert_true(dest_holds_bounces(&dp));
	assert_int_equal(judge_n(&dp, DEST_GUARD_SAMPLE - 1, 550, 100, &v), DEST_GUARD_SAME);
	assert_int_equal(v, DEST_HOLD);
	assert_int_equal(judge_n(&dp, 1, 550, 100, &v), DEST_GUARD_ON);
	assert_int_equal(v, DEST_HOLD);
	assert_true(dp.guard);
	assert_int_equal(dp.guard_until, 100 + 3600);
	assert_int_equal(judge_n(&dp, 5, 550, 200, &v), DEST_GUARD_SAME);
	assert_int_equal(v, DEST_HOLD);
	/* One accepted recipient: the primary works again. */
	assert_int_equal(judge_n(&dp, 1, 250, 300, &v), DEST_GUARD_OFF);
	assert_int_equal(v, DEST_SENT);
	assert_false(dest_holds_bounces(&dp));
	assert_int_equal(judge_n(&dp, 1, 550, 300, &v), DEST_GUARD_SAME);
	assert_int_equal(v, DEST_BOUNCE);
}

static void test_guard_window_releases(void **state)
{
	(void)state;
	struct dest_policy dp;
	enum dest_verdict v;
	dest_policy_init(&dp, &params); /* a new destination starts with the window open */
	assert_int_equal(judge_n(&dp, 1, 550, 0, &v), DEST_GUARD_SAME);
	assert_int_equal(v, DEST_HOLD); /* a real refusal among the first: held for now */
	assert_int_equal(judge_n(&dp, DEST_GUARD_SAMPLE - 2, 250, 0, &v), DEST_GUARD_SAME);
	assert_int_equal(judge_n(&dp, 1, 250, 0, &v), DEST_GUARD_RELEASE);
	assert_false(dest_holds_bounces(&dp));
	assert_int_equal(judge_n(&dp, 1, 550, 0, &v), DEST_GUARD_SAME);
	assert_int_equal(v, DEST_BOUNCE);
}

static void test_guard_exactly_half_is_not_on(void **state)
{
	(void)state;
	struct dest_policy dp;
	enum dest_verdict v;
	dest_policy_init(&dp, &params);
	judge_n(&dp, DEST_GUARD_SAMPLE / 2, 550, 0, &v);
	assert_int_equal(judge_n(&dp, DEST_GUARD_SAMPLE / 2, 450, 0, &v), DEST_GUARD_RELEASE);
	assert_false(dp.guard);
	assert_int_equal(v, DEST_DEFER);
}

static void test_guard_hold_expires(void **state)
{
	(void)state;
	struct dest_policy dp;
	enum dest_verdict v;
	dest_policy_init(&dp, &params);
	assert_int_equal(judge_n(&dp, DEST_GUARD_SAMPLE, 550, 1000, &v), DEST_GUARD_ON);
	assert_false(dest_guard_expired(&dp, 1000 + 3599));
	assert_false(dest_is_settled(&dp));
	assert_true(dest_guard_expired(&dp, 1000 + 3600));
	assert_false(dest_guard_expired(&dp, 1000 + 3601));
	assert_true(dest_is_settled(&dp));
	assert_int_equal(judge_n(&dp, 1, 550, 5000, &v), DEST_GUARD_SAME);
	assert_int_equal(v, DEST_BOUNCE);
}

static void test_window_idle(void **state)
{
	(void)state;
	struct dest_policy dp;
	enum dest_verdict v;
	dest_policy_init(&dp, &params);
	assert_false(dest_window_idle(&dp, false)); /* nothing judged yet: keep the window */
	judge_n(&dp, 2, 550, 0, &v);
	assert_false(dest_window_idle(&dp, true)); /* still busy */
	assert_true(dest_window_idle(&dp, false));
	assert_false(dest_holds_bounces(&dp));
}

static void test_guard_off_in_config(void **state)
{
	(void)state;
	struct dest_params p = params;
	p.guard_percent = 0;
	struct dest_policy dp;
	enum dest_verdict v;
	dest_policy_init(&dp, &p);
	assert_false(dest_holds_bounces(&dp));
	dest_attempt_failed(&dp, 0);
	dest_session_up(&dp);
	assert_int_equal(judge_n(&dp, 20, 550, 0, &v), DEST_GUARD_SAME);
	assert_int_equal(v, DEST_BOUNCE);
}

static void test_log_rate_limit(void **state)
{
	(void)state;
	struct dest_policy dp;
	uint32_t sup;
	int64_t now = 123456;
	dest_policy_init(&dp, &params);
	for (int i = 0; i < DEST_LOG_BURST; i++) {
		assert_true(dest_log_allowed(&dp, now + i, &sup));
		assert_int_equal(sup, 0);
	}
	for (int i = 0; i < 500; i++)
		assert_false(dest_log_allowed(&dp, now + DEST_LOG_WINDOW_MS - 1, &sup));
	/* The next window: one line says how many were held back, once. */
	assert_true(dest_log_allowed(&dp, now + DEST_LOG_WINDOW_MS, &sup));
	assert_int_equal(sup, 500);
	assert_true(dest_log_allowed(&dp, now + DEST_LOG_WINDOW_MS, &sup));
	assert_int_equal(sup, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_doubles_and_caps),
		cmocka_unit_test(test_failures_under_way_count_once),
		cmocka_unit_test(test_recovery_resets),
		cmocka_unit_test(test_guard_on_after_recovery),
		cmocka_unit_test(test_guard_window_releases),
		cmocka_unit_test(test_guard_exactly_half_is_not_on),
		cmocka_unit_test(test_guard_hold_expires),
		cmocka_unit_test(test_window_idle),
		cmocka_unit_test(test_guard_off_in_config),
		cmocka_unit_test(test_log_rate_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
