/*
 * Unit tests for the control socket's client (ctl_client.c) against a fake
 * daemon: whoever holds the daemon's user can answer on the socket (it
 * lives in the spool), and a reply may carry a peer's bytes. On a terminal
 * the client must not pass escape sequences through; to a file it copies
 * the bytes as they are. A line whose kind is not o, e or x is a protocol
 * error. A daemon that never accepts (its backlog full) costs the timeout,
 * not forever.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/ctl_client.h"

static char dir[64], sock_path[96];
static int lfd = -1;
static const char *reply;
static size_t reply_len;

/* The fake daemon: one client, its request read to the empty word, then the canned reply. */
static void *fake_daemon(void *arg)
{
	(void)arg;
	int fd = accept(lfd, NULL, NULL);
	char buf[512];
	size_t len = 0;
	while (len < 2 || buf[len - 1] != '\0' || buf[len - 2] != '\0') {
		ssize_t n = recv(fd, buf + len, sizeof(buf) - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	(void)!write(fd, reply, reply_len);
	close(fd);
	return NULL;
}

static int setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/mxv-ctlc-XXXXXX";
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(dir, sizeof(dir), "%s", tmpl);
	snprintf(sock_path, sizeof(sock_path), "%s/control", dir);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(lfd, 1) < 0)
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	close(lfd);
	unlink(sock_path);
	rmdir(dir);
	return 0;
}

/* ctl_run of "ping" against the fake daemon, out and err as given. */
static int run(FILE *out, FILE *err)
{
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, fake_daemon, NULL), 0);
	char *argv[] = {"ping", NULL};
	int rc = ctl_run(sock_path, 1, argv, 5000, out, err);
	pthread_join(t, NULL);
	fflush(out);
	fflush(err);
	return rc;
}

/* A pseudo-terminal: *slave to write to, the master's fd to read what a terminal would get. */
static int open_pty(FILE **slave)
{
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	assert_true(m >= 0);
	assert_int_equal(grantpt(m), 0);
	assert_int_equal(unlockpt(m), 0);
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	assert_true(s >= 0);
	*slave = fdopen(s, "w");
	return m;
}

#define HOSTILE "o \x1b]0;owned\x07title \x1b[2Jclear\r\x9b" "31mred\0nul\nx 0\n"

static void test_terminal_gets_no_escape_sequences(void **state)
{
	(void)state;
	reply = HOSTILE;
	reply_len = sizeof(HOSTILE) - 1;
	FILE *tty;
	int master = open_pty(&tty);
	FILE *err = tmpfile();
	assert_int_equal(run(tty, err), 0);
	char got[512];
	ssize_t n = read(master, got, sizeof(got) - 1);
	assert_true(n > 0);
	got[n] = '\0';
	assert_null(memchr(got, 0x1b, (size_t)n)); /* ESC, as it came, would be the terminal's */
	assert_null(memchr(got, 0x9b, (size_t)n)); /* nor the one-byte CSI */
	assert_null(memchr(got, 0x07, (size_t)n));
	assert_non_null(strstr(got, "\\x1b]0;owned"));
	assert_non_null(strstr(got, "red\\x00nul"));
	fclose(tty);
	fclose(err);
	close(master);
}

static void test_a_file_gets_the_bytes_as_they_are(void **state)
{
	(void)state;
	reply = HOSTILE;
	reply_len = sizeof(HOSTILE) - 1;
	FILE *out = tmpfile(), *err = tmpfile();
	assert_int_equal(run(out, err), 0);
	char got[512];
	rewind(out);
	size_t n = fread(got, 1, sizeof(got), out);
	static const char want[] = "\x1b]0;owned\x07title \x1b[2Jclear\r\x9b" "31mred\0nul\n";
	assert_int_equal(n, sizeof(want) - 1);
	assert_memory_equal(got, want, n);
	fclose(out);
	fclose(err);
}

static void test_a_line_of_kind_nul_is_a_protocol_error(void **state)
{
	(void)state;
	static const char bad[] = "\0 text\nx 0\n";
	reply = bad;
	reply_len = sizeof(bad) - 1;
	FILE *out = tmpfile(), *err = tmpfile();
	assert_int_equal(run(out, err), EX_PROTOCOL);
	fclose(out);
	fclose(err);
}

static void test_a_daemon_that_never_accepts_costs_the_timeout(void **state)
{
	(void)state;
	/* Fill the backlog of a listener nobody accepts on. */
	int queued[64], n = 0;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	for (; n < 64; n++) {
		queued[n] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (connect(queued[n], (struct sockaddr *)&sun, sizeof(sun)) < 0) {
			close(queued[n]);
			break;
		}
	}
	assert_in_range(n, 1, 63);
	alarm(10); /* without a bound, connect() would wait here for good */
	FILE *out = tmpfile(), *err = tmpfile();
	int64_t t = clock_mono_ms();
	char *argv[] = {"ping", NULL};
	assert_int_equal(ctl_run(sock_path, 1, argv, 300, out, err), EX_UNAVAILABLE);
	assert_in_range(clock_mono_ms() - t, 250, 3000);
	alarm(0);
	fclose(out);
	fclose(err);
	while (n-- > 0)
		close(queued[n]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_terminal_gets_no_escape_sequences, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_file_gets_the_bytes_as_they_are, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_line_of_kind_nul_is_a_protocol_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_a_daemon_that_never_accepts_costs_the_timeout, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
