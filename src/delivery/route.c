/*
 * route: see route.h. One resolution = an MX query (unless primaries are
 * configured), then address queries for every candidate host in parallel;
 * the result lists addresses host by host in preference order. An address
 * that is one of ours ends the list there: everything from that preference
 * on is no better than us. Only the capped hosts are looked up (route.h),
 * and only the capped addresses of each are kept.
 */
#include "route.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

struct route_ctx {
	const struct cfg *cfg;  /* a reference: the one the names and addresses below are from */
	struct dns *dns;
	const char **self_names;
	size_t nself;
	struct smtp_out_addr *self_addrs; /* address + port we listen on */
	size_t nself_addrs;
};

struct resolution;

struct host {
	struct resolution *res;
	char name[256];
	uint16_t pref;
	uint16_t port;
	bool done;
	bool self;      /* one of its addresses is ours */
	enum dns_status st;
	struct dns_addr *addrs;
	size_t naddrs;
};

struct resolution {
	struct route_ctx *rc;
	route_fn *fn;
	void *arg;
	char domain[256];
	struct host *hosts;
	size_t nhosts, pending;
	bool secure;    /* the host names are trusted: configured, or from a validated MX answer */
};

static unsigned rand_below(unsigned n)
{
	return n ? (unsigned)random() % n : 0;
}

static uint16_t addr_port(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? ntohs(((const struct sockaddr_in6 *)ss)->sin6_port)
					 : ntohs(((const struct sockaddr_in *)ss)->sin_port);
}

static bool same_ip(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr, &((const struct sockaddr_in6 *)b)->sin6_addr,
			      16) == 0;
	return ((const struct sockaddr_in *)a)->sin_addr.s_addr == ((const struct sockaddr_in *)b)->sin_addr.s_addr;
}

static bool is_wildcard(const struct sockaddr_storage *ss)
{
	static const struct in6_addr any6 = IN6ADDR_ANY_INIT;
	if (ss->ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)ss)->sin6_addr, &any6, 16) == 0;
	return ((const struct sockaddr_in *)ss)->sin_addr.s_addr == htonl(INADDR_ANY);
}

static void add_self_addr(struct route_ctx *rc, const struct sockaddr *sa, uint16_t port)
{
	rc->self_addrs = xrealloc(rc->self_addrs, (rc->nself_addrs + 1) * sizeof(*rc->self_addrs));
	struct smtp_out_addr *a = &rc->self_addrs[rc->nself_addrs++];
	memset(a, 0, sizeof(*a));
	if (sa->sa_family == AF_INET6) {
		memcpy(&a->ss, sa, sizeof(struct sockaddr_in6));
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(port);
	} else {
		memcpy(&a->ss, sa, sizeof(struct sockaddr_in));
		((struct sockaddr_in *)&a->ss)->sin_port = htons(port);
	}
}

/* Our own addresses: the listen addresses, or every local address for a wildcard. */
static void collect_self_addrs(struct route_ctx *rc)
{
	for (size_t i = 0; i < rc->cfg->nlisten; i++) {
		const struct cfg_addr *l = &rc->cfg->listen[i];
		uint16_t port = addr_port(&l->ss);
		if (!is_wildcard(&l->ss)) {
			add_self_addr(rc, (const struct sockaddr *)&l->ss, port);
			continue;
		}
		struct ifaddrs *ifa, *p;
		if (getifaddrs(&ifa) < 0)
			continue;
		for (p = ifa; p; p = p->ifa_next)
			if (p->ifa_addr && p->ifa_addr->sa_family == l->ss.ss_family)
				add_self_addr(rc, p->ifa_addr, port);
		freeifaddrs(ifa);
	}
}

struct route_ctx *route_new(const struct cfg *cfg, struct dns *dns)
{
	struct route_ctx *rc = xcalloc(1, sizeof(*rc));
	rc->cfg = cfg_ref(cfg);
	rc->dns = dns;
	rc->self_names = xcalloc(cfg->naka + 1, sizeof(*rc->self_names));
	rc->self_names[rc->nself++] = cfg->hostname;
	for (size_t i = 0; i < cfg->naka; i++)
		rc->self_names[rc->nself++] = cfg->also_known_as[i];
	collect_self_addrs(rc);
	return rc;
}

void route_free(struct route_ctx *rc)
{
	if (!rc)
		return;
	free(rc->self_names);
	free(rc->self_addrs);
	cfg_unref(rc->cfg);
	free(rc);
}

bool route_is_self_name(const struct route_ctx *rc, const char *host)
{
	for (size_t i = 0; i < rc->nself; i++)
		if (strcasecmp(host, rc->self_names[i]) == 0)
			return true;
	return false;
}

bool route_is_self_addr(const struct route_ctx *rc, const struct dns_addr *a)
{
	for (size_t i = 0; i < rc->nself_addrs; i++)
		if (same_ip(&rc->self_addrs[i].ss, &a->ss) && addr_port(&rc->self_addrs[i].ss) == addr_port(&a->ss))
			return true;
	return false;
}

static int cmp_pref(const void *a, const void *b)
{
	const struct dns_mx *x = a, *y = b;
	return (int)x->pref - (int)y->pref;
}

size_t route_select_mx(struct dns_mx *mx, size_t n, const char *const *self, size_t nself,
		       unsigned (*rnd)(unsigned n))
{
	qsort(mx, n, sizeof(*mx), cmp_pref); /* dns.c sorts too; tests may not */
	size_t keep = n;
	for (size_t i = 0; i < n && keep == n; i++)
		for (size_t k = 0; k < nself; k++)
			if (strcasecmp(mx[i].host, self[k]) == 0) {
				/* Only hosts strictly more preferred than us (RFC 5321 5.1). */
				keep = i;
				while (keep > 0 && mx[keep - 1].pref == mx[i].pref)
					keep--;
				break;
			}
	for (size_t i = 0; i < keep;) {
		size_t j = i;
		while (j < keep && mx[j].pref == mx[i].pref)
			j++;
		for (size_t k = j - 1; k > i; k--) { /* Fisher-Yates within one preference */
			size_t r = i + rnd((unsigned)(k - i + 1));
			struct dns_mx t = mx[k];
			mx[k] = mx[r];
			mx[r] = t;
		}
		i = j;
	}
	return keep < ROUTE_MAX_MX ? keep : ROUTE_MAX_MX;
}

/* The addresses to try, host by host, up to the first host that is us. */
static void collect(struct resolution *res, struct route_result *r, bool *self_seen)
{
	r->addrs = xcalloc(ROUTE_MAX_ADDRS, sizeof(*r->addrs));
	for (size_t i = 0; i < res->nhosts && r->naddrs < ROUTE_MAX_ADDRS; i++) {
		const struct host *h = &res->hosts[i];
		if (h->self) {
			*self_seen = true; /* everything from this preference on is no better than us */
			return;
		}
		for (size_t k = 0; k < h->naddrs && r->naddrs < ROUTE_MAX_ADDRS; k++) {
			struct smtp_out_addr *a = &r->addrs[r->naddrs++];
			memcpy(&a->ss, &h->addrs[k].ss, sizeof(a->ss));
			a->len = h->addrs[k].len;
			snprintf(a->host, sizeof(a->host), "%s", h->name);
		}
	}
}

static void finish(struct resolution *res, enum route_status st, const char *why)
{
	struct route_result r = {.status = st, .secure = res->secure};
	snprintf(r.why, sizeof(r.why), "%s", why);
	if (st == ROUTE_OK) {
		bool self_seen = false;
		collect(res, &r, &self_seen);
		if (r.naddrs == 0) {
			bool tempfail = false;
			for (size_t i = 0; i < res->nhosts; i++)
				tempfail |= res->hosts[i].st == DNS_TEMPFAIL;
			r.status = self_seen && !tempfail ? ROUTE_LOOP : ROUTE_TEMPFAIL;
			snprintf(r.why, sizeof(r.why), "%s",
				 r.status == ROUTE_LOOP ? "mail for this domain loops back to us"
							: "no address for any mail exchanger");
		}
	}
	res->fn(res->arg, &r);
	free(r.addrs);
	for (size_t i = 0; i < res->nhosts; i++)
		free(res->hosts[i].addrs);
	free(res->hosts);
	free(res);
}

static void on_addrs(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n)
{
	struct host *h = arg;
	struct resolution *res = h->res;
	h->st = st;
	h->done = true;
	for (size_t i = 0; st == DNS_OK && i < n && !h->self; i++)
		h->self = route_is_self_addr(res->rc, &addrs[i]);
	if (st == DNS_OK && n && !h->self) {
		/* Only the first few: a hostile zone can name thousands. */
		h->naddrs = n < ROUTE_MAX_ADDRS_PER_HOST ? n : ROUTE_MAX_ADDRS_PER_HOST;
		h->addrs = xcalloc(h->naddrs, sizeof(*h->addrs));
		memcpy(h->addrs, addrs, h->naddrs * sizeof(*addrs));
	}
	if (--res->pending == 0)
		finish(res, ROUTE_OK, "");
}

static void resolve_hosts(struct resolution *res)
{
	res->pending = res->nhosts;
	for (size_t i = 0; i < res->nhosts; i++) {
		struct host *h = &res->hosts[i];
		h->res = res;
		dns_lookup_addrs(res->rc->dns, h->name, h->port ? h->port : res->rc->cfg->mx_port, on_addrs, h);
	}
}

static void add_host(struct resolution *res, const char *name, uint16_t pref, uint16_t port)
{
	res->hosts = xrealloc(res->hosts, (res->nhosts + 1) * sizeof(*res->hosts));
	struct host *h = &res->hosts[res->nhosts++];
	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->pref = pref;
	h->port = port;
}

static void on_mx(void *arg, enum dns_status st, bool secure, const struct dns_mx *mx, size_t n)
{
	struct resolution *res = arg;
	char why[320];
	res->secure = secure; /* for the implicit MX: whether "no MX" was validated */
	switch (st) {
	case DNS_OK:
		break;
	case DNS_NODATA: /* no MX: the domain itself is the mail exchanger (RFC 5321 5.1) */
		add_host(res, res->domain, 0, 0);
		resolve_hosts(res);
		return;
	case DNS_NXDOMAIN:
		snprintf(why, sizeof(why), "domain %s does not exist", res->domain);
		finish(res, ROUTE_NXDOMAIN, why);
		return;
	default:
		snprintf(why, sizeof(why), "MX lookup for %s: %s", res->domain, dns_status_str(st));
		finish(res, ROUTE_TEMPFAIL, why);
		return;
	}
	if (n == 1 && mx[0].host[0] == '\0') {
		snprintf(why, sizeof(why), "domain %s accepts no mail (null MX)", res->domain);
		finish(res, ROUTE_NULLMX, why);
		return;
	}
	struct dns_mx *sel = xcalloc(n, sizeof(*sel));
	memcpy(sel, mx, n * sizeof(*mx));
	size_t keep = route_select_mx(sel, n, res->rc->self_names, res->rc->nself, rand_below);
	for (size_t i = 0; i < keep; i++)
		if (sel[i].host[0])
			add_host(res, sel[i].host, sel[i].pref, 0);
	free(sel);
	if (res->nhosts == 0) {
		snprintf(why, sizeof(why), "we are the best MX for %s: mail loops back to us", res->domain);
		finish(res, ROUTE_LOOP, why);
		return;
	}
	resolve_hosts(res);
}

void route_resolve(struct route_ctx *rc, const char *domain, const struct cfg_domain *cd, route_fn *fn, void *arg)
{
	struct resolution *res = xcalloc(1, sizeof(*res));
	res->rc = rc;
	res->fn = fn;
	res->arg = arg;
	snprintf(res->domain, sizeof(res->domain), "%s", domain);
	if (cd && cd->nprimary) {
		/* Configured primaries, tried in the order written; the operator named them. */
		res->secure = true;
		for (size_t i = 0; i < cd->nprimary; i++)
			add_host(res, cd->primary[i].host, (uint16_t)i, cd->primary[i].port);
		resolve_hosts(res);
		return;
	}
	dns_lookup_mx(rc->dns, domain, on_mx, res);
}
