/*
 * tinysndbuf: an LD_PRELOAD shim that gives every accepted socket a small
 * kernel send buffer (TINYSNDBUF bytes, default 4096). Loopback otherwise
 * buffers hundreds of kilobytes of replies, so a client that stops reading
 * could not make the daemon's own output back up; with this it can, and
 * the tests can reach what a slow reader on a real network reaches.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

static void shrink(int fd)
{
	const char *v = getenv("TINYSNDBUF");
	int size = v ? atoi(v) : 4096;
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
}

int accept4(int fd, struct sockaddr *sa, socklen_t *len, int flags)
{
	static int (*real)(int, struct sockaddr *, socklen_t *, int);
	if (!real)
		real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
	int c = real(fd, sa, len, flags);
	shrink(c);
	return c;
}

int accept(int fd, struct sockaddr *sa, socklen_t *len)
{
	static int (*real)(int, struct sockaddr *, socklen_t *);
	if (!real)
		real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
	int c = real(fd, sa, len);
	shrink(c);
	return c;
}
