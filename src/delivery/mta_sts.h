/*
 * mta_sts: the MTA-STS policy of a recipient domain (RFC 8461), for the
 * hop to the primary. It looks up the `_mta-sts.DOMAIN` TXT record (through
 * the shared resolver), fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt
 * with libcurl's multi interface driven by the event loop (never blocking
 * it; the host name is resolved by our resolver and handed to curl), with
 * certificate validation against tls_ca_file or the system store, no
 * redirects, a size and time limit; caches each policy until max_age (in
 * memory and in the spool directory, so it survives a restart) and
 * refetches it when the TXT record's id changes. A failed refresh keeps a
 * cached, unexpired policy (RFC 8461 5.1).
 *
 * Callbacks run on the loop thread, exactly once per mta_sts_get, never
 * from inside mta_sts_get; mta_sts_free runs the pending ones with
 * MTA_STS_CANCELLED before it returns, and must not be called from inside
 * one. The policy handed to a callback is valid only during the callback.
 * Lookups still with the resolver when mta_sts_free runs answer later
 * (at dns_free at the latest) and find themselves detached.
 */
#ifndef MXV_MTA_STS_H
#define MXV_MTA_STS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct dns;
struct mta_sts;

enum mta_sts_mode { MTA_STS_MODE_NONE = 0, MTA_STS_MODE_TESTING, MTA_STS_MODE_ENFORCE };

enum mta_sts_status {
	MTA_STS_OK = 0,     /* a policy (fresh or cached) */
	MTA_STS_NONE,       /* the domain publishes no policy (no TXT record, or none cached) */
	MTA_STS_TEMPFAIL,   /* a TXT record but no policy could be fetched, and none is cached */
	MTA_STS_CANCELLED,  /* mta_sts_free ran first */
};

#define MTA_STS_MAX_MX 32

struct mta_sts_policy {
	enum mta_sts_mode mode;
	char mx[MTA_STS_MAX_MX][256]; /* patterns, lower case: "mx.example.com" or "*.example.com" */
	size_t nmx;
	int64_t max_age;              /* seconds */
	char id[33];                  /* the TXT record's id it was fetched for */
};

/* why: for TEMPFAIL, a short text for logs and the deferral reply. */
typedef void mta_sts_fn(void *arg, enum mta_sts_status st, const struct mta_sts_policy *p, const char *why);

/*
 * cache_dirfd: the directory where policies are kept across restarts (an
 * O_DIRECTORY fd, taken over; -1 keeps them in memory only). ca_file: PEM
 * trust store for the HTTPS fetch, or NULL for the system's; curl reads it
 * at the first fetch, after privileges are dropped. NULL when libcurl
 * cannot be set up.
 */
struct mta_sts *mta_sts_new(struct event_base *base, struct dns *dns, int cache_dirfd, const char *ca_file);
void mta_sts_free(struct mta_sts *m);
/* domain: lower case, no trailing dot. */
void mta_sts_get(struct mta_sts *m, const char *domain, mta_sts_fn *fn, void *arg);

/* Does host (an MX name, lower case) match one of the policy's mx patterns (RFC 8461 4.1)? */
bool mta_sts_mx_matches(const struct mta_sts_policy *p, const char *host);

/* The pure parts, for tests and fuzzing. */
/* Parses a policy file body (at most 64 KiB); 0, or -EINVAL with why filled. */
int mta_sts_parse_policy(const char *text, size_t n, struct mta_sts_policy *out, char *why, size_t whylen);
/* Parses a TXT record "v=STSv1; id=...;"; 0 and the id, or -EINVAL (not an STS record). */
int mta_sts_parse_txt(const char *txt, char id[33]);
/* Does the TXT record begin as an STS one ("v=STSv1;", RFC 8461 3.1)? */
bool mta_sts_txt_is_sts(const char *txt);
/*
 * The id of the one STS record among a name's TXT records: 0; -ENOENT when
 * none begins as one; -EINVAL when more than one does or that one is
 * malformed (RFC 8461 3.1: the domain then has no available policy).
 */
int mta_sts_pick_txt(const char *const *txt, size_t n, char id[33]);

#endif
