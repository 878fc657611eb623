/*
 * main: the command line. A table of subcommands, each parsing its own
 * options; bad usage exits 64 (EX_USAGE), a bad configuration 78
 * (EX_CONFIG), both before anything is started.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "base/cfg.h"
#include "base/log.h"
#include "cli/ctl_client.h"
#include "cli/check_cli.h"
#include "cli/drill_cli.h"
#include "cli/queue_cli.h"
#include "cli/queue_cmd.h"
#include "daemon.h"


static const char usage_text[] =
	"usage: mxvault serve -c FILE [-d]\n"
	"       mxvault config check -c FILE\n"
	"       mxvault queue list [--json] -c FILE\n"
	"       mxvault queue show ID [--body] [--json] -c FILE\n"
	"       mxvault queue export DIR [--json] -c FILE\n"
	"       mxvault queue hold|release ID|DOMAIN [--json] -c FILE\n"
	"       mxvault queue delete ID [--json] -c FILE\n"
	"       mxvault queue flush [DOMAIN] [--json] -c FILE\n"
	"       mxvault queue extend ID|DOMAIN DURATION [--json] -c FILE\n"
	"       mxvault reload -c FILE\n"
	"       mxvault check DOMAIN [--probe] [--json] [-c FILE] [--resolver IP[:PORT]] [--port N] [--timeout SECS]\n"
	"       mxvault drill DOMAIN --to ADDRESS -c FILE [--timeout DURATION] [--json]\n";

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "mxvault: %s\n", why);
	fputs(usage_text, stderr);
	return EX_USAGE;
}

struct opts {
	const char *config;
	bool daemon;
	bool json;
};

/* Parses -c FILE, -d, --json; which are allowed is given by allow ("cdj"). */
static int parse_opts(int argc, char **argv, const char *allow, struct opts *o)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"json", no_argument, NULL, 'j'},
		{"daemon", no_argument, NULL, 'd'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	optind = 1;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:d", longopts, NULL)) != -1) {
		if (ch == ':' || ch == '?' || !strchr(allow, ch)) {
			char why[128];
			snprintf(why, sizeof(why), "bad option '%s'", argv[optind - 1]);
			return usage(why);
		}
		if (ch == 'c')
			o->config = optarg;
		else if (ch == 'd')
			o->daemon = true;
		else if (ch == 'j')
			o->json = true;
	}
	if (optind < argc)
		return usage("unexpected argument");
	if (!o->config)
		return usage("missing -c FILE");
	return EX_OK;
}

static int load_config(const char *path, unsigned flags, struct cfg **cfg)
{
	return cfg_load_flags(path, stderr, flags, cfg) < 0 ? EX_CONFIG : EX_OK;
}

/* --- serve ------------------------------------------------------------- */

static int cmd_serve(int argc, char **argv)
{
	struct opts o = {0};
	int rc = parse_opts(argc, argv, "cd", &o);
	struct cfg *cfg = NULL;
	if (rc == EX_OK)
		rc = load_config(o.config, CFG_LOAD_WARN, &cfg);
	if (rc == EX_OK)
		rc = daemon_run(cfg, o.daemon);
	cfg_unref(cfg);
	return rc;
}

/* --- config and queue -------------------------------------------------- */

static int cmd_config(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "check") != 0)
		return usage("config: expected 'check'");
	struct opts o = {0};
	int rc = parse_opts(argc - 1, argv + 1, "c", &o);
	struct cfg *cfg = NULL;
	if (rc == EX_OK)
		rc = load_config(o.config, CFG_LOAD_WARN, &cfg);
	if (rc == EX_OK)
		cfg_print(cfg, stdout);
	cfg_unref(cfg);
	return rc;
}

static int cmd_queue(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "list") != 0)
		return queue_cmd(argc, argv, usage_text);
	if (argc < 2)
		return usage("queue: expected a verb");
	struct opts o = {0};
	int rc = parse_opts(argc - 1, argv + 1, "cj", &o);
	struct cfg *cfg = NULL;
	log_set_level(LOG_LVL_WARN);
	if (rc == EX_OK)
		rc = load_config(o.config, CFG_LOAD_NO_USER, &cfg);
	if (rc == EX_OK)
		rc = queue_list(cfg, o.json, stdout);
	cfg_unref(cfg);
	return rc;
}

/* --- reload ------------------------------------------------------------- */

/* A reload reads a large recipients file on the daemon's loop: allow it time. */
#define RELOAD_TIMEOUT_MS 120000

/*
 * Asks the running daemon to reload (the same as SIGHUP) and prints its
 * report. The file is read here first, for the control socket's path: a
 * file that does not load is reported here (78) and not sent, since the
 * daemon would refuse it for the same reasons.
 */
static int cmd_reload(int argc, char **argv)
{
	struct opts o = {0};
	int rc = parse_opts(argc, argv, "c", &o);
	struct cfg *cfg = NULL;
	log_set_level(LOG_LVL_WARN);
	if (rc == EX_OK)
		rc = load_config(o.config, CFG_LOAD_NO_SYSTEM, &cfg);
	if (rc == EX_CONFIG)
		fprintf(stderr, "mxvault: %s does not load: not sent to the daemon\n", o.config);
	if (rc == EX_OK) {
		char *words[] = {"reload"};
		rc = ctl_run(cfg->control_socket, 1, words, RELOAD_TIMEOUT_MS, stdout, stderr);
	}
	cfg_unref(cfg);
	return rc;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{"serve", cmd_serve},
	{"config", cmd_config},
	{"queue", cmd_queue},
	{"reload", cmd_reload},
	{"check", check_cli},
	{"drill", drill_main},
};

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage(NULL);
	for (size_t i = 0; i < ARRAY_LEN(commands); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].fn(argc - 1, argv + 1);
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
		fputs(usage_text, stdout);
		return EX_OK;
	}
	return usage("unknown command");
}
