/*
 * drill_cli: see drill_cli.h. The command is a client of two servers of
 * the running daemon: its control socket (one call that lasts the whole
 * drill and streams its steps, one short call to name the test message)
 * and its SMTP listener (the test message, smtp_send.c). Every wait is
 * bounded: the drill's own timeout is enforced by the daemon, and the
 * command waits a margin beyond it before giving up on the daemon.
 *
 * The test message goes from the null sender <>: should anything bounce
 * it, no DSN can loop back to the backup; every MTA must accept <>
 * (RFC 5321 4.5.5), and the verdict reports a refusal by itself.
 */
#include "drill_cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sysexits.h>
#include <time.h>

#include "base/cfg.h"
#include "base/log.h"
#include "cli_out.h"
#include "ctl_client.h"
#include "smtp_send.h"

#define DRILL_DEFAULT_TIMEOUT_S 300
#define DRILL_MAX_TIMEOUT_S (7 * 86400)
#define DRILL_MARGIN_MS 30000   /* beyond the timeout, the daemon's verdict is late: it is gone or stuck */
#define DRILL_MAX_STEPS 64
#define DRILL_EXIT_FAIL 1

struct drill_args {
	const char *domain, *to, *config;
	int64_t timeout_s;
	bool json;
};

struct step {
	char name[16];
	char text[1024];
	int64_t ms; /* since the start */
};

/* What the drill did, for the terminal as it happens or for one JSON object at the end. */
struct report {
	const struct drill_args *a;
	FILE *out, *err;
	int64_t t0;
	char tag[17];
	char queue_id[17];
	struct step steps[DRILL_MAX_STEPS];
	size_t nsteps, dropped;
	bool passed;
	char reason[1024];  /* why it failed */
	struct ctl_conn *cn;/* the drill's call */
};

/* --- the report -------------------------------------------------------- */

static void add_step(struct report *r, const char *name, const char *text)
{
	int64_t ms = clock_mono_ms() - r->t0;
	if (!r->a->json) {
		fprintf(r->out, "%4" PRId64 ".%03" PRId64 "s  %-9s ", ms / 1000, ms % 1000, name);
		cli_put_escaped(r->out, text, false);
		fputc('\n', r->out);
		fflush(r->out);
	}
	if (r->nsteps == DRILL_MAX_STEPS) {
		r->dropped++; /* a primary deferring it again and again: the first ones and the verdict tell the story */
		return;
	}
	struct step *s = &r->steps[r->nsteps++];
	snprintf(s->name, sizeof(s->name), "%s", name);
	snprintf(s->text, sizeof(s->text), "%s", text);
	s->ms = ms;
}

static void fail(struct report *r, const char *why)
{
	r->passed = false;
	snprintf(r->reason, sizeof(r->reason), "%s", why);
}

static void print_json(const struct report *r, int64_t ms)
{
	FILE *o = r->out;
	fputs("{\"domain\": ", o);
	cli_json_str(o, r->a->domain);
	fputs(", \"to\": ", o);
	cli_json_str(o, r->a->to);
	fprintf(o, ", \"tag\": \"%s\", \"queue_id\": ", r->tag);
	if (r->queue_id[0])
		fprintf(o, "\"%s\"", r->queue_id);
	else
		fputs("null", o);
	fputs(", \"steps\": [", o);
	for (size_t i = 0; i < r->nsteps; i++) {
		fprintf(o, "%s{\"step\": \"%s\", \"seconds\": %.3f, \"text\": ", i ? ", " : "", r->steps[i].name,
			(double)r->steps[i].ms / 1000);
		cli_json_str(o, r->steps[i].text);
		fputc('}', o);
	}
	fprintf(o, "], \"steps_left_out\": %zu, \"verdict\": \"%s\", \"reason\": ", r->dropped,
		r->passed ? "PASS" : "FAIL");
	if (r->passed)
		fputs("null", o);
	else
		cli_json_str(o, r->reason);
	fprintf(o, ", \"seconds\": %.3f}\n", (double)ms / 1000);
}

static void print_verdict(const struct report *r)
{
	int64_t ms = clock_mono_ms() - r->t0;
	if (r->a->json) {
		print_json(r, ms);
		return;
	}
	fprintf(r->out, "verdict: %s (%" PRId64 ".%03" PRId64 " s)%s", r->passed ? "PASS" : "FAIL", ms / 1000, ms % 1000,
		r->passed ? "" : ": ");
	if (!r->passed)
		cli_put_escaped(r->out, r->reason, false);
	fputc('\n', r->out);
}

/* --- the daemon's reply stream ------------------------------------------ */

/*
 * Reads the drill's call up to the step named until (NULL: to its end).
 * 1 when that step came, 0 at the call's exit line (*exit set), -1 when
 * the daemon is gone or late (r says why).
 */
static int read_steps(struct report *r, const char *until, int *exit_code)
{
	int64_t deadline = r->t0 + r->a->timeout_s * 1000 + DRILL_MARGIN_MS;
	for (;;) {
		char kind;
		const char *text;
		size_t len;
		int64_t left = deadline - clock_mono_ms();
		int rc = left > 0 ? ctl_read(r->cn, (int)(left > 60000 ? 60000 : left), &kind, &text, &len) : -ETIMEDOUT;
		if (rc == -ETIMEDOUT && left > 60000)
			continue;
		if (rc <= 0) {
			fail(r, rc == -ETIMEDOUT ? "the daemon did not end the drill in time"
						 : "the daemon's reply ended early (did it stop?)");
			return -1;
		}
		if (kind == 'x') {
			*exit_code = atoi(text);
			return 0;
		}
		if (kind == 'e') {
			fprintf(r->err, "%s\n", text);
			continue;
		}
		char name[16];
		size_t n = strcspn(text, " ");
		snprintf(name, sizeof(name), "%.*s", (int)(n < sizeof(name) ? n : sizeof(name) - 1), text);
		const char *rest = text[n] ? text + n + 1 : "";
		if (strcmp(name, "verdict") == 0) {
			r->passed = strcmp(rest, "PASS") == 0;
			if (!r->passed)
				snprintf(r->reason, sizeof(r->reason), "%s", strncmp(rest, "FAIL: ", 6) == 0 ? rest + 6 : rest);
			continue;
		}
		add_step(r, name, rest);
		if (until && strcmp(name, until) == 0)
			return 1;
	}
}

/* "drill queued TAG ID": a short call of its own; its errors go to stderr. */
static int tell_queued(struct report *r, const char *path)
{
	char *argv[] = {"drill", "queued", r->tag, r->queue_id};
	FILE *sink = r->a->json ? r->err : r->out; /* nothing comes on its stdout; keep JSON output clean anyway */
	return ctl_run(path, 4, argv, 10000, sink, r->err);
}

/* --- the test message -------------------------------------------------- */

static void make_message(const struct report *r, const struct cfg *cfg, struct buf *msg)
{
	char date[64];
	time_t now = time(NULL);
	struct tm tm;
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", localtime_r(&now, &tm));
	buf_printf(msg,
		   "From: mxvault drill <postmaster@%s>\r\n"
		   "To: <%s>\r\n"
		   "Subject: mxvault failover drill %s\r\n"
		   "Date: %s\r\n"
		   "Message-ID: <drill.%s@%s>\r\n"
		   "X-Mxvault-Drill: %s\r\n"
		   "Auto-Submitted: auto-generated\r\n"
		   "MIME-Version: 1.0\r\n"
		   "Content-Type: text/plain; charset=us-ascii\r\n"
		   "\r\n"
		   "This is a failover drill of the backup MX %s for %s:\r\n"
		   "the message was held at the backup, then handed to the primary.\r\n"
		   "It needs no action and may be deleted.\r\n",
		   cfg->hostname, r->a->to, r->tag, date, r->tag, cfg->hostname, r->tag, cfg->hostname, r->a->domain);
}

/* The daemon's first listen address; a wildcard one is reached on loopback. */
static void listen_addr(const struct cfg *cfg, struct sockaddr_storage *ss, socklen_t *len)
{
	*ss = cfg->listen[0].ss;
	*len = cfg->listen[0].sslen;
	if (ss->ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		if (sin->sin_addr.s_addr == htonl(INADDR_ANY))
			sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	} else if (ss->ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		if (IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr))
			sin6->sin6_addr = in6addr_loopback;
	}
}

/* Sends the test message; true when the backup queued it (r->queue_id set). */
static bool send_message(struct report *r, const struct cfg *cfg)
{
	struct buf msg = {0};
	make_message(r, cfg, &msg);
	struct sockaddr_storage ss;
	socklen_t sslen;
	listen_addr(cfg, &ss, &sslen);
	struct smtp_send_req req = {
		.addr = (struct sockaddr *)&ss, .addrlen = sslen, .helo = cfg->hostname, .sender = "",
		.rcpt = r->a->to, .data = buf_cstr(&msg), .deadline_ms = r->t0 + r->a->timeout_s * 1000,
	};
	struct smtp_send_result res;
	int rc = smtp_send(&req, &res);
	buf_free(&msg);
	char text[1100];
	const char *id = strstr(res.reply, "queued as ");
	if (rc == 0 && id && strspn(id + 10, "0123456789abcdef") == 16) {
		snprintf(r->queue_id, sizeof(r->queue_id), "%.16s", id + 10);
		snprintf(text, sizeof(text), "%s: %s", cfg->listen[0].text, res.reply);
		add_step(r, "sent", text);
		return true;
	}
	snprintf(text, sizeof(text), "%s: at %s: %s", cfg->listen[0].text, res.stage,
		 res.reply[0] ? res.reply : "no reply");
	add_step(r, "refused", text);
	fail(r, rc == 0 ? "the backup's reply named no queue id" : "the backup did not take the test message");
	return false;
}

/* --- the drill --------------------------------------------------------- */

static int connect_daemon(struct report *r, const char *path)
{
	int rc = ctl_connect(path, 10000, &r->cn);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		fprintf(r->err, "mxvault: the daemon is not running (nothing answers on %s)\n", path);
		return CTL_EXIT_NOT_RUNNING;
	}
	if (rc < 0) {
		fprintf(r->err, "mxvault: cannot reach the daemon on %s: %s\n", path, strerror(-rc));
		return rc == -EACCES ? EX_NOPERM : EX_UNAVAILABLE;
	}
	char secs[24];
	snprintf(secs, sizeof(secs), "%" PRId64, r->a->timeout_s);
	char *argv[] = {"drill", "start", (char *)r->a->domain, r->tag, secs};
	if (ctl_send(r->cn, 5, argv) < 0) {
		fprintf(r->err, "mxvault: cannot send to the daemon on %s\n", path);
		return EX_UNAVAILABLE;
	}
	return EX_OK;
}

/* The whole drill once the daemon answers; the exit status. */
static int run_drill(struct report *r, const struct cfg *cfg)
{
	int code = DRILL_EXIT_FAIL;
	int rc = read_steps(r, "hold", &code);
	if (rc == 0)
		return code; /* refused at the start (busy, unknown domain): it said why on stderr */
	if (rc > 0 && send_message(r, cfg)) {
		if (tell_queued(r, cfg->control_socket) != EX_OK)
			fprintf(r->err, "mxvault: the daemon did not take the queue id\n");
		rc = read_steps(r, NULL, &code);
	}
	if (rc != 0)
		code = DRILL_EXIT_FAIL; /* the drill's call is closed below: the daemon lets go of the hold */
	print_verdict(r);
	return code;
}

static void make_tag(char tag[17])
{
	uint8_t b[8] = {0};
	if (getrandom(b, sizeof(b), 0) != sizeof(b)) {
		uint64_t t = (uint64_t)clock_mono_ms() ^ ((uint64_t)time(NULL) << 20);
		memcpy(b, &t, sizeof(b)); /* unique enough to tell drills apart: it is a tag, not a secret */
	}
	for (size_t i = 0; i < sizeof(b); i++)
		snprintf(tag + 2 * i, 3, "%02x", b[i]);
}

/* --- the command line -------------------------------------------------- */

static int usage(const char *why)
{
	fprintf(stderr, "mxvault: %s\nusage: mxvault drill DOMAIN --to ADDRESS -c FILE [--timeout DURATION] [--json]\n",
		why);
	return EX_USAGE;
}

static int parse_args(int argc, char **argv, struct drill_args *a)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"to", required_argument, NULL, 't'},
		{"timeout", required_argument, NULL, 'T'}, {"json", no_argument, NULL, 'j'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	optind = 1;
	opterr = 0;
	a->timeout_s = DRILL_DEFAULT_TIMEOUT_S;
	while ((ch = getopt_long(argc, argv, ":c:", longopts, NULL)) != -1) {
		if (ch == 'c')
			a->config = optarg;
		else if (ch == 't')
			a->to = optarg;
		else if (ch == 'j')
			a->json = true;
		else if (ch == 'T' && (parse_duration(optarg, &a->timeout_s) < 0 || a->timeout_s < 1 ||
				       a->timeout_s > DRILL_MAX_TIMEOUT_S))
			return usage("--timeout: a duration from 1s to 7d, like 90s or 5m");
		else if (ch == ':' || ch == '?')
			return usage("bad option");
	}
	if (optind + 1 != argc)
		return usage("expected one DOMAIN");
	a->domain = argv[optind];
	if (!a->config || !a->to)
		return usage("missing -c FILE or --to ADDRESS");
	return EX_OK;
}

/* The address must be one of DOMAIN's: the drill tests that domain's way to its primary. */
static int check_args(const struct drill_args *a, const struct cfg *cfg)
{
	const char *at = strrchr(a->to, '@');
	if (!cfg_find_domain(cfg, a->domain)) {
		fprintf(stderr, "mxvault: %s is not a backed-up domain in %s\n", a->domain, a->config);
		return EX_USAGE;
	}
	if (!at || at == a->to || strlen(a->to) > 254 || !ascii_ieq(at + 1, strlen(at + 1), a->domain, strlen(a->domain)) ||
	    strpbrk(a->to, " <>\"\\\r\n\t") != NULL) {
		fprintf(stderr, "mxvault: --to must be a plain address at %s\n", a->domain);
		return EX_USAGE;
	}
	return EX_OK;
}

int drill_main(int argc, char **argv)
{
	struct drill_args a = {0};
	int rc = parse_args(argc, argv, &a);
	if (rc != EX_OK)
		return rc;
	log_set_level(LOG_LVL_WARN);
	struct cfg *cfg = NULL;
	if (cfg_load_flags(a.config, stderr, CFG_LOAD_NO_USER, &cfg) < 0)
		return EX_CONFIG;
	rc = check_args(&a, cfg);
	struct report *r = xcalloc(1, sizeof(*r));
	*r = (struct report){.a = &a, .out = stdout, .err = stderr, .t0 = clock_mono_ms()};
	make_tag(r->tag);
	if (rc == EX_OK)
		rc = connect_daemon(r, cfg->control_socket);
	if (rc == EX_OK)
		rc = run_drill(r, cfg);
	ctl_disconnect(r->cn);
	free(r);
	cfg_unref(cfg);
	return rc;
}
