/*
 * check_rules: the findings that follow from the DNS data alone, and the
 * report's bookkeeping (adding a finding, the exit code). Pure: no I/O, so
 * each rule is testable on a hand-made MX set.
 */
#include "check.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Extreme MX TTLs: below this, every sender asks again every minute... */
#define TTL_LOW 60
/* ... above this (a week), a change takes a week to reach every sender. */
#define TTL_HIGH 604800

/* The most findings kept: each host can add a dozen; a cap keeps a hostile zone's report bounded. */
#define CHECK_MAX_FINDINGS 256

void check_add(struct check_report *r, const char *id, enum check_sev sev, const char *subject, const char *fix,
	       const char *f, ...)
{
	if (r->nf >= CHECK_MAX_FINDINGS)
		return;
	if (r->nf % 16 == 0)
		r->f = xrealloc(r->f, (r->nf + 16) * sizeof(*r->f));
	struct check_finding *x = &r->f[r->nf++];
	memset(x, 0, sizeof(*x));
	snprintf(x->id, sizeof(x->id), "%s", id);
	x->sev = sev;
	snprintf(x->subject, sizeof(x->subject), "%s", subject ? subject : "");
	snprintf(x->fix, sizeof(x->fix), "%s", fix ? fix : "");
	va_list ap;
	va_start(ap, f);
	vsnprintf(x->msg, sizeof(x->msg), f, ap);
	va_end(ap);
}

int check_exit_code(const struct check_report *r)
{
	int worst = CHECK_OK;
	for (size_t i = 0; i < r->nf; i++)
		if ((int)r->f[i].sev > worst)
			worst = (int)r->f[i].sev;
	return worst;
}

const char *check_sev_name(enum check_sev s)
{
	return s == CHECK_ERROR ? "error" : s == CHECK_WARN ? "warn" : "ok";
}

void check_report_free(struct check_report *r)
{
	free(r->mx);
	free(r->f);
	memset(r, 0, sizeof(*r));
}

/* Per host: the target's form, its addresses, its TTL. */
static void rules_host(struct check_report *r, const struct check_mx *m)
{
	if (m->ip_literal)
		check_add(r, "mx.ip-literal", CHECK_ERROR, m->host,
			  "publish an A/AAAA record for a host name and make the MX point to that name",
			  "the MX target is an IP address; senders look it up as a host name and fail");
	else if (m->cname[0])
		check_add(r, "mx.cname", CHECK_ERROR, m->host, "point the MX record at the canonical name, not an alias",
			  "the MX target is an alias (CNAME to %s); RFC 2181 10.3 forbids it", m->cname);
	if (!m->ip_literal && m->naddrs == 0)
		check_add(r, "mx.no-address", m->addr_st == DNS_TEMPFAIL ? CHECK_WARN : CHECK_ERROR, m->host,
			  "publish an A and/or AAAA record for the MX host",
			  "no A/AAAA record (%s): nobody can deliver to this MX", dns_status_str(m->addr_st));
	if (m->ttl < TTL_LOW || m->ttl > TTL_HIGH)
		check_add(r, "mx.ttl", CHECK_WARN, m->host,
			  "set the MX TTL to about 300 s while changing the set-up, a day or more once it is stable",
			  "MX TTL %" PRIu32 " s is extreme (below %d s or above %d s)", m->ttl, TTL_LOW, TTL_HIGH);
}

/*
 * Which MX is the backup: with a configuration, the hosts that are this
 * host (by name or address); without, the least preferred ones. The
 * primaries are the hosts strictly more preferred than the best backup.
 */
static void assign_roles(struct check_report *r, bool have_cfg)
{
	size_t nb = 0;
	for (size_t i = 0; i < r->nmx; i++) {
		struct check_mx *m = &r->mx[i];
		bool backup = have_cfg ? m->self_name || m->self_addr : m->pref == r->mx[r->nmx - 1].pref;
		m->role = backup ? CHECK_ROLE_BACKUP : CHECK_ROLE_OTHER;
		nb += backup;
	}
	if (nb == 0 && r->nmx > 1) /* none is us: judge the set as if the least preferred were */
		for (size_t i = 0; i < r->nmx; i++)
			if (r->mx[i].pref == r->mx[r->nmx - 1].pref)
				r->mx[i].role = CHECK_ROLE_BACKUP;
	int best_backup = -1;
	for (size_t i = 0; i < r->nmx; i++)
		if (r->mx[i].role == CHECK_ROLE_BACKUP && (best_backup < 0 || r->mx[i].pref < best_backup))
			best_backup = r->mx[i].pref;
	for (size_t i = 0; i < r->nmx; i++)
		if (r->mx[i].role == CHECK_ROLE_OTHER && (int)r->mx[i].pref < best_backup)
			r->mx[i].role = CHECK_ROLE_PRIMARY;
	r->backup_assumed = !have_cfg || nb == 0;
}

/* The checks that need to know the backup. */
static void rules_backup(struct check_report *r, bool have_cfg)
{
	size_t nprim = 0;
	for (size_t i = 0; i < r->nmx; i++)
		nprim += r->mx[i].role == CHECK_ROLE_PRIMARY;
	for (size_t i = 0; i < r->nmx; i++) {
		const struct check_mx *b = &r->mx[i];
		if (b->role != CHECK_ROLE_BACKUP)
			continue;
		if (have_cfg && b->self_name && !b->self_addr && b->naddrs)
			check_add(r, "backup.address", CHECK_ERROR, b->host,
				  "point the backup MX's A/AAAA records at an address this server listens on",
				  "the MX names this host, but none of its addresses is one this server listens on");
		else if (have_cfg && (b->self_name || b->self_addr))
			check_add(r, "backup.self", CHECK_OK, b->host, NULL,
				  "this server recognises itself as this MX (by %s): no mail loop",
				  b->self_name ? "its host name" : "its address");
		for (size_t k = 0; k < r->nmx; k++)
			if (k != i && r->mx[k].role == CHECK_ROLE_OTHER && r->mx[k].pref == b->pref)
				check_add(r, "backup.same-preference", CHECK_ERROR, r->mx[k].host,
					  "give the backup MX a larger preference number than every primary",
					  "same preference (%u) as the backup %s: senders share mail between them and "
					  "the backup cannot forward to it", b->pref, b->host);
	}
	if (have_cfg && r->backup_assumed && r->nmx)
		check_add(r, "backup.not-self", CHECK_ERROR, NULL,
			  "add an MX record naming this server (hostname, also_known_as or a listen address)",
			  "no MX of the domain is this server (by name or address): it receives none of its mail");
	else if (!have_cfg && r->nmx)
		check_add(r, "backup.assumed", CHECK_OK, NULL, NULL,
			  "no configuration given (-c): the least preferred MX is taken as the backup");
	if (nprim == 0 && r->nmx > 1)
		check_add(r, "primary.missing", CHECK_ERROR, NULL,
			  "publish the primary MX with a smaller preference number than the backup",
			  "no MX is more preferred than the backup: there is no primary to forward to");
}

void check_rules_dns(struct check_report *r, bool have_cfg)
{
	if (r->nmx == 0)
		return;
	for (size_t i = 0; i < r->nmx; i++)
		rules_host(r, &r->mx[i]);
	if (r->nmx == 1)
		check_add(r, "mx.single", CHECK_WARN, r->mx[0].host,
			  "add a backup MX with a larger preference number than the primary",
			  "a single MX: no backup takes the mail while it is down");
	assign_roles(r, have_cfg);
	rules_backup(r, have_cfg);
}
