/*
 * main: the command line. A table of subcommands, each parsing its own
 * options; bad usage exits 64 (EX_USAGE), a bad configuration 78
 * (EX_CONFIG), both before anything is started.
 */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cfg.h"
#include "base/log.h"
#include "cli/queue_cli.h"
#include "delivery/qmgr.h"
#include "smtpd/smtp_in.h"
#include "spool/spool.h"

#define EX_OK 0
#define EX_IOERR_CODE 74
#define EX_OSERR_CODE 71

static const char usage_text[] =
	"usage: mxvault serve -c FILE [-d]\n"
	"       mxvault config check -c FILE\n"
	"       mxvault queue list [--json] -c FILE\n";

static int usage(const char *why)
{
	if (why)
		fprintf(stderr, "mxvault: %s\n", why);
	fputs(usage_text, stderr);
	return EX_USAGE_CODE;
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

static int load_config(const char *path, struct cfg **cfg)
{
	return cfg_load(path, stderr, cfg) < 0 ? EX_CONFIG_CODE : EX_OK;
}

/* --- serve ------------------------------------------------------------- */

struct daemon_ctx {
	struct event_base *base;
	struct smtp_server *srv;
	struct qmgr *sched;
	struct event *drain_ev;
	int64_t deadline_ms;
};

static void check_drained(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct daemon_ctx *d = arg;
	if ((smtp_server_idle(d->srv) && qmgr_idle(d->sched)) || clock_mono_ms() >= d->deadline_ms)
		event_base_loopexit(d->base, NULL);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct daemon_ctx *d = arg;
	if (d->drain_ev)
		return;
	log_info("mxvault", "signal=%d stopping: finishing messages in progress", (int)sig);
	smtp_server_shutdown(d->srv);
	qmgr_stop(d->sched);
	d->deadline_ms = clock_mono_ms() + 10000;
	d->drain_ev = event_new(d->base, -1, EV_PERSIST, check_drained, d);
	event_add(d->drain_ev, &(struct timeval){0, 50000});
}

static int daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -errno;
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	log_open_syslog();
	return 0;
}

static int serve(const struct cfg *cfg, bool daemon)
{
	if (daemon && daemonize() < 0) {
		perror("mxvault: fork");
		return EX_OSERR_CODE;
	}
	signal(SIGPIPE, SIG_IGN);
	struct daemon_ctx d = {.base = event_base_new()};
	struct spool *sp = NULL;
	int rc = spool_open(cfg->spool, d.base, cfg->min_free_space, &sp);
	if (rc < 0) {
		log_err("mxvault", "cannot open the spool %s: %s", cfg->spool, strerror(-rc));
		event_base_free(d.base);
		return EX_IOERR_CODE;
	}
	if (smtp_server_start(cfg, d.base, sp, &d.srv) < 0) {
		spool_close(sp);
		event_base_free(d.base);
		return EX_OSERR_CODE;
	}
	rc = qmgr_start(cfg, d.base, sp, &d.sched);
	if (rc < 0) {
		log_err("mxvault", "cannot start delivery: %s", strerror(-rc));
		smtp_server_free(d.srv);
		spool_close(sp);
		event_base_free(d.base);
		return EX_OSERR_CODE;
	}
	struct event *sigterm = evsignal_new(d.base, SIGTERM, on_stop_signal, &d);
	struct event *sigint = evsignal_new(d.base, SIGINT, on_stop_signal, &d);
	event_add(sigterm, NULL);
	event_add(sigint, NULL);
	log_info("mxvault", "started hostname=%s spool=%s domains=%zu", cfg->hostname, cfg->spool, cfg->ndomains);
	event_base_dispatch(d.base);
	qmgr_stop(d.sched);
	qmgr_free(d.sched);
	smtp_server_free(d.srv);
	spool_close(sp);
	event_free(sigterm);
	event_free(sigint);
	if (d.drain_ev)
		event_free(d.drain_ev);
	event_base_free(d.base);
	log_info("mxvault", "stopped");
	return EX_OK;
}

static int cmd_serve(int argc, char **argv)
{
	struct opts o = {0};
	int rc = parse_opts(argc, argv, "cd", &o);
	struct cfg *cfg = NULL;
	if (rc == EX_OK)
		rc = load_config(o.config, &cfg);
	if (rc == EX_OK)
		rc = serve(cfg, o.daemon);
	cfg_free(cfg);
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
		rc = load_config(o.config, &cfg);
	if (rc == EX_OK)
		cfg_print(cfg, stdout);
	cfg_free(cfg);
	return rc;
}

static int cmd_queue(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "list") != 0)
		return usage("queue: expected 'list'");
	struct opts o = {0};
	int rc = parse_opts(argc - 1, argv + 1, "cj", &o);
	struct cfg *cfg = NULL;
	log_set_level(LOG_LVL_WARN);
	if (rc == EX_OK)
		rc = load_config(o.config, &cfg);
	if (rc == EX_OK)
		rc = queue_list(cfg, o.json, stdout);
	cfg_free(cfg);
	return rc;
}

static const struct {
	const char *name;
	int (*fn)(int argc, char **argv);
} commands[] = {
	{"serve", cmd_serve},
	{"config", cmd_config},
	{"queue", cmd_queue},
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
