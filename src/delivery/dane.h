/*
 * dane: DANE for SMTP (RFC 7672) on the hop to the primary. Looks up the
 * TLSA records of _PORT._tcp.HOST through the shared resolver and trusts
 * them only when the answer is DNSSEC-validated: the resolver (which must
 * be a validating one on loopback, as Postfix requires) sets the AD bit.
 * Of the records, only DANE-TA(2) and DANE-EE(3) usages with selectors 0/1
 * and matching types 0 (full), 1 (SHA-256) and 2 (SHA-512) are usable
 * (RFC 7672 3.1); PKIX usages are ignored. smtp_out then hands the records
 * to OpenSSL's DANE verifier (SSL_dane_enable / SSL_dane_tlsa_add).
 *
 * Callbacks run on the loop thread, exactly once per dane_lookup, never
 * from inside dane_lookup; pending ones run with DANE_CANCELLED when the
 * resolver is freed.
 */
#ifndef MXV_DANE_H
#define MXV_DANE_H

#include <stddef.h>
#include <stdint.h>

struct dns;

enum dane_status {
	DANE_USABLE = 0, /* validated TLSA records, at least one usable: DANE applies */
	DANE_NONE,       /* no validated TLSA records (none, or the zone is not signed): DANE does not apply */
	DANE_UNUSABLE,   /* validated records, none usable: TLS without authentication (RFC 7672 2.2) */
	DANE_TEMPFAIL,   /* the lookup failed (SERVFAIL, bogus, timeout): the host cannot be used now */
	DANE_CANCELLED,
};

/* One usable TLSA record. */
struct dane_tlsa {
	uint8_t usage, selector, mtype;
	uint16_t len;
	unsigned char *data;
};

/* The records of one host; owned by whoever asked (dane_records_free). */
struct dane_records {
	struct dane_tlsa *r;
	size_t n;
};

/* recs: valid for DANE_USABLE (the callee takes ownership: free with dane_records_free). */
typedef void dane_fn(void *arg, enum dane_status st, struct dane_records *recs);

void dane_lookup(struct dns *dns, const char *host, uint16_t port, dane_fn *fn, void *arg);

struct dns_tlsa;
/*
 * The pure part, for tests: the usable records of a validated TLSA answer
 * (RFC 7672 3.1: DANE-TA(2)/DANE-EE(3), Cert(0)/SPKI(1),
 * Full(0)/SHA2-256(1)/SHA2-512(2) with the digest's length), copied;
 * NULL when none is.
 */
struct dane_records *dane_usable(const struct dns_tlsa *r, size_t n);
void dane_records_free(struct dane_records *recs);

#endif
