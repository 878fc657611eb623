/*
 * pidfile: see pidfile.h. The file is written to a temporary name beside
 * it and renamed, so a reader never sees it half written. Reading is
 * bounded (a pid is a few digits); anything that is not a pid counts as
 * stale, since no process can be asked about it.
 */
#include "pidfile.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The pid in dirfd/name, 0 when there is none worth asking about, or -errno. */
static long read_pid(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	char text[32];
	ssize_t n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	text[n] = '\0';
	char *end;
	long pid = strtol(text, &end, 10);
	if (end == text || (*end && *end != '\n') || pid <= 0 || pid > INT_MAX)
		return 0;
	return pid;
}

int pidfile_check(const char *path, pid_t *other)
{
	long pid = read_pid(AT_FDCWD, path);
	if (pid <= 0)
		return (int)pid;
	/* EPERM: it exists but belongs to another user, which is still a live process. */
	if ((pid_t)pid != getpid() && (kill((pid_t)pid, 0) == 0 || errno == EPERM)) {
		*other = (pid_t)pid;
		return -EEXIST;
	}
	return 0;
}

/* Splits path into an open directory and a name. */
static int open_parent(const char *path, struct pidfile *pf)
{
	const char *slash = strrchr(path, '/');
	const char *name = slash ? slash + 1 : path;
	char dir[PATH_MAX];
	if (!*name || fmt(pf->name, sizeof(pf->name), "%s", name) < 0 ||
	    fmt(dir, sizeof(dir), "%.*s", slash ? (int)(slash == path ? 1 : slash - path) : 1, slash ? path : ".") < 0)
		return -ENAMETOOLONG;
	pf->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return pf->dirfd < 0 ? -errno : 0;
}

int pidfile_write(const char *path, struct pidfile *pf)
{
	char tmp[NAME_MAX + 8], text[32];
	pf->dirfd = -1;
	int rc = open_parent(path, pf);
	if (rc < 0)
		return rc;
	if (fmt(tmp, sizeof(tmp), "%s.tmp", pf->name) < 0 || fmt(text, sizeof(text), "%ld\n", (long)getpid()) < 0)
		rc = -ENAMETOOLONG;
	int fd = rc < 0 ? -1 : openat(pf->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (rc == 0 && fd < 0)
		rc = -errno;
	if (fd >= 0) {
		ssize_t len = (ssize_t)strlen(text);
		rc = write(fd, text, (size_t)len) == len ? 0 : -EIO;
		if (close(fd) < 0 && rc == 0)
			rc = -errno;
		if (rc == 0 && renameat(pf->dirfd, tmp, pf->dirfd, pf->name) < 0)
			rc = -errno;
		if (rc < 0)
			unlinkat(pf->dirfd, tmp, 0);
	}
	if (rc < 0) {
		close(pf->dirfd);
		pf->dirfd = -1;
	}
	return rc;
}

void pidfile_remove(struct pidfile *pf)
{
	if (pf->dirfd < 0)
		return;
	if (read_pid(pf->dirfd, pf->name) == (long)getpid())
		unlinkat(pf->dirfd, pf->name, 0);
	close(pf->dirfd);
	pf->dirfd = -1;
}
