/*
 * learned: the recipients learned from the primary (issue 9). An address
 * (lower-cased "local@domain") maps to good or bad with the time it was
 * last confirmed: by a callout at RCPT, or by a delivery to the primary.
 * Lives in LMDB under SPOOL/learned/ and survives restarts; it is a cache,
 * so losing its last seconds in a crash costs only a callout each.
 *
 * Contract:
 * - learned_get runs on the event loop: one LMDB read transaction on the
 *   memory map, no write, no fsync; on a miss, a scan of the puts still
 *   queued (so a get sees every put made before it). An entry older than
 *   ttl is reported as LEARNED_UNKNOWN (expired).
 * - learned_put never blocks on the disk: it appends to a bounded queue
 *   that the store's writer thread applies in one write transaction per
 *   batch (a put made when the queue is full is dropped and counted).
 * - Durability is periodic: the environment is opened with MDB_NOSYNC and
 *   MDB_NOMETASYNC, and the writer thread calls mdb_env_sync every
 *   LEARNED_SYNC_S seconds and at close. That thread also deletes expired
 *   entries, a bounded batch at a time.
 * - Size is bounded: the map is LEARNED_MAP_SIZE; at max_entries a new
 *   address is not added (updates of known ones still are) until expiry
 *   makes room.
 * - An environment that cannot be opened as LMDB (corrupt after a crash
 *   without sync) is moved aside to learned.broken and a fresh one made.
 * Functions return 0 or a negative errno; learned_open reports why it
 * failed in the log.
 */
#ifndef MXV_LEARNED_H
#define MXV_LEARNED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define LEARNED_MAP_SIZE ((size_t)256 << 20)
#define LEARNED_MAX_ENTRIES 500000
#define LEARNED_SYNC_S 5
#define LEARNED_QUEUE_MAX 8192
#define LEARNED_KEY_MAX 320

enum learned_verdict { LEARNED_UNKNOWN = 0, LEARNED_GOOD, LEARNED_BAD };

struct learned;

struct learned_stats {
	uint64_t entries;   /* in the store at the last batch */
	uint64_t dropped;   /* puts dropped: queue full, store full or address too long */
	uint64_t expired;   /* entries deleted by expiry */
	uint64_t syncs;     /* mdb_env_sync calls made */
};

/*
 * Opens (creating) the store in the directory dirfd (an O_DIRECTORY fd the
 * store takes over, also on failure; opened through /proc/self/fd, so it
 * works after privileges are dropped whatever the permissions of the path
 * above; the files are created by whoever runs this: call it after the
 * drop), and starts its writer thread. shown: the directory's name for
 * logs. ttl: seconds an entry is trusted; max_entries: 0 for
 * LEARNED_MAX_ENTRIES.
 */
int learned_open(int dirfd, const char *shown, int64_t ttl, uint64_t max_entries, struct learned **out) MUST_CHECK;
/* Applies what is queued, syncs, stops the thread, closes. NULL is ignored. */
void learned_close(struct learned *l);
/* addr: any case, at most LEARNED_KEY_MAX bytes. when: confirmed at (Unix seconds, out, may be NULL). */
enum learned_verdict learned_get(struct learned *l, const char *addr, int64_t now, int64_t *when);
/* Queues addr as good or bad, confirmed at now. */
void learned_put(struct learned *l, const char *addr, bool good, int64_t now);
/* Waits until every put queued before the call is applied (tests and shutdown; blocks). */
void learned_flush(struct learned *l);
void learned_get_stats(struct learned *l, struct learned_stats *st);

#endif
