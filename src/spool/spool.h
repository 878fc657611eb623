/*
 * spool: the durable message store. One append-only log split into segment
 * files; every session's records go into the same log, and one fdatasync
 * per batch makes all of them durable at once (group commit). The main
 * thread decides where each record goes and never touches the disk for
 * writing; a single I/O thread writes and syncs batches and reports back
 * through the event loop. Callbacks (spool_done_fn) run on the main thread,
 * only after the batch holding the record is on stable storage.
 * Format, invariants and crash states: docs/spool.md.
 */
#ifndef MXV_SPOOL_H
#define MXV_SPOOL_H

#include <stdbool.h>
#include <stdint.h>

#include "spool_rec.h"

struct event_base;
struct spool;
struct spool_txn;

struct spool_extent {
	uint32_t seg;
	uint32_t len;
	uint64_t off; /* payload offset within the segment file */
};

/* An acknowledged message, as the spool knows it. Owned by the spool. */
struct spool_msg {
	uint64_t id;
	struct spool_env env;
	struct spool_meta meta;
	struct spool_extent *ext;
	uint32_t next;
	uint32_t min_seg;  /* oldest segment holding one of its records */
	void *user;        /* the scheduler's state for this message */
};

typedef void spool_done_fn(void *arg, int err);
typedef void spool_msg_fn(void *arg, struct spool_msg *m);

struct spool_stats {
	uint64_t batches;      /* batches written */
	uint64_t syncs;        /* fdatasync calls */
	uint64_t sync_ns;      /* time spent in them */
	uint64_t bytes;        /* bytes written */
	uint64_t commits;      /* messages made durable */
	uint64_t failures;     /* batches that failed */
	uint64_t messages;     /* live messages */
	uint32_t segments;     /* segment files */
	uint64_t free_bytes;   /* free space for us in the spool's file system, at the last check (each second) */
};

/*
 * Before privileges are dropped: opens (creating, mode 0700) the spool
 * directory and, when owner is set, gives it and everything in it to
 * uid:gid (a spool left by a daemon that ran as root is taken over, and
 * logged). Returns a directory fd for spool_open, or -errno.
 */
int spool_dir_prepare(const char *dir, bool owner, uint32_t uid, uint32_t gid) MUST_CHECK;
/*
 * Opens the spool in dir (through dirfd from spool_dir_prepare, which it
 * takes over, or -1 to open dir itself), reads its key (creating SPOOL/key
 * for a new spool), recovers it, starts the I/O thread. -ENOKEY, logged,
 * when segments need a key that is missing or damaged.
 */
int spool_open(const char *dir, int dirfd, struct event_base *base, uint64_t min_free, struct spool **out) MUST_CHECK;
/*
 * A directory of the spool's for another module's own files (name: one
 * path component; the MTA-STS policy cache), created mode 0700 if missing:
 * an O_DIRECTORY fd (the caller's), or -errno. Through the spool's
 * directory fd, so it works after privileges are dropped whatever the
 * permissions of the path above the spool.
 */
int spool_open_subdir(struct spool *sp, const char *name) MUST_CHECK;
/* Recovers read-only (no repair, no thread, reads the key but never creates it): for `mxvault queue list`. */
int spool_open_readonly(const char *dir, struct spool **out) MUST_CHECK;
/* Flushes what is queued, stops the I/O thread, frees everything. */
void spool_close(struct spool *sp);

/*
 * Compaction (also run once a second by the spool itself): if the oldest
 * segment is held only by a few long-lived messages, copies them to the
 * head of the log so the segment can be removed once the copies are durable.
 */
void spool_compact(struct spool *sp);

/* For tests: segment size at which the log moves to a new file. */
void spool_set_segment_size(struct spool *sp, uint64_t bytes);
void spool_get_stats(const struct spool *sp, struct spool_stats *st);
/* The stored sizes of the messages held, summed: O(messages), for /metrics, not a hot path. */
uint64_t spool_held_bytes(const struct spool *sp);
/* False when free space is under min_free, or the disk recently said ENOSPC. */
bool spool_has_space(const struct spool *sp);
/* The bytes of its segment files and the free space of its file system (spool_usage.c): 0 or -errno. */
int spool_get_usage(const struct spool *sp, uint64_t *disk_bytes, uint64_t *free_bytes) MUST_CHECK;

/* --- back-pressure ------------------------------------------------------ */
/*
 * Message bytes staged in transactions or appended to the log that the I/O
 * thread has not yet made durable.
 * Above the limit (max_pending_bytes) the spool is congested: whoever
 * feeds it message content from a peer should stop reading from that peer
 * and wait for room, so a slow disk slows clients down instead of filling
 * memory. Appending is never refused: the limit is the callers' contract.
 */
typedef void spool_room_fn(void *arg);

/* Caller-owned; zero-initialised is "not waiting". */
struct spool_room_wait {
	spool_room_fn *fn;
	void *arg;
	struct spool_room_wait *prev, *next;
	bool queued;
};

void spool_set_pending_limit(struct spool *sp, uint64_t bytes);
uint64_t spool_pending_bytes(const struct spool *sp);
bool spool_is_congested(const struct spool *sp);
/*
 * Calls fn(arg) once pending bytes have fallen to three quarters of the
 * limit (from the event loop, never from inside this call). w must stay
 * valid until then or until spool_cancel_room.
 */
void spool_wait_room(struct spool *sp, struct spool_room_wait *w, spool_room_fn *fn, void *arg);
/* Stops waiting (a no-op if w is not waiting). */
void spool_cancel_room(struct spool *sp, struct spool_room_wait *w);
/*
 * Memory a receiver keeps for a message outside the spool (a DKIM
 * verifier's copy of the header section) counts as pending too, so that
 * max_pending_bytes bounds it: held when taken, released when freed.
 */
void spool_hold_bytes(struct spool *sp, size_t n);
void spool_release_bytes(struct spool *sp, size_t n);

/* --- receiving a message ---------------------------------------------- */
struct spool_txn *spool_txn_begin(struct spool *sp);
uint64_t spool_txn_id(const struct spool_txn *tx);
uint64_t spool_txn_size(const struct spool_txn *tx);
void spool_txn_write(struct spool_txn *tx, const void *p, size_t n);
/* Throws the message away (not yet committed). Frees tx. */
void spool_txn_abort(struct spool_txn *tx);
/*
 * Writes the envelope (copied; body_size and arrival are filled in) and
 * calls done(arg, 0) once the message is durable, or done(arg, -errno)
 * if it could not be made so. tx belongs to the spool from here on.
 */
void spool_txn_commit(struct spool_txn *tx, const struct spool_env *env, spool_done_fn *done, void *arg);
/* The caller of commit went away: the commit goes on, done is not called. */
void spool_txn_forget(struct spool_txn *tx);

/* --- the queue -------------------------------------------------------- */
/* Called for each message that becomes durable (commit, or at open). */
void spool_set_msg_hook(struct spool *sp, spool_msg_fn *fn, void *arg);
struct spool_msg *spool_msg_find(const struct spool *sp, uint64_t id);
/* Every live message in arrival (id) order. */
void spool_each_msg(const struct spool *sp, spool_msg_fn *fn, void *arg);
/* Reads body bytes [off, off+n): bytes read (short only at the end) or -errno. */
long spool_msg_read(struct spool *sp, const struct spool_msg *m, uint64_t off, void *p, size_t n) MUST_CHECK;
/*
 * The message as it is sent on: our Authentication-Results header (if
 * any), the header section milters changed (env.head, in place of the
 * first env.head_skip stored octets) or the stored one, then the rest of
 * the stored body. Its size, and bytes [off, off+n) of it (short only at
 * the end, or -errno).
 */
uint64_t spool_msg_out_size(const struct spool_msg *m);
long spool_msg_read_out(struct spool *sp, const struct spool_msg *m, uint64_t off, void *p, size_t n) MUST_CHECK;
/* Durable state changes; done may be NULL. The in-memory state changes at once. */
void spool_msg_set_rcpt(struct spool *sp, struct spool_msg *m, uint32_t idx, uint8_t state, uint16_t code,
			const char *reply, spool_done_fn *done, void *arg);
void spool_msg_set_meta(struct spool *sp, struct spool_msg *m, const struct spool_meta *meta, spool_done_fn *done,
			void *arg);
/* Every recipient is final: forget the message (m is freed). */
void spool_msg_done(struct spool *sp, struct spool_msg *m, spool_done_fn *done, void *arg);

/* --- held destinations (spool_held.c) --------------------------------- */
/*
 * SPOOL/held-domains: the destinations `mxvault queue hold DOMAIN` holds.
 * Blocking, on the spool's directory: for an administrator's command and
 * for start-up, never per message.
 */
#define SPOOL_HELD_MAX 1000
#define SPOOL_DOMAIN_MAX 253
struct spool_held {
	char domain[SPOOL_DOMAIN_MAX + 1]; /* lower case, LDH, dots */
	int64_t since;                     /* wall seconds: when the hold began */
};
/* True for a name the file can hold: 1..253 of [a-z0-9._-]. */
bool spool_held_domain_ok(const char *domain);
/* The list (*out: malloc'd, NULL when empty; *bad: lines skipped). 0 or -errno; no file is an empty list. */
int spool_held_read(struct spool *sp, struct spool_held **out, size_t *n, size_t *bad) MUST_CHECK;
/* Replaces the list atomically (temporary file, fsync, rename, directory fsync). 0 or -errno. */
int spool_held_write(struct spool *sp, const struct spool_held *v, size_t n) MUST_CHECK;

/* At most this many segment files are held open for reading (see daemon.c's fd budget). */
#define SPOOL_MAX_READ_FDS 64

/* "%016llx" of a queue id. */
void spool_id_str(uint64_t id, char out[17]);
/* An ID as spool_id_str prints it (16 hex digits, either case): true and *id. */
bool spool_id_parse(const char *s, uint64_t *id);

#endif
