/*
 * spf_suite: the SPF suites' driver. Runs check_host() (auth/spf.c) on the
 * real resolver code against a DNS server, one check per input line:
 *   spf_suite RESOLVER [TIMEOUT_MS] < lines
 * each line "IP<TAB>HELO<TAB>MAILFROM<TAB>RECEIVER"; an empty MAILFROM
 * checks the HELO identity with postmaster@HELO (RFC 7208 2.3, 2.4).
 * Prints "RESULT<TAB>EXPLANATION" per line (explanation "-" when none).
 * A line may start with a mode:
 * - "iprev<TAB>IP": iprev (auth/iprev.c) instead: "RESULT<TAB>NAME";
 * - "cancel<TAB>...": the check is started and cancelled at once, then run
 *   again to the end (the cancelled one's answer arrives meanwhile): prints
 *   "cancelled<TAB>" first if the cancelled callback never ran;
 * - "dnsfree<TAB>...": the check runs on a resolver of its own, freed while
 *   the check waits: prints what dns_free made the check deliver.
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

static const char *resolver;

static void on_result(void *arg, enum spf_result r, const char *exp)
{
	struct run *run = arg;
	printf("%s\t%s\n", spf_result_str(r), exp ? exp : "-");
	run->done = true;
}

static void on_iprev(void *arg, enum iprev_result r, const char *name)
{
	struct run *run = arg;
	printf("%s\t%s\n", iprev_result_str(r), name ? name : "-");
	run->done = true;
}

static void on_never(void *arg, enum spf_result r, const char *exp)
{
	(void)r;
	(void)exp;
	*(bool *)arg = true;
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

static void run_until_done(struct event_base *base, const struct run *run)
{
	while (!run->done)
		event_base_loop(base, EVLOOP_ONCE);
}

static void wait_ms(struct event_base *base, int ms)
{
	struct timeval tv = {0, ms * 1000};
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

/* The resolver is freed under a waiting check: the check must deliver (temperror) from inside dns_free. */
static void check_dns_free(struct event_base *base, const struct spf_request *rq)
{
	struct dns *d2 = NULL;
	struct run run = {.base = base};
	if (dns_open(base, resolver, 1000, &d2) < 0) {
		printf("badinput\t-\n");
		return;
	}
	spf_check_start(d2, rq, on_result, &run);
	wait_ms(base, 20); /* the record lookup is on the wire */
	dns_free(d2);
	if (!run.done)
		printf("none-yet\t-\n");
}

static void check_line(struct event_base *base, struct dns *dns, char *line)
{
	enum { PLAIN, IPREV, CANCEL, DNSFREE } mode = PLAIN;
	static const char *const modes[] = {"", "iprev\t", "cancel\t", "dnsfree\t"};
	for (int m = IPREV; m <= DNSFREE; m++)
		if (strncmp(line, modes[m], strlen(modes[m])) == 0) {
			mode = m;
			line += strlen(modes[m]);
		}
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
	if (parse_ip(field[0], &rq.ip) < 0 || (mode != IPREV && !field[3])) {
		printf("badinput\t-\n");
		return;
	}
	if (mode == IPREV) {
		iprev_check_start(dns, (const struct sockaddr *)&rq.ip, on_iprev, &run);
		run_until_done(base, &run);
		return;
	}
	const char *at = strrchr(field[2], '@');
	rq.helo = field[1];
	rq.receiver = field[3];
	rq.sender = field[2][0] ? field[2] : NULL;
	rq.domain = field[2][0] ? (at ? at + 1 : field[2]) : field[1];
	if (mode == DNSFREE) {
		check_dns_free(base, &rq);
		return;
	}
	if (mode == CANCEL) {
		bool ran = false;
		spf_check_cancel(spf_check_start(dns, &rq, on_never, &ran));
		wait_ms(base, 5);
		if (!ran)
			printf("cancelled\t");
	}
	spf_check_start(dns, &rq, on_result, &run);
	run_until_done(base, &run);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: spf_suite RESOLVER [TIMEOUT_MS] < lines\n");
		return 2;
	}
	resolver = argv[1];
	struct event_base *base = event_base_new();
	struct dns *dns = NULL;
	if (!base || dns_open(base, resolver, argc > 2 ? atoi(argv[2]) : 1000, &dns) < 0) {
		fprintf(stderr, "spf_suite: cannot open the resolver %s\n", resolver);
		return 2;
	}
	char line[4096];
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\r\n")] = '\0';
		check_line(base, dns, line);
		fflush(stdout);
	}
	dns_free(dns);
	event_base_free(base);
	return 0;
}
