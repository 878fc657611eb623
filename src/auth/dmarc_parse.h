/*
 * dmarc_parse: the pure parts of DMARC (RFC 7489), no I/O, fuzzed by
 * tests/fuzz/fuzz_dmarc.c: the policy record, the author domain of a From:
 * header, identifier alignment and pct sampling. dmarc.c runs them on what
 * DNS and the other checks return.
 */
#ifndef MXV_DMARC_PARSE_H
#define MXV_DMARC_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/dmarc.h"
#include "base/util.h"

struct dmarc_record {
	enum dmarc_policy p;
	enum dmarc_policy sp; /* p when the record has no sp= */
	bool has_sp;
	bool adkim_strict, aspf_strict;
	unsigned pct;         /* 0-100, default 100 */
	bool p_from_rua;      /* no valid p= (or a bad sp=), but a rua=: p=none (RFC 7489 6.6.3) */
};

/*
 * Whether a TXT record is a DMARC one: it starts with "v=DMARC1" (spaces
 * allowed around "="), then ";", space or its end (RFC 7489 6.6.3 step 3).
 */
bool dmarc_txt_is_dmarc(const char *txt);

/*
 * Parses a DMARC record (RFC 7489 6.3, 6.4). Tag names are case-insensitive;
 * unknown tags and malformed tag-specs are ignored; of a repeated tag the
 * first counts. p, sp, adkim, aspf and pct must be valid: a bad p (or sp) is
 * p=none if rua= has a URI (6.6.3), else the record is invalid; a bad adkim,
 * aspf or pct invalidates it. rua, ruf, fo, rf and ri are not used here and
 * are not checked beyond rua's URI syntax.
 * 0, or -EINVAL with *why (static text) set.
 */
int dmarc_parse_record(const char *txt, struct dmarc_record *out, const char **why) MUST_CHECK;

/*
 * The author domain of one From: header value (unfolded, as received): it
 * must hold exactly one mailbox (RFC 5322 3.4; a group counts its members,
 * and a group's missing final ";" is forgiven) with a domain that is a host
 * name; comments and quoted strings are skipped. Without angle brackets,
 * the domain is what follows the one "@" (a display name before a bare
 * address is tolerated: only the domain matters here). Lower-cased into
 * out. 0, or -EINVAL with *why set.
 */
int dmarc_from_domain(const char *value, char *out, size_t n, const char **why) MUST_CHECK;

/* The organisational domain of domain into out; false if none (dmarc_org_domain). */
typedef bool dmarc_org_fn(const char *domain, char *out, size_t n);

/*
 * Identifier alignment (RFC 7489 3.1): strict, equal ignoring case (and
 * one trailing dot); relaxed, the same organisational domain by org. A
 * name with an empty label is never aligned.
 */
bool dmarc_aligned(const char *a, const char *b, bool strict, dmarc_org_fn *org);

/*
 * The policy for a failure after pct= (RFC 7489 6.6.4): draw is uniform in
 * [0, 100); a message not sampled (draw >= pct) gets the next policy down.
 */
enum dmarc_policy dmarc_apply_pct(enum dmarc_policy p, unsigned pct, unsigned draw);

#endif
