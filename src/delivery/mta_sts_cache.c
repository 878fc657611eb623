/*
 * mta_sts_cache: see mta_sts_cache.h. The file of a domain is
 *     mxvault-mta-sts 1\n
 *     fetched_at: <unix seconds>\n
 *     id: <the TXT record's id>\n
 *     length: <bytes of the policy text>\n
 *     \n
 *     <the policy text, exactly as fetched>
 * A fetched_at later than the caller's now (plus a small skew) makes the
 * file count as damaged: the caller adds max_age to it.
 * File names are the domain itself: callers pass validated host names
 * (letters, digits, hyphens, dots); anything with '/' or a leading '.' is
 * refused here too, so no name can leave the directory or hit the
 * temporary files (".tmp-DOMAIN").
 * Durability: no fsync. The cache only saves a fetch; a crash can leave an
 * old file, or a new one cut short, which its length line exposes, and a
 * file ignored costs one fetch. Reads and writes are small (64 KiB at most)
 * and rare (once per fetched policy, once per domain after a start).
 */
#include "mta_sts_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "mxvault-mta-sts 1\n"
#define FILE_MAX (64 * 1024 + 512)

static bool safe_name(const char *domain)
{
	return domain[0] && domain[0] != '.' && !strchr(domain, '/') && is_host_name(domain, strlen(domain));
}

void mta_sts_cache_format(struct buf *out, int64_t fetched_at, const char *id, const char *text, size_t n)
{
	buf_printf(out, MAGIC "fetched_at: %" PRId64 "\nid: %s\nlength: %zu\n\n", fetched_at, id, n);
	buf_append(out, text, n);
}

/* One "key: value\n" header line at *p: the value (NUL-terminated in val), and *p moved past it. */
static int header_line(const char **p, const char *end, const char *key, char *val, size_t vallen)
{
	size_t kn = strlen(key);
	const char *nl = memchr(*p, '\n', (size_t)(end - *p));
	if (!nl || (size_t)(nl - *p) < kn + 2 || memcmp(*p, key, kn) != 0 || memcmp(*p + kn, ": ", 2) != 0)
		return -EINVAL;
	size_t vn = (size_t)(nl - *p) - kn - 2;
	if (vn == 0 || vn >= vallen)
		return -EINVAL;
	memcpy(val, *p + kn + 2, vn);
	val[vn] = '\0';
	*p = nl + 1;
	return 0;
}

int mta_sts_cache_parse(const char *file, size_t n, struct mta_sts_policy *p, int64_t *fetched_at)
{
	const char *s = file, *end = file + n;
	char at[24], id[40], len[24], why[96];
	uint64_t t, bytes;
	if (n < strlen(MAGIC) || memcmp(s, MAGIC, strlen(MAGIC)) != 0)
		return -EINVAL;
	s += strlen(MAGIC);
	if (header_line(&s, end, "fetched_at", at, sizeof(at)) < 0 || header_line(&s, end, "id", id, sizeof(id)) < 0 ||
	    header_line(&s, end, "length", len, sizeof(len)) < 0 || s >= end || *s++ != '\n')
		return -EINVAL;
	if (parse_uint(at, 0, INT64_MAX, &t) < 0 || parse_uint(len, 0, FILE_MAX, &bytes) < 0 ||
	    bytes != (uint64_t)(end - s))
		return -EINVAL;
	char probe[60], parsed[33];
	if (fmt(probe, sizeof(probe), "v=STSv1; id=%s", id) < 0 || mta_sts_parse_txt(probe, parsed) < 0)
		return -EINVAL; /* the id as a TXT record has it */
	if (mta_sts_parse_policy(s, (size_t)bytes, p, why, sizeof(why)) < 0)
		return -EINVAL;
	memcpy(p->id, id, strlen(id) + 1);
	*fetched_at = (int64_t)t;
	return 0;
}

int mta_sts_cache_load(int dirfd, const char *domain, int64_t now, struct mta_sts_policy *p, int64_t *fetched_at)
{
	if (!safe_name(domain))
		return -EINVAL;
	int fd = openat(dirfd, domain, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > FILE_MAX) {
		close(fd);
		return -EINVAL;
	}
	char *b = xmalloc((size_t)st.st_size + 1);
	ssize_t got = read(fd, b, (size_t)st.st_size);
	close(fd);
	int rc = got == st.st_size ? mta_sts_cache_parse(b, (size_t)got, p, fetched_at) : -EIO;
	free(b);
	/* We never write a time ahead of our clock (beyond a clock stepped back): someone edited it. */
	if (rc == 0 && (now > INT64_MAX - MTA_STS_CACHE_SKEW_S || *fetched_at > now + MTA_STS_CACHE_SKEW_S))
		rc = -EINVAL;
	return rc;
}

int mta_sts_cache_store(int dirfd, const char *domain, int64_t fetched_at, const char *id, const char *text,
			size_t n)
{
	char tmp[300];
	if (!safe_name(domain) || fmt(tmp, sizeof(tmp), ".tmp-%s", domain) < 0)
		return -EINVAL;
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	struct buf b = {0};
	mta_sts_cache_format(&b, fetched_at, id, text, n);
	int rc = fd_write_all(fd, b.data, b.len);
	buf_free(&b);
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(dirfd, tmp, dirfd, domain) < 0)
		rc = -errno;
	if (rc < 0)
		unlinkat(dirfd, tmp, 0);
	return rc;
}
