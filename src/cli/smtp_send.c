/*
 * smtp_send: see smtp_send.h. One socket, polled with what is left of the
 * deadline before each read and write; a reply is read whole (its last
 * line has a space after the code) and bounded in size; what it says is
 * kept on one line for the caller to show.
 */
#include "smtp_send.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SMTP_SEND_MAX_REPLY 16384

struct conn {
	int fd;
	int64_t deadline_ms;
	char in[SMTP_SEND_MAX_REPLY];
	size_t len;
};

/* Waits for fd to be ready for events; 0, or -ETIMEDOUT at the deadline. */
static int wait_fd(const struct conn *cn, short events)
{
	for (;;) {
		int64_t left = cn->deadline_ms - clock_mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = cn->fd, .events = events};
		int rc = poll(&p, 1, left > 60000 ? 60000 : (int)left);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

static int open_conn(struct conn *cn, const struct smtp_send_req *req)
{
	cn->fd = socket(req->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (cn->fd < 0)
		return -errno;
	if (connect(cn->fd, req->addr, req->addrlen) == 0)
		return 0;
	if (errno != EINPROGRESS)
		return -errno;
	int rc = wait_fd(cn, POLLOUT);
	int err = 0;
	socklen_t n = sizeof(err);
	if (rc == 0 && getsockopt(cn->fd, SOL_SOCKET, SO_ERROR, &err, &n) < 0)
		err = errno;
	return rc < 0 ? rc : -err;
}

static int send_all(struct conn *cn, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(cn->fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		int rc = wait_fd(cn, POLLOUT);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The end of a complete reply in cn->in (just after its last CRLF), or 0. */
static size_t reply_end(const struct conn *cn)
{
	size_t start = 0;
	for (size_t i = 0; i + 1 < cn->len; i++) {
		if (cn->in[i] != '\r' || cn->in[i + 1] != '\n')
			continue;
		if (i - start >= 3 && (i - start == 3 || cn->in[start + 3] == ' '))
			return i + 2;
		start = i + 2;
	}
	return 0;
}

/* The reply's lines p[0..n) (each CRLF-ended) on one line: continuations lose their "250-", a space joins them. */
static void join_lines(const char *p, size_t n, char *out, size_t size)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		const char *nl = memmem(p + i, n - i, "\r\n", 2);
		size_t len = (size_t)(nl - (p + i)), skip = o > 0 && len >= 4 ? 4 : 0;
		if (o > 0 && o + 1 < size)
			out[o++] = ' ';
		size_t take = len - skip < size - 1 - o ? len - skip : size - 1 - o;
		memcpy(out + o, p + i + skip, take);
		o += take;
		i += len + 2;
	}
	out[o] = '\0';
}

/* Reads one whole reply into res (its lines joined by spaces); its code, or -errno. */
static int read_reply(struct conn *cn, struct smtp_send_result *res)
{
	size_t end;
	while ((end = reply_end(cn)) == 0) {
		if (cn->len == sizeof(cn->in))
			return -EMSGSIZE;
		int rc = wait_fd(cn, POLLIN);
		if (rc < 0)
			return rc;
		ssize_t r = recv(cn->fd, cn->in + cn->len, sizeof(cn->in) - cn->len, 0);
		if (r == 0)
			return -ECONNRESET;
		if (r < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		cn->len += r > 0 ? (size_t)r : 0;
	}
	join_lines(cn->in, end, res->reply, sizeof(res->reply));
	int code = atoi(cn->in);
	memmove(cn->in, cn->in + end, cn->len - end);
	cn->len -= end;
	res->code = code >= 200 && code <= 599 ? code : 0;
	return res->code ? res->code : -EPROTO;
}

/* Sends line (NULL: nothing) and reads its reply; 0 when its code is want. */
static int step(struct conn *cn, struct smtp_send_result *res, const char *stage, const char *line, int want)
{
	res->stage = stage;
	int rc = line ? send_all(cn, line, strlen(line)) : 0;
	if (rc == 0)
		rc = read_reply(cn, res);
	if (rc < 0) {
		res->code = 0;
		snprintf(res->reply, sizeof(res->reply), "%s", rc == -EPROTO ? "not an SMTP reply" : strerror(-rc));
		return -1;
	}
	return rc == want ? 0 : -1;
}

static int converse(struct conn *cn, const struct smtp_send_req *req, struct smtp_send_result *res)
{
	char line[1100];
	if (step(cn, res, "connect", NULL, 220) < 0)
		return -1;
	snprintf(line, sizeof(line), "EHLO %s\r\n", req->helo);
	if (step(cn, res, "EHLO", line, 250) < 0)
		return -1;
	snprintf(line, sizeof(line), "MAIL FROM:<%s>\r\n", req->sender);
	if (step(cn, res, "MAIL", line, 250) < 0)
		return -1;
	snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n", req->rcpt);
	if (step(cn, res, "RCPT", line, 250) < 0)
		return -1;
	if (step(cn, res, "DATA", "DATA\r\n", 354) < 0)
		return -1;
	res->stage = "dot";
	if (send_all(cn, req->data, strlen(req->data)) < 0)
		return step(cn, res, "dot", NULL, 250); /* the server may have said why it stopped reading */
	if (step(cn, res, "dot", ".\r\n", 250) < 0)
		return -1;
	struct smtp_send_result bye;
	(void)step(cn, &bye, "QUIT", "QUIT\r\n", 221); /* the message is taken: QUIT's reply does not matter */
	return 0;
}

int smtp_send(const struct smtp_send_req *req, struct smtp_send_result *res)
{
	struct conn *cn = xcalloc(1, sizeof(*cn));
	cn->deadline_ms = req->deadline_ms;
	*res = (struct smtp_send_result){.stage = "connect"};
	int rc = open_conn(cn, req);
	if (rc < 0)
		snprintf(res->reply, sizeof(res->reply), "%s", strerror(-rc));
	else
		rc = converse(cn, req, res);
	if (cn->fd >= 0)
		close(cn->fd);
	free(cn);
	return rc < 0 ? -1 : 0;
}
