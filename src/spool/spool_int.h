/*
 * spool_int: private to spool.c, spool_io.c and spool_replay.c.
 * Threading: fields marked [mu] are shared with the I/O thread and read or
 * written only with sp->mu held; [main] fields belong to the event-loop
 * thread, [io] fields to the I/O thread. Records are made (and their MACs
 * computed) only by the main thread, in spool_append and replay: the I/O
 * thread writes bytes it is handed, so one MAC context per spool suffices.
 */
#ifndef MXV_SPOOL_INT_H
#define MXV_SPOOL_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "spool.h"

#define SPOOL_SEG_MAX_DEFAULT (64u << 20)
#define SPOOL_SEG_MAGIC_TEXT "mxvault spool segment v2"

/* A run of records for one segment, written and synced as a unit. */
struct batch {
	uint64_t no;
	uint32_t seg;
	uint64_t off;       /* where data starts in the segment */
	bool creates_seg;   /* data starts with the SEGMENT record of a new file */
	struct buf data;
	int err;            /* set by the I/O thread: 0 or -errno */
	struct batch *next;
};

/* Someone waiting for a batch to become durable. */
struct spool_wait {
	uint64_t batch;        /* the batch holding the last record */
	uint64_t first_batch;  /* the batch holding the first record (a txn's first DATA) */
	spool_done_fn *done;
	void *arg;
	struct spool_txn *tx;  /* for commits */
	struct spool_wait *next;
};

struct spool_txn {
	struct spool *sp;
	uint64_t id;
	struct buf chunk;          /* body bytes not yet in the log */
	uint64_t size;
	struct spool_extent *ext;
	uint32_t next, cap;
	uint32_t first_seg;        /* UINT32_MAX until the first record */
	uint64_t first_batch;
	struct spool_env env;
	struct spool_wait wait;
	bool committing;
};

#define SPOOL_SYNC_OBS_MAX 64

struct spool {
	char *dir;
	int dirfd;
	bool readonly;
	struct spool_mac *mac;     /* [main] from SPOOL/key; NULL only read-only with no key and no v2 segment */
	uint64_t seg_max;
	uint64_t min_free;

	/* [mu] shared with the I/O thread */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct batch *todo_head, *todo_tail;
	struct batch *open;        /* the batch main may still append to */
	struct batch *done_head, *done_tail;
	uint32_t *unlink_q;
	size_t nunlink, unlink_cap;
	bool stop;
	struct spool_stats io_stats;
	/* fdatasync times (ns) not yet handed to the metrics by the loop; more are dropped */
	uint64_t sync_obs[SPOOL_SYNC_OBS_MAX];
	uint32_t nsync_obs;

	/* [io] */
	pthread_t thread;
	bool thread_started;
	int wfd;
	uint32_t wseg;
	uint32_t poisoned_seg;
	int poisoned_err;          /* why: later batches of that segment fail with it */

	/* [main] */
	struct event_base *base;
	struct event *notify_ev;
	struct event *space_ev;
	int efd;
	uint32_t cur_seg;
	uint64_t cur_off;          /* 0: the next record starts a new segment */
	uint64_t next_batch_no;
	uint64_t durable_batch;
	uint64_t last_failed_batch;
	int last_failed_err;
	struct spool_wait *wait_head, *wait_tail;
	struct htab msgs;          /* id -> struct spool_msg */
	uint64_t last_id;
	uint64_t commits;
	uint32_t oldest_seg;       /* segments [oldest_seg, cur_seg] may exist */
	uint32_t *pins;            /* pins[seg - oldest_seg]: live users of that segment */
	size_t npins;
	struct htab rfds;          /* seg -> read fd + 1 */
	bool space_ok;
	uint64_t free_bytes;       /* at the last check_space */
	uint64_t commits_seen;     /* commits at the last I/O report, for the batch-size histogram */
	uint32_t copies_in_flight; /* compaction copies not yet durable */
	int64_t enospc_until_ms;
	spool_msg_fn *hook;
	void *hook_arg;
	uint64_t pending_bytes;    /* staged in transactions or appended, not yet reported durable (or failed) */
	uint64_t pending_limit;    /* 0: no limit */
	struct spool_room_wait *room_head, *room_tail;
	struct event *room_ev;     /* runs the room waiters from the loop */
};

/* spool.c */
uint64_t spool_append(struct spool *sp, uint8_t type, uint64_t id, const void *p, uint32_t n,
		      struct spool_extent *where);
void spool_pin(struct spool *sp, uint32_t seg);
void spool_unpin(struct spool *sp, uint32_t seg);
struct spool_msg *spool_msg_new(struct spool *sp, uint64_t id);
void spool_msg_free(struct spool_msg *m);
int spool_seg_fd(struct spool *sp, uint32_t seg);
void spool_add_waiter(struct spool *sp, struct spool_wait *w);
void spool_seg_name(uint32_t seg, char out[32]);

/* spool_dir.c */
/* Every NNNNNNNN.seg in the directory, in order (*out is malloc'd). */
int spool_list_segments(struct spool *sp, uint32_t **out, size_t *n) MUST_CHECK;
/*
 * Reads SPOOL/key into sp->mac, first creating it (read-write only) if no
 * segment needs it. -ENOKEY, logged, if segments need a key that is
 * missing or damaged.
 */
int spool_key_open(struct spool *sp) MUST_CHECK;

/* spool_io.c */
int spool_io_start(struct spool *sp) MUST_CHECK;
void spool_io_stop(struct spool *sp);
void spool_io_kick(struct spool *sp);

/* spool_compact.c */
void spool_compact_step(struct spool *sp);

/* spool_replay.c */
int spool_replay(struct spool *sp) MUST_CHECK;

#endif
