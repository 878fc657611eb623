/*
 * dkim_parse: the pure parsers of DKIM (RFC 6376 3.2, 3.5, 3.6.1): the
 * DKIM-Signature tag-list and the key record of selector._domainkey.d.
 * No I/O, no crypto: a parsed signature carries its decoded b= and bh=, a
 * parsed key its decoded p=; dkim.c does the rest. Fuzzed by fuzz_dkim.
 * Both return 0 or -EINVAL with *why set to a short static reason.
 */
#ifndef MXV_DKIM_PARSE_H
#define MXV_DKIM_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define DKIM_MAX_H 64          /* names in h= (oversigning counts) */
#define DKIM_NAME_MAX 80       /* one header field name in h= */
#define DKIM_MAX_B 1024        /* decoded b=: an 8192-bit RSA signature */
#define DKIM_MAX_KEY 2048      /* decoded p= */

enum dkim_alg { DKIM_ALG_RSA_SHA256 = 1, DKIM_ALG_ED25519_SHA256, DKIM_ALG_RSA_SHA1 };
enum dkim_canon { DKIM_CANON_SIMPLE = 0, DKIM_CANON_RELAXED };
enum dkim_key_type { DKIM_KEY_RSA = 1, DKIM_KEY_ED25519 };

struct dkim_sig {
	enum dkim_alg alg;
	char algorithm[32];           /* a= as written (cut to fit) */
	enum dkim_canon hcanon, bcanon;
	char d[256];                  /* lower case */
	char s[64];
	char i[256];                  /* decoded; "@d" when absent */
	char b_prefix[16];            /* first 8 characters of b=, FWS removed */
	unsigned char b[DKIM_MAX_B];
	size_t blen;
	unsigned char bh[64];
	size_t bhlen;
	char h[DKIM_MAX_H][DKIM_NAME_MAX];
	size_t nh;
	int64_t l;                    /* -1: the whole body */
	int64_t t, x;                 /* -1: absent */
};

struct dkim_key {
	enum dkim_key_type type;
	bool revoked;                 /* p= empty */
	bool strict;                  /* t=s: i= must be in d= exactly */
	bool testing;                 /* t=y */
	unsigned char p[DKIM_MAX_KEY];
	size_t plen;
};

/*
 * value: the field's value (after "DKIM-Signature:"), raw, folded or not.
 * The fields d, s, b_prefix and algorithm are filled as soon as they are
 * seen, so a signature refused for another reason can still be reported.
 */
int dkim_parse_sig(const char *value, size_t n, struct dkim_sig *out, const char **why) MUST_CHECK;
int dkim_parse_key(const char *rec, size_t n, struct dkim_key *out, const char **why) MUST_CHECK;

/*
 * The span of b='s value inside a signature field (raw), from just after
 * "=" to the ";" or the end: 0, or -EINVAL when there is no b= tag.
 */
int dkim_find_b_value(const char *value, size_t n, size_t *start, size_t *end) MUST_CHECK;

/* Base64 with FWS ignored: 0, or -EINVAL (bad character, bad padding, too long). */
int dkim_base64_decode(const char *s, size_t n, unsigned char *out, size_t cap, size_t *outlen) MUST_CHECK;

#endif
