/*
 * Unit tests for the pure parts of outbound DANE: dns_parse_tlsa (the TLSA
 * records and the AD bit of a DNS answer, src/base/dns_wire.c) on
 * hand-built wire messages, and dane_usable (RFC 7672 3.1: which records
 * DANE may use, src/delivery/dane.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/dns.h"
#include "delivery/dane.h"

/* ---- a tiny message builder ---- */

struct msg {
	unsigned char b[8192];
	size_t n;
};

static void put(struct msg *m, const void *p, size_t n)
{
	assert_true(m->n + n <= sizeof(m->b));
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void put8(struct msg *m, unsigned v)
{
	unsigned char c = (unsigned char)v;
	put(m, &c, 1);
}

static void put16(struct msg *m, unsigned v)
{
	put8(m, v >> 8 & 0xff);
	put8(m, v & 0xff);
}

/* "a.b.c" as labels, uncompressed. */
static void put_name(struct msg *m, const char *name)
{
	while (*name) {
		const char *dot = strchr(name, '.');
		size_t len = dot ? (size_t)(dot - name) : strlen(name);
		put8(m, (unsigned)len);
		put(m, name, len);
		name += len + (dot ? 1 : 0);
	}
	put8(m, 0);
}

/* Header: id 1, QR RD RA, AD as asked, rcode 0. */
static void header(struct msg *m, bool ad, unsigned qd, unsigned an)
{
	m->n = 0;
	put16(m, 1);
	put8(m, 0x81);
	put8(m, 0x80 | (ad ? 0x20 : 0));
	put16(m, qd);
	put16(m, an);
	put16(m, 0);
	put16(m, 0);
}

static void question(struct msg *m, const char *name)
{
	put_name(m, name);
	put16(m, 52);
	put16(m, 1);
}

/* An RR whose owner is a pointer to the question name (offset 12). */
static void rr(struct msg *m, unsigned type, const unsigned char *rdata, size_t len)
{
	put16(m, 0xc00c);
	put16(m, type);
	put16(m, 1);
	put16(m, 0);
	put16(m, 60);
	put16(m, (unsigned)len);
	put(m, rdata, len);
}

static void tlsa(struct msg *m, unsigned usage, unsigned sel, unsigned mt, size_t dlen, unsigned char fill)
{
	unsigned char rd[3 + 80];
	assert_true(dlen <= 80);
	rd[0] = (unsigned char)usage;
	rd[1] = (unsigned char)sel;
	rd[2] = (unsigned char)mt;
	memset(rd + 3, fill, dlen);
	rr(m, 52, rd, 3 + dlen);
}

static int parse(const struct msg *m, bool *secure, struct dns_tlsa **out, size_t *n)
{
	return dns_parse_tlsa(m->b, m->n, secure, out, n);
}

/* ---- dns_parse_tlsa ---- */

static void test_parse_valid_with_ad(void **state)
{
	(void)state;
	struct msg m;
	header(&m, true, 1, 2);
	question(&m, "_25._tcp.mx.example");
	tlsa(&m, 3, 1, 1, 32, 0xaa);
	tlsa(&m, 2, 0, 2, 64, 0xbb);
	bool secure = false;
	struct dns_tlsa *r;
	size_t n;
	assert_int_equal(parse(&m, &secure, &r, &n), 0);
	assert_true(secure);
	assert_int_equal(n, 2);
	assert_int_equal(r[0].usage, 3);
	assert_int_equal(r[0].selector, 1);
	assert_int_equal(r[0].mtype, 1);
	assert_int_equal(r[0].len, 32);
	assert_int_equal(r[0].data[0], 0xaa);
	assert_int_equal(r[0].data[31], 0xaa);
	assert_int_equal(r[1].usage, 2);
	assert_int_equal(r[1].mtype, 2);
	assert_int_equal(r[1].len, 64);
	assert_int_equal(r[1].data[63], 0xbb);
	dns_tlsa_free(r, n);

	header(&m, false, 1, 1); /* the same without AD */
	question(&m, "_25._tcp.mx.example");
	tlsa(&m, 3, 1, 1, 32, 0xaa);
	assert_int_equal(parse(&m, &secure, &r, &n), 0);
	assert_false(secure);
	assert_int_equal(n, 1);
	dns_tlsa_free(r, n);
}

/* A CNAME on the way (compressed names everywhere), an RRSIG, an A: only the TLSA is kept. */
static void test_parse_skips_other_types(void **state)
{
	(void)state;
	struct msg m;
	header(&m, true, 1, 4);
	question(&m, "_25._tcp.mx.example");
	size_t target = m.n + 12; /* the CNAME's rdata starts after its fixed part */
	unsigned char cname[] = {3, 't', 'l', 's', 0xc0, 12 + 9}; /* "tls" + pointer into the question ("mx.example") */
	rr(&m, 5, cname, sizeof(cname));
	/* The TLSA owned by the CNAME target: a pointer to it. */
	put16(&m, 0xc000 | (unsigned)target);
	put16(&m, 52);
	put16(&m, 1);
	put16(&m, 0);
	put16(&m, 60);
	unsigned char rd[3 + 32] = {3, 1, 1};
	memset(rd + 3, 0x11, 32);
	put16(&m, sizeof(rd));
	put(&m, rd, sizeof(rd));
	unsigned char sig[40] = {0, 52};
	rr(&m, 46, sig, sizeof(sig));
	unsigned char a[4] = {192, 0, 2, 1};
	rr(&m, 1, a, sizeof(a));
	bool secure;
	struct dns_tlsa *r;
	size_t n;
	assert_int_equal(parse(&m, &secure, &r, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(r[0].data[0], 0x11);
	dns_tlsa_free(r, n);
}

static void test_parse_no_answer(void **state)
{
	(void)state;
	struct msg m;
	header(&m, true, 1, 0);
	question(&m, "_25._tcp.mx.example");
	bool secure;
	struct dns_tlsa *r;
	size_t n = 99;
	assert_int_equal(parse(&m, &secure, &r, &n), 0);
	assert_int_equal(n, 0);
	assert_true(secure);
	dns_tlsa_free(r, n);
}

/* Every cut of a valid message is refused, never read past. */
static void test_parse_truncated(void **state)
{
	(void)state;
	struct msg m;
	header(&m, true, 1, 1);
	question(&m, "_25._tcp.mx.example");
	tlsa(&m, 3, 1, 1, 32, 0xaa);
	for (size_t cut = 0; cut < m.n; cut++) {
		bool secure = true;
		struct dns_tlsa *r = (void *)1;
		size_t n = 99;
		assert_int_equal(dns_parse_tlsa(m.b, cut, &secure, &r, &n), -EINVAL);
		assert_null(r);
		assert_int_equal(n, 0);
		assert_false(secure);
	}
}

static void test_parse_rdlength_past_end(void **state)
{
	(void)state;
	struct msg m;
	header(&m, true, 1, 1);
	question(&m, "_25._tcp.mx.example");
	tlsa(&m, 3, 1, 1, 32, 0xaa);
	m.b[m.n - 35 - 1] = 36; /* rdlength 35 -> 36: one byte more than the message has */
	bool secure;
	struct dns_tlsa *r;
	size_t n;
	assert_int_equal(parse(&m, &secure, &r, &n), -EINVAL);
}

static void test_parse_short_rdata(void **state)
{
	(void)state;
	struct msg m;
	header(&m, true, 1, 2);
	question(&m, "_25._tcp.mx.example");
	unsigned char three[3] = {3, 1, 1}; /* no association data: skipped */
	rr(&m, 52, three, 3);
	unsigned char two[2] = {3, 1}; /* shorter than the fixed part: malformed */
	rr(&m, 52, two, 2);
	bool secure;
	struct dns_tlsa *r;
	size_t n;
	assert_int_equal(parse(&m, &secure, &r, &n), -EINVAL);

	header(&m, true, 1, 1);
	question(&m, "_25._tcp.mx.example");
	rr(&m, 52, three, 3);
	assert_int_equal(parse(&m, &secure, &r, &n), 0);
	assert_int_equal(n, 0);
	dns_tlsa_free(r, n);
}

/* Counts that promise more records than there are. */
static void test_parse_counts_lie(void **state)
{
	(void)state;
	struct msg m;
	header(&m, true, 1, 3);
	question(&m, "_25._tcp.mx.example");
	tlsa(&m, 3, 1, 1, 32, 0xaa);
	bool secure;
	struct dns_tlsa *r;
	size_t n;
	assert_int_equal(parse(&m, &secure, &r, &n), -EINVAL);
	header(&m, true, 2, 0);
	question(&m, "_25._tcp.mx.example");
	assert_int_equal(parse(&m, &secure, &r, &n), -EINVAL);
}

static void test_parse_bad_names(void **state)
{
	(void)state;
	struct msg m;
	bool secure;
	struct dns_tlsa *r;
	size_t n;
	/* A label type 0x40 (reserved). */
	header(&m, true, 1, 0);
	put8(&m, 0x41);
	put(&m, "a", 1);
	put8(&m, 0);
	put16(&m, 52);
	put16(&m, 1);
	assert_int_equal(parse(&m, &secure, &r, &n), -EINVAL);
	/* More labels than a name can have (each 1 byte long: 200 labels). */
	header(&m, true, 1, 0);
	for (int i = 0; i < 200; i++) {
		put8(&m, 1);
		put8(&m, 'a');
	}
	put8(&m, 0);
	put16(&m, 52);
	put16(&m, 1);
	assert_int_equal(parse(&m, &secure, &r, &n), -EINVAL);
	/* A pointer cut in half at the end. */
	header(&m, true, 1, 0);
	put8(&m, 0xc0);
	assert_int_equal(parse(&m, &secure, &r, &n), -EINVAL);
	/* A pointer to itself is never followed (skipping never jumps): fine. */
	header(&m, true, 1, 0);
	put16(&m, 0xc00c);
	put16(&m, 52);
	put16(&m, 1);
	assert_int_equal(parse(&m, &secure, &r, &n), 0);
	dns_tlsa_free(r, n);
}

static void test_parse_keeps_at_most_max(void **state)
{
	(void)state;
	struct msg m;
	header(&m, true, 1, DNS_TLSA_MAX + 5);
	question(&m, "_25._tcp.mx.example");
	for (int i = 0; i < DNS_TLSA_MAX + 5; i++)
		tlsa(&m, 3, 1, 1, 32, (unsigned char)i);
	bool secure;
	struct dns_tlsa *r;
	size_t n;
	assert_int_equal(parse(&m, &secure, &r, &n), 0);
	assert_int_equal(n, DNS_TLSA_MAX);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(r[i].data[0], i);
	dns_tlsa_free(r, n);
	/* A malformed record after the cap still makes the message malformed. */
	header(&m, true, 1, DNS_TLSA_MAX + 1);
	question(&m, "_25._tcp.mx.example");
	for (int i = 0; i < DNS_TLSA_MAX; i++)
		tlsa(&m, 3, 1, 1, 32, 0);
	put16(&m, 0xc00c);
	put16(&m, 52);
	put16(&m, 1);
	put16(&m, 0);
	put16(&m, 60);
	put16(&m, 100);
	assert_int_equal(parse(&m, &secure, &r, &n), -EINVAL);
}

/* ---- dane_usable ---- */

static void test_usable_filter(void **state)
{
	(void)state;
	unsigned char d[80];
	memset(d, 0x5a, sizeof(d));
	const struct dns_tlsa in[] = {
		{3, 1, 1, 32, d}, /* DANE-EE SPKI SHA-256: usable */
		{2, 0, 2, 64, d}, /* DANE-TA Cert SHA-512: usable */
		{3, 0, 0, 80, d}, /* full certificate: usable (OpenSSL checks it parses) */
		{0, 0, 1, 32, d}, /* PKIX-TA: not for SMTP (RFC 7672 3.1.3) */
		{1, 1, 1, 32, d}, /* PKIX-EE */
		{3, 2, 1, 32, d}, /* unknown selector */
		{3, 1, 3, 32, d}, /* unknown matching type */
		{3, 1, 1, 31, d}, /* SHA-256 of the wrong length */
		{2, 1, 2, 32, d}, /* SHA-512 of the wrong length */
	};
	struct dane_records *r = dane_usable(in, sizeof(in) / sizeof(in[0]));
	assert_non_null(r);
	assert_int_equal(r->n, 3);
	assert_int_equal(r->r[0].usage, 3);
	assert_int_equal(r->r[1].usage, 2);
	assert_int_equal(r->r[1].mtype, 2);
	assert_int_equal(r->r[2].mtype, 0);
	assert_int_equal(r->r[2].len, 80);
	assert_memory_equal(r->r[0].data, d, 32);
	assert_ptr_not_equal(r->r[0].data, d); /* copied: the DNS answer goes away */
	dane_records_free(r);
	assert_null(dane_usable(in + 3, 6)); /* none usable */
	assert_null(dane_usable(NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_valid_with_ad),
		cmocka_unit_test(test_parse_skips_other_types),
		cmocka_unit_test(test_parse_no_answer),
		cmocka_unit_test(test_parse_truncated),
		cmocka_unit_test(test_parse_rdlength_past_end),
		cmocka_unit_test(test_parse_short_rdata),
		cmocka_unit_test(test_parse_counts_lie),
		cmocka_unit_test(test_parse_bad_names),
		cmocka_unit_test(test_parse_keeps_at_most_max),
		cmocka_unit_test(test_usable_filter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
