/*
 * slowsync: an LD_PRELOAD shim that makes the disk slow. Every fdatasync and
 * fsync sleeps SLOWSYNC_MS milliseconds (default 500) before doing its work,
 * as a loaded or network disk does. Used by the end-to-end tests of what a
 * slow disk must not break: no session freed under a pending commit, and
 * memory bounded by max_pending_bytes.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void slow(void)
{
	const char *v = getenv("SLOWSYNC_MS");
	long ms = v ? atol(v) : 500;
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0)
		;
}

int fdatasync(int fd)
{
	static int (*real)(int);
	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
	slow();
	return real(fd);
}

int fsync(int fd)
{
	static int (*real)(int);
	if (!real)
		real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
	slow();
	return real(fd);
}
