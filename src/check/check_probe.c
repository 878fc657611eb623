/*
 * check_probe: see check_probe.h. The socket is non-blocking and every
 * wait is a poll() against the step's deadline, for the plain and the TLS
 * part alike (OpenSSL's WANT_READ / WANT_WRITE say which way to wait), so
 * a peer that goes silent costs at most timeout_ms per step, and no step
 * runs past end_ms (the SMTP part's budget, check_smtp.c). Lines must
 * end in CRLF and fit the buffer; the reply parser bounds the rest.
 */
#include "check_probe.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "base/util.h"

struct conn {
	int fd;
	SSL *ssl;
	int timeout_ms;
	int64_t end_ms; /* no deadline beyond this */
	char buf[SMTP_REPLY_LINE_MAX + 2];
	size_t len;
	char err[SMTP_REPLY_TEXT_MAX + 64];
};

void check_text(char *dst, size_t n, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	vsnprintf(dst, n, f, ap);
	va_end(ap);
}

/* A step's deadline: timeout_ms from now, within the whole budget. */
static int64_t step_deadline(const struct conn *c)
{
	int64_t d = clock_mono_ms() + c->timeout_ms;
	return d < c->end_ms ? d : c->end_ms;
}

/* Waits until fd is ready for events, or the deadline: 0 or -ETIMEDOUT / -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - clock_mono_ms();
		if (left <= 0)
			return -ETIMEDOUT;
		struct pollfd p = {.fd = fd, .events = events};
		int rc = poll(&p, 1, (int)left);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

/* Waits as OpenSSL asks after a call that returned rc; 0 to retry, or -1 with c->err set. */
static int tls_wait(struct conn *c, int rc, int64_t deadline, const char *what)
{
	int e = SSL_get_error(c->ssl, rc);
	short ev = e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
	if (ev && wait_fd(c->fd, ev, deadline) == 0)
		return 0;
	char reason[160] = "connection closed";
	if (ev)
		check_text(reason, sizeof(reason), "timed out");
	else if (e != SSL_ERROR_ZERO_RETURN && e != SSL_ERROR_SYSCALL)
		ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
	check_text(c->err, sizeof(c->err), "%s: %s", what, reason);
	ERR_clear_error();
	return -1;
}

/* Reads some bytes into the buffer; -1 with c->err set on EOF, error or deadline. */
static int fill(struct conn *c, int64_t deadline)
{
	char *p = c->buf + c->len;
	size_t room = sizeof(c->buf) - c->len;
	for (;;) {
		ssize_t n;
		if (c->ssl) {
			int rc = SSL_read(c->ssl, p, (int)room);
			if (rc > 0) {
				c->len += (size_t)rc;
				return 0;
			}
			if (tls_wait(c, rc, deadline, "reading a reply") < 0)
				return -1;
			continue;
		}
		n = recv(c->fd, p, room, 0);
		if (n > 0) {
			c->len += (size_t)n;
			return 0;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			check_text(c->err, sizeof(c->err), "%s", n == 0 ? "connection closed" : strerror(errno));
			return -1;
		}
		if (wait_fd(c->fd, POLLIN, deadline) < 0) {
			if (clock_mono_ms() >= c->end_ms)
				check_text(c->err, sizeof(c->err), "no reply before the check's time ran out");
			else
				check_text(c->err, sizeof(c->err), "no reply within %d s", c->timeout_ms / 1000);
			return -1;
		}
	}
}

/* One reply into r; 0, or -1 with c->err set. */
static int read_reply(struct conn *c, struct smtp_reply *r, bool ehlo, char *ext, size_t extlen)
{
	int64_t deadline = step_deadline(c);
	smtp_reply_init(r, ehlo);
	for (uint32_t line = 0;; line++) {
		char *eol;
		while (!(eol = memmem(c->buf, c->len, "\r\n", 2))) {
			if (c->len == sizeof(c->buf)) {
				check_text(c->err, sizeof(c->err), "reply line longer than %d bytes", SMTP_REPLY_LINE_MAX);
				return -1;
			}
			if (fill(c, deadline) < 0)
				return -1;
		}
		size_t n = (size_t)(eol - c->buf);
		int rc = smtp_reply_feed(r, c->buf, n);
		if (rc >= 0 && ext && line > 0 && n > 4) {
			size_t k = 4; /* the keyword: letters, digits, hyphens (RFC 5321 4.1.1.1) */
			while (k < n && k < 4 + 32 && (c->buf[k] == '-' || (c->buf[k] >= 'A' && c->buf[k] <= 'Z') ||
						       (c->buf[k] >= 'a' && c->buf[k] <= 'z') ||
						       (c->buf[k] >= '0' && c->buf[k] <= '9')))
				k++;
			size_t used = strlen(ext);
			if (k > 4 && used + (k - 4) + 2 < extlen)
				check_text(ext + used, extlen - used, "%s%.*s", used ? " " : "", (int)(k - 4), c->buf + 4);
		}
		memmove(c->buf, eol + 2, c->len - n - 2);
		c->len -= n + 2;
		if (rc < 0) {
			check_text(c->err, sizeof(c->err), "bad reply: %s", smtp_reply_strerror(rc));
			return -1;
		}
		if (rc == SMTP_REPLY_DONE)
			return 0;
	}
}

static int send_line(struct conn *c, const char *line)
{
	char out[600];
	int64_t deadline = step_deadline(c);
	if (fmt(out, sizeof(out), "%s\r\n", line) < 0)
		return -1;
	size_t len = strlen(out), off = 0;
	while (off < len) {
		if (c->ssl) {
			int rc = SSL_write(c->ssl, out + off, (int)(len - off));
			if (rc > 0)
				off += (size_t)rc;
			else if (tls_wait(c, rc, deadline, "sending") < 0)
				return -1;
			continue;
		}
		ssize_t n = send(c->fd, out + off, len - off, MSG_NOSIGNAL);
		if (n > 0)
			off += (size_t)n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR) {
			check_text(c->err, sizeof(c->err), "send: %s", strerror(errno));
			return -1;
		} else if (wait_fd(c->fd, POLLOUT, deadline) < 0) {
			check_text(c->err, sizeof(c->err), "send: timed out");
			return -1;
		}
	}
	return 0;
}

/* Sends a command and reads its reply: the code, or -1 with c->err set. */
static int command(struct conn *c, const char *line, struct smtp_reply *r)
{
	if (send_line(c, line) < 0 || read_reply(c, r, false, NULL, 0) < 0)
		return -1;
	return r->code;
}

static int connect_to(struct conn *c, const struct sockaddr *sa, socklen_t salen)
{
	c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		check_text(c->err, sizeof(c->err), "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(c->fd, sa, salen) == 0)
		return 0;
	int err = errno;
	if (err == EINPROGRESS) {
		socklen_t len = sizeof(err);
		if (wait_fd(c->fd, POLLOUT, step_deadline(c)) < 0)
			err = ETIMEDOUT;
		else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
	}
	if (err == 0)
		return 0;
	check_text(c->err, sizeof(c->err), "connect: %s", strerror(err));
	return -1;
}

static void conn_close(struct conn *c)
{
	if (c->ssl) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Connect and banner: true when a 220 came. */
static bool open_session(struct conn *c, const struct sockaddr *sa, socklen_t salen, struct check_probe *out)
{
	struct smtp_reply r;
	out->stage = PROBE_CONNECT;
	if (connect_to(c, sa, salen) < 0)
		return false;
	out->stage = PROBE_BANNER;
	if (read_reply(c, &r, false, NULL, 0) < 0)
		return false;
	check_text(out->banner, sizeof(out->banner), "%s", r.text);
	if (r.code != 220) {
		check_text(c->err, sizeof(c->err), "banner is not 220: %s", r.text);
		return false;
	}
	return true;
}

void check_probe_reach(const struct sockaddr *sa, socklen_t salen, int timeout_ms, int64_t end_ms,
		       struct check_probe *out)
{
	struct conn c = {.fd = -1, .timeout_ms = timeout_ms, .end_ms = end_ms};
	struct smtp_reply r;
	memset(out, 0, sizeof(*out));
	if (open_session(&c, sa, salen, out)) {
		out->stage = PROBE_DONE;
		(void)command(&c, "QUIT", &r);
	}
	check_text(out->error, sizeof(out->error), "%s", c.err);
	conn_close(&c);
}

static bool ehlo(struct conn *c, const char *helo, struct check_probe *out)
{
	char line[300];
	struct smtp_reply r;
	check_text(line, sizeof(line), "EHLO %s", helo);
	out->ext[0] = '\0';
	if (send_line(c, line) < 0 || read_reply(c, &r, true, out->ext, sizeof(out->ext)) < 0)
		return false;
	if (r.code != 250) {
		check_text(c->err, sizeof(c->err), "EHLO refused: %s", r.text);
		return false;
	}
	const char *name = r.text + (strlen(r.text) > 4 ? 4 : strlen(r.text));
	check_text(out->ehlo_name, sizeof(out->ehlo_name), "%.*s", (int)strcspn(name, " "), name);
	out->starttls |= r.caps.starttls; /* sticky: the EHLO after TLS no longer lists it */
	return true;
}

/*
 * STARTTLS with the MX name as SNI and as the name to verify; the chain
 * and the name are judged after the handshake from the verify result, so
 * a bad certificate is reported, not fatal. false: the session is lost.
 */
static bool starttls(struct conn *c, const char *host, SSL_CTX *ctx, struct check_probe *out)
{
	struct smtp_reply r;
	int code = command(c, "STARTTLS", &r);
	if (code < 0) { /* r holds no reply: the send failed, or the reply never came */
		check_text(out->tls_error, sizeof(out->tls_error), "STARTTLS: %s", c->err);
		return false;
	}
	if (code != 220) {
		check_text(out->tls_error, sizeof(out->tls_error), "STARTTLS refused: %s", r.text);
		return true;
	}
	if (c->len > 0) { /* in clear after the 220: injected (CVE-2011-0411's kind), it would pass for TLS's */
		check_text(out->tls_error, sizeof(out->tls_error), "STARTTLS: %zu bytes in clear after its 220, before TLS",
			   c->len);
		return false;
	}
	c->ssl = SSL_new(ctx);
	if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1)
		return false;
	SSL_set_verify(c->ssl, SSL_VERIFY_NONE, NULL);
	(void)SSL_set_tlsext_host_name(c->ssl, host);
	(void)SSL_set1_host(c->ssl, host);
	int64_t deadline = step_deadline(c);
	int rc;
	while ((rc = SSL_connect(c->ssl)) != 1)
		if (tls_wait(c, rc, deadline, "TLS handshake") < 0) {
			check_text(out->tls_error, sizeof(out->tls_error), "%s", c->err);
			return false;
		}
	out->tls = true;
	check_text(out->tls_version, sizeof(out->tls_version), "%s", SSL_get_version(c->ssl));
	long v = SSL_get_verify_result(c->ssl);
	out->cert_ok = v == X509_V_OK || v == X509_V_ERR_HOSTNAME_MISMATCH;
	out->name_ok = v == X509_V_OK;
	if (v != X509_V_OK)
		check_text(out->cert_error, sizeof(out->cert_error), "%s", X509_verify_cert_error_string(v));
	return true;
}

/* MAIL FROM:<> and the three RCPTs; false when the session is lost. */
static bool rcpts(struct conn *c, const char *domain, const char *unknown, const char *relay,
		  struct check_probe *out)
{
	char line[600];
	struct smtp_reply r;
	int code = command(c, "MAIL FROM:<>", &r);
	if (code < 0)
		return false;
	if (code != 250) {
		check_text(out->mail_reply, sizeof(out->mail_reply), "%s", r.text);
		return true;
	}
	check_text(line, sizeof(line), "RCPT TO:<postmaster@%s>", domain);
	if ((out->postmaster = command(c, line, &r)) < 0)
		return false;
	check_text(line, sizeof(line), "RCPT TO:<%s>", unknown);
	if ((out->unknown = command(c, line, &r)) < 0)
		return false;
	check_text(line, sizeof(line), "RCPT TO:<%s>", relay);
	if ((out->relay = command(c, line, &r)) < 0)
		return false;
	return command(c, "RSET", &r) >= 0;
}

void check_probe_run(const struct sockaddr *sa, socklen_t salen, const char *host, const char *domain,
		     const char *helo, const char *unknown_rcpt, const char *relay_rcpt, SSL_CTX *ctx,
		     int timeout_ms, int64_t end_ms, struct check_probe *out)
{
	struct conn c = {.fd = -1, .timeout_ms = timeout_ms, .end_ms = end_ms};
	struct smtp_reply r;
	memset(out, 0, sizeof(*out));
	if (!open_session(&c, sa, salen, out))
		goto done;
	out->stage = PROBE_EHLO;
	if (!ehlo(&c, helo, out))
		goto done;
	if (out->starttls && ctx) {
		if (!starttls(&c, host, ctx, out))
			goto done;
		if (c.ssl && !ehlo(&c, helo, out))
			goto done;
	}
	if (!rcpts(&c, domain, unknown_rcpt, relay_rcpt, out))
		goto done;
	out->stage = PROBE_DONE;
	(void)command(&c, "QUIT", &r);
done:
	if (out->stage != PROBE_DONE)
		check_text(out->error, sizeof(out->error), "%s", c.err);
	conn_close(&c);
}
