/*
 * mta_sts: see mta_sts.h. Called by tls_policy, once per connection attempt
 * to a domain with tls = mta-sts (or auto without DANE).
 *
 * Owns a bounded table of domains (MAX_DOMAINS; the least recently asked
 * one without a lookup under way makes room), each with its cached policy
 * (loaded from the cache directory the first time the domain is asked) and
 * at most one lookup under way: an op. Gets for a domain with an op wait on
 * it, so concurrent connections share one TXT lookup and one fetch. An op
 * goes TXT -> addresses of mta-sts.DOMAIN -> (a fetch slot: at most
 * MAX_FETCHES at once, the others queue) -> HTTPS fetch -> answer. Its
 * answer is the fresh policy, else the cached unexpired one (RFC 8461 3.1,
 * 5.1: a TXT record gone or a failed refresh does not end it), else NONE
 * (no TXT record) or TEMPFAIL (a record, but no policy).
 *
 * Detaching: mta_sts_free answers every waiter with CANCELLED. An op waiting
 * on the resolver stays behind with m = NULL and is freed by its DNS
 * callback (at dns_free at the latest); the other stages are freed at once
 * (the fetcher drops its transfers without callbacks).
 * Error policy: out of memory is fatal; no cache directory leaves the cache
 * in memory only, a cache file that cannot be written is logged; everything
 * else is an answer with a why.
 */
#include "mta_sts.h"

#include <errno.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/dns.h"
#include "base/log.h"
#include "mta_sts_cache.h"
#include "mta_sts_fetch.h"

#define MAX_DOMAINS 1024 /* policies kept in memory */
#define MAX_FETCHES 8    /* HTTPS fetches at once */
#define MAX_ADDRS 8      /* addresses of mta-sts.DOMAIN handed to curl */
#define HTTPS_PORT 443

struct sts_waiter {
	mta_sts_fn *fn;
	void *arg;
	struct sts_waiter *next;
};

enum op_stage { OP_LATER, OP_TXT, OP_ADDRS, OP_QUEUED, OP_FETCH };

struct sts_entry {
	char domain[256];
	bool have;                /* policy holds a cached policy */
	struct mta_sts_policy policy;
	int64_t expires;          /* fetched_at + max_age */
	int64_t asked_ms;         /* the last get, for making room */
	struct sts_op *op;        /* the lookup under way, or NULL */
};

struct sts_op {
	struct mta_sts *m;        /* NULL once detached (m is gone) */
	struct sts_op *prev, *next, *queue_next;
	struct sts_entry *e;      /* NULL for OP_LATER */
	enum op_stage stage;
	struct sts_waiter *waiters;
	char domain[256];
	char id[33];              /* the TXT record's */
	struct dns_addr addrs[MAX_ADDRS];
	size_t naddrs;
	struct event *later;      /* OP_LATER: answers from the loop */
	enum mta_sts_status later_st;
	char later_why[96];
};

struct mta_sts {
	struct event_base *base;
	struct dns *dns;
	struct mta_sts_fetcher *fetcher;
	int cache_dirfd;          /* -1: the cache is in memory only */
	struct htab domains;      /* domain -> struct sts_entry */
	struct sts_op *ops;       /* every op not yet answered */
	struct sts_op *queue_head, *queue_tail; /* OP_QUEUED, in order */
	size_t fetching;
};

static const char *mode_str(enum mta_sts_mode mode)
{
	return mode == MTA_STS_MODE_ENFORCE ? "enforce" : mode == MTA_STS_MODE_TESTING ? "testing" : "none";
}

/* --- ops ---------------------------------------------------------------------- */

static struct sts_op *op_new(struct mta_sts *m, struct sts_entry *e, const char *domain, enum op_stage stage)
{
	struct sts_op *op = xcalloc(1, sizeof(*op));
	op->m = m;
	op->e = e;
	op->stage = stage;
	snprintf(op->domain, sizeof(op->domain), "%s", domain);
	op->next = m->ops;
	if (op->next)
		op->next->prev = op;
	m->ops = op;
	if (e)
		e->op = op;
	return op;
}

static void op_wait(struct sts_op *op, mta_sts_fn *fn, void *arg)
{
	struct sts_waiter *w = xcalloc(1, sizeof(*w));
	w->fn = fn;
	w->arg = arg;
	w->next = op->waiters;
	op->waiters = w;
}

/* Takes op off m and its entry; the waiters are the caller's. */
static struct sts_waiter *op_detach(struct sts_op *op)
{
	struct mta_sts *m = op->m;
	if (op->prev)
		op->prev->next = op->next;
	else
		m->ops = op->next;
	if (op->next)
		op->next->prev = op->prev;
	if (op->e)
		op->e->op = NULL;
	struct sts_waiter *w = op->waiters;
	op->waiters = NULL;
	op->m = NULL;
	op->e = NULL;
	return w;
}

static void op_free(struct sts_op *op)
{
	if (op->later)
		event_free(op->later);
	free(op);
}

static void run_waiters(struct sts_waiter *w, enum mta_sts_status st, const struct mta_sts_policy *p, const char *why)
{
	while (w) {
		struct sts_waiter *next = w->next;
		w->fn(w->arg, st, p, why);
		free(w);
		w = next;
	}
}

/* Answers every waiter and frees op. m is not touched once the callbacks start. */
static void op_answer(struct sts_op *op, enum mta_sts_status st, const struct mta_sts_policy *p, const char *why)
{
	struct mta_sts_policy *copy = NULL;
	if (p) { /* the entry may be reused by a get from a callback */
		copy = xmalloc(sizeof(*copy));
		*copy = *p;
	}
	struct sts_waiter *w = op_detach(op);
	op_free(op);
	run_waiters(w, st, copy, why);
	free(copy);
}

/* The cached policy when it still holds, else st (NONE or TEMPFAIL) with why. */
static void op_answer_cached_or(struct sts_op *op, enum mta_sts_status st, const char *why)
{
	struct sts_entry *e = op->e;
	if (e->have && clock_wall_s() < e->expires) {
		op_answer(op, MTA_STS_OK, &e->policy, NULL);
		return;
	}
	e->have = false;
	op_answer(op, st, NULL, why);
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct sts_op *op = arg;
	op_answer(op, op->later_st, NULL, op->later_st == MTA_STS_TEMPFAIL ? op->later_why : NULL);
}

/* A get answered without a lookup: from the loop, never inside mta_sts_get. */
static void answer_later(struct mta_sts *m, const char *domain, enum mta_sts_status st, const char *why, mta_sts_fn *fn,
			 void *arg)
{
	static const struct timeval zero = {0, 0};
	struct sts_op *op = op_new(m, NULL, domain, OP_LATER);
	op_wait(op, fn, arg);
	op->later_st = st;
	snprintf(op->later_why, sizeof(op->later_why), "%s", why);
	op->later = evtimer_new(m->base, on_later, op);
	if (!op->later || evtimer_add(op->later, &zero) < 0)
		abort();
}

/* --- the fetch ----------------------------------------------------------------- */

static void fetch_start(struct sts_op *op);

static void fetch_next_queued(struct mta_sts *m)
{
	while (m->queue_head && m->fetching < MAX_FETCHES) {
		struct sts_op *op = m->queue_head;
		m->queue_head = op->queue_next;
		if (!m->queue_head)
			m->queue_tail = NULL;
		op->queue_next = NULL;
		fetch_start(op);
	}
}

/* Keeps a fetched policy in memory and on disk. */
static void keep_policy(struct mta_sts *m, struct sts_entry *e, const struct mta_sts_policy *p, const char *body,
			size_t n)
{
	int64_t now = clock_wall_s();
	e->policy = *p;
	e->have = true;
	e->expires = now + p->max_age;
	if (m->cache_dirfd < 0)
		return;
	int rc = mta_sts_cache_store(m->cache_dirfd, e->domain, now, p->id, body, n);
	if (rc < 0)
		log_warn("mta-sts", "domain=%s cache write failed: %s", e->domain, strerror(-rc));
}

static void on_fetched(void *arg, const char *body, size_t n, const char *why)
{
	struct sts_op *op = arg;
	struct mta_sts *m = op->m;
	m->fetching--;
	fetch_next_queued(m);
	struct mta_sts_policy *p = xmalloc(sizeof(*p));
	char perr[96] = "";
	if (body && mta_sts_parse_policy(body, n, p, perr, sizeof(perr)) < 0)
		why = perr;
	if (why) {
		log_warn("mta-sts", "domain=%s id=%s fetch failed: %s", op->domain, op->id, why);
		char text[160];
		snprintf(text, sizeof(text), "policy fetch failed: %s", why);
		op_answer_cached_or(op, MTA_STS_TEMPFAIL, text);
	} else {
		memcpy(p->id, op->id, sizeof(p->id));
		log_info("mta-sts", "domain=%s fetched id=%s mode=%s max_age=%" PRId64 " mx=%zu", op->domain, p->id,
			 mode_str(p->mode), p->max_age, p->nmx);
		keep_policy(m, op->e, p, body, n);
		op_answer(op, MTA_STS_OK, p, NULL);
	}
	free(p);
}

static void fetch_start(struct sts_op *op)
{
	struct mta_sts *m = op->m;
	int rc = mta_sts_fetch_start(m->fetcher, op->domain, op->addrs, op->naddrs, on_fetched, op);
	if (rc < 0) {
		log_warn("mta-sts", "domain=%s fetch failed: %s", op->domain, strerror(-rc));
		op_answer_cached_or(op, MTA_STS_TEMPFAIL, "policy fetch failed: cannot start it");
		return;
	}
	op->stage = OP_FETCH;
	m->fetching++;
}

/* --- the lookups ------------------------------------------------------------- */

static void on_addrs(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n)
{
	struct sts_op *op = arg;
	if (!op->m) { /* detached: its waiters had their answer */
		op_free(op);
		return;
	}
	if (st == DNS_CANCELLED) {
		op_answer(op, MTA_STS_CANCELLED, NULL, NULL);
		return;
	}
	if (st != DNS_OK) {
		char why[400];
		snprintf(why, sizeof(why), "policy fetch failed: mta-sts.%s has no address (%s)", op->domain,
			 dns_status_str(st));
		log_warn("mta-sts", "domain=%s id=%s fetch failed: mta-sts.%s has no address (%s)", op->domain, op->id,
			 op->domain, dns_status_str(st));
		op_answer_cached_or(op, MTA_STS_TEMPFAIL, why);
		return;
	}
	op->naddrs = n < MAX_ADDRS ? n : MAX_ADDRS;
	memcpy(op->addrs, addrs, op->naddrs * sizeof(*addrs));
	struct mta_sts *m = op->m;
	if (m->fetching < MAX_FETCHES) {
		fetch_start(op);
		return;
	}
	op->stage = OP_QUEUED;
	if (m->queue_tail)
		m->queue_tail->queue_next = op;
	else
		m->queue_head = op;
	m->queue_tail = op;
}

static void on_txt(void *arg, enum dns_status st, const char *const *txt, size_t n)
{
	struct sts_op *op = arg;
	if (!op->m) {
		op_free(op);
		return;
	}
	if (st == DNS_CANCELLED) {
		op_answer(op, MTA_STS_CANCELLED, NULL, NULL);
		return;
	}
	if (st != DNS_OK && st != DNS_NODATA && st != DNS_NXDOMAIN) {
		char why[400];
		snprintf(why, sizeof(why), "TXT lookup of _mta-sts.%s failed (%s)", op->domain, dns_status_str(st));
		op_answer_cached_or(op, MTA_STS_TEMPFAIL, why);
		return;
	}
	if ((st == DNS_OK ? mta_sts_pick_txt(txt, n, op->id) : -ENOENT) < 0) {
		op_answer_cached_or(op, MTA_STS_NONE, NULL); /* RFC 8461 3.1: no (valid) record */
		return;
	}
	struct sts_entry *e = op->e;
	if (e->have && strcmp(e->policy.id, op->id) == 0 && clock_wall_s() < e->expires) {
		op_answer(op, MTA_STS_OK, &e->policy, NULL); /* RFC 8461 3.1: the same id, the same policy */
		return;
	}
	char host[300];
	snprintf(host, sizeof(host), "mta-sts.%s", op->domain);
	op->stage = OP_ADDRS;
	dns_lookup_addrs(op->m->dns, host, HTTPS_PORT, on_addrs, op);
}

/* --- domains ---------------------------------------------------------------- */

/* Frees the least recently asked entry without an op; false when every entry has one. */
static bool make_room(struct mta_sts *m)
{
	size_t n;
	void **all = htab_values(&m->domains, &n);
	struct sts_entry *oldest = NULL;
	for (size_t i = 0; i < n; i++) {
		struct sts_entry *e = all[i];
		if (!e->op && (!oldest || e->asked_ms < oldest->asked_ms))
			oldest = e;
	}
	free(all);
	if (!oldest)
		return false;
	htab_del_str(&m->domains, oldest->domain, strlen(oldest->domain));
	free(oldest);
	return true;
}

static void entry_load(struct mta_sts *m, struct sts_entry *e)
{
	int64_t fetched_at, now = clock_wall_s();
	if (m->cache_dirfd < 0 || mta_sts_cache_load(m->cache_dirfd, e->domain, now, &e->policy, &fetched_at) < 0)
		return; /* none, damaged, or from the future: the next fetch writes a new one */
	e->expires = fetched_at + e->policy.max_age; /* both bounded: a year at most past now + skew */
	e->have = now < e->expires;
	if (e->have)
		log_debug("mta-sts", "domain=%s cached id=%s mode=%s", e->domain, e->policy.id, mode_str(e->policy.mode));
}

/* The entry of domain, made (and loaded from disk) if new; NULL when the table is full of lookups. */
static struct sts_entry *entry_of(struct mta_sts *m, const char *domain)
{
	size_t len = strlen(domain);
	struct sts_entry *e = htab_get_str(&m->domains, domain, len);
	if (!e) {
		if (m->domains.count >= MAX_DOMAINS && !make_room(m))
			return NULL;
		e = xcalloc(1, sizeof(*e));
		memcpy(e->domain, domain, len + 1);
		htab_put_str(&m->domains, domain, len, e);
		entry_load(m, e);
	}
	e->asked_ms = clock_mono_ms();
	return e;
}

/* --- the API ------------------------------------------------------------------ */

void mta_sts_get(struct mta_sts *m, const char *domain, mta_sts_fn *fn, void *arg)
{
	size_t len = strlen(domain);
	if (!is_host_name(domain, len) || len > 240) { /* "_mta-sts." must still fit */
		answer_later(m, domain, MTA_STS_NONE, "", fn, arg);
		return;
	}
	struct sts_entry *e = entry_of(m, domain);
	if (!e) {
		answer_later(m, domain, MTA_STS_TEMPFAIL, "too many MTA-STS lookups under way", fn, arg);
		return;
	}
	if (e->op) {
		op_wait(e->op, fn, arg); /* one lookup and one fetch for every connection that asks */
		return;
	}
	struct sts_op *op = op_new(m, e, domain, OP_TXT);
	op_wait(op, fn, arg);
	char name[300];
	snprintf(name, sizeof(name), "_mta-sts.%s", domain);
	dns_lookup_txt(m->dns, name, on_txt, op);
}

struct mta_sts *mta_sts_new(struct event_base *base, struct dns *dns, int cache_dirfd, const char *ca_file)
{
	struct mta_sts_fetcher *f = mta_sts_fetcher_new(base, ca_file);
	if (!f) {
		log_err("mta-sts", "libcurl cannot be set up");
		if (cache_dirfd >= 0)
			close(cache_dirfd);
		return NULL;
	}
	if (ca_file && access(ca_file, R_OK) < 0) /* curl reads it at the first fetch, as the daemon's user */
		log_warn("mta-sts", "tls_ca_file %s is not readable (%s): every policy fetch will fail", ca_file,
			 strerror(errno));
	struct mta_sts *m = xcalloc(1, sizeof(*m));
	m->base = base;
	m->dns = dns;
	m->fetcher = f;
	m->cache_dirfd = cache_dirfd;
	return m;
}

static void free_entry(void *val, void *arg)
{
	(void)arg;
	free(val);
}

void mta_sts_free(struct mta_sts *m)
{
	if (!m)
		return;
	struct sts_waiter *cancelled = NULL;
	while (m->ops) {
		struct sts_op *op = m->ops;
		enum op_stage stage = op->stage;
		struct sts_waiter *w = op_detach(op);
		while (w) {
			struct sts_waiter *next = w->next;
			w->next = cancelled;
			cancelled = w;
			w = next;
		}
		if (stage != OP_TXT && stage != OP_ADDRS)
			op_free(op); /* else the resolver still holds it: freed by its callback */
	}
	mta_sts_fetcher_free(m->fetcher);
	htab_each(&m->domains, free_entry, NULL);
	htab_free(&m->domains);
	if (m->cache_dirfd >= 0)
		close(m->cache_dirfd);
	free(m);
	run_waiters(cancelled, MTA_STS_CANCELLED, NULL, NULL);
}
