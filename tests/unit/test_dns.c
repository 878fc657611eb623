/*
 * Unit tests for src/dns.c against a real DNS server: the group setup starts
 * unbound on 127.0.0.1 (a free port) serving static test zones from
 * local-data, waits until it answers, and kills it at the end. Every test
 * uses a fresh event base and handle and waits on conditions with deadlines.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "base/dns.h"
#include "unbound.h"

#define BIG_N 40 /* A records of big.test: > 512 bytes, so TC and TCP */

static struct unbound srv;
static bool in_lookup;    /* set around dns_lookup_*: callbacks must not see it */

struct result {
	int calls;
	bool reentrant;
	enum dns_status st;
	size_t n;
	struct dns_mx mx[8];
	struct dns_addr addrs[BIG_N + 8];
	struct dns *free_me; /* dns_free from inside the callback */
	bool secure;         /* MX, TLSA: the AD bit */
	struct dns_tlsa tlsa[4];
	unsigned char tlsa_data[4][64];
};

static void on_mx(void *arg, enum dns_status st, bool secure, const struct dns_mx *mx, size_t n)
{
	struct result *r = arg;
	r->secure = secure;
	r->calls++;
	r->reentrant |= in_lookup;
	r->st = st;
	r->n = n;
	for (size_t i = 0; i < n && i < ARRAY_LEN(r->mx); i++)
		r->mx[i] = mx[i];
	if (r->free_me)
		dns_free(r->free_me);
}

static void on_addrs(void *arg, enum dns_status st, const struct dns_addr *a, size_t n)
{
	struct result *r = arg;
	r->calls++;
	r->reentrant |= in_lookup;
	r->st = st;
	r->n = n;
	for (size_t i = 0; i < n && i < ARRAY_LEN(r->addrs); i++)
		r->addrs[i] = a[i];
	if (r->free_me)
		dns_free(r->free_me);
}

static void on_tlsa(void *arg, enum dns_status st, bool secure, const struct dns_tlsa *t, size_t n)
{
	struct result *r = arg;
	r->calls++;
	r->reentrant |= in_lookup;
	r->st = st;
	r->n = n;
	r->secure = secure;
	for (size_t i = 0; i < n && i < ARRAY_LEN(r->tlsa); i++) {
		r->tlsa[i] = t[i];
		assert_true(t[i].len <= sizeof(r->tlsa_data[i]));
		memcpy(r->tlsa_data[i], t[i].data, t[i].len);
		r->tlsa[i].data = r->tlsa_data[i];
	}
}

static void on_txt(void *arg, enum dns_status st, const char *const *txt, size_t n)
{
	struct result *r = arg;
	(void)txt;
	r->calls++;
	r->reentrant |= in_lookup;
	r->st = st;
	r->n = n;
}

static void on_ptr(void *arg, enum dns_status st, const char *const *names, size_t n)
{
	struct result *r = arg;
	r->calls++;
	r->reentrant |= in_lookup;
	r->st = st;
	r->n = n;
	for (size_t i = 0; i < n && i < ARRAY_LEN(r->mx); i++)
		snprintf(r->mx[i].host, sizeof(r->mx[i].host), "%s", names[i]);
}

static void on_txt_keep(void *arg, enum dns_status st, const char *const *txt, size_t n)
{
	struct result *r = arg;
	r->calls++;
	r->st = st;
	r->n = n;
	if (n)
		snprintf(r->mx[0].host, sizeof(r->mx[0].host), "%s", txt[0]);
}

static void mx_lookup(struct dns *d, const char *name, struct result *r)
{
	in_lookup = true;
	dns_lookup_mx(d, name, on_mx, r);
	in_lookup = false;
}

static void addrs_lookup(struct dns *d, const char *name, uint16_t port, struct result *r)
{
	in_lookup = true;
	dns_lookup_addrs(d, name, port, on_addrs, r);
	in_lookup = false;
}

static enum dns_status mx_status(struct fixture *f, const char *name, struct result *r)
{
	mx_lookup(f->d, name, r);
	assert_true(run_until(f->base, &r->calls, 5000));
	assert_int_equal(r->calls, 1);
	assert_false(r->reentrant);
	return r->st;
}

static enum dns_status addrs_status(struct fixture *f, const char *name, uint16_t port, struct result *r)
{
	addrs_lookup(f->d, name, port, r);
	assert_true(run_until(f->base, &r->calls, 5000));
	assert_int_equal(r->calls, 1);
	assert_false(r->reentrant);
	return r->st;
}

/* "family address port" of one result, for compact assertions. */
static const char *addr_str(const struct dns_addr *a, char *out, size_t n)
{
	char ip[INET6_ADDRSTRLEN];
	const struct sockaddr_in *s4 = (const void *)&a->ss;
	const struct sockaddr_in6 *s6 = (const void *)&a->ss;
	if (a->ss.ss_family == AF_INET6 && a->len == sizeof(*s6))
		snprintf(out, n, "%s %u", inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip)),
			 ntohs(s6->sin6_port));
	else if (a->ss.ss_family == AF_INET && a->len == sizeof(*s4))
		snprintf(out, n, "%s %u", inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip)),
			 ntohs(s4->sin_port));
	else
		snprintf(out, n, "bad family %d len %u", a->ss.ss_family, (unsigned)a->len);
	return out;
}

/* ---- the server ---- */

static void write_zone(FILE *fp)
{
	fprintf(fp, "  local-zone: \"test.\" static\n"
		    "  local-zone: \"refused.test.\" refuse\n"
		    "  local-zone: \"deny.test.\" deny\n");
	static const char *data[] = {
		"mx3.test. MX 20 b.mx3.test.", "mx3.test. MX 10 A.MX3.Test.",
		"mx3.test. MX 20 c.mx3.test.", "nullmx.test. MX 0 .",
		"nomx.test. A 192.0.2.3", "dual.test. AAAA 2001:db8::1",
		"dual.test. A 192.0.2.1", "v4.test. A 192.0.2.2",
		"v6.test. AAAA 2001:db8::2", "a.mx3.test. A 192.0.2.10",
		"_25._tcp.tlsa.test. TLSA 3 1 1 00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
		"tlsa.test. A 192.0.2.4",
		"2.2.0.192.in-addr.arpa. PTR V4.Test.", "2.2.0.192.in-addr.arpa. PTR other.test.",
		"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR v6.test.",
		"3.2.0.192.in-addr.arpa. TXT not-a-ptr",
		"nul.test. TXT v=spf1\\032a:x.test\\000 -all", /* two strings, a NUL and a space inside */
	};
	for (size_t i = 0; i < ARRAY_LEN(data); i++)
		fprintf(fp, "  local-data: \"%s\"\n", data[i]);
	for (int i = 0; i < BIG_N; i++)
		fprintf(fp, "  local-data: \"big.test. A 198.51.100.%d\"\n", i + 1);
}

static int group_setup(void **state)
{
	(void)state;
	return unbound_start(&srv, "dns", write_zone, "v4.test");
}

static int group_teardown(void **state)
{
	(void)state;
	return unbound_stop(&srv);
}

static int setup(void **state)
{
	return unbound_fixture_setup(state, &srv);
}

static int teardown(void **state)
{
	return unbound_fixture_teardown(state);
}

/* ---- MX ---- */

static void test_mx_sorted_lowercase(void **state)
{
	struct result r = {0};
	assert_int_equal(mx_status(*state, "MX3.test.", &r), DNS_OK);
	assert_int_equal(r.n, 3);
	assert_int_equal(r.mx[0].pref, 10);
	assert_string_equal(r.mx[0].host, "a.mx3.test");
	assert_int_equal(r.mx[1].pref, 20);
	assert_int_equal(r.mx[2].pref, 20);
	/* Ties keep the server's order (round robin is off in unbound). */
	assert_string_equal(r.mx[1].host, "b.mx3.test");
	assert_string_equal(r.mx[2].host, "c.mx3.test");
}

static void test_mx_null(void **state)
{
	struct result r = {0};
	assert_int_equal(mx_status(*state, "nullmx.test", &r), DNS_OK);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.mx[0].pref, 0);
	assert_string_equal(r.mx[0].host, "");
}

static void test_mx_nodata_and_nxdomain(void **state)
{
	struct result r1 = {0}, r2 = {0};
	assert_int_equal(mx_status(*state, "nomx.test", &r1), DNS_NODATA);
	assert_int_equal(r1.n, 0);
	assert_int_equal(mx_status(*state, "nope.test", &r2), DNS_NXDOMAIN);
	assert_int_equal(r2.n, 0);
}

/* ---- addresses ---- */

static void test_addrs_aaaa_first(void **state)
{
	struct result r = {0};
	char s[80];
	assert_int_equal(addrs_status(*state, "dual.test", 2525, &r), DNS_OK);
	assert_int_equal(r.n, 2);
	assert_string_equal(addr_str(&r.addrs[0], s, sizeof(s)), "2001:db8::1 2525");
	assert_string_equal(addr_str(&r.addrs[1], s, sizeof(s)), "192.0.2.1 2525");
}

static void test_addrs_one_family(void **state)
{
	struct result r4 = {0}, r6 = {0};
	char s[80];
	assert_int_equal(addrs_status(*state, "v4.test", 25, &r4), DNS_OK);
	assert_int_equal(r4.n, 1);
	assert_string_equal(addr_str(&r4.addrs[0], s, sizeof(s)), "192.0.2.2 25");
	assert_int_equal(addrs_status(*state, "V6.TEST", 25, &r6), DNS_OK);
	assert_int_equal(r6.n, 1);
	assert_string_equal(addr_str(&r6.addrs[0], s, sizeof(s)), "2001:db8::2 25");
}

static void test_addrs_nodata_and_nxdomain(void **state)
{
	struct result r1 = {0}, r2 = {0};
	assert_int_equal(addrs_status(*state, "nullmx.test", 25, &r1), DNS_NODATA);
	assert_int_equal(r1.n, 0);
	assert_int_equal(addrs_status(*state, "nope.test", 25, &r2), DNS_NXDOMAIN);
}

static enum dns_status family_status(struct fixture *f, const char *name, int family, struct result *r)
{
	in_lookup = true;
	dns_lookup_family(f->d, name, family, on_addrs, r);
	in_lookup = false;
	assert_true(run_until(f->base, &r->calls, 5000));
	assert_int_equal(r->calls, 1);
	assert_false(r->reentrant);
	return r->st;
}

/* One family, one query: its own NODATA and NXDOMAIN (SPF counts them as void). */
static void test_family_lookups(void **state)
{
	struct result r[6] = {{0}};
	char s[80];
	assert_int_equal(family_status(*state, "dual.test", AF_INET, &r[0]), DNS_OK);
	assert_int_equal(r[0].n, 1);
	assert_string_equal(addr_str(&r[0].addrs[0], s, sizeof(s)), "192.0.2.1 0");
	assert_int_equal(family_status(*state, "dual.test", AF_INET6, &r[1]), DNS_OK);
	assert_int_equal(r[1].n, 1);
	assert_string_equal(addr_str(&r[1].addrs[0], s, sizeof(s)), "2001:db8::1 0");
	assert_int_equal(family_status(*state, "v4.test", AF_INET6, &r[2]), DNS_NODATA);
	assert_int_equal(family_status(*state, "nope.test", AF_INET, &r[3]), DNS_NXDOMAIN);
	assert_int_equal(family_status(*state, "bad..name", AF_INET, &r[4]), DNS_BADNAME);
	assert_int_equal(family_status(*state, "v4.test", AF_UNIX, &r[5]), DNS_BADNAME);
}

static enum dns_status ptr_status(struct fixture *f, const char *ip, struct result *r)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1)
		s4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1)
		s6->sin6_family = AF_INET6;
	in_lookup = true;
	dns_lookup_ptr(f->d, (struct sockaddr *)&ss, on_ptr, r);
	in_lookup = false;
	assert_true(run_until(f->base, &r->calls, 5000));
	assert_int_equal(r->calls, 1);
	assert_false(r->reentrant);
	return r->st;
}

static void test_ptr_lookups(void **state)
{
	struct result r[5] = {{0}};
	assert_int_equal(ptr_status(*state, "192.0.2.2", &r[0]), DNS_OK);
	assert_int_equal(r[0].n, 2);
	assert_string_equal(r[0].mx[0].host, "v4.test");
	assert_string_equal(r[0].mx[1].host, "other.test");
	assert_int_equal(ptr_status(*state, "2001:db8::2", &r[1]), DNS_OK);
	assert_int_equal(r[1].n, 1);
	assert_string_equal(r[1].mx[0].host, "v6.test");
	assert_int_equal(ptr_status(*state, "192.0.2.3", &r[2]), DNS_NODATA);
	assert_int_equal(ptr_status(*state, "192.0.2.99", &r[3]), DNS_NXDOMAIN);
	assert_int_equal(ptr_status(*state, "not an address", &r[4]), DNS_BADNAME);
}

static void test_reverse_name(void **state)
{
	(void)state;
	struct sockaddr_in6 s6 = {.sin6_family = AF_INET6};
	struct sockaddr_in s4 = {.sin_family = AF_INET};
	char out[80];
	assert_int_equal(inet_pton(AF_INET, "192.0.2.3", &s4.sin_addr), 1);
	assert_int_equal(dns_reverse_name((struct sockaddr *)&s4, out, sizeof(out)), 0);
	assert_string_equal(out, "3.2.0.192.in-addr.arpa");
	assert_int_equal(inet_pton(AF_INET6, "2001:db8::cb01", &s6.sin6_addr), 1);
	assert_int_equal(dns_reverse_name((struct sockaddr *)&s6, out, sizeof(out)), 0);
	assert_string_equal(out, "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
	/* the same under a DNS list's zone; -EINVAL when out is too small */
	char big[600];
	assert_int_equal(dns_list_name((struct sockaddr *)&s4, "zen.example.org", big, sizeof(big)), 0);
	assert_string_equal(big, "3.2.0.192.zen.example.org");
	assert_int_equal(dns_list_name((struct sockaddr *)&s6, "bl.test", big, sizeof(big)), 0);
	assert_string_equal(big, "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test");
	assert_int_equal(dns_list_name((struct sockaddr *)&s4, "zen.example.org", big, 20), -EINVAL);
}

/* A NUL inside a TXT string reads as DEL: it cannot cut "a:x.test\\0" into a valid record. */
static void test_txt_nul_reads_as_del(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	dns_lookup_txt(f->d, "nul.test", on_txt_keep, &r);
	assert_true(run_until(f->base, &r.calls, 5000));
	assert_int_equal(r.st, DNS_OK);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.mx[0].host, "v=spf1 a:x.test\x7f-all");
}

/* dns_free cancels PTR and single-family lookups through their own callbacks. */
static void test_free_cancels_ptr_and_family(void **state)
{
	struct fixture *f = *state;
	struct result rp = {0}, ra = {0};
	struct sockaddr_in s4 = {.sin_family = AF_INET};
	assert_int_equal(inet_pton(AF_INET, "192.0.2.2", &s4.sin_addr), 1);
	dns_lookup_ptr(f->d, (struct sockaddr *)&s4, on_ptr, &rp);
	dns_lookup_family(f->d, "deny.test", AF_INET6, on_addrs, &ra);
	dns_free(f->d);
	f->d = NULL;
	int never = 0;
	run_until(f->base, &never, 100);
	assert_int_equal(rp.calls, 1);
	assert_int_equal(rp.st, DNS_CANCELLED);
	assert_int_equal(ra.calls, 1);
	assert_int_equal(ra.st, DNS_CANCELLED);
}

/* 40 A records do not fit 512 bytes: c-ares retries over TCP (EV_WRITE). */
static void test_addrs_truncated_uses_tcp(void **state)
{
	struct result r = {0};
	char s[80], want[80];
	assert_int_equal(addrs_status(*state, "big.test", 25, &r), DNS_OK);
	assert_int_equal(r.n, BIG_N);
	for (size_t i = 0; i < r.n; i++) {
		snprintf(want, sizeof(want), "198.51.100.%zu 25", i + 1);
		assert_string_equal(addr_str(&r.addrs[i], s, sizeof(s)), want);
	}
}

static void test_ip_literals(void **state)
{
	struct fixture *f = *state;
	struct result r4 = {0}, r6 = {0};
	char s[80];
	addrs_lookup(f->d, "127.0.0.1", 25, &r4);
	addrs_lookup(f->d, "::1", 587, &r6);
	assert_int_equal(r4.calls + r6.calls, 0); /* never inside the lookup */
	assert_true(run_until(f->base, &r6.calls, 1000));
	assert_true(run_until(f->base, &r4.calls, 1000));
	assert_false(r4.reentrant || r6.reentrant);
	assert_int_equal(r4.st, DNS_OK);
	assert_int_equal(r4.n, 1);
	assert_string_equal(addr_str(&r4.addrs[0], s, sizeof(s)), "127.0.0.1 25");
	assert_int_equal(r6.st, DNS_OK);
	assert_int_equal(r6.n, 1);
	assert_string_equal(addr_str(&r6.addrs[0], s, sizeof(s)), "::1 587");
}

/* A name of exactly len characters: labels of 'a' (at most 50), then ".test". */
static void make_name(char *out, size_t len)
{
	size_t body = len - strlen(".test"), i = 0;
	memset(out, 'a', body);
	for (i = 50; i + 1 < body; i += 51)
		out[i] = '.';
	memcpy(out + body, ".test", strlen(".test") + 1);
}

static void test_bad_names(void **state)
{
	struct fixture *f = *state;
	char long_name[300], long_label[80], ok_name[300];
	make_name(long_name, 254);
	memset(long_label, 'b', 64);
	memcpy(long_label + 64, ".test", strlen(".test") + 1);
	const char *bad[] = {"", ".", "a..test", ".test", "test..", long_name, long_label};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct result rm = {0}, ra = {0};
		mx_lookup(f->d, bad[i], &rm);
		addrs_lookup(f->d, bad[i], 25, &ra);
		assert_int_equal(rm.calls + ra.calls, 0);
		assert_true(run_until(f->base, &rm.calls, 1000));
		assert_true(run_until(f->base, &ra.calls, 1000));
		assert_int_equal(rm.st, DNS_BADNAME);
		assert_int_equal(ra.st, DNS_BADNAME);
		assert_false(rm.reentrant || ra.reentrant);
	}
	/*
	 * The 64-character label is c-ares' EBADNAME, raised inside ares_query
	 * and still delivered from the loop. 253 characters plus the final dot
	 * is still a name (and does not exist).
	 */
	struct result r = {0};
	make_name(ok_name, 253);
	ok_name[253] = '.';
	ok_name[254] = '\0';
	assert_int_equal(mx_status(f, ok_name, &r), DNS_NXDOMAIN);
}

/* ---- temporary failures ---- */

static void test_refused_is_tempfail(void **state)
{
	struct result rm = {0}, ra = {0};
	assert_int_equal(mx_status(*state, "refused.test", &rm), DNS_TEMPFAIL);
	assert_int_equal(addrs_status(*state, "x.refused.test", 25, &ra), DNS_TEMPFAIL);
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* unbound drops queries for deny.test: c-ares times out (2 tries). */
static void test_timeout_is_tempfail(void **state)
{
	struct fixture *f = *state;
	struct dns *d;
	struct result r = {0};
	assert_int_equal(dns_open(f->base, srv.addr, 100, &d), 0);
	int64_t t0 = now_ms();
	mx_lookup(d, "deny.test", &r);
	assert_true(run_until(f->base, &r.calls, 3000));
	int64_t took = now_ms() - t0;
	assert_int_equal(r.st, DNS_TEMPFAIL);
	assert_true(took >= 250 && took < 1500); /* 100 ms, then 200 ms */
	dns_free(d);
	assert_int_equal(r.calls, 1);
}

static void test_no_server_is_tempfail(void **state)
{
	struct fixture *f = *state;
	char addr[32];
	struct dns *d;
	struct result rm = {0}, ra = {0};
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", unbound_free_port());
	assert_int_equal(dns_open(f->base, addr, 200, &d), 0);
	mx_lookup(d, "mx3.test", &rm);
	addrs_lookup(d, "dual.test", 25, &ra);
	assert_true(run_until(f->base, &rm.calls, 3000));
	assert_true(run_until(f->base, &ra.calls, 3000));
	assert_int_equal(rm.st, DNS_TEMPFAIL);
	assert_int_equal(ra.st, DNS_TEMPFAIL);
	dns_free(d);
}

/* ---- TLSA ---- */

/* The records as the zone has them; unbound serving local data validates nothing: no AD. */
static void test_tlsa_lookup(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	in_lookup = true;
	dns_lookup_tlsa(f->d, "_25._tcp.tlsa.test", on_tlsa, &r);
	in_lookup = false;
	assert_true(run_until(f->base, &r.calls, 5000));
	assert_false(r.reentrant);
	assert_int_equal(r.st, DNS_OK);
	assert_false(r.secure);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.tlsa[0].usage, 3);
	assert_int_equal(r.tlsa[0].selector, 1);
	assert_int_equal(r.tlsa[0].mtype, 1);
	assert_int_equal(r.tlsa[0].len, 32);
	assert_int_equal(r.tlsa_data[0][1], 0x11);
	assert_int_equal(r.tlsa_data[0][31], 0xff);

	struct result nd = {0}, nx = {0}, bad = {0}, deny = {0};
	dns_lookup_tlsa(f->d, "tlsa.test", on_tlsa, &nd);
	dns_lookup_tlsa(f->d, "_25._tcp.none.test", on_tlsa, &nx);
	dns_lookup_tlsa(f->d, "_25..tlsa.test", on_tlsa, &bad);
	dns_lookup_tlsa(f->d, "_25._tcp.refused.test", on_tlsa, &deny);
	assert_true(run_until(f->base, &deny.calls, 5000));
	assert_true(run_until(f->base, &bad.calls, 5000));
	assert_true(run_until(f->base, &nx.calls, 5000));
	assert_true(run_until(f->base, &nd.calls, 5000));
	assert_int_equal(nd.st, DNS_NODATA);
	assert_int_equal(nx.st, DNS_NXDOMAIN);
	assert_int_equal(bad.st, DNS_BADNAME);
	assert_int_equal(deny.st, DNS_TEMPFAIL);
	assert_int_equal(nd.n + nx.n + bad.n + deny.n, 0);
}

/* The MX query asks for AD too; a non-validating server leaves it clear. */
static void test_mx_not_secure(void **state)
{
	struct fixture *f = *state;
	struct result r = {.secure = true};
	assert_int_equal(mx_status(f, "mx3.test", &r), DNS_OK);
	assert_false(r.secure);
}

/* ---- cancellation ---- */

/* dns_free cancels TLSA and TXT lookups through their own callbacks. */
static void test_free_cancels_tlsa_and_txt(void **state)
{
	struct fixture *f = *state;
	struct result rt = {0}, rx = {0}, rtb = {0};
	dns_lookup_tlsa(f->d, "_25._tcp.deny.test", on_tlsa, &rt);
	dns_lookup_txt(f->d, "deny.test", on_txt, &rx);
	int never = 0;
	run_until(f->base, &never, 50); /* the queries are on the wire */
	assert_int_equal(rt.calls + rx.calls, 0);
	dns_lookup_tlsa(f->d, "bad..name", on_tlsa, &rtb); /* deferred */
	dns_free(f->d);
	f->d = NULL;
	run_until(f->base, &never, 300);
	struct result *all[] = {&rt, &rx, &rtb};
	for (size_t i = 0; i < ARRAY_LEN(all); i++) {
		assert_int_equal(all[i]->calls, 1);
		assert_int_equal(all[i]->st, DNS_CANCELLED);
		assert_int_equal(all[i]->n, 0);
	}
}

static void test_free_cancels_in_flight(void **state)
{
	struct fixture *f = *state;
	struct result rm = {0}, ra = {0}, rl = {0}, rb = {0};
	mx_lookup(f->d, "deny.test", &rm);
	addrs_lookup(f->d, "deny.test", 25, &ra);
	int never = 0;
	run_until(f->base, &never, 50); /* the queries are on the wire */
	assert_int_equal(rm.calls + ra.calls, 0);
	addrs_lookup(f->d, "::1", 25, &rl);     /* deferred literal */
	mx_lookup(f->d, "bad..name", &rb);      /* deferred bad name */
	dns_free(f->d);
	f->d = NULL;
	struct result *all[] = {&rm, &ra, &rl, &rb};
	run_until(f->base, &never, 300); /* nothing may fire after dns_free */
	for (size_t i = 0; i < ARRAY_LEN(all); i++) {
		assert_int_equal(all[i]->calls, 1);
		assert_int_equal(all[i]->st, DNS_CANCELLED);
		assert_int_equal(all[i]->n, 0);
	}
}

/* dns_free from a callback c-ares is running: the rest are cancelled. */
static void test_free_inside_callback(void **state)
{
	struct fixture *f = *state;
	struct result ok = {.free_me = f->d}, slow = {0};
	mx_lookup(f->d, "deny.test", &slow);
	mx_lookup(f->d, "mx3.test", &ok);
	assert_true(run_until(f->base, &ok.calls, 3000));
	f->d = NULL;
	assert_int_equal(ok.st, DNS_OK);
	assert_int_equal(slow.calls, 1);
	assert_int_equal(slow.st, DNS_CANCELLED);
	int never = 0;
	run_until(f->base, &never, 300);
	assert_int_equal(ok.calls, 1);
	assert_int_equal(slow.calls, 1);
}

/* dns_free from a deferred (literal) callback. */
static void test_free_inside_deferred_callback(void **state)
{
	struct fixture *f = *state;
	struct result lit = {.free_me = f->d}, other = {0};
	addrs_lookup(f->d, "127.0.0.1", 25, &lit);
	addrs_lookup(f->d, "deny.test", 25, &other); /* never answered */
	assert_true(run_until(f->base, &lit.calls, 1000));
	f->d = NULL;
	assert_int_equal(other.calls, 1);
	assert_int_equal(other.st, DNS_CANCELLED);
	int never = 0;
	run_until(f->base, &never, 200);
	assert_int_equal(lit.calls + other.calls, 2);
}

struct chain {
	struct dns *d;
	struct result mx, addrs;
};

static void on_chain_mx(void *arg, enum dns_status st, bool secure, const struct dns_mx *mx, size_t n)
{
	(void)secure;
	struct chain *c = arg;
	c->mx.calls++;
	c->mx.st = st;
	if (st == DNS_OK && n > 0)
		addrs_lookup(c->d, mx[0].host, 25, &c->addrs);
}

/* A lookup started from a callback (the MX -> address chain of smtp_out). */
static void test_lookup_from_callback(void **state)
{
	struct fixture *f = *state;
	struct chain c = {.d = f->d};
	in_lookup = true;
	dns_lookup_mx(f->d, "mx3.test", on_chain_mx, &c);
	in_lookup = false;
	assert_true(run_until(f->base, &c.addrs.calls, 3000));
	assert_int_equal(c.mx.st, DNS_OK);
	assert_int_equal(c.addrs.st, DNS_OK);
	assert_int_equal(c.addrs.n, 1);
	assert_false(c.addrs.reentrant);
}

/* ---- open ---- */

static void test_open_resolver_forms(void **state)
{
	struct fixture *f = *state;
	const char *good[] = {"127.0.0.1", "127.0.0.1:53", "::1", "[::1]:5353", "[::1]"};
	const char *bad[] = {"", "bad", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:99999",
			     "1.2.3.4,5.6.7.8", "[::1", "[127.0.0.1]:53", "::1:x", "[::1]:"};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		struct dns *d = NULL;
		assert_int_equal(dns_open(f->base, good[i], 0, &d), 0);
		dns_free(d);
	}
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct dns *d = NULL;
		assert_int_equal(dns_open(f->base, bad[i], 0, &d), -EINVAL);
		assert_null(d);
	}
	struct dns *d = NULL;
	assert_int_equal(dns_open(f->base, NULL, 0, &d), 0); /* /etc/resolv.conf */
	dns_free(d);
	dns_free(NULL);
}

/* DANE rests on the AD bit, which only a resolver on this host can vouch for. */
static void test_dnssec_trusted_only_on_loopback(void **state)
{
	struct fixture *f = *state;
	const struct {
		const char *resolver;
		bool trusted;
	} cases[] = {{"127.0.0.1", true}, {"127.0.0.53:5353", true}, {"[::1]:53", true},
		     {"192.0.2.1", false}, {"[2001:db8::1]:53", false}, {"10.0.0.1:53", false}};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct dns *d = NULL;
		assert_int_equal(dns_open(f->base, cases[i].resolver, 0, &d), 0);
		assert_int_equal(dns_trusts_dnssec(d), cases[i].trusted);
		dns_free(d);
	}
}

static void test_status_str(void **state)
{
	(void)state;
	assert_string_equal(dns_status_str(DNS_OK), "ok");
	assert_string_equal(dns_status_str(DNS_NXDOMAIN), "nxdomain");
	assert_string_equal(dns_status_str(DNS_TEMPFAIL), "tempfail");
	assert_string_equal(dns_status_str(DNS_CANCELLED), "cancelled");
	assert_string_equal(dns_status_str((enum dns_status)99), "unknown");
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_mx_sorted_lowercase),
		T(test_mx_null),
		T(test_mx_nodata_and_nxdomain),
		T(test_addrs_aaaa_first),
		T(test_addrs_one_family),
		T(test_addrs_nodata_and_nxdomain),
		T(test_addrs_truncated_uses_tcp),
		T(test_ip_literals),
		T(test_bad_names),
		T(test_refused_is_tempfail),
		T(test_timeout_is_tempfail),
		T(test_no_server_is_tempfail),
		T(test_tlsa_lookup),
		T(test_mx_not_secure),
		T(test_free_cancels_in_flight),
		T(test_free_cancels_tlsa_and_txt),
		T(test_free_inside_callback),
		T(test_free_inside_deferred_callback),
		T(test_lookup_from_callback),
		T(test_open_resolver_forms),
		T(test_dnssec_trusted_only_on_loopback),
		T(test_status_str),
		T(test_family_lookups),
		T(test_ptr_lookups),
		T(test_reverse_name),
		T(test_txt_nul_reads_as_del),
		T(test_free_cancels_ptr_and_family),
	};
#undef T
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
