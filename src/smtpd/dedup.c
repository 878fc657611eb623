/*
 * dedup: see dedup.h. A hash table of keys plus a FIFO in arrival order,
 * so entries older than the window are dropped from the front in O(1)
 * each; memory is bounded by the messages received in one window.
 */
#include "dedup.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	unsigned char key[DEDUP_KEY_LEN];
	uint64_t id;
	int64_t at;
	struct entry *next;
};

struct dedup {
	int64_t window;
	struct htab keys; /* key -> struct entry */
	struct entry *head, *tail;
};

struct dedup *dedup_new(int64_t window_s)
{
	struct dedup *d = xcalloc(1, sizeof(*d));
	d->window = window_s;
	return d;
}

void dedup_free(struct dedup *d)
{
	if (!d)
		return;
	for (struct entry *e = d->head, *next; e; e = next) {
		next = e->next;
		free(e);
	}
	htab_free(&d->keys);
	free(d);
}

static int cmp_str(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

void dedup_key(const char *message_id, const struct spool_env *env, const unsigned char content_sha256[32],
	       unsigned char key[DEDUP_KEY_LEN])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		abort();
	const char **rcpts = xcalloc(env->nrcpt + 1, sizeof(*rcpts));
	for (uint32_t i = 0; i < env->nrcpt; i++)
		rcpts[i] = env->rcpts[i].addr;
	qsort(rcpts, env->nrcpt, sizeof(*rcpts), cmp_str);
	EVP_DigestUpdate(ctx, message_id, strlen(message_id) + 1);
	EVP_DigestUpdate(ctx, env->sender, strlen(env->sender) + 1);
	for (uint32_t i = 0; i < env->nrcpt; i++) {
		char *lower = xstrdup(rcpts[i]);
		size_t n = strlen(lower);
		ascii_lower(lower, n);
		EVP_DigestUpdate(ctx, lower, n);
		free(lower);
		EVP_DigestUpdate(ctx, "", 1);
	}
	EVP_DigestUpdate(ctx, content_sha256, 32);
	unsigned int len = 0;
	EVP_DigestFinal_ex(ctx, key, &len);
	EVP_MD_CTX_free(ctx);
	free(rcpts);
}

static void expire(struct dedup *d, int64_t now)
{
	while (d->head && d->head->at + d->window <= now) {
		struct entry *e = d->head;
		d->head = e->next;
		if (!d->head)
			d->tail = NULL;
		if (htab_get_str(&d->keys, (const char *)e->key, DEDUP_KEY_LEN) == e)
			htab_del_str(&d->keys, (const char *)e->key, DEDUP_KEY_LEN);
		free(e);
	}
}

bool dedup_find(struct dedup *d, const unsigned char key[DEDUP_KEY_LEN], int64_t now, uint64_t *orig)
{
	expire(d, now);
	struct entry *e = htab_get_str(&d->keys, (const char *)key, DEDUP_KEY_LEN);
	if (!e)
		return false;
	*orig = e->id;
	return true;
}

void dedup_add(struct dedup *d, const unsigned char key[DEDUP_KEY_LEN], uint64_t id, int64_t at)
{
	struct entry *e = xcalloc(1, sizeof(*e));
	memcpy(e->key, key, DEDUP_KEY_LEN);
	e->id = id;
	e->at = at;
	/* Arrival order: replayed messages come in id order, new ones after them. */
	if (d->tail)
		d->tail->next = e;
	else
		d->head = e;
	d->tail = e;
	htab_put_str(&d->keys, (const char *)key, DEDUP_KEY_LEN, e);
}
