/*
 * check: see check.h. The DNS part runs on a short-lived event loop with
 * the project's resolver (base/dns): the MX query, then every host's
 * address, alias and TLSA queries in parallel, then (with --probe) the
 * reverse names (auth/iprev); each batch is waited for with run_until_done, and c-ares'
 * own timeouts guarantee every callback comes. The MTA-STS policy comes
 * through delivery/mta_sts on the same loop (its HTTPS fetch has its own
 * limits). SMTP is blocking (check_probe), after the DNS part. This host
 * is recognised through delivery/route, exactly as the daemon's loop
 * avoidance does.
 */
#include "check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "auth/iprev.h"
#include "check_int.h"
#include "delivery/mta_sts.h"
#include "delivery/route.h"

struct run {
	const struct check_opts *o;
	struct check_report *r;
	struct event_base *base;
	struct dns *dns;
	struct route_ctx *route;
	int pending;
	enum dns_status mx_st;
	bool null_mx;
	enum mta_sts_status sts_st;
	struct mta_sts_policy sts;
	char sts_why[200];
};

/* Runs the loop until every callback of the batch came. */
static void run_until_done(struct run *u)
{
	while (u->pending > 0)
		if (event_base_loop(u->base, EVLOOP_ONCE) != 0)
			break; /* no event left: cannot happen while a query is pending */
}

/* --- DNS -------------------------------------------------------------- */

static void on_mx(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n, uint32_t ttl)
{
	struct run *u = arg;
	u->pending--;
	u->mx_st = st;
	if (st != DNS_OK)
		return;
	if (n == 1 && mx[0].host[0] == '\0') {
		u->null_mx = true;
		return;
	}
	size_t keep = n < CHECK_MAX_MX ? n : CHECK_MAX_MX;
	u->r->mx = xcalloc(keep, sizeof(*u->r->mx));
	for (size_t i = 0; i < n && u->r->nmx < keep; i++) {
		if (!mx[i].host[0])
			continue; /* "." beside other records: nothing to look up */
		struct check_mx *m = &u->r->mx[u->r->nmx++];
		check_text(m->host, sizeof(m->host), "%s", mx[i].host);
		m->pref = mx[i].pref;
		m->ttl = ttl;
	}
}

static void on_addrs(void *arg, enum dns_status st, const struct dns_addr *a, size_t n)
{
	struct check_mx *m = arg;
	m->addr_st = st;
	m->naddrs = n < CHECK_MAX_ADDRS ? n : CHECK_MAX_ADDRS;
	if (st == DNS_OK)
		memcpy(m->addrs, a, m->naddrs * sizeof(*a));
	else
		m->naddrs = 0;
}

static void on_cname(void *arg, enum dns_status st, const char *const *names, size_t n)
{
	struct check_mx *m = arg;
	if (st == DNS_OK && n)
		check_text(m->cname, sizeof(m->cname), "%s", names[0]);
}

static void on_tlsa(void *arg, enum dns_status st, bool secure, const struct dns_tlsa *t, size_t n)
{
	struct check_mx *m = arg;
	(void)secure;
	(void)t;
	m->tlsa = st == DNS_OK && n > 0;
}

/* The three per-host callbacks share one counter: each decrements it after its own work. */
struct host_q {
	struct run *u;
	struct check_mx *m;
};

static void done_addrs(void *arg, enum dns_status st, const struct dns_addr *a, size_t n)
{
	struct host_q *h = arg;
	on_addrs(h->m, st, a, n);
	h->u->pending--;
}

static void done_cname(void *arg, enum dns_status st, const char *const *names, size_t n)
{
	struct host_q *h = arg;
	on_cname(h->m, st, names, n);
	h->u->pending--;
}

static void done_tlsa(void *arg, enum dns_status st, bool secure, const struct dns_tlsa *t, size_t n)
{
	struct host_q *h = arg;
	on_tlsa(h->m, st, secure, t, n);
	h->u->pending--;
}

static bool is_ip_literal(const char *s)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

static void lookup_hosts(struct run *u)
{
	struct check_report *r = u->r;
	struct host_q *hq = xcalloc(r->nmx ? r->nmx : 1, sizeof(*hq));
	for (size_t i = 0; i < r->nmx; i++) {
		struct check_mx *m = &r->mx[i];
		char name[300];
		hq[i] = (struct host_q){u, m};
		m->ip_literal = is_ip_literal(m->host);
		if (m->ip_literal)
			continue; /* senders look it up as a name; we report it and ask nothing */
		u->pending += 3;
		dns_lookup_addrs(u->dns, m->host, u->o->port, done_addrs, &hq[i]);
		dns_lookup_cname(u->dns, m->host, done_cname, &hq[i]);
		if (fmt(name, sizeof(name), "_%u._tcp.%s", u->o->port, m->host) < 0)
			name[0] = '\0'; /* too long: the lookup answers BADNAME */
		dns_lookup_tlsa(u->dns, name, done_tlsa, &hq[i]);
	}
	run_until_done(u);
	free(hq);
	for (size_t i = 0; u->route && i < r->nmx; i++) {
		struct check_mx *m = &r->mx[i];
		m->self_name = route_is_self_name(u->route, m->host);
		for (size_t k = 0; k < m->naddrs && !m->self_addr; k++)
			m->self_addr = route_is_self_addr(u->route, &m->addrs[k]);
	}
}

/* Reverse DNS of each probed address, forward-confirmed: auth/iprev's check (RFC 8601 3). */
static void on_iprev(void *arg, enum iprev_result res, const char *name)
{
	struct host_q *h = arg;
	h->m->rdns = res;
	if (res == IPREV_PASS && name)
		check_text(h->m->ptr, sizeof(h->m->ptr), "%s", name);
	h->u->pending--;
}

static void lookup_reverse(struct run *u)
{
	struct check_report *r = u->r;
	struct host_q *hq = xcalloc(r->nmx ? r->nmx : 1, sizeof(*hq));
	for (size_t i = 0; i < r->nmx; i++)
		if (r->mx[i].naddrs) {
			hq[i] = (struct host_q){u, &r->mx[i]};
			u->pending++;
			(void)iprev_check_start(u->dns, (const struct sockaddr *)&r->mx[i].addrs[0].ss, on_iprev, &hq[i]);
		}
	run_until_done(u);
	free(hq);
}

static void on_sts(void *arg, enum mta_sts_status st, const struct mta_sts_policy *p, const char *why)
{
	struct run *u = arg;
	u->sts_st = st;
	if (p)
		u->sts = *p;
	check_text(u->sts_why, sizeof(u->sts_why), "%s", why ? why : "");
	u->pending--;
}

static void lookup_mta_sts(struct run *u)
{
	struct mta_sts *m = mta_sts_new(u->base, u->dns, -1, u->o->ca_file);
	u->sts_st = MTA_STS_NONE;
	if (!m)
		return;
	u->pending++;
	mta_sts_get(m, u->o->domain, on_sts, u);
	run_until_done(u);
	mta_sts_free(m);
}

/* The MX query; false when there is no MX set to examine (the finding is added). */
static bool lookup_mx(struct run *u)
{
	struct check_report *r = u->r;
	u->pending = 1;
	dns_lookup_mx_ttl(u->dns, u->o->domain, on_mx, u);
	run_until_done(u);
	if (u->mx_st == DNS_NXDOMAIN)
		check_add(r, "dns.mx", CHECK_ERROR, NULL, "check the domain's spelling and its delegation",
			  "the domain does not exist (NXDOMAIN)");
	else if (u->mx_st == DNS_NODATA)
		check_add(r, "mx.none", CHECK_ERROR, NULL, "publish MX records: the primary, then this backup with a larger preference",
			  "no MX record: senders use the domain's own address, and no backup MX is possible");
	else if (u->mx_st != DNS_OK)
		check_add(r, "dns.mx", CHECK_ERROR, NULL, "check the domain's name servers answer (dig MX DOMAIN)",
			  "the MX lookup failed: %s", dns_status_str(u->mx_st));
	else if (u->null_mx)
		check_add(r, "mx.null", CHECK_ERROR, NULL, "remove the null MX if the domain is to receive mail",
			  "null MX (RFC 7505): the domain accepts no mail, a backup MX has nothing to do");
	else
		check_add(r, "mx.records", CHECK_OK, NULL, NULL, "%zu MX record%s", r->nmx, r->nmx == 1 ? "" : "s");
	return u->mx_st == DNS_OK && !u->null_mx && r->nmx > 0;
}

/* --- the run --------------------------------------------------------- */

static int run_open(struct run *u)
{
	const struct check_opts *o = u->o;
	const char *resolver = o->resolver ? o->resolver : o->cfg ? o->cfg->resolver : NULL;
	u->base = event_base_new();
	if (!u->base)
		return -EIO;
	int rc = dns_open(u->base, resolver, o->dns_timeout_ms, &u->dns);
	if (rc < 0)
		return rc;
	if (o->cfg)
		u->route = route_new(o->cfg, u->dns);
	return 0;
}

static void run_close(struct run *u)
{
	route_free(u->route);
	if (u->dns)
		dns_free(u->dns);
	if (u->base)
		event_base_free(u->base);
}

int check_run(const struct check_opts *o, struct check_report *r)
{
	struct run u = {.o = o, .r = r};
	memset(r, 0, sizeof(*r));
	if (fmt(r->domain, sizeof(r->domain), "%s", o->domain) < 0 || !is_host_name(o->domain, strlen(o->domain)))
		return -EINVAL;
	int rc = run_open(&u);
	if (rc == 0 && lookup_mx(&u)) {
		lookup_hosts(&u);
		check_rules_dns(r, o->cfg != NULL);
		if (o->probe)
			lookup_reverse(&u);
		check_rules_tlsa(r);
		check_smtp_all(r, o);
		lookup_mta_sts(&u);
		check_rules_sts(r, u.sts_st, &u.sts, u.sts_why);
	}
	run_close(&u);
	return rc;
}
