/*
 * kv: a small persistent key-value store for what the daemon learns and
 * must remember across restarts (greylisting triplets; issue 9), on LMDB
 * in a directory of the spool. Keys and values are byte strings (keys at
 * most KV_KEY_MAX, values at most KV_VAL_MAX); the store is bounded by its
 * map size (full: puts fail with -ENOSPC, the caller decides).
 *
 * The event loop never waits for the disk: the environment is opened with
 * MDB_NOSYNC (a commit is a memory write into the map), and a thread of
 * the store's own calls mdb_env_sync every sync interval and at close. A
 * crash loses at most the last interval's writes: acceptable for what is
 * kept here (a forgotten greylist entry greylists its sender once more),
 * never for mail, which lives in the spool. One writer: the loop's thread.
 */
#ifndef MXV_KV_H
#define MXV_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KV_KEY_MAX 511 /* LMDB's default key limit */
#define KV_VAL_MAX 64

struct kv;

/*
 * Opens (creating) the store in the directory dirfd (the caller's, e.g.
 * from spool_open_subdir) with a map of map_bytes; sync_s: seconds between
 * syncs. 0 or -errno.
 */
int kv_open(int dirfd, uint64_t map_bytes, int64_t sync_s, struct kv **out);
/* Syncs, stops the thread, closes. NULL is a no-op. */
void kv_close(struct kv *kv);
/* 1 and *vlen set (val: KV_VAL_MAX bytes) when found, 0 when not, -errno on error. */
int kv_get(struct kv *kv, const void *key, size_t klen, void *val, size_t *vlen);
int kv_put(struct kv *kv, const void *key, size_t klen, const void *val, size_t vlen);
/* 0 also when the key was not there. */
int kv_del(struct kv *kv, const void *key, size_t klen);
/*
 * Visits at most max entries from where the previous sweep stopped
 * (wrapping around), deleting those for which stale(val) says so: bounded
 * work per call, for a timer on the loop. Returns the number deleted.
 */
typedef bool kv_stale_fn(const void *val, size_t vlen, void *arg);
size_t kv_sweep(struct kv *kv, size_t max, kv_stale_fn *stale, void *arg);
/* Entries in the store. */
size_t kv_count(struct kv *kv);

#endif
