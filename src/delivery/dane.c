/*
 * dane: see dane.h. The lookup is one TLSA query; what makes it DANE is
 * the AD bit of the answer and the filter on usable records (RFC 7672 3.1).
 */
#include "dane.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/dns.h"
#include "base/util.h"

struct dane_q {
	dane_fn *fn;
	void *arg;
};

/* RFC 7672 3.1.3: DANE-TA(2) and DANE-EE(3), Cert(0)/SPKI(1), Full(0)/SHA2-256(1)/SHA2-512(2). */
static bool usable(const struct dns_tlsa *r)
{
	static const uint16_t digest_len[] = {0, 32, 64};
	if (r->usage != 2 && r->usage != 3)
		return false;
	if (r->selector > 1 || r->mtype > 2)
		return false;
	return r->mtype == 0 || r->len == digest_len[r->mtype];
}

struct dane_records *dane_usable(const struct dns_tlsa *r, size_t n)
{
	struct dane_records *recs = xcalloc(1, sizeof(*recs));
	recs->r = xcalloc(n ? n : 1, sizeof(*recs->r));
	for (size_t i = 0; i < n; i++) {
		if (!usable(&r[i]))
			continue;
		struct dane_tlsa *t = &recs->r[recs->n++];
		*t = (struct dane_tlsa){r[i].usage, r[i].selector, r[i].mtype, r[i].len, xmalloc(r[i].len ? r[i].len : 1)};
		memcpy(t->data, r[i].data, r[i].len);
	}
	if (!recs->n) {
		dane_records_free(recs);
		return NULL;
	}
	return recs;
}

static void on_tlsa(void *arg, enum dns_status st, bool secure, const struct dns_tlsa *r, size_t n)
{
	struct dane_q *q = arg;
	dane_fn *fn = q->fn;
	void *uarg = q->arg;
	free(q);
	if (st == DNS_CANCELLED) {
		fn(uarg, DANE_CANCELLED, NULL);
		return;
	}
	/* No records, or records nobody vouched for: DANE does not apply (RFC 7672 2.2). */
	/* A base name too long for DNS (a long MX host name) cannot have TLSA records either. */
	if (st == DNS_NXDOMAIN || st == DNS_NODATA || st == DNS_BADNAME || (st == DNS_OK && !secure)) {
		fn(uarg, DANE_NONE, NULL);
		return;
	}
	if (st != DNS_OK) {
		fn(uarg, DANE_TEMPFAIL, NULL);
		return;
	}
	struct dane_records *recs = dane_usable(r, n);
	fn(uarg, recs ? DANE_USABLE : DANE_UNUSABLE, recs);
}

void dane_lookup(struct dns *dns, const char *host, uint16_t port, dane_fn *fn, void *arg)
{
	char name[300];
	struct dane_q *q = xcalloc(1, sizeof(*q));
	q->fn = fn;
	q->arg = arg;
	snprintf(name, sizeof(name), "_%u._tcp.%s", (unsigned)port, host);
	dns_lookup_tlsa(dns, name, on_tlsa, q);
}

void dane_records_free(struct dane_records *recs)
{
	if (!recs)
		return;
	for (size_t i = 0; i < recs->n; i++)
		free(recs->r[i].data);
	free(recs->r);
	free(recs);
}
