/*
 * check: `mxvault check DOMAIN`, an MX checker that knows which MX is the
 * backup. check_run gathers the domain's MX set from DNS (on the project's
 * resolver, a short-lived event loop, every query with a timeout), decides
 * which host is the backup (with a configuration: the MX that is this
 * host, recognised as the daemon recognises itself in delivery/route;
 * without: the least preferred, and says so), optionally probes each MX
 * over SMTP (check_probe), and reports findings: a stable id, a severity,
 * what was seen and a one-line fix. It blocks (it is a CLI), but never
 * without a deadline. Printing is the caller's (cli/check_cli.c).
 * Everything from DNS and the peers is hostile: tables are capped, text
 * is kept bounded and escaped by whoever prints it.
 */
#ifndef MXV_CHECK_H
#define MXV_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/cfg.h"
#include "base/dns.h"
#include "check_probe.h"

/* The most MX hosts examined (a hostile zone can list hundreds) and addresses kept per host. */
#define CHECK_MAX_MX 16
#define CHECK_MAX_ADDRS 8

enum check_sev { CHECK_OK = 0, CHECK_WARN, CHECK_ERROR };
enum check_role { CHECK_ROLE_OTHER = 0, CHECK_ROLE_PRIMARY, CHECK_ROLE_BACKUP };

struct check_mx {
	char host[256];
	uint16_t pref;
	uint32_t ttl;
	enum check_role role;
	bool ip_literal;          /* the target is written as an address: senders look it up as a name */
	char cname[256];          /* non-empty: the target is an alias of this name */
	enum dns_status addr_st;
	struct dns_addr addrs[CHECK_MAX_ADDRS];
	size_t naddrs;
	bool self_name, self_addr; /* with -c: the name, or an address, is this host's */
	bool tlsa;                /* _PORT._tcp.HOST has TLSA records */
	int rdns;                 /* --probe: enum iprev_result of addrs[0] (auth/iprev) */
	char ptr[256];            /* its forward-confirmed PTR name, when it passed */
	bool probed;
	struct check_probe probe; /* of addrs[0], when probed */
};

struct check_finding {
	char id[40];              /* stable: "mx.single", "backup.same-preference" */
	enum check_sev sev;
	char subject[256];        /* the host it is about, or "" for the domain */
	char msg[400];
	char fix[300];            /* "" for ok */
};

struct check_opts {
	const char *domain;       /* lower case, no trailing dot */
	const struct cfg *cfg;    /* -c FILE, or NULL */
	const char *resolver;     /* overrides the configuration's; NULL: cfg's or /etc/resolv.conf */
	uint16_t port;            /* the SMTP port probed (mx_port) */
	bool probe;               /* --probe: talk SMTP to every MX */
	const char *ca_file;      /* trust store for certificates (tls_ca_file) or NULL for the system's */
	const char *helo;         /* the name said in EHLO */
	int dns_timeout_ms;
	int smtp_timeout_ms;      /* each connect and reply */
};

struct check_report {
	char domain[256];
	struct check_mx *mx;
	size_t nmx;
	bool backup_assumed;      /* no configuration: the least preferred MX was taken as the backup */
	struct check_finding *f;
	size_t nf;
};

/* Runs every check; 0, or -EINVAL (bad domain / resolver) / -EIO (no resolver). */
int check_run(const struct check_opts *o, struct check_report *r) MUST_CHECK;
void check_report_free(struct check_report *r);
/* 0: every finding ok; 1: a warning; 2: an error. */
int check_exit_code(const struct check_report *r);
const char *check_sev_name(enum check_sev s);

/* Adds a finding (texts truncated to their fields). */
void check_add(struct check_report *r, const char *id, enum check_sev sev, const char *subject, const char *fix,
	       const char *fmt, ...) PRINTF_LIKE(6, 7);

/*
 * The pure part, for tests: the findings of the DNS data alone (MX set,
 * addresses, aliases, TTLs, roles, self-recognition when have_cfg).
 */
void check_rules_dns(struct check_report *r, bool have_cfg);

#endif
