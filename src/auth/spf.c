/*
 * spf: check_host() of RFC 7208 as a state machine over base/dns lookups,
 * one lookup in flight at a time. Called by smtpd/ (and the suite driver).
 * A check holds a stack of frames, one per record being evaluated (the
 * top domain, then one per include); redirect replaces the frame it came
 * from. The term limit (10) bounds the stack, the mx and ptr limits the
 * lookups per term: memory is bounded by SPF_FRAMES records of at most
 * DNS_TXT_MAX bytes.
 * Error policy: DNS failures are temperror, syntax and limits permerror
 * (4.6.4), as the RFC says; out of memory is fatal. On DNS_CANCELLED (the
 * resolver is going away) the check ends with temperror and asks nothing
 * more.
 */
#include "spf.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/spf_parse.h"
#include "base/dns.h"

#define SPF_TERMS_MAX 10   /* DNS-querying terms (4.6.4) */
#define SPF_VOIDS_MAX 2
#define SPF_NAMES_MAX 10   /* MX or PTR names per term */
#define SPF_FRAMES (SPF_TERMS_MAX + 2)

enum spf_frame_kind { SPF_FR_TOP, SPF_FR_INCLUDE, SPF_FR_REDIRECT };

struct spf_frame {
	enum spf_frame_kind kind;
	char domain[256];
	char *txt;
	struct spf_record rec;
	size_t next;          /* the next term to evaluate */
};

/* The name list of the term under way (mx hosts, ptr names), walked one lookup at a time. */
struct spf_names {
	char (*name)[256];
	size_t n, i;
};

enum spf_wait { SPF_W_NONE, SPF_W_RECORD, SPF_W_A, SPF_W_MX, SPF_W_MX_ADDR, SPF_W_PTR, SPF_W_PTR_ADDR, SPF_W_EXISTS, SPF_W_EXP };

struct spf_check {
	struct dns *dns;
	spf_fn *fn;
	void *arg;
	int family;
	unsigned char ip[16];
	char *sender, *local, *sender_domain, *helo, *receiver;
	struct spf_frame fr[SPF_FRAMES];
	int depth;            /* index of the current frame */
	int terms, voids;
	enum spf_wait wait;
	bool in_flight, cancelled, dns_gone;
	bool for_p;           /* the ptr walk under way computes %{p}, not the ptr mechanism */
	bool in_redirect;     /* %{p} is computed for redirect=, not for a term */
	char *exp_txt;        /* the explanation, while %{p} is computed for it */
	char target[256];     /* the name the current term queries */
	struct spf_names names;
	char *p_name;         /* %{p}, once computed: a validated name or "unknown" */
	char p_domain[256];   /* the <domain> it was computed for */
	char *p_first;        /* while computing %{p}: the first validated name */
	struct event *defer;
	enum spf_result result; /* what the deferred callback delivers */
};

static void spf_run(struct spf_check *c);

/* Host names here are at most 255 bytes: DNS (and the expander) cut them before. */
static void copy_name(char dst[256], const char *src)
{
	size_t n = strnlen(src, 255);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* ---- the end ---- */

static void spf_free(struct spf_check *c)
{
	/* Every frame: an error deep in an include ends the check with depth reset to 0. */
	for (int i = 0; i < SPF_FRAMES; i++) {
		free(c->fr[i].txt);
		spf_record_free(&c->fr[i].rec);
	}
	free(c->names.name);
	free(c->sender);
	free(c->local);
	free(c->sender_domain);
	free(c->helo);
	free(c->receiver);
	free(c->p_name);
	free(c->p_first);
	free(c->exp_txt);
	if (c->defer)
		event_free(c->defer);
	free(c);
}

static void spf_deliver(struct spf_check *c, enum spf_result r, const char *exp)
{
	c->fn(c->arg, r, exp);
	spf_free(c);
}

/*
 * A lookup's answer is in: false when the check was cancelled meanwhile
 * (it is freed now and the answer is dropped).
 */
static bool spf_landed(struct spf_check *c)
{
	c->in_flight = false;
	if (!c->cancelled)
		return true;
	spf_free(c);
	return false;
}

static void spf_env(const struct spf_check *c, const char *domain, struct spf_macro_env *env)
{
	*env = (struct spf_macro_env){
		.sender = c->sender, .local = c->local, .sender_domain = c->sender_domain,
		.domain = domain, .helo = c->helo, .receiver = c->receiver, .ptr = c->p_name,
		.family = c->family, .now = (int64_t)time(NULL),
	};
	memcpy(env->ip, c->ip, sizeof(env->ip));
}

static void spf_lookup_ptr(struct spf_check *c, bool for_p);

/* Delivers fail with c->exp_txt expanded (or none when it does not expand). */
static void spf_explain(struct spf_check *c)
{
	char out[SPF_EXPAND_MAX + 1];
	struct spf_macro_env env;
	spf_env(c, c->fr[0].domain, &env);
	bool ok = spf_expand(c->exp_txt, strlen(c->exp_txt), &env, true, out, sizeof(out)) == 0;
	spf_deliver(c, SPF_FAIL, ok ? out : NULL);
}

static void spf_on_exp(void *arg, enum dns_status st, const char *const *txt, size_t n)
{
	struct spf_check *c = arg;
	if (!spf_landed(c))
		return;
	if (st == DNS_CANCELLED)
		c->dns_gone = true;
	/* 6.2: anything but exactly one record means no explanation. */
	if (st != DNS_OK || n != 1) {
		spf_deliver(c, SPF_FAIL, NULL);
		return;
	}
	c->exp_txt = xstrdup(txt[0]);
	bool need_p = spf_uses_p(c->exp_txt, strlen(c->exp_txt)) && !c->dns_gone &&
		      (!c->p_name || strcmp(c->p_domain, c->fr[0].domain) != 0);
	if (need_p)
		spf_lookup_ptr(c, true); /* then spf_p_done comes back to spf_explain */
	else
		spf_explain(c);
}

/* The end of the top frame's evaluation: fail fetches exp= (6.2) first. */
static void spf_finish(struct spf_check *c, enum spf_result r)
{
	struct spf_frame *f = &c->fr[0];
	if (r == SPF_FAIL && c->depth == 0 && f->rec.exp && !c->dns_gone) {
		struct spf_macro_env env;
		spf_env(c, f->domain, &env);
		if (spf_expand(f->rec.exp, f->rec.exp_len, &env, false, c->target, sizeof(c->target)) == 0) {
			c->wait = SPF_W_EXP;
			c->in_flight = true;
			dns_lookup_txt(c->dns, c->target, spf_on_exp, c);
			return;
		}
	}
	spf_deliver(c, r, NULL);
}

/* An error ends the whole evaluation, however deep in includes (no exp=). */
static void spf_abort(struct spf_check *c, enum spf_result r)
{
	c->depth = 0;
	spf_finish(c, r);
}

/* A frame's record came to result r (4.6 / 5.2 / 6.1). */
static void spf_frame_done(struct spf_check *c, enum spf_result r)
{
	struct spf_frame *f = &c->fr[c->depth];
	if (f->kind != SPF_FR_INCLUDE) {
		spf_finish(c, r == SPF_NONE && f->kind == SPF_FR_REDIRECT ? SPF_PERMERROR : r);
		return;
	}
	free(f->txt);
	spf_record_free(&f->rec);
	memset(f, 0, sizeof(*f));
	c->depth--;
	struct spf_frame *parent = &c->fr[c->depth];
	switch (r) {
	case SPF_PASS: /* the include matches: its own qualifier decides */
		spf_frame_done(c, parent->rec.terms[parent->next - 1].qual);
		return;
	case SPF_FAIL:
	case SPF_SOFTFAIL:
	case SPF_NEUTRAL:
		spf_run(c);
		return;
	case SPF_NONE:
		r = SPF_PERMERROR;
		break;
	default:
		break;
	}
	spf_abort(c, r); /* temperror, permerror: the whole evaluation ends there */
}

/* ---- records ---- */

static void spf_on_record(void *arg, enum dns_status st, const char *const *txt, size_t n)
{
	struct spf_check *c = arg;
	if (!spf_landed(c))
		return;
	if (st == DNS_CANCELLED)
		c->dns_gone = true;
	if (st == DNS_TEMPFAIL || st == DNS_CANCELLED) {
		spf_abort(c, SPF_TEMPERROR);
		return;
	}
	const char *rec = NULL;
	size_t found = 0;
	for (size_t i = 0; st == DNS_OK && i < n; i++)
		if (spf_is_record(txt[i])) {
			rec = txt[i];
			found++;
		}
	if (found == 0) {
		spf_frame_done(c, SPF_NONE); /* 4.5; include and redirect make it permerror */
		return;
	}
	struct spf_frame *f = &c->fr[c->depth];
	if (found > 1) {
		spf_abort(c, SPF_PERMERROR);
		return;
	}
	f->txt = xstrdup(rec);
	if (spf_parse_record(f->txt, &f->rec) < 0) {
		spf_abort(c, SPF_PERMERROR);
		return;
	}
	f->next = 0;
	spf_run(c);
}

static void spf_fetch_record(struct spf_check *c)
{
	c->wait = SPF_W_RECORD;
	c->in_flight = true;
	dns_lookup_txt(c->dns, c->fr[c->depth].domain, spf_on_record, c);
}

/* ---- lookups of the terms ---- */

/* Common handling of a term's first answer: true when the check ended. */
static bool spf_dns_failed(struct spf_check *c, enum dns_status st, bool count_void)
{
	if (st == DNS_CANCELLED)
		c->dns_gone = true;
	if (st == DNS_TEMPFAIL || st == DNS_CANCELLED) {
		spf_abort(c, SPF_TEMPERROR);
		return true;
	}
	if (count_void && (st == DNS_NXDOMAIN || st == DNS_NODATA || st == DNS_BADNAME) && ++c->voids > SPF_VOIDS_MAX) {
		spf_abort(c, SPF_PERMERROR);
		return true;
	}
	return false;
}

static bool spf_addrs_match(const struct spf_check *c, const struct dns_addr *a, size_t n, unsigned bits)
{
	for (size_t i = 0; i < n; i++) {
		const void *ip = a[i].ss.ss_family == AF_INET6
					 ? (const void *)&((const struct sockaddr_in6 *)&a[i].ss)->sin6_addr
					 : (const void *)&((const struct sockaddr_in *)&a[i].ss)->sin_addr;
		if (a[i].ss.ss_family == c->family && spf_cidr_match(c->family, ip, c->ip, bits))
			return true;
	}
	return false;
}

/* The current term matched (or not): its qualifier, or on to the next. */
static void spf_term_done(struct spf_check *c, bool match)
{
	struct spf_frame *f = &c->fr[c->depth];
	if (match)
		spf_frame_done(c, f->rec.terms[f->next - 1].qual);
	else
		spf_run(c);
}

static const struct spf_term *spf_cur_term(const struct spf_check *c)
{
	const struct spf_frame *f = &c->fr[c->depth];
	return &f->rec.terms[f->next - 1];
}

static unsigned spf_bits(const struct spf_check *c)
{
	const struct spf_term *t = spf_cur_term(c);
	return c->family == AF_INET6 ? t->cidr6 : t->cidr4;
}

static void spf_on_addr(void *arg, enum dns_status st, const struct dns_addr *a, size_t n);

static void spf_lookup_addr(struct spf_check *c, const char *name, enum spf_wait w, int family)
{
	c->wait = w;
	c->in_flight = true;
	dns_lookup_family(c->dns, name, family, spf_on_addr, c);
}

static void spf_next_mx(struct spf_check *c)
{
	while (c->names.i < c->names.n && c->names.name[c->names.i][0] == '\0')
		c->names.i++; /* the null MX (RFC 7505) has no address */
	if (c->names.i == c->names.n) {
		spf_term_done(c, false);
		return;
	}
	/*
	 * 4.6.4: no more than 10 address lookups per mx; exceeding it is a
	 * permerror. A match among the first ten never exceeds it.
	 */
	if (c->names.i >= SPF_NAMES_MAX) {
		spf_abort(c, SPF_PERMERROR);
		return;
	}
	spf_lookup_addr(c, c->names.name[c->names.i++], SPF_W_MX_ADDR, c->family);
}

static bool spf_name_in(const char *name, const char *domain)
{
	size_t n = strlen(name), d = strlen(domain);
	while (d && domain[d - 1] == '.')
		d--;
	if (n < d || !ascii_ieq(name + n - d, d, domain, d))
		return false;
	return n == d || name[n - d - 1] == '.';
}

static void spf_p_done(struct spf_check *c, const char *name);

/* The next PTR name worth validating (5.5): for the mechanism, only those under the target. */
static void spf_next_ptr(struct spf_check *c)
{
	while (c->names.i < c->names.n) {
		const char *name = c->names.name[c->names.i++];
		if (c->for_p || spf_name_in(name, c->target)) {
			spf_lookup_addr(c, name, SPF_W_PTR_ADDR, c->family);
			return;
		}
	}
	if (c->for_p)
		spf_p_done(c, c->p_first);
	else
		spf_term_done(c, false);
}

static void spf_on_addr(void *arg, enum dns_status st, const struct dns_addr *a, size_t n)
{
	struct spf_check *c = arg;
	if (!spf_landed(c))
		return;
	switch (c->wait) {
	case SPF_W_A:
		if (!spf_dns_failed(c, st, true))
			spf_term_done(c, spf_addrs_match(c, a, n, spf_bits(c)));
		return;
	case SPF_W_EXISTS:
		if (!spf_dns_failed(c, st, true))
			spf_term_done(c, st == DNS_OK && n > 0);
		return;
	case SPF_W_MX_ADDR:
		if (spf_dns_failed(c, st, false))
			return;
		if (spf_addrs_match(c, a, n, spf_bits(c)))
			spf_term_done(c, true);
		else
			spf_next_mx(c);
		return;
	default: /* SPF_W_PTR_ADDR: a DNS error skips the name (5.5) */
		if (st == DNS_CANCELLED) {
			spf_dns_failed(c, st, false);
			return;
		}
		if (st == DNS_OK && spf_addrs_match(c, a, n, c->family == AF_INET6 ? 128 : 32)) {
			const char *name = c->names.name[c->names.i - 1];
			if (!c->for_p) {
				spf_term_done(c, true);
				return;
			}
			if (spf_name_in(name, c->fr[c->depth].domain)) {
				spf_p_done(c, name);
				return;
			}
			if (!c->p_first)
				c->p_first = xstrdup(name);
		}
		spf_next_ptr(c);
		return;
	}
}

static void spf_take_names(struct spf_check *c, size_t n)
{
	free(c->names.name);
	c->names.name = xcalloc(n ? n : 1, sizeof(*c->names.name));
	c->names.n = n;
	c->names.i = 0;
}

static void spf_on_mx(void *arg, enum dns_status st, bool secure, const struct dns_mx *mx, size_t n)
{
	struct spf_check *c = arg;
	(void)secure;
	if (!spf_landed(c))
		return;
	if (spf_dns_failed(c, st, true))
		return;
	/* 4.6.4: querying an 11th MX host is the permerror (see spf_next_mx). */
	if (n > SPF_NAMES_MAX + 1)
		n = SPF_NAMES_MAX + 1;
	spf_take_names(c, n);
	for (size_t i = 0; i < n; i++)
		memcpy(c->names.name[i], mx[i].host, sizeof(mx[i].host));
	spf_next_mx(c);
}

static void spf_on_ptr(void *arg, enum dns_status st, const char *const *names, size_t n)
{
	struct spf_check *c = arg;
	if (!spf_landed(c))
		return;
	if (st == DNS_CANCELLED) {
		spf_dns_failed(c, st, false);
		return;
	}
	/* 5.5: a failed PTR lookup is no match; a void one counts (4.6.4). */
	if (!c->for_p && (st == DNS_NXDOMAIN || st == DNS_NODATA) && spf_dns_failed(c, st, true))
		return;
	if (st != DNS_OK)
		n = 0;
	if (n > SPF_NAMES_MAX)
		n = SPF_NAMES_MAX; /* 4.6.4: the first 10 only */
	spf_take_names(c, n);
	for (size_t i = 0; i < n; i++)
		copy_name(c->names.name[i], names[i]);
	spf_next_ptr(c);
}

static void spf_lookup_ptr(struct spf_check *c, bool for_p)
{
	struct sockaddr_storage ss = {0};
	if (c->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, c->ip, 16);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, c->ip, 4);
	}
	c->for_p = for_p;
	c->wait = SPF_W_PTR;
	c->in_flight = true;
	dns_lookup_ptr(c->dns, (const struct sockaddr *)&ss, spf_on_ptr, c);
}

/* %{p} is known for the current domain: evaluate the term that needed it again. */
static void spf_p_done(struct spf_check *c, const char *name)
{
	free(c->p_name);
	c->p_name = xstrdup(name ? name : "unknown");
	copy_name(c->p_domain, c->fr[c->depth].domain);
	free(c->p_first);
	c->p_first = NULL;
	c->for_p = false;
	if (c->exp_txt) {
		spf_explain(c);
		return;
	}
	if (!c->in_redirect)
		c->fr[c->depth].next--;
	c->in_redirect = false;
	c->terms--; /* counted again when the term runs again */
	spf_run(c);
}

/* ---- the evaluation ---- */

/*
 * Expands spec (or takes the current domain) into c->target. Returns 1 when
 * %{p} must be computed first (a lookup is under way), 0 when ready, -1
 * when the check ended (permerror).
 */
static int spf_target(struct spf_check *c, const char *spec, size_t len)
{
	struct spf_frame *f = &c->fr[c->depth];
	if (!spec) {
		copy_name(c->target, f->domain);
		return 0;
	}
	if (spf_uses_p(spec, len) && (!c->p_name || strcmp(c->p_domain, f->domain) != 0)) {
		free(c->p_first);
		c->p_first = NULL;
		spf_lookup_ptr(c, true);
		return 1;
	}
	struct spf_macro_env env;
	spf_env(c, f->domain, &env);
	if (spf_expand(spec, len, &env, false, c->target, sizeof(c->target)) < 0) {
		spf_abort(c, SPF_PERMERROR);
		return -1;
	}
	return 0;
}

/* One more DNS-querying term (4.6.4); false when the check ended. */
static bool spf_count_term(struct spf_check *c)
{
	if (++c->terms <= SPF_TERMS_MAX)
		return true;
	spf_abort(c, SPF_PERMERROR);
	return false;
}

static void spf_redirect(struct spf_check *c)
{
	struct spf_frame *f = &c->fr[c->depth];
	c->in_redirect = true;
	if (!spf_count_term(c) || spf_target(c, f->rec.redirect, f->rec.redirect_len) != 0)
		return;
	c->in_redirect = false;
	free(f->txt);
	spf_record_free(&f->rec);
	memset(f, 0, sizeof(*f));
	f->kind = c->depth == 0 ? SPF_FR_REDIRECT : SPF_FR_INCLUDE;
	memcpy(f->domain, c->target, sizeof(f->domain));
	spf_fetch_record(c);
}

/* Evaluates terms of the current frame until one needs DNS or the frame ends. */
static void spf_run(struct spf_check *c)
{
	for (;;) {
		struct spf_frame *f = &c->fr[c->depth];
		if (f->next == f->rec.n) {
			if (f->rec.redirect)
				spf_redirect(c);
			else
				spf_frame_done(c, SPF_NEUTRAL);
			return;
		}
		const struct spf_term *t = &f->rec.terms[f->next++];
		switch (t->mech) {
		case SPF_M_ALL:
			spf_frame_done(c, t->qual);
			return;
		case SPF_M_IP4:
		case SPF_M_IP6:
			if ((t->mech == SPF_M_IP6) == (c->family == AF_INET6) &&
			    spf_cidr_match(c->family, c->ip, t->ip, t->mech == SPF_M_IP6 ? t->cidr6 : t->cidr4)) {
				spf_frame_done(c, t->qual);
				return;
			}
			continue;
		default:
			break;
		}
		if (!spf_count_term(c) || spf_target(c, t->spec, t->spec_len) != 0)
			return;
		switch (t->mech) {
		case SPF_M_INCLUDE:
			if (c->depth + 1 >= SPF_FRAMES) { /* cannot happen under the term limit */
				spf_abort(c, SPF_PERMERROR);
				return;
			}
			c->depth++;
			memset(&c->fr[c->depth], 0, sizeof(c->fr[c->depth]));
			c->fr[c->depth].kind = SPF_FR_INCLUDE;
			memcpy(c->fr[c->depth].domain, c->target, sizeof(c->target));
			spf_fetch_record(c);
			return;
		case SPF_M_A:
			spf_lookup_addr(c, c->target, SPF_W_A, c->family);
			return;
		case SPF_M_EXISTS: /* always an A query, whatever the client's family (5.7) */
			spf_lookup_addr(c, c->target, SPF_W_EXISTS, AF_INET);
			return;
		case SPF_M_MX:
			c->wait = SPF_W_MX;
			c->in_flight = true;
			dns_lookup_mx(c->dns, c->target, spf_on_mx, c);
			return;
		default: /* SPF_M_PTR */
			spf_lookup_ptr(c, false);
			return;
		}
	}
}

/* ---- start, cancel ---- */

static void spf_defer_fired(evutil_socket_t fd, short what, void *arg)
{
	struct spf_check *c = arg;
	(void)fd;
	(void)what;
	spf_deliver(c, c->result, NULL);
}

static void spf_split_sender(struct spf_check *c, const struct spf_request *rq)
{
	const char *s = rq->sender ? rq->sender : "";
	const char *at = strrchr(s, '@');
	size_t llen = at ? (size_t)(at - s) : 0;
	const char *dom = at ? at + 1 : (s[0] ? s : rq->domain);
	c->local = llen ? xstrndup(s, llen) : xstrdup("postmaster");
	c->sender_domain = xstrdup(dom);
	struct buf b = {0};
	buf_printf(&b, "%s@%s", c->local, c->sender_domain);
	c->sender = xstrdup(buf_cstr(&b));
	buf_free(&b);
}

struct spf_check *spf_check_start(struct dns *dns, const struct spf_request *rq, spf_fn *fn, void *arg)
{
	struct spf_check *c = xcalloc(1, sizeof(*c));
	c->dns = dns;
	c->fn = fn;
	c->arg = arg;
	c->family = rq->ip.ss_family;
	if (c->family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)&rq->ip)->sin6_addr.s6_addr;
		if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a)) {
			c->family = AF_INET; /* an IPv4 client, whatever the socket (5) */
			memcpy(c->ip, a + 12, 4);
		} else {
			memcpy(c->ip, a, 16);
		}
	} else {
		memcpy(c->ip, &((const struct sockaddr_in *)&rq->ip)->sin_addr, 4);
	}
	spf_split_sender(c, rq);
	c->helo = xstrdup(rq->helo ? rq->helo : "");
	c->receiver = xstrdup(rq->receiver ? rq->receiver : "unknown");
	bool ok = (c->family == AF_INET || c->family == AF_INET6) && rq->domain &&
		  spf_domain_is_valid(rq->domain);
	if (ok) {
		size_t n = strlen(rq->domain);
		if (rq->domain[n - 1] == '.')
			n--;
		memcpy(c->fr[0].domain, rq->domain, n);
		spf_fetch_record(c);
		return c;
	}
	c->result = SPF_NONE; /* 4.3: a malformed domain is none */
	c->defer = evtimer_new(dns_event_base(dns), spf_defer_fired, c);
	static const struct timeval zero = {0, 0};
	if (!c->defer || evtimer_add(c->defer, &zero) < 0)
		abort();
	return c;
}

void spf_check_cancel(struct spf_check *c)
{
	if (!c)
		return;
	if (c->in_flight)
		c->cancelled = true; /* freed by the lookup's callback */
	else
		spf_free(c);
}

const char *spf_result_str(enum spf_result r)
{
	static const char *names[] = {"none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"};
	return (size_t)r < ARRAY_LEN(names) ? names[r] : "unknown";
}
