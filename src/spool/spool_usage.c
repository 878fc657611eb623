/*
 * spool_usage: how much disk the spool takes and how much its file system
 * has left, for the alerts (alert_spool_size, min_free_space). Called on
 * the event loop every few seconds at most: a stat per segment file and
 * one fstatvfs, the same kind of call as the spool's own free-space check.
 */
#include "spool_int.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

int spool_get_usage(const struct spool *sp, uint64_t *disk_bytes, uint64_t *free_bytes)
{
	struct statvfs vfs;
	if (fstatvfs(sp->dirfd, &vfs) < 0)
		return -errno;
	*free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	uint64_t sum = 0;
	for (uint32_t seg = sp->oldest_seg; seg <= sp->cur_seg && seg >= sp->oldest_seg; seg++) {
		char name[32];
		struct stat st;
		spool_seg_name(seg, name);
		if (fstatat(sp->dirfd, name, &st, 0) == 0)
			sum += (uint64_t)st.st_size;
		/* ENOENT: the head segment not yet written, or a removed one */
	}
	*disk_bytes = sum;
	return 0;
}
