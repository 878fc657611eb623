/*
 * iprev: RFC 8601 3 on the shared resolver: the client's PTR names (the
 * first 10, as RFC 7208 4.6.4 bounds SPF's ptr), each looked up forward in
 * the client's family, one lookup at a time. Called by smtpd/ at connect.
 * Invariants: one lookup in flight at most; the callback runs once, from a
 * dns callback (so never inside iprev_check_start); a cancelled check is
 * freed by its lookup's callback. Error policy: a forward lookup that fails
 * temporarily makes the result temperror only if no other name passes;
 * an address that is neither IPv4 nor IPv6 is permerror.
 */
#include "iprev.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "base/dns.h"
#include "base/util.h"

#define IPREV_NAMES_MAX 10

struct iprev_check {
	struct dns *dns;
	iprev_fn *fn;
	void *arg;
	struct sockaddr_storage ip; /* IPv4-mapped IPv6 made IPv4 */
	char (*names)[256];
	size_t n, i;
	bool in_flight, cancelled, tempfail;
};

static void iprev_free(struct iprev_check *c)
{
	free(c->names);
	free(c);
}

static void iprev_deliver(struct iprev_check *c, enum iprev_result r, const char *name)
{
	c->fn(c->arg, r, name);
	iprev_free(c);
}

static bool iprev_same(const struct iprev_check *c, const struct dns_addr *a)
{
	if (a->ss.ss_family != c->ip.ss_family)
		return false;
	if (a->ss.ss_family == AF_INET6)
		return memcmp(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr,
			      &((const struct sockaddr_in6 *)&c->ip)->sin6_addr, 16) == 0;
	return memcmp(&((const struct sockaddr_in *)&a->ss)->sin_addr,
		      &((const struct sockaddr_in *)&c->ip)->sin_addr, 4) == 0;
}

static void iprev_next(struct iprev_check *c);

static void iprev_on_addr(void *arg, enum dns_status st, const struct dns_addr *a, size_t n)
{
	struct iprev_check *c = arg;
	c->in_flight = false;
	if (c->cancelled) {
		iprev_free(c);
		return;
	}
	if (st == DNS_CANCELLED) {
		iprev_deliver(c, IPREV_TEMPERROR, NULL);
		return;
	}
	c->tempfail |= st == DNS_TEMPFAIL;
	for (size_t i = 0; st == DNS_OK && i < n; i++) {
		if (iprev_same(c, &a[i])) {
			iprev_deliver(c, IPREV_PASS, c->names[c->i - 1]);
			return;
		}
	}
	iprev_next(c);
}

static void iprev_next(struct iprev_check *c)
{
	if (c->i == c->n) {
		iprev_deliver(c, c->tempfail ? IPREV_TEMPERROR : IPREV_FAIL, NULL);
		return;
	}
	c->in_flight = true;
	dns_lookup_family(c->dns, c->names[c->i++], c->ip.ss_family, iprev_on_addr, c);
}

static void iprev_on_ptr(void *arg, enum dns_status st, const char *const *names, size_t n)
{
	struct iprev_check *c = arg;
	c->in_flight = false;
	if (c->cancelled) {
		iprev_free(c);
		return;
	}
	switch (st) {
	case DNS_OK:
		break;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
		iprev_deliver(c, IPREV_FAIL, NULL);
		return;
	case DNS_BADNAME:
		iprev_deliver(c, IPREV_PERMERROR, NULL);
		return;
	default:
		iprev_deliver(c, IPREV_TEMPERROR, NULL);
		return;
	}
	c->n = n < IPREV_NAMES_MAX ? n : IPREV_NAMES_MAX;
	c->names = xcalloc(c->n ? c->n : 1, sizeof(*c->names));
	for (size_t i = 0; i < c->n; i++) {
		size_t len = strnlen(names[i], 255);
		memcpy(c->names[i], names[i], len);
	}
	iprev_next(c);
}

struct iprev_check *iprev_check_start(struct dns *dns, const struct sockaddr *client, iprev_fn *fn, void *arg)
{
	struct iprev_check *c = xcalloc(1, sizeof(*c));
	c->dns = dns;
	c->fn = fn;
	c->arg = arg;
	if (client->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)client;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			struct sockaddr_in *s4 = (struct sockaddr_in *)&c->ip;
			s4->sin_family = AF_INET;
			memcpy(&s4->sin_addr, s6->sin6_addr.s6_addr + 12, 4);
		} else {
			memcpy(&c->ip, s6, sizeof(*s6));
		}
	} else if (client->sa_family == AF_INET) {
		memcpy(&c->ip, client, sizeof(struct sockaddr_in));
	} else {
		c->ip.ss_family = client->sa_family; /* dns_lookup_ptr answers DNS_BADNAME: permerror */
	}
	c->in_flight = true;
	dns_lookup_ptr(dns, (const struct sockaddr *)&c->ip, iprev_on_ptr, c);
	return c;
}

void iprev_check_cancel(struct iprev_check *c)
{
	if (!c)
		return;
	if (c->in_flight)
		c->cancelled = true;
	else
		iprev_free(c);
}

const char *iprev_result_str(enum iprev_result r)
{
	static const char *names[] = {"pass", "fail", "temperror", "permerror"};
	return (size_t)r < ARRAY_LEN(names) ? names[r] : "unknown";
}
