/*
 * dkim_verify: the suite driver of the DKIM verifier. Reads a message (CRLF
 * already), feeds it to dkim_feed in random-sized chunks (seeded, so a
 * failure can be replayed), asks the resolver given for keys, and prints
 * one line per signature: "RESULT d=... s=... a=... b=... why=...", or
 * "none" when there is no signature.
 * Usage: dkim_verify MESSAGE RESOLVER NOW [SEED]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "auth/dkim.h"
#include "base/dns.h"

struct run {
	struct event_base *base;
	bool done;
};

static void on_done(void *arg, const struct dkim_sig_result *r, size_t n)
{
	struct run *run = arg;
	if (n == 0)
		printf("none\n");
	for (size_t k = 0; k < n; k++)
		printf("%s d=%s s=%s a=%s b=%s why=%s\n", dkim_result_str(r[k].result), r[k].domain, r[k].selector,
		       r[k].algorithm, r[k].b_prefix, r[k].why ? r[k].why : "-");
	run->done = true;
	event_base_loopbreak(run->base);
}

static unsigned char *slurp(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	struct buf b = { 0 };
	unsigned char tmp[65536];
	size_t got;
	while ((got = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(&b, tmp, got);
	fclose(f);
	*n = b.len;
	return b.data ? b.data : xmalloc(1);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: dkim_verify MESSAGE RESOLVER NOW [SEED]\n");
		return 2;
	}
	size_t n;
	unsigned char *msg = slurp(argv[1], &n);
	if (!msg) {
		perror(argv[1]);
		return 2;
	}
	srand(argc > 4 ? (unsigned)atoi(argv[4]) : 1);
	struct run run = { event_base_new(), false };
	struct dns *dns;
	if (!run.base || dns_open(run.base, argv[2], 1000, &dns)) {
		fprintf(stderr, "dkim_verify: cannot open the resolver %s\n", argv[2]);
		return 2;
	}
	struct dkim_verify *v = dkim_verify_new(run.base, dns, strtoll(argv[3], NULL, 10));
	for (size_t off = 0; off < n;) {
		size_t chunk = 1 + (size_t)rand() % (rand() % 4 ? 16 : 4096);
		if (chunk > n - off)
			chunk = n - off;
		dkim_feed(v, msg + off, chunk);
		off += chunk;
	}
	dkim_finish(v, on_done, &run);
	event_base_dispatch(run.base);
	dkim_free(v);
	dns_free(dns);
	event_base_free(run.base);
	free(msg);
	return run.done ? 0 : 1;
}
