/*
 * spool: the public API over the log (see spool.h and docs/spool.md).
 * Owns record placement (which segment and offset each record gets), the
 * waiters for durability, the in-memory index of live messages, and
 * segment reclamation. Main thread only; spool_io.c does the writing and
 * syncing, spool_replay.c the recovery.
 *
 * Error policy: a batch the I/O thread could not make durable fails every
 * commit whose records touched it (their sessions answer 4xx), and the log
 * moves on to a fresh segment, so a half-written file is never appended to.
 */
#include "spool_int.h"

#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/log.h"
#include "base/metrics.h"

void spool_id_str(uint64_t id, char out[17])
{
	snprintf(out, 17, "%016" PRIx64, id);
}

bool spool_id_parse(const char *s, uint64_t *id)
{
	if (strlen(s) != 16 || strspn(s, "0123456789abcdefABCDEF") != 16)
		return false;
	*id = strtoull(s, NULL, 16);
	return true;
}

void spool_seg_name(uint32_t seg, char out[32])
{
	snprintf(out, 32, "%08" PRIx32 ".seg", seg);
}

/* --- segment pins ------------------------------------------------------ */

static uint32_t *pin_slot(struct spool *sp, uint32_t seg)
{
	if (seg < sp->oldest_seg)
		return NULL;
	size_t i = seg - sp->oldest_seg;
	if (i >= sp->npins) {
		size_t n = sp->npins ? sp->npins : 16;
		while (n <= i)
			n *= 2;
		sp->pins = xrealloc(sp->pins, n * sizeof(*sp->pins));
		memset(sp->pins + sp->npins, 0, (n - sp->npins) * sizeof(*sp->pins));
		sp->npins = n;
	}
	return &sp->pins[i];
}

void spool_pin(struct spool *sp, uint32_t seg)
{
	uint32_t *p = pin_slot(sp, seg);
	if (p)
		(*p)++;
}

static void close_rfd(struct spool *sp, uint32_t seg)
{
	void *v = htab_del_u64(&sp->rfds, seg);
	if (v)
		close((int)(intptr_t)v - 1);
}

/*
 * Segments are reclaimed oldest first, and only when nothing live has a
 * record in them: a DONE record can then never outlive the COMMIT it
 * cancels, so replaying any suffix of the log is correct (docs/spool.md).
 */
static void reclaim_segments(struct spool *sp)
{
	uint32_t shift = 0;
	while (sp->oldest_seg + shift < sp->cur_seg && shift < sp->npins && sp->pins[shift] == 0) {
		uint32_t seg = sp->oldest_seg + shift;
		close_rfd(sp, seg);
		if (!sp->readonly) {
			pthread_mutex_lock(&sp->mu);
			if (sp->nunlink == sp->unlink_cap) {
				sp->unlink_cap = sp->unlink_cap ? sp->unlink_cap * 2 : 8;
				sp->unlink_q = xrealloc(sp->unlink_q, sp->unlink_cap * sizeof(*sp->unlink_q));
			}
			sp->unlink_q[sp->nunlink++] = seg;
			pthread_mutex_unlock(&sp->mu);
		}
		shift++;
	}
	if (!shift)
		return;
	memmove(sp->pins, sp->pins + shift, (sp->npins - shift) * sizeof(*sp->pins));
	memset(sp->pins + sp->npins - shift, 0, shift * sizeof(*sp->pins));
	sp->oldest_seg += shift;
	if (!sp->readonly)
		spool_io_kick(sp);
}

void spool_unpin(struct spool *sp, uint32_t seg)
{
	uint32_t *p = pin_slot(sp, seg);
	if (p && *p)
		(*p)--;
	if (seg == sp->oldest_seg)
		reclaim_segments(sp);
}

/* --- appending --------------------------------------------------------- */

static struct batch *open_batch(struct spool *sp, bool creates_seg)
{
	struct batch *b = sp->open;
	if (b && b->seg == sp->cur_seg && !creates_seg)
		return b;
	b = xcalloc(1, sizeof(*b));
	b->no = ++sp->next_batch_no;
	b->seg = sp->cur_seg;
	b->off = sp->cur_off;
	b->creates_seg = creates_seg;
	if (sp->todo_tail)
		sp->todo_tail->next = b;
	else
		sp->todo_head = b;
	sp->todo_tail = b;
	sp->open = b;
	return b;
}

static uint64_t append_locked(struct spool *sp, uint8_t type, uint64_t id, const void *p, uint32_t n,
			      bool creates_seg, struct spool_extent *where)
{
	struct batch *b = open_batch(sp, creates_seg);
	if (where) {
		where->seg = sp->cur_seg;
		where->off = sp->cur_off + SPOOL_REC_HDR_SIZE;
		where->len = n;
	}
	spool_rec_append(sp->mac, &b->data, type, id, p, n);
	sp->cur_off += SPOOL_REC_HDR_SIZE + n;
	sp->pending_bytes += SPOOL_REC_HDR_SIZE + n; /* [main]: only the loop appends */
	return b->no;
}

/*
 * Places one record at the end of the log and returns the number of the
 * batch that will carry it to disk. Starts a new segment when the current
 * one is full or was poisoned by an I/O error.
 */
uint64_t spool_append(struct spool *sp, uint8_t type, uint64_t id, const void *p, uint32_t n,
		      struct spool_extent *where)
{
	assert(n <= SPOOL_REC_MAX_PAYLOAD); /* envelopes are bounded (spool_rec.c), the rest are small */
	pthread_mutex_lock(&sp->mu);
	if (sp->cur_off > 0 && sp->cur_off + SPOOL_REC_HDR_SIZE + n > sp->seg_max) {
		sp->cur_seg++;
		sp->cur_off = 0;
	}
	if (sp->cur_off == 0) {
		(void)pin_slot(sp, sp->cur_seg);
		append_locked(sp, SPOOL_REC_SEGMENT, sp->cur_seg, SPOOL_SEG_MAGIC_TEXT,
			      (uint32_t)strlen(SPOOL_SEG_MAGIC_TEXT), true, NULL);
	}
	uint64_t no = append_locked(sp, type, id, p, n, false, where);
	pthread_mutex_unlock(&sp->mu);
	spool_io_kick(sp);
	return no;
}

void spool_add_waiter(struct spool *sp, struct spool_wait *w)
{
	w->next = NULL;
	if (sp->wait_tail)
		sp->wait_tail->next = w;
	else
		sp->wait_head = w;
	sp->wait_tail = w;
}

static void append_and_wait(struct spool *sp, uint8_t type, uint64_t id, struct buf *payload, spool_done_fn *done,
			    void *arg)
{
	uint64_t no = spool_append(sp, type, id, payload->data, (uint32_t)payload->len, NULL);
	if (!done)
		return;
	struct spool_wait *w = xcalloc(1, sizeof(*w));
	w->batch = w->first_batch = no;
	w->done = done;
	w->arg = arg;
	spool_add_waiter(sp, w);
}

/* --- transactions ------------------------------------------------------ */

static uint64_t new_msg_id(struct spool *sp)
{
	/* Time-ordered and unique across restarts: replay restores last_id. */
	uint64_t t = (uint64_t)clock_wall_s() << 20;
	sp->last_id = t > sp->last_id ? t : sp->last_id + 1;
	return sp->last_id;
}

struct spool_txn *spool_txn_begin(struct spool *sp)
{
	struct spool_txn *tx = xcalloc(1, sizeof(*tx));
	tx->sp = sp;
	tx->id = new_msg_id(sp);
	tx->first_seg = UINT32_MAX;
	return tx;
}

uint64_t spool_txn_id(const struct spool_txn *tx)
{
	return tx->id;
}

uint64_t spool_txn_size(const struct spool_txn *tx)
{
	return tx->size;
}

static void txn_note_record(struct spool_txn *tx, uint64_t batch, uint32_t seg)
{
	if (tx->first_seg != UINT32_MAX)
		return;
	tx->first_seg = seg;
	tx->first_batch = batch;
	spool_pin(tx->sp, seg);
}

static void txn_flush_chunk(struct spool_txn *tx)
{
	if (tx->chunk.len == 0)
		return;
	if (tx->next == tx->cap) {
		tx->cap = tx->cap ? tx->cap * 2 : 4;
		tx->ext = xrealloc(tx->ext, tx->cap * sizeof(*tx->ext));
	}
	struct spool_extent *e = &tx->ext[tx->next++];
	tx->sp->pending_bytes -= tx->chunk.len; /* spool_append counts it again, as a record */
	uint64_t no = spool_append(tx->sp, SPOOL_REC_DATA, tx->id, tx->chunk.data, (uint32_t)tx->chunk.len, e);
	txn_note_record(tx, no, e->seg);
	buf_reset(&tx->chunk);
}

/*
 * Bytes staged in a transaction's chunk count as pending too: they wait for
 * the disk as much as a batch does, and a thousand sessions each holding
 * most of a chunk would otherwise escape max_pending_bytes.
 */
void spool_txn_write(struct spool_txn *tx, const void *p, size_t n)
{
	const unsigned char *s = p;
	tx->size += n;
	while (n) {
		size_t room = SPOOL_DATA_CHUNK - tx->chunk.len;
		size_t k = n < room ? n : room;
		buf_append(&tx->chunk, s, k);
		tx->sp->pending_bytes += k;
		s += k;
		n -= k;
		if (tx->chunk.len == SPOOL_DATA_CHUNK)
			txn_flush_chunk(tx);
	}
}

static void txn_free(struct spool_txn *tx)
{
	tx->sp->pending_bytes -= tx->chunk.len; /* staged, never appended */
	if (tx->first_seg != UINT32_MAX)
		spool_unpin(tx->sp, tx->first_seg);
	buf_free(&tx->chunk);
	free(tx->ext);
	spool_env_free(&tx->env);
	free(tx);
}

void spool_txn_abort(struct spool_txn *tx)
{
	if (tx->next > 0) {
		/* Tells recovery the DATA records already written are garbage. */
		spool_append(tx->sp, SPOOL_REC_ABORT, tx->id, "", 0, NULL);
	}
	txn_free(tx);
}

void spool_txn_commit(struct spool_txn *tx, const struct spool_env *env, spool_done_fn *done, void *arg)
{
	struct spool *sp = tx->sp;
	txn_flush_chunk(tx);
	spool_env_copy(&tx->env, env);
	tx->env.body_size = tx->size;
	struct buf payload = {0};
	spool_env_encode(&tx->env, &payload);
	struct spool_extent where;
	uint64_t no = spool_append(sp, SPOOL_REC_COMMIT, tx->id, payload.data, (uint32_t)payload.len, &where);
	buf_free(&payload);
	txn_note_record(tx, no, where.seg);
	tx->committing = true;
	tx->wait = (struct spool_wait){.batch = no, .first_batch = tx->first_batch, .done = done, .arg = arg, .tx = tx};
	spool_add_waiter(sp, &tx->wait);
}

void spool_txn_forget(struct spool_txn *tx)
{
	tx->wait.done = NULL;
}

/* --- the index --------------------------------------------------------- */

struct spool_msg *spool_msg_new(struct spool *sp, uint64_t id)
{
	struct spool_msg *m = xcalloc(1, sizeof(*m));
	m->id = id;
	htab_put_u64(&sp->msgs, id, m);
	if (id > sp->last_id)
		sp->last_id = id;
	return m;
}

void spool_msg_free(struct spool_msg *m)
{
	spool_env_free(&m->env);
	free(m->ext);
	free(m);
}

static void commit_succeeded(struct spool *sp, struct spool_txn *tx)
{
	struct spool_msg *m = spool_msg_new(sp, tx->id);
	m->env = tx->env;
	memset(&tx->env, 0, sizeof(tx->env));
	m->ext = tx->ext;
	m->next = tx->next;
	tx->ext = NULL;
	m->min_seg = tx->first_seg;
	tx->first_seg = UINT32_MAX; /* the pin moves from the txn to the message */
	sp->commits++;
	if (tx->wait.done)
		tx->wait.done(tx->wait.arg, 0);
	txn_free(tx);
	if (sp->hook)
		sp->hook(sp->hook_arg, m);
}

static void finish_waiter(struct spool *sp, struct spool_wait *w)
{
	int err = w->first_batch <= sp->last_failed_batch ? sp->last_failed_err : 0;
	if (w->tx) {
		if (err == 0) {
			commit_succeeded(sp, w->tx);
			return;
		}
		/*
		 * The COMMIT itself may be durable: a failed batch poisons only
		 * its own segment, and the rest of the message may have gone to
		 * the next one. Cancel it, so recovery does not bring back a
		 * message the client was told to retry (docs/spool.md, R5).
		 */
		spool_append(sp, SPOOL_REC_ABORT, w->tx->id, "", 0, NULL);
		if (w->done)
			w->done(w->arg, err);
		txn_free(w->tx);
		return;
	}
	if (w->done)
		w->done(w->arg, err);
	free(w);
}

/* --- back-pressure ------------------------------------------------------ */

void spool_set_pending_limit(struct spool *sp, uint64_t bytes)
{
	sp->pending_limit = bytes;
}

uint64_t spool_pending_bytes(const struct spool *sp)
{
	return sp->pending_bytes;
}

bool spool_is_congested(const struct spool *sp)
{
	return sp->pending_limit && sp->pending_bytes > sp->pending_limit;
}

static bool has_room(const struct spool *sp)
{
	return !sp->pending_limit || sp->pending_bytes <= sp->pending_limit / 4 * 3;
}

static void room_unlink(struct spool *sp, struct spool_room_wait *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		sp->room_head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		sp->room_tail = w->prev;
	w->prev = w->next = NULL;
	w->queued = false;
}

/* From the loop: wakes waiters in arrival order while there is room. */
static void run_room_waiters(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct spool *sp = arg;
	/* A woken waiter may append and wait again: it then queues behind the others. */
	struct spool_room_wait *last = sp->room_tail;
	while (sp->room_head && has_room(sp)) {
		struct spool_room_wait *w = sp->room_head;
		room_unlink(sp, w);
		w->fn(w->arg);
		if (w == last)
			break;
	}
}

static void kick_room_waiters(struct spool *sp)
{
	if (sp->room_head && has_room(sp) && sp->room_ev)
		event_active(sp->room_ev, EV_TIMEOUT, 0);
}

void spool_wait_room(struct spool *sp, struct spool_room_wait *w, spool_room_fn *fn, void *arg)
{
	if (w->queued)
		room_unlink(sp, w);
	w->fn = fn;
	w->arg = arg;
	w->next = NULL;
	w->prev = sp->room_tail;
	if (sp->room_tail)
		sp->room_tail->next = w;
	else
		sp->room_head = w;
	sp->room_tail = w;
	w->queued = true;
	kick_room_waiters(sp);
}

void spool_cancel_room(struct spool *sp, struct spool_room_wait *w)
{
	if (w->queued)
		room_unlink(sp, w);
}

void spool_hold_bytes(struct spool *sp, size_t n)
{
	sp->pending_bytes += n;
}

void spool_release_bytes(struct spool *sp, size_t n)
{
	sp->pending_bytes -= n;
	kick_room_waiters(sp);
}

/* --- durability ---------------------------------------------------------- */

static void batch_finished(struct spool *sp, struct batch *b)
{
	sp->durable_batch = b->no;
	sp->pending_bytes -= b->data.len;
	if (b->err) {
		char name[32];
		spool_seg_name(b->seg, name);
		log_err("spool", "batch=%" PRIu64 " segment=%s bytes=%zu not durable: %s", b->no, name, b->data.len,
			strerror(-b->err));
		sp->last_failed_batch = b->no;
		sp->last_failed_err = b->err;
		if (b->err == -ENOSPC)
			sp->enospc_until_ms = clock_mono_ms() + 1000;
		pthread_mutex_lock(&sp->mu);
		if (sp->cur_seg == b->seg) {
			/* Never append after a failed write: move to a fresh segment. */
			sp->cur_seg++;
			sp->cur_off = 0;
		}
		pthread_mutex_unlock(&sp->mu);
	}
	while (sp->wait_head && sp->wait_head->batch <= sp->durable_batch) {
		struct spool_wait *w = sp->wait_head;
		sp->wait_head = w->next;
		if (!sp->wait_head)
			sp->wait_tail = NULL;
		finish_waiter(sp, w);
	}
}

/* The metrics of one I/O report, on the loop: the messages it made durable, the time each sync took. */
static void observe_io(struct spool *sp, const uint64_t *took, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		metrics_observe(METRIC_H_FSYNC, (double)took[i] / 1e9);
	if (sp->commits > sp->commits_seen)
		metrics_observe(METRIC_H_COMMIT_BATCH, (double)(sp->commits - sp->commits_seen));
	sp->commits_seen = sp->commits;
}

static void on_io_done(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct spool *sp = arg;
	uint64_t v;
	if (read(fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		log_err("spool", "eventfd read: %s", strerror(errno));
	uint64_t took[SPOOL_SYNC_OBS_MAX];
	pthread_mutex_lock(&sp->mu);
	struct batch *b = sp->done_head;
	sp->done_head = sp->done_tail = NULL;
	uint32_t ntook = sp->nsync_obs;
	memcpy(took, sp->sync_obs, ntook * sizeof(took[0]));
	sp->nsync_obs = 0;
	pthread_mutex_unlock(&sp->mu);
	while (b) {
		struct batch *next = b->next;
		batch_finished(sp, b);
		buf_free(&b->data);
		free(b);
		b = next;
	}
	observe_io(sp, took, ntook);
	kick_room_waiters(sp);
}

static void check_space(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct spool *sp = arg;
	struct statvfs st;
	bool ok = true;
	if (fstatvfs(sp->dirfd, &st) == 0) {
		sp->free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
		ok = sp->free_bytes >= sp->min_free;
	}
	if (ok != sp->space_ok)
		log_warn("spool", "free space in %s is %s the minimum of %" PRIu64 " bytes", sp->dir,
			 ok ? "back above" : "below", sp->min_free);
	sp->space_ok = ok;
	spool_compact_step(sp);
}

bool spool_has_space(const struct spool *sp)
{
	return sp->space_ok && clock_mono_ms() >= sp->enospc_until_ms;
}

/* --- open and close ---------------------------------------------------- */

static struct spool *spool_alloc(const char *dir, bool readonly)
{
	struct spool *sp = xcalloc(1, sizeof(*sp));
	sp->dir = xstrdup(dir);
	sp->readonly = readonly;
	sp->seg_max = SPOOL_SEG_MAX_DEFAULT;
	sp->dirfd = sp->efd = sp->wfd = -1;
	sp->poisoned_seg = UINT32_MAX;
	sp->space_ok = true;
	pthread_mutex_init(&sp->mu, NULL);
	pthread_cond_init(&sp->cv, NULL);
	return sp;
}

/* Opens the directory unless spool_dir_prepare did, and makes corrupt/. */
static int open_dir(struct spool *sp)
{
	if (sp->dirfd < 0 && !sp->readonly && mkdir(sp->dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	if (sp->dirfd < 0)
		sp->dirfd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (sp->dirfd < 0)
		return -errno;
	if (!sp->readonly && mkdirat(sp->dirfd, "corrupt", 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int spool_open_readonly(const char *dir, struct spool **out)
{
	struct spool *sp = spool_alloc(dir, true);
	int rc = open_dir(sp);
	if (rc == 0)
		rc = spool_key_open(sp);
	if (rc == 0)
		rc = spool_replay(sp);
	if (rc < 0) {
		spool_close(sp);
		return rc;
	}
	*out = sp;
	return 0;
}

int spool_open(const char *dir, int dirfd, struct event_base *base, uint64_t min_free, struct spool **out)
{
	struct spool *sp = spool_alloc(dir, false);
	sp->base = base;
	sp->min_free = min_free;
	sp->dirfd = dirfd;
	int rc = open_dir(sp);
	if (rc == 0)
		rc = spool_key_open(sp); /* through dirfd: the daemon has dropped root by now */
	if (rc == 0)
		rc = spool_replay(sp);
	if (rc == 0) {
		sp->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (sp->efd < 0)
			rc = -errno;
	}
	if (rc == 0)
		rc = spool_io_start(sp);
	if (rc < 0) {
		spool_close(sp);
		return rc;
	}
	reclaim_segments(sp);
	sp->notify_ev = event_new(base, sp->efd, EV_READ | EV_PERSIST, on_io_done, sp);
	event_add(sp->notify_ev, NULL);
	sp->room_ev = event_new(base, -1, 0, run_room_waiters, sp);
	sp->space_ev = event_new(base, -1, EV_PERSIST, check_space, sp);
	struct timeval one_second = {1, 0};
	event_add(sp->space_ev, &one_second);
	check_space(-1, 0, sp);
	*out = sp;
	return 0;
}

static void free_msg_cb(void *val, void *arg)
{
	(void)arg;
	spool_msg_free(val);
}

static void close_fd_cb(void *val, void *arg)
{
	(void)arg;
	close((int)(intptr_t)val - 1);
}

void spool_close(struct spool *sp)
{
	if (!sp)
		return;
	if (sp->thread_started) {
		spool_io_stop(sp);
		on_io_done(sp->efd, 0, sp);
	}
	while (sp->wait_head) {
		/* Only reached if the thread died: nothing is durable. */
		struct spool_wait *w = sp->wait_head;
		sp->wait_head = w->next;
		sp->last_failed_batch = UINT64_MAX;
		sp->last_failed_err = -EIO;
		finish_waiter(sp, w);
	}
	if (sp->notify_ev)
		event_free(sp->notify_ev);
	if (sp->space_ev)
		event_free(sp->space_ev);
	if (sp->room_ev)
		event_free(sp->room_ev);
	htab_each(&sp->msgs, free_msg_cb, NULL);
	htab_free(&sp->msgs);
	htab_each(&sp->rfds, close_fd_cb, NULL);
	htab_free(&sp->rfds);
	if (sp->efd >= 0)
		close(sp->efd);
	if (sp->dirfd >= 0)
		close(sp->dirfd);
	pthread_mutex_destroy(&sp->mu);
	pthread_cond_destroy(&sp->cv);
	spool_mac_free(sp->mac);
	free(sp->pins);
	free(sp->unlink_q);
	free(sp->dir);
	free(sp);
}

void spool_set_segment_size(struct spool *sp, uint64_t bytes)
{
	sp->seg_max = bytes;
}

void spool_get_stats(const struct spool *sp, struct spool_stats *st)
{
	pthread_mutex_lock((pthread_mutex_t *)&sp->mu);
	*st = sp->io_stats;
	pthread_mutex_unlock((pthread_mutex_t *)&sp->mu);
	st->commits = sp->commits;
	st->free_bytes = sp->free_bytes;
	st->messages = sp->msgs.count;
	st->segments = sp->cur_seg >= sp->oldest_seg ? sp->cur_seg - sp->oldest_seg + 1 : 0;
}

static void add_body_size(void *val, void *arg)
{
	*(uint64_t *)arg += ((const struct spool_msg *)val)->env.body_size;
}

uint64_t spool_held_bytes(const struct spool *sp)
{
	uint64_t n = 0;
	htab_each(&sp->msgs, add_body_size, &n);
	return n;
}

void spool_set_msg_hook(struct spool *sp, spool_msg_fn *fn, void *arg)
{
	sp->hook = fn;
	sp->hook_arg = arg;
}

/* --- reading and updating messages ------------------------------------- */

struct spool_msg *spool_msg_find(const struct spool *sp, uint64_t id)
{
	return htab_get_u64(&sp->msgs, id);
}

static int cmp_msg_id(const void *a, const void *b)
{
	const struct spool_msg *x = *(struct spool_msg *const *)a, *y = *(struct spool_msg *const *)b;
	return x->id < y->id ? -1 : x->id > y->id;
}

void spool_each_msg(const struct spool *sp, spool_msg_fn *fn, void *arg)
{
	size_t n;
	void **v = htab_values(&sp->msgs, &n);
	qsort(v, n, sizeof(*v), cmp_msg_id);
	for (size_t i = 0; i < n; i++)
		fn(arg, v[i]);
	free(v);
}

/*
 * The read fds of segments are cached, but at most SPOOL_MAX_READ_FDS: a
 * queue of many segments (a long outage) must not eat the descriptors that
 * sessions need. When full, the whole cache is closed; callers use an fd
 * at once and never hold one across another call.
 */
int spool_seg_fd(struct spool *sp, uint32_t seg)
{
	void *v = htab_get_u64(&sp->rfds, seg);
	if (v)
		return (int)(intptr_t)v - 1;
	if (sp->rfds.count >= SPOOL_MAX_READ_FDS) {
		htab_each(&sp->rfds, close_fd_cb, NULL);
		htab_free(&sp->rfds);
	}
	char name[32];
	spool_seg_name(seg, name);
	int fd = openat(sp->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	htab_put_u64(&sp->rfds, seg, (void *)(intptr_t)(fd + 1));
	return fd;
}

long spool_msg_read(struct spool *sp, const struct spool_msg *m, uint64_t off, void *p, size_t n)
{
	size_t got = 0;
	uint64_t base = 0;
	for (uint32_t i = 0; i < m->next && got < n; i++) {
		const struct spool_extent *e = &m->ext[i];
		if (off + got >= base + e->len) {
			base += e->len;
			continue;
		}
		uint64_t in = off + got - base;
		size_t k = e->len - in < n - got ? (size_t)(e->len - in) : n - got;
		int fd = spool_seg_fd(sp, e->seg);
		if (fd < 0)
			return fd;
		ssize_t r = pread(fd, (char *)p + got, k, (off_t)(e->off + in));
		if (r < 0)
			return -errno;
		if ((size_t)r != k)
			return -EIO;
		got += k;
		base += e->len;
	}
	return (long)got;
}

uint64_t spool_msg_out_size(const struct spool_msg *m)
{
	const struct spool_env *e = &m->env;
	uint64_t n = e->auth_header ? strlen(e->auth_header) : 0;
	if (e->head)
		return n + strlen(e->head) + e->body_size - e->head_skip;
	return n + e->body_size;
}

/* Copies from a string part of the sent message; advances off (relative to the part) and the output. */
static void copy_part(const char *s, uint64_t *off, char **p, size_t *n, size_t *got)
{
	size_t len = s ? strlen(s) : 0;
	if (*off >= len) {
		*off -= len;
		return;
	}
	size_t k = len - *off < *n ? len - (size_t)*off : *n;
	memcpy(*p, s + *off, k);
	*p += k;
	*n -= k;
	*got += k;
	*off = 0;
}

long spool_msg_read_out(struct spool *sp, const struct spool_msg *m, uint64_t off, void *buf, size_t n)
{
	const struct spool_env *e = &m->env;
	char *p = buf;
	size_t got = 0;
	copy_part(e->auth_header, &off, &p, &n, &got);
	copy_part(e->head, &off, &p, &n, &got);
	if (n == 0)
		return (long)got;
	long r = spool_msg_read(sp, m, off + (e->head ? e->head_skip : 0), p, n);
	return r < 0 ? r : (long)got + r;
}

void spool_msg_set_rcpt(struct spool *sp, struct spool_msg *m, uint32_t idx, uint8_t state, uint16_t code,
			const char *reply, spool_done_fn *done, void *arg)
{
	struct spool_rcpt *r = &m->env.rcpts[idx];
	/* reply may be r->reply itself; cut, so the envelope stays bounded (spool_rec.c) */
	char *copy = reply ? spool_reply_dup(reply, strlen(reply)) : NULL;
	r->state = state;
	r->code = code;
	free(r->reply);
	r->reply = copy;
	struct buf b = {0};
	spool_rcpt_update_encode(&(struct spool_rcpt_update){idx, state, code, copy}, &b);
	append_and_wait(sp, SPOOL_REC_RCPT, m->id, &b, done, arg);
	buf_free(&b);
}

void spool_msg_set_meta(struct spool *sp, struct spool_msg *m, const struct spool_meta *meta, spool_done_fn *done,
			void *arg)
{
	m->meta = *meta;
	struct buf b = {0};
	spool_meta_encode(meta, &b);
	append_and_wait(sp, SPOOL_REC_META, m->id, &b, done, arg);
	buf_free(&b);
}

void spool_msg_done(struct spool *sp, struct spool_msg *m, spool_done_fn *done, void *arg)
{
	struct buf b = {0};
	append_and_wait(sp, SPOOL_REC_DONE, m->id, &b, done, arg);
	htab_del_u64(&sp->msgs, m->id);
	uint32_t seg = m->min_seg;
	spool_msg_free(m);
	spool_unpin(sp, seg);
}
