/*
 * spool_dir: the files of the spool directory that are not the log. Before
 * privileges are dropped, spool_dir_prepare (called by daemon.c) opens the
 * directory and gives it and its files to the daemon's user; everything
 * after that goes through the directory fd it returns, never by path.
 *
 * Error policy: 0 or -errno to the caller, which refuses to start.
 */
#include "spool_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/log.h"

/* Gives one entry of the spool (or the directory itself, name "") to uid:gid. */
static int give(int dirfd, const char *name, uint32_t uid, uint32_t gid)
{
	int flags = AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH);
	return fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, flags) < 0 ? -errno : 0;
}

/* Gives every entry of the directory at fd (and of corrupt/ below it) to uid:gid. */
static int give_all(int fd, uint32_t uid, uint32_t gid, int depth)
{
	int dup_fd = dup(fd);
	DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	if (!d) {
		if (dup_fd >= 0)
			close(dup_fd);
		return -errno;
	}
	/* A dup shares the offset of the spool's fd, which an earlier walk may have left at the end. */
	rewinddir(d);
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		rc = give(fd, e->d_name, uid, gid);
		if (rc == 0 && depth == 0 && e->d_type == DT_DIR) {
			int sub = openat(fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			rc = sub < 0 ? -errno : give_all(sub, uid, gid, depth + 1);
			if (sub >= 0)
				close(sub);
		}
	}
	closedir(d);
	return rc;
}

int spool_dir_prepare(const char *dir, bool owner, uint32_t uid, uint32_t gid)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		int err = -errno;
		if (fd >= 0)
			close(fd);
		return err;
	}
	if (!owner || (st.st_uid == uid && st.st_gid == gid))
		return fd;
	log_info("spool", "dir=%s belonged to uid=%u gid=%u: giving it and its files to uid=%" PRIu32
		 " gid=%" PRIu32, dir, (unsigned)st.st_uid, (unsigned)st.st_gid, uid, gid);
	int rc = give(fd, "", uid, gid);
	if (rc == 0)
		rc = give_all(fd, uid, gid, 0);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	return fd;
}
