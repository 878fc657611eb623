/*
 * dns: asynchronous DNS for the forward side, c-ares driven by the libevent
 * loop (no thread, no blocking call). Answers MX and address (AAAA + A)
 * questions and classifies failures the way RFC 5321 5.1 needs them:
 * an authoritative "no such domain" is permanent, anything else (SERVFAIL,
 * timeout, refused, network error) is temporary.
 * Callbacks run on the loop thread, exactly once per query, never from
 * inside dns_lookup_*; dns_free runs the callbacks of pending queries with
 * DNS_CANCELLED before it returns. Arrays passed to a callback are valid
 * only during the callback.
 */
#ifndef MXV_DNS_H
#define MXV_DNS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util.h"

struct event_base;
struct dns;

enum dns_status {
	DNS_OK = 0,
	DNS_NXDOMAIN,   /* authoritative: the name does not exist */
	DNS_NODATA,     /* the name exists, no record of that type */
	DNS_TEMPFAIL,   /* SERVFAIL, timeout, refused, network: try again later */
	DNS_BADNAME,    /* the name is not a valid domain name */
	DNS_CANCELLED,  /* dns_free ran first */
};

struct dns_mx {
	uint16_t pref;
	char host[256]; /* lower-case, no trailing dot; "" for the null MX "." (RFC 7505) */
};

struct dns_addr {
	struct sockaddr_storage ss; /* port set from the query */
	socklen_t len;
};

/* The longest TXT record kept (longer ones are cut here). */
#define DNS_TXT_MAX 4096

typedef void dns_mx_fn(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n);
typedef void dns_addr_fn(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n);
/* txt: one NUL-terminated string per record, its character-strings joined. */
typedef void dns_txt_fn(void *arg, enum dns_status st, const char *const *txt, size_t n);

/*
 * resolver: "IP", "IP:PORT", "[IPv6]:PORT", or NULL for /etc/resolv.conf.
 * timeout_ms: per try, <= 0 for 5000; 2 tries, the second with twice the
 * timeout. 0, or -EINVAL for a bad resolver, or -EIO / -ENOMEM.
 */
int dns_open(struct event_base *base, const char *resolver, int timeout_ms, struct dns **out) MUST_CHECK;
/* Safe from inside a callback; no lookup may follow, not even from one. */
void dns_free(struct dns *d);

/*
 * MX records of domain, sorted by preference (ties in the order received).
 * A name over 253 characters or with an empty label is DNS_BADNAME.
 */
void dns_lookup_mx(struct dns *d, const char *domain, dns_mx_fn *fn, void *arg);
/*
 * IPv6 and IPv4 addresses of host (AAAA first, then A), with port set.
 * An IP literal answers at once without a query. DNS_OK with n == 0 never
 * happens: no address is DNS_NODATA.
 */
void dns_lookup_addrs(struct dns *d, const char *host, uint16_t port, dns_addr_fn *fn, void *arg);

/* The TXT records of name (for MTA-STS, later SPF and DMARC). No record is DNS_NODATA. */
void dns_lookup_txt(struct dns *d, const char *name, dns_txt_fn *fn, void *arg);

const char *dns_status_str(enum dns_status st);

#endif
