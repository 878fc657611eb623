/*
 * Unit tests of the server's session accounting: which sessions count
 * together toward max_sessions_per_ip. An IPv6 host usually has a whole /64,
 * so counting per address would give it 2^64 allowances.
 */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "smtpd/smtp_server.h"

static const char *key_of(const char *ip, char *out, size_t n)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, ip, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, ip, &s4->sin_addr), 1);
	}
	smtp_server_client_key((const struct sockaddr *)&ss, out, n);
	return out;
}

static void test_client_keys(void **state)
{
	(void)state;
	static const struct {
		const char *ip, *key;
	} cases[] = {
		{"192.0.2.1", "192.0.2.1"},
		{"192.0.2.2", "192.0.2.2"},             /* IPv4: each address alone */
		{"2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"}, /* same /64 */
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"}, /* the next /64 */
		{"::1", "::/64"},
		{"::ffff:192.0.2.7", "192.0.2.7"},       /* IPv4-mapped counts as IPv4 */
	};
	char key[INET6_ADDRSTRLEN + 4];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(key_of(cases[i].ip, key, sizeof(key)), cases[i].key);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
