/*
 * Unit tests for `mxvault check`'s pure parts: the DNS rules on hand-made
 * MX sets (which host is the backup, which finding with which severity),
 * the exit code, and dns_answer_ttl (the MX TTL read from the wire).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "check/check.h"

static void add_mx(struct check_report *r, const char *host, uint16_t pref, uint32_t ttl, bool self)
{
	r->mx = xrealloc(r->mx, (r->nmx + 1) * sizeof(*r->mx));
	struct check_mx *m = &r->mx[r->nmx++];
	memset(m, 0, sizeof(*m));
	check_text(m->host, sizeof(m->host), "%s", host);
	m->pref = pref;
	m->ttl = ttl;
	m->naddrs = 1;
	m->self_name = m->self_addr = self;
}

static const struct check_finding *find(const struct check_report *r, const char *id)
{
	for (size_t i = 0; i < r->nf; i++)
		if (strcmp(r->f[i].id, id) == 0)
			return &r->f[i];
	return NULL;
}

static void test_clean_set_with_config(void **state)
{
	(void)state;
	struct check_report r = {0};
	add_mx(&r, "mx1.test", 10, 3600, false);
	add_mx(&r, "backup.test", 20, 3600, true);
	check_rules_dns(&r, true);
	assert_int_equal(r.mx[0].role, CHECK_ROLE_PRIMARY);
	assert_int_equal(r.mx[1].role, CHECK_ROLE_BACKUP);
	assert_false(r.backup_assumed);
	assert_non_null(find(&r, "backup.self"));
	assert_int_equal(check_exit_code(&r), 0);
	check_report_free(&r);
}

static void test_same_preference_is_an_error(void **state)
{
	(void)state;
	struct check_report r = {0};
	add_mx(&r, "mx1.test", 10, 3600, false);
	add_mx(&r, "backup.test", 10, 3600, true);
	check_rules_dns(&r, true);
	const struct check_finding *f = find(&r, "backup.same-preference");
	assert_non_null(f);
	assert_int_equal(f->sev, CHECK_ERROR);
	assert_string_equal(f->subject, "mx1.test");
	assert_non_null(find(&r, "primary.missing"));
	assert_int_equal(check_exit_code(&r), 2);
	check_report_free(&r);
}

static void test_without_config_least_preferred_is_backup(void **state)
{
	(void)state;
	struct check_report r = {0};
	add_mx(&r, "mx1.test", 5, 3600, false);
	add_mx(&r, "mx2.test", 10, 3600, false);
	add_mx(&r, "mx3.test", 20, 3600, false);
	check_rules_dns(&r, false);
	assert_true(r.backup_assumed);
	assert_int_equal(r.mx[0].role, CHECK_ROLE_PRIMARY);
	assert_int_equal(r.mx[1].role, CHECK_ROLE_PRIMARY);
	assert_int_equal(r.mx[2].role, CHECK_ROLE_BACKUP);
	assert_int_equal(find(&r, "backup.assumed")->sev, CHECK_OK);
	check_report_free(&r);
}

static void test_single_and_ttl_warn(void **state)
{
	(void)state;
	struct check_report r = {0};
	add_mx(&r, "mx1.test", 10, 30, false);
	check_rules_dns(&r, false);
	assert_int_equal(find(&r, "mx.single")->sev, CHECK_WARN);
	assert_int_equal(find(&r, "mx.ttl")->sev, CHECK_WARN);
	assert_int_equal(check_exit_code(&r), 1);
	check_report_free(&r);
}

static void test_not_self_with_config(void **state)
{
	(void)state;
	struct check_report r = {0};
	add_mx(&r, "mx1.test", 10, 3600, false);
	add_mx(&r, "mx2.test", 20, 3600, false);
	check_rules_dns(&r, true);
	assert_int_equal(find(&r, "backup.not-self")->sev, CHECK_ERROR);
	assert_int_equal(r.mx[1].role, CHECK_ROLE_BACKUP); /* judged as if the least preferred were */
	check_report_free(&r);
}

/* ok.test MX 10 mx1.ok.test, TTL 3600, with name compression. */
static const unsigned char mx_answer[] = {
	0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0,
	2, 'o', 'k', 4, 't', 'e', 's', 't', 0, 0, 15, 0, 1,
	0xc0, 12, 0, 15, 0, 1, 0, 0, 0x0e, 0x10, 0, 8, 0, 10, 3, 'm', 'x', '1', 0xc0, 15,
};

static void test_answer_ttl(void **state)
{
	(void)state;
	uint32_t ttl = 0;
	assert_int_equal(dns_answer_ttl(mx_answer, sizeof(mx_answer), 15, &ttl), 0);
	assert_int_equal(ttl, 3600);
	assert_int_equal(dns_answer_ttl(mx_answer, sizeof(mx_answer), 1, &ttl), -ENOENT);
	for (size_t n = 0; n < sizeof(mx_answer); n++) /* every truncation is refused, never read past */
		assert_int_equal(dns_answer_ttl(mx_answer, n, 15, &ttl), -EINVAL);
}

/*
 * Found by fuzz_dns_ttl: a good MX record followed by a cut one was -EINVAL
 * with *ttl already written. A malformed message must leave it untouched.
 */
static void test_answer_ttl_untouched_on_error(void **state)
{
	(void)state;
	unsigned char msg[sizeof(mx_answer) + 12];
	memcpy(msg, mx_answer, sizeof(mx_answer));
	msg[7] = 2; /* two answers; the second is cut after its name and type */
	static const unsigned char cut[] = {0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 5, 0, 9};
	memcpy(msg + sizeof(mx_answer), cut, sizeof(cut));
	uint32_t ttl = 7;
	assert_int_equal(dns_answer_ttl(msg, sizeof(msg), 15, &ttl), -EINVAL);
	assert_int_equal(ttl, 7);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_clean_set_with_config),
		cmocka_unit_test(test_same_preference_is_an_error),
		cmocka_unit_test(test_without_config_least_preferred_is_backup),
		cmocka_unit_test(test_single_and_ttl_warn),
		cmocka_unit_test(test_not_self_with_config),
		cmocka_unit_test(test_answer_ttl),
		cmocka_unit_test(test_answer_ttl_untouched_on_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
