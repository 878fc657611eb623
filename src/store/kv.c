/*
 * kv: the LMDB store behind kv.h. One environment, one unnamed database;
 * every call is one short transaction on the loop's thread (a read
 * transaction for kv_get, a write transaction otherwise); a sync thread
 * makes the writes durable every sync interval.
 * Invariants: the sync thread touches nothing but mdb_env_sync and its own
 * stop flag (under mu); sweep_key holds the key the last sweep stopped at.
 * Error policy: LMDB errors come back as -errno (the LMDB codes without an
 * errno are -EIO), logged once by the caller.
 */
#include "kv.h"

#include <errno.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/util.h"

struct kv {
	MDB_env *env;
	MDB_dbi dbi;
	pthread_t syncer;
	bool syncer_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	int64_t sync_s;
	unsigned char sweep_key[KV_KEY_MAX];
	size_t sweep_klen;
};

static int err(int rc)
{
	if (rc == 0)
		return 0;
	if (rc == MDB_MAP_FULL)
		return -ENOSPC;
	return rc > 0 ? -rc : -EIO; /* LMDB's own codes are negative */
}

static void *sync_loop(void *arg)
{
	struct kv *kv = arg;
	pthread_mutex_lock(&kv->mu);
	while (!kv->stop) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += kv->sync_s;
		pthread_cond_timedwait(&kv->cv, &kv->mu, &until);
		pthread_mutex_unlock(&kv->mu);
		int rc = mdb_env_sync(kv->env, 1);
		if (rc)
			log_warn("store", "sync failed: %s", mdb_strerror(rc));
		pthread_mutex_lock(&kv->mu);
	}
	pthread_mutex_unlock(&kv->mu);
	return NULL;
}

int kv_open(int dirfd, uint64_t map_bytes, int64_t sync_s, struct kv **out)
{
	struct kv *kv = xcalloc(1, sizeof(*kv));
	kv->sync_s = sync_s > 0 ? sync_s : 1;
	pthread_mutex_init(&kv->mu, NULL);
	pthread_cond_init(&kv->cv, NULL);
	/* Through the directory's fd: the path above it may be closed to us after the privilege drop. */
	char path[64];
	if (fmt(path, sizeof(path), "/proc/self/fd/%d", dirfd) < 0) {
		kv_close(kv);
		return -EINVAL;
	}
	MDB_txn *txn = NULL;
	int rc = mdb_env_create(&kv->env);
	if (!rc)
		rc = mdb_env_set_mapsize(kv->env, (size_t)map_bytes);
	if (!rc)
		rc = mdb_env_open(kv->env, path, MDB_NOSYNC | MDB_NOMETASYNC | MDB_NOTLS, 0600);
	if (!rc)
		rc = mdb_txn_begin(kv->env, NULL, 0, &txn);
	if (!rc)
		rc = mdb_dbi_open(txn, NULL, 0, &kv->dbi);
	if (!rc) {
		rc = mdb_txn_commit(txn);
		txn = NULL;
	}
	if (txn)
		mdb_txn_abort(txn);
	if (!rc && pthread_create(&kv->syncer, NULL, sync_loop, kv) == 0)
		kv->syncer_started = true;
	else if (!rc)
		rc = EAGAIN;
	if (rc) {
		log_err("store", "cannot open the store: %s", mdb_strerror(rc));
		kv_close(kv);
		return err(rc);
	}
	*out = kv;
	return 0;
}

void kv_close(struct kv *kv)
{
	if (!kv)
		return;
	if (kv->syncer_started) {
		pthread_mutex_lock(&kv->mu);
		kv->stop = true;
		pthread_cond_signal(&kv->cv);
		pthread_mutex_unlock(&kv->mu);
		pthread_join(kv->syncer, NULL);
	}
	if (kv->env) {
		mdb_env_sync(kv->env, 1);
		mdb_env_close(kv->env);
	}
	pthread_cond_destroy(&kv->cv);
	pthread_mutex_destroy(&kv->mu);
	free(kv);
}

int kv_get(struct kv *kv, const void *key, size_t klen, void *val, size_t *vlen)
{
	if (klen == 0 || klen > KV_KEY_MAX)
		return -EINVAL;
	MDB_txn *txn;
	int rc = mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &txn);
	if (rc)
		return err(rc);
	MDB_val k = {klen, (void *)key}, v;
	rc = mdb_get(txn, kv->dbi, &k, &v);
	int ret = rc == MDB_NOTFOUND ? 0 : rc ? err(rc) : 1;
	if (ret == 1) {
		*vlen = v.mv_size < KV_VAL_MAX ? v.mv_size : KV_VAL_MAX;
		memcpy(val, v.mv_data, *vlen);
	}
	mdb_txn_abort(txn);
	return ret;
}

int kv_put(struct kv *kv, const void *key, size_t klen, const void *val, size_t vlen)
{
	if (klen == 0 || klen > KV_KEY_MAX || vlen > KV_VAL_MAX)
		return -EINVAL;
	MDB_txn *txn;
	int rc = mdb_txn_begin(kv->env, NULL, 0, &txn);
	if (rc)
		return err(rc);
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
	rc = mdb_put(txn, kv->dbi, &k, &v, 0);
	if (rc) {
		mdb_txn_abort(txn);
		return err(rc);
	}
	return err(mdb_txn_commit(txn));
}

int kv_del(struct kv *kv, const void *key, size_t klen)
{
	if (klen == 0 || klen > KV_KEY_MAX)
		return -EINVAL;
	MDB_txn *txn;
	int rc = mdb_txn_begin(kv->env, NULL, 0, &txn);
	if (rc)
		return err(rc);
	MDB_val k = {klen, (void *)key};
	rc = mdb_del(txn, kv->dbi, &k, NULL);
	if (rc && rc != MDB_NOTFOUND) {
		mdb_txn_abort(txn);
		return err(rc);
	}
	return err(mdb_txn_commit(txn));
}

size_t kv_sweep(struct kv *kv, size_t max, kv_stale_fn *stale, void *arg)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	if (mdb_txn_begin(kv->env, NULL, 0, &txn))
		return 0;
	if (mdb_cursor_open(txn, kv->dbi, &cur)) {
		mdb_txn_abort(txn);
		return 0;
	}
	MDB_val k = {kv->sweep_klen, kv->sweep_key}, v;
	int rc = kv->sweep_klen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	size_t seen = 0, deleted = 0;
	kv->sweep_klen = 0; /* the end of the keys: the next sweep starts from the first */
	for (; rc == 0 && seen < max; seen++) {
		if (stale(v.mv_data, v.mv_size, arg) && mdb_cursor_del(cur, 0) == 0)
			deleted++;
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	if (rc == 0 && k.mv_size <= KV_KEY_MAX) { /* stopped at max: resume at this key */
		memcpy(kv->sweep_key, k.mv_data, k.mv_size);
		kv->sweep_klen = k.mv_size;
	}
	mdb_cursor_close(cur);
	if (mdb_txn_commit(txn))
		return 0;
	return deleted;
}

size_t kv_count(struct kv *kv)
{
	MDB_txn *txn;
	MDB_stat st;
	if (mdb_txn_begin(kv->env, NULL, MDB_RDONLY, &txn))
		return 0;
	int rc = mdb_stat(txn, kv->dbi, &st);
	mdb_txn_abort(txn);
	return rc ? 0 : st.ms_entries;
}
