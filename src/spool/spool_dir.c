/*
 * spool_dir: the spool directory itself and its files other than the log's
 * contents. Before privileges are dropped, spool_dir_prepare (called by
 * daemon.c) opens the directory and gives it and its files to the daemon's
 * user; after that everything goes through the directory fd, never by path.
 * spool_open_subdir gives another module a directory of its own inside
 * the spool (the MTA-STS cache), also through the fd.
 * spool.c calls spool_key_open when opening the spool, before replay:
 *
 * The key (SPOOL/key, 32 random bytes, mode 0600) authenticates every
 * record (spool_rec.c). It is created before the first segment is written:
 * O_CREAT|O_EXCL, fsync, then the directory's fsync (crash state K1 in
 * docs/spool.md). So a spool with a v2 segment and no usable key has lost
 * it: opening fails with a clear error rather than set every record aside.
 * A spool whose segments are all v1 (written before records had a MAC)
 * needs no key to be read, and gets one on its first read-write open.
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

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "base/log.h"

#define KEY_NAME "key"

/* Gives one entry of the spool (or the directory itself, name "") to uid:gid. */
static int give(int dirfd, const char *name, uint32_t uid, uint32_t gid)
{
	int flags = AT_SYMLINK_NOFOLLOW | (name[0] ? 0 : AT_EMPTY_PATH);
	return fchownat(dirfd, name, (uid_t)uid, (gid_t)gid, flags) < 0 ? -errno : 0;
}

/* A stream over the directory at fd, from its first entry; NULL with errno set. */
static DIR *open_listing(int fd)
{
	int dup_fd = dup(fd);
	DIR *d = dup_fd >= 0 ? fdopendir(dup_fd) : NULL;
	if (!d) {
		int err = errno;
		if (dup_fd >= 0)
			close(dup_fd);
		errno = err;
		return NULL;
	}
	/* A dup shares the offset of the spool's fd, which an earlier walk may have left at the end. */
	rewinddir(d);
	return d;
}

/* Gives every entry of the directory at fd (and of corrupt/ below it) to uid:gid, counting them. */
static int give_all(int fd, uint32_t uid, uint32_t gid, int depth, size_t *count)
{
	DIR *d = open_listing(fd);
	if (!d)
		return -errno;
	int rc = 0;
	struct dirent *e;
	while (rc == 0 && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		rc = give(fd, e->d_name, uid, gid);
		(*count)++;
		if (rc == 0 && depth == 0 && e->d_type == DT_DIR) {
			int sub = openat(fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			rc = sub < 0 ? -errno : give_all(sub, uid, gid, depth + 1, count);
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
	size_t files = 0;
	int rc = give(fd, "", uid, gid);
	if (rc == 0)
		rc = give_all(fd, uid, gid, 0, &files);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	/* A new spool (made by the configuration check, as root) is not worth a line. */
	log_msg(files ? LOG_LVL_INFO : LOG_LVL_DEBUG, "spool",
		"dir=%s belonged to uid=%u gid=%u: gave it and its %zu entries to uid=%" PRIu32 " gid=%" PRIu32, dir,
		(unsigned)st.st_uid, (unsigned)st.st_gid, files, uid, gid);
	return fd;
}

/* --- segments ----------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int spool_list_segments(struct spool *sp, uint32_t **out, size_t *n)
{
	DIR *d = open_listing(sp->dirfd);
	if (!d)
		return -errno;
	size_t cap = 0;
	*out = NULL;
	*n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		unsigned seg;
		char tail[8];
		if (strlen(e->d_name) != 12 || sscanf(e->d_name, "%8x%7s", &seg, tail) != 2 || strcmp(tail, ".seg"))
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 16;
			*out = xrealloc(*out, cap * sizeof(**out));
		}
		(*out)[(*n)++] = seg;
	}
	closedir(d);
	if (*n) /* qsort(NULL, 0, ...) is undefined behaviour (UBSan stops a fresh spool) */
		qsort(*out, *n, sizeof(**out), cmp_u32);
	return 0;
}

/* --- the key ------------------------------------------------------------- */

/* 0, -ENOENT, -EBADMSG if it is not a key (wrong size, or zeros a crash left), or another -errno. */
static int key_read(struct spool *sp, unsigned char key[SPOOL_KEY_SIZE])
{
	int fd = openat(sp->dirfd, KEY_NAME, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = fstat(fd, &st) < 0 ? -errno : 0;
	if (rc == 0 && st.st_size != SPOOL_KEY_SIZE)
		rc = -EBADMSG;
	if (rc == 0) {
		ssize_t r = pread(fd, key, SPOOL_KEY_SIZE, 0);
		rc = r < 0 ? -errno : r != SPOOL_KEY_SIZE ? -EBADMSG : 0;
	}
	close(fd);
	unsigned char any = 0;
	for (size_t i = 0; rc == 0 && i < SPOOL_KEY_SIZE; i++)
		any |= key[i];
	return rc == 0 && !any ? -EBADMSG : rc;
}

/* How many segments hold records that need the key: any but v1 ones and empty ones. */
static int segments_needing_key(struct spool *sp, size_t *count)
{
	uint32_t *segs = NULL;
	size_t n = 0;
	int rc = spool_list_segments(sp, &segs, &n);
	*count = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		unsigned char head[4];
		int fd = spool_seg_fd(sp, segs[i]);
		ssize_t r = fd < 0 ? fd : pread(fd, head, sizeof(head), 0);
		if (r < 0)
			rc = fd < 0 ? fd : -errno;
		else if (r == (ssize_t)sizeof(head) && !spool_seg_is_v1(head, sizeof(head)))
			(*count)++;
	}
	free(segs);
	return rc;
}

/* Crash state K1: until the key and its directory entry are durable, no segment exists. */
static int key_create(struct spool *sp, unsigned char key[SPOOL_KEY_SIZE])
{
	if (RAND_bytes(key, SPOOL_KEY_SIZE) != 1)
		return -EIO;
	int fd = openat(sp->dirfd, KEY_NAME, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	ssize_t w = write(fd, key, SPOOL_KEY_SIZE);
	int rc = w < 0 ? -errno : w != SPOOL_KEY_SIZE ? -EIO : 0;
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	close(fd);
	if (rc == 0 && fsync(sp->dirfd) < 0)
		rc = -errno;
	return rc;
}

static int key_missing(struct spool *sp, int err, size_t needing)
{
	log_err("spool", "%s/%s is %s: %s; %zu segment file%s records only it can verify (restore the key from "
		"the backup of this spool; a new key would set every record aside)", sp->dir, KEY_NAME,
		err == -ENOENT ? "missing" : "damaged", err == -ENOENT ? strerror(-err) : "not 32 bytes of key", needing,
		needing == 1 ? " holds" : "s hold");
	return -ENOKEY;
}

/* No usable key, and no segment needs one: a new spool, a v1 spool, or a crash in K1. */
static int key_make(struct spool *sp, int err, unsigned char key[SPOOL_KEY_SIZE])
{
	if (err == -EBADMSG) {
		log_warn("spool", "%s/%s is incomplete (a crash while it was created) and no record uses it: replaced",
			 sp->dir, KEY_NAME);
		if (unlinkat(sp->dirfd, KEY_NAME, 0) < 0)
			return -errno;
	}
	int rc = key_create(sp, key);
	if (rc < 0) {
		log_err("spool", "cannot create %s/%s: %s", sp->dir, KEY_NAME, strerror(-rc));
		return rc;
	}
	log_info("spool", "created %s/%s: back it up with the spool, which cannot be read without it", sp->dir,
		 KEY_NAME);
	return 0;
}

int spool_open_subdir(struct spool *sp, const char *name)
{
	if (!name[0] || strchr(name, '/') || name[0] == '.' || strcmp(name, "corrupt") == 0)
		return -EINVAL;
	if (mkdirat(sp->dirfd, name, 0700) < 0 && errno != EEXIST)
		return -errno;
	int fd = openat(sp->dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int spool_key_open(struct spool *sp)
{
	unsigned char key[SPOOL_KEY_SIZE];
	int rc = key_read(sp, key);
	if (rc < 0 && rc != -ENOENT && rc != -EBADMSG) {
		log_err("spool", "%s/%s cannot be read: %s", sp->dir, KEY_NAME, strerror(-rc));
		return rc;
	}
	if (rc < 0) {
		size_t needing;
		int err = rc;
		if ((rc = segments_needing_key(sp, &needing)) < 0)
			return rc;
		if (needing)
			return key_missing(sp, err, needing);
		if (sp->readonly)
			return 0; /* nothing to verify; a read-only open writes nothing */
		if ((rc = key_make(sp, err, key)) < 0)
			return rc;
	}
	rc = spool_mac_new(key, &sp->mac);
	OPENSSL_cleanse(key, sizeof(key));
	if (rc < 0)
		log_err("spool", "no HMAC-SHA256 or SipHash in OpenSSL: %s", strerror(-rc));
	return rc;
}
