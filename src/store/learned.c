/*
 * learned: see learned.h. Owns the LMDB environment of SPOOL/learned/ and
 * its writer thread. The event loop only reads (learned_get: a read-only
 * transaction, which in LMDB takes no lock and never waits for the writer)
 * and queues writes (learned_put: a mutex held for a memcpy). The writer
 * thread owns every write transaction, the periodic mdb_env_sync and the
 * expiry sweep, so no fsync and no write lock is ever taken on the loop.
 *
 * Why a thread rather than a timer on the loop: mdb_env_sync is an fsync
 * of the data file, which can take tens of milliseconds under load, and a
 * write transaction commits by writing pages; both would stall every
 * session if run on the loop. Crash states: with MDB_NOSYNC a crash loses
 * at most the last LEARNED_SYNC_S seconds of learning (those addresses are
 * asked again); a crash that leaves the file unreadable makes learned_open
 * move it aside and start empty. Either way no mail is lost: the store
 * only decides whether the primary must be asked.
 *
 * Value: 1 byte verdict (1 good, 2 bad), 8 bytes confirmed-at (Unix
 * seconds, host order: the file never leaves this host).
 */
#include "learned.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

#define VALUE_LEN 9
#define SWEEP_BATCH 1000

struct put {
	uint8_t verdict;
	int64_t when;
	uint16_t len;
	char key[LEARNED_KEY_MAX];
};

struct learned {
	int dirfd;
	MDB_env *env;
	MDB_dbi dbi;
	int64_t ttl;
	uint64_t max_entries;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t wake;   /* the writer: work queued, or stopping */
	pthread_cond_t done;   /* learned_flush: a batch was applied */
	struct put *q;         /* ring of LEARNED_QUEUE_MAX */
	size_t qhead, qlen;
	uint64_t queued, applied; /* puts ever queued / applied (or dropped) by the writer */
	bool stopping;
	const struct put *inflight; /* the batch being written, still visible to gets until committed */
	size_t ninflight;
	/* the writer's own */
	char sweep_from[LEARNED_KEY_MAX];
	size_t sweep_len;
	struct learned_stats st; /* under mu */
};

static int lower_key(const char *addr, char *out, size_t *n)
{
	size_t len = strlen(addr);
	if (len == 0 || len > LEARNED_KEY_MAX)
		return -ENAMETOOLONG;
	memcpy(out, addr, len);
	ascii_lower(out, len);
	*n = len;
	return 0;
}

/* --- the writer thread --------------------------------------------------- */

static void apply_one(struct learned *l, MDB_txn *txn, const struct put *p, uint64_t *entries, uint64_t *dropped)
{
	MDB_val k = {p->len, (void *)p->key}, old;
	bool exists = mdb_get(txn, l->dbi, &k, &old) == 0;
	if (!exists && *entries >= l->max_entries) {
		(*dropped)++;
		return;
	}
	unsigned char v[VALUE_LEN];
	v[0] = p->verdict;
	memcpy(v + 1, &p->when, sizeof(p->when));
	MDB_val val = {VALUE_LEN, v};
	int rc = mdb_put(txn, l->dbi, &k, &val, 0);
	if (rc != 0) {
		(*dropped)++; /* MDB_MAP_FULL and the like: the cache just does not grow */
		return;
	}
	if (!exists)
		(*entries)++;
}

/* Deletes expired entries: at most SWEEP_BATCH visited, from where the last sweep stopped. */
static uint64_t sweep(struct learned *l, MDB_txn *txn, int64_t now)
{
	MDB_cursor *cur;
	if (mdb_cursor_open(txn, l->dbi, &cur) != 0)
		return 0;
	MDB_val k = {l->sweep_len, l->sweep_from}, v;
	int rc = l->sweep_len ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	uint64_t gone = 0;
	int n = 0;
	for (; rc == 0 && n < SWEEP_BATCH; n++) {
		int64_t when = 0;
		if (v.mv_size == VALUE_LEN)
			memcpy(&when, (char *)v.mv_data + 1, sizeof(when));
		if (v.mv_size != VALUE_LEN || when + l->ttl < now) {
			if (mdb_cursor_del(cur, 0) == 0)
				gone++;
			rc = mdb_cursor_get(cur, &k, &v, MDB_GET_CURRENT);
			if (rc != 0)
				rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (rc == 0 && k.mv_size <= sizeof(l->sweep_from)) {
		memcpy(l->sweep_from, k.mv_data, k.mv_size);
		l->sweep_len = k.mv_size;
	} else {
		l->sweep_len = 0; /* wrapped: the next sweep starts over */
	}
	mdb_cursor_close(cur);
	return gone;
}

/* One write transaction: the batch taken from the queue, then a sweep when due. */
static void write_batch(struct learned *l, const struct put *batch, size_t n, bool do_sweep, uint64_t *dropped,
			uint64_t *expired, uint64_t *entries)
{
	MDB_txn *txn;
	if (mdb_txn_begin(l->env, NULL, 0, &txn) != 0) {
		*dropped += n;
		return;
	}
	MDB_stat ms;
	*entries = mdb_stat(txn, l->dbi, &ms) == 0 ? ms.ms_entries : 0;
	for (size_t i = 0; i < n; i++)
		apply_one(l, txn, &batch[i], entries, dropped);
	if (do_sweep) {
		uint64_t gone = sweep(l, txn, clock_wall_s());
		*expired += gone;
		*entries -= gone < *entries ? gone : *entries;
	}
	if (mdb_txn_commit(txn) != 0)
		*dropped += n;
}

static void *writer(void *arg)
{
	struct learned *l = arg;
	struct put *batch = xmalloc(sizeof(*batch) * LEARNED_QUEUE_MAX);
	int64_t next_sync = clock_mono_ms() + LEARNED_SYNC_S * 1000;
	pthread_mutex_lock(&l->mu);
	for (;;) {
		while (!l->qlen && !l->stopping && clock_mono_ms() < next_sync) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&l->wake, &l->mu, &ts);
		}
		size_t n = l->qlen;
		for (size_t i = 0; i < n; i++)
			batch[i] = l->q[(l->qhead + i) % LEARNED_QUEUE_MAX];
		l->qhead = (l->qhead + n) % LEARNED_QUEUE_MAX;
		l->qlen = 0;
		l->inflight = batch;
		l->ninflight = n;
		bool stopping = l->stopping;
		bool due = clock_mono_ms() >= next_sync;
		pthread_mutex_unlock(&l->mu);

		uint64_t dropped = 0, expired = 0, entries = 0;
		if (n || due)
			write_batch(l, batch, n, due, &dropped, &expired, &entries);
		if (due || stopping) {
			mdb_env_sync(l->env, 1);
			next_sync = clock_mono_ms() + LEARNED_SYNC_S * 1000;
		}

		pthread_mutex_lock(&l->mu);
		l->ninflight = 0;
		l->applied += n;
		l->st.dropped += dropped;
		l->st.expired += expired;
		if (n || due)
			l->st.entries = entries;
		l->st.syncs += due || stopping;
		pthread_cond_broadcast(&l->done);
		if (stopping && !l->qlen)
			break;
	}
	pthread_mutex_unlock(&l->mu);
	free(batch);
	return NULL;
}

/* --- opening ------------------------------------------------------------- */

static int open_env(struct learned *l, const char *dir)
{
	int rc = mdb_env_create(&l->env);
	if (rc == 0)
		rc = mdb_env_set_mapsize(l->env, LEARNED_MAP_SIZE);
	if (rc == 0)
		rc = mdb_env_set_maxreaders(l->env, 16);
	/* MDB_NOTLS: read transactions are not tied to a thread (the loop and the writer). */
	if (rc == 0)
		rc = mdb_env_open(l->env, dir, MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS, 0600);
	MDB_txn *txn = NULL;
	if (rc == 0)
		rc = mdb_txn_begin(l->env, NULL, 0, &txn);
	if (rc == 0)
		rc = mdb_dbi_open(txn, NULL, 0, &l->dbi);
	if (rc == 0) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (txn)
		mdb_txn_abort(txn);
	if (rc != 0 && l->env) {
		mdb_env_close(l->env);
		l->env = NULL;
	}
	return rc;
}

int learned_open(int dirfd, const char *shown, int64_t ttl, uint64_t max_entries, struct learned **out)
{
	*out = NULL;
	char dir[64];
	if (fmt(dir, sizeof(dir), "/proc/self/fd/%d", dirfd) < 0) {
		close(dirfd);
		return -EINVAL;
	}
	struct learned *l = xcalloc(1, sizeof(*l));
	l->dirfd = dirfd;
	l->ttl = ttl;
	l->max_entries = max_entries ? max_entries : LEARNED_MAX_ENTRIES;
	int rc = open_env(l, dir);
	if (rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_VERSION_MISMATCH || rc == MDB_PAGE_NOTFOUND) {
		/* A cache: keep the damaged file for a look, and start empty. */
		if (renameat(dirfd, "data.mdb", dirfd, "data.mdb.broken") == 0) {
			log_warn("learned", "%s/data.mdb was unreadable (%s): moved aside to data.mdb.broken, starting empty",
				 shown, mdb_strerror(rc));
			rc = open_env(l, dir);
		}
	}
	if (rc != 0) {
		log_err("learned", "cannot open %s: %s", shown, mdb_strerror(rc));
		close(dirfd);
		free(l);
		return rc > 0 ? -EIO : rc;
	}
	l->q = xmalloc(sizeof(*l->q) * LEARNED_QUEUE_MAX);
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->wake, NULL);
	pthread_cond_init(&l->done, NULL);
	rc = pthread_create(&l->thread, NULL, writer, l);
	if (rc != 0) {
		log_err("learned", "cannot start the writer thread: %s", strerror(rc));
		mdb_env_close(l->env);
		close(dirfd);
		free(l->q);
		free(l);
		return -rc;
	}
	*out = l;
	return 0;
}

void learned_close(struct learned *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&l->mu);
	l->stopping = true;
	pthread_cond_signal(&l->wake);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->thread, NULL);
	mdb_env_close(l->env);
	close(l->dirfd);
	pthread_mutex_destroy(&l->mu);
	pthread_cond_destroy(&l->wake);
	pthread_cond_destroy(&l->done);
	free(l->q);
	free(l);
}

/* --- the loop's side ----------------------------------------------------- */

/*
 * The newest put of key still queued or being written (so a get sees every
 * put made before it): its verdict (LEARNED_UNKNOWN if expired), or -1 if
 * there is none. The writer empties the queue within a batch, so this scan
 * is short; it costs a mutex on every get.
 */
static int queued_verdict(struct learned *l, const char *key, size_t n, int64_t now, int64_t *at)
{
	int r = -1;
	pthread_mutex_lock(&l->mu);
	for (size_t i = l->qlen + l->ninflight; i-- > 0;) {
		const struct put *p = i >= l->ninflight ? &l->q[(l->qhead + i - l->ninflight) % LEARNED_QUEUE_MAX]
							: &l->inflight[i];
		if (p->len == n && memcmp(p->key, key, n) == 0) {
			r = p->when + l->ttl >= now ? p->verdict : LEARNED_UNKNOWN;
			*at = p->when;
			break;
		}
	}
	pthread_mutex_unlock(&l->mu);
	return r;
}

enum learned_verdict learned_get(struct learned *l, const char *addr, int64_t now, int64_t *when)
{
	char key[LEARNED_KEY_MAX];
	size_t n;
	int64_t at = 0;
	if (when)
		*when = 0;
	if (lower_key(addr, key, &n) < 0)
		return LEARNED_UNKNOWN;
	/* A put not yet written is newer than what the store holds. */
	int found = queued_verdict(l, key, n, now, &at);
	if (found >= 0) {
		if (when && found != LEARNED_UNKNOWN)
			*when = at;
		return (enum learned_verdict)found;
	}
	MDB_txn *txn;
	if (mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn) != 0)
		return LEARNED_UNKNOWN;
	MDB_val k = {n, key}, v;
	enum learned_verdict r = LEARNED_UNKNOWN;
	if (mdb_get(txn, l->dbi, &k, &v) == 0 && v.mv_size == VALUE_LEN) {
		memcpy(&at, (char *)v.mv_data + 1, sizeof(at));
		uint8_t verdict = *(uint8_t *)v.mv_data;
		if (at + l->ttl >= now && (verdict == LEARNED_GOOD || verdict == LEARNED_BAD))
			r = (enum learned_verdict)verdict;
	}
	mdb_txn_abort(txn);
	if (when && r != LEARNED_UNKNOWN)
		*when = at;
	return r;
}

void learned_put(struct learned *l, const char *addr, bool good, int64_t now)
{
	struct put p = {.verdict = good ? LEARNED_GOOD : LEARNED_BAD, .when = now};
	size_t n;
	if (lower_key(addr, p.key, &n) < 0) {
		pthread_mutex_lock(&l->mu);
		l->st.dropped++;
		pthread_mutex_unlock(&l->mu);
		return;
	}
	p.len = (uint16_t)n;
	pthread_mutex_lock(&l->mu);
	if (l->qlen == LEARNED_QUEUE_MAX) {
		l->st.dropped++;
	} else {
		l->q[(l->qhead + l->qlen) % LEARNED_QUEUE_MAX] = p;
		l->qlen++;
		l->queued++;
		pthread_cond_signal(&l->wake);
	}
	pthread_mutex_unlock(&l->mu);
}

void learned_flush(struct learned *l)
{
	pthread_mutex_lock(&l->mu);
	uint64_t want = l->queued;
	pthread_cond_signal(&l->wake);
	while (l->applied < want)
		pthread_cond_wait(&l->done, &l->mu);
	pthread_mutex_unlock(&l->mu);
}

void learned_get_stats(struct learned *l, struct learned_stats *st)
{
	pthread_mutex_lock(&l->mu);
	*st = l->st;
	pthread_mutex_unlock(&l->mu);
}
