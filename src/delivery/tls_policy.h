/*
 * tls_policy: which TLS each address of the next hop must get, decided
 * between the route lookup and the connection (RFC 7672, RFC 8461). Per
 * domain `tls =`:
 *   may, encrypt, verify: the same for every address, no lookup;
 *   dane:    hosts with DNSSEC-validated usable TLSA records, named by a
 *            validated MX RRset (or the configuration), get DANE, the
 *            others MAY (Postfix's "dane"); a failed TLSA lookup drops
 *            the host (it cannot be told apart from an attack);
 *   mta-sts: in enforce mode only hosts matching the policy's mx patterns,
 *            VERIFY; in testing mode MAY with the check reported; no
 *            policy: MAY;
 *   auto:    per host: DANE where it has validated TLSA records (RFC 8461
 *            2: DANE wins there); every other host as under mta-sts, so an
 *            enforce policy also binds the hosts without TLSA records (one
 *            blocked DANE host must not open an unauthenticated path).
 * When no address is left, the result defers with a reply that says why
 * ("451 4.7.5 ..."). Callbacks run exactly once, never from inside
 * tls_policy_apply; tls_policy_free runs pending ones with CANCELLED.
 */
#ifndef MXV_TLS_POLICY_H
#define MXV_TLS_POLICY_H

#include "base/cfg.h"
#include "smtp_out.h"

struct event_base;
struct dns;
struct mta_sts;
struct tls_policy;

enum tls_policy_status { TLS_POLICY_OK = 0, TLS_POLICY_DEFER, TLS_POLICY_CANCELLED };

struct tls_policy_result {
	enum tls_policy_status status;
	struct smtp_out_addr *addrs; /* OK: the addresses to try, in order, each with its TLS */
	size_t naddrs;
	char why[400];               /* DEFER: the deferral reply; OK: what applied, for the debug log */
	void *owned;                 /* TLSA records the addresses point to */
};

/* r: the caller's from here on (tls_policy_result_free), also on CANCELLED. */
typedef void tls_policy_fn(void *arg, struct tls_policy_result *r);

/* mta_sts: NULL leaves MTA-STS out (auto is then dane or may). */
struct tls_policy *tls_policy_new(struct event_base *base, struct dns *dns, struct mta_sts *mta_sts);
void tls_policy_free(struct tls_policy *tp);
/*
 * addrs: the route's, in order (copied). domain: lower case. hosts_secure:
 * the route's host names are trusted (route_result.secure); when false, no
 * host gets DANE (RFC 7672 2.2.1: an MX RRset that is not validated could
 * name anyone's host, DANE-protected or not) and dane/auto act as without
 * TLSA records.
 */
void tls_policy_apply(struct tls_policy *tp, const char *domain, enum tls_mode mode, bool hosts_secure,
		      const struct smtp_out_addr *addrs, size_t n, tls_policy_fn *fn, void *arg);
void tls_policy_result_free(struct tls_policy_result *r);

#endif
