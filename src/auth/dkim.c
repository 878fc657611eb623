/*
 * dkim: the streaming DKIM verifier (see dkim.h for the contract and the
 * result mapping). Owns the buffered header section, one state per
 * signature (body canonicaliser + SHA-256 context, the header hash, the key
 * once it is in) and the key lookups. Called by smtpd/ as the message
 * arrives; calls dkim_parse, dkim_canon, OpenSSL EVP and base/dns.
 * Invariants: the header hash of each signature is computed once, when the
 * header section is complete, and the header buffer is freed then; every
 * lookup in flight holds the verifier alive (dkim_free only marks it when
 * lookups are pending; the last answer frees it), so no callback ever
 * touches freed memory. Peer input never aborts: it yields a result.
 */
#include <errno.h>
#include <string.h>

#include <event2/event.h>
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

/* The header hash (RFC 6376 3.7): the h= fields, bottom-up per name, then this signature without b=. */
static void header_hash(struct dkim_one *o, const unsigned char *h, const struct field *f, size_t nf, size_t self)
{
	bool *used = xcalloc(nf ? nf : 1, sizeof(*used));
	struct buf c = { 0 };
	for (size_t k = 0; k < o->sig.nh; k++) {
		for (size_t j = nf; j-- > 0;) {
			if (!used[j] && field_is(h, &f[j], o->sig.h[k])) {
				used[j] = true;
				dkim_canon_header(o->sig.hcanon, (const char *)h + f[j].off, f[j].len, true, &c);
				break;
			}
		} /* a name with no instance left is the null string (oversigning) */
	}
	const char *raw = (const char *)h + f[self].off;
	size_t voff = f[self].namelen, bs, be;
	while (raw[voff] != ':')
		voff++;
	voff++;
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
	free(used);
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

static void start_sig(struct dkim_verify *v, const unsigned char *h, const struct field *f, size_t nf, size_t self)
{
	struct dkim_one *o = xcalloc(1, sizeof(*o));
	o->v = v;
	v->sigs[v->n++] = o;
	const char *raw = (const char *)h + f[self].off;
	size_t voff = f[self].namelen;
	while (raw[voff] != ':')
		voff++;
	voff++;
	check_sig(o, raw + voff, f[self].len - voff, v->now);
	if (o->decided)
		return;
	o->md = EVP_MD_CTX_new();
	if (!o->md || EVP_DigestInit_ex(o->md, EVP_sha256(), NULL) != 1)
		return decide(o, DKIM_TEMPERROR, "hash failure");
	dkim_body_init(&o->body, o->sig.bcanon, body_out, o);
	header_hash(o, h, f, nf, self);
	if (o->decided)
		return;
	char name[256 + 64 + 16];
	if (fmt(name, sizeof(name), "%s._domainkey.%s", o->sig.s, o->sig.d))
		return decide(o, DKIM_PERMERROR, "key name too long");
	v->pending++;
	dns_lookup_txt(v->dns, name, on_key, o);
}

/* The header section h[0..n) is complete (or cut at the bound: too_long). */
static void header_done(struct dkim_verify *v, const unsigned char *h, size_t n, bool too_long)
{
	size_t nf;
	struct field *f = split_fields(h, n, &nf);
	for (size_t k = 0; k < nf && v->n < DKIM_MAX_SIGNATURES; k++) {
		if (!field_is(h, &f[k], "DKIM-Signature"))
			continue;
		if (too_long) {
			struct dkim_one *o = xcalloc(1, sizeof(*o));
			o->v = v;
			v->sigs[v->n++] = o;
			decide(o, DKIM_PERMERROR, "header section too long");
			continue;
		}
		start_sig(v, h, f, nf, k);
	}
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

static void evaluate(struct dkim_one *o)
{
	if (o->decided || !key_usable(o))
		return;
	/* The key is checked before the hashes, in the order of RFC 6376 6.1.2 and 6.1.3. */
	EVP_PKEY *k = load_key(o);
	if (!k)
		return decide(o, DKIM_PERMERROR, "unusable key data");
	if (o->key.type == DKIM_KEY_RSA && EVP_PKEY_get_bits(k) < 1024)
		decide(o, DKIM_PERMERROR, "RSA key under 1024 bits (RFC 8301 3.2)");
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
