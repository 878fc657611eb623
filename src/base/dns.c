/*
 * dns: c-ares on the libevent loop. Owns one ares channel, the events for
 * its sockets (a small fd table fed by the sock-state callback) and one
 * timer re-armed from ares_timeout() after every call into c-ares.
 * Called by the forward side (route, dane, mta_sts) through dns_lookup_*.
 *
 * Invariants:
 * - every lookup is a struct dns_query on d->queries until its callback
 *   runs; the callback runs exactly once, never inside dns_lookup_*: a
 *   result known at submit time (IP literal, bad name, c-ares failing
 *   synchronously) is delivered from a zero timer;
 * - arrays handed to callbacks are freed when the callback returns;
 * - dns_free delivers DNS_CANCELLED to every live query before it returns.
 *   Called from inside a callback that c-ares is running, the channel is
 *   destroyed only once c-ares has unwound (d->depth == 0); queries still
 *   owned by c-ares are kept as orphans and freed by its final callback.
 * Error policy: out of memory is fatal; answers are classified, never
 * trusted: names are length-checked and lower-cased before use.
 */
#include "dns.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <ares.h>
#include <assert.h>
#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"

#define DNS_TRIES 2
#define DNS_DEFAULT_TIMEOUT_MS 5000

enum dns_kind { DNS_Q_MX, DNS_Q_ADDRS, DNS_Q_TXT, DNS_Q_TLSA, DNS_Q_PTR };

struct dns_sock {
	ares_socket_t fd;
	short what;
	struct event *ev;
};

struct dns_query {
	struct dns *d;
	struct dns_query *prev, *next;
	enum dns_kind kind;
	dns_mx_fn *mx_fn;
	dns_mx_ttl_fn *mx_ttl_fn; /* DNS_Q_MX asked with dns_lookup_mx_ttl */
	dns_addr_fn *addr_fn;
	dns_txt_fn *txt_fn;
	dns_tlsa_fn *tlsa_fn;
	dns_ptr_fn *ptr_fn;
	void *arg;
	uint16_t port;
	int pending;            /* ares queries not yet called back */
	bool orphan;            /* cancelled; c-ares still holds it */
	struct event *defer;    /* zero timer for results known at submit */
	enum dns_status st, st4; /* st: MX or AAAA; st4: A */
	struct dns_mx *mx;
	struct dns_addr *a6, *a4;
	char **txt;             /* DNS_Q_TXT: one string per record; DNS_Q_PTR: names */
	struct dns_tlsa *tlsa;  /* DNS_Q_TLSA */
	bool secure;            /* DNS_Q_MX, DNS_Q_TLSA: the AD bit */
	uint16_t rrtype;        /* DNS_Q_PTR: the type whose names are read (PTR, or CNAME) */
	uint32_t ttl;           /* DNS_Q_MX: the RRset's TTL */
	size_t n, n4;           /* n: MX or AAAA count; n4: A count */
	int64_t started_ms;     /* for the latency histogram */
};

struct dns {
	struct event_base *base;
	ares_channel ch;
	struct event *timer;
	struct dns_sock *socks;
	size_t nsocks, capsocks;
	struct dns_query *queries;
	int depth;              /* > 0 while c-ares is running our callbacks */
	bool submitting;        /* inside ares_query: defer results */
	bool closing;
	bool trust_ad;          /* every server is on loopback: its AD bit cannot be forged on the way */
};

/* ---- sockets and timer ---- */

static void dns_after_ares(struct dns *d);

/* A socket is ready, or (fd -1, EV_TIMEOUT) the timer fired. */
static void dns_ready(evutil_socket_t fd, short what, void *arg)
{
	struct dns *d = arg;
	d->depth++;
	ares_process_fd(d->ch, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	d->depth--;
	dns_after_ares(d);
}

static void dns_rearm(struct dns *d)
{
	struct timeval tv, *t = ares_timeout(d->ch, NULL, &tv);
	if (t)
		evtimer_add(d->timer, t);
	else
		evtimer_del(d->timer);
}

/* c-ares tells us what it waits for on fd; (0, 0) means it closed fd. */
static void dns_sock_state(void *arg, ares_socket_t fd, int readable, int writable)
{
	struct dns *d = arg;
	short what = (short)((readable ? EV_READ : 0) | (writable ? EV_WRITE : 0));
	size_t i = 0;
	while (i < d->nsocks && d->socks[i].fd != fd)
		i++;
	if (i < d->nsocks) {
		if (d->socks[i].what == what)
			return;
		event_free(d->socks[i].ev); /* safe even from its own callback */
		if (!what) {
			d->socks[i] = d->socks[--d->nsocks];
			return;
		}
	} else {
		if (!what)
			return;
		if (d->nsocks == d->capsocks) {
			d->capsocks = d->capsocks ? 2 * d->capsocks : 4;
			d->socks = xrealloc(d->socks, d->capsocks * sizeof(*d->socks));
		}
		d->nsocks++;
	}
	d->socks[i].fd = fd;
	d->socks[i].what = what;
	d->socks[i].ev = event_new(d->base, fd, what | EV_PERSIST, dns_ready, d);
	if (!d->socks[i].ev || event_add(d->socks[i].ev, NULL) < 0)
		abort();
}

/* ---- queries ---- */

static void dns_query_free(struct dns_query *q)
{
	if (q->defer)
		event_free(q->defer);
	free(q->mx);
	free(q->a6);
	free(q->a4);
	for (size_t i = 0; q->txt && i < q->n; i++)
		free(q->txt[i]);
	free(q->txt);
	if (q->kind == DNS_Q_TLSA)
		dns_tlsa_free(q->tlsa, q->n);
	free(q);
}

static void dns_unlink(struct dns_query *q)
{
	struct dns *d = q->d;
	if (q->prev)
		q->prev->next = q->next;
	else
		d->queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	q->prev = q->next = NULL;
}

/*
 * AAAA then A. Any address wins over the other family's failure; with none,
 * the more cautious status wins (a temporary failure may hide addresses).
 */
static void dns_deliver_addrs(struct dns_query *q)
{
	static const int rank[] = {
		[DNS_OK] = 0, [DNS_NODATA] = 1, [DNS_BADNAME] = 2,
		[DNS_NXDOMAIN] = 3, [DNS_TEMPFAIL] = 4, [DNS_CANCELLED] = 5,
	};
	size_t n = q->n + q->n4;
	if (n == 0) {
		enum dns_status st = rank[q->st] >= rank[q->st4] ? q->st : q->st4;
		q->addr_fn(q->arg, st == DNS_OK ? DNS_NODATA : st, NULL, 0);
		return;
	}
	struct dns_addr *all = xcalloc(n, sizeof(*all));
	if (q->n)
		memcpy(all, q->a6, q->n * sizeof(*all));
	if (q->n4)
		memcpy(all + q->n, q->a4, q->n4 * sizeof(*all));
	q->addr_fn(q->arg, DNS_OK, all, n);
	free(all);
}

/* Unlinks q, runs its callback, frees it. The callback may call dns_free. */
static void dns_deliver(struct dns_query *q)
{
	dns_unlink(q);
	metrics_observe(METRIC_H_DNS, (double)(clock_mono_ms() - q->started_ms) / 1000.0);
	bool ok = q->st == DNS_OK;
	bool answered = q->st == DNS_OK || q->st == DNS_NODATA || q->st == DNS_NXDOMAIN;
	bool secure = answered && q->secure && q->d->trust_ad;
	if (q->kind == DNS_Q_MX && q->mx_ttl_fn) {
		q->mx_ttl_fn(q->arg, q->st, ok ? q->mx : NULL, ok ? q->n : 0, ok ? q->ttl : 0);
	} else if (q->kind == DNS_Q_MX) {
		q->mx_fn(q->arg, q->st, secure, ok ? q->mx : NULL, ok ? q->n : 0);
	} else if (q->kind == DNS_Q_TLSA) {
		q->tlsa_fn(q->arg, q->st, secure, ok ? q->tlsa : NULL, ok ? q->n : 0);
	} else if (q->kind == DNS_Q_TXT) {
		q->txt_fn(q->arg, q->st, ok ? (const char *const *)q->txt : NULL, ok ? q->n : 0);
	} else if (q->kind == DNS_Q_PTR) {
		q->ptr_fn(q->arg, q->st, ok ? (const char *const *)q->txt : NULL, ok ? q->n : 0);
	} else {
		dns_deliver_addrs(q);
	}
	dns_query_free(q);
}

static void dns_defer_fired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	dns_deliver(arg);
}

static void dns_defer(struct dns_query *q)
{
	static const struct timeval zero = {0, 0};
	q->defer = evtimer_new(q->d->base, dns_defer_fired, q);
	if (!q->defer || evtimer_add(q->defer, &zero) < 0)
		abort();
}

/* One ares answer is in. Returns true when q was an orphan (now maybe freed). */
static bool dns_answer_in(struct dns_query *q)
{
	assert(q->pending > 0);
	q->pending--;
	if (!q->orphan)
		return false;
	if (!q->pending)
		dns_query_free(q);
	return true;
}

static void dns_query_done(struct dns_query *q)
{
	if (q->pending)
		return;
	if (q->d->submitting)
		dns_defer(q);
	else
		dns_deliver(q);
}

static enum dns_status dns_map(int ares_status)
{
	switch (ares_status) {
	case ARES_SUCCESS: return DNS_OK;
	case ARES_ENOTFOUND: return DNS_NXDOMAIN;
	case ARES_ENODATA: return DNS_NODATA;
	case ARES_EBADNAME: return DNS_BADNAME;
	case ARES_EDESTRUCTION:
	case ARES_ECANCELLED: return DNS_CANCELLED;
	default: return DNS_TEMPFAIL;
	}
}

/* ---- answers ---- */

/* Copies an answer name: lower-case, no trailing dot; false if too long. */
static bool dns_copy_host(char *out, size_t n, const char *host)
{
	size_t len = strlen(host);
	if (len && host[len - 1] == '.')
		len--;
	if (len >= n)
		return false;
	memcpy(out, host, len);
	out[len] = '\0';
	ascii_lower(out, len);
	return true;
}

static enum dns_status dns_parse_mx(struct dns_query *q, unsigned char *abuf, int alen)
{
	struct ares_mx_reply *list = NULL;
	int rc = ares_parse_mx_reply(abuf, alen, &list);
	if (rc != ARES_SUCCESS)
		return dns_map(rc);
	size_t cap = 0;
	for (struct ares_mx_reply *r = list; r; r = r->next)
		cap++;
	q->mx = xcalloc(cap ? cap : 1, sizeof(*q->mx));
	for (struct ares_mx_reply *r = list; r; r = r->next) {
		struct dns_mx m = {.pref = r->priority};
		if (!dns_copy_host(m.host, sizeof(m.host), r->host))
			continue; /* not a usable host name */
		size_t i = q->n++; /* insertion sort: stable, n is small */
		for (; i > 0 && q->mx[i - 1].pref > m.pref; i--)
			q->mx[i] = q->mx[i - 1];
		q->mx[i] = m;
	}
	ares_free_data(list);
	if (dns_answer_ttl(abuf, (size_t)alen, ns_t_mx, &q->ttl) < 0)
		q->ttl = 0;
	/* Records present but none usable: a broken zone, not "no MX". */
	return q->n ? DNS_OK : DNS_TEMPFAIL;
}

/*
 * ares_send hands over the answer whatever its RCODE (RFC 1035 4.1.1):
 * classified here as ares_query would, plus the AD bit (RFC 4035 3.2.3).
 * NOERROR is DNS_OK for the caller to parse; the others are final.
 */
static enum dns_status dns_rcode(const unsigned char *abuf, int alen, bool *secure)
{
	*secure = false;
	if (alen < 12)
		return DNS_TEMPFAIL;
	unsigned rcode = abuf[3] & 0x0f;
	if (rcode != 0 && rcode != 3)
		return DNS_TEMPFAIL; /* SERVFAIL (also a bogus answer), REFUSED, ... */
	*secure = (abuf[3] & 0x20) != 0;
	return rcode == 3 ? DNS_NXDOMAIN : DNS_OK;
}

static void dns_on_mx(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	(void)timeouts;
	if (dns_answer_in(q))
		return;
	q->st = status == ARES_SUCCESS ? dns_rcode(abuf, alen, &q->secure) : dns_map(status);
	if (q->st == DNS_OK)
		q->st = dns_parse_mx(q, abuf, alen);
	dns_query_done(q);
}

/*
 * One string per TXT record: c-ares (ares_parse_txt_ext_reply) gives each
 * record's character-strings in order, `record_start` marking the first;
 * they are joined without separator (RFC 7208 3.3, RFC 8461 3.1).
 */
static enum dns_status dns_parse_txt(struct dns_query *q, unsigned char *abuf, int alen)
{
	struct ares_txt_ext *list = NULL;
	int rc = ares_parse_txt_reply_ext(abuf, alen, &list);
	if (rc != ARES_SUCCESS)
		return dns_map(rc);
	size_t cap = 0;
	for (struct ares_txt_ext *r = list; r; r = r->next)
		cap += r->record_start ? 1 : 0;
	q->txt = xcalloc(cap ? cap : 1, sizeof(*q->txt));
	struct buf b = {0};
	for (struct ares_txt_ext *r = list; r; r = r->next) {
		/*
		 * A NUL inside a string would cut it short where the caller
		 * reads it, maybe into a valid record (SPF's "a:x.example\0"):
		 * it reads as DEL, which no record syntax here accepts.
		 */
		size_t len = r->length, at = b.len;
		if (b.len + len <= DNS_TXT_MAX) {
			buf_append(&b, r->txt, len);
			for (size_t i = at; i < b.len; i++)
				if (b.data[i] == 0)
					b.data[i] = 0x7f;
		}
		if (!r->next || r->next->record_start) {
			if (q->n < cap)
				q->txt[q->n++] = xstrdup(buf_cstr(&b));
			buf_reset(&b);
		}
	}
	buf_free(&b);
	ares_free_data(list);
	return q->n ? DNS_OK : DNS_NODATA;
}

static void dns_on_txt(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	(void)timeouts;
	if (dns_answer_in(q))
		return;
	q->st = status == ARES_SUCCESS ? dns_parse_txt(q, abuf, alen) : dns_map(status);
	dns_query_done(q);
}

/*
 * The PTR names of an answer (RFC 1035 3.3.12), or its CNAME target, read with c-ares' name
 * expansion (which checks every length and pointer): its
 * ares_parse_ptr_reply wants the address back and folds the names into a
 * hostent.
 */
static enum dns_status dns_parse_ptr(struct dns_query *q, unsigned char *abuf, int alen)
{
	if (alen < 12)
		return DNS_TEMPFAIL;
	unsigned qd = (unsigned)(abuf[4] << 8 | abuf[5]), an = (unsigned)(abuf[6] << 8 | abuf[7]);
	const unsigned char *p = abuf + 12, *end = abuf + alen;
	char *name = NULL;
	long len = 0;
	for (unsigned i = 0; i < qd; i++, p += len + 4) {
		if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
			return DNS_TEMPFAIL;
		ares_free_string(name);
		if (end - p < len + 4)
			return DNS_TEMPFAIL;
	}
	q->txt = xcalloc(DNS_PTR_MAX, sizeof(*q->txt));
	for (unsigned i = 0; i < an; i++) {
		if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
			return DNS_TEMPFAIL;
		ares_free_string(name);
		p += len;
		if (end - p < 10)
			return DNS_TEMPFAIL;
		unsigned type = (unsigned)(p[0] << 8 | p[1]), cls = (unsigned)(p[2] << 8 | p[3]);
		long rdlen = p[8] << 8 | p[9];
		p += 10;
		if (end - p < rdlen)
			return DNS_TEMPFAIL;
		if (type == q->rrtype && cls == ns_c_in && q->n < DNS_PTR_MAX) {
			if (ares_expand_name(p, abuf, alen, &name, &len) != ARES_SUCCESS)
				return DNS_TEMPFAIL;
			char host[256];
			if (dns_copy_host(host, sizeof(host), name) && host[0])
				q->txt[q->n++] = xstrdup(host);
			ares_free_string(name);
		}
		p += rdlen;
	}
	return q->n ? DNS_OK : DNS_NODATA;
}

static void dns_on_ptr(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	(void)timeouts;
	if (dns_answer_in(q))
		return;
	q->st = status == ARES_SUCCESS ? dns_parse_ptr(q, abuf, alen) : dns_map(status);
	dns_query_done(q);
}

static enum dns_status dns_read_tlsa(struct dns_query *q, unsigned char *abuf, int alen)
{
	enum dns_status st = dns_rcode(abuf, alen, &q->secure);
	if (st == DNS_TEMPFAIL)
		return st;
	size_t n = 0;
	bool secure;
	if (dns_parse_tlsa(abuf, (size_t)alen, &secure, &q->tlsa, &n) < 0)
		return DNS_TEMPFAIL;
	q->n = n;
	return st == DNS_NXDOMAIN ? st : n ? DNS_OK : DNS_NODATA;
}

static void dns_on_tlsa(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;
	(void)timeouts;
	if (dns_answer_in(q))
		return;
	q->st = status == ARES_SUCCESS ? dns_read_tlsa(q, abuf, alen) : dns_map(status);
	dns_query_done(q);
}

static void dns_set_addr(struct dns_addr *a, int family, const void *ip, uint16_t port)
{
	memset(a, 0, sizeof(*a));
	if (family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		memcpy(&s6->sin6_addr, ip, sizeof(s6->sin6_addr));
		a->len = sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		memcpy(&s4->sin_addr, ip, sizeof(s4->sin_addr));
		a->len = sizeof(*s4);
	}
}

static enum dns_status dns_parse_addrs(struct dns_query *q, bool v6, unsigned char *abuf, int alen)
{
	struct hostent *he = NULL;
	int rc = v6 ? ares_parse_aaaa_reply(abuf, alen, &he, NULL, NULL)
		    : ares_parse_a_reply(abuf, alen, &he, NULL, NULL);
	if (rc != ARES_SUCCESS)
		return dns_map(rc);
	size_t n = 0;
	while (he->h_addr_list[n])
		n++;
	struct dns_addr *out = n ? xcalloc(n, sizeof(*out)) : NULL;
	for (size_t i = 0; i < n; i++)
		dns_set_addr(&out[i], he->h_addrtype, he->h_addr_list[i], q->port);
	ares_free_hostent(he);
	*(v6 ? &q->a6 : &q->a4) = out;
	*(v6 ? &q->n : &q->n4) = n;
	return n ? DNS_OK : DNS_NODATA;
}

static void dns_on_addr(struct dns_query *q, bool v6, int status, unsigned char *abuf, int alen)
{
	if (dns_answer_in(q))
		return;
	enum dns_status st = status == ARES_SUCCESS ? dns_parse_addrs(q, v6, abuf, alen)
						    : dns_map(status);
	*(v6 ? &q->st : &q->st4) = st;
	dns_query_done(q);
}

static void dns_on_aaaa(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	dns_on_addr(arg, true, status, abuf, alen);
}

static void dns_on_a(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	(void)timeouts;
	dns_on_addr(arg, false, status, abuf, alen);
}

/* ---- lookups ---- */

/* At most 253 characters plus an optional final dot, no empty label. */
static bool dns_name_is_valid(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '.')
			label++;
		else if (label == 0)
			return false;
		else
			label = 0;
	}
	return label > 0;
}

static struct dns_query *dns_query_new(struct dns *d, enum dns_kind kind, void *arg)
{
	assert(!d->closing); /* no lookups after dns_free, even from a callback */
	struct dns_query *q = xcalloc(1, sizeof(*q));
	q->d = d;
	q->kind = kind;
	q->arg = arg;
	q->started_ms = clock_mono_ms();
	q->next = d->queries;
	if (q->next)
		q->next->prev = q;
	d->queries = q;
	return q;
}

static void dns_submit(struct dns_query *q, const char *name, int type, ares_callback cb)
{
	struct dns *d = q->d;
	bool was = d->submitting;
	d->submitting = true;
	ares_query(d->ch, name, ns_c_in, type, cb, q);
	d->submitting = was;
}

/*
 * c-ares cannot ask for the AD bit, so MX and TLSA queries are built here:
 * recursion desired, EDNS0 with a 1232-byte buffer (TLSA answers can be
 * long), and AD set, which asks a validating resolver to say whether it
 * validated (RFC 6840 5.7). DANE needs both answers' status (RFC 7672
 * 2.2.1: the MX RRset, 2.2.2: the TLSA RRset). The name is valid.
 */
static void dns_submit_ad(struct dns_query *q, const char *name, int type, ares_callback cb)
{
	struct dns *d = q->d;
	unsigned char *qbuf = NULL;
	int qlen = 0;
	if (ares_create_query(name, ns_c_in, type, 0, 1, &qbuf, &qlen, 1232) != ARES_SUCCESS) {
		q->st = DNS_BADNAME;
		dns_defer(q);
		return;
	}
	qbuf[3] |= 0x20;
	q->pending = 1;
	bool was = d->submitting;
	d->submitting = true;
	ares_send(d->ch, qbuf, qlen, cb, q);
	d->submitting = was;
	ares_free_string(qbuf);
	dns_rearm(d);
}

static void dns_submit_mx(struct dns_query *q, const char *domain)
{
	if (!dns_name_is_valid(domain)) {
		q->st = DNS_BADNAME;
		dns_defer(q);
		return;
	}
	dns_submit_ad(q, domain, ns_t_mx, dns_on_mx);
}

void dns_lookup_mx(struct dns *d, const char *domain, dns_mx_fn *fn, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_Q_MX, arg);
	q->mx_fn = fn;
	dns_submit_mx(q, domain);
}

void dns_lookup_mx_ttl(struct dns *d, const char *domain, dns_mx_ttl_fn *fn, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_Q_MX, arg);
	q->mx_ttl_fn = fn;
	dns_submit_mx(q, domain);
}

void dns_lookup_tlsa(struct dns *d, const char *name, dns_tlsa_fn *fn, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_Q_TLSA, arg);
	q->tlsa_fn = fn;
	if (!dns_name_is_valid(name)) {
		q->st = DNS_BADNAME;
		dns_defer(q);
		return;
	}
	dns_submit_ad(q, name, 52 /* TLSA */, dns_on_tlsa);
}

void dns_lookup_txt(struct dns *d, const char *name, dns_txt_fn *fn, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_Q_TXT, arg);
	q->txt_fn = fn;
	if (!dns_name_is_valid(name)) {
		q->st = DNS_BADNAME;
		dns_defer(q);
		return;
	}
	q->pending = 1;
	dns_submit(q, name, ns_t_txt, dns_on_txt);
	dns_rearm(d);
}

void dns_lookup_addrs(struct dns *d, const char *host, uint16_t port, dns_addr_fn *fn, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_Q_ADDRS, arg);
	unsigned char ip[sizeof(struct in6_addr)];
	q->addr_fn = fn;
	q->port = port;
	if (inet_pton(AF_INET6, host, ip) == 1 || inet_pton(AF_INET, host, ip) == 1) {
		bool v6 = strchr(host, ':') != NULL;
		struct dns_addr *a = xcalloc(1, sizeof(*a));
		dns_set_addr(a, v6 ? AF_INET6 : AF_INET, ip, port);
		*(v6 ? &q->a6 : &q->a4) = a;
		*(v6 ? &q->n : &q->n4) = 1;
		dns_defer(q);
		return;
	}
	if (!dns_name_is_valid(host)) {
		q->st = DNS_BADNAME;
		dns_defer(q);
		return;
	}
	q->pending = 2;
	dns_submit(q, host, ns_t_aaaa, dns_on_aaaa);
	dns_submit(q, host, ns_t_a, dns_on_a);
	dns_rearm(d);
}

void dns_lookup_family(struct dns *d, const char *host, int family, dns_addr_fn *fn, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_Q_ADDRS, arg);
	bool v6 = family == AF_INET6;
	q->addr_fn = fn;
	/* The family not asked for reads as "no record": the least status dns_deliver_addrs ranks. */
	*(v6 ? &q->st4 : &q->st) = DNS_NODATA;
	if ((family != AF_INET && !v6) || !dns_name_is_valid(host)) {
		*(v6 ? &q->st : &q->st4) = DNS_BADNAME;
		dns_defer(q);
		return;
	}
	q->pending = 1;
	if (v6)
		dns_submit(q, host, ns_t_aaaa, dns_on_aaaa);
	else
		dns_submit(q, host, ns_t_a, dns_on_a);
	dns_rearm(d);
}

/* The address's nibbles or octets in reverse, then suffix (NULL: the .arpa tree of its family). */
static int dns_reversed_under(const struct sockaddr *sa, const char *suffix, char *out, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	struct buf b = {0};
	if (sa->sa_family == AF_INET) {
		const unsigned char *a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		buf_printf(&b, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0], suffix ? suffix : "in-addr.arpa");
	} else if (sa->sa_family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		for (int i = 15; i >= 0; i--)
			buf_printf(&b, "%c.%c.", hex[a[i] & 15], hex[a[i] >> 4]);
		buf_append_str(&b, suffix ? suffix : "ip6.arpa");
	} else {
		return -EINVAL;
	}
	int rc = fmt(out, n, "%s", buf_cstr(&b));
	buf_free(&b);
	return rc < 0 ? -EINVAL : 0;
}

int dns_reverse_name(const struct sockaddr *sa, char *out, size_t n)
{
	return dns_reversed_under(sa, NULL, out, n);
}

int dns_list_name(const struct sockaddr *sa, const char *zone, char *out, size_t n)
{
	return dns_reversed_under(sa, zone, out, n);
}

void dns_lookup_ptr(struct dns *d, const struct sockaddr *sa, dns_ptr_fn *fn, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_Q_PTR, arg);
	char name[80];
	q->ptr_fn = fn;
	q->rrtype = ns_t_ptr;
	if (dns_reverse_name(sa, name, sizeof(name)) < 0) {
		q->st = DNS_BADNAME;
		dns_defer(q);
		return;
	}
	q->pending = 1;
	dns_submit(q, name, ns_t_ptr, dns_on_ptr);
	dns_rearm(d);
}

/* A PTR-kind query: the CNAME's rdata is one name, read the same way. */
void dns_lookup_cname(struct dns *d, const char *name, dns_ptr_fn *fn, void *arg)
{
	struct dns_query *q = dns_query_new(d, DNS_Q_PTR, arg);
	q->ptr_fn = fn;
	q->rrtype = ns_t_cname;
	if (!dns_name_is_valid(name)) {
		q->st = DNS_BADNAME;
		dns_defer(q);
		return;
	}
	q->pending = 1;
	dns_submit(q, name, ns_t_cname, dns_on_ptr);
	dns_rearm(d);
}

struct event_base *dns_event_base(const struct dns *d)
{
	return d->base;
}

/* ---- open and close ---- */

/* "IP", "IP:PORT", "[IPv6]:PORT" -> the one-server CSV c-ares takes. */
static int dns_resolver_csv(const char *s, char *out, size_t n)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *end = NULL;
	unsigned char ip[sizeof(struct in6_addr)];
	uint64_t p = 53;
	bool v6 = inet_pton(AF_INET6, s, ip) == 1;
	if (!v6 && s[0] == '[') {
		s++;
		end = strchr(s, ']');
		if (!end || (end[1] != ':' && end[1] != '\0'))
			return -EINVAL;
		port = end[1] ? end + 2 : NULL;
		v6 = true;
	} else if (!v6 && (end = strchr(s, ':')) != NULL) {
		port = end + 1;
	}
	size_t len = end ? (size_t)(end - s) : strlen(s);
	if (len >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, len);
	host[len] = '\0';
	if (inet_pton(v6 ? AF_INET6 : AF_INET, host, ip) != 1)
		return -EINVAL;
	/* c-ares 1.18 wraps out-of-range ports silently: check them here. */
	if (port && parse_uint(port, 1, 65535, &p) < 0)
		return -EINVAL;
	return v6 ? fmt(out, n, "[%s]:%u", host, (unsigned)p)
		  : fmt(out, n, "%s:%u", host, (unsigned)p);
}

static int dns_channel_open(struct dns *d, const char *resolver, int timeout_ms)
{
	struct ares_options o = {0};
	o.sock_state_cb = dns_sock_state;
	o.sock_state_cb_data = d;
	o.timeout = timeout_ms > 0 ? timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
	o.tries = DNS_TRIES;
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
	char csv[64];
	if (resolver && dns_resolver_csv(resolver, csv, sizeof(csv)) < 0)
		return -EINVAL;
	int rc = ares_init_options(&d->ch, &o, mask);
	if (rc != ARES_SUCCESS) {
		log_err("dns", "ares_init_options: %s", ares_strerror(rc));
		return rc == ARES_ENOMEM ? -ENOMEM : -EIO;
	}
	if (resolver && (rc = ares_set_servers_ports_csv(d->ch, csv)) != ARES_SUCCESS) {
		ares_destroy(d->ch);
		return -EINVAL;
	}
	return 0;
}

/*
 * The AD bit travels unsigned: only a resolver on this host can be believed
 * (RFC 6698 A.3, RFC 7672 2.1.1; Postfix asks the same). Any other server
 * in the list and DNSSEC is off: DANE never applies.
 */
static bool dns_servers_are_local(ares_channel ch)
{
	struct ares_addr_port_node *list = NULL;
	if (ares_get_servers_ports(ch, &list) != ARES_SUCCESS)
		return false;
	bool local = list != NULL;
	for (struct ares_addr_port_node *n = list; n; n = n->next) {
		if (n->family == AF_INET)
			local &= (ntohl(n->addr.addr4.s_addr) >> 24) == 127;
		else
			local &= n->family == AF_INET6 && memcmp(&n->addr.addr6, &in6addr_loopback, 16) == 0;
	}
	ares_free_data(list);
	return local;
}

bool dns_trusts_dnssec(const struct dns *d)
{
	return d->trust_ad;
}

int dns_open(struct event_base *base, const char *resolver, int timeout_ms, struct dns **out)
{
	int rc = ares_library_init(ARES_LIB_INIT_ALL);
	if (rc != ARES_SUCCESS) {
		log_err("dns", "ares_library_init: %s", ares_strerror(rc));
		return -EIO;
	}
	struct dns *d = xcalloc(1, sizeof(*d));
	d->base = base;
	d->timer = evtimer_new(base, dns_ready, d);
	if (!d->timer)
		abort();
	if ((rc = dns_channel_open(d, resolver, timeout_ms)) < 0) {
		event_free(d->timer);
		free(d);
		ares_library_cleanup();
		return rc;
	}
	d->trust_ad = dns_servers_are_local(d->ch);
	if (!d->trust_ad)
		log_info("dns", "the resolver is not on loopback: DNSSEC answers are not trusted, DANE is off");
	*out = d;
	return 0;
}

/* Only at depth 0: c-ares calls back orphans with ARES_EDESTRUCTION here. */
static void dns_destroy(struct dns *d)
{
	ares_destroy(d->ch);
	for (size_t i = 0; i < d->nsocks; i++)
		event_free(d->socks[i].ev);
	free(d->socks);
	event_free(d->timer);
	free(d);
	ares_library_cleanup();
}

static void dns_after_ares(struct dns *d)
{
	if (d->depth > 0)
		return;
	if (d->closing)
		dns_destroy(d);
	else
		dns_rearm(d);
}

/* Runs q's callback with DNS_CANCELLED, whatever its kind. */
static void dns_cancel(struct dns_query *q)
{
	switch (q->kind) {
	case DNS_Q_MX: q->mx_fn(q->arg, DNS_CANCELLED, false, NULL, 0); break;
	case DNS_Q_TXT: q->txt_fn(q->arg, DNS_CANCELLED, NULL, 0); break;
	case DNS_Q_TLSA: q->tlsa_fn(q->arg, DNS_CANCELLED, false, NULL, 0); break;
	case DNS_Q_PTR: q->ptr_fn(q->arg, DNS_CANCELLED, NULL, 0); break;
	default: q->addr_fn(q->arg, DNS_CANCELLED, NULL, 0); break;
	}
}

void dns_free(struct dns *d)
{
	if (!d || d->closing)
		return;
	d->closing = true;
	struct dns_query *q;
	while ((q = d->queries) != NULL) {
		dns_unlink(q);
		q->orphan = q->pending > 0;
		dns_cancel(q);
		if (!q->orphan)
			dns_query_free(q);
	}
	if (d->depth == 0)
		dns_destroy(d);
}

const char *dns_status_str(enum dns_status st)
{
	static const char *names[] = {"ok", "nxdomain", "nodata", "tempfail", "badname", "cancelled"};
	return (size_t)st < ARRAY_LEN(names) ? names[st] : "unknown";
}
