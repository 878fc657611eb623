/*
 * dns_wire: the DNS answers c-ares has no parser for, read from the wire
 * format (RFC 1035 4.1) with every length checked against the message:
 * TLSA (RFC 6698 2.1), the header bits a validating resolver sets, and
 * the TTL of an answer's records (c-ares' MX parser drops it).
 * Pure functions: no I/O, no allocation beyond the records returned.
 */
#include "dns.h"

#include <arpa/nameser.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_LEN 12
#define FLAG_AD 0x20 /* byte 3 of the header (RFC 4035 3.2.3) */
#define TYPE_TLSA 52

struct wire {
	const unsigned char *p;
	size_t n, off;
};

static int get16(struct wire *w, uint16_t *v)
{
	if (w->n - w->off < 2)
		return -1;
	*v = (uint16_t)(w->p[w->off] << 8 | w->p[w->off + 1]);
	w->off += 2;
	return 0;
}

/*
 * Skips a (possibly compressed) name. A pointer ends the name in place, so
 * no loop can follow one: skipping never jumps.
 */
static int skip_name(struct wire *w)
{
	for (size_t labels = 0; labels < 128; labels++) {
		if (w->off >= w->n)
			return -1;
		unsigned char len = w->p[w->off];
		if ((len & 0xc0) == 0xc0) {
			if (w->n - w->off < 2)
				return -1;
			w->off += 2;
			return 0;
		}
		if (len & 0xc0)
			return -1; /* the reserved label types */
		w->off++;
		if (len == 0)
			return 0;
		if (w->n - w->off < len)
			return -1;
		w->off += len;
	}
	return -1;
}

static int skip(struct wire *w, size_t n)
{
	if (w->n - w->off < n)
		return -1;
	w->off += n;
	return 0;
}

/* Past the header and the question section, to the first answer record; *an: the answer count. */
static int skip_question(struct wire *w, uint16_t *an)
{
	uint16_t qd;
	if (w->n < HEADER_LEN)
		return -1;
	w->off = 4;
	if (get16(w, &qd) < 0 || get16(w, an) < 0)
		return -1;
	w->off = HEADER_LEN;
	for (uint16_t i = 0; i < qd; i++)
		if (skip_name(w) < 0 || skip(w, 4) < 0)
			return -1;
	return 0;
}

/* One TLSA rdata into r (data copied). Records with an empty association are skipped (returns 1). */
static int read_tlsa(const unsigned char *rd, uint16_t len, struct dns_tlsa *r)
{
	if (len < 3)
		return -1;
	if (len == 3)
		return 1;
	r->usage = rd[0];
	r->selector = rd[1];
	r->mtype = rd[2];
	r->len = (uint16_t)(len - 3);
	r->data = malloc(r->len);
	if (!r->data)
		abort();
	memcpy(r->data, rd + 3, r->len);
	return 0;
}

int dns_parse_tlsa(const unsigned char *msg, size_t n, bool *secure, struct dns_tlsa **out, size_t *nout)
{
	struct wire w = {msg, n, 0};
	*out = NULL;
	*nout = 0;
	*secure = false;
	uint16_t an;
	if (skip_question(&w, &an) < 0)
		return -EINVAL;
	struct dns_tlsa *recs = calloc(DNS_TLSA_MAX, sizeof(*recs)); /* not an: the count is the peer's word */
	if (!recs)
		abort();
	size_t got = 0;
	for (uint16_t i = 0; i < an; i++) {
		uint16_t type, class, rdlen;
		if (skip_name(&w) < 0 || get16(&w, &type) < 0 || get16(&w, &class) < 0 || skip(&w, 4) < 0 ||
		    get16(&w, &rdlen) < 0 || w.n - w.off < rdlen)
			goto bad;
		const unsigned char *rd = msg + w.off;
		w.off += rdlen;
		if (type != TYPE_TLSA || class != ns_c_in || got >= DNS_TLSA_MAX)
			continue; /* a CNAME on the way, or more than we keep */
		int rc = read_tlsa(rd, rdlen, &recs[got]);
		if (rc < 0)
			goto bad;
		got += rc == 0;
	}
	*secure = (msg[3] & FLAG_AD) != 0;
	*out = recs;
	*nout = got;
	return 0;
bad:
	dns_tlsa_free(recs, got);
	return -EINVAL;
}

void dns_tlsa_free(struct dns_tlsa *r, size_t n)
{
	for (size_t i = 0; r && i < n; i++)
		free(r[i].data);
	free(r);
}

int dns_answer_ttl(const unsigned char *msg, size_t n, uint16_t type, uint32_t *ttl)
{
	struct wire w = {msg, n, 0};
	uint16_t an;
	uint32_t least = 0;
	bool found = false;
	if (skip_question(&w, &an) < 0)
		return -EINVAL;
	for (uint16_t i = 0; i < an; i++) {
		uint16_t rtype, class, hi, lo, rdlen;
		if (skip_name(&w) < 0 || get16(&w, &rtype) < 0 || get16(&w, &class) < 0 || get16(&w, &hi) < 0 ||
		    get16(&w, &lo) < 0 || get16(&w, &rdlen) < 0 || skip(&w, rdlen) < 0)
			return -EINVAL; /* *ttl untouched: a malformed message says nothing */
		uint32_t t = (uint32_t)hi << 16 | lo;
		if (rtype == type && class == ns_c_in && (!found || t < least)) {
			least = t; /* one RRset has one TTL (RFC 2181 5.2); the smallest if a server mixes them */
			found = true;
		}
	}
	if (!found)
		return -ENOENT;
	*ttl = least;
	return 0;
}
