/*
 * web_history: what the status page remembers, all in fixed memory: the
 * number of messages queued, sampled once a minute for a day (the total,
 * and each of the first WEB_HISTORY_DOMAINS configured domains: about 6 KiB
 * a domain), and the last WEB_RECENT deliveries and bounces. Lost on
 * restart, by design: the spool is the record; this is a glance.
 */
#include "web_int.h"

#include <stdlib.h>
#include <string.h>

#include "delivery/qmgr.h"

void web_history_init(struct web_history *h, size_t ndomains)
{
	memset(h, 0, sizeof(*h));
	h->ndomains = ndomains < WEB_HISTORY_DOMAINS ? ndomains : WEB_HISTORY_DOMAINS;
	if (h->ndomains)
		h->per_domain = xcalloc(h->ndomains, sizeof(*h->per_domain));
}

void web_history_free(struct web_history *h)
{
	free(h->per_domain);
	h->per_domain = NULL;
}

struct sample {
	struct web_history *h;
	size_t slot;
	size_t domain_no; /* configured domains seen so far */
};

static void count_dest(void *arg, const struct qmgr_dest_view *v)
{
	struct sample *s = arg;
	uint32_t n = v->queued > UINT32_MAX ? UINT32_MAX : (uint32_t)v->queued;
	s->h->total[s->slot] += n;
	if (v->configured && s->domain_no < s->h->ndomains)
		s->h->per_domain[s->domain_no][s->slot] = n;
	s->domain_no += v->configured;
}

void web_history_sample(struct web *w, int64_t now)
{
	struct web_history *h = &w->hist;
	if (h->count) {
		size_t last = (h->head + h->count - 1) % WEB_HISTORY_SAMPLES;
		if (now - h->when[last] < WEB_HISTORY_STEP_S)
			return;
	}
	size_t slot = (h->head + h->count) % WEB_HISTORY_SAMPLES;
	if (h->count == WEB_HISTORY_SAMPLES)
		h->head = (h->head + 1) % WEB_HISTORY_SAMPLES; /* the oldest gives way */
	else
		h->count++;
	h->when[slot] = now;
	h->total[slot] = 0;
	for (size_t d = 0; d < h->ndomains; d++)
		h->per_domain[d][slot] = 0;
	struct sample s = {.h = h, .slot = slot};
	qmgr_each_dest(w->d.qmgr, count_dest, &s);
}

void web_history_add_recent(struct web_history *h, const struct web_recent *r)
{
	h->recent[h->recent_head] = *r;
	h->recent_head = (h->recent_head + 1) % WEB_RECENT;
	if (h->nrecent < WEB_RECENT)
		h->nrecent++;
}

const struct web_recent *web_history_recent(const struct web_history *h, size_t i)
{
	if (i >= h->nrecent)
		return NULL;
	return &h->recent[(h->recent_head + WEB_RECENT - 1 - i) % WEB_RECENT];
}
