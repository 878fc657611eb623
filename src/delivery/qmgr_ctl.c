/*
 * qmgr_ctl: what an administrator asks of the queue manager (qmgr.h,
 * "queue control"; the control socket's handlers in src/queue_ctl.c call
 * these). A hold, a release, a deletion or an extension of a message is a
 * META record (spool_rec.h: SPOOL_META_HELD, _RELEASED, _DELETED,
 * extend_s, held_since), so it survives a restart like any delivery state;
 * a destination's hold is a line in SPOOL/held-domains (spool_held.c).
 *
 * Retention: a job expires at arrival + retention + extend_s. While held
 * (message or destination) it neither expires nor warns; on release the
 * time it spent held is added to extend_s, so a hold never eats into the
 * mail's retention. Held jobs wait on their destination's waiting list and
 * nothing moves them to the ready one (release_waiting skips them).
 *
 * A message on a connection when it is held or deleted finishes that
 * attempt (what the next hop accepted is delivered; the rest waits, or is
 * deleted when the attempt settles: qmgr_job_settle asks qmgr_job_deleted).
 * Main thread only.
 */
#include "qmgr_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

#define DELETED_REPLY "deleted by the administrator"

/* --- holds -------------------------------------------------------------- */

static ptrdiff_t held_index(const struct qmgr *s, const char *domain)
{
	for (size_t i = 0; i < s->nheld; i++)
		if (strcmp(s->held[i].domain, domain) == 0)
			return (ptrdiff_t)i;
	return -1;
}

bool qmgr_domain_held(const struct qmgr *s, const char *domain)
{
	return held_index(s, domain) >= 0;
}

bool qmgr_job_on_hold(const struct job *j)
{
	return j->d->held || (j->out.m->meta.flags & SPOOL_META_HELD);
}

void qmgr_ctl_load(struct qmgr *s)
{
	size_t bad;
	int rc = spool_held_read(s->sp, &s->held, &s->nheld, &bad);
	if (rc < 0)
		log_err("delivery", "cannot read SPOOL/held-domains (%s): no destination is held", strerror(-rc));
	if (bad)
		log_warn("delivery", "SPOOL/held-domains: %zu line(s) skipped (not \"DOMAIN SECONDS\")", bad);
	for (size_t i = 0; i < s->nheld; i++)
		log_info("delivery", "dest=%s held by the administrator since=%" PRId64, s->held[i].domain,
			 s->held[i].since);
}

/* --- a message's jobs ---------------------------------------------------- */

/* m's jobs, wherever they are (on a list or on a connection): *n of them, in a malloc'd array. */
static struct job **jobs_of(struct qmgr *s, const struct spool_msg *m, size_t *n)
{
	struct job **v = xcalloc(m->env.nrcpt ? m->env.nrcpt : 1, sizeof(*v));
	*n = 0;
	for (struct dest *d = s->dest_list; d; d = d->next_dest)
		for (struct job *j = d->jobs; j && *n < m->env.nrcpt; j = j->dnext)
			if (j->out.m == m)
				v[(*n)++] = j;
	return v;
}

static void shift_expiry(struct qmgr *s, struct spool_msg *m, int64_t secs)
{
	size_t n;
	struct job **v = jobs_of(s, m, &n);
	for (size_t i = 0; i < n; i++)
		v[i]->expire_at += secs;
	free(v);
}

/* Each destination of m: jobs go where their hold says; flush: tried now. */
static void requeue_msg(struct qmgr *s, struct spool_msg *m, bool flush)
{
	size_t n;
	struct job **v = jobs_of(s, m, &n);
	for (size_t i = 0; i < n; i++)
		qmgr_dest_requeue(v[i]->d, flush);
	free(v);
}

static int64_t held_time(int64_t since)
{
	int64_t now = clock_wall_s();
	return since && since < now ? now - since : 0;
}

/* --- the commands --------------------------------------------------------- */

int qmgr_hold_msg(struct qmgr *s, uint64_t id, qmgr_done_fn *done, void *arg)
{
	struct spool_msg *m = spool_msg_find(s->sp, id);
	if (!m)
		return -ENOENT;
	struct spool_meta meta = m->meta;
	if (!(meta.flags & SPOOL_META_HELD)) {
		meta.flags |= SPOOL_META_HELD;
		meta.held_since = clock_wall_s();
	}
	spool_msg_set_meta(s->sp, m, &meta, done, arg);
	requeue_msg(s, m, false);
	log_info("delivery", "id=%016" PRIx64 " held by the administrator", id);
	return 0;
}

int qmgr_release_msg(struct qmgr *s, uint64_t id, qmgr_done_fn *done, void *arg)
{
	struct spool_msg *m = spool_msg_find(s->sp, id);
	if (!m)
		return -ENOENT;
	struct spool_meta meta = m->meta;
	int64_t held = (meta.flags & SPOOL_META_HELD) ? held_time(meta.held_since) : 0;
	bool quarantined = m->env.quarantine && !(meta.flags & SPOOL_META_RELEASED);
	if (quarantined) {
		/* Held by a milter since it arrived: that time is given back too, or a message released after
		 * its retention would expire (and bounce) on the next tick instead of being tried. */
		int64_t q = held_time(m->env.arrival);
		held = q > held ? q : held;
	}
	meta.flags &= ~SPOOL_META_HELD;
	meta.held_since = 0;
	meta.extend_s += held;
	meta.next_attempt = 0;
	if (quarantined)
		meta.flags |= SPOOL_META_RELEASED;
	spool_msg_set_meta(s->sp, m, &meta, done, arg);
	shift_expiry(s, m, held);
	log_info("delivery", "id=%016" PRIx64 " released by the administrator%s", id,
		 quarantined ? " from quarantine" : "");
	if (quarantined && !m->user)
		qmgr_add_msg(s, m); /* its first jobs; the hook that queued it left it without any */
	else
		requeue_msg(s, m, true);
	return 0;
}

void qmgr_job_deleted(struct qmgr *s, struct job *j)
{
	struct spool_msg *m = j->out.m;
	for (uint32_t k = 0; k < j->out.n; k++) {
		uint32_t idx = j->out.rcpts[k];
		log_info("delivery", "id=%016" PRIx64 " to=<%s> status=deleted reply=\"" DELETED_REPLY "\"", m->id,
			 m->env.rcpts[idx].addr);
		spool_msg_set_rcpt(s->sp, m, idx, SPOOL_RCPT_EXPIRED, 0, DELETED_REPLY, NULL, NULL);
	}
	qmgr_job_finished(s, j);
}

void qmgr_msg_delete_now(struct qmgr *s, struct spool_msg *m)
{
	for (uint32_t i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpts[i].state == SPOOL_RCPT_PENDING)
			spool_msg_set_rcpt(s->sp, m, i, SPOOL_RCPT_EXPIRED, 0, DELETED_REPLY, NULL, NULL);
	spool_msg_done(s->sp, m, NULL, NULL);
}

int qmgr_delete_msg(struct qmgr *s, uint64_t id, bool *in_flight, qmgr_done_fn *done, void *arg)
{
	struct spool_msg *m = spool_msg_find(s->sp, id);
	if (!m)
		return -ENOENT;
	struct spool_meta meta = m->meta;
	meta.flags |= SPOOL_META_DELETED; /* first: a crash before the rest finishes the deletion at start */
	spool_msg_set_meta(s->sp, m, &meta, done, arg);
	log_info("delivery", "id=%016" PRIx64 " deleted by the administrator", id);
	*in_flight = false;
	if (!m->user) {
		qmgr_msg_delete_now(s, m);
		return 0;
	}
	size_t n;
	struct job **v = jobs_of(s, m, &n);
	for (size_t i = 0; i < n; i++) {
		if (qmgr_job_unlist(v[i]))
			qmgr_job_deleted(s, v[i]); /* the last one may free m */
		else
			*in_flight = true; /* qmgr_job_settle deletes the rest once this attempt ends */
	}
	free(v);
	return 0;
}

int qmgr_extend_msg(struct qmgr *s, uint64_t id, int64_t secs, qmgr_done_fn *done, void *arg)
{
	struct spool_msg *m = spool_msg_find(s->sp, id);
	if (!m)
		return -ENOENT;
	if (secs <= 0 || secs > QMGR_EXTEND_MAX_S || m->meta.extend_s > 2 * QMGR_EXTEND_MAX_S)
		return -ERANGE;
	struct spool_meta meta = m->meta;
	meta.extend_s += secs;
	spool_msg_set_meta(s->sp, m, &meta, done, arg);
	shift_expiry(s, m, secs);
	log_info("delivery", "id=%016" PRIx64 " retention extended by %" PRId64 "s by the administrator", id, secs);
	return 0;
}

/* --- destinations ------------------------------------------------------- */

static struct dest *known_dest(struct qmgr *s, const char *domain)
{
	return htab_get_str(&s->dests, domain, strlen(domain));
}

int qmgr_hold_domain(struct qmgr *s, const char *domain)
{
	if (!spool_held_domain_ok(domain))
		return -EINVAL;
	if (held_index(s, domain) < 0) {
		if (s->nheld == SPOOL_HELD_MAX)
			return -ENOSPC;
		s->held = xrealloc(s->held, (s->nheld + 1) * sizeof(*s->held));
		struct spool_held *h = &s->held[s->nheld];
		memset(h, 0, sizeof(*h));
		memcpy(h->domain, domain, strlen(domain));
		h->since = clock_wall_s();
		int rc = spool_held_write(s->sp, s->held, s->nheld + 1);
		if (rc < 0)
			return rc; /* not held: the list on disk says what is */
		s->nheld++;
	}
	struct dest *d = known_dest(s, domain);
	if (d) {
		d->held = true;
		qmgr_dest_requeue(d, false);
	}
	log_info("delivery", "dest=%s held by the administrator", domain);
	return 0;
}

/* The time d was held goes back to each of its messages' retention, durably; done with the last write. */
static size_t give_back(struct qmgr *s, struct dest *d, int64_t secs, qmgr_done_fn *done, void *arg)
{
	size_t n = 0;
	struct job *last = NULL;
	for (struct job *j = d->jobs; j; j = j->dnext) {
		j->expire_at += secs;
		last = j;
		n++;
	}
	for (struct job *j = d->jobs; j; j = j->dnext) {
		struct spool_meta meta = j->out.m->meta;
		meta.extend_s += secs;
		bool is_last = j == last;
		spool_msg_set_meta(s->sp, j->out.m, &meta, is_last ? done : NULL, is_last ? arg : NULL);
	}
	return n;
}

int qmgr_release_domain(struct qmgr *s, const char *domain)
{
	ptrdiff_t i = held_index(s, domain);
	if (i < 0)
		return -ENOENT;
	struct spool_held h = s->held[i];
	s->held[i] = s->held[s->nheld - 1];
	int rc = spool_held_write(s->sp, s->held, s->nheld - 1);
	if (rc < 0) {
		s->held[i] = h;
		return rc;
	}
	s->nheld--;
	log_info("delivery", "dest=%s released by the administrator", domain);
	struct dest *d = known_dest(s, domain);
	if (!d)
		return 0;
	d->held = false;
	int64_t secs = held_time(h.since);
	if (secs)
		give_back(s, d, secs, NULL, NULL);
	qmgr_dest_requeue(d, true);
	return 0;
}

size_t qmgr_flush(struct qmgr *s, const char *domain)
{
	size_t n = 0;
	for (struct dest *d = s->dest_list; d; d = d->next_dest) {
		if (domain && strcmp(d->domain, domain) != 0)
			continue;
		const struct jlist *lists[] = {&d->ready, &d->waiting};
		for (size_t i = 0; i < ARRAY_LEN(lists); i++)
			for (const struct job *j = lists[i]->head; j; j = j->next)
				n += !qmgr_job_on_hold(j); /* those on hold stay */
		qmgr_dest_requeue(d, true);
	}
	if (n)
		log_info("delivery", "flush%s%s by the administrator: %zu job(s) to try now", domain ? " dest=" : "",
			 domain ? domain : "", n);
	return n;
}

size_t qmgr_extend_domain(struct qmgr *s, const char *domain, int64_t secs, qmgr_done_fn *done, void *arg)
{
	struct dest *d = known_dest(s, domain);
	if (!d || secs <= 0 || secs > QMGR_EXTEND_MAX_S)
		return 0;
	size_t n = give_back(s, d, secs, done, arg);
	if (n)
		log_info("delivery", "dest=%s retention of %zu message(s) extended by %" PRId64 "s by the administrator",
			 domain, n, secs);
	return n;
}
