/*
 * dmarc: the asynchronous DMARC check of one message (RFC 7489), see
 * dmarc.h. Called by the receive side once SPF and DKIM have their results;
 * calls the shared resolver (base/dns.h) for at most two TXT lookups,
 * _dmarc.<author domain> then _dmarc.<organisational domain> (6.6.3), and
 * the pure parts in dmarc_parse.c.
 * Invariants: the callback runs once, from the loop (a result known at
 * start, a malformed From:, is delivered through an event); a check
 * cancelled while a lookup is out stays allocated, marked, until that
 * lookup's callback frees it. Error policy: a failed lookup is temperror,
 * a bad From: permerror, an unusable or ambiguous record none.
 */
#include "auth/dmarc.h"

#include <event2/event.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth/dmarc_parse.h"
#include "base/dns.h"
#include "base/util.h"

/* Debian's publicsuffix package; libpsl's built-in list if it is missing. */
#define PSL_FILE "/usr/share/publicsuffix/public_suffix_list.dat"

struct dmarc_check {
	struct dns *dns;
	dmarc_fn *fn;
	void *arg;
	struct event *ev;        /* delivers a result known at start */
	bool lookup_out;         /* a TXT lookup has not called back yet */
	bool cancelled;
	bool at_org;             /* the lookup out is the organisational domain's */
	char org[256];           /* the author domain's organisational domain, or "" */
	char mail_from[256];
	enum spf_result spf;
	char (*dkim_pass)[256];  /* d= of each passing signature */
	size_t ndkim_pass;
	struct dmarc_outcome out;
};

static pthread_once_t psl_once = PTHREAD_ONCE_INIT;
static const psl_ctx_t *psl;

static void psl_init(void)
{
	psl = psl_load_file(PSL_FILE);
	if (!psl)
		psl = psl_builtin();
}

bool dmarc_org_domain(const char *domain, char *out, size_t n)
{
	char lower[256];
	size_t len = strlen(domain);
	if (len == 0 || len >= sizeof(lower))
		return false;
	memcpy(lower, domain, len + 1);
	ascii_lower(lower, len);
	/* libpsl answers for ".example.com" and "a..b"; a domain has no empty label. */
	if (lower[0] == '.' || lower[len - 1] == '.' || strstr(lower, ".."))
		return false;
	pthread_once(&psl_once, psl_init);
	const char *reg = psl ? psl_registrable_domain(psl, lower) : NULL;
	return reg && fmt(out, n, "%s", reg) == 0;
}

const char *dmarc_result_str(enum dmarc_result r)
{
	static const char *const names[] = {
		[DMARC_NONE] = "none", [DMARC_PASS] = "pass", [DMARC_FAIL] = "fail",
		[DMARC_TEMPERROR] = "temperror", [DMARC_PERMERROR] = "permerror",
	};
	return (size_t)r < ARRAY_LEN(names) && names[r] ? names[r] : "unknown";
}

static void check_free(struct dmarc_check *c)
{
	if (c->ev)
		event_free(c->ev);
	free(c->dkim_pass);
	free(c);
}

static void finish(struct dmarc_check *c, enum dmarc_result r, const char *why)
{
	c->out.result = r;
	c->out.why = why;
	c->fn(c->arg, &c->out);
	check_free(c);
}

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct dmarc_check *c = arg;
	finish(c, c->out.result, c->out.why);
}

static void defer(struct dmarc_check *c, enum dmarc_result r, const char *why)
{
	c->out.result = r;
	c->out.why = why;
	c->ev = event_new(dns_event_base(c->dns), -1, 0, on_deferred, c);
	if (!c->ev)
		abort(); /* out of memory */
	event_active(c->ev, EV_TIMEOUT, 0);
}

/* Whether SPF or one DKIM signature passed for a domain aligned with the author's (RFC 7489 4.2). */
static bool any_aligned(const struct dmarc_check *c, const struct dmarc_record *rec)
{
	const char *author = c->out.header_from;
	if (c->spf == SPF_PASS && c->mail_from[0] && dmarc_aligned(c->mail_from, author, rec->aspf_strict, dmarc_org_domain))
		return true;
	for (size_t i = 0; i < c->ndkim_pass; i++)
		if (dmarc_aligned(c->dkim_pass[i], author, rec->adkim_strict, dmarc_org_domain))
			return true;
	return false;
}

static void evaluate(struct dmarc_check *c, const char *txt)
{
	struct dmarc_record rec;
	const char *why;
	if (dmarc_parse_record(txt, &rec, &why) < 0) {
		finish(c, DMARC_NONE, why); /* 6.6.3 step 6: no DMARC processing */
		return;
	}
	/* sp= is for the subdomains of the organisational domain whose record was found (6.3). */
	enum dmarc_policy p = c->at_org ? rec.sp : rec.p;
	c->out.policy = p;
	if (any_aligned(c, &rec)) {
		finish(c, DMARC_PASS, "aligned SPF or DKIM pass");
		return;
	}
	c->out.policy = dmarc_apply_pct(p, rec.pct, arc4random_uniform(100));
	finish(c, DMARC_FAIL, "no aligned SPF or DKIM pass");
}

static void lookup(struct dmarc_check *c, const char *domain);

static void on_txt(void *arg, enum dns_status st, const char *const *txt, size_t n)
{
	struct dmarc_check *c = arg;
	c->lookup_out = false;
	if (c->cancelled) {
		check_free(c);
		return;
	}
	if (st == DNS_TEMPFAIL || st == DNS_CANCELLED) {
		finish(c, DMARC_TEMPERROR, st == DNS_TEMPFAIL ? "DMARC record lookup failed" : "resolver closed");
		return;
	}
	const char *rec = NULL;
	size_t nrec = 0;
	for (size_t i = 0; st == DNS_OK && i < n; i++)
		if (dmarc_txt_is_dmarc(txt[i]))
			rec = txt[i], nrec++;
	if (nrec > 1) {
		finish(c, DMARC_NONE, "more than one DMARC record"); /* 6.6.3 step 4 */
		return;
	}
	if (nrec == 1) {
		evaluate(c, rec);
		return;
	}
	if (!c->at_org && c->org[0] && strcmp(c->org, c->out.header_from) != 0) {
		c->at_org = true;
		lookup(c, c->org);
		return;
	}
	finish(c, DMARC_NONE, "no DMARC record");
}

static void lookup(struct dmarc_check *c, const char *domain)
{
	char name[300];
	if (fmt(name, sizeof(name), "_dmarc.%s", domain) < 0) {
		defer(c, DMARC_NONE, "no DMARC record"); /* cannot happen: domains are under 256 */
		return;
	}
	c->lookup_out = true;
	dns_lookup_txt(c->dns, name, on_txt, c);
}

static const char *author_domain(const struct dmarc_input *in, char *out, size_t n)
{
	const char *why = NULL;
	if (in->nfrom == 0)
		return "no From: header";
	if (in->nfrom > 1)
		return "more than one From: header";
	if (in->from_cut)
		return "From: header too long";
	if (dmarc_from_domain(in->from_values[0], out, n, &why) < 0)
		return why;
	return NULL;
}

struct dmarc_check *dmarc_check_start(struct dns *dns, const struct dmarc_input *in, dmarc_fn *fn, void *arg)
{
	struct dmarc_check *c = xcalloc(1, sizeof(*c));
	c->dns = dns;
	c->fn = fn;
	c->arg = arg;
	c->spf = in->spf;
	if (in->mail_from_domain && fmt(c->mail_from, sizeof(c->mail_from), "%s", in->mail_from_domain) < 0)
		c->mail_from[0] = '\0';
	c->dkim_pass = xcalloc(in->ndkim ? in->ndkim : 1, sizeof(*c->dkim_pass));
	for (size_t i = 0; i < in->ndkim; i++)
		if (in->dkim[i].result == DKIM_PASS)
			memcpy(c->dkim_pass[c->ndkim_pass++], in->dkim[i].domain, sizeof(in->dkim[i].domain));
	for (size_t i = 0; i < c->ndkim_pass; i++)
		c->dkim_pass[i][sizeof(c->dkim_pass[i]) - 1] = '\0';

	const char *why = author_domain(in, c->out.header_from, sizeof(c->out.header_from));
	if (why) {
		c->out.header_from[0] = '\0';
		c->out.bad_author = true;
		defer(c, DMARC_PERMERROR, why);
		return c;
	}
	if (!dmarc_org_domain(c->out.header_from, c->org, sizeof(c->org)))
		c->org[0] = '\0';
	lookup(c, c->out.header_from);
	return c;
}

void dmarc_check_cancel(struct dmarc_check *c)
{
	if (!c)
		return;
	if (c->lookup_out) {
		c->cancelled = true; /* on_txt frees it */
		return;
	}
	check_free(c);
}
