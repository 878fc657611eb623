/*
 * notify: see notify.h. Owned by the alerts module (alerts.c), which calls
 * notify_send once per change of state; this file only runs commands.
 *
 * Invariants: no two runs (struct run) share a kind or a domain, and no
 * alert starts ahead of an older one of its kind or domain; a run lives
 * from the spawn until its child is reaped, then the queue is looked at
 * again. The child's output pipe may close before or after the child exits
 * (a grandchild can keep it open): what is left in it when the child is
 * reaped is read once, without waiting, and the pipe is closed.
 * Error policy: a command that cannot be started is logged and its alert
 * dropped; nothing here stops the daemon.
 *
 * Thread safety: the daemon has threads (the spool's I/O thread), so the
 * child is made with posix_spawn, and everything it needs (argv, the
 * environment) is built before.
 */
#include "notify.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

#define NOTIFY_MAX_RUNS 16     /* commands running at once (each of another kind and domain) */
#define NOTIFY_LINE_MAX 256    /* a longer output line is logged in pieces of this size */
#define NOTIFY_NENV 7
#define NOTIFY_POLL_MS 100     /* reaping without a pidfd (kernels before 5.3): a poll */
#define NOTIFY_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

/* One alert waiting for, or given to, a run: its environment, built at send time. */
struct job {
	char *env[NOTIFY_NENV + 1];
	const char *kind;  /* the caller's constant */
	char *domain;      /* "" for the spool's own alerts */
	struct job *next;
};

struct run {
	struct notify *n;
	struct job *job;
	pid_t pid;
	int out_fd, pidfd;
	struct event *out_ev, *exit_ev, *timeout_ev;
	char line[NOTIFY_LINE_MAX];
	size_t nline;
	size_t logged;       /* output bytes logged */
	uint64_t dropped;    /* output bytes past NOTIFY_LOG_MAX, read and thrown away */
	int64_t started_ms;
	bool timed_out;
};

struct notify {
	struct event_base *base;
	char *command;       /* NULL: alerts are only logged */
	char *host, *path;
	int64_t timeout_s;
	struct job *queue, **queue_tail; /* alerts not yet started, oldest first */
	size_t nqueued;
	struct run *runs[NOTIFY_MAX_RUNS];
	size_t nruns;
};

static void start_next(struct notify *n);

/* --- the environment ---------------------------------------------------- */

static char *env_var(const char *name, const char *value)
{
	struct buf b = {0};
	buf_printf(&b, "%s=%s", name, value);
	char *s = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return s;
}

/* DETAIL may quote a peer's reply: printable ASCII only, bounded, so a script can print it safely. */
static void clean_detail(char out[NOTIFY_DETAIL_MAX + 1], const char *s)
{
	size_t n = 0;
	for (; s && s[n] && n < NOTIFY_DETAIL_MAX; n++)
		out[n] = s[n] >= 0x20 && s[n] < 0x7f ? s[n] : '?';
	out[n] = '\0';
}

static struct job *job_new(const struct notify *n, const struct notify_alert *a)
{
	struct job *j = xcalloc(1, sizeof(*j));
	j->kind = a->kind;
	j->domain = xstrdup(a->domain ? a->domain : "");
	char num[32], detail[NOTIFY_DETAIL_MAX + 1];
	clean_detail(detail, a->detail);
	size_t i = 0;
	j->env[i++] = env_var("EVENT", a->kind);
	j->env[i++] = env_var("DOMAIN", a->domain ? a->domain : "");
	snprintf(num, sizeof(num), "%" PRIu64, a->queued);
	j->env[i++] = env_var("QUEUED", num);
	snprintf(num, sizeof(num), "%" PRId64, a->oldest_age);
	j->env[i++] = env_var("OLDEST_AGE", num);
	j->env[i++] = env_var("DETAIL", detail);
	j->env[i++] = env_var("MXVAULT_HOST", n->host);
	j->env[i++] = env_var("PATH", n->path);
	return j;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < NOTIFY_NENV; i++)
		free(j->env[i]);
	free(j->domain);
	free(j);
}

/* --- starting a child --------------------------------------------------- */

/* The child starts with default signal handling (the daemon ignores SIGPIPE) and no blocked signals. */
static void spawn_attr(posix_spawnattr_t *at)
{
	static const int reset[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM};
	sigset_t none, deflt;
	sigemptyset(&none);
	sigemptyset(&deflt);
	for (size_t i = 0; i < ARRAY_LEN(reset); i++)
		sigaddset(&deflt, reset[i]);
	posix_spawnattr_init(at);
	posix_spawnattr_setsigmask(at, &none);
	posix_spawnattr_setsigdefault(at, &deflt);
	posix_spawnattr_setpgroup(at, 0); /* its own group: the timeout kills what it started too */
	posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
}

/* Starts /bin/sh -c COMMAND with the job's environment: 0 and *pid, *out_fd (non-blocking), or -errno. */
static int spawn(const struct notify *n, struct job *j, pid_t *pid, int *out_fd)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_adddup2(&fa, p[1], 2);
	posix_spawn_file_actions_addclosefrom_np(&fa, 3); /* no listener or spool fd leaks into it */
	posix_spawn_file_actions_addchdir_np(&fa, "/");
	spawn_attr(&at);
	char *argv[] = {"sh", "-c", n->command, NULL};
	int rc = posix_spawn(pid, "/bin/sh", &fa, &at, argv, j->env);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(p[1]);
	if (rc != 0) {
		close(p[0]);
		return -rc;
	}
	if (fcntl(p[0], F_SETFL, O_NONBLOCK) < 0)
		log_warn("notify", "cannot make the output pipe non-blocking: %s", strerror(errno));
	*out_fd = p[0];
	return 0;
}

/* --- the child's output ------------------------------------------------- */

static void log_line(struct run *r)
{
	size_t n = r->nline;
	r->nline = 0;
	if (n && r->line[n - 1] == '\r')
		n--;
	if (r->logged >= NOTIFY_LOG_MAX) {
		r->dropped += n;
		return;
	}
	char safe[NOTIFY_LINE_MAX * 4 + 8];
	r->logged += n;
	log_info("notify", "event=%s pid=%d output=\"%s\"", r->job->kind, (int)r->pid,
		 log_safe(safe, sizeof(safe), r->line, n));
}

static void take_output(struct run *r, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\n') {
			log_line(r);
			continue;
		}
		if (r->nline == sizeof(r->line))
			log_line(r);
		r->line[r->nline++] = p[i];
	}
}

static void close_output(struct run *r)
{
	if (r->out_fd < 0)
		return;
	if (r->nline)
		log_line(r);
	event_free(r->out_ev);
	r->out_ev = NULL;
	close(r->out_fd);
	r->out_fd = -1;
}

/* Reads what the pipe holds now (a bounded number of chunks a call); closes it at EOF. */
static void read_output(struct run *r)
{
	char chunk[4096];
	for (int i = 0; i < 16 && r->out_fd >= 0; i++) {
		ssize_t got = read(r->out_fd, chunk, sizeof(chunk));
		if (got > 0) {
			take_output(r, chunk, (size_t)got);
		} else if (got < 0 && errno == EINTR) {
			continue;
		} else {
			if (got == 0 || errno != EAGAIN)
				close_output(r);
			return;
		}
	}
}

static void on_output(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	read_output(arg);
}

/* --- the end of a run --------------------------------------------------- */

static void log_end(const struct run *r, int status)
{
	int64_t ms = clock_mono_ms() - r->started_ms;
	char dropped[48] = "";
	if (r->dropped)
		snprintf(dropped, sizeof(dropped), " output_not_logged=%" PRIu64 "B", r->dropped);
	if (status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		log_info("notify", "event=%s pid=%d exit=0 ms=%" PRId64 "%s", r->job->kind, (int)r->pid, ms, dropped);
	else if (status >= 0 && WIFEXITED(status))
		log_warn("notify", "event=%s pid=%d exit=%d ms=%" PRId64 "%s", r->job->kind, (int)r->pid,
			 WEXITSTATUS(status), ms, dropped);
	else if (status >= 0 && WIFSIGNALED(status))
		log_warn("notify", "event=%s pid=%d signal=%d ms=%" PRId64 "%s%s", r->job->kind, (int)r->pid,
			 WTERMSIG(status), ms, r->timed_out ? " timed_out=yes" : "", dropped);
	else
		log_warn("notify", "event=%s pid=%d status=unknown ms=%" PRId64, r->job->kind, (int)r->pid, ms);
}

static void run_free(struct run *r)
{
	close_output(r);
	if (r->exit_ev)
		event_free(r->exit_ev);
	if (r->timeout_ev)
		event_free(r->timeout_ev);
	if (r->pidfd >= 0)
		close(r->pidfd);
	struct notify *n = r->n;
	for (size_t i = 0; i < n->nruns; i++) {
		if (n->runs[i] == r) {
			n->runs[i] = n->runs[--n->nruns];
			break;
		}
	}
	job_free(r->job);
	free(r);
}

/* The child is reaped (status, or -1 when it could not be): its last output, the log line, the next alert. */
static void finish(struct run *r, int status)
{
	read_output(r);
	close_output(r); /* what a grandchild writes later is not waited for */
	log_end(r, status);
	struct notify *n = r->n;
	run_free(r);
	start_next(n);
}

static void on_exit_ready(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct run *r = arg;
	int status;
	pid_t got = waitpid(r->pid, &status, WNOHANG);
	if (got == 0 || (got < 0 && errno == EINTR))
		return; /* still running (the poll without a pidfd) */
	finish(r, got < 0 ? -1 : status);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct run *r = arg;
	log_warn("notify", "event=%s pid=%d still running after notify_timeout=%" PRId64 "s: killing it",
		 r->job->kind, (int)r->pid, r->n->timeout_s);
	r->timed_out = true;
	kill(-r->pid, SIGKILL); /* the group: what the command started goes too */
}

/* --- the queue ---------------------------------------------------------- */

static void start_run(struct notify *n, struct job *j)
{
	struct run *r = xcalloc(1, sizeof(*r));
	*r = (struct run){.n = n, .job = j, .out_fd = -1, .pidfd = -1, .started_ms = clock_mono_ms()};
	int rc = spawn(n, j, &r->pid, &r->out_fd);
	if (rc < 0) {
		log_err("notify", "event=%s cannot run notify_command: %s", j->kind, strerror(-rc));
		job_free(j);
		free(r);
		return;
	}
	n->runs[n->nruns++] = r;
	r->pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
	r->out_ev = event_new(n->base, r->out_fd, EV_READ | EV_PERSIST, on_output, r);
	event_add(r->out_ev, NULL);
	if (r->pidfd >= 0) {
		r->exit_ev = event_new(n->base, r->pidfd, EV_READ | EV_PERSIST, on_exit_ready, r);
		event_add(r->exit_ev, NULL);
	} else {
		r->exit_ev = event_new(n->base, -1, EV_PERSIST, on_exit_ready, r);
		event_add(r->exit_ev, &(struct timeval){0, NOTIFY_POLL_MS * 1000});
	}
	r->timeout_ev = evtimer_new(n->base, on_timeout, r);
	event_add(r->timeout_ev, &(struct timeval){(time_t)n->timeout_s, 0});
	log_debug("notify", "event=%s pid=%d started", j->kind, (int)r->pid);
}

static bool same_lane(const struct job *a, const struct job *b)
{
	return strcmp(a->kind, b->kind) == 0 || strcmp(a->domain, b->domain) == 0;
}

/*
 * j may start when nothing of its kind or about its domain runs or waits
 * ahead of it: one command at a time per kind, and a domain's alerts in the
 * order they happened ("recovered" is told before "drained").
 */
static bool may_start(const struct notify *n, const struct job *j)
{
	if (n->nruns == NOTIFY_MAX_RUNS)
		return false;
	for (size_t i = 0; i < n->nruns; i++)
		if (same_lane(n->runs[i]->job, j))
			return false;
	for (const struct job *q = n->queue; q != j; q = q->next)
		if (same_lane(q, j))
			return false;
	return true;
}

static void start_next(struct notify *n)
{
	struct job **p = &n->queue;
	while (*p) {
		struct job *j = *p;
		if (!may_start(n, j)) {
			p = &j->next;
			continue;
		}
		*p = j->next;
		if (!*p)
			n->queue_tail = p;
		n->nqueued--;
		j->next = NULL;
		start_run(n, j);
	}
}

static void enqueue(struct notify *n, struct job *j)
{
	if (n->nqueued == NOTIFY_QUEUE_MAX) {
		struct job *old = n->queue;
		log_warn("notify", "%d alerts already wait for the command: the oldest (event=%s) is dropped",
			 NOTIFY_QUEUE_MAX, old->kind);
		n->queue = old->next;
		if (!n->queue)
			n->queue_tail = &n->queue;
		n->nqueued--;
		job_free(old);
	}
	*n->queue_tail = j;
	n->queue_tail = &j->next;
	n->nqueued++;
}

/* --- the interface ------------------------------------------------------ */

struct notify *notify_new(struct event_base *base, const char *command, const char *host, int64_t timeout_s)
{
	struct notify *n = xcalloc(1, sizeof(*n));
	const char *path = getenv("PATH");
	n->base = base;
	n->command = command ? xstrdup(command) : NULL;
	n->host = xstrdup(host);
	n->path = xstrdup(path && *path ? path : NOTIFY_DEFAULT_PATH);
	n->timeout_s = timeout_s;
	n->queue_tail = &n->queue;
	return n;
}

void notify_send(struct notify *n, const struct notify_alert *a)
{
	char safe[NOTIFY_DETAIL_MAX * 4 + 8];
	const char *detail = a->detail ? a->detail : "";
	log_warn("alert", "event=%s domain=%s queued=%" PRIu64 " oldest_age=%" PRId64 "s detail=\"%s\"", a->kind,
		 a->domain && *a->domain ? a->domain : "-", a->queued, a->oldest_age,
		 log_safe(safe, sizeof(safe), detail, strnlen(detail, NOTIFY_DETAIL_MAX)));
	if (!n->command)
		return;
	enqueue(n, job_new(n, a));
	start_next(n);
}

void notify_free(struct notify *n)
{
	if (!n)
		return;
	while (n->nruns) {
		/* Stopping: a reaped SIGKILLed child is the only wait, and it is immediate. */
		struct run *r = n->runs[0];
		int status;
		kill(-r->pid, SIGKILL);
		if (waitpid(r->pid, &status, 0) < 0)
			log_debug("notify", "pid=%d: %s", (int)r->pid, strerror(errno));
		log_warn("notify", "event=%s pid=%d killed: the daemon is stopping", r->job->kind, (int)r->pid);
		run_free(r);
	}
	while (n->queue) {
		struct job *j = n->queue;
		n->queue = j->next;
		job_free(j);
	}
	free(n->command);
	free(n->host);
	free(n->path);
	free(n);
}
