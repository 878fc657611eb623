/*
 * dkim: the streaming DKIM verifier (see dkim.h for the contract and the
 * result mapping). Owns the buffered header section, one state per
 * signature (body canonicaliser + SHA-256 context, the header hash, the key
 * once it is in) and the key lookups. Called by smtpd/ as the message
 * arrives; calls dkim_parse, dkim_canon, OpenSSL EVP and base/dns.
 * Invariants: the header hash of each signature is computed once, when the
 * header section is complete (every signature parsed first, so that one
 * index of the fields serves all their h= names), and the header buffer is
 * freed then; every lookup in flight holds the verifier alive (dkim_free
 * only marks it when lookups are pending; the last answer frees it), so no
 * callback ever touches freed memory. Peer input never aborts: it yields a
 * result.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "auth/dkim.h"
#include "auth/dkim_canon.h"
#include "auth/dkim_parse.h"
#include "base/dns.h"

/*
 * t= this far ahead is a signer's clock (often local time taken for UTC), not
 * an error: RFC 6376 3.5 lets verifiers ignore future signatures, not must.
 */
#define FUTURE_SLACK 86400

struct dkim_one {
	struct dkim_verify *v;
	struct dkim_sig sig;
	struct dkim_sig_result res;
	bool decided; /* res.result is final without crypto */
	bool key_in;  /* on_key ran (key_st says how) */
	enum dns_status key_st;
	struct dkim_key key;
	const char *key_why;
	unsigned char hhash[32];
	unsigned char bhash[32];
	EVP_MD_CTX *md;
	struct dkim_body body;
	uint64_t hashed;
};

struct dkim_verify {
	struct event_base *base;
	struct dns *dns;
	int64_t now;
	struct buf hdr;
	bool in_body;
	struct dkim_one *sigs[DKIM_MAX_SIGNATURES];
	size_t n;
	size_t pending;  /* key lookups in flight */
	bool finished;   /* dkim_finish ran */
	bool freed;      /* dkim_free ran while lookups were in flight */
	bool reported;
	struct event *defer;
	dkim_fn *fn;
	void *arg;
};

struct field {
	size_t off, len, namelen;
};

static void decide(struct dkim_one *o, enum dkim_result r, const char *why)
{
	o->decided = true;
	o->res.result = r;
	o->res.why = why;
}

static void body_out(void *arg, const unsigned char *p, size_t n)
{
	struct dkim_one *o = arg;
	if (o->sig.l >= 0 && (uint64_t)o->sig.l - o->hashed < n)
		n = (size_t)((uint64_t)o->sig.l - o->hashed);
	if (n && EVP_DigestUpdate(o->md, p, n) != 1)
		decide(o, DKIM_TEMPERROR, "hash failure");
	o->hashed += n;
}

/* Cut the header section into fields (a line starting with WSP continues one). */
static struct field *split_fields(const unsigned char *h, size_t n, size_t *nf)
{
	struct field *f = NULL;
	size_t cnt = 0, cap = 0, p = 0;
	while (p < n) {
		const unsigned char *nl = memchr(h + p, '\n', n - p);
		size_t e = nl ? (size_t)(nl - h) + 1 : n;
		if (cnt && (h[p] == ' ' || h[p] == '\t')) {
			f[cnt - 1].len = e - f[cnt - 1].off;
		} else {
			if (cnt == cap)
				f = xrealloc(f, (cap = cap ? cap * 2 : 32) * sizeof(*f));
			const unsigned char *colon = memchr(h + p, ':', e - p);
			size_t nl_ = colon ? (size_t)(colon - (h + p)) : 0;
			while (nl_ && (h[p + nl_ - 1] == ' ' || h[p + nl_ - 1] == '\t'))
				nl_--;
			f[cnt++] = (struct field){ p, e - p, nl_ };
		}
		p = e;
	}
	*nf = cnt;
	return f;
}

static bool field_is(const unsigned char *h, const struct field *f, const char *name)
{
	return ascii_ieq((const char *)h + f->off, f->namelen, name, strlen(name));
}

/*
 * Names ordered so that equal is what ascii_ieq says (ASCII letters folded:
 * the daemon never leaves the C locale), byte by byte, then by length.
 */
static int name_cmp(const char *a, size_t an, const char *b, size_t bn)
{
	for (size_t i = 0; i < an && i < bn; i++) {
		int ca = (unsigned char)a[i], cb = (unsigned char)b[i];
		ca += ca >= 'A' && ca <= 'Z' ? 'a' - 'A' : 0;
		cb += cb >= 'A' && cb <= 'Z' ? 'a' - 'A' : 0;
		if (ca != cb)
			return ca - cb;
	}
	return (an > bn) - (an < bn);
}

static int name_sort_cmp(const void *a, const void *b)
{
	const char *na = *(const char *const *)a, *nb = *(const char *const *)b;
	return name_cmp(na, strlen(na), nb, strlen(nb));
}

/*
 * Where the h= names of a header section's signatures are, so that looking
 * one up is a binary search, not a scan of every field (a 256 KiB header
 * holds some 65,000 fields, and 5 signatures may name 64 each). Built once
 * per header section, after every signature is parsed, in one pass over the
 * fields; shared by all the signatures.
 */
struct field_index {
	const unsigned char *h;
	const struct field *f;
	size_t nf;
	const char *names[DKIM_MAX_SIGNATURES * DKIM_MAX_H]; /* distinct, sorted; they point into the signatures */
	size_t nlen[DKIM_MAX_SIGNATURES * DKIM_MAX_H];
	size_t nnames;
	size_t start[DKIM_MAX_SIGNATURES * DKIM_MAX_H + 1]; /* the instances of names[w]: pos[start[w]..start[w+1]) */
	uint32_t *pos;                                         /* field numbers, bottom-up */
};

/* The index of name in ix->names, or SIZE_MAX. */
static size_t index_find(const struct field_index *ix, const char *name, size_t nl)
{
	size_t lo = 0, hi = ix->nnames;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = name_cmp(ix->names[mid], ix->nlen[mid], name, nl);
		if (c == 0)
			return mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return SIZE_MAX;
}

#define NO_NAME UINT16_MAX
_Static_assert(ARRAY_LEN(((struct field_index *)0)->names) < NO_NAME, "a name's number fits in 16 bits");

static void index_build(struct field_index *ix, struct dkim_one *const *sigs, size_t n)
{
	for (size_t s = 0; s < n; s++)
		for (size_t k = 0; !sigs[s]->decided && k < sigs[s]->sig.nh; k++)
			ix->names[ix->nnames++] = sigs[s]->sig.h[k];
	qsort(ix->names, ix->nnames, sizeof(ix->names[0]), name_sort_cmp);
	size_t d = 0;
	for (size_t k = 0; k < ix->nnames; k++)
		if (d == 0 || name_sort_cmp(&ix->names[d - 1], &ix->names[k]) != 0)
			ix->names[d++] = ix->names[k];
	ix->nnames = d;
	if (d == 0)
		return; /* no signature to hash for */
	for (size_t w = 0; w < d; w++)
		ix->nlen[w] = strlen(ix->names[w]);
	/* One search per field; then a counting sort of the fields found, bottom-up within each name. */
	uint16_t *which = xcalloc(ix->nf ? ix->nf : 1, sizeof(*which));
	size_t at[ARRAY_LEN(ix->start)] = { 0 };
	for (size_t j = 0; j < ix->nf; j++) {
		size_t w = index_find(ix, (const char *)ix->h + ix->f[j].off, ix->f[j].namelen);
		which[j] = w == SIZE_MAX ? NO_NAME : (uint16_t)w;
		at[w == SIZE_MAX ? d : w]++;
	}
	for (size_t w = 0; w < d; w++)
		ix->start[w + 1] = ix->start[w] + at[w];
	memcpy(at, ix->start, sizeof(at));
	ix->pos = xcalloc(ix->start[d] ? ix->start[d] : 1, sizeof(*ix->pos));
	for (size_t j = ix->nf; j-- > 0;)
		if (which[j] != NO_NAME)
			ix->pos[at[which[j]]++] = (uint32_t)j; /* j < DKIM_HEADER_MAX */
	free(which);
}

/*
 * The field that h= entry k names (RFC 6376 5.4.2): the j-th occurrence of
 * a name in h= takes its j-th instance from the bottom; SIZE_MAX when none
 * is left (oversigning: the null string).
 */
static size_t index_pick(const struct field_index *ix, const struct dkim_sig *sig, size_t k)
{
	size_t j = 0, nl = strlen(sig->h[k]);
	for (size_t i = 0; i < k; i++)
		j += name_cmp(sig->h[i], strlen(sig->h[i]), sig->h[k], nl) == 0;
	size_t w = index_find(ix, sig->h[k], nl);
	return w != SIZE_MAX && j < ix->start[w + 1] - ix->start[w] ? ix->pos[ix->start[w] + j] : SIZE_MAX;
}

/* Where the value of field f starts (just past its colon). */
static size_t value_off(const unsigned char *h, const struct field *f)
{
	size_t voff = f->namelen;
	while (h[f->off + voff] != ':')
		voff++;
	return voff + 1;
}

/* The header hash (RFC 6376 3.7): the h= fields, bottom-up per name, then this signature without b=. */
static void header_hash(struct dkim_one *o, const struct field_index *ix, size_t self)
{
	const unsigned char *h = ix->h;
	const struct field *f = ix->f;
	struct buf c = { 0 };
	for (size_t k = 0; k < o->sig.nh; k++) {
		size_t j = index_pick(ix, &o->sig, k);
		if (j != SIZE_MAX)
			dkim_canon_header(o->sig.hcanon, (const char *)h + f[j].off, f[j].len, true, &c);
	}
	const char *raw = (const char *)h + f[self].off;
	size_t voff = value_off(h, &f[self]), bs, be;
	if (dkim_find_b_value(raw + voff, f[self].len - voff, &bs, &be)) {
		decide(o, DKIM_PERMERROR, "no b= tag");
	} else {
		struct buf s = { 0 };
		buf_append(&s, raw, voff + bs);
		buf_append(&s, raw + voff + be, f[self].len - voff - be);
		dkim_canon_header(o->sig.hcanon, (const char *)s.data, s.len, false, &c);
		buf_free(&s);
		unsigned int len = 0;
		if (EVP_Digest(c.data, c.len, o->hhash, &len, EVP_sha256(), NULL) != 1)
			decide(o, DKIM_TEMPERROR, "hash failure");
	}
	buf_free(&c);
}

static void copy_ids(struct dkim_one *o)
{
	memcpy(o->res.domain, o->sig.d, sizeof(o->res.domain));
	memcpy(o->res.selector, o->sig.s, sizeof(o->res.selector));
	memcpy(o->res.b_prefix, o->sig.b_prefix, sizeof(o->res.b_prefix));
	memcpy(o->res.algorithm, o->sig.algorithm, sizeof(o->res.algorithm));
}

/* The checks that need neither the key nor the body. */
static void check_sig(struct dkim_one *o, const char *value, size_t n, int64_t now)
{
	const char *why = NULL;
	int rc = dkim_parse_sig(value, n, &o->sig, &why);
	copy_ids(o);
	if (rc)
		decide(o, DKIM_PERMERROR, why);
	else if (o->sig.alg == DKIM_ALG_RSA_SHA1)
		decide(o, DKIM_PERMERROR, "rsa-sha1 is not accepted (RFC 8301 3.1)");
	else if (o->sig.x >= 0 && o->sig.x < now)
		decide(o, DKIM_PERMERROR, "signature expired (x=)");
	else if (o->sig.t >= 0 && o->sig.t > now + FUTURE_SLACK)
		decide(o, DKIM_PERMERROR, "t= in the future");
}

static void on_key(void *arg, enum dns_status st, const char *const *txt, size_t n);

/* A signature that parsed: its hashes start and its key is asked for. */
static void start_sig(struct dkim_one *o, const struct field_index *ix, size_t self)
{
	struct dkim_verify *v = o->v;
	o->md = EVP_MD_CTX_new();
	if (!o->md || EVP_DigestInit_ex(o->md, EVP_sha256(), NULL) != 1)
		return decide(o, DKIM_TEMPERROR, "hash failure");
	dkim_body_init(&o->body, o->sig.bcanon, body_out, o);
	header_hash(o, ix, self);
	if (o->decided)
		return;
	char name[256 + 64 + 16];
	if (fmt(name, sizeof(name), "%s._domainkey.%s", o->sig.s, o->sig.d))
		return decide(o, DKIM_PERMERROR, "key name too long");
	v->pending++;
	dns_lookup_txt(v->dns, name, on_key, o);
}

/*
 * The header section h[0..n) is complete (or cut at the bound: too_long).
 * Every signature is parsed first, so that the index holds the h= names of
 * all of them.
 */
static void header_done(struct dkim_verify *v, const unsigned char *h, size_t n, bool too_long)
{
	size_t nf, self[DKIM_MAX_SIGNATURES] = { 0 };
	struct field *f = split_fields(h, n, &nf);
	for (size_t k = 0; k < nf && v->n < DKIM_MAX_SIGNATURES; k++) {
		if (!field_is(h, &f[k], "DKIM-Signature"))
			continue;
		struct dkim_one *o = xcalloc(1, sizeof(*o));
		o->v = v;
		self[v->n] = k;
		v->sigs[v->n++] = o;
		if (too_long) {
			decide(o, DKIM_PERMERROR, "header section too long");
			continue;
		}
		size_t voff = value_off(h, &f[k]);
		check_sig(o, (const char *)h + f[k].off + voff, f[k].len - voff, v->now);
	}
	struct field_index *ix = xcalloc(1, sizeof(*ix));
	*ix = (struct field_index){ .h = h, .f = f, .nf = nf };
	index_build(ix, v->sigs, v->n);
	for (size_t s = 0; s < v->n; s++)
		if (!v->sigs[s]->decided)
			start_sig(v->sigs[s], ix, self[s]);
	free(ix->pos);
	free(ix);
	free(f);
	v->in_body = true;
}

static void body_feed(struct dkim_verify *v, const unsigned char *p, size_t n)
{
	for (size_t k = 0; k < v->n; k++)
		if (!v->sigs[k]->decided)
			dkim_body_feed(&v->sigs[k]->body, p, n);
}

struct dkim_verify *dkim_verify_new(struct event_base *base, struct dns *dns, int64_t now)
{
	struct dkim_verify *v = xcalloc(1, sizeof(*v));
	v->base = base;
	v->dns = dns;
	v->now = now;
	return v;
}

/* Where the header section ends in hdr, searching from `from`: the offset of the empty line, or -1. */
static ptrdiff_t find_eoh(const struct buf *b, size_t from)
{
	if (b->len >= 2 && b->data[0] == '\r' && b->data[1] == '\n')
		return 0;
	const void *e = memmem(b->data + from, b->len - from, "\r\n\r\n", 4);
	return e ? (const unsigned char *)e - b->data + 2 : -1;
}

void dkim_feed(struct dkim_verify *v, const unsigned char *p, size_t n)
{
	if (v->in_body) {
		body_feed(v, p, n);
		return;
	}
	size_t old = v->hdr.len, take = DKIM_HEADER_MAX - old < n ? DKIM_HEADER_MAX - old : n;
	buf_append(&v->hdr, p, take);
	ptrdiff_t e = find_eoh(&v->hdr, old > 3 ? old - 3 : 0);
	if (e < 0 && v->hdr.len < DKIM_HEADER_MAX)
		return;
	if (e < 0) {
		header_done(v, v->hdr.data, v->hdr.len, true);
	} else {
		header_done(v, v->hdr.data, (size_t)e, false);
		body_feed(v, v->hdr.data + e + 2, v->hdr.len - (size_t)e - 2);
	}
	buf_free(&v->hdr);
	body_feed(v, p + take, n - take);
}

static void report(struct dkim_verify *v);
static void destroy(struct dkim_verify *v);

/* The first record that parses is the key (RFC 6376 6.1.2: a verifier may pick one). */
static void on_key(void *arg, enum dns_status st, const char *const *txt, size_t n)
{
	struct dkim_one *o = arg;
	struct dkim_verify *v = o->v;
	o->key_in = true;
	o->key_st = st;
	if (st == DNS_OK) {
		o->key_why = "no key record";
		o->key_st = DNS_NODATA;
		for (size_t k = 0; k < n; k++) {
			if (dkim_parse_key(txt[k], strlen(txt[k]), &o->key, &o->key_why) == 0) {
				o->key_st = DNS_OK;
				break;
			}
		}
	}
	v->pending--;
	if (v->freed) {
		if (v->pending == 0)
			destroy(v);
		return;
	}
	if (v->finished && v->pending == 0 && !v->reported)
		report(v);
}

static EVP_PKEY *load_key(struct dkim_one *o)
{
	const unsigned char *p = o->key.p;
	if (o->key.type == DKIM_KEY_ED25519)
		return o->key.plen == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, p, 32) : NULL;
	/* SubjectPublicKeyInfo, as RFC 6376 3.6.1 says; or a bare RSAPublicKey, as some publish. */
	EVP_PKEY *k = d2i_PUBKEY(NULL, &p, (long)o->key.plen);
	if (!k) {
		p = o->key.p;
		k = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)o->key.plen);
	}
	if (k && EVP_PKEY_get_base_id(k) != EVP_PKEY_RSA) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	return k;
}

static bool verify_rsa(EVP_PKEY *k, const struct dkim_one *o)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(k, NULL);
	bool ok = c && EVP_PKEY_verify_init(c) == 1 && EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
		  EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1 &&
		  EVP_PKEY_verify(c, o->sig.b, o->sig.blen, o->hhash, sizeof(o->hhash)) == 1;
	EVP_PKEY_CTX_free(c);
	return ok;
}

/* RFC 8463 3: Ed25519 (pure) over the SHA-256 of the canonicalised header data. */
static bool verify_ed25519(EVP_PKEY *k, const struct dkim_one *o)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	bool ok = c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, k) == 1 &&
		  EVP_DigestVerify(c, o->sig.b, o->sig.blen, o->hhash, sizeof(o->hhash)) == 1;
	EVP_MD_CTX_free(c);
	return ok;
}

/* The key's own restrictions (RFC 6376 3.6.1) and whether it fits a=. */
static bool key_usable(struct dkim_one *o)
{
	switch (o->key_st) {
	case DNS_OK: break;
	case DNS_TEMPFAIL: case DNS_CANCELLED: return decide(o, DKIM_TEMPERROR, "key lookup failed"), false;
	case DNS_NODATA: return decide(o, DKIM_PERMERROR, o->key_why ? o->key_why : "no key record"), false;
	default: return decide(o, DKIM_PERMERROR, "no key for the selector"), false;
	}
	if (o->key.revoked)
		return decide(o, DKIM_PERMERROR, "key revoked"), false;
	if ((o->key.type == DKIM_KEY_ED25519) != (o->sig.alg == DKIM_ALG_ED25519_SHA256))
		return decide(o, DKIM_PERMERROR, "key type does not match a="), false;
	if (o->key.strict && !ascii_ieq(strrchr(o->sig.i, '@') + 1, strlen(strrchr(o->sig.i, '@') + 1), o->sig.d,
					strlen(o->sig.d)))
		return decide(o, DKIM_PERMERROR, "key t=s: i= must be in d= itself"), false;
	return true;
}

/*
 * RFC 8301 3.2: verifiers must take RSA keys of 1024 to 4096 bits; we take
 * no others, and no public exponent over 32 bits (keys use 65537). A key
 * record is the signer's to write: an 8192-bit modulus, or a 3071-bit
 * exponent on a 3072-bit one (OpenSSL caps e only above 3072 bits), makes
 * one verify cost milliseconds of the loop. So this runs before any verify.
 * NULL when the key is acceptable, else why not.
 */
static const char *rsa_key_refused(const EVP_PKEY *k)
{
	int bits = EVP_PKEY_get_bits(k);
	if (bits < 1024)
		return "RSA key under 1024 bits (RFC 8301 3.2)";
	if (bits > 4096)
		return "RSA key over 4096 bits (RFC 8301 3.2)";
	BIGNUM *e = NULL;
	if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e) != 1)
		return "unusable key data";
	int ebits = BN_num_bits(e);
	BN_free(e);
	return ebits > 32 ? "RSA public exponent over 32 bits" : NULL;
}

static void evaluate(struct dkim_one *o)
{
	if (o->decided || !key_usable(o))
		return;
	/* The key is checked before the hashes, in the order of RFC 6376 6.1.2 and 6.1.3. */
	EVP_PKEY *k = load_key(o);
	if (!k)
		return decide(o, DKIM_PERMERROR, "unusable key data");
	const char *refused = o->key.type == DKIM_KEY_RSA ? rsa_key_refused(k) : NULL;
	if (refused)
		decide(o, DKIM_PERMERROR, refused);
	else if (o->sig.bhlen != sizeof(o->bhash) || memcmp(o->sig.bh, o->bhash, sizeof(o->bhash)) != 0)
		decide(o, DKIM_FAIL, "body hash did not verify");
	else if (o->key.type == DKIM_KEY_RSA ? verify_rsa(k, o) : verify_ed25519(k, o))
		decide(o, DKIM_PASS, NULL);
	else
		decide(o, DKIM_FAIL, "signature did not verify");
	EVP_PKEY_free(k);
}

/* Calls the callback once: dkim_expire may have reported before the last key or the deferred event came. */
static void report(struct dkim_verify *v)
{
	if (v->reported)
		return;
	struct dkim_sig_result r[DKIM_MAX_SIGNATURES];
	for (size_t k = 0; k < v->n; k++) {
		evaluate(v->sigs[k]);
		r[k] = v->sigs[k]->res;
	}
	v->reported = true;
	v->fn(v->arg, r, v->n);
}

static void deferred(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	report(arg);
}

void dkim_finish(struct dkim_verify *v, dkim_fn *fn, void *arg)
{
	if (!v->in_body) {
		if (v->hdr.len && v->hdr.data[v->hdr.len - 1] != '\n')
			buf_append(&v->hdr, "\r\n", 2);
		header_done(v, v->hdr.data, v->hdr.len, false);
		buf_free(&v->hdr);
	}
	for (size_t k = 0; k < v->n; k++) {
		struct dkim_one *o = v->sigs[k];
		if (o->decided)
			continue;
		dkim_body_end(&o->body);
		unsigned int len = 0;
		if (EVP_DigestFinal_ex(o->md, o->bhash, &len) != 1)
			decide(o, DKIM_TEMPERROR, "hash failure");
	}
	v->fn = fn;
	v->arg = arg;
	v->finished = true;
	if (v->pending == 0) {
		v->defer = evtimer_new(v->base, deferred, v);
		struct timeval now = { 0, 0 };
		if (!v->defer || evtimer_add(v->defer, &now) != 0)
			abort(); /* out of memory */
	}
}

void dkim_expire(struct dkim_verify *v)
{
	for (size_t k = 0; k < v->n; k++) {
		struct dkim_one *o = v->sigs[k];
		if (!o->decided && !o->key_in)
			decide(o, DKIM_TEMPERROR, "no answer for the key in time");
	}
	report(v);
}

size_t dkim_buffered(const struct dkim_verify *v)
{
	return v->hdr.cap;
}

static void destroy(struct dkim_verify *v)
{
	for (size_t k = 0; k < v->n; k++) {
		EVP_MD_CTX_free(v->sigs[k]->md);
		free(v->sigs[k]);
	}
	if (v->defer)
		event_free(v->defer);
	buf_free(&v->hdr);
	free(v);
}

void dkim_free(struct dkim_verify *v)
{
	if (!v)
		return;
	if (v->pending) {
		v->freed = true;
		return;
	}
	destroy(v);
}

const char *dkim_result_str(enum dkim_result r)
{
	static const char *const names[] = { "none", "pass", "fail", "neutral", "policy", "temperror", "permerror" };
	return (size_t)r < ARRAY_LEN(names) ? names[r] : "permerror";
}
