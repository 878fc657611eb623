/*
 * spool_compact: keeps disk use proportional to what is queued. Segments are
 * reclaimed oldest first (invariant 5), so one message held for days would
 * keep every later segment too. When the oldest sealed segment is pinned
 * only by messages holding little data, each is copied to the head of the
 * log: its body as new DATA records, then a COMMIT with its current
 * envelope (recipient states included) and a META record. Recovery lets a
 * later COMMIT of an id supersede the earlier one. The old segment is
 * unpinned only after the copy is durable, so a failed copy loses nothing.
 * Reads happen on the event loop: a step copies at most seg_max/4 bytes,
 * once a second, from a segment that is no longer written.
 */
#include "spool_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/log.h"

struct copy {
	struct spool *sp;
	uint64_t id;
	struct spool_extent *ext;
	uint32_t next, cap;
	uint32_t new_min_seg;
};

struct survey {
	uint32_t seg;
	uint32_t count;
	uint64_t bytes;
	struct spool_msg **v;
};

static void survey_msg(void *val, void *arg)
{
	struct spool_msg *m = val;
	struct survey *sv = arg;
	if (m->min_seg != sv->seg)
		return;
	if (sv->v)
		sv->v[sv->count] = m;
	sv->count++;
	sv->bytes += m->env.body_size;
}

static void copy_done(void *arg, int err)
{
	struct copy *c = arg;
	struct spool *sp = c->sp;
	struct spool_msg *m = spool_msg_find(sp, c->id);
	sp->copies_in_flight--;
	if (err || !m) {
		/* Failed: the original stays. Gone meanwhile: its DONE unpinned the original. */
		spool_unpin(sp, c->new_min_seg);
		free(c->ext);
		free(c);
		return;
	}
	uint32_t old = m->min_seg;
	free(m->ext);
	m->ext = c->ext;
	m->next = c->next;
	m->min_seg = c->new_min_seg;
	free(c);
	spool_unpin(sp, old);
}

static void add_extent(struct copy *c, const struct spool_extent *e)
{
	if (c->next == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 4;
		c->ext = xrealloc(c->ext, c->cap * sizeof(*c->ext));
	}
	c->ext[c->next++] = *e;
}

/* Appends a copy of m; returns 0, or -errno if its body could not be read. */
static int copy_msg(struct spool *sp, struct spool_msg *m, unsigned char *chunk)
{
	struct copy *c = xcalloc(1, sizeof(*c));
	c->sp = sp;
	c->id = m->id;
	c->new_min_seg = UINT32_MAX;
	uint64_t first_batch = 0, batch = 0;
	struct spool_extent e;
	for (uint64_t off = 0; off < m->env.body_size;) {
		long r = spool_msg_read(sp, m, off, chunk, SPOOL_DATA_CHUNK);
		if (r <= 0) {
			if (c->new_min_seg != UINT32_MAX)
				spool_unpin(sp, c->new_min_seg);
			free(c->ext);
			free(c);
			return r < 0 ? (int)r : -EIO;
		}
		batch = spool_append(sp, SPOOL_REC_DATA, m->id, chunk, (uint32_t)r, &e);
		if (c->new_min_seg == UINT32_MAX) {
			c->new_min_seg = e.seg;
			first_batch = batch;
			spool_pin(sp, e.seg);
		}
		add_extent(c, &e);
		off += (uint64_t)r;
	}
	struct buf b = {0};
	spool_env_encode(&m->env, &b);
	batch = spool_append(sp, SPOOL_REC_COMMIT, m->id, b.data, (uint32_t)b.len, &e);
	if (c->new_min_seg == UINT32_MAX) {
		c->new_min_seg = e.seg;
		first_batch = batch;
		spool_pin(sp, e.seg);
	}
	buf_reset(&b);
	spool_meta_encode(&m->meta, &b);
	batch = spool_append(sp, SPOOL_REC_META, m->id, b.data, (uint32_t)b.len, NULL);
	buf_free(&b);
	struct spool_wait *w = xcalloc(1, sizeof(*w)); /* freed by the spool once done has run */
	*w = (struct spool_wait){.batch = batch, .first_batch = first_batch, .done = copy_done, .arg = c};
	spool_add_waiter(sp, w);
	sp->copies_in_flight++;
	return 0;
}

/* Bytes the segment takes on disk, or 0 if unknown. */
static uint64_t segment_size(struct spool *sp, uint32_t seg)
{
	struct stat st;
	int fd = spool_seg_fd(sp, seg);
	return fd >= 0 && fstat(fd, &st) == 0 ? (uint64_t)st.st_size : 0;
}

void spool_compact_step(struct spool *sp)
{
	uint32_t seg = sp->oldest_seg;
	/* Copying needs room: never when space is short (the copy would fail, and fail again). */
	if (sp->readonly || sp->copies_in_flight || seg + 1 >= sp->cur_seg || sp->npins == 0 || !spool_has_space(sp))
		return;
	struct survey sv = {.seg = seg};
	htab_each(&sp->msgs, survey_msg, &sv);
	/*
	 * Worth it only when the segment is mostly dead: what is live is under a
	 * quarter of its size (and of a step's budget). Not while an open
	 * transaction pins it too.
	 */
	if (sv.count == 0 || sv.count != sp->pins[0] || sv.bytes > sp->seg_max / 4 ||
	    sv.bytes * 4 > segment_size(sp, seg))
		return;
	sv.v = xcalloc(sv.count, sizeof(*sv.v));
	sv.count = 0;
	sv.bytes = 0;
	htab_each(&sp->msgs, survey_msg, &sv);
	unsigned char *chunk = xmalloc(SPOOL_DATA_CHUNK);
	char name[32];
	spool_seg_name(seg, name);
	log_info("spool", "compacting segment=%s messages=%" PRIu32 " bytes=%" PRIu64, name, sv.count, sv.bytes);
	for (uint32_t i = 0; i < sv.count; i++) {
		int rc = copy_msg(sp, sv.v[i], chunk);
		if (rc < 0)
			log_err("spool", "id=%016" PRIx64 " cannot be copied for compaction: %s", sv.v[i]->id,
				strerror(-rc));
	}
	free(chunk);
	free(sv.v);
}

void spool_compact(struct spool *sp)
{
	spool_compact_step(sp);
}
