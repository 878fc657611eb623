/*
 * smtp_send: see smtp_send.h. One socket, polled with what is left of the
 * deadline before each read and write. Replies are read a line at a
 * time into a buffer of one line's bound and judged by the SMTP client's
 * own parser and verdict table (delivery/smtp_reply.h, pure: the only
 * thing this command takes from delivery/): bounded in length and lines,
 * strict about the syntax, its text on one line for the caller to show.
 */
#include "smtp_send.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "delivery/smtp_reply.h"

#define SMTP_SEND_MAX_REPLY (SMTP_REPLY_LINE_MAX + 2)

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

/* Reads more bytes into cn->in, waiting at most until the deadline. */
static int fill(struct conn *cn)
{
	if (cn->len == sizeof(cn->in))
		return -EMSGSIZE; /* a line longer than any reply line may be */
	int rc = wait_fd(cn, POLLIN);
	if (rc < 0)
		return rc;
	ssize_t r = recv(cn->fd, cn->in + cn->len, sizeof(cn->in) - cn->len, 0);
	if (r == 0)
		return -ECONNRESET;
	if (r < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	cn->len += (size_t)r;
	return 0;
}

/* Reads one whole reply with the SMTP client's parser (delivery/smtp_reply.h: bounded, strict); its code, or -errno. */
static int read_reply(struct conn *cn, struct smtp_send_result *res)
{
	struct smtp_reply r;
	smtp_reply_init(&r, false);
	for (;;) {
		const char *nl = cn->len ? memmem(cn->in, cn->len, "\r\n", 2) : NULL;
		if (!nl) {
			int rc = fill(cn);
			if (rc < 0)
				return rc;
			continue;
		}
		size_t n = (size_t)(nl - cn->in);
		int rc = smtp_reply_feed(&r, cn->in, n);
		memmove(cn->in, cn->in + n + 2, cn->len - n - 2);
		cn->len -= n + 2;
		if (rc < 0)
			return rc;
		if (rc == SMTP_REPLY_DONE) {
			snprintf(res->reply, sizeof(res->reply), "%s", r.text);
			res->code = r.code;
			return r.code;
		}
	}
}

/* Sends line (NULL: nothing) and reads its reply; 0 when it is the reply cmd wants. */
static int step(struct conn *cn, struct smtp_send_result *res, enum smtp_cmd cmd, const char *line)
{
	res->stage = smtp_cmd_name(cmd);
	int rc = line ? send_all(cn, line, strlen(line)) : 0;
	if (rc == 0)
		rc = read_reply(cn, res);
	if (rc < 0) {
		res->code = 0;
		snprintf(res->reply, sizeof(res->reply), "%s",
			 rc == -EBADMSG || rc == -E2BIG || rc == -EMSGSIZE ? smtp_reply_strerror(rc) : strerror(-rc));
		return -1;
	}
	return smtp_reply_verdict(cmd, rc) == SMTP_VERDICT_OK ? 0 : -1;
}

static int converse(struct conn *cn, const struct smtp_send_req *req, struct smtp_send_result *res)
{
	char line[1100];
	if (step(cn, res, SMTP_CMD_GREETING, NULL) < 0)
		return -1;
	snprintf(line, sizeof(line), "EHLO %s\r\n", req->helo);
	if (step(cn, res, SMTP_CMD_EHLO, line) < 0)
		return -1;
	snprintf(line, sizeof(line), "MAIL FROM:<%s>\r\n", req->sender);
	if (step(cn, res, SMTP_CMD_MAIL, line) < 0)
		return -1;
	snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n", req->rcpt);
	if (step(cn, res, SMTP_CMD_RCPT, line) < 0 || step(cn, res, SMTP_CMD_DATA, "DATA\r\n") < 0)
		return -1;
	if (send_all(cn, req->data, strlen(req->data)) < 0)
		return step(cn, res, SMTP_CMD_DOT, NULL); /* the server may have said why it stopped reading */
	if (step(cn, res, SMTP_CMD_DOT, ".\r\n") < 0)
		return -1;
	struct smtp_send_result bye;
	(void)step(cn, &bye, SMTP_CMD_QUIT, "QUIT\r\n"); /* the message is taken: QUIT's reply does not matter */
	return 0;
}

int smtp_send(const struct smtp_send_req *req, struct smtp_send_result *res)
{
	struct conn *cn = xcalloc(1, sizeof(*cn));
	cn->deadline_ms = req->deadline_ms;
	*res = (struct smtp_send_result){.stage = "connect"};
	cn->fd = -1;
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
