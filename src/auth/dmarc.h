/*
 * dmarc: RFC 7489 for one message. The author domain comes from the From:
 * header (exactly one From: with exactly one address, else permerror); the
 * policy record from _dmarc.<author domain>, else _dmarc.<organisational
 * domain> (libpsl with Debian's public suffix list); alignment of SPF (the
 * MAIL FROM domain, when SPF passed) and DKIM (each passing d=), relaxed or
 * strict per adkim/aspf; p, sp and pct (pct sampled with a random draw).
 *
 * The callback runs exactly once, never from inside dmarc_check_start;
 * dmarc_check_cancel withdraws it.
 */
#ifndef MXV_DMARC_H
#define MXV_DMARC_H

#include <stdbool.h>
#include <stddef.h>

#include "dkim.h"
#include "spf.h"

struct dns;
struct dmarc_check;

enum dmarc_result { DMARC_NONE = 0, DMARC_PASS, DMARC_FAIL, DMARC_TEMPERROR, DMARC_PERMERROR };
enum dmarc_policy { DMARC_P_NONE = 0, DMARC_P_QUARANTINE, DMARC_P_REJECT };

struct dmarc_input {
	const char *const *from_values; /* every From: header's value, unfolded, as received */
	size_t nfrom;
	bool from_cut;                  /* a From: value was too long to keep whole: a permerror */
	const char *mail_from_domain;   /* the RFC5321.MailFrom domain (HELO name for a null sender) */
	enum spf_result spf;            /* its SPF result */
	const struct dkim_sig_result *dkim;
	size_t ndkim;
};

struct dmarc_outcome {
	enum dmarc_result result;
	enum dmarc_policy policy;   /* what the domain asks for a failure (after sp= and pct=) */
	char header_from[256];      /* the author domain, for header.from */
	bool bad_author;            /* permerror because From: has not exactly one author domain (none, several,
				       unparseable, too long): RFC 7489 6.6.1 lets a receiver refuse it */
	const char *why;            /* static text */
};

typedef void dmarc_fn(void *arg, const struct dmarc_outcome *o);

struct dmarc_check *dmarc_check_start(struct dns *dns, const struct dmarc_input *in, dmarc_fn *fn, void *arg);
void dmarc_check_cancel(struct dmarc_check *c);

/* The organisational domain of a lower-case domain (libpsl), into out. false if none. */
bool dmarc_org_domain(const char *domain, char *out, size_t n);

const char *dmarc_result_str(enum dmarc_result r);

#endif
