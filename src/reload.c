/*
 * reload: see reload.h. Which keys a reload can change is decided here, in
 * one table, with why each fixed one is fixed; everything else reaches the
 * running parts through their set_cfg functions (daemon.c). Error policy:
 * nothing is applied here, so a refusal leaves the running configuration
 * untouched by construction.
 */
#include "reload.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/tls.h"

/* [server] keys read once at start; a change needs a restart. */
static const struct {
	const char *key;
	const char *why;
} fixed_keys[] = {
	{"listen", "the sockets are bound as root at start"},
	{"user", "root is dropped for good at start"},
	{"spool", "the spool is opened and recovered at start"},
	{"pid_file", "written at start"},
	{"control_socket", "bound as root at start"},
	{"http_listen", "bound as root at start"},
	{"min_free_space", "given to the spool at start"},
	{"resolver", "the resolver is opened at start"},
	{"hostname", "the delivery side's idea of itself and the self-signed certificate are made at start"},
	{"also_known_as", "the delivery side's idea of itself is made at start"},
	{"mx_port", "the delivery side's routing is made at start"},
	{"tls_ca_file", "the outbound TLS context is made at start"},
	{"dedup_window", "the duplicate memory is sized at start"},
	{"greylist_delay", "the greylist is opened at start"},
	{"callout_cache", "the learned-recipients store is opened at start"},
	{"probe_interval", "the standby probes are timed at start"},
	/* The alerts (notify/) keep what they were started with; a set_cfg there would free these. */
	{"notify_command", "the alerts are set up at start"},
	{"notify_timeout", "the alerts are set up at start"},
	{"alert_age", "the alerts are set up at start"},
	{"alert_spool_size", "the alerts are set up at start"},
};

/* Slurps what a cfg_load wrote to a memory stream into report. */
/* Closes the memory stream f (which sets *text) and moves what it holds into report. */
static void take_stream(FILE *f, char **text, struct buf *report)
{
	fclose(f);
	if (*text)
		buf_append_str(report, *text);
	free(*text);
}

static bool any_domain(const struct cfg *c, bool (*pred)(const struct cfg_domain *))
{
	for (size_t i = 0; i < c->ndomains; i++)
		if (pred(&c->domains[i]))
			return true;
	return false;
}

static bool calls_out(const struct cfg_domain *d)
{
	return d->callout;
}

static bool greylists(const struct cfg_domain *d)
{
	return d->greylist;
}

/* A domain with accept = when-primary-down in a that b lacks (or has otherwise). */
static const char *standby_only_in(const struct cfg *a, const struct cfg *b)
{
	for (size_t i = 0; i < a->ndomains; i++) {
		if (a->domains[i].accept != ACCEPT_WHEN_PRIMARY_DOWN)
			continue;
		const struct cfg_domain *d = cfg_find_domain(b, a->domains[i].name);
		if (!d || d->accept != ACCEPT_WHEN_PRIMARY_DOWN)
			return a->domains[i].name;
	}
	return NULL;
}

/* Appends one line per change that needs a restart; returns how many. */
static int check_fixed(const struct cfg *old, const struct cfg *next, struct buf *report)
{
	int n = 0;
	for (size_t i = 0; i < ARRAY_LEN(fixed_keys); i++) {
		if (!cfg_server_key_differs(old, next, fixed_keys[i].key))
			continue;
		buf_printf(report, "%s: %s changed: needs a restart (%s)\n", next->path, fixed_keys[i].key,
			   fixed_keys[i].why);
		n++;
	}
	if (!any_domain(old, calls_out) && any_domain(next, calls_out)) {
		buf_printf(report, "%s: recipients = callout on a domain: needs a restart (the store is opened at start)\n",
			   next->path);
		n++;
	}
	if (!any_domain(old, greylists) && any_domain(next, greylists)) {
		buf_printf(report, "%s: greylist = yes on a domain: needs a restart (the greylist is opened at start)\n",
			   next->path);
		n++;
	}
	const char *dom = standby_only_in(old, next);
	if (!dom)
		dom = standby_only_in(next, old);
	if (dom) {
		buf_printf(report, "%s: [domain %s] accept changed: needs a restart (standby probes start at start)\n",
			   next->path, dom);
		n++;
	}
	return n;
}

/* --- what changed ---------------------------------------------------------- */

struct change_walk {
	const struct cfg *old, *next;
	const struct cfg_domain *dold, *dnext; /* set while walking a domain's keys */
	struct buf *out;
	size_t n;
};

static void note_key(const char *section, const char *name, void *arg)
{
	struct change_walk *w = arg;
	bool server = strcmp(section, "server") == 0;
	if (server ? !w->dold && cfg_server_key_differs(w->old, w->next, name)
		   : w->dold && cfg_domain_key_differs(w->dold, w->dnext, name))
		buf_printf(w->out, "%s%s", w->n++ ? ", " : "", name);
}

/* Domains of a missing from b, as " NAME" words; how many. */
static size_t list_missing(const struct cfg *a, const struct cfg *b, struct buf *out)
{
	size_t n = 0;
	for (size_t i = 0; i < a->ndomains; i++)
		if (!cfg_find_domain(b, a->domains[i].name)) {
			buf_printf(out, " %s", a->domains[i].name);
			n++;
		}
	return n;
}

static void describe_domains(const struct cfg *old, const struct cfg *next, struct buf *out)
{
	struct buf names = {0};
	if (list_missing(next, old, &names))
		buf_printf(out, "domains added:%s\n", buf_cstr(&names));
	buf_reset(&names);
	if (list_missing(old, next, &names))
		buf_printf(out, "domains removed (their queued mail goes by MX):%s\n", buf_cstr(&names));
	buf_reset(&names);
	for (size_t i = 0; i < next->ndomains; i++) {
		const struct cfg_domain *dn = &next->domains[i], *dold = cfg_find_domain(old, dn->name);
		if (!dold)
			continue;
		struct change_walk w = {.old = old, .next = next, .dold = dold, .dnext = dn, .out = &names};
		cfg_key_each(note_key, &w);
		/* The file's name may stay while its lines change: the count tells. */
		if (dold->recipients.count != dn->recipients.count || dold->any_recipient != dn->any_recipient)
			buf_printf(&names, "%srecipients (%zu, were %zu)", w.n++ ? ", " : "", dn->recipients.count,
				   dold->recipients.count);
		if (w.n)
			buf_printf(out, "[domain %s] changed: %s\n", dn->name, buf_cstr(&names));
		buf_reset(&names);
	}
	buf_free(&names);
}

void reload_describe(const struct cfg *old, const struct cfg *next, struct buf *out)
{
	struct buf keys = {0};
	struct change_walk w = {.old = old, .next = next, .out = &keys};
	cfg_key_each(note_key, &w);
	if (w.n)
		buf_printf(out, "[server] changed: %s\n", buf_cstr(&keys));
	buf_free(&keys);
	describe_domains(old, next, out);
}

int reload_load(const struct cfg *running, struct buf *report, struct cfg **out)
{
	char *text = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&text, &len);
	if (!err)
		abort(); /* out of memory */
	/* Unprivileged now: the user lookup and the TLS files are not looked at (reload_server_tls does those). */
	struct cfg *next = NULL;
	int rc = cfg_load_flags(running->path, err, CFG_LOAD_NO_USER | CFG_LOAD_WARN, &next);
	take_stream(err, &text, report);
	*out = NULL;
	if (rc < 0)
		return -EINVAL;
	next->user_uid = running->user_uid;
	next->user_gid = running->user_gid;
	next->drop_privileges = running->drop_privileges;
	if (check_fixed(running, next, report) > 0) {
		cfg_unref(next);
		return -EINVAL;
	}
	*out = next;
	return 0;
}

int reload_server_tls(const struct cfg *next, struct buf *report, SSL_CTX **out)
{
	char dir[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	*out = NULL;
	if (next->tls_inbound_off)
		return 0;
	const char *cert_path = next->tls_cert, *key_path = next->tls_key;
	if (!cert_path) {
		/* The pair made at start, owned by us already; made again only if it went missing. */
		if (fmt(dir, sizeof(dir), "%s/tls", next->spool) < 0 ||
		    tls_selfsigned_ensure(dir, next->hostname, false, 0, 0, cert, key, sizeof(cert)) < 0) {
			buf_printf(report, "%s: the self-signed certificate in %s/tls cannot be made\n", next->path,
				   next->spool);
			return -EINVAL;
		}
		cert_path = cert;
		key_path = key;
	}
	struct tls_error e;
	*out = tls_server_context(cert_path, key_path, &e);
	if (*out)
		return 0;
	bool is_cert = e.file == TLS_FILE_CERT;
	buf_printf(report, "%s: %s %s: %s\n", next->path, is_cert ? "tls_cert" : "tls_key", is_cert ? cert_path : key_path,
		   e.text);
	return -EINVAL;
}
