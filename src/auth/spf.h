/*
 * spf: check_host() of RFC 7208, asynchronous on the shared resolver
 * (base/dns.h): no thread, never blocking the loop. The RFC's limits hold:
 * 10 DNS-querying terms (include, a, mx, ptr, exists, redirect), 2 void
 * lookups, 10 names per mx or ptr, macro expansion (section 7) with a
 * bounded result, exp= only for fail, redirect= and include loops cut by
 * the term limit.
 *
 * The callback runs exactly once, never from inside spf_check_start;
 * spf_check_cancel withdraws it (the lookups under way end detached).
 * dns_free under a waiting check delivers SPF_TEMPERROR from inside it.
 * Memory is bounded: at most 12 records of DNS_TXT_MAX bytes per check.
 */
#ifndef MXV_SPF_H
#define MXV_SPF_H

#include <sys/socket.h>

struct dns;
struct spf_check;

enum spf_result {
	SPF_NONE = 0,
	SPF_NEUTRAL,
	SPF_PASS,
	SPF_FAIL,
	SPF_SOFTFAIL,
	SPF_TEMPERROR,
	SPF_PERMERROR,
};

struct spf_request {
	struct sockaddr_storage ip; /* the client's address (port ignored) */
	const char *domain;         /* the domain checked: the sender's, or the HELO name */
	const char *sender;         /* "local@domain" (postmaster@HELO for a null sender), for macros */
	const char *helo;           /* the HELO/EHLO name, for %{h} */
	const char *receiver;       /* our host name, for %{r} */
};

/* explanation: for SPF_FAIL, the expanded exp= text (or NULL); valid during the call. */
typedef void spf_fn(void *arg, enum spf_result r, const char *explanation);

struct spf_check *spf_check_start(struct dns *dns, const struct spf_request *rq, spf_fn *fn, void *arg);
void spf_check_cancel(struct spf_check *c);

/* "pass", "fail", ... as RFC 8601 writes them. */
const char *spf_result_str(enum spf_result r);

#endif
