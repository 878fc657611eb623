/*
 * greylist: the decision of greylist.h over a kv store. Two kinds of
 * entry: a triplet ('t', network, SHA-256 of "sender\0rcpt" in lower case:
 * fixed length, whatever the addresses) with the time it was first seen,
 * and a passed network ('c', network) with the time its pass ends.
 * Invariants: every value is a struct entry; keys never exceed KV_KEY_MAX.
 * Error policy: a store error passes the attempt and is logged once a
 * minute at most.
 */
#include "greylist.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "store/kv.h"

#define SWEEP_BATCH 4096 /* a minute's batch: about 6 million a day, more than a full store holds */

enum { KIND_TRIPLET = 't', KIND_PASSED = 'c' };

struct entry {
	int64_t t;    /* triplet: first seen; passed network: until */
	uint8_t kind;
};

struct greylist {
	struct kv *kv;
	int64_t delay_s;
	int64_t last_error_log;
};

struct greylist *greylist_new(struct kv *kv, int64_t delay_s)
{
	struct greylist *g = xcalloc(1, sizeof(*g));
	g->kv = kv;
	g->delay_s = delay_s;
	return g;
}

void greylist_free(struct greylist *g)
{
	free(g);
}

void greylist_network(const struct sockaddr *client, char *out, size_t n)
{
	unsigned char a[16];
	if (client->sa_family == AF_INET6) {
		memcpy(a, &((const struct sockaddr_in6 *)client)->sin6_addr, 16);
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a, mapped, 12) != 0) {
			memset(a + 8, 0, 8);
			char ip[INET6_ADDRSTRLEN];
			inet_ntop(AF_INET6, a, ip, sizeof(ip));
			snprintf(out, n, "%s/64", ip);
			return;
		}
		memmove(a, a + 12, 4);
	} else {
		memcpy(a, &((const struct sockaddr_in *)client)->sin_addr, 4);
	}
	snprintf(out, n, "%u.%u.%u.0/24", a[0], a[1], a[2]);
}

/* kind, network, NUL, then (triplets) the digest of the addresses: the key's length. */
static size_t make_key(unsigned char *key, char kind, const char *net, const char *sender, const char *rcpt)
{
	size_t nl = strlen(net), k = 0;
	key[k++] = (unsigned char)kind;
	memcpy(key + k, net, nl);
	k += nl;
	key[k++] = '\0';
	if (kind != KIND_TRIPLET)
		return k;
	struct buf b = {0};
	buf_append_str(&b, sender);
	buf_append(&b, "", 1);
	buf_append_str(&b, rcpt);
	ascii_lower((char *)b.data, b.len);
	unsigned int len = 0;
	if (EVP_Digest(b.data, b.len, key + k, &len, EVP_sha256(), NULL) != 1)
		abort(); /* out of memory */
	buf_free(&b);
	return k + len;
}

static bool store_failed(struct greylist *g, int rc, int64_t now)
{
	if (rc >= 0)
		return false;
	if (now - g->last_error_log >= 60) {
		g->last_error_log = now;
		log_err("greylist", "store error (%s): letting mail through", strerror(-rc));
	}
	return true;
}

static int get_entry(struct greylist *g, const unsigned char *key, size_t klen, struct entry *e)
{
	size_t vlen = 0;
	unsigned char v[KV_VAL_MAX];
	int rc = kv_get(g->kv, key, klen, v, &vlen);
	if (rc == 1 && vlen != sizeof(*e))
		return 0; /* not ours: as if absent */
	if (rc == 1)
		memcpy(e, v, sizeof(*e));
	return rc;
}

static int put_entry(struct greylist *g, const unsigned char *key, size_t klen, char kind, int64_t t)
{
	struct entry e;
	memset(&e, 0, sizeof(e)); /* no stray padding bytes on disk */
	e.t = t;
	e.kind = (uint8_t)kind;
	return kv_put(g->kv, key, klen, &e, sizeof(e));
}

bool greylist_check(struct greylist *g, const struct sockaddr *client, const char *sender, const char *rcpt,
		    int64_t now, int64_t *retry_in)
{
	char net[INET6_ADDRSTRLEN + 8];
	greylist_network(client, net, sizeof(net));
	unsigned char key[1 + sizeof(net) + 1 + 32];
	struct entry e;
	size_t klen = make_key(key, KIND_PASSED, net, NULL, NULL);
	int rc = get_entry(g, key, klen, &e);
	if (store_failed(g, rc, now))
		return true;
	if (rc == 1 && e.t > now)
		return true; /* the network has shown it retries */
	size_t tlen = make_key(key, KIND_TRIPLET, net, sender, rcpt);
	rc = get_entry(g, key, tlen, &e);
	if (store_failed(g, rc, now))
		return true;
	if (rc == 1 && now - e.t >= g->delay_s && now - e.t <= GREYLIST_RETRY_WINDOW) {
		kv_del(g->kv, key, tlen);
		klen = make_key(key, KIND_PASSED, net, NULL, NULL);
		store_failed(g, put_entry(g, key, klen, KIND_PASSED, now + GREYLIST_PASS_TTL), now);
		log_info("greylist", "client=%s from=<%s> to=<%s> passed after %" PRId64 "s: the network passes for 30d",
			 net, sender, rcpt, now - e.t);
		return true;
	}
	if (rc == 1 && now - e.t < g->delay_s) {
		*retry_in = g->delay_s - (now - e.t);
		return false;
	}
	/* First seen, or seen too long ago to count as a retry: the clock starts now. */
	if (store_failed(g, put_entry(g, key, tlen, KIND_TRIPLET, now), now))
		return true;
	*retry_in = g->delay_s;
	return false;
}

struct sweep_ctx {
	int64_t now;
};

static bool stale(const void *val, size_t vlen, void *arg)
{
	const struct sweep_ctx *c = arg;
	struct entry e;
	if (vlen != sizeof(e))
		return true;
	memcpy(&e, val, sizeof(e));
	return e.kind == KIND_PASSED ? e.t <= c->now : c->now - e.t > GREYLIST_RETRY_WINDOW;
}

size_t greylist_sweep(struct greylist *g, int64_t now)
{
	struct sweep_ctx c = {now};
	return kv_sweep(g->kv, SWEEP_BATCH, stale, &c);
}
