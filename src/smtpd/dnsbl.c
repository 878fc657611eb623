/*
 * dnsbl: see dnsbl.h. One A lookup per zone, all at once; the check holds a
 * reference to the configuration whose zones it asks, so a reload does not
 * pull them from under a lookup. Invariants: in_flight counts lookups whose
 * callback is owed; the check is freed by the last of them once it is
 * cancelled or delivered, never earlier. Error policy: a lookup that fails
 * (SERVFAIL, timeout, a name too long for the zone) is "failed", which can
 * only keep a client from being blocked.
 */
#include "dnsbl.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "base/dns.h"
#include "base/util.h"

enum zone_state { ZONE_PENDING = 0, ZONE_LISTED, ZONE_CLEAN, ZONE_FAILED };

struct dnsbl_lookup {
	struct dnsbl_check *c;
	size_t i; /* < ndnsbl: dnsbl[i]; else dnswl[i - ndnsbl] */
	enum zone_state st;
};

struct dnsbl_check {
	const struct cfg *cfg; /* a reference */
	dnsbl_fn *fn;
	void *arg;
	struct dnsbl_lookup *l;
	size_t n, in_flight;
	bool done;             /* delivered or cancelled: only counting down */
};

bool dnsbl_wanted(const struct cfg *cfg)
{
	return cfg->ndnsbl > 0 || cfg->ndnswl > 0; /* dnswl alone: for greylisting's exemption */
}

static void check_free(struct dnsbl_check *c)
{
	cfg_unref(c->cfg);
	free(c->l);
	free(c);
}

static const char *zone_of(const struct dnsbl_check *c, size_t i)
{
	return i < c->cfg->ndnsbl ? c->cfg->dnsbl[i].zone : c->cfg->dnswl[i - c->cfg->ndnsbl];
}

static void add_name(char *list, const char *zone)
{
	size_t used = strlen(list);
	if (fmt(list + used, DNSBL_LOG_MAX - used, "%s%s", used ? "," : "", zone) < 0)
		list[used] = '\0'; /* the log shows the zones that fit */
}

static void verdict(const struct dnsbl_check *c, struct dnsbl_verdict *v)
{
	memset(v, 0, sizeof(*v));
	bool allowed = false;
	for (size_t i = 0; i < c->n; i++) {
		const struct dnsbl_lookup *l = &c->l[i];
		bool wl = i >= c->cfg->ndnsbl;
		if (l->st == ZONE_PENDING || l->st == ZONE_FAILED) {
			add_name(v->failed, zone_of(c, i));
			allowed |= wl; /* an unanswered dnswl might have listed it */
		} else if (l->st == ZONE_LISTED && wl) {
			add_name(v->allowed, zone_of(c, i));
			allowed = true;
		} else if (l->st == ZONE_LISTED) {
			add_name(v->listed, zone_of(c, i));
			v->score += c->cfg->dnsbl[i].weight;
			if (!v->zone)
				v->zone = c->cfg->dnsbl[i].zone;
		}
	}
	v->blocked = !allowed && v->score >= c->cfg->dnsbl_threshold;
	if (!v->blocked)
		v->zone = NULL;
}

static void on_answer(void *arg, enum dns_status st, const struct dns_addr *a, size_t n)
{
	struct dnsbl_lookup *l = arg;
	struct dnsbl_check *c = l->c;
	c->in_flight--;
	if (c->done) {
		if (!c->in_flight)
			check_free(c);
		return;
	}
	if (st == DNS_NXDOMAIN || st == DNS_NODATA) {
		l->st = ZONE_CLEAN;
	} else if (st != DNS_OK) {
		l->st = ZONE_FAILED;
	} else {
		l->st = ZONE_CLEAN;
		for (size_t i = 0; i < n && l->st == ZONE_CLEAN; i++) {
			if (a[i].ss.ss_family != AF_INET)
				continue;
			const uint8_t *ip = (const uint8_t *)&((const struct sockaddr_in *)&a[i].ss)->sin_addr;
			bool wl = l->i >= c->cfg->ndnsbl;
			if (wl ? ip[0] == 127 : connspec_dnsbl_matches(&c->cfg->dnsbl[l->i], ip))
				l->st = ZONE_LISTED;
		}
	}
	if (c->in_flight)
		return;
	struct dnsbl_verdict v;
	verdict(c, &v);
	c->done = true;
	c->fn(c->arg, &v);
	check_free(c);
}

/* An IPv4-mapped IPv6 client is listed under its IPv4 address. */
static void client_address(const struct sockaddr *sa, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)out;
			s4->sin_family = AF_INET;
			memcpy(&s4->sin_addr, s6->sin6_addr.s6_addr + 12, 4);
			return;
		}
		memcpy(out, s6, sizeof(*s6));
	} else if (sa->sa_family == AF_INET) {
		memcpy(out, sa, sizeof(struct sockaddr_in));
	} else {
		out->ss_family = sa->sa_family; /* dns_list_name refuses it: every lookup fails */
	}
}

struct dnsbl_check *dnsbl_check_start(struct dns *dns, const struct cfg *cfg, const struct sockaddr *client,
				      dnsbl_fn *fn, void *arg)
{
	struct dnsbl_check *c = xcalloc(1, sizeof(*c));
	struct sockaddr_storage ip;
	c->cfg = cfg_ref(cfg);
	c->fn = fn;
	c->arg = arg;
	c->n = cfg->ndnsbl + cfg->ndnswl;
	c->l = xcalloc(c->n ? c->n : 1, sizeof(*c->l));
	client_address(client, &ip);
	c->in_flight = c->n;
	for (size_t i = 0; i < c->n; i++) {
		char name[512];
		c->l[i] = (struct dnsbl_lookup){.c = c, .i = i};
		/* A name that does not fit goes out empty: dns answers DNS_BADNAME, a failure, from the loop. */
		if (dns_list_name((const struct sockaddr *)&ip, zone_of(c, i), name, sizeof(name)) < 0)
			name[0] = '\0';
		dns_lookup_family(dns, name, AF_INET, on_answer, &c->l[i]);
	}
	return c;
}

void dnsbl_check_cancel(struct dnsbl_check *c)
{
	if (!c)
		return;
	c->done = true;
	if (!c->in_flight)
		check_free(c); /* cannot happen: the last answer delivers and frees */
}

void dnsbl_check_now(struct dnsbl_check *c, struct dnsbl_verdict *v)
{
	verdict(c, v);
	dnsbl_check_cancel(c);
}
