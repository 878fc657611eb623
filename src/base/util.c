/*
 * util: see util.h. Out of memory aborts: a mail server that cannot allocate
 * a few hundred bytes cannot make progress, and every acknowledged message is
 * already on disk, so dying loudly is the safe choice.
 */
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <zlib.h>

static void die_oom(size_t n)
{
	fprintf(stderr, "mxvault: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		die_oom(n);
	return p;
}

void *xcalloc(size_t count, size_t n)
{
	void *p = calloc(count ? count : 1, n ? n : 1);
	if (!p)
		die_oom(count * n);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		die_oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void buf_reserve(struct buf *b, size_t extra)
{
	if (b->cap - b->len > extra)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap - b->len <= extra)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

void buf_append_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_printf(struct buf *b, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	if (n <= 0)
		return;
	buf_reserve(b, (size_t)n + 1);
	va_start(ap, f);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, f, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

const char *buf_cstr(struct buf *b)
{
	buf_reserve(b, 1);
	b->data[b->len] = '\0';
	return (const char *)b->data;
}

int fmt(char *out, size_t n, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	int r = vsnprintf(out, n, f, ap);
	va_end(ap);
	if (r < 0 || (size_t)r >= n)
		return -ENOSPC;
	return 0;
}

int64_t clock_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_wall_s(void)
{
	return (int64_t)time(NULL);
}

static int parse_scaled(const char *s, const char *units, const uint64_t *scale, uint64_t *out)
{
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	uint64_t mul = 1;
	if (*end) {
		const char *u = strchr(units, *end);
		if (!u || end[1])
			return -EINVAL;
		mul = scale[u - units];
	}
	if (v > UINT64_MAX / mul)
		return -EINVAL;
	*out = v * mul;
	return 0;
}

int parse_duration(const char *s, int64_t *secs)
{
	static const uint64_t scale[] = {1, 60, 3600, 86400, 604800};
	uint64_t v;
	if (parse_scaled(s, "smhdw", scale, &v) < 0 || v > (uint64_t)INT32_MAX * 100)
		return -EINVAL;
	*secs = (int64_t)v;
	return 0;
}

int parse_size(const char *s, uint64_t *bytes)
{
	static const uint64_t scale[] = {1024, 1024, 1048576, 1048576, 1073741824, 1073741824};
	return parse_scaled(s, "kKmMgG", scale, bytes);
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	static const uint64_t none[] = {1};
	uint64_t v;
	if (parse_scaled(s, "", none, &v) < 0 || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_bool(const char *s, bool *out)
{
	static const char *yes[] = {"yes", "true", "on", "1"};
	static const char *no[] = {"no", "false", "off", "0"};
	for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

void ascii_lower(char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			s[i] = (char)(s[i] - 'A' + 'a');
}

size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xbf;
	size_t len;

	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		lo = c == 0xe0 ? 0xa0 : 0x80;
		hi = c == 0xed ? 0x9f : 0xbf;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		lo = c == 0xf0 ? 0x90 : 0x80;
		hi = c == 0xf4 ? 0x8f : 0xbf;
	} else {
		return 0;
	}
	if (n < len || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((s[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

static bool is_ldh(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-';
}

/* LDH labels of 1-63 characters, 253 in all, and not an all-digit top label
 * (that is an IP address or a typo, never a mail domain). */
bool is_host_name(const char *s, size_t n)
{
	if (n == 0 || n > 253)
		return false;
	size_t start = 0;
	bool digits = true;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			size_t len = i - start;
			if (len == 0 || len > 63 || s[start] == '-' || s[i - 1] == '-')
				return false;
			if (i == n)
				return !digits;
			start = i + 1;
			digits = true;
			continue;
		}
		if (!is_ldh(s[i]))
			return false;
		if (s[i] < '0' || s[i] > '9')
			digits = false;
	}
	return false;
}

bool ascii_ieq(const char *a, size_t alen, const char *b, size_t blen)
{
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
			return false;
	return true;
}

/* --- hash table ------------------------------------------------------- */

struct htab_slot {
	uint64_t hash;  /* 0 = empty, 1 = tombstone */
	char *skey;     /* NULL for integer keys */
	size_t slen;
	uint64_t ukey;
	void *val;
};

/*
 * String keys are often chosen by a peer (client addresses, sender domains),
 * so they are hashed with SipHash-2-4 under a random per-process key: no one
 * outside can make keys collide and turn lookups linear. OpenSSL provides
 * SipHash; each thread keeps one keyed context and re-initialises it.
 */
static unsigned char sip_key[16];
static pthread_once_t sip_once = PTHREAD_ONCE_INIT;
static _Thread_local EVP_MAC_CTX *sip_ctx;

static void sip_key_init(void)
{
	if (RAND_bytes(sip_key, sizeof(sip_key)) != 1) {
		fprintf(stderr, "mxvault: no random bytes for the hash key\n");
		abort();
	}
}

static EVP_MAC_CTX *sip_context(void)
{
	if (sip_ctx)
		return sip_ctx;
	pthread_once(&sip_once, sip_key_init);
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
	size_t size = 8;
	OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t("size", &size), OSSL_PARAM_construct_end()};
	sip_ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac); /* the context keeps its own reference */
	if (!sip_ctx || EVP_MAC_init(sip_ctx, sip_key, sizeof(sip_key), params) != 1) {
		fprintf(stderr, "mxvault: OpenSSL has no SipHash\n");
		abort();
	}
	return sip_ctx;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
	EVP_MAC_CTX *ctx = sip_context();
	unsigned char out[8];
	size_t len = 0;
	/* A NULL key re-initialises with the key already set (no allocation). */
	if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(ctx, p, n) != 1 ||
	    EVP_MAC_final(ctx, out, &len, sizeof(out)) != 1 || len != sizeof(out))
		abort();
	uint64_t h = 0;
	memcpy(&h, out, sizeof(h));
	return h < 2 ? h + 2 : h; /* never 0 or 1: those mark empty slots */
}

static uint64_t hash_u64(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return k < 2 ? k + 2 : k;
}

static struct htab_slot *htab_find(const struct htab *h, uint64_t hash, const char *skey, size_t slen,
				   uint64_t ukey)
{
	if (!h->cap)
		return NULL;
	for (size_t i = hash & (h->cap - 1), probes = 0; probes < h->cap; i = (i + 1) & (h->cap - 1), probes++) {
		struct htab_slot *s = &h->slots[i];
		if (s->hash == 0)
			return NULL;
		if (s->hash != hash)
			continue;
		if (skey ? (s->skey && s->slen == slen && memcmp(s->skey, skey, slen) == 0)
			 : (!s->skey && s->ukey == ukey))
			return s;
	}
	return NULL;
}

static void htab_insert_slot(struct htab *h, struct htab_slot in)
{
	for (size_t i = in.hash & (h->cap - 1);; i = (i + 1) & (h->cap - 1)) {
		if (h->slots[i].hash < 2) {
			if (h->slots[i].hash == 1)
				h->tombs--;
			h->slots[i] = in;
			h->count++;
			return;
		}
	}
}

static void htab_grow(struct htab *h)
{
	if ((h->count + h->tombs + 1) * 4 < h->cap * 3)
		return;
	struct htab old = *h;
	h->cap = old.cap ? (old.count * 2 + 2 > old.cap ? old.cap * 2 : old.cap) : 16;
	h->slots = xcalloc(h->cap, sizeof(*h->slots));
	h->count = h->tombs = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].hash >= 2)
			htab_insert_slot(h, old.slots[i]);
	free(old.slots);
}

void *htab_get_str(const struct htab *h, const char *key, size_t n)
{
	struct htab_slot *s = htab_find(h, hash_bytes(key, n), key, n, 0);
	return s ? s->val : NULL;
}

void htab_put_str(struct htab *h, const char *key, size_t n, void *val)
{
	uint64_t hash = hash_bytes(key, n);
	struct htab_slot *s = htab_find(h, hash, key, n, 0);
	if (s) {
		s->val = val;
		return;
	}
	htab_grow(h);
	htab_insert_slot(h, (struct htab_slot){hash, xstrndup(key, n), n, 0, val});
}

void *htab_del_str(struct htab *h, const char *key, size_t n)
{
	struct htab_slot *s = htab_find(h, hash_bytes(key, n), key, n, 0);
	if (!s)
		return NULL;
	void *val = s->val;
	free(s->skey);
	*s = (struct htab_slot){.hash = 1};
	h->count--;
	h->tombs++;
	return val;
}

void *htab_get_u64(const struct htab *h, uint64_t key)
{
	struct htab_slot *s = htab_find(h, hash_u64(key), NULL, 0, key);
	return s ? s->val : NULL;
}

void htab_put_u64(struct htab *h, uint64_t key, void *val)
{
	uint64_t hash = hash_u64(key);
	struct htab_slot *s = htab_find(h, hash, NULL, 0, key);
	if (s) {
		s->val = val;
		return;
	}
	htab_grow(h);
	htab_insert_slot(h, (struct htab_slot){hash, NULL, 0, key, val});
}

void *htab_del_u64(struct htab *h, uint64_t key)
{
	struct htab_slot *s = htab_find(h, hash_u64(key), NULL, 0, key);
	if (!s)
		return NULL;
	void *val = s->val;
	*s = (struct htab_slot){.hash = 1};
	h->count--;
	h->tombs++;
	return val;
}

void htab_each(const struct htab *h, void (*fn)(void *val, void *arg), void *arg)
{
	for (size_t i = 0; i < h->cap; i++)
		if (h->slots[i].hash >= 2)
			fn(h->slots[i].val, arg);
}

void **htab_values(const struct htab *h, size_t *n)
{
	void **v = xcalloc(h->count + 1, sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; i < h->cap; i++)
		if (h->slots[i].hash >= 2)
			v[k++] = h->slots[i].val;
	*n = k;
	return v;
}

void htab_free(struct htab *h)
{
	for (size_t i = 0; i < h->cap; i++)
		if (h->slots[i].hash >= 2)
			free(h->slots[i].skey);
	free(h->slots);
	*h = (struct htab){0};
}

uint32_t crc32_of(uint32_t crc, const void *p, size_t n)
{
	/* zlib's crc32 takes a uInt length: feed it in bounded pieces. */
	const unsigned char *s = p;
	while (n) {
		uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
		crc = (uint32_t)crc32(crc, s, k);
		s += k;
		n -= k;
	}
	return crc;
}

int fd_write_all(int fd, const void *p, size_t n)
{
	const unsigned char *q = p;
	while (n) {
		ssize_t w = write(fd, q, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		q += w;
		n -= (size_t)w;
	}
	return 0;
}
