/*
 * Unit tests for the control socket (ctl.c): ctl_bind against a directory
 * whose owner is hostile (the spool belongs to the daemon's user, and
 * ctl_bind runs as root). The test's own bind() stands in for libc's: it
 * binds, then swaps the new socket's name for a symlink or a hard link to a
 * victim file, as an attacker racing the daemon would; ctl_bind must leave
 * the victim's mode and owner alone and refuse the swapped name. Then the
 * call's ownership on a real event loop: a handler that has not finished
 * keeps its call (and argv) through the client's leaving and ctl_close,
 * and its late ctl_out / ctl_finish land on live memory (ASan checks).
 * Out of descriptors, the listener pauses instead of spinning.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "ctl/ctl.h"

enum swap { SWAP_NONE, SWAP_SYMLINK, SWAP_HARDLINK };

static enum swap swap_after_bind;
static char dir[64], sock_path[96], victim[96], moved[96];

/* libc's bind, then the attacker's move (ctl.o calls this one: the executable's symbol comes first). */
int bind(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len)
{
	int rc = (int)syscall(SYS_bind, fd, addr.__sockaddr__, len);
	if (rc == 0 && swap_after_bind != SWAP_NONE) {
		assert_int_equal(rename(sock_path, moved), 0);
		if (swap_after_bind == SWAP_SYMLINK)
			assert_int_equal(symlink(victim, sock_path), 0);
		else
			assert_int_equal(link(victim, sock_path), 0);
	}
	return rc;
}

static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/mxv-ctl-XXXXXX";
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(dir, sizeof(dir), "%s", tmpl);
	snprintf(sock_path, sizeof(sock_path), "%s/control", dir);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	snprintf(moved, sizeof(moved), "%s/moved", dir);
	int fd = open(victim, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0 || fchmod(fd, 0644) < 0)
		return -1;
	close(fd);
	swap_after_bind = SWAP_NONE;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	unlink(sock_path);
	unlink(victim);
	unlink(moved);
	rmdir(dir);
	return 0;
}

static mode_t victim_mode(void)
{
	struct stat st;
	assert_int_equal(stat(victim, &st), 0);
	return st.st_mode & 07777;
}

static void test_bind_makes_a_private_socket(void **state)
{
	(void)state;
	int fd = -1;
	assert_int_equal(ctl_bind(sock_path, true, getuid(), getgid(), &fd), 0);
	struct stat st;
	assert_int_equal(lstat(sock_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0600);
	close(fd);
}

static void test_swap_for_a_symlink_after_bind_is_refused(void **state)
{
	(void)state;
	int fd = -1;
	swap_after_bind = SWAP_SYMLINK;
	int rc = ctl_bind(sock_path, true, getuid(), getgid(), &fd);
	assert_int_equal(victim_mode(), 0644); /* chmod(path) followed the link to it */
	assert_int_equal(rc, -EEXIST);
}

static void test_swap_for_a_hard_link_after_bind_is_refused(void **state)
{
	(void)state;
	int fd = -1;
	swap_after_bind = SWAP_HARDLINK;
	int rc = ctl_bind(sock_path, true, getuid(), getgid(), &fd);
	assert_int_equal(victim_mode(), 0644); /* chmod and lchown of the link are the victim's */
	assert_int_equal(rc, -EEXIST);
}

/* A live socket elsewhere, named by a symlink at the path: removed, not connected to (as root). */
static void test_planted_symlink_to_a_live_socket_is_removed(void **state)
{
	(void)state;
	char other[96];
	snprintf(other, sizeof(other), "%s/other", dir);
	int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", other);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(listen(lfd, 1), 0);
	assert_int_equal(symlink(other, sock_path), 0);
	int fd = -1;
	assert_int_equal(ctl_bind(sock_path, false, 0, 0, &fd), 0);
	struct stat st;
	assert_int_equal(lstat(sock_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	close(fd);
	close(lfd);
	unlink(other);
}

static void test_live_daemon_and_stale_socket(void **state)
{
	(void)state;
	int fd = -1, fd2 = -1;
	assert_int_equal(ctl_bind(sock_path, false, 0, 0, &fd), 0);
	assert_int_equal(listen(fd, 1), 0);
	assert_int_equal(ctl_bind(sock_path, false, 0, 0, &fd2), -EADDRINUSE);
	close(fd); /* now a leftover: replaced */
	assert_int_equal(ctl_bind(sock_path, false, 0, 0, &fd2), 0);
	close(fd2);
}

/* --- calls on a live loop ---------------------------------------------- */

struct slow {
	struct ctl_call *c;
	char **argv;
	bool started, gone, finish_in_gone;
};

static void slow_gone(void *arg, struct ctl_call *c)
{
	struct slow *s = arg;
	s->gone = true;
	if (s->finish_in_gone)
		ctl_finish(c, 1);
}

/* A command that answers later (as a drill does). */
static void cmd_slow(void *arg, struct ctl_call *c, int argc, char **argv)
{
	(void)argc;
	struct slow *s = arg;
	s->c = c;
	s->argv = argv;
	s->started = true;
	ctl_on_gone(c, slow_gone, s);
	ctl_out(c, "working");
}

static void tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
}

/* Runs the loop until *flag, for at most 5 s (a ticking timer bounds each pass). */
static void run_until(struct event_base *base, const bool *flag)
{
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	event_add(t, &(struct timeval){0, 50000});
	int64_t deadline = clock_mono_ms() + 5000;
	while (!*flag && clock_mono_ms() < deadline)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	assert_true(*flag);
}

/* A ctl on sock_path with the slow command, and a client that has sent "slow". */
static struct ctl *start_slow(struct event_base *base, struct slow *s, int *client)
{
	int fd = -1;
	assert_int_equal(ctl_bind(sock_path, false, 0, 0, &fd), 0);
	struct ctl *ctl = ctl_open(base, sock_path, fd);
	ctl_register(ctl, "slow", cmd_slow, s);
	*client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	assert_int_equal(connect(*client, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(send(*client, "slow\0\0", 6, 0), 6);
	run_until(base, &s->started);
	return ctl;
}

static void test_call_outlives_its_client_until_finish(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct slow s = {0};
	int client;
	struct ctl *ctl = start_slow(base, &s, &client);
	close(client);
	run_until(base, &s.gone);
	/* The handler's work ends later: its words, its output and its finish meet a live call. */
	assert_string_equal(s.argv[0], "slow");
	ctl_out(s.c, "done");
	ctl_finish(s.c, 0);
	ctl_close(ctl);
	event_base_free(base);
}

static void test_call_outlives_ctl_close_until_finish(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct slow s = {0};
	int client;
	struct ctl *ctl = start_slow(base, &s, &client);
	ctl_close(ctl); /* the daemon stops first; the command is told, and finishes as it unwinds */
	assert_true(s.gone);
	ctl_err(s.c, "interrupted");
	ctl_finish(s.c, 75);
	close(client);
	event_base_free(base);
}

static void test_finish_inside_gone(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct slow s = {.finish_in_gone = true};
	int client;
	struct ctl *ctl = start_slow(base, &s, &client);
	close(client);
	run_until(base, &s.gone);
	ctl_close(ctl);
	event_base_free(base);
}

/* Loop passes in ms milliseconds, with a 50 ms tick: a handful, unless something spins. */
static int passes_in(struct event_base *base, int ms)
{
	struct event *t = event_new(base, -1, EV_PERSIST, tick, NULL);
	event_add(t, &(struct timeval){0, 50000});
	int passes = 0;
	for (int64_t end = clock_mono_ms() + ms; clock_mono_ms() < end; passes++)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return passes;
}

static void test_out_of_descriptors_pauses_accepting(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct slow s = {0};
	int fd = -1;
	assert_int_equal(ctl_bind(sock_path, false, 0, 0, &fd), 0);
	struct ctl *ctl = ctl_open(base, sock_path, fd);
	ctl_register(ctl, "slow", cmd_slow, &s);
	int client = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	assert_int_equal(connect(client, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_int_equal(send(client, "slow\0\0", 6, 0), 6);
	/* No descriptor left for accept(): the lowest free one is the limit. */
	struct rlimit old;
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	int lowest = dup(0);
	close(lowest);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &(struct rlimit){(rlim_t)lowest, old.rlim_max}), 0);
	int passes = passes_in(base, 300);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_false(s.started);
	assert_in_range(passes, 1, 30); /* a spinning listener makes thousands */
	run_until(base, &s.started);    /* descriptors again: the paused listener took it */
	ctl_finish(s.c, 0);
	close(client);
	ctl_close(ctl);
	event_base_free(base);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN); /* as the daemon does: replies to a client that left */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bind_makes_a_private_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swap_for_a_symlink_after_bind_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_swap_for_a_hard_link_after_bind_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_planted_symlink_to_a_live_socket_is_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_live_daemon_and_stale_socket, setup, teardown),
		cmocka_unit_test_setup_teardown(test_call_outlives_its_client_until_finish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_call_outlives_ctl_close_until_finish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_finish_inside_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_descriptors_pauses_accepting, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
