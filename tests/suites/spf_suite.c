/*
 * spf_suite: the SPF suites' driver. Runs check_host() (auth/spf.c) on the
 * real resolver code against a DNS server, one check per input line:
 *   spf_suite RESOLVER [TIMEOUT_MS] < lines
 * each line "IP<TAB>HELO<TAB>MAILFROM<TAB>RECEIVER"; an empty MAILFROM
 * checks the HELO identity with postmaster@HELO (RFC 7208 2.3, 2.4).
 * Prints "RESULT<TAB>EXPLANATION" per line (explanation "-" when none).
 * A line "iprev<TAB>IP" runs iprev (auth/iprev.c) instead: "RESULT<TAB>NAME".
 * Used by tests/suites/run_spf.py.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/iprev.h"
#include "auth/spf.h"
#include "base/dns.h"

struct run {
	struct event_base *base;
	bool done;
};

static void on_result(void *arg, enum spf_result r, const char *exp)
{
	struct run *run = arg;
	printf("%s\t%s\n", spf_result_str(r), exp ? exp : "-");
	fflush(stdout);
	run->done = true;
	event_base_loopbreak(run->base);
}

static void on_iprev(void *arg, enum iprev_result r, const char *name)
{
	struct run *run = arg;
	printf("%s\t%s\n", iprev_result_str(r), name ? name : "-");
	fflush(stdout);
	run->done = true;
	event_base_loopbreak(run->base);
}

static int parse_ip(const char *s, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, s, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return 0;
	}
	return -1;
}

static void check_line(struct event_base *base, struct dns *dns, char *line)
{
	char *field[4] = {0};
	char *p = line;
	for (int i = 0; i < 4; i++) {
		field[i] = p;
		p = p ? strchr(p, '\t') : NULL;
		if (p)
			*p++ = '\0';
	}
	struct spf_request rq = {0};
	struct run run = {.base = base};
	if (strcmp(field[0], "iprev") == 0 && field[1] && parse_ip(field[1], &rq.ip) == 0) {
		iprev_check_start(dns, (const struct sockaddr *)&rq.ip, on_iprev, &run);
		while (!run.done)
			event_base_loop(base, EVLOOP_ONCE);
		return;
	}
	if (!field[3] || parse_ip(field[0], &rq.ip) < 0) {
		printf("badinput\t-\n");
		return;
	}
	const char *at = strrchr(field[2], '@');
	rq.helo = field[1];
	rq.receiver = field[3];
	rq.sender = field[2][0] ? field[2] : NULL;
	rq.domain = field[2][0] ? (at ? at + 1 : field[2]) : field[1];
	spf_check_start(dns, &rq, on_result, &run);
	while (!run.done)
		event_base_loop(base, EVLOOP_ONCE);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: spf_suite RESOLVER [TIMEOUT_MS] < lines\n");
		return 2;
	}
	struct event_base *base = event_base_new();
	struct dns *dns = NULL;
	if (!base || dns_open(base, argv[1], argc > 2 ? atoi(argv[2]) : 1000, &dns) < 0) {
		fprintf(stderr, "spf_suite: cannot open the resolver %s\n", argv[1]);
		return 2;
	}
	char line[4096];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\r\n")] = '\0';
		check_line(base, dns, line);
	}
	dns_free(dns);
	event_base_free(base);
	return 0;
}
