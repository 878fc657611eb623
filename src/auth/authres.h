/*
 * authres: the Authentication-Results header field of RFC 8601, both ways.
 * authres_format writes ours from plain results (no I/O, no DNS: the
 * engines' verdicts are copied into a struct authres by the session);
 * authres_is_ours recognises a field already in a message that claims our
 * authserv-id (RFC 8601 5), so it can be removed before the message is
 * stored. Pure and bounded, fuzzed (tests/fuzz/fuzz_authres.c).
 *
 * The written field: "Authentication-Results: ID;" then one resinfo per
 * method that ran, in the order spf (MAIL FROM, then HELO), dkim (one per
 * signature), dmarc, iprev, or " none" when none ran (RFC 8601 2.2). Lines are folded before
 * 78 characters where a space may go (never inside a value); CRLF line
 * ends; a value that is not an RFC 2045 token (nor, for an address
 * property, local@domain) is a quoted-string; bytes from peers that could
 * end the field or the comment (CR, LF, other controls) are dropped. No
 * line exceeds 998 octets: every piece of text is capped.
 */
#ifndef MXV_AUTHRES_H
#define MXV_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

#include "dkim.h"
#include "dmarc.h"
#include "iprev.h"
#include "spf.h"
#include "base/util.h"

/* The longest piece of text (reason, value) written; longer ones are cut. */
#define AUTHRES_MAX_TEXT 256
/*
 * A bound on the field authres_format writes: the id, then SPF (reason,
 * address; the HELO's reason and name), 5 DKIM signatures (reason, d=, s=, b=: the last three bounded by
 * their arrays), DMARC (reason, header.from) and iprev (address, name):
 * 14 texts of AUTHRES_MAX_TEXT octets and 16 shorter ones, each at worst
 * quoted with every octet escaped, with its property name and fold. The
 * worst case (test_longest) writes about 9.5 KB.
 */
#define AUTHRES_MAX_LEN 12288

struct authres {
	const char *authserv_id;    /* ours (cfg authserv_id); a token */

	bool spf_ran;
	enum spf_result spf;
	const char *spf_mailfrom;   /* smtp.mailfrom: the MAIL FROM address, or NULL (null sender) */
	const char *spf_helo;       /* smtp.helo: written when spf_mailfrom is NULL */
	const char *spf_reason;     /* NULL, or e.g. the exp= text of a fail */
	bool helo_ran;              /* the HELO identity's own check (RFC 7208 2.3): a second spf */
	enum spf_result helo;       /* resinfo, with smtp.helo; not for <> (then spf is the HELO's) */
	const char *helo_reason;

	bool dkim_ran;              /* with ndkim == 0: dkim=none */
	const struct dkim_sig_result *dkim;
	size_t ndkim;

	bool dmarc_ran;
	enum dmarc_result dmarc;
	const char *dmarc_from;     /* header.from: the author domain, or NULL / "" */
	const char *dmarc_reason;

	bool iprev_ran;
	enum iprev_result iprev;
	const char *iprev_ip;       /* policy.iprev: the client's address */
	const char *iprev_name;     /* the validated name (a comment), or NULL */
};

/* Appends the whole field, "Authentication-Results: ...\r\n", to out. */
void authres_format(const struct authres *r, struct buf *out);

/*
 * True when value (an Authentication-Results field's value: what follows
 * the colon, folded or unfolded; CR and LF count as white space) names
 * authserv_id: CFWS (comments nest), then the authserv-id as a token or a
 * quoted-string, compared without regard to case (RFC 8601 2.5) and
 * ignoring one trailing dot. What follows the id does not matter: a
 * malformed rest does not save a field that claims to be ours.
 */
bool authres_is_ours(const char *value, size_t n, const char *authserv_id);

/* The RFC 8601 result keywords ("pass", "fail", ...). */
const char *authres_spf_str(enum spf_result r);
const char *authres_dkim_str(enum dkim_result r);
const char *authres_dmarc_str(enum dmarc_result r);
const char *authres_iprev_str(enum iprev_result r);

#endif
