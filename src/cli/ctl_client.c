/*
 * ctl_client: see ctl_client.h. Reply lines are read into one growing
 * buffer, bounded by CTL_CLIENT_MAX_LINE (a line of a message's body is the
 * longest the daemon sends).
 */
#include "ctl_client.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#define CTL_CLIENT_MAX_LINE (64u << 20)

struct ctl_conn {
	int fd;
	struct buf in;   /* bytes read and not yet handed out */
	size_t consumed; /* of in: the line handed out last, dropped at the next read */
	bool eof;
};

int ctl_connect(const char *path, struct ctl_conn **out)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (fmt(sun.sun_path, sizeof(sun.sun_path), "%s", path) < 0)
		return -ENAMETOOLONG;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		int err = errno;
		close(fd);
		return -err;
	}
	struct ctl_conn *cn = xcalloc(1, sizeof(*cn));
	cn->fd = fd;
	*out = cn;
	return 0;
}

int ctl_send(struct ctl_conn *cn, int argc, char *const argv[])
{
	struct buf req = {0};
	for (int i = 0; i < argc; i++)
		buf_append(&req, argv[i], strlen(argv[i]) + 1);
	buf_append(&req, "", 1);
	int rc = 0;
	for (size_t off = 0; off < req.len && rc == 0;) {
		ssize_t n = send(cn->fd, req.data + off, req.len - off, MSG_NOSIGNAL);
		if (n < 0 && errno != EINTR)
			rc = -errno;
		else if (n > 0)
			off += (size_t)n;
	}
	buf_free(&req);
	return rc;
}

/* Reads more bytes into cn->in, waiting at most timeout_ms. */
static int fill(struct ctl_conn *cn, int timeout_ms)
{
	struct pollfd p = {.fd = cn->fd, .events = POLLIN};
	int rc = poll(&p, 1, timeout_ms);
	if (rc < 0)
		return errno == EINTR ? 0 : -errno;
	if (rc == 0)
		return -ETIMEDOUT;
	buf_reserve(&cn->in, 65536);
	ssize_t n = recv(cn->fd, cn->in.data + cn->in.len, cn->in.cap - cn->in.len, 0);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	if (n == 0)
		cn->eof = true;
	cn->in.len += (size_t)n;
	return 0;
}

/* Drops the line handed out last. */
static void drop_consumed(struct ctl_conn *cn)
{
	if (!cn->consumed)
		return;
	memmove(cn->in.data, cn->in.data + cn->consumed, cn->in.len - cn->consumed);
	cn->in.len -= cn->consumed;
	cn->consumed = 0;
}

int ctl_read(struct ctl_conn *cn, int timeout_ms, char *kind, const char **text, size_t *len)
{
	drop_consumed(cn);
	unsigned char *nl;
	while (!(nl = cn->in.len ? memchr(cn->in.data, '\n', cn->in.len) : NULL)) { /* data is NULL until the first read */
		if (cn->eof)
			return cn->in.len ? -EPROTO : 0;
		if (cn->in.len > CTL_CLIENT_MAX_LINE)
			return -EPROTO;
		int rc = fill(cn, timeout_ms);
		if (rc < 0)
			return rc;
	}
	size_t n = (size_t)(nl - cn->in.data);
	if (n < 2 || cn->in.data[1] != ' ' || !strchr("oex", cn->in.data[0]))
		return -EPROTO;
	*nl = '\0';
	*kind = (char)cn->in.data[0];
	*text = (const char *)cn->in.data + 2;
	*len = n - 2;
	cn->consumed = n + 1;
	return 1;
}

void ctl_disconnect(struct ctl_conn *cn)
{
	if (!cn)
		return;
	close(cn->fd);
	buf_free(&cn->in);
	free(cn);
}

/* Copies the reply to out and err until its exit line. */
static int relay_reply(struct ctl_conn *cn, int timeout_ms, FILE *out, FILE *err)
{
	for (;;) {
		char kind;
		const char *text;
		size_t len;
		int rc = ctl_read(cn, timeout_ms, &kind, &text, &len);
		if (rc <= 0) {
			fprintf(err, "mxvault: the daemon's reply %s\n",
				rc == -ETIMEDOUT ? "did not come in time"
				: rc == 0	 ? "ended early"
						 : "could not be read");
			return EX_PROTOCOL;
		}
		if (kind == 'x')
			return atoi(text);
		FILE *to = kind == 'o' ? out : err;
		fwrite(text, 1, len, to);
		fputc('\n', to);
	}
}

int ctl_run(const char *path, int argc, char *const argv[], int timeout_ms, FILE *out, FILE *err)
{
	struct ctl_conn *cn;
	int rc = ctl_connect(path, &cn);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		fprintf(err, "mxvault: the daemon is not running (nothing answers on %s)\n", path);
		return CTL_EXIT_NOT_RUNNING;
	}
	if (rc < 0) {
		fprintf(err, "mxvault: cannot reach the daemon on %s: %s\n", path, strerror(-rc));
		return rc == -EACCES ? EX_NOPERM : EX_UNAVAILABLE;
	}
	rc = ctl_send(cn, argc, argv);
	if (rc < 0) {
		fprintf(err, "mxvault: cannot send to the daemon: %s\n", strerror(-rc));
		ctl_disconnect(cn);
		return EX_UNAVAILABLE;
	}
	rc = relay_reply(cn, timeout_ms, out, err);
	ctl_disconnect(cn);
	return rc;
}
