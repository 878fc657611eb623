/*
 * web_history: what the status page remembers, all in fixed memory: the
 * number of messages queued, sampled once a minute for a day (the total,
 * and each of the first WEB_HISTORY_DOMAINS configured domains: about 6 KiB
 * a domain, each row kept by its domain's name across reloads), and the
 * last WEB_RECENT deliveries and bounces. Lost on restart, by design: the
 * spool is the record; this is a glance.
 */
#include "web_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "delivery/qmgr.h"

void web_history_init(struct web_history *h, const struct cfg *cfg)
{
	memset(h, 0, sizeof(*h));
	web_history_set_domains(h, cfg); /* no rows yet: every domain starts from zero */
}

int web_history_row(const struct web_history *h, const char *domain)
{
	for (size_t i = 0; i < h->ndomains; i++)
		if (strcasecmp(h->domain[i], domain) == 0)
			return (int)i;
	return -1;
}

void web_history_set_domains(struct web_history *h, const struct cfg *cfg)
{
	uint32_t(*rows)[WEB_HISTORY_SAMPLES] = xcalloc(WEB_HISTORY_DOMAINS, sizeof(*rows));
	char(*names)[256] = xcalloc(WEB_HISTORY_DOMAINS, sizeof(*names));
	size_t n = cfg->ndomains < WEB_HISTORY_DOMAINS ? cfg->ndomains : WEB_HISTORY_DOMAINS;
	for (size_t i = 0; i < n; i++) {
		if (fmt(names[i], sizeof(names[i]), "%s", cfg->domains[i].name) < 0)
			abort(); /* a checked host name: under 256 bytes */
		int was = web_history_row(h, names[i]);
		if (was >= 0)
			memcpy(rows[i], h->per_domain[was], sizeof(rows[i]));
	}
	memcpy(h->domain, names, n * sizeof(names[0]));
	h->ndomains = n;
	free(names);
	free(h->per_domain);
	h->per_domain = rows;
}

void web_history_free(struct web_history *h)
{
	free(h->per_domain);
	h->per_domain = NULL;
}

struct sample {
	struct web_history *h;
	size_t slot;
};

static void count_dest(void *arg, const struct qmgr_dest_view *v)
{
	struct sample *s = arg;
	uint32_t n = v->queued > UINT32_MAX ? UINT32_MAX : (uint32_t)v->queued;
	s->h->total[s->slot] += n;
	int row = v->configured ? web_history_row(s->h, v->domain) : -1;
	if (row >= 0)
		s->h->per_domain[row][s->slot] = n;
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
