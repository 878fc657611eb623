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

#include <stdbool.h>
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

/*
 * secure: the resolver set the AD bit on the MX answer (as for TLSA below);
 * DANE applies only to MX hosts from a validated MX RRset (RFC 7672 2.2.1).
 */
typedef void dns_mx_fn(void *arg, enum dns_status st, bool secure, const struct dns_mx *mx, size_t n);
typedef void dns_addr_fn(void *arg, enum dns_status st, const struct dns_addr *addrs, size_t n);
/*
 * txt: one NUL-terminated string per record, its character-strings joined;
 * a NUL byte inside reads as DEL (0x7f), so it cannot cut a record short.
 */
typedef void dns_txt_fn(void *arg, enum dns_status st, const char *const *txt, size_t n);

/*
 * resolver: "IP", "IP:PORT", "[IPv6]:PORT", or NULL for /etc/resolv.conf.
 * timeout_ms: per try, <= 0 for 5000; 2 tries, the second with twice the
 * timeout. 0, or -EINVAL for a bad resolver, or -EIO / -ENOMEM.
 */
int dns_open(struct event_base *base, const char *resolver, int timeout_ms, struct dns **out) MUST_CHECK;
/* Whether AD bits are believed: every configured resolver is on loopback. */
bool dns_trusts_dnssec(const struct dns *d);
/* The loop the resolver runs on: for a caller that must defer a result it has at once. */
struct event_base *dns_event_base(const struct dns *d);
/* Safe from inside a callback; no lookup may follow, not even from one. */
void dns_free(struct dns *d);

/*
 * MX records of domain, sorted by preference (ties in the order received).
 * A name over 253 characters or with an empty label is DNS_BADNAME. The
 * query asks for AD (RFC 6840 5.7).
 */
void dns_lookup_mx(struct dns *d, const char *domain, dns_mx_fn *fn, void *arg);
/*
 * The same, with the MX RRset's TTL in seconds as the resolver gave it
 * (0 when the answer has no MX record), for `mxvault check`.
 */
typedef void dns_mx_ttl_fn(void *arg, enum dns_status st, const struct dns_mx *mx, size_t n, uint32_t ttl);
void dns_lookup_mx_ttl(struct dns *d, const char *domain, dns_mx_ttl_fn *fn, void *arg);
/*
 * IPv6 and IPv4 addresses of host (AAAA first, then A), with port set.
 * An IP literal answers at once without a query. DNS_OK with n == 0 never
 * happens: no address is DNS_NODATA.
 */
void dns_lookup_addrs(struct dns *d, const char *host, uint16_t port, dns_addr_fn *fn, void *arg);

/* A TLSA record (RFC 6698), as the zone has it. */
struct dns_tlsa {
	uint8_t usage, selector, mtype;
	uint16_t len;
	unsigned char *data;
};

/* The most TLSA records kept of one answer. */
#define DNS_TLSA_MAX 16

/*
 * secure: the resolver set the AD bit, i.e. it validated the answer with
 * DNSSEC; never true unless every resolver is on loopback (a remote one's
 * AD bit could be forged on the way).
 * An answer with no record is DNS_NODATA; its secure flag still tells
 * whether the absence was validated.
 */
typedef void dns_tlsa_fn(void *arg, enum dns_status st, bool secure, const struct dns_tlsa *r, size_t n);

/* The TLSA records of name ("_25._tcp.mx.example.com"); the query asks for AD (RFC 6840 5.7). */
void dns_lookup_tlsa(struct dns *d, const char *name, dns_tlsa_fn *fn, void *arg);

/*
 * The pure part, for tests and fuzzing: the TLSA records in a DNS answer
 * message (other types skipped, at most DNS_TLSA_MAX), and its AD bit.
 * 0, or -EINVAL for a malformed message. *out: free with dns_tlsa_free.
 */
int dns_parse_tlsa(const unsigned char *msg, size_t n, bool *secure, struct dns_tlsa **out, size_t *nout);
void dns_tlsa_free(struct dns_tlsa *r, size_t n);
/*
 * The pure part of the MX TTL: the smallest TTL of the answer records of
 * type in a DNS message. 0, -ENOENT (no such record), or -EINVAL.
 */
int dns_answer_ttl(const unsigned char *msg, size_t n, uint16_t type, uint32_t *ttl) MUST_CHECK;

/* The TXT records of name (for MTA-STS, later SPF and DMARC). No record is DNS_NODATA. */
void dns_lookup_txt(struct dns *d, const char *name, dns_txt_fn *fn, void *arg);

/*
 * The addresses of host in one family only (AF_INET: A, AF_INET6: AAAA),
 * one query, so the caller sees that query's own status: SPF's a and mx
 * mechanisms ask only for the client's family and count NODATA and
 * NXDOMAIN as void lookups (RFC 7208 4.6.4). No IP-literal shortcut: host
 * is always queried as a name. DNS_OK with n == 0 never happens.
 */
void dns_lookup_family(struct dns *d, const char *host, int family, dns_addr_fn *fn, void *arg);

/* The most PTR names kept of one answer. */
#define DNS_PTR_MAX 32

/* names: lower-case, no trailing dot, valid during the call. */
typedef void dns_ptr_fn(void *arg, enum dns_status st, const char *const *names, size_t n);

/*
 * The PTR names of an address (AF_INET or AF_INET6; other families are
 * DNS_BADNAME), under in-addr.arpa or ip6.arpa, at most DNS_PTR_MAX in the
 * order received. No PTR record is DNS_NODATA.
 */
void dns_lookup_ptr(struct dns *d, const struct sockaddr *sa, dns_ptr_fn *fn, void *arg);

/*
 * The target of name when name is an alias (its CNAME record, RFC 1034
 * 3.6.2): names[0], lower case. Not an alias is DNS_NODATA. For
 * `mxvault check`: an MX target must not be an alias (RFC 2181 10.3).
 */
void dns_lookup_cname(struct dns *d, const char *name, dns_ptr_fn *fn, void *arg);

/* The reverse name of an address ("4.3.2.1.in-addr.arpa"); 0 or -EINVAL. */
int dns_reverse_name(const struct sockaddr *sa, char *out, size_t n) MUST_CHECK;
/*
 * The name a DNS list (DNSBL, DNSWL) publishes an address under: the same
 * reversed octets or nibbles under zone ("4.3.2.1.zen.example.org").
 * 0, or -EINVAL when out is too small. An IPv6 name is 64 labels: under a
 * long zone it can pass 253 characters, and a lookup of it is DNS_BADNAME.
 */
int dns_list_name(const struct sockaddr *sa, const char *zone, char *out, size_t n) MUST_CHECK;

const char *dns_status_str(enum dns_status st);

#endif
