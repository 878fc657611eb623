/*
 * spool_replay: recovery. Reads every segment in order and rebuilds the
 * index of live messages: DATA records collect under their message id,
 * COMMIT turns them into a message, RCPT and META update it, DONE removes
 * it, ABORT drops uncommitted data. Called once by spool_open (which may
 * repair: a torn tail of the newest segment is cut off) and by
 * spool_open_readonly (which never writes).
 *
 * Damage is set aside, never fatal: bytes that fail their MAC are copied to
 * corrupt/, skipped, and logged, and the scan resumes at the next record
 * whose MAC verifies (so no byte a sender wrote is taken for a record); a
 * message whose data no longer adds up is copied to corrupt/ with what is
 * left of it. Segments of format v1 are read but never scanned. The crash
 * states this handles are listed in docs/spool.md. Runs on the thread that
 * opens the spool, before the I/O thread starts, so it may use sp->mac.
 */
#include "spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

struct pending {
	uint64_t id;
	struct spool_extent *ext;
	uint32_t next, cap;
	uint32_t min_seg;
};

/* A COMMIT whose body does not add up: set aside at the end unless an ABORT cancels it. */
struct doubtful {
	uint64_t id;
	struct spool_env env;
	struct spool_extent *ext;
	uint32_t next;
};

struct replay {
	struct spool *sp;
	struct htab pending;  /* id -> struct pending: DATA not yet committed */
	struct htab doubtful; /* id -> struct doubtful */
	bool damaged;         /* some bytes failed their MAC (or CRC, in a v1 segment) */
	uint64_t set_aside;
};

/* --- setting damage aside ---------------------------------------------- */

static int write_file_at(struct spool *sp, const char *name, const void *p, size_t n)
{
	char path[64];
	if (fmt(path, sizeof(path), "corrupt/%s", name) < 0)
		return -ENAMETOOLONG;
	int fd = openat(sp->dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	int rc = write(fd, p, n) == (ssize_t)n ? 0 : -EIO;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static void set_aside_bytes(struct replay *rp, uint32_t seg, uint64_t off, const unsigned char *p, size_t n,
			    const char *why)
{
	char name[48];
	rp->damaged = true;
	log_err("spool", "segment=%08" PRIx32 " offset=%" PRIu64 " bytes=%zu %s; set aside", seg, off, n, why);
	if (rp->sp->readonly || fmt(name, sizeof(name), "%08" PRIx32 "-%" PRIx64 ".bin", seg, off) < 0)
		return;
	if (write_file_at(rp->sp, name, p, n) < 0)
		log_err("spool", "cannot write corrupt/%s", name);
}

/* Copies what is left of a message (envelope summary, then body) to corrupt/ID.eml. */
static void set_aside_msg(struct replay *rp, uint64_t id, const struct spool_env *env, const struct spool_extent *ext,
			  uint32_t next, const char *why)
{
	char sid[17], name[32];
	spool_id_str(id, sid);
	rp->set_aside++;
	log_err("spool", "id=%s %s; set aside as corrupt/%s.eml", sid, why, sid);
	if (rp->sp->readonly || fmt(name, sizeof(name), "%s.eml", sid) < 0)
		return;
	struct buf b = {0};
	buf_printf(&b, "X-Mxvault-Set-Aside: %s\r\n", why);
	if (env) {
		buf_printf(&b, "X-Mxvault-Sender: <%s>\r\n", env->sender);
		for (uint32_t i = 0; i < env->nrcpt; i++)
			buf_printf(&b, "X-Mxvault-Recipient: <%s>\r\n", env->rcpts[i].addr);
	}
	buf_append_str(&b, "\r\n");
	for (uint32_t i = 0; i < next; i++) {
		int fd = spool_seg_fd(rp->sp, ext[i].seg);
		buf_reserve(&b, ext[i].len);
		if (fd >= 0 && pread(fd, b.data + b.len, ext[i].len, (off_t)ext[i].off) == (ssize_t)ext[i].len)
			b.len += ext[i].len;
	}
	if (write_file_at(rp->sp, name, b.data, b.len) < 0)
		log_err("spool", "cannot write corrupt/%s", name);
	buf_free(&b);
}

/* --- applying records -------------------------------------------------- */

static struct pending *pending_get(struct replay *rp, uint64_t id, bool create)
{
	struct pending *p = htab_get_u64(&rp->pending, id);
	if (!p && create) {
		p = xcalloc(1, sizeof(*p));
		p->id = id;
		p->min_seg = UINT32_MAX;
		htab_put_u64(&rp->pending, id, p);
	}
	return p;
}

static void pending_drop(struct replay *rp, uint64_t id)
{
	struct pending *p = htab_del_u64(&rp->pending, id);
	if (p) {
		free(p->ext);
		free(p);
	}
}

static void apply_data(struct replay *rp, const struct spool_rec *r, uint32_t seg, uint64_t payload_off)
{
	struct pending *p = pending_get(rp, r->msgid, true);
	if (p->next == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 4;
		p->ext = xrealloc(p->ext, p->cap * sizeof(*p->ext));
	}
	p->ext[p->next++] = (struct spool_extent){seg, r->len, payload_off};
	if (seg < p->min_seg)
		p->min_seg = seg;
}

static void doubtful_drop(struct replay *rp, uint64_t id)
{
	struct doubtful *dq = htab_del_u64(&rp->doubtful, id);
	if (dq) {
		spool_env_free(&dq->env);
		free(dq->ext);
		free(dq);
	}
}

static void remove_msg(struct spool *sp, uint64_t id)
{
	struct spool_msg *m = htab_del_u64(&sp->msgs, id);
	if (m)
		spool_msg_free(m);
}

static void apply_commit(struct replay *rp, const struct spool_rec *r, uint32_t seg)
{
	struct spool *sp = rp->sp;
	struct spool_env env;
	struct pending *p = pending_get(rp, r->msgid, false);
	if (spool_env_decode(r->payload, r->len, &env) < 0) {
		set_aside_msg(rp, r->msgid, NULL, p ? p->ext : NULL, p ? p->next : 0, "envelope does not decode");
		pending_drop(rp, r->msgid);
		return;
	}
	uint64_t sum = 0;
	for (uint32_t i = 0; p && i < p->next; i++)
		sum += p->ext[i].len;
	if (sum != env.body_size) {
		/* Damage, or a commit that failed and was cancelled by a later ABORT. */
		struct doubtful *dq = xcalloc(1, sizeof(*dq));
		dq->id = r->msgid;
		dq->env = env;
		if (p) {
			dq->ext = p->ext;
			dq->next = p->next;
			p->ext = NULL;
		}
		doubtful_drop(rp, r->msgid);
		htab_put_u64(&rp->doubtful, r->msgid, dq);
		pending_drop(rp, r->msgid);
		return;
	}
	remove_msg(sp, r->msgid); /* a later copy of a message supersedes the earlier one */
	doubtful_drop(rp, r->msgid);
	struct spool_msg *m = spool_msg_new(sp, r->msgid);
	m->env = env;
	m->min_seg = seg;
	if (p) {
		m->ext = p->ext;
		m->next = p->next;
		if (p->min_seg < m->min_seg)
			m->min_seg = p->min_seg;
		p->ext = NULL;
		pending_drop(rp, r->msgid);
	}
}

static void apply_rcpt(struct spool *sp, const struct spool_rec *r)
{
	struct spool_msg *m = spool_msg_find(sp, r->msgid);
	struct spool_rcpt_update u;
	size_t reply_len;
	if (!m || spool_rcpt_update_decode(r->payload, r->len, &u, &reply_len) < 0 || u.index >= m->env.nrcpt)
		return;
	struct spool_rcpt *rc = &m->env.rcpts[u.index];
	rc->state = u.state;
	rc->code = u.code;
	free(rc->reply);
	rc->reply = spool_reply_dup(u.reply, reply_len);
}

static void apply_record(struct replay *rp, const struct spool_rec *r, uint32_t seg, uint64_t payload_off)
{
	struct spool *sp = rp->sp;
	struct spool_msg *m;
	if (r->type != SPOOL_REC_SEGMENT && r->msgid > sp->last_id)
		sp->last_id = r->msgid;
	switch (r->type) {
	case SPOOL_REC_DATA: apply_data(rp, r, seg, payload_off); break;
	case SPOOL_REC_COMMIT: apply_commit(rp, r, seg); break;
	case SPOOL_REC_RCPT: apply_rcpt(sp, r); break;
	case SPOOL_REC_META:
		if ((m = spool_msg_find(sp, r->msgid)) && spool_meta_decode(r->payload, r->len, &m->meta) < 0)
			memset(&m->meta, 0, sizeof(m->meta));
		break;
	case SPOOL_REC_DONE:
		remove_msg(sp, r->msgid);
		pending_drop(rp, r->msgid);
		break;
	case SPOOL_REC_ABORT:
		/* After a COMMIT: the commit failed and the client was told to retry. */
		remove_msg(sp, r->msgid);
		doubtful_drop(rp, r->msgid);
		pending_drop(rp, r->msgid);
		break;
	default: break;
	}
}

/* --- reading segments -------------------------------------------------- */

static int read_whole(int fd, struct buf *b)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	buf_reset(b);
	buf_reserve(b, (size_t)st.st_size + 1);
	while (b->len < (size_t)st.st_size) {
		ssize_t r = pread(fd, b->data + b->len, (size_t)st.st_size - b->len, (off_t)b->len);
		if (r < 0)
			return -errno;
		if (r == 0)
			break;
		b->len += (size_t)r;
	}
	return 0;
}

/*
 * Offset of the next record that decodes at or after from, or -1. Only a
 * record whose MAC verifies counts, so no byte a sender wrote (message
 * content is in this range too) is ever taken for a record; the header tag
 * makes each wrong offset cost one short SipHash, whatever length it claims.
 */
static long long find_next_record(struct spool_mac *mac, const unsigned char *p, size_t n, size_t from)
{
	struct spool_rec r;
	for (size_t i = from; i + SPOOL_REC_HDR_SIZE <= n; i++) {
		const unsigned char *q = memchr(p + i, 'M', n - i);
		if (!q)
			return -1;
		i = (size_t)(q - p);
		if (spool_rec_decode(mac, p + i, n - i, &r) > 0)
			return (long long)i;
	}
	return -1;
}

static void cut_torn_tail(struct replay *rp, uint32_t seg, uint64_t off, size_t size, bool newest)
{
	char name[32];
	spool_seg_name(seg, name);
	log_warn("spool", "segment=%s torn tail of %zu bytes at offset %" PRIu64 " (never acknowledged)%s", name,
		 (size_t)(size - off), off, newest && !rp->sp->readonly ? "; cut off" : "");
	if (!newest || rp->sp->readonly)
		return;
	int fd = openat(rp->sp->dirfd, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)off) < 0 || fdatasync(fd) < 0)
		log_err("spool", "cannot cut the torn tail of %s: %s", name, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/*
 * A segment of format v1 (CRC-32, before the spool had a key) is read record
 * by record, and never scanned: in v1, content can look like records. The
 * first record that fails ends it; the rest is set aside, never cut.
 */
static void replay_segment_v1(struct replay *rp, uint32_t seg, const struct buf *b)
{
	size_t pos = 0;
	while (pos < b->len) {
		struct spool_rec r;
		long n = spool_rec_decode_v1(b->data + pos, b->len - pos, &r);
		if (n <= 0) {
			set_aside_bytes(rp, seg, pos, b->data + pos, b->len - pos,
					"do not decode in a v1 segment, which is not searched for more records");
			return;
		}
		apply_record(rp, &r, seg, (uint64_t)(r.payload - b->data));
		pos += (size_t)n;
	}
}

static int replay_segment(struct replay *rp, uint32_t seg, bool newest, struct buf *b)
{
	int fd = spool_seg_fd(rp->sp, seg);
	if (fd < 0)
		return fd;
	int rc = read_whole(fd, b);
	if (rc < 0)
		return rc;
	if (spool_seg_is_v1(b->data, b->len)) {
		replay_segment_v1(rp, seg, b);
		return 0;
	}
	struct spool_mac *mac = rp->sp->mac;
	if (!mac) /* no key (a read-only open of a v1 spool): a v2 segment appeared since it was checked */
		return b->len < 4 ? 0 : -ENOKEY;
	size_t pos = 0;
	while (pos < b->len) {
		struct spool_rec r;
		long n = spool_rec_decode(mac, b->data + pos, b->len - pos, &r);
		if (n > 0) {
			apply_record(rp, &r, seg, pos + SPOOL_REC_HDR_SIZE);
			pos += (size_t)n;
			continue;
		}
		long long next = find_next_record(mac, b->data, b->len, pos + 1);
		if (next < 0) {
			cut_torn_tail(rp, seg, pos, b->len, newest);
			break;
		}
		set_aside_bytes(rp, seg, pos, b->data + pos, (size_t)next - pos, "fail their MAC");
		pos = (size_t)next;
	}
	return 0;
}

static void pin_msg(void *val, void *arg)
{
	struct spool_msg *m = val;
	spool_pin(arg, m->min_seg);
}

static void set_aside_doubtful(void *val, void *arg)
{
	struct doubtful *dq = val;
	set_aside_msg(arg, dq->id, &dq->env, dq->ext, dq->next, "body is incomplete");
	spool_env_free(&dq->env);
	free(dq->ext);
	free(dq);
}

/*
 * Data never committed belonged to sessions that were never answered 250,
 * unless its COMMIT record is among damaged bytes: then it may have been
 * acknowledged, so a copy is kept for the administrator.
 */
static void finish_pending(struct replay *rp)
{
	htab_each(&rp->doubtful, set_aside_doubtful, rp);
	htab_free(&rp->doubtful);
	size_t n;
	void **v = htab_values(&rp->pending, &n);
	for (size_t i = 0; i < n; i++) {
		struct pending *p = v[i];
		if (rp->damaged)
			set_aside_msg(rp, p->id, NULL, p->ext, p->next, "data without a readable envelope");
		free(p->ext);
		free(p);
	}
	if (n && !rp->damaged)
		log_info("spool", "dropped the data of %zu messages never acknowledged", n);
	free(v);
	htab_free(&rp->pending);
}

int spool_replay(struct spool *sp)
{
	uint32_t *segs = NULL;
	size_t n = 0;
	int rc = spool_list_segments(sp, &segs, &n);
	if (rc < 0)
		return rc;
	struct replay rp = {.sp = sp};
	struct buf b = {0};
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = replay_segment(&rp, segs[i], i + 1 == n, &b);
	buf_free(&b);
	finish_pending(&rp);
	sp->oldest_seg = n ? segs[0] : 1;
	sp->cur_seg = n ? segs[n - 1] + 1 : 1;
	sp->cur_off = 0;
	htab_each(&sp->msgs, pin_msg, sp);
	free(segs);
	log_info("spool", "recovered dir=%s segments=%zu messages=%zu set_aside=%" PRIu64, sp->dir, n, sp->msgs.count,
		 rp.set_aside);
	return rc;
}
