/*
 * queue_cmd: see queue_cmd.h. A table of verbs, each with how many words it
 * takes and whether it reads the spool or asks the daemon. Options may come
 * anywhere after the verb: -c FILE (--config), --json, --body (show only).
 */
#include "queue_cmd.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include "base/cfg.h"
#include "base/log.h"
#include "ctl_client.h"
#include "queue_show.h"

/* A state-changing command waits this long for each line of the daemon's answer (a durable write). */
#define QUEUE_CTL_TIMEOUT_MS 30000

struct queue_args {
	const char *config;
	bool json, body;
	char *words[4]; /* after the verb */
	int nwords;
};

enum verb_kind { READS_SPOOL, ASKS_DAEMON };

static const struct verb {
	const char *name;
	int min, max;
	enum verb_kind kind;
} verbs[] = {
	{"show", 1, 1, READS_SPOOL},   {"export", 1, 1, READS_SPOOL}, {"hold", 1, 1, ASKS_DAEMON},
	{"release", 1, 1, ASKS_DAEMON}, {"delete", 1, 1, ASKS_DAEMON}, {"flush", 0, 1, ASKS_DAEMON},
	{"extend", 2, 2, ASKS_DAEMON},
};

static int usage(const char *usage_text, const char *why)
{
	fprintf(stderr, "mxvault: %s\n%s", why, usage_text);
	return EX_USAGE;
}

/* 0, or a message for usage. */
static const char *parse_args(int argc, char **argv, const struct verb *v, struct queue_args *a)
{
	for (int i = 2; i < argc; i++) {
		const char *s = argv[i];
		if (strcmp(s, "-c") == 0 || strcmp(s, "--config") == 0) {
			if (++i == argc)
				return "missing FILE after -c";
			a->config = argv[i];
		} else if (strcmp(s, "--json") == 0) {
			a->json = true;
		} else if (strcmp(s, "--body") == 0 && strcmp(v->name, "show") == 0) {
			a->body = true;
		} else if (s[0] == '-' && s[1] != '\0') {
			return "bad option";
		} else if (a->nwords == v->max) {
			return "unexpected argument";
		} else {
			a->words[a->nwords++] = argv[i];
		}
	}
	if (a->nwords < v->min)
		return "missing argument";
	if (!a->config)
		return "missing -c FILE";
	return NULL;
}

/* The request the daemon's handler (src/queue_ctl.c) reads: queue VERB WORDS... [--json]. */
static int ask_daemon(const struct cfg *cfg, const struct verb *v, const struct queue_args *a)
{
	char *req[8];
	int n = 0;
	req[n++] = "queue";
	req[n++] = (char *)v->name;
	for (int i = 0; i < a->nwords; i++)
		req[n++] = a->words[i];
	if (a->json)
		req[n++] = "--json";
	return ctl_run(cfg->control_socket, n, req, QUEUE_CTL_TIMEOUT_MS, stdout, stderr);
}

int queue_cmd(int argc, char **argv, const char *usage_text)
{
	const struct verb *v = NULL;
	for (size_t i = 0; i < ARRAY_LEN(verbs) && argc >= 2; i++)
		if (strcmp(argv[1], verbs[i].name) == 0)
			v = &verbs[i];
	if (!v)
		return usage(usage_text, "queue: expected list, show, export, hold, release, delete, flush or extend");
	struct queue_args a = {0};
	const char *why = parse_args(argc, argv, v, &a);
	if (why)
		return usage(usage_text, why);
	log_set_level(LOG_LVL_WARN);
	struct cfg *cfg = NULL;
	if (cfg_load_flags(a.config, stderr, CFG_LOAD_NO_USER, &cfg) < 0)
		return EX_CONFIG;
	int rc;
	if (v->kind == ASKS_DAEMON)
		rc = ask_daemon(cfg, v, &a);
	else if (strcmp(v->name, "show") == 0)
		rc = queue_show(cfg, a.words[0], a.json, a.body, stdout);
	else
		rc = queue_export(cfg, a.words[0], a.json, stdout);
	cfg_unref(cfg);
	return rc;
}
