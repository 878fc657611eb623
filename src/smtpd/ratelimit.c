/*
 * ratelimit: see ratelimit.h. A hash table (keyed SipHash: a peer cannot
 * choose colliding keys) over a doubly linked list in order of last use;
 * the list's head is evicted when the table is full. Error policy: nothing
 * fails (out of memory is fatal, as everywhere).
 */
#include "ratelimit.h"

#include <stdlib.h>
#include <string.h>

#include "base/util.h"

/* A client key: an address, or an IPv6 /64 ("2001:db8::/64"). */
#define RATELIMIT_KEY_MAX 64

struct rl_entry {
	struct rl_entry *prev, *next; /* prev: used longer ago */
	int64_t start;                /* the window's first event */
	uint32_t count;
	char key[RATELIMIT_KEY_MAX];
};

struct ratelimit {
	struct htab index;            /* key -> struct rl_entry */
	struct rl_entry *oldest, *newest;
	size_t n, cap;
};

struct ratelimit *ratelimit_new(size_t cap)
{
	struct ratelimit *t = xcalloc(1, sizeof(*t));
	t->cap = cap ? cap : 1;
	return t;
}

static void unlink_entry(struct ratelimit *t, struct rl_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		t->oldest = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		t->newest = e->prev;
	e->prev = e->next = NULL;
}

static void append_entry(struct ratelimit *t, struct rl_entry *e)
{
	e->prev = t->newest;
	e->next = NULL;
	if (t->newest)
		t->newest->next = e;
	else
		t->oldest = e;
	t->newest = e;
}

static void drop_entry(struct ratelimit *t, struct rl_entry *e)
{
	unlink_entry(t, e);
	htab_del_str(&t->index, e->key, strlen(e->key));
	t->n--;
	free(e);
}

void ratelimit_free(struct ratelimit *t)
{
	if (!t)
		return;
	while (t->oldest)
		drop_entry(t, t->oldest);
	htab_free(&t->index);
	free(t);
}

/* key's entry with a live window, or NULL (an expired one is forgotten here). */
static struct rl_entry *find_live(struct ratelimit *t, const char *key, size_t len, int64_t period, int64_t now)
{
	struct rl_entry *e = htab_get_str(&t->index, key, len);
	if (e && (now - e->start >= period || now < e->start)) {
		drop_entry(t, e);
		return NULL;
	}
	return e;
}

uint32_t ratelimit_hit(struct ratelimit *t, const char *key, int64_t period, int64_t now)
{
	size_t len = strnlen(key, RATELIMIT_KEY_MAX - 1);
	struct rl_entry *e = find_live(t, key, len, period, now);
	if (e) {
		unlink_entry(t, e);
		append_entry(t, e);
		if (e->count < UINT32_MAX)
			e->count++;
		return e->count;
	}
	if (t->n == t->cap)
		drop_entry(t, t->oldest);
	e = xcalloc(1, sizeof(*e));
	memcpy(e->key, key, len);
	e->start = now;
	e->count = 1;
	append_entry(t, e);
	htab_put_str(&t->index, e->key, len, e);
	t->n++;
	return 1;
}

uint32_t ratelimit_count(struct ratelimit *t, const char *key, int64_t period, int64_t now)
{
	struct rl_entry *e = find_live(t, key, strnlen(key, RATELIMIT_KEY_MAX - 1), period, now);
	return e ? e->count : 0;
}

size_t ratelimit_size(const struct ratelimit *t)
{
	return t->n;
}
