/*
 * ctl: see ctl.h. Each client is one call: its request is read (bounded in
 * size and in time), matched against the command table and handed to the
 * handler; the reply lines go out through the connection's bufferevent and
 * the connection is closed once the last one has been written, or at once
 * when the client goes away (the handler is told if it had not finished).
 *
 * Who frees a call: a started call belongs to its handler until
 * ctl_finish, whatever the client does; the connection belongs to ctl. The
 * struct goes when both are done: at ctl_finish if the client is already
 * gone (c->bev NULL, an orphan), else when the connection closes. So a
 * handler's late ctl_out or ctl_finish, after the client left or the daemon
 * began to stop, lands on a live call and is dropped, never on freed memory.
 */
#include "ctl.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"

/*
 * A request must arrive whole within this from the connect (not from the
 * last byte: a client trickling a byte at a time would hold a slot for
 * hours); commands themselves may take as long as they need.
 */
#define CTL_REQUEST_TIMEOUT_S 10
#define CTL_WRITE_TIMEOUT_S 60
#define CTL_LINGER_S 2
#define CTL_MAX_COMMANDS 64
/* Out of descriptors: the connection stays in the backlog, and accepting pauses this long. */
#define CTL_ACCEPT_PAUSE_MS 250

struct ctl_cmd {
	char name[48];
	ctl_cmd_fn *fn;
	void *arg;
};

struct ctl_call {
	struct ctl *ctl;
	struct bufferevent *bev;
	char req[CTL_MAX_REQUEST];
	char *argv[CTL_MAX_ARGS + 1];
	int argc;
	bool started;  /* handed to its handler */
	bool finished; /* ctl_finish was called: waiting for the reply to be written */
	bool lingering;/* the reply is out and our side shut: reading to the client's end */
	int64_t deadline_ms; /* for the whole request, then for the whole linger */
	ctl_gone_fn *gone;
	void *gone_arg;
	struct ctl_call *prev, *next;
};

struct ctl {
	struct event_base *base;
	struct evconnlistener *lis;
	struct event *resume_ev; /* accepting again after EMFILE */
	int64_t last_accept_log_ms;
	int64_t last_refused_log_ms;
	uint64_t refused;           /* since that log line */
	char *path;
	struct ctl_cmd cmds[CTL_MAX_COMMANDS];
	size_t ncmds;
	struct ctl_call *calls;
	size_t ncalls;
};

/* --- calls ------------------------------------------------------------- */

/*
 * The connection ends (the reply is out, the client is gone, or the daemon
 * stops). A handler still working keeps the call, an orphan, until its
 * ctl_finish (told first through its gone handler, if it set one); any
 * other call goes now.
 */
static void call_abandon(struct ctl_call *c)
{
	struct ctl *ctl = c->ctl;
	if (c->prev)
		c->prev->next = c->next;
	else
		ctl->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	ctl->ncalls--;
	bufferevent_free(c->bev);
	c->bev = NULL;
	c->ctl = NULL;
	if (!c->started || c->finished) {
		free(c);
		return;
	}
	if (c->gone)
		c->gone(c->gone_arg, c); /* may call ctl_finish, which frees c */
}

/* Appends p[0..n) as reply lines of kind ('o' or 'e'), one per "\n"-ended piece. */
static void put_lines(struct ctl_call *c, char kind, const char *p, size_t n)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t len = nl ? (size_t)(nl - p) : n;
		char tag[2] = {kind, ' '};
		evbuffer_add(out, tag, 2);
		evbuffer_add(out, p, len);
		evbuffer_add(out, "\n", 1);
		p += len + (nl ? 1 : 0);
		n -= len + (nl ? 1 : 0);
	}
}

static void put_vfmt(struct ctl_call *c, char kind, const char *f, va_list ap) PRINTF_LIKE(3, 0);
static void put_vfmt(struct ctl_call *c, char kind, const char *f, va_list ap)
{
	if (c->finished || !c->bev)
		return;
	char *text = NULL;
	int n = vasprintf(&text, f, ap);
	if (n < 0)
		abort(); /* out of memory is fatal, as in xmalloc */
	put_lines(c, kind, text, (size_t)n);
	free(text);
}

void ctl_out(struct ctl_call *c, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	put_vfmt(c, 'o', f, ap);
	va_end(ap);
}

void ctl_err(struct ctl_call *c, const char *f, ...)
{
	va_list ap;
	va_start(ap, f);
	put_vfmt(c, 'e', f, ap);
	va_end(ap);
}

void ctl_out_bytes(struct ctl_call *c, const void *p, size_t n)
{
	if (!c->finished && c->bev)
		put_lines(c, 'o', p, n);
}

void ctl_finish(struct ctl_call *c, int exit_code)
{
	if (c->finished)
		return;
	c->finished = true;
	if (!c->bev) { /* an orphan: the client went first, the handler is done now */
		free(c);
		return;
	}
	evbuffer_add_printf(bufferevent_get_output(c->bev), "x %d\n", exit_code);
	/* the write callback frees the call once this has gone out */
}

void ctl_on_gone(struct ctl_call *c, ctl_gone_fn *fn, void *arg)
{
	c->gone = fn;
	c->gone_arg = arg;
}

bool ctl_wants_json(const struct ctl_call *c)
{
	for (int i = 0; i < c->argc; i++)
		if (strcmp(c->argv[i], "--json") == 0)
			return true;
	return false;
}

/* --- requests ---------------------------------------------------------- */

/* The read timeout, set to what is left of c->deadline_ms; false when nothing is. */
static bool rearm_deadline(struct ctl_call *c)
{
	int64_t left = c->deadline_ms - clock_mono_ms();
	if (left <= 0)
		return false;
	bufferevent_set_timeouts(c->bev, &(struct timeval){left / 1000, (left % 1000) * 1000}, NULL);
	return true;
}

static const struct ctl_cmd *find_cmd(const struct ctl *ctl, int argc, char **argv)
{
	char two[96];
	if (argc >= 2 && fmt(two, sizeof(two), "%s %s", argv[0], argv[1]) == 0)
		for (size_t i = 0; i < ctl->ncmds; i++)
			if (strcmp(ctl->cmds[i].name, two) == 0)
				return &ctl->cmds[i];
	for (size_t i = 0; i < ctl->ncmds; i++)
		if (strcmp(ctl->cmds[i].name, argv[0]) == 0)
			return &ctl->cmds[i];
	return NULL;
}

/* Splits the request's NUL-ended words; false when there are too many, or none. */
static bool split_words(struct ctl_call *c, size_t len)
{
	size_t i = 0;
	while (i < len && c->req[i] != '\0') {
		if (c->argc == CTL_MAX_ARGS)
			return false;
		c->argv[c->argc++] = &c->req[i];
		i += strlen(&c->req[i]) + 1;
	}
	c->argv[c->argc] = NULL;
	return c->argc > 0;
}

static void run_request(struct ctl_call *c, size_t len)
{
	/* A command may take its time (a drill); a client that stops reading its reply may not. */
	bufferevent_set_timeouts(c->bev, NULL, &(struct timeval){CTL_WRITE_TIMEOUT_S, 0});
	c->started = true;
	if (!split_words(c, len)) {
		ctl_err(c, "mxvault: a control request needs 1 to %d words", CTL_MAX_ARGS);
		ctl_finish(c, 64);
		return;
	}
	const struct ctl_cmd *cmd = find_cmd(c->ctl, c->argc, c->argv);
	if (!cmd) {
		char safe[128];
		ctl_err(c, "mxvault: the daemon has no command '%s'",
			log_safe(safe, sizeof(safe), c->argv[0], strlen(c->argv[0])));
		ctl_finish(c, 64);
		return;
	}
	cmd->fn(cmd->arg, c, c->argc, c->argv);
}

/* The request ends with an empty word: two NULs in a row, or a NUL at its very start. */
static long request_end(const char *p, size_t n)
{
	if (n >= 1 && p[0] == '\0')
		return 1;
	for (size_t i = 1; i < n; i++)
		if (p[i] == '\0' && p[i - 1] == '\0')
			return (long)(i + 1);
	return -1;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct ctl_call *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	if (c->started) {
		evbuffer_drain(in, evbuffer_get_length(in)); /* nothing more is expected */
		if (c->lingering && !rearm_deadline(c))
			call_abandon(c);
		return;
	}
	size_t n = evbuffer_get_length(in);
	size_t take = n < sizeof(c->req) ? n : sizeof(c->req);
	evbuffer_copyout(in, c->req, take);
	long end = request_end(c->req, take);
	if (end < 0 && take == sizeof(c->req)) {
		evbuffer_drain(in, n);
		c->started = true;
		ctl_err(c, "mxvault: control request over %d bytes", CTL_MAX_REQUEST);
		ctl_finish(c, 64);
		return;
	}
	if (end < 0) {
		if (!rearm_deadline(c))
			call_abandon(c);
		return;
	}
	evbuffer_drain(in, n);
	run_request(c, (size_t)end);
}

/*
 * The reply is out: our side is shut, and the call waits (briefly) for the
 * client's end before closing, so that closing on bytes the client still
 * sent (an over-long request) cannot reset the connection and lose the
 * reply on the way.
 */
static void on_written(struct bufferevent *bev, void *arg)
{
	struct ctl_call *c = arg;
	if (!c->finished || c->lingering)
		return;
	c->lingering = true;
	shutdown(bufferevent_getfd(bev), SHUT_WR);
	c->deadline_ms = clock_mono_ms() + CTL_LINGER_S * 1000;
	bufferevent_set_timeouts(bev, &(struct timeval){CTL_LINGER_S, 0}, NULL);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what; /* EOF, an error or the request's timeout: the call ends the same way */
	call_abandon(arg);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)lis;
	(void)sa;
	(void)salen;
	struct ctl *ctl = arg;
	if (ctl->ncalls >= CTL_MAX_CLIENTS) {
		/* one line a second at most: a client in a loop would otherwise write one per connect */
		int64_t now = clock_mono_ms();
		ctl->refused++;
		if (now - ctl->last_refused_log_ms >= 1000) {
			log_warn("ctl", "refused %" PRIu64 " control connection%s: %d are open", ctl->refused,
				 ctl->refused == 1 ? "" : "s", CTL_MAX_CLIENTS);
			ctl->last_refused_log_ms = now;
			ctl->refused = 0;
		}
		evutil_closesocket(fd);
		return;
	}
	struct ctl_call *c = xcalloc(1, sizeof(*c));
	c->ctl = ctl;
	c->deadline_ms = clock_mono_ms() + CTL_REQUEST_TIMEOUT_S * 1000;
	c->bev = bufferevent_socket_new(ctl->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, on_read, on_written, on_event, c);
	bufferevent_set_timeouts(c->bev, &(struct timeval){CTL_REQUEST_TIMEOUT_S, 0}, NULL);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	c->next = ctl->calls;
	if (ctl->calls)
		ctl->calls->prev = c;
	ctl->calls = c;
	ctl->ncalls++;
}

static void resume_accepting(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct ctl *ctl = arg;
	evconnlistener_enable(ctl->lis);
}

/*
 * accept() failed. Without this, libevent logs and retries at once: out of
 * descriptors (a flood on the SMTP side), one pending control connection
 * would spin the loop and fill the log. As smtp_server does: pause.
 */
static void on_accept_error(struct evconnlistener *lis, void *arg)
{
	struct ctl *ctl = arg;
	int err = EVUTIL_SOCKET_ERROR();
	int64_t now = clock_mono_ms();
	if (now - ctl->last_accept_log_ms >= 1000) {
		ctl->last_accept_log_ms = now;
		log_err("ctl", "accept: %s", strerror(err));
	}
	if (err != EMFILE && err != ENFILE && err != ENOBUFS && err != ENOMEM)
		return;
	evconnlistener_disable(lis);
	event_add(ctl->resume_ev, &(struct timeval){0, CTL_ACCEPT_PAUSE_MS * 1000});
}

/* --- the socket -------------------------------------------------------- */

/*
 * A socket file at path that nobody answers on is a leftover: it goes. One
 * that answers is a live daemon. Anything else there (a symlink the
 * daemon's user planted in its spool) is removed unfollowed: connect()
 * would follow it, as root, to whatever socket it names.
 */
static int clear_stale(const struct sockaddr_un *sun)
{
	struct stat st;
	if (lstat(sun->sun_path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISSOCK(st.st_mode)) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -errno;
		int rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
		close(fd);
		if (rc == 0)
			return -EADDRINUSE;
	}
	return unlink(sun->sun_path) < 0 && errno != ENOENT ? -errno : 0;
}

/*
 * The socket bind just made, checked and given to uid:gid through a
 * descriptor, never by its name again: the directory (the spool) belongs to
 * the daemon's user, who can swap the name between bind and a chmod or
 * chown by name for a symlink (chmod follows it, as root) or a hard link
 * (lchown of a link to /etc/shadow is a chown of /etc/shadow). What the
 * name opens to must be a socket with one link, ours, mode 0600 (umask
 * made it so at birth): anything else is refused with -EEXIST.
 */
static int take_socket(const char *path, bool owner, uint32_t uid, uint32_t gid)
{
	int fd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = fstat(fd, &st) < 0 ? -errno : 0;
	if (rc == 0 && (!S_ISSOCK(st.st_mode) || st.st_nlink != 1 || st.st_uid != geteuid() ||
			(st.st_mode & 07777) != 0600)) {
		log_err("ctl", "%s is not the socket just bound (replaced under us?): not using it", path);
		rc = -EEXIST;
	}
	if (rc == 0 && owner && fchownat(fd, "", uid, gid, AT_EMPTY_PATH) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

int ctl_bind(const char *path, bool owner, uint32_t uid, uint32_t gid, int *out)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	if (fmt(sun.sun_path, sizeof(sun.sun_path), "%s", path) < 0)
		return -ENAMETOOLONG;
	int rc = clear_stale(&sun);
	if (rc < 0)
		return rc;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	mode_t old = umask(0177); /* born 0600: no moment when others could connect */
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ? -errno : 0;
	umask(old);
	if (rc == 0)
		rc = take_socket(path, owner, uid, gid);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	*out = fd;
	return 0;
}

struct ctl *ctl_open(struct event_base *base, const char *path, int fd)
{
	struct ctl *ctl = xcalloc(1, sizeof(*ctl));
	ctl->base = base;
	ctl->path = xstrdup(path);
	ctl->lis = evconnlistener_new(base, on_accept, ctl, LEV_OPT_CLOSE_ON_FREE, CTL_MAX_CLIENTS, fd);
	if (!ctl->lis)
		abort(); /* listen() on a bound UNIX socket of ours: only out of memory fails */
	evconnlistener_set_error_cb(ctl->lis, on_accept_error);
	ctl->resume_ev = event_new(base, -1, 0, resume_accepting, ctl);
	return ctl;
}

void ctl_register(struct ctl *ctl, const char *name, ctl_cmd_fn *fn, void *arg)
{
	if (ctl->ncmds == CTL_MAX_COMMANDS || strlen(name) >= sizeof(ctl->cmds[0].name))
		abort(); /* our own table: a programming error */
	struct ctl_cmd *cmd = &ctl->cmds[ctl->ncmds++];
	snprintf(cmd->name, sizeof(cmd->name), "%s", name);
	cmd->fn = fn;
	cmd->arg = arg;
}

void ctl_close(struct ctl *ctl)
{
	if (!ctl)
		return;
	evconnlistener_free(ctl->lis);
	event_free(ctl->resume_ev);
	unlink(ctl->path); /* may fail without root (the path above the spool); the next start clears it */
	while (ctl->calls)
		call_abandon(ctl->calls);
	free(ctl->path);
	free(ctl);
}
