/*
 * check_cli: see check_cli.h. Everything printed that came from DNS or a
 * peer goes through cli_out's escaping. JSON: {"domain", "backup_assumed",
 * "mx": [{"host", "preference", "ttl", "role", "addresses"}], "findings":
 * [{"id", "severity", "host", "message", "fix"}], "exit"}; field names are
 * a stable interface for scripts.
 */
#include "check_cli.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include "base/cfg.h"
#include "base/log.h"
#include "check/check.h"
#include "cli_out.h"

static const char *const role_name[] = {"other", "primary", "backup"};

static const char check_usage[] =
	"usage: mxvault check DOMAIN [--probe] [--json] [-c FILE] [--resolver IP[:PORT]] [--port N] [--timeout SECS]\n";

static int bad_usage(const char *why, const char *arg)
{
	fprintf(stderr, "mxvault: check: %s%s%s\n%s", why, arg ? " " : "", arg ? arg : "", check_usage);
	return EX_USAGE;
}

static void addr_text(const struct dns_addr *a, char *out, size_t n)
{
	const void *ip = a->ss.ss_family == AF_INET6 ? (const void *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr
						     : (const void *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
	if (!inet_ntop(a->ss.ss_family, ip, out, (socklen_t)n))
		check_text(out, n, "?");
}

static void print_json(const struct check_report *r, FILE *out)
{
	char ip[INET6_ADDRSTRLEN];
	fputs("{\"domain\":", out);
	cli_json_str(out, r->domain);
	fprintf(out, ",\"backup_assumed\":%s,\"mx\":[", r->backup_assumed ? "true" : "false");
	for (size_t i = 0; i < r->nmx; i++) {
		const struct check_mx *m = &r->mx[i];
		fprintf(out, "%s{\"host\":", i ? "," : "");
		cli_json_str(out, m->host);
		fprintf(out, ",\"preference\":%u,\"ttl\":%u,\"role\":\"%s\",\"addresses\":[", m->pref, m->ttl,
			role_name[m->role]);
		for (size_t k = 0; k < m->naddrs; k++) {
			addr_text(&m->addrs[k], ip, sizeof(ip));
			fprintf(out, "%s\"%s\"", k ? "," : "", ip);
		}
		fputs("]}", out);
	}
	fputs("],\"findings\":[", out);
	for (size_t i = 0; i < r->nf; i++) {
		const struct check_finding *f = &r->f[i];
		fprintf(out, "%s{\"id\":\"%s\",\"severity\":\"%s\",\"host\":", i ? "," : "", f->id, check_sev_name(f->sev));
		cli_json_str(out, f->subject);
		fputs(",\"message\":", out);
		cli_json_str(out, f->msg);
		fputs(",\"fix\":", out);
		cli_json_str(out, f->fix);
		fputc('}', out);
	}
	fprintf(out, "],\"exit\":%d}\n", check_exit_code(r));
}

static void print_mx_table(const struct check_report *r, FILE *out)
{
	char ip[INET6_ADDRSTRLEN];
	fprintf(out, "%-5s %-7s %-8s %-32s %s\n", "pref", "ttl", "role", "host", "addresses");
	for (size_t i = 0; i < r->nmx; i++) {
		const struct check_mx *m = &r->mx[i];
		fprintf(out, "%-5u %-7u %-8s ", m->pref, m->ttl, role_name[m->role]);
		cli_put_escaped(out, m->host, false);
		fprintf(out, "%*s", (int)(strlen(m->host) < 32 ? 33 - strlen(m->host) : 1), "");
		for (size_t k = 0; k < m->naddrs; k++) {
			addr_text(&m->addrs[k], ip, sizeof(ip));
			fprintf(out, "%s%s", k ? " " : "", ip);
		}
		fputc('\n', out);
	}
}

static void print_text(const struct check_report *r, FILE *out)
{
	size_t count[3] = {0};
	fputs("mxvault check ", out);
	cli_put_escaped(out, r->domain, false);
	fprintf(out, "%s\n\n", r->backup_assumed ? " (backup: the least preferred MX, assumed)" : "");
	if (r->nmx) {
		print_mx_table(r, out);
		fputc('\n', out);
	}
	fprintf(out, "%-6s %-24s %-26s %s\n", "result", "check", "host", "finding");
	for (size_t i = 0; i < r->nf; i++) {
		const struct check_finding *f = &r->f[i];
		count[f->sev]++;
		fprintf(out, "%-6s %-24s ", check_sev_name(f->sev), f->id);
		cli_put_escaped(out, f->subject[0] ? f->subject : "-", false);
		size_t len = f->subject[0] ? strlen(f->subject) : 1;
		fprintf(out, "%*s", (int)(len < 26 ? 27 - len : 1), "");
		cli_put_escaped(out, f->msg, false);
		fputc('\n', out);
		if (f->fix[0])
			fprintf(out, "%-6s %-24s fix: %s\n", "", "", f->fix);
	}
	fprintf(out, "\n%zu ok, %zu warning%s, %zu error%s: exit %d\n", count[CHECK_OK], count[CHECK_WARN],
		count[CHECK_WARN] == 1 ? "" : "s", count[CHECK_ERROR], count[CHECK_ERROR] == 1 ? "" : "s",
		check_exit_code(r));
}

struct check_args {
	struct check_opts o;
	const char *config;
	bool json;
	char domain[256];
};

static int parse_number(const char *s, uint64_t min, uint64_t max, uint64_t *v)
{
	return parse_uint(s, min, max, v) < 0 ? bad_usage("bad number", s) : EX_OK;
}

static int parse_args(int argc, char **argv, struct check_args *a)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'}, {"json", no_argument, NULL, 'j'},
		{"probe", no_argument, NULL, 'p'},        {"resolver", required_argument, NULL, 'r'},
		{"port", required_argument, NULL, 'P'},   {"timeout", required_argument, NULL, 't'},
		{NULL, 0, NULL, 0},
	};
	uint64_t v;
	int ch, rc = EX_OK;
	optind = 1;
	opterr = 0;
	while (rc == EX_OK && (ch = getopt_long(argc, argv, ":c:", longopts, NULL)) != -1) {
		if (ch == 'c')
			a->config = optarg;
		else if (ch == 'j')
			a->json = true;
		else if (ch == 'p')
			a->o.probe = true;
		else if (ch == 'r')
			a->o.resolver = optarg;
		else if (ch == 'P' && (rc = parse_number(optarg, 1, 65535, &v)) == EX_OK)
			a->o.port = (uint16_t)v;
		else if (ch == 't' && (rc = parse_number(optarg, 1, 300, &v)) == EX_OK)
			a->o.smtp_timeout_ms = (int)v * 1000;
		else if (ch == ':' || ch == '?')
			return bad_usage("bad option", argv[optind - 1]);
	}
	if (rc != EX_OK)
		return rc;
	if (optind != argc - 1)
		return bad_usage("expected one DOMAIN", NULL);
	size_t len = strlen(argv[optind]);
	if (len && argv[optind][len - 1] == '.')
		len--;
	if (len >= sizeof(a->domain) || !is_host_name(argv[optind], len))
		return bad_usage("not a domain name:", argv[optind]);
	memcpy(a->domain, argv[optind], len);
	ascii_lower(a->domain, len);
	a->o.domain = a->domain;
	return EX_OK;
}

int check_cli(int argc, char **argv)
{
	struct check_args a = {.o = {.dns_timeout_ms = 2000, .smtp_timeout_ms = 10000}};
	struct cfg *cfg = NULL;
	struct check_report r;
	log_set_level(LOG_LVL_ERR);
	signal(SIGPIPE, SIG_IGN); /* a peer that closes under a TLS write is a finding, not our death */
	int rc = parse_args(argc, argv, &a);
	if (rc != EX_OK)
		return rc;
	if (a.config && cfg_load_flags(a.config, stderr, CFG_LOAD_NO_USER, &cfg) < 0)
		return EX_CONFIG;
	a.o.cfg = cfg;
	if (!a.o.port)
		a.o.port = cfg ? cfg->mx_port : 25;
	a.o.ca_file = cfg ? cfg->tls_ca_file : NULL;
	if (check_run(&a.o, &r) < 0) {
		fprintf(stderr, "mxvault: check: cannot set up the resolver%s%s\n", a.o.resolver ? " " : "",
			a.o.resolver ? a.o.resolver : "");
		rc = EX_USAGE;
	} else {
		if (a.json)
			print_json(&r, stdout);
		else
			print_text(&r, stdout);
		rc = check_exit_code(&r);
	}
	check_report_free(&r);
	cfg_unref(cfg);
	return rc;
}
