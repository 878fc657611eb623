/*
 * dkim: verifies the DKIM-Signatures of a message while it streams in
 * (RFC 6376; ed25519-sha256 RFC 8463; RFC 8301: rsa-sha1 and RSA keys
 * outside 1024 to 4096 bits are never a pass). Up to DKIM_MAX_SIGNATURES
 * signatures are checked; their key records are fetched on the shared
 * resolver as soon as the header section is complete, in parallel with the
 * body. Hashing is incremental (OpenSSL EVP): memory per message does not
 * grow with its size.
 *
 * Feed the message as received (CRLF line ends, dot-unstuffed) with
 * dkim_feed, in chunks split anywhere, then dkim_finish: the callback runs
 * on the loop once every key is in (never from inside dkim_finish).
 * dkim_free cancels: no callback after it.
 *
 * The header section is buffered up to DKIM_HEADER_MAX; a longer one makes
 * every signature in it permerror. Result mapping (RFC 8601 2.7.1):
 * syntax errors, missing or unusable keys (NXDOMAIN, no record, revoked,
 * wrong type, t=s with i= not d=), expiry (x=), t= over a day in the
 * future, rsa-sha1 (RFC 8301 3.1), RSA keys under 1024 or over 4096 bits
 * (RFC 8301 3.2) and RSA public exponents over 32 bits are permerror; a DNS
 * failure is temperror; a body hash or signature that does not verify is
 * fail. The key's size and exponent are checked before any verify: a key
 * record is the signer's to write, and a large one would make each verify
 * cost milliseconds of the loop.
 *
 * Cost: the h= names of all the signatures are looked up in one index of
 * the header section (one pass over its fields, a binary search each), so
 * the cost grows with the header plus h=, not with the header times h=.
 */
#ifndef MXV_DKIM_H
#define MXV_DKIM_H

#include <stddef.h>
#include <stdint.h>

struct dns;
struct event_base;
struct dkim_verify;

#define DKIM_MAX_SIGNATURES 5
#define DKIM_HEADER_MAX (256 * 1024)

enum dkim_result {
	DKIM_NONE = 0, /* no signature */
	DKIM_PASS,
	DKIM_FAIL,
	DKIM_NEUTRAL,
	DKIM_POLICY,
	DKIM_TEMPERROR,
	DKIM_PERMERROR,
};

struct dkim_sig_result {
	enum dkim_result result;
	char domain[256];   /* d= (header.d) */
	char selector[64];  /* s= (header.s) */
	char b_prefix[16];  /* the first 8 characters of b= (header.b, RFC 6008) */
	char algorithm[32]; /* a= */
	const char *why;    /* a short reason for anything but pass (static text) */
};

/* r: one entry per signature checked (n may be 0: DKIM_NONE); valid during the call. */
typedef void dkim_fn(void *arg, const struct dkim_sig_result *r, size_t n);

/* now: Unix seconds, for x= (expiry) and t=. base: the loop dns runs on. */
struct dkim_verify *dkim_verify_new(struct event_base *base, struct dns *dns, int64_t now);
void dkim_feed(struct dkim_verify *v, const unsigned char *p, size_t n);
void dkim_finish(struct dkim_verify *v, dkim_fn *fn, void *arg);
void dkim_free(struct dkim_verify *v);
/*
 * After dkim_finish, before its callback: gives up on the keys still being
 * fetched (their signatures are temperror) and calls the callback now, from
 * inside this call; it is not called again. For a caller that cannot wait
 * any longer (the session's auth_timeout).
 */
void dkim_expire(struct dkim_verify *v);
/* Bytes the verifier holds for the header section (0 once the body starts). */
size_t dkim_buffered(const struct dkim_verify *v);

const char *dkim_result_str(enum dkim_result r);

#endif
