/*
 * Unit tests for DKIM: the tag-list parsers (tables of signatures and key
 * records with the result each must give), canonicalisation (the examples
 * of RFC 6376 3.4.5, the empty body, any split giving the same output), and
 * the verifier on the RFC 8463 A.3 message (ed25519 and rsa, relaxed) fed
 * whole and byte by byte, tampered, oversized, unsigned and cancelled. The
 * keys come from a small DNS responder on 127.0.0.1 in the test's own loop,
 * so the real resolver code asks real UDP questions.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/x509.h>

#include "auth/dkim.h"
#include "auth/dkim_canon.h"
#include "auth/dkim_parse.h"
#include "base/dns.h"

/* ---- the parsers ---- */

struct sig_case {
	const char *name, *value;
	int rc;
};

static const struct sig_case sig_cases[] = {
	{ "minimal", "v=1; a=rsa-sha256; d=Example.COM; s=sel; h=From; bh=AAAA; b=AAAA", 0 },
	{ "folded, extra tags, trailing ;", "v=1;\r\n a=ed25519-sha256; d=x.org; s=s1;\r\n\th=from:to;"
	  " bh=AAAA; b=AA\r\n AA; zz=ignored;", 0 },
	{ "rsa-sha1 parses (refused later)", "v=1; a=rsa-sha1; d=x.org; s=s; h=from; bh=AAAA; b=AAAA", 0 },
	{ "i= in a subdomain", "v=1; a=rsa-sha256; d=x.org; s=s; h=from; bh=AAAA; b=AAAA; i=u@a.x.org", 0 },
	{ "i= quoted-printable", "v=1; a=rsa-sha256; d=x.org; s=s; h=from; bh=AAAA; b=AAAA; i=u=40z@x.org", 0 },
	{ "no v=", "a=rsa-sha256; d=x.org; s=s; h=from; bh=AAAA; b=AAAA", -EINVAL },
	{ "v=2", "v=2; a=rsa-sha256; d=x.org; s=s; h=from; bh=AAAA; b=AAAA", -EINVAL },
	{ "unknown a=", "v=1; a=rsa-md5; d=x.org; s=s; h=from; bh=AAAA; b=AAAA", -EINVAL },
	{ "h= without From", "v=1; a=rsa-sha256; d=x.org; s=s; h=to; bh=AAAA; b=AAAA", -EINVAL },
	{ "i= outside d=", "v=1; a=rsa-sha256; d=x.org; s=s; h=from; bh=AAAA; b=AAAA; i=u@evilx.org", -EINVAL },
	{ "duplicate tag", "v=1; a=rsa-sha256; d=x.org; d=y.org; s=s; h=from; bh=AAAA; b=AAAA", -EINVAL },
	{ "bad base64", "v=1; a=rsa-sha256; d=x.org; s=s; h=from; bh=AA*A; b=AAAA", -EINVAL },
	{ "q=dns (draft)", "v=1; a=rsa-sha256; d=x.org; s=s; h=from; bh=AAAA; b=AAAA; q=dns", -EINVAL },
	{ "x= before t=", "v=1; a=rsa-sha256; d=x.org; s=s; h=from; bh=AAAA; b=AAAA; t=10; x=5", -EINVAL },
	{ "bad c=", "v=1; a=rsa-sha256; c=future; d=x.org; s=s; h=from; bh=AAAA; b=AAAA", -EINVAL },
	{ "tag without =", "v=1; a=rsa-sha256; d; s=s; h=from; bh=AAAA; b=AAAA", -EINVAL },
	{ "empty", "", -EINVAL },
};

static void test_parse_sig(void **state)
{
	(void)state;
	for (size_t k = 0; k < ARRAY_LEN(sig_cases); k++) {
		struct dkim_sig s;
		const char *why = NULL;
		int rc = dkim_parse_sig(sig_cases[k].value, strlen(sig_cases[k].value), &s, &why);
		if (rc != sig_cases[k].rc)
			fail_msg("%s: rc %d, why %s", sig_cases[k].name, rc, why ? why : "-");
		assert_true(rc == 0 || why != NULL);
	}
	struct dkim_sig s;
	const char *why;
	const char *v = "v=1; a=rsa-sha256; c=relaxed; d=Example.COM; s=sel; h=From : To:from; bh=AAAA; b=QUJD\r\n REVG;"
			" l=12; x=99";
	assert_int_equal(dkim_parse_sig(v, strlen(v), &s, &why), 0);
	assert_string_equal(s.d, "example.com");
	assert_string_equal(s.i, "@example.com");
	assert_string_equal(s.b_prefix, "QUJDREVG");
	assert_int_equal(s.blen, 6);
	assert_memory_equal(s.b, "ABCDEF", 6);
	assert_int_equal(s.hcanon, DKIM_CANON_RELAXED);
	assert_int_equal(s.bcanon, DKIM_CANON_SIMPLE); /* c=relaxed alone is relaxed/simple */
	assert_int_equal(s.nh, 3);
	assert_string_equal(s.h[1], "To");
	assert_int_equal(s.l, 12);
	assert_int_equal(s.x, 99);
	assert_int_equal(s.t, -1);
	size_t b0, b1;
	assert_int_equal(dkim_find_b_value(v, strlen(v), &b0, &b1), 0);
	assert_int_equal(b1 - b0, strlen("QUJD\r\n REVG"));
}

struct key_case {
	const char *name, *value;
	int rc;
	bool revoked, strict;
	enum dkim_key_type type;
};

static const struct key_case key_cases[] = {
	{ "rsa, no k=", "v=DKIM1; p=QUJD", 0, false, false, DKIM_KEY_RSA },
	{ "ed25519", "v=DKIM1; k=ed25519; p=QUJD", 0, false, false, DKIM_KEY_ED25519 },
	{ "no v=, extra tags", "g=*; n=note; k=rsa; s=email:*; h=sha1:sha256; p=QUJD", 0, false, false, DKIM_KEY_RSA },
	{ "revoked", "v=DKIM1; p=", 0, true, false, DKIM_KEY_RSA },
	{ "t=s", "v=DKIM1; t=y:s; p=QUJD", 0, false, true, DKIM_KEY_RSA },
	{ "v= not first", "k=rsa; v=DKIM1; p=QUJD", -EINVAL, false, false, 0 },
	{ "v=DKIM1: (dkimpy badversion)", "v=DKIM1:; p=QUJD", -EINVAL, false, false, 0 },
	{ "v=DKIM3", "v=DKIM3; p=QUJD", -EINVAL, false, false, 0 },
	{ "k=ed25519-sha256 (dkimpy badk)", "k=ed25519-sha256; p=QUJD", -EINVAL, false, false, 0 },
	{ "h=sha1 only", "h=sha1; p=QUJD", -EINVAL, false, false, 0 },
	{ "s=chat", "s=chat; p=QUJD", -EINVAL, false, false, 0 },
	{ "no p=", "v=DKIM1; k=rsa", -EINVAL, false, false, 0 },
	{ "tag without value part", "k=rsa; t; p=QUJD", -EINVAL, false, false, 0 },
	{ "empty record", "", -EINVAL, false, false, 0 },
};

static void test_parse_key(void **state)
{
	(void)state;
	for (size_t k = 0; k < ARRAY_LEN(key_cases); k++) {
		const struct key_case *c = &key_cases[k];
		struct dkim_key key;
		const char *why = NULL;
		int rc = dkim_parse_key(c->value, strlen(c->value), &key, &why);
		if (rc != c->rc)
			fail_msg("%s: rc %d, why %s", c->name, rc, why ? why : "-");
		if (rc == 0 && (key.revoked != c->revoked || key.strict != c->strict || key.type != c->type))
			fail_msg("%s: revoked %d strict %d type %d", c->name, key.revoked, key.strict, key.type);
	}
}

/* ---- canonicalisation ---- */

static void collect(void *arg, const unsigned char *p, size_t n)
{
	buf_append(arg, p, n);
}

/* The body canonicalised, fed in pieces of `step` bytes (0: all at once). */
static const char *body(enum dkim_canon c, const char *in, size_t step, struct buf *out)
{
	struct dkim_body b;
	size_t n = strlen(in);
	buf_reset(out);
	dkim_body_init(&b, c, collect, out);
	for (size_t off = 0; off < n; off += step ? step : n)
		dkim_body_feed(&b, (const unsigned char *)in + off, step && step < n - off ? step : n - off);
	dkim_body_end(&b);
	return buf_cstr(out);
}

static void test_canon_rfc6376_example(void **state)
{
	(void)state;
	struct buf out = { 0 };
	const char *a = "A: X\r\n", *b = "B : Y\t\r\n\tZ  \r\n";
	dkim_canon_header(DKIM_CANON_RELAXED, a, strlen(a), true, &out);
	dkim_canon_header(DKIM_CANON_RELAXED, b, strlen(b), true, &out);
	assert_string_equal(buf_cstr(&out), "a:X\r\nb:Y Z\r\n");
	buf_reset(&out);
	dkim_canon_header(DKIM_CANON_SIMPLE, a, strlen(a), true, &out);
	dkim_canon_header(DKIM_CANON_SIMPLE, b, strlen(b), false, &out);
	assert_string_equal(buf_cstr(&out), "A: X\r\nB : Y\t\r\n\tZ  ");
	const char *in = " C \r\nD \t E\r\n\r\n\r\n";
	assert_string_equal(body(DKIM_CANON_RELAXED, in, 0, &out), " C\r\nD E\r\n");
	assert_string_equal(body(DKIM_CANON_SIMPLE, in, 0, &out), " C \r\nD \t E\r\n");
	buf_free(&out);
}

static void test_canon_body_edges(void **state)
{
	(void)state;
	struct buf out = { 0 };
	assert_string_equal(body(DKIM_CANON_SIMPLE, "", 0, &out), "\r\n");
	assert_string_equal(body(DKIM_CANON_RELAXED, "", 0, &out), "");
	assert_string_equal(body(DKIM_CANON_SIMPLE, "\r\n\r\n", 0, &out), "\r\n");
	assert_string_equal(body(DKIM_CANON_RELAXED, " \t\r\n \r\n", 0, &out), "");
	assert_string_equal(body(DKIM_CANON_SIMPLE, "x", 0, &out), "x\r\n");
	assert_string_equal(body(DKIM_CANON_RELAXED, "x \t", 0, &out), "x\r\n");
	assert_string_equal(body(DKIM_CANON_SIMPLE, "a\r\n\r\nb\r\n\r\n", 0, &out), "a\r\n\r\nb\r\n");
	assert_string_equal(body(DKIM_CANON_SIMPLE, "a\rb\r", 0, &out), "a\rb\r\r\n");
	assert_string_equal(body(DKIM_CANON_RELAXED, "a \r b", 0, &out), "a \r b\r\n");
	buf_free(&out);
}

static void test_canon_body_any_split(void **state)
{
	(void)state;
	static const char *const bodies[] = { " C \r\nD \t E\r\n\r\n\r\n", "\r\n\r\nx\r\r\n\r\n \t \r\ny",
					      "a\tb  c \r\n\r\n\t\r\n", "\r", "\r\r\n\n" };
	struct buf whole = { 0 }, split = { 0 };
	for (size_t k = 0; k < ARRAY_LEN(bodies); k++)
		for (int c = DKIM_CANON_SIMPLE; c <= DKIM_CANON_RELAXED; c++)
			for (size_t step = 1; step <= 4; step++)
				assert_string_equal(body((enum dkim_canon)c, bodies[k], step, &split),
						    body((enum dkim_canon)c, bodies[k], 0, &whole));
	buf_free(&whole);
	buf_free(&split);
}

/* ---- the verifier, with keys from a responder on loopback ---- */

static const char *const keys[][2] = {
	{ "brisbane._domainkey.football.example.com", "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=" },
	{ "test._domainkey.football.example.com",
	  "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY"
	  "/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2k"
	  "ryOTIKT+l/K4w3QIDAQAB" },
};

/* RFC 8463 A.3 (as in stalwartlabs/mail-auth resources/dkim/001.txt), LF line ends. */
static const char rfc8463_msg[] =
	"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\n"
	" d=football.example.com; i=@football.example.com;\n"
	" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\n"
	" subject : date : message-id : from : subject : date;\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\n"
	" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\n"
	" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\n"
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\n"
	" d=football.example.com; i=@football.example.com;\n"
	" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\n"
	" date : message-id : from : subject : date;\n"
	" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\n"
	" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\n"
	" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\n"
	" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\n"
	"From: Joe SixPack <joe@football.example.com>\n"
	"To: Suzie Q <suzie@shopping.example.net>\n"
	"Subject: Is dinner ready?\n"
	"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\n"
	"Message-ID: <20030712040037.46341.5F8J@football.example.com>\n"
	"\n"
	"Hi.\n"
	"\n"
	"We lost the game.  Are you hungry yet?\n"
	"\n"
	"Joe.\n";

#define NOW 1667843664

struct responder {
	struct event_base *base;
	int fd, tfd; /* UDP, TCP */
	struct event *ev, *tev;
	char addr[32];
	int queries;
	bool silent; /* counts the queries, answers none */
};

/*
 * RSA keys made here, n = 2^nbits - 1 and e = 2^ebits - 1: no key pair, but
 * the verifier's limits on n and e come before any verify, and a key within
 * them gives "signature did not verify".
 */
static const struct made_key {
	const char *name;
	int nbits, ebits;
} made_keys[] = {
	{ "rsa4096._domainkey.football.example.com", 4096, 17 },
	{ "rsa8192._domainkey.football.example.com", 8192, 17 },
	{ "e32._domainkey.football.example.com", 3072, 32 },
	{ "e33._domainkey.football.example.com", 3072, 33 },
	{ "e3071._domainkey.football.example.com", 3072, 3071 },
};

static BIGNUM *all_ones(int bits)
{
	BIGNUM *b = BN_new();
	assert_true(b && BN_set_bit(b, bits) == 1 && BN_sub_word(b, 1) == 1);
	return b;
}

/* "v=DKIM1; p=" and the SubjectPublicKeyInfo of mk, in out. */
static const char *made_record(const struct made_key *mk, char *out, size_t cap)
{
	BIGNUM *n = all_ones(mk->nbits), *e = all_ones(mk->ebits);
	OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
	assert_true(b && OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, n) == 1 &&
		    OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, e) == 1);
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(b);
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *k = NULL;
	assert_true(params && c && EVP_PKEY_fromdata_init(c) == 1 &&
		    EVP_PKEY_fromdata(c, &k, EVP_PKEY_PUBLIC_KEY, params) == 1);
	unsigned char *der = NULL;
	int dl = i2d_PUBKEY(k, &der);
	assert_true(dl > 0 && 11 + (size_t)(dl + 2) / 3 * 4 < cap);
	memcpy(out, "v=DKIM1; p=", 11);
	EVP_EncodeBlock((unsigned char *)out + 11, der, dl);
	OPENSSL_free(der);
	EVP_PKEY_free(k);
	EVP_PKEY_CTX_free(c);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(b);
	BN_free(n);
	BN_free(e);
	return out;
}

static const char *key_for(const char *name)
{
	static char made[2048];
	for (size_t k = 0; k < ARRAY_LEN(keys); k++)
		if (strcasecmp(name, keys[k][0]) == 0)
			return keys[k][1];
	for (size_t k = 0; k < ARRAY_LEN(made_keys); k++)
		if (strcasecmp(name, made_keys[k].name) == 0)
			return made_record(&made_keys[k], made, sizeof(made));
	return NULL;
}

/* The question's name, dotted; the offset just past QTYPE and QCLASS, or 0. */
static size_t question(const unsigned char *q, size_t n, char *name, size_t cap)
{
	size_t p = 12, nl = 0;
	while (p < n && q[p]) {
		size_t len = q[p];
		if (len > 63 || p + 1 + len > n || nl + len + 2 > cap)
			return 0;
		if (nl)
			name[nl++] = '.';
		memcpy(name + nl, q + p + 1, len);
		nl += len;
		p += len + 1;
	}
	name[nl] = '\0';
	return p + 5 <= n ? p + 5 : 0;
}

/*
 * The answer to query q in r: one TXT record (character-strings of up to 255
 * octets) or NXDOMAIN; its length, or 0 for none. *end: where its question ends.
 */
static size_t answer(struct responder *rs, const unsigned char *q, size_t got, unsigned char *r, size_t cap, size_t *end)
{
	char name[256];
	*end = got >= 12 ? question(q, got, name, sizeof(name)) : 0;
	if (!*end)
		return 0;
	rs->queries++;
	if (rs->silent)
		return 0;
	memcpy(r, q, *end);
	r[2] = (unsigned char)(0x84 | (q[2] & 1)); /* QR, AA, RD as asked */
	r[3] = 0x80;
	memset(r + 4, 0, 8);
	r[5] = 1;
	const char *txt = key_for(name);
	size_t len = *end;
	if (!txt) {
		r[3] |= 3; /* NXDOMAIN */
		return len;
	}
	size_t tl = strlen(txt), rdlen = tl + (tl + 254) / 255;
	assert_true(len + 12 + rdlen <= cap);
	r[7] = 1;
	const unsigned char rr[] = { 0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60, (unsigned char)(rdlen >> 8), (unsigned char)rdlen };
	memcpy(r + len, rr, sizeof(rr));
	len += sizeof(rr);
	for (size_t off = 0; off < tl; off += 255) {
		size_t piece = tl - off < 255 ? tl - off : 255;
		r[len++] = (unsigned char)piece;
		memcpy(r + len, txt + off, piece);
		len += piece;
	}
	return len;
}

/* UDP: an answer over 512 octets goes truncated (TC), which sends the resolver to TCP. */
static void on_query(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	unsigned char q[512], r[2048];
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	ssize_t got = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
	size_t end, len = got > 0 ? answer(arg, q, (size_t)got, r, sizeof(r), &end) : 0;
	if (len > 512) {
		r[2] |= 2;           /* TC */
		r[6] = r[7] = 0;     /* no answer */
		len = end;
	}
	if (len && sendto(fd, r, len, 0, (struct sockaddr *)&from, fl) < 0)
		fail_msg("responder: sendto: %s", strerror(errno));
}

/* TCP (RFC 1035 4.2.2): one length-prefixed query per connection, answered, then closed. */
struct tcp_conn {
	struct responder *rs;
	struct event *ev;
	struct buf in;
};

static void on_tcp_data(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct tcp_conn *c = arg;
	unsigned char tmp[512], r[2 + 2048];
	ssize_t got = read(fd, tmp, sizeof(tmp));
	if (got > 0)
		buf_append(&c->in, tmp, (size_t)got);
	size_t want = c->in.len >= 2 ? 2 + ((size_t)c->in.data[0] << 8 | c->in.data[1]) : SIZE_MAX;
	if (got > 0 && c->in.len < want)
		return;
	size_t end, len = got > 0 ? answer(c->rs, c->in.data + 2, want - 2, r + 2, sizeof(r) - 2, &end) : 0;
	r[0] = (unsigned char)(len >> 8);
	r[1] = (unsigned char)len;
	if (len && write(fd, r, len + 2) != (ssize_t)(len + 2))
		fail_msg("responder: write: %s", strerror(errno));
	event_free(c->ev);
	close(fd);
	buf_free(&c->in);
	free(c);
}

static void on_tcp_accept(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct responder *rs = arg;
	int cfd = accept(fd, NULL, NULL);
	if (cfd < 0)
		return;
	struct tcp_conn *c = xcalloc(1, sizeof(*c));
	c->rs = rs;
	c->ev = event_new(rs->base, cfd, EV_READ | EV_PERSIST, on_tcp_data, c);
	event_add(c->ev, NULL);
}

/*
 * UDP and TCP on the same loopback port: a free UDP port may be taken for
 * TCP (another test, a TIME_WAIT), so a clash picks another pair (bounded).
 */
static void responder_start(struct event_base *base, struct responder *rs)
{
	struct sockaddr_in sa;
	rs->base = base;
	for (int tries = 0;; tries++) {
		assert_true(tries < 50);
		sa = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		socklen_t sl = sizeof(sa);
		rs->fd = socket(AF_INET, SOCK_DGRAM, 0);
		assert_true(rs->fd >= 0);
		assert_int_equal(bind(rs->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockname(rs->fd, (struct sockaddr *)&sa, &sl), 0);
		rs->tfd = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(rs->tfd >= 0);
		if (bind(rs->tfd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		assert_int_equal(errno, EADDRINUSE);
		close(rs->tfd);
		close(rs->fd);
	}
	assert_int_equal(fmt(rs->addr, sizeof(rs->addr), "127.0.0.1:%u", ntohs(sa.sin_port)), 0);
	rs->ev = event_new(base, rs->fd, EV_READ | EV_PERSIST, on_query, rs);
	event_add(rs->ev, NULL);
	assert_int_equal(listen(rs->tfd, 8), 0);
	rs->tev = event_new(base, rs->tfd, EV_READ | EV_PERSIST, on_tcp_accept, rs);
	event_add(rs->tev, NULL);
}

static void responder_stop(struct responder *rs)
{
	event_free(rs->ev);
	close(rs->fd);
	event_free(rs->tev);
	close(rs->tfd);
}

struct outcome {
	int calls;
	size_t n;
	struct dkim_sig_result r[DKIM_MAX_SIGNATURES];
};

static void on_result(void *arg, const struct dkim_sig_result *r, size_t n)
{
	struct outcome *o = arg;
	o->calls++;
	o->n = n;
	memcpy(o->r, r, n * sizeof(*r));
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

/* msg with CRLF line ends, fed in pieces of step bytes (0: at once); cancel: dkim_free before the loop runs. */
static struct outcome verify(const char *msg, size_t step, bool cancel)
{
	struct event_base *base = event_base_new();
	struct responder rs = { 0 };
	responder_start(base, &rs);
	struct dns *d;
	assert_int_equal(dns_open(base, rs.addr, 1000, &d), 0);
	struct buf m = { 0 };
	for (const char *p = msg; *p; p++)
		buf_append(&m, *p == '\n' ? "\r\n" : p, *p == '\n' ? 2 : 1);
	struct outcome o = { 0 };
	struct dkim_verify *v = dkim_verify_new(base, d, NOW);
	for (size_t off = 0; off < m.len; off += step ? step : m.len)
		dkim_feed(v, m.data + off, step && step < m.len - off ? step : m.len - off);
	dkim_finish(v, on_result, &o);
	assert_int_equal(o.calls, 0); /* never from inside dkim_finish */
	if (cancel)
		dkim_free(v);
	bool expired = false;
	struct timeval tv = { cancel ? 0 : 5, cancel ? 300000 : 0 };
	struct event *t = evtimer_new(base, on_deadline, &expired);
	evtimer_add(t, &tv);
	while (!o.calls && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	if (!cancel)
		dkim_free(v);
	dns_free(d);
	responder_stop(&rs);
	event_base_free(base);
	buf_free(&m);
	return o;
}

static void assert_results(const struct outcome *o, enum dkim_result want)
{
	assert_int_equal(o->calls, 1);
	assert_int_equal(o->n, 2);
	for (size_t k = 0; k < 2; k++) {
		if (o->r[k].result != want)
			fail_msg("signature %zu: %s (%s), want %s", k, dkim_result_str(o->r[k].result),
				 o->r[k].why ? o->r[k].why : "-", dkim_result_str(want));
		assert_string_equal(o->r[k].domain, "football.example.com");
	}
	assert_string_equal(o->r[0].selector, "brisbane");
	assert_string_equal(o->r[0].algorithm, "ed25519-sha256");
	assert_string_equal(o->r[0].b_prefix, "/gCrinpc");
	assert_string_equal(o->r[1].selector, "test");
}

static void test_verify_rfc8463_whole_and_bytewise(void **state)
{
	(void)state;
	struct outcome whole = verify(rfc8463_msg, 0, false);
	assert_results(&whole, DKIM_PASS);
	for (size_t step = 1; step <= 7; step += 3) {
		struct outcome o = verify(rfc8463_msg, step, false);
		assert_results(&o, DKIM_PASS);
	}
}

static char *replaced(const char *s, const char *from, const char *to)
{
	const char *at = strstr(s, from);
	assert_non_null(at);
	struct buf b = { 0 };
	buf_append(&b, s, (size_t)(at - s));
	buf_append_str(&b, to);
	buf_append_str(&b, at + strlen(from));
	return (char *)buf_cstr(&b);
}

static void test_verify_tampered(void **state)
{
	(void)state;
	char *body = replaced(rfc8463_msg, "hungry", "Hungry");
	struct outcome o = verify(body, 0, false);
	assert_results(&o, DKIM_FAIL);
	assert_string_equal(o.r[0].why, "body hash did not verify");
	char *head = replaced(rfc8463_msg, "Subject: Is dinner", "Subject: Is lunch");
	o = verify(head, 3, false);
	assert_results(&o, DKIM_FAIL);
	assert_string_equal(o.r[1].why, "signature did not verify");
	/* Whitespace that relaxed canonicalisation removes changes nothing. */
	char *ws = replaced(rfc8463_msg, "Joe.\n", "Joe. \t\n\n\n");
	o = verify(ws, 1, false);
	assert_results(&o, DKIM_PASS);
	free(body);
	free(head);
	free(ws);
}

static void test_verify_no_key_and_rsa_sha1(void **state)
{
	(void)state;
	char *nokey = replaced(rfc8463_msg, "s=brisbane", "s=nosuch");
	char *sha1 = replaced(nokey, "a=rsa-sha256", "a=rsa-sha1");
	struct outcome o = verify(sha1, 0, false);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.n, 2);
	assert_int_equal(o.r[0].result, DKIM_PERMERROR); /* NXDOMAIN: no key */
	assert_int_equal(o.r[1].result, DKIM_PERMERROR); /* RFC 8301 3.1 */
	assert_string_equal(o.r[1].why, "rsa-sha1 is not accepted (RFC 8301 3.1)");
	free(nokey);
	free(sha1);
}

struct rsa_case {
	const char *selector;
	enum dkim_result want;
	const char *why;
};

/* The RFC 8463 A.3 message with its rsa-sha256 signature's key at the selector of each case. */
static void check_rsa_cases(const struct rsa_case *cases, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		char *m = replaced(rfc8463_msg, "s=test", cases[k].selector);
		struct outcome o = verify(m, 0, false);
		assert_int_equal(o.calls, 1);
		assert_int_equal(o.n, 2);
		assert_int_equal(o.r[0].result, DKIM_PASS);
		if (o.r[1].result != cases[k].want || strcmp(o.r[1].why ? o.r[1].why : "-", cases[k].why) != 0)
			fail_msg("%s: %s (%s)", cases[k].selector, dkim_result_str(o.r[1].result),
				 o.r[1].why ? o.r[1].why : "-");
		free(m);
	}
}

/* RFC 8301 3.2: keys of 1024 to 4096 bits; the size is checked before any verify (a bigger key costs more). */
static void test_verify_rsa_key_over_4096_bits(void **state)
{
	(void)state;
	static const struct rsa_case cases[] = {
		{ "s=rsa4096", DKIM_FAIL, "signature did not verify" }, /* in bounds: verified */
		{ "s=rsa8192", DKIM_PERMERROR, "RSA key over 4096 bits (RFC 8301 3.2)" },
	};
	check_rsa_cases(cases, ARRAY_LEN(cases));
}

/* A public exponent of 33 bits or more is refused before any verify (3071 bits: some 100 times the cost). */
static void test_verify_rsa_exponent_too_large(void **state)
{
	(void)state;
	static const struct rsa_case cases[] = {
		{ "s=e32", DKIM_FAIL, "signature did not verify" }, /* 2^32 - 1: in bounds, verified */
		{ "s=e33", DKIM_PERMERROR, "RSA public exponent over 32 bits" },
		{ "s=e3071", DKIM_PERMERROR, "RSA public exponent over 32 bits" },
	};
	check_rsa_cases(cases, ARRAY_LEN(cases));
}

/* ---- h= on a header of many fields: signed here with the RFC 8463 A.2 key ---- */

static const char ed25519_secret[] = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=";

/*
 * The header fields of f (CRLF lines, no continuations) named by h, chosen
 * as RFC 6376 5.4.2 says, by the plain reading: per name, from the bottom,
 * skipping instances already taken; none left is the null string.
 */
static void reference_fields(const char *f, const char *h, struct buf *out)
{
	const char *line[1024];
	size_t nl = 0;
	bool used[1024] = { false };
	for (const char *p = f; *p; p = strstr(p, "\r\n") + 2)
		line[nl++] = p;
	assert_true(nl < ARRAY_LEN(line));
	for (const char *n = h; *n;) {
		size_t len = strcspn(n, ":");
		for (size_t j = nl; j-- > 0;) {
			size_t ln = strcspn(line[j], ":");
			while (ln && line[j][ln - 1] == ' ')
				ln--;
			if (!used[j] && ascii_ieq(line[j], ln, n, len)) {
				used[j] = true;
				dkim_canon_header(DKIM_CANON_RELAXED, line[j], (size_t)(strstr(line[j], "\r\n") + 2 - line[j]),
						  true, out);
				break;
			}
		}
		n += len + (n[len] == ':');
	}
}

/* A DKIM-Signature field (with CRLF) over fields f and body "Hi.\r\n", naming h. */
static void sign(const char *f, const char *h, struct buf *out)
{
	unsigned char sk[32], md[32], sig[64];
	char b64[100];
	size_t skl, sl = sizeof(sig);
	assert_int_equal(dkim_base64_decode(ed25519_secret, strlen(ed25519_secret), sk, sizeof(sk), &skl), 0);
	assert_int_equal(EVP_Digest("Hi.\r\n", 5, md, NULL, EVP_sha256(), NULL), 1);
	EVP_EncodeBlock((unsigned char *)b64, md, sizeof(md));
	struct buf field = { 0 }, c = { 0 };
	buf_printf(&field, "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed; d=football.example.com;\r\n"
		   " s=brisbane; h=%s;\r\n bh=%s; b=", h, b64);
	reference_fields(f, h, &c);
	dkim_canon_header(DKIM_CANON_RELAXED, (const char *)field.data, field.len, false, &c);
	assert_int_equal(EVP_Digest(c.data, c.len, md, NULL, EVP_sha256(), NULL), 1);
	EVP_PKEY *k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, sk, skl);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	assert_true(k && ctx && EVP_DigestSignInit(ctx, NULL, NULL, NULL, k) == 1 &&
		    EVP_DigestSign(ctx, sig, &sl, md, sizeof(md)) == 1);
	EVP_EncodeBlock((unsigned char *)b64, sig, (int)sl);
	buf_printf(out, "%s%s\r\n", buf_cstr(&field), b64);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(k);
	buf_free(&field);
	buf_free(&c);
}

/* The results of 3 signatures naming h[0..2] over fields f (and `extra` added at the bottom after signing). */
static struct outcome sign_and_verify(const char *f, const char *const h[3], const char *extra)
{
	struct buf m = { 0 };
	for (size_t k = 0; k < 3; k++)
		sign(f, h[k], &m);
	buf_printf(&m, "%s%s\r\nHi.\r\n", f, extra);
	size_t n = 0;
	for (size_t k = 0; k < m.len; k++)
		if (m.data[k] != '\r')
			m.data[n++] = m.data[k]; /* verify() turns LF back into CRLF */
	m.len = n;
	struct outcome o = verify(buf_cstr(&m), 1000, false);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.n, 3);
	buf_free(&m);
	return o;
}

/*
 * Some 670 fields (40 Received, 30 X-A spelt two ways, 200 x-filler, 400
 * other names) and 3 signatures naming up to 63 each: names many times,
 * more often than they have instances (oversigning), in other cases, absent.
 * Each passes; a field added at the bottom makes exactly the signatures
 * that name it fail (it takes the slot of the bottom instance, or an
 * oversigned null one).
 */
static void test_verify_many_fields_and_names(void **state)
{
	(void)state;
	struct buf f = { 0 }, h0 = { 0 }, h1 = { 0 };
	for (int k = 0; k < 40; k++)
		buf_printf(&f, "Received: hop %d\r\n", k);
	buf_append_str(&f, "From: Joe <joe@football.example.com>\r\n");
	for (int k = 0; k < 600; k++) {
		if (k % 3)
			buf_printf(&f, "X-Filler-%d: %d\r\n", k, k);
		else
			buf_printf(&f, "x-filler: %d\r\n", k);
		if (k % 20 == 0)
			buf_append_str(&f, k % 40 ? "X-A: a\r\n" : "x-a : b\r\n");
	}
	buf_append_str(&f, "Subject: Is dinner ready?\r\n");
	buf_append_str(&h0, "from:from:subject");
	for (int k = 0; k < 33; k++)
		buf_append_str(&h0, k % 2 ? ":x-A" : ":X-a");
	buf_append_str(&h0, ":x-missing:x-missing:received:received:RECEIVED");
	for (int k = 0; k < 41; k++)
		buf_append_str(&h1, k ? ":received" : "from");
	for (int k = 0; k < 22; k++)
		buf_printf(&h1, ":x-absent-%d", k);
	const char *h[3] = { buf_cstr(&h0), buf_cstr(&h1), "subject:from:x-filler:X-FILLER:x-a" };

	struct outcome o = sign_and_verify(buf_cstr(&f), h, "");
	for (size_t k = 0; k < 3; k++)
		if (o.r[k].result != DKIM_PASS)
			fail_msg("signature %zu: %s (%s)", k, dkim_result_str(o.r[k].result), o.r[k].why ? o.r[k].why : "-");
	static const struct {
		const char *extra;
		enum dkim_result want[3];
	} added[] = {
		{ "X-Other: z\r\n", { DKIM_PASS, DKIM_PASS, DKIM_PASS } },
		{ "From: Mallory <m@example.net>\r\n", { DKIM_FAIL, DKIM_FAIL, DKIM_FAIL } },
		{ "Received: hop 41\r\n", { DKIM_FAIL, DKIM_FAIL, DKIM_PASS } },
		{ "x-filler: 600\r\n", { DKIM_PASS, DKIM_PASS, DKIM_FAIL } },
		{ "X-A: c\r\n", { DKIM_FAIL, DKIM_PASS, DKIM_FAIL } },
	};
	for (size_t a = 0; a < ARRAY_LEN(added); a++) {
		o = sign_and_verify(buf_cstr(&f), h, added[a].extra);
		for (size_t k = 0; k < 3; k++)
			if (o.r[k].result != added[a].want[k])
				fail_msg("%s: signature %zu: %s (%s)", added[a].extra, k, dkim_result_str(o.r[k].result),
					 o.r[k].why ? o.r[k].why : "-");
	}
	buf_free(&f);
	buf_free(&h0);
	buf_free(&h1);
}

static void test_verify_unsigned_and_oversized(void **state)
{
	(void)state;
	struct outcome o = verify("From: a@example.org\nSubject: hi\n\nbody\n", 2, false);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.n, 0);
	struct buf filler = { 0 };
	while (filler.len < DKIM_HEADER_MAX)
		buf_append_str(&filler, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");
	buf_append_str(&filler, "From: Joe");
	char *withfill = replaced(rfc8463_msg, "From: Joe", buf_cstr(&filler));
	o = verify(withfill, 4096, false);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.n, 2);
	assert_int_equal(o.r[0].result, DKIM_PERMERROR);
	assert_string_equal(o.r[0].why, "header section too long");
	free(withfill);
	buf_free(&filler);
}

/* Only the first DKIM_MAX_SIGNATURES are checked: 6 copies of the two give 5 results. */
static void test_verify_at_most_five(void **state)
{
	(void)state;
	const char *from = strstr(rfc8463_msg, "From: Joe");
	struct buf m = { 0 };
	for (int k = 0; k < 3; k++)
		buf_append(&m, rfc8463_msg, (size_t)(from - rfc8463_msg));
	buf_append_str(&m, from);
	struct outcome o = verify(buf_cstr(&m), 64, false);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.n, DKIM_MAX_SIGNATURES);
	for (size_t k = 0; k < o.n; k++)
		assert_int_equal(o.r[k].result, DKIM_PASS);
	buf_free(&m);
}

static void test_verify_cancelled(void **state)
{
	(void)state;
	struct outcome o = verify(rfc8463_msg, 5, true);
	assert_int_equal(o.calls, 0);
}

/* Keys that never come: dkim_expire reports at once, temperror, once; the lookups end with dns_free. */
static void test_verify_expired(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct responder rs = { .silent = true };
	responder_start(base, &rs);
	struct dns *d;
	assert_int_equal(dns_open(base, rs.addr, 1000, &d), 0);
	struct buf m = { 0 };
	for (const char *p = rfc8463_msg; *p; p++)
		buf_append(&m, *p == '\n' ? "\r\n" : p, *p == '\n' ? 2 : 1);
	struct outcome o = { 0 };
	struct dkim_verify *v = dkim_verify_new(base, d, NOW);
	dkim_feed(v, m.data, m.len);
	assert_int_equal(dkim_buffered(v), 0); /* the body has started: the header copy is gone */
	dkim_finish(v, on_result, &o);
	bool expired = false;
	struct timeval tv = { 5, 0 };
	struct event *t = evtimer_new(base, on_deadline, &expired);
	evtimer_add(t, &tv);
	while (rs.queries < 2 && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(rs.queries, 2);
	assert_int_equal(o.calls, 0);
	dkim_expire(v);
	assert_int_equal(o.calls, 1);
	assert_int_equal(o.n, 2);
	for (size_t k = 0; k < 2; k++) {
		assert_int_equal(o.r[k].result, DKIM_TEMPERROR);
		assert_string_equal(o.r[k].why, "no answer for the key in time");
	}
	dkim_free(v);
	dns_free(d); /* the lookups end cancelled: the verifier is freed then, without a second report */
	assert_int_equal(o.calls, 1);
	event_free(t);
	responder_stop(&rs);
	event_base_free(base);
	buf_free(&m);
}

/* What the verifier buffers is the header section, until its end. */
static void test_buffered(void **state)
{
	(void)state;
	struct dkim_verify *v = dkim_verify_new(NULL, NULL, NOW);
	assert_int_equal(dkim_buffered(v), 0);
	dkim_feed(v, (const unsigned char *)"Subject: x\r\n", 12);
	assert_true(dkim_buffered(v) >= 12);
	dkim_feed(v, (const unsigned char *)"\r\nbody\r\n", 8);
	assert_int_equal(dkim_buffered(v), 0);
	dkim_free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_sig),
		cmocka_unit_test(test_parse_key),
		cmocka_unit_test(test_canon_rfc6376_example),
		cmocka_unit_test(test_canon_body_edges),
		cmocka_unit_test(test_canon_body_any_split),
		cmocka_unit_test(test_verify_rfc8463_whole_and_bytewise),
		cmocka_unit_test(test_verify_tampered),
		cmocka_unit_test(test_verify_no_key_and_rsa_sha1),
		cmocka_unit_test(test_verify_rsa_key_over_4096_bits),
		cmocka_unit_test(test_verify_rsa_exponent_too_large),
		cmocka_unit_test(test_verify_many_fields_and_names),
		cmocka_unit_test(test_verify_unsigned_and_oversized),
		cmocka_unit_test(test_verify_at_most_five),
		cmocka_unit_test(test_verify_cancelled),
		cmocka_unit_test(test_verify_expired),
		cmocka_unit_test(test_buffered),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
