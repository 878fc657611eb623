/*
 * check_smtp: the SMTP side of `mxvault check` and the rules that need it.
 * Each primary is tried on its addresses until one greets (the backup
 * must reach it to forward); with --probe, every MX is probed once, on its
 * first address, and judged: banner, EHLO, STARTTLS and certificate,
 * postmaster, open relay, reverse DNS; then the backup against the
 * primaries (RCPT parity). MTA-STS and TLSA rules live here too: they
 * judge the backup against the primaries as well.
 */
#include "check_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "auth/iprev.h"
#include "base/tls.h"

#define RELAY_RCPT "mxvault-relay-test@example.org"
/*
 * The SMTP part as a whole gets this many --timeout: each wait has its own
 * deadline, but 16 MX hosts of 8 addresses each, every one answering just
 * in time, would otherwise hold the command for an hour. What is left when
 * it runs out is not tried, and the report says so (check.time).
 */
#define CHECK_SMTP_BUDGET_STEPS 12

static bool is_2xx(int code)
{
	return code >= 200 && code < 300;
}

/*
 * Whether a primary answers on one of its addresses; adds primary.reachable /
 * primary.unreachable. A primary not tried before end_ms only counts in *skipped.
 */
static void reach_primaries(struct check_report *r, const struct check_opts *o, int64_t end_ms, size_t *skipped)
{
	size_t nprim = 0, nreach = 0;
	bool *ok = xcalloc(r->nmx ? r->nmx : 1, sizeof(*ok));
	bool *tried = xcalloc(r->nmx ? r->nmx : 1, sizeof(*tried));
	char why[CHECK_MAX_MX][SMTP_REPLY_TEXT_MAX + 64];
	for (size_t i = 0; i < r->nmx; i++) {
		const struct check_mx *m = &r->mx[i];
		if (m->role != CHECK_ROLE_PRIMARY)
			continue;
		nprim++;
		why[i][0] = '\0';
		for (size_t k = 0; k < m->naddrs && !ok[i] && clock_mono_ms() < end_ms; k++) {
			struct check_probe p;
			tried[i] = true;
			check_probe_reach((const struct sockaddr *)&m->addrs[k].ss, m->addrs[k].len, o->smtp_timeout_ms,
					  end_ms, &p);
			ok[i] = p.stage == PROBE_DONE;
			check_text(why[i], sizeof(why[i]), "%s", p.error);
		}
		nreach += ok[i];
	}
	for (size_t i = 0; i < r->nmx; i++) {
		const struct check_mx *m = &r->mx[i];
		if (m->role != CHECK_ROLE_PRIMARY || (!m->naddrs && !ok[i]))
			continue; /* no address: mx.no-address (or mx.ip-literal) says it already */
		if (!tried[i]) {
			++*skipped;
			continue;
		}
		if (ok[i])
			check_add(r, "primary.reachable", CHECK_OK, m->host, NULL, "answers with a 220 banner on port %u",
				  o->port);
		else
			check_add(r, "primary.unreachable", nreach ? CHECK_WARN : CHECK_ERROR, m->host,
				  "open port for the backup in the primary's firewall, or fix the primary's address",
				  "not reachable on port %u from here: %s", o->port, why[i]);
	}
	free(ok);
	free(tried);
}

static void rules_tls(struct check_report *r, const struct check_mx *m)
{
	const struct check_probe *p = &m->probe;
	if (!p->starttls)
		check_add(r, "tls.starttls", CHECK_WARN, m->host, "enable STARTTLS with a certificate for the MX name",
			  "STARTTLS is not offered: mail reaches this MX in clear text");
	else if (!p->tls)
		check_add(r, "tls.handshake", CHECK_ERROR, m->host, "fix the server's TLS set-up (certificate, key, protocols)",
			  "STARTTLS offered but failed: %s", p->tls_error);
	else if (!p->cert_ok)
		check_add(r, "tls.cert", CHECK_WARN, m->host, "install a certificate from a trusted CA (with its chain)",
			  "the certificate does not verify: %s", p->cert_error);
	else if (!p->name_ok)
		check_add(r, "tls.name", CHECK_WARN, m->host, "get a certificate that names the MX host",
			  "the certificate does not name %s", m->host);
	else
		check_add(r, "tls.ok", CHECK_OK, m->host, NULL, "%s, certificate valid for %s", p->tls_version, m->host);
}

static void rules_rdns(struct check_report *r, const struct check_mx *m)
{
	if (m->rdns == IPREV_PASS)
		check_add(r, "rdns.ok", CHECK_OK, m->host, NULL, "reverse DNS %s, resolving back to the address", m->ptr);
	else
		check_add(r, "rdns.fail", CHECK_WARN, m->host,
			  "ask the address's owner for a PTR record naming the MX host, and make that name resolve back",
			  "reverse DNS of its address: %s (no PTR name that resolves back to it)",
			  iprev_result_str((enum iprev_result)m->rdns));
}

/* The findings of one probed MX. */
static void rules_probe(struct check_report *r, const struct check_mx *m, const struct check_opts *o)
{
	const struct check_probe *p = &m->probe;
	static const char *const stage_id[] = {"smtp.connect", "smtp.banner", "smtp.ehlo"};
	if (p->stage == PROBE_EHLO && p->starttls && !p->tls && p->tls_error[0]) {
		rules_tls(r, m); /* the handshake failed and took the session with it */
		return;
	}
	if (p->stage < PROBE_DONE) {
		check_add(r, stage_id[p->stage], p->stage == PROBE_EHLO ? CHECK_WARN : CHECK_ERROR, m->host,
			  "make the server answer SMTP on this port", "port %u: %s", o->port, p->error);
		return;
	}
	check_add(r, "smtp.banner", CHECK_OK, m->host, NULL, "%s; EHLO name %s; extensions: %s", p->banner, p->ehlo_name,
		  p->ext[0] ? p->ext : "none");
	rules_tls(r, m);
	rules_rdns(r, m);
	if (p->mail_reply[0]) {
		check_add(r, "smtp.null-sender", CHECK_WARN, m->host, "accept MAIL FROM:<> (RFC 5321 4.5.5): bounces use it",
			  "MAIL FROM:<> refused: %s", p->mail_reply);
		return;
	}
	if (!is_2xx(p->postmaster))
		check_add(r, "smtp.postmaster", CHECK_WARN, m->host, "accept mail for postmaster@ (RFC 5321 4.5.1)",
			  "RCPT TO:<postmaster@%s> answered %d", o->domain, p->postmaster);
	if (is_2xx(p->relay))
		check_add(r, "smtp.open-relay", CHECK_ERROR, m->host,
			  "accept only recipients of the domains this server handles",
			  "accepts RCPT TO:<%s>, a foreign domain: an open relay", RELAY_RCPT);
	else
		check_add(r, "smtp.relay-refused", CHECK_OK, m->host, NULL, "refuses a foreign domain (%d)", p->relay);
}

/* RCPT parity (the backscatter test): what the primary refuses, the backup must refuse too. */
static void rules_parity(struct check_report *r, const char *unknown)
{
	int prim_code = 0;
	const char *prim = NULL;
	for (size_t i = 0; i < r->nmx; i++)
		if (r->mx[i].role == CHECK_ROLE_PRIMARY && r->mx[i].probed && r->mx[i].probe.unknown >= 500) {
			prim_code = r->mx[i].probe.unknown;
			prim = r->mx[i].host;
		}
	for (size_t i = 0; prim && i < r->nmx; i++) {
		const struct check_mx *b = &r->mx[i];
		if (b->role != CHECK_ROLE_BACKUP || !b->probed || !b->probe.unknown)
			continue;
		if (is_2xx(b->probe.unknown))
			check_add(r, "backup.rcpt-parity", CHECK_ERROR, b->host,
				  "give the backup the primary's recipient list (recipients = FILE, or = callout)",
				  "accepts <%s>, which the primary %s refuses (%d): it will bounce to forged senders "
				  "(backscatter)", unknown, prim, prim_code);
		else
			check_add(r, "backup.rcpt-parity", CHECK_OK, b->host, NULL,
				  "refuses the unknown recipient the primary refuses (%d)", b->probe.unknown);
	}
}

static const char *helo_name(const struct check_opts *o, char *buf, size_t n)
{
	if (o->helo)
		return o->helo;
	if (o->cfg && o->cfg->hostname)
		return o->cfg->hostname;
	if (gethostname(buf, n) == 0 && strchr(buf, '.'))
		return buf;
	return "localhost";
}

/* --probe: every MX with an address, until end_ms; those left count in *skipped. */
static void probe_all(struct check_report *r, const struct check_opts *o, const char *helo, int64_t end_ms,
		      size_t *skipped)
{
	char unknown[320];
	SSL_CTX *ctx = tls_client_context(o->ca_file);
	uint32_t nonce;
	if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce))
		nonce = (uint32_t)clock_mono_ms() ^ (uint32_t)getpid();
	/* A fresh local part each run: a server cannot list it as known. */
	check_text(unknown, sizeof(unknown), "mxvault-check-%08x@%s", (unsigned)nonce, o->domain);
	for (size_t i = 0; i < r->nmx; i++) {
		struct check_mx *m = &r->mx[i];
		if (!m->naddrs)
			continue;
		if (clock_mono_ms() >= end_ms) {
			++*skipped;
			continue;
		}
		check_probe_run((const struct sockaddr *)&m->addrs[0].ss, m->addrs[0].len, m->host, o->domain, helo,
				unknown, RELAY_RCPT, ctx, o->smtp_timeout_ms, end_ms, &m->probe);
		m->probed = true;
		rules_probe(r, m, o);
	}
	rules_parity(r, unknown);
	tls_context_free(ctx);
}

void check_smtp_all(struct check_report *r, const struct check_opts *o)
{
	char host[256];
	const char *helo = helo_name(o, host, sizeof(host));
	int64_t start = clock_mono_ms(), end = start + (int64_t)CHECK_SMTP_BUDGET_STEPS * o->smtp_timeout_ms;
	size_t skipped = 0;
	reach_primaries(r, o, end, &skipped);
	if (o->probe)
		probe_all(r, o, helo, end, &skipped);
	if (skipped)
		check_add(r, "check.time", CHECK_WARN, NULL, "check the slow hosts on their own, or with a shorter --timeout",
			  "the SMTP checks stopped after %lld s (%d times --timeout): %zu host%s not checked",
			  (long long)((clock_mono_ms() - start + 500) / 1000), CHECK_SMTP_BUDGET_STEPS, skipped,
			  skipped == 1 ? "" : "s");
}

void check_rules_tlsa(struct check_report *r)
{
	const char *prim = NULL;
	for (size_t i = 0; i < r->nmx; i++)
		if (r->mx[i].role == CHECK_ROLE_PRIMARY && r->mx[i].tlsa)
			prim = r->mx[i].host;
	for (size_t i = 0; prim && i < r->nmx; i++) {
		const struct check_mx *b = &r->mx[i];
		if (b->role != CHECK_ROLE_BACKUP)
			continue;
		if (b->tlsa)
			check_add(r, "tlsa.backup", CHECK_OK, b->host, NULL, "has TLSA records, as the primary has");
		else
			check_add(r, "tlsa.backup", CHECK_WARN, b->host,
				  "publish a TLSA record for the backup (_PORT._tcp.HOST) matching its certificate",
				  "no TLSA record, but the primary %s has one: DANE senders get no authenticated TLS "
				  "through the backup", prim);
	}
}

static void sts_host(struct check_report *r, const struct mta_sts_policy *p, const struct check_mx *m)
{
	bool backup = m->role == CHECK_ROLE_BACKUP;
	if (!mta_sts_mx_matches(p, m->host)) {
		check_add(r, backup ? "mta-sts.backup" : "mta-sts.mx", p->mode == MTA_STS_MODE_ENFORCE ? CHECK_ERROR : CHECK_WARN,
			  m->host, "add the host (or a matching *. pattern) as an mx: line of the MTA-STS policy",
			  "the MTA-STS policy's mx: patterns do not cover this MX: enforcing senders will not deliver here");
		return;
	}
	if (backup && m->probed && m->probe.stage == PROBE_DONE && !(m->probe.tls && m->probe.name_ok))
		check_add(r, "mta-sts.backup-cert", CHECK_ERROR, m->host,
			  "give the backup a certificate from a public CA that names its MX host",
			  "covered by the MTA-STS policy, but its certificate would fail validation: %s",
			  !m->probe.tls ? "no TLS" : m->probe.cert_error);
	else if (backup)
		check_add(r, "mta-sts.backup", CHECK_OK, m->host, NULL, "covered by the MTA-STS policy's mx: patterns");
}

void check_rules_sts(struct check_report *r, enum mta_sts_status st, const struct mta_sts_policy *p,
		     const char *why)
{
	if (st == MTA_STS_TEMPFAIL) {
		check_add(r, "mta-sts.fetch", CHECK_WARN, NULL,
			  "serve the policy at https://mta-sts.DOMAIN/.well-known/mta-sts.txt, or remove the TXT record",
			  "_mta-sts TXT record present, but the policy cannot be fetched: %s", why);
		return;
	}
	if (st != MTA_STS_OK || p->mode == MTA_STS_MODE_NONE)
		return;
	for (size_t i = 0; i < r->nmx; i++)
		sts_host(r, p, &r->mx[i]);
}
