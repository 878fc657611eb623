/*
 * spool_held: SPOOL/held-domains, the destinations an administrator holds
 * (`mxvault queue hold DOMAIN`), so that a hold outlives a restart and
 * covers mail that arrives later. One line per domain: "DOMAIN SINCE\n",
 * SINCE the wall seconds the hold began (the time is given back to the
 * mail's retention on release). Written whole, atomically: a temporary
 * file, fsync, rename over the old one, fsync of the directory; a crash
 * leaves the old list or the new one, never a mix (docs/spool.md, "Held
 * domains"). Read bounded (SPOOL_HELD_MAX lines of a domain name each);
 * a line that is not one is skipped, and logged by the caller's count.
 *
 * These are blocking calls on the spool's directory: the daemon makes them
 * only on an administrator's `queue hold/release DOMAIN` (one small file,
 * rarely), and at start; the CLI reads it for `queue list`.
 */
#include "spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define HELD_FILE "held-domains"
#define HELD_TMP "held-domains.tmp"
#define HELD_LINE_MAX (SPOOL_DOMAIN_MAX + 24)

static bool domain_ok(const char *s, size_t n)
{
	if (n == 0 || n > SPOOL_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(c == '.' || c == '-' || c == '_' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z')))
			return false;
	}
	return true;
}

bool spool_held_domain_ok(const char *domain)
{
	return domain_ok(domain, strlen(domain));
}

/* One "DOMAIN SINCE" line (no newline): 0, or -EBADMSG. */
static int parse_line(const char *p, size_t n, struct spool_held *out)
{
	const char *sp = memchr(p, ' ', n);
	if (!sp || !domain_ok(p, (size_t)(sp - p)) || memchr(p, '\0', n))
		return -EBADMSG;
	char num[24];
	size_t k = n - (size_t)(sp - p) - 1;
	if (k == 0 || k >= sizeof(num))
		return -EBADMSG;
	memcpy(num, sp + 1, k);
	num[k] = '\0';
	char *end;
	errno = 0;
	long long since = strtoll(num, &end, 10);
	if (errno || *end || since < 0)
		return -EBADMSG;
	memcpy(out->domain, p, (size_t)(sp - p));
	out->domain[sp - p] = '\0';
	out->since = since;
	return 0;
}

int spool_held_read(struct spool *sp, struct spool_held **out, size_t *n, size_t *bad)
{
	*out = NULL;
	*n = *bad = 0;
	/* O_NONBLOCK and a regular file only: a FIFO or a device put here would block the daemon's start for good */
	int fd = openat(sp->dirfd, HELD_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -EINVAL;
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	struct spool_held *v = xcalloc(SPOOL_HELD_MAX, sizeof(*v));
	char line[HELD_LINE_MAX + 2];
	for (;;) {
		/* The line's end is found by its '\n', not strlen: a NUL in it must not make the rest of the
		 * line read as the next one (skipping it). */
		memset(line, 'x', sizeof(line));
		if (*n == SPOOL_HELD_MAX || !fgets(line, sizeof(line), f))
			break;
		const char *nl = memchr(line, '\n', sizeof(line));
		size_t len = nl ? (size_t)(nl - line) + 1 : 0;
		bool whole = nl != NULL;
		if (!whole) { /* too long, or the last line without its newline: skip to its end */
			int c;
			while ((c = fgetc(f)) != EOF && c != '\n')
				;
			(*bad)++;
			continue;
		}
		if (parse_line(line, len - 1, &v[*n]) == 0)
			(*n)++;
		else
			(*bad)++;
	}
	int rc = ferror(f) ? -EIO : 0;
	fclose(f);
	if (rc < 0 || *n == 0) {
		free(v);
		return rc;
	}
	*out = v;
	return 0;
}

int spool_held_write(struct spool *sp, const struct spool_held *v, size_t n)
{
	if (sp->readonly)
		return -EROFS;
	struct buf b = {0};
	for (size_t i = 0; i < n; i++) {
		char line[HELD_LINE_MAX + 2];
		if (fmt(line, sizeof(line), "%s %" PRId64 "\n", v[i].domain, v[i].since) < 0)
			continue; /* cannot happen: domains are checked on the way in */
		buf_append(&b, line, strlen(line));
	}
	int fd = openat(sp->dirfd, HELD_TMP, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	int rc = fd < 0 ? -errno : 0;
	if (rc == 0)
		rc = fd_write_all(fd, (const char *)b.data, b.len);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (fd >= 0 && close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(sp->dirfd, HELD_TMP, sp->dirfd, HELD_FILE) < 0)
		rc = -errno;
	if (rc == 0 && fsync(sp->dirfd) < 0)
		rc = -errno;
	if (rc < 0)
		unlinkat(sp->dirfd, HELD_TMP, 0);
	buf_free(&b);
	return rc;
}
