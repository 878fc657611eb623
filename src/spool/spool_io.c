/*
 * spool_io: the spool's I/O thread, the only code that writes or syncs
 * spool files. Each round it takes every batch queued since the last round,
 * writes them with pwrite at the offsets the main thread chose, then makes
 * them durable with one fdatasync per segment touched (plus an fsync of the
 * directory when a segment file was created), and only then reports them
 * done through an eventfd. While one round syncs, the next one fills up:
 * that is the group commit.
 *
 * Error policy: a failed write or sync fails its batch and "poisons" the
 * segment: later batches for it fail unwritten, so a torn or unsynced region
 * is never followed by records recovery would trust. The main thread moves
 * the log to a new segment when it hears of the failure (spool.c).
 */
#include "spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int write_all(int fd, const unsigned char *p, size_t n, uint64_t off)
{
	while (n) {
		ssize_t r = pwrite(fd, p, n, (off_t)off);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

struct round {
	bool dirty;      /* wfd has unsynced writes */
	bool dir_dirty;  /* a segment was created or removed */
	struct batch *first_of_seg; /* first batch of this round in the current segment */
};

static void fail_from(struct spool *sp, struct batch *b, uint32_t seg, int err)
{
	for (; b; b = b->next)
		if (b->seg == seg && !b->err)
			b->err = err;
	sp->poisoned_seg = seg;
	sp->poisoned_err = err;
}

/* Syncs the segment being written; on failure every batch of it this round fails. */
static void sync_segment(struct spool *sp, struct round *rd)
{
	if (!rd->dirty || sp->wfd < 0)
		return;
	int64_t t0 = now_ns();
	int rc = fdatasync(sp->wfd) < 0 ? -errno : 0;
	pthread_mutex_lock(&sp->mu);
	sp->io_stats.syncs++;
	uint64_t took = (uint64_t)(now_ns() - t0);
	sp->io_stats.sync_ns += took;
	if (sp->nsync_obs < SPOOL_SYNC_OBS_MAX)
		sp->sync_obs[sp->nsync_obs++] = took;
	pthread_mutex_unlock(&sp->mu);
	if (rc < 0)
		fail_from(sp, rd->first_of_seg, sp->wseg, rc);
	rd->dirty = false;
}

static int switch_segment(struct spool *sp, struct round *rd, struct batch *b)
{
	sync_segment(sp, rd);
	if (sp->wfd >= 0)
		close(sp->wfd);
	sp->wfd = -1;
	sp->wseg = b->seg;
	rd->first_of_seg = b;
	char name[32];
	spool_seg_name(b->seg, name);
	int flags = O_WRONLY | O_CLOEXEC | (b->creates_seg ? O_CREAT | O_EXCL : 0);
	sp->wfd = openat(sp->dirfd, name, flags, 0600);
	if (sp->wfd < 0)
		return -errno;
	if (b->creates_seg)
		rd->dir_dirty = true;
	return 0;
}

static void write_batch(struct spool *sp, struct round *rd, struct batch *b)
{
	if (b->seg == sp->poisoned_seg) {
		/* The original error: after ENOSPC the sessions answer 452 4.3.1, not 451 (docs/spool.md). */
		b->err = sp->poisoned_err;
		return;
	}
	if (b->seg != sp->wseg || sp->wfd < 0) {
		int rc = switch_segment(sp, rd, b);
		if (rc < 0) {
			fail_from(sp, b, b->seg, rc);
			return;
		}
	}
	int rc = write_all(sp->wfd, b->data.data, b->data.len, b->off);
	if (rc < 0) {
		/* Best effort: cut the torn tail so recovery sees a clean end. */
		if (b->creates_seg) {
			char name[32];
			spool_seg_name(b->seg, name);
			(void)unlinkat(sp->dirfd, name, 0);
			rd->dir_dirty = true;
		} else if (ftruncate(sp->wfd, (off_t)b->off) < 0) {
			log_err("spool", "ftruncate after failed write: %s", strerror(errno));
		}
		fail_from(sp, b, b->seg, rc);
		return;
	}
	rd->dirty = true;
	pthread_mutex_lock(&sp->mu);
	sp->io_stats.batches++;
	sp->io_stats.bytes += b->data.len;
	pthread_mutex_unlock(&sp->mu);
}

static void unlink_segments(struct spool *sp, struct round *rd, uint32_t *segs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char name[32];
		spool_seg_name(segs[i], name);
		if (segs[i] == sp->wseg && sp->wfd >= 0) {
			close(sp->wfd);
			sp->wfd = -1;
		}
		if (unlinkat(sp->dirfd, name, 0) < 0 && errno != ENOENT)
			log_err("spool", "unlink %s: %s", name, strerror(errno));
		rd->dir_dirty = true;
	}
}

static void sync_dir(struct spool *sp, struct round *rd, struct batch *list)
{
	if (!rd->dir_dirty)
		return;
	if (fsync(sp->dirfd) < 0) {
		/* The new segment's name may not survive a crash: fail what it holds. */
		int err = -errno;
		for (struct batch *b = list; b; b = b->next)
			if (!b->err && b->creates_seg)
				fail_from(sp, b, b->seg, err);
	}
	rd->dir_dirty = false;
}

static void report(struct spool *sp, struct batch *list)
{
	uint64_t one = 1;
	pthread_mutex_lock(&sp->mu);
	for (struct batch *b = list; b; b = b->next)
		if (b->err)
			sp->io_stats.failures++;
	if (list) {
		struct batch *last = list;
		while (last->next)
			last = last->next;
		if (sp->done_tail)
			sp->done_tail->next = list;
		else
			sp->done_head = list;
		sp->done_tail = last;
	}
	pthread_mutex_unlock(&sp->mu);
	if (write(sp->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_err("spool", "eventfd write: %s", strerror(errno));
}

static void *io_main(void *arg)
{
	struct spool *sp = arg;
	for (;;) {
		pthread_mutex_lock(&sp->mu);
		while (!sp->todo_head && !sp->nunlink && !sp->stop)
			pthread_cond_wait(&sp->cv, &sp->mu);
		if (!sp->todo_head && !sp->nunlink && sp->stop) {
			pthread_mutex_unlock(&sp->mu);
			break;
		}
		struct batch *list = sp->todo_head;
		sp->todo_head = sp->todo_tail = sp->open = NULL;
		uint32_t *segs = sp->unlink_q;
		size_t nsegs = sp->nunlink;
		sp->unlink_q = NULL;
		sp->nunlink = sp->unlink_cap = 0;
		pthread_mutex_unlock(&sp->mu);

		struct round rd = {.first_of_seg = list};
		for (struct batch *b = list; b; b = b->next)
			write_batch(sp, &rd, b);
		sync_segment(sp, &rd);
		/* Removals come after the writes they were queued behind (spool.c). */
		unlink_segments(sp, &rd, segs, nsegs);
		free(segs);
		sync_dir(sp, &rd, list);
		report(sp, list);
	}
	if (sp->wfd >= 0)
		close(sp->wfd);
	sp->wfd = -1;
	return NULL;
}

int spool_io_start(struct spool *sp)
{
	int rc = pthread_create(&sp->thread, NULL, io_main, sp);
	if (rc)
		return -rc;
	sp->thread_started = true;
	return 0;
}

void spool_io_kick(struct spool *sp)
{
	pthread_cond_signal(&sp->cv);
}

void spool_io_stop(struct spool *sp)
{
	pthread_mutex_lock(&sp->mu);
	sp->stop = true;
	pthread_cond_signal(&sp->cv);
	pthread_mutex_unlock(&sp->mu);
	pthread_join(sp->thread, NULL);
	sp->thread_started = false;
}
