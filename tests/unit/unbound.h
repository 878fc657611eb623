/*
 * unbound.h: a real resolver for the unit tests that need DNS answers
 * (test_dns.c, test_dmarc.c): unbound on a free loopback port, serving what
 * the test writes into its configuration, and the loop run until a flag is
 * set or a deadline passes. Header-only, like spool_v1.h: each test file
 * includes it once.
 */
#ifndef MXV_TEST_UNBOUND_H
#define MXV_TEST_UNBOUND_H

#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/dns.h"

#define UNBOUND "/usr/sbin/unbound"

struct unbound {
	char dir[64];   /* its directory, configuration and log */
	char addr[32];  /* "127.0.0.1:PORT" */
	uint16_t port;
	pid_t pid;
};

/* Writes the test's lines of the server: clause (local-zone, local-data), indented. */
typedef void unbound_zone_fn(FILE *fp);

static void unbound_on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	*(bool *)arg = true;
}

/* Runs the loop until *flag != 0 or ms pass; returns whether *flag is set. */
static bool run_until(struct event_base *base, const int *flag, int ms)
{
	bool expired = false;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct event *t = evtimer_new(base, unbound_on_deadline, &expired);
	evtimer_add(t, &tv);
	while (!*flag && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(t);
	return *flag != 0;
}

/*
 * A port free for both UDP and TCP on 127.0.0.1, below the ephemeral range:
 * a port the kernel handed out could be handed again to our own c-ares
 * socket before unbound binds it.
 */
static uint16_t unbound_free_port(void)
{
	static unsigned seed;
	if (!seed)
		seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	for (;;) {
		uint16_t port = (uint16_t)(20000 + rand_r(&seed) % 12000);
		struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int u = socket(AF_INET, SOCK_DGRAM, 0), t = socket(AF_INET, SOCK_STREAM, 0);
		if (u < 0 || t < 0)
			abort();
		bool ok = bind(u, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
			  bind(t, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		close(u);
		close(t);
		if (ok)
			return port;
	}
}

static int unbound_write_conf(const struct unbound *u, const char *path, unbound_zone_fn *zone)
{
	FILE *fp = fopen(path, "w");
	if (!fp)
		return -1;
	fprintf(fp, "server:\n  interface: 127.0.0.1\n  port: %u\n  do-daemonize: no\n"
		    "  username: \"\"\n  chroot: \"\"\n  directory: \"%s\"\n  pidfile: \"\"\n"
		    "  use-syslog: no\n  logfile: \"\"\n  verbosity: 0\n  num-threads: 1\n"
		    "  do-ip6: no\n  do-not-query-localhost: no\n  rrset-roundrobin: no\n"
		    "  access-control: 127.0.0.0/8 allow\n  module-config: \"iterator\"\n",
		u->port, u->dir);
	zone(fp);
	return fclose(fp);
}

static void unbound_on_probe(void *arg, enum dns_status st, const struct dns_addr *a, size_t n)
{
	(void)a;
	(void)n;
	*(int *)arg = st == DNS_OK ? 1 : -1;
}

/* The server is up when our own lookup of probe (an A record) gets an answer; 10 s deadline. */
static bool unbound_answers(struct unbound *u, const char *probe)
{
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	do {
		struct event_base *base = event_base_new();
		struct dns *d;
		int got = 0;
		if (dns_open(base, u->addr, 200, &d) < 0)
			abort();
		dns_lookup_addrs(d, probe, 25, unbound_on_probe, &got);
		run_until(base, &got, 1000);
		dns_free(d);
		event_base_free(base);
		if (got == 1)
			return true;
		if (waitpid(u->pid, NULL, WNOHANG) == u->pid) {
			u->pid = -1;
			return false;
		}
		usleep(50 * 1000);
		clock_gettime(CLOCK_MONOTONIC, &now);
	} while (now.tv_sec - start.tv_sec < 10);
	return false;
}

/*
 * Starts unbound in a new directory /tmp/mxv-NAME-XXXXXX with the zone the
 * test writes; probe must be a name with an A record in it. 0, or -1 with
 * unbound's log on stderr.
 */
static int unbound_start(struct unbound *u, const char *name, unbound_zone_fn *zone, const char *probe)
{
	char conf[128], log[128];
	u->pid = -1;
	if (access(UNBOUND, X_OK) < 0) {
		fprintf(stderr, "%s: %s is missing\n", name, UNBOUND);
		return -1;
	}
	snprintf(u->dir, sizeof(u->dir), "/tmp/mxv-%s-XXXXXX", name);
	if (!mkdtemp(u->dir))
		return -1;
	snprintf(conf, sizeof(conf), "%s/unbound.conf", u->dir);
	snprintf(log, sizeof(log), "%s/unbound.log", u->dir);
	/* The port can be taken between our check and unbound's bind: retry. */
	for (int attempt = 0; attempt < 5; attempt++) {
		u->port = unbound_free_port();
		snprintf(u->addr, sizeof(u->addr), "127.0.0.1:%u", u->port);
		if (unbound_write_conf(u, conf, zone) < 0)
			return -1;
		u->pid = fork();
		if (u->pid == 0) {
			if (!freopen(log, "w", stderr) || !freopen("/dev/null", "r", stdin))
				_exit(127);
			execl(UNBOUND, "unbound", "-d", "-c", conf, (char *)NULL);
			_exit(127);
		}
		if (unbound_answers(u, probe))
			return 0;
		if (u->pid > 0)
			break; /* running but silent: retrying will not help */
	}
	char cmd[160];
	fprintf(stderr, "%s: unbound did not answer; its log:\n", name);
	snprintf(cmd, sizeof(cmd), "cat %s >&2", log);
	if (system(cmd) != 0)
		fprintf(stderr, "%s: no log\n", name);
	return -1;
}

/* Stops the server and removes its directory: 0 or -1. */
static int unbound_stop(struct unbound *u)
{
	if (u->pid > 0) {
		kill(u->pid, SIGTERM);
		waitpid(u->pid, NULL, 0);
		u->pid = -1;
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", u->dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Per test: a loop and a resolver asking u (dns_open's timeout 1 s). */
struct fixture {
	struct event_base *base;
	struct dns *d;
};

static int unbound_fixture_setup(void **state, const struct unbound *u)
{
	struct fixture *f = calloc(1, sizeof(*f));
	f->base = event_base_new();
	*state = f;
	return dns_open(f->base, u->addr, 1000, &f->d);
}

/* A test that freed f->d itself sets it to NULL (dns_free(NULL) is a no-op). */
static int unbound_fixture_teardown(void **state)
{
	struct fixture *f = *state;
	dns_free(f->d);
	event_base_free(f->base);
	free(f);
	return 0;
}

#endif
