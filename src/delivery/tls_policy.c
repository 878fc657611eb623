/*
 * tls_policy: see tls_policy.h. One request per connection attempt: the
 * DANE lookups of its hosts (at most ROUTE_MAX_MX, in parallel), then, for
 * mta-sts, and for auto when a host has no DANE, the domain's MTA-STS
 * policy; then each address gets its TLS (DANE where its host has it, the
 * policy's otherwise) and the request answers.
 *
 * A request is on the owner's list until it answers; tls_policy_free
 * answers the pending ones with CANCELLED. The lookups it started answer
 * later (DNS at dns_free, MTA-STS at mta_sts_free) and find it detached.
 */
#include "tls_policy.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "dane.h"
#include "mta_sts.h"
#include "route.h"

struct tls_policy {
	struct event_base *base;
	struct dns *dns;
	struct mta_sts *mta_sts;
	struct tls_req *reqs;
};

/* One host of the request: its DANE answer. */
struct tls_host {
	struct tls_req *req;
	char name[256];
	uint16_t port;
	enum dane_status dane;
	struct dane_records *recs;
};

struct tls_req {
	struct tls_policy *tp;      /* NULL once detached (the owner is gone) */
	struct tls_req *prev, *next;
	char domain[256];
	enum tls_mode mode;
	struct smtp_out_addr *addrs;
	size_t naddrs;
	struct tls_host hosts[ROUTE_MAX_MX];
	size_t nhosts;
	size_t pending;             /* lookups not yet answered */
	bool mta_sts_asked;
	struct event *answer_ev;    /* answers from the loop, never inside tls_policy_apply */
	struct tls_policy_result *res;
	tls_policy_fn *fn;
	void *arg;
};

/* The records of every host, owned by the result (the addresses point into them). */
struct tls_owned {
	struct dane_records *recs[ROUTE_MAX_MX];
	size_t n;
};

static const struct smtp_out_tls TLS_MAY_ = {SMTP_OUT_TLS_MAY, "may-encrypted", NULL, false, NULL};
static const struct smtp_out_tls TLS_ENCRYPT_ = {SMTP_OUT_TLS_ENCRYPT, "encrypted", NULL, false, NULL};
static const struct smtp_out_tls TLS_VERIFY_ = {SMTP_OUT_TLS_VERIFY, "verified",
						"451 4.7.5 certificate verification failed", false, NULL};
static const struct smtp_out_tls TLS_MTA_STS_ = {SMTP_OUT_TLS_VERIFY, "mta-sts",
						 "451 4.7.5 certificate name does not match the MTA-STS policy", false,
						 NULL};
static const struct smtp_out_tls TLS_MTA_STS_TESTING_ = {SMTP_OUT_TLS_MAY, "mta-sts-testing",
							 "certificate does not match the MTA-STS policy", true, NULL};

/* --- requests -------------------------------------------------------------- */

static void req_unlink(struct tls_req *q)
{
	struct tls_policy *tp = q->tp;
	if (!tp)
		return;
	if (q->prev)
		q->prev->next = q->next;
	else
		tp->reqs = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
}

static void req_free(struct tls_req *q)
{
	for (size_t i = 0; i < q->nhosts; i++)
		if (q->hosts[i].recs)
			dane_records_free(q->hosts[i].recs);
	if (q->answer_ev)
		event_free(q->answer_ev);
	tls_policy_result_free(q->res);
	free(q->addrs);
	free(q);
}

/* Hands the result over and forgets the request, unless lookups still hold it. */
static void req_answer(struct tls_req *q)
{
	req_unlink(q);
	struct tls_policy_result *r = q->res;
	q->res = NULL;
	tls_policy_fn *fn = q->fn;
	void *arg = q->arg;
	q->fn = NULL;
	q->tp = NULL;
	if (!q->pending)
		req_free(q);
	if (fn)
		fn(arg, r);
	else
		tls_policy_result_free(r);
}

static void answer_fired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	req_answer(arg);
}

static void answer_later(struct tls_req *q)
{
	static const struct timeval zero = {0, 0};
	q->answer_ev = evtimer_new(q->tp->base, answer_fired, q);
	if (!q->answer_ev || evtimer_add(q->answer_ev, &zero) < 0)
		abort();
}

/* --- deciding -------------------------------------------------------------- */

static struct tls_host *host_of(struct tls_req *q, const char *name)
{
	for (size_t i = 0; i < q->nhosts; i++)
		if (strcmp(q->hosts[i].name, name) == 0)
			return &q->hosts[i];
	return NULL;
}

static struct tls_policy_result *result_new(struct tls_req *q)
{
	struct tls_policy_result *r = xcalloc(1, sizeof(*r));
	r->addrs = xcalloc(q->naddrs ? q->naddrs : 1, sizeof(*r->addrs));
	struct tls_owned *own = xcalloc(1, sizeof(*own));
	r->owned = own;
	return r;
}

static void result_defer(struct tls_policy_result *r, const char *why, const char *domain)
{
	r->status = TLS_POLICY_DEFER;
	r->naddrs = 0;
	snprintf(r->why, sizeof(r->why), "451 4.7.5 %s (%s)", why, domain);
}

/* The TLS of an address whose host has no DANE, under the domain's MTA-STS policy (or none). */
static bool non_dane_tls(const struct tls_req *q, const struct mta_sts_policy *sts, const char *host,
			 struct smtp_out_tls *out)
{
	switch (q->mode) {
	case TLS_ENCRYPT:
		*out = TLS_ENCRYPT_;
		return true;
	case TLS_VERIFY:
		*out = TLS_VERIFY_;
		return true;
	case TLS_MTA_STS:
	case TLS_AUTO:
		if (sts && sts->mode == MTA_STS_MODE_ENFORCE) {
			*out = TLS_MTA_STS_;
			return mta_sts_mx_matches(sts, host); /* RFC 8461 4.1: other hosts are not used */
		}
		*out = sts && sts->mode == MTA_STS_MODE_TESTING ? TLS_MTA_STS_TESTING_ : TLS_MAY_;
		if (sts && sts->mode == MTA_STS_MODE_TESTING && !mta_sts_mx_matches(sts, host))
			log_info("delivery", "dest=%s MTA-STS testing: %s is not in the policy's mx list", q->domain, host);
		return true;
	default:
		*out = TLS_MAY_;
		return true;
	}
}

/* Builds the result from the DANE answers and the MTA-STS policy (NULL: none). */
static void decide(struct tls_req *q, const struct mta_sts_policy *sts)
{
	struct tls_policy_result *r = q->res = result_new(q);
	struct tls_owned *own = r->owned;
	size_t dropped_dane = 0, dropped_sts = 0;
	for (size_t i = 0; i < q->nhosts; i++) {
		own->recs[own->n++] = q->hosts[i].recs; /* the result owns them now */
		q->hosts[i].recs = NULL;
	}
	for (size_t i = 0; i < q->naddrs; i++) {
		struct smtp_out_addr a = q->addrs[i];
		struct tls_host *h = host_of(q, a.host);
		if (h && h->dane == DANE_TEMPFAIL) {
			dropped_dane++;
			continue;
		}
		if (h && h->dane == DANE_USABLE) {
			a.tls = (struct smtp_out_tls){SMTP_OUT_TLS_DANE, "dane-verified", "451 4.7.5 TLSA record did not match",
						      false, own->recs[h - q->hosts]};
		} else if (h && h->dane == DANE_UNUSABLE) {
			/* RFC 7672 2.2: validated but unusable records still mean "encrypt". */
			a.tls = (struct smtp_out_tls){SMTP_OUT_TLS_ENCRYPT, "dane-encrypted", NULL, false, NULL};
		} else if (!non_dane_tls(q, sts, a.host, &a.tls)) {
			dropped_sts++;
			continue;
		}
		r->addrs[r->naddrs++] = a;
	}
	if (r->naddrs)
		return;
	if (dropped_sts)
		result_defer(r, "no MX host matches the MTA-STS policy", q->domain);
	else
		result_defer(r, "TLSA lookup failed for every MX host", q->domain);
}

/* --- MTA-STS ------------------------------------------------------------------ */

static void on_mta_sts(void *arg, enum mta_sts_status st, const struct mta_sts_policy *p, const char *why)
{
	struct tls_req *q = arg;
	q->pending--;
	if (!q->tp) { /* detached: the answer went out already */
		if (!q->pending)
			req_free(q);
		return;
	}
	if (st == MTA_STS_CANCELLED) {
		q->res = xcalloc(1, sizeof(*q->res));
		q->res->status = TLS_POLICY_CANCELLED;
		req_answer(q);
		return;
	}
	/* RFC 8461 5.1: no usable policy (and none cached) means delivery as without MTA-STS. */
	if (st == MTA_STS_TEMPFAIL)
		log_info("delivery", "dest=%s MTA-STS policy unavailable (%s): delivering without it", q->domain,
			 why ? why : "?");
	decide(q, st == MTA_STS_OK ? p : NULL);
	req_answer(q);
}

/* --- DANE ------------------------------------------------------------------------ */

/*
 * mta-sts: always. auto: when at least one host has no DANE. RFC 8461 2:
 * DANE wins for the hosts that have it, and only for them; the policy
 * still binds the others, or an attacker who blocks the DANE host would
 * push the mail to one that no one authenticates.
 */
static bool wants_mta_sts(const struct tls_req *q)
{
	if (!q->tp->mta_sts || (q->mode != TLS_MTA_STS && q->mode != TLS_AUTO))
		return false;
	if (q->mode == TLS_MTA_STS)
		return true;
	for (size_t i = 0; i < q->nhosts; i++)
		if (q->hosts[i].dane == DANE_NONE)
			return true;
	return false;
}

/* Every lookup of the first stage is in: ask MTA-STS, or decide now. */
static void hosts_done(struct tls_req *q)
{
	if (wants_mta_sts(q)) {
		q->pending++;
		q->mta_sts_asked = true;
		mta_sts_get(q->tp->mta_sts, q->domain, on_mta_sts, q);
		return;
	}
	decide(q, NULL);
	req_answer(q);
}

static void on_dane(void *arg, enum dane_status st, struct dane_records *recs)
{
	struct tls_host *h = arg;
	struct tls_req *q = h->req;
	q->pending--;
	h->dane = st;
	h->recs = st == DANE_USABLE ? recs : NULL;
	if (st != DANE_USABLE && recs)
		dane_records_free(recs);
	if (!q->tp) {
		if (!q->pending)
			req_free(q);
		return;
	}
	if (st == DANE_CANCELLED) {
		/* The resolver is going away: so is the daemon. */
		if (!q->pending) {
			q->res = xcalloc(1, sizeof(*q->res));
			q->res->status = TLS_POLICY_CANCELLED;
			req_answer(q);
		}
		return;
	}
	if (st == DANE_TEMPFAIL)
		log_info("delivery", "dest=%s host=%s TLSA lookup failed: the host is not used", q->domain, h->name);
	if (!q->pending)
		hosts_done(q);
}

static uint16_t addr_port(const struct smtp_out_addr *a)
{
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

static void collect_hosts(struct tls_req *q)
{
	for (size_t i = 0; i < q->naddrs && q->nhosts < ROUTE_MAX_MX; i++) {
		if (host_of(q, q->addrs[i].host))
			continue;
		struct tls_host *h = &q->hosts[q->nhosts++];
		h->req = q;
		h->dane = DANE_NONE;
		snprintf(h->name, sizeof(h->name), "%s", q->addrs[i].host);
		h->port = addr_port(&q->addrs[i]);
	}
}

/* An IP literal (a configured primary) has no TLSA records to look up. */
static bool is_ip_literal(const char *host)
{
	return strchr(host, ':') || strspn(host, "0123456789.") == strlen(host);
}

/* --- the API ------------------------------------------------------------------- */

void tls_policy_apply(struct tls_policy *tp, const char *domain, enum tls_mode mode, bool hosts_secure,
		      const struct smtp_out_addr *addrs, size_t n, tls_policy_fn *fn, void *arg)
{
	struct tls_req *q = xcalloc(1, sizeof(*q));
	q->tp = tp;
	q->mode = mode;
	q->fn = fn;
	q->arg = arg;
	snprintf(q->domain, sizeof(q->domain), "%s", domain);
	q->addrs = xcalloc(n ? n : 1, sizeof(*q->addrs));
	memcpy(q->addrs, addrs, n * sizeof(*addrs));
	q->naddrs = n;
	q->next = tp->reqs;
	if (q->next)
		q->next->prev = q;
	tp->reqs = q;
	collect_hosts(q);
	bool dane = (mode == TLS_DANE || mode == TLS_AUTO) && hosts_secure;
	if ((mode == TLS_DANE || mode == TLS_AUTO) && !hosts_secure)
		log_debug("delivery", "dest=%s MX answer not DNSSEC-validated: no DANE", domain);
	size_t asked = 0;
	for (size_t i = 0; dane && i < q->nhosts; i++)
		asked += !is_ip_literal(q->hosts[i].name);
	if (!asked && !wants_mta_sts(q)) {
		decide(q, NULL);
		answer_later(q);
		return;
	}
	if (!asked) {
		hosts_done(q); /* mta_sts_get never answers from inside */
		return;
	}
	q->pending = asked;
	for (size_t i = 0; dane && i < q->nhosts; i++)
		if (!is_ip_literal(q->hosts[i].name))
			dane_lookup(tp->dns, q->hosts[i].name, q->hosts[i].port, on_dane, &q->hosts[i]);
}

void tls_policy_result_free(struct tls_policy_result *r)
{
	if (!r)
		return;
	struct tls_owned *own = r->owned;
	for (size_t i = 0; own && i < own->n; i++)
		if (own->recs[i])
			dane_records_free(own->recs[i]);
	free(own);
	free(r->addrs);
	free(r);
}

struct tls_policy *tls_policy_new(struct event_base *base, struct dns *dns, struct mta_sts *mta_sts)
{
	struct tls_policy *tp = xcalloc(1, sizeof(*tp));
	tp->base = base;
	tp->dns = dns;
	tp->mta_sts = mta_sts;
	return tp;
}

void tls_policy_free(struct tls_policy *tp)
{
	if (!tp)
		return;
	while (tp->reqs) {
		struct tls_req *q = tp->reqs;
		tls_policy_result_free(q->res);
		q->res = xcalloc(1, sizeof(*q->res));
		q->res->status = TLS_POLICY_CANCELLED;
		if (q->answer_ev)
			event_del(q->answer_ev);
		req_answer(q);
	}
	free(tp);
}
