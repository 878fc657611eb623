/*
 * route: where mail for a domain goes next (RFC 5321 5.1). The configured
 * primaries, or the domain's MX records: sorted by preference, only those
 * strictly more preferred than this host (known by hostname, also_known_as
 * and its own listening addresses), equal preferences in random order,
 * each host's IPv6 then IPv4 addresses. No MX: the domain itself (implicit
 * MX). Null MX (RFC 7505), and an authoritative NXDOMAIN, are permanent;
 * every other DNS failure is temporary.
 *
 * A DSN goes to whatever MX a forged sender domain names, so what one
 * domain can make us resolve and try is capped: the ROUTE_MAX_MX most
 * preferred hosts (only they are looked up, in parallel), the first
 * ROUTE_MAX_ADDRS_PER_HOST addresses of each, ROUTE_MAX_ADDRS in all.
 */
#ifndef MXV_ROUTE_H
#define MXV_ROUTE_H

#include <stdbool.h>
#include <stddef.h>

#include "base/cfg.h"
#include "base/dns.h"
#include "smtp_out.h"

#define ROUTE_MAX_MX 10
#define ROUTE_MAX_ADDRS_PER_HOST 8
#define ROUTE_MAX_ADDRS 20

enum route_status {
	ROUTE_OK = 0,
	ROUTE_TEMPFAIL, /* DNS trouble, or no address: try later */
	ROUTE_LOOP,     /* we are the best MX (or better ones resolve to us): defer, log */
	ROUTE_NXDOMAIN, /* permanent: 5.1.2 */
	ROUTE_NULLMX,   /* permanent: 5.1.10 */
};

struct route_result {
	enum route_status status;
	struct smtp_out_addr *addrs; /* in the order to try */
	size_t naddrs;
	/*
	 * The host names can be trusted for DANE (RFC 7672 2.2.1): they come
	 * from a DNSSEC-validated MX answer (or validated "no MX" for the
	 * implicit MX), or from the configuration (primary =).
	 */
	bool secure;
	char why[320];
};

typedef void route_fn(void *arg, const struct route_result *r);

struct route_ctx;

/* Takes a reference to cfg: its names (hostname, also_known_as) and listeners are ours, reload or not. */
struct route_ctx *route_new(const struct cfg *cfg, struct dns *dns);
void route_free(struct route_ctx *rc);
/* domain: lower case. cd: the domain's section, or NULL (e.g. a bounce's destination). */
void route_resolve(struct route_ctx *rc, const char *domain, const struct cfg_domain *cd, route_fn *fn, void *arg);

/*
 * How this host knows itself (for `mxvault check` too): host is hostname or
 * one of also_known_as (case-insensitive); a is one of the addresses it
 * listens on (every local address for a wildcard listen), port included.
 */
bool route_is_self_name(const struct route_ctx *rc, const char *host);
bool route_is_self_addr(const struct route_ctx *rc, const struct dns_addr *a);

/*
 * The pure part, for tests: keeps the MX records more preferred than every
 * record naming this host, shuffles equal preferences (rand_fn(n) gives
 * 0..n-1), and returns how many remain, at most ROUTE_MAX_MX (0: loop).
 * mx is reordered in place.
 */
size_t route_select_mx(struct dns_mx *mx, size_t n, const char *const *self_names, size_t nself,
		       unsigned (*rand_fn)(unsigned n));

#endif
