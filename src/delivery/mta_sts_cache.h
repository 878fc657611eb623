/*
 * mta_sts_cache: MTA-STS policies on disk, one file per domain in the
 * cache directory, so they survive a restart (RFC 8461 5: a policy holds
 * until max_age, whatever happens to the TXT record meanwhile). Called by
 * mta_sts.c only, with the directory's fd (the spool made it: spool_open_subdir). A file holds the time of the fetch, the TXT id the policy
 * was fetched for, the length of the policy text and the text as served;
 * the text is parsed again on load, so a damaged or cut file is ignored.
 */
#ifndef MXV_MTA_STS_CACHE_H
#define MXV_MTA_STS_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "mta_sts.h"

/* How far in the future (seconds, by the clock of now) a fetched_at may be: clocks that were stepped back. */
#define MTA_STS_CACHE_SKEW_S 300
/*
 * The policy cached for domain: 0, or -ENOENT (none), -EINVAL (damaged, or
 * fetched more than MTA_STS_CACHE_SKEW_S after now: a hand-edited file;
 * on 0, *fetched_at <= now + MTA_STS_CACHE_SKEW_S, so fetched_at + max_age
 * cannot overflow), other negative errno.
 */
int mta_sts_cache_load(int dirfd, const char *domain, int64_t now, struct mta_sts_policy *p,
		       int64_t *fetched_at) MUST_CHECK;
/* Writes it atomically (a temporary file renamed over the old one): 0 or a negative errno. */
int mta_sts_cache_store(int dirfd, const char *domain, int64_t fetched_at, const char *id, const char *text,
			size_t n) MUST_CHECK;

/* The pure parts, for tests: a file's bytes to the policy and the time it was fetched. */
int mta_sts_cache_parse(const char *file, size_t n, struct mta_sts_policy *p, int64_t *fetched_at) MUST_CHECK;
void mta_sts_cache_format(struct buf *out, int64_t fetched_at, const char *id, const char *text, size_t n);

#endif
