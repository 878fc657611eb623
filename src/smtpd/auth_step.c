/*
 * auth_step: a session's sender-authentication verdicts, what they refuse,
 * and the header they make (contract and the map of where each check runs:
 * auth_step.h). Callers: smtp_in*.c. Pure: no I/O, no DNS; the engines'
 * callbacks hand their results to the auth_results_set_* functions.
 * Invariants: every string kept is NUL-terminated within its array; the
 * header is never longer than SPOOL_AUTH_HEADER_MAX (asserted at compile
 * time from authres's bound). Error policy: nothing fails.
 */
#include "auth_step.h"

#include <stdio.h>
#include <string.h>

_Static_assert(AUTHRES_MAX_LEN <= SPOOL_AUTH_HEADER_MAX, "our header must always fit the spool's field");

static void copy_str(char *dst, size_t n, const char *src)
{
	size_t len = src ? strnlen(src, n - 1) : 0;
	if (len)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

void auth_results_reset(struct auth_results *r)
{
	struct auth_results keep = *r;
	memset(r, 0, sizeof(*r));
	r->iprev_ran = keep.iprev_ran;
	r->iprev = keep.iprev;
	memcpy(r->iprev_name, keep.iprev_name, sizeof(r->iprev_name));
	r->helo_ran = keep.helo_ran;
	r->helo = keep.helo;
	memcpy(r->helo_explanation, keep.helo_explanation, sizeof(r->helo_explanation));
}

void auth_results_forget_helo(struct auth_results *r)
{
	r->helo_ran = false;
	r->helo = SPF_NONE;
	r->helo_explanation[0] = '\0';
}

void auth_results_set_spf(struct auth_results *r, enum spf_result res, const char *explanation)
{
	r->spf_ran = true;
	r->spf = res;
	copy_str(r->spf_explanation, sizeof(r->spf_explanation), explanation);
}

void auth_results_set_helo(struct auth_results *r, enum spf_result res, const char *explanation)
{
	r->helo_ran = true;
	r->helo = res;
	copy_str(r->helo_explanation, sizeof(r->helo_explanation), explanation);
}

enum spf_result auth_mailfrom_spf(const struct auth_results *r, bool *ran)
{
	*ran = r->null_sender ? r->helo_ran : r->spf_ran;
	if (!*ran)
		return SPF_NONE;
	return r->null_sender ? r->helo : r->spf;
}

void auth_results_set_dkim(struct auth_results *r, const struct dkim_sig_result *sigs, size_t n)
{
	r->dkim_ran = true;
	r->ndkim = n < DKIM_MAX_SIGNATURES ? n : DKIM_MAX_SIGNATURES;
	for (size_t i = 0; i < r->ndkim; i++)
		r->dkim[i] = sigs[i]; /* fixed arrays and static why: a plain copy */
}

void auth_results_set_dmarc(struct auth_results *r, const struct dmarc_outcome *o)
{
	r->dmarc_ran = true;
	r->dmarc = *o;
}

void auth_results_set_iprev(struct auth_results *r, enum iprev_result res, const char *name)
{
	r->iprev_ran = true;
	r->iprev = res;
	copy_str(r->iprev_name, sizeof(r->iprev_name), name);
}

/* "SPF validation failed: EXPLANATION", the explanation made safe for one reply line. */
static void fail_text(const char *explanation, char *buf, size_t n)
{
	/* The explanation is the domain's own text (RFC 7208 6.2): on one reply line, and only printable ASCII. */
	char expl[AUTHRES_MAX_TEXT + 1];
	size_t k = 0;
	for (const char *p = explanation; *p && k < sizeof(expl) - 1; p++)
		if (*p >= 0x20 && *p < 0x7f)
			expl[k++] = *p;
	expl[k] = '\0';
	if (snprintf(buf, n, "SPF validation failed%s%s", k ? ": " : "", expl) < 0)
		buf[0] = '\0';
}

bool auth_rcpt_refusal(const struct cfg_domain *d, const struct auth_results *r, char *buf, size_t n,
		       struct auth_reply *out)
{
	if (!d || d->spf != SPF_MODE_REJECT)
		return false;
	bool ran;
	enum spf_result mailfrom = auth_mailfrom_spf(r, &ran);
	const char *why;
	if (ran && mailfrom == SPF_FAIL)
		why = r->null_sender ? r->helo_explanation : r->spf_explanation;
	else if (r->helo_ran && r->helo == SPF_FAIL)
		why = r->helo_explanation;
	else if (ran && mailfrom == SPF_TEMPERROR) {
		*out = (struct auth_reply){451, "4.7.24", "SPF validation error (temporary DNS failure), try again later"};
		return true;
	} else
		return false;
	fail_text(why, buf, n);
	*out = (struct auth_reply){550, "5.7.23", buf};
	return true;
}

/* The cfg domain of a recipient address, or NULL. */
static const struct cfg_domain *rcpt_domain(const struct cfg *c, const char *addr)
{
	const char *at = strrchr(addr, '@');
	return at ? cfg_find_domain(c, at + 1) : NULL;
}

bool auth_dmarc_enforced(const struct cfg *c, const struct spool_rcpt *rcpts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct cfg_domain *d = rcpt_domain(c, rcpts[i].addr);
		if (d && d->dmarc == DMARC_MODE_ENFORCE)
			return true;
	}
	return false;
}

bool auth_dmarc_wanted(const struct cfg *c, const struct spool_rcpt *rcpts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const struct cfg_domain *d = rcpt_domain(c, rcpts[i].addr);
		if (d && d->dmarc != DMARC_MODE_OFF)
			return true;
	}
	return false;
}

bool auth_dmarc_refusal(bool enforced, const struct auth_results *r, struct auth_reply *out)
{
	if (!enforced || !r->dmarc_ran)
		return false;
	if (r->dmarc.result == DMARC_TEMPERROR) {
		*out = (struct auth_reply){451, "4.7.1", "DMARC policy lookup failed (temporary DNS failure), try again later"};
		return true;
	}
	if (r->dmarc.result == DMARC_FAIL && r->dmarc.policy == DMARC_P_REJECT) {
		*out = (struct auth_reply){550, "5.7.1", "Rejected by the DMARC policy of the author domain"};
		return true;
	}
	if (r->dmarc.result == DMARC_PERMERROR && r->dmarc.bad_author) {
		/* No policy can be found for an author we cannot name: enforcing means refusing (RFC 7489 6.6.1). */
		*out = (struct auth_reply){550, "5.7.1", "Message must have one From: header with one address"};
		return true;
	}
	return false;
}

char *auth_header(const struct auth_results *r, const char *authserv_id, const char *mail_from, const char *helo,
		  const char *client_ip)
{
	struct authres a = {
		.authserv_id = authserv_id,
		.spf_mailfrom = mail_from, .spf_helo = helo,
		.dkim_ran = r->dkim_ran, .dkim = r->dkim, .ndkim = r->ndkim,
		.dmarc_ran = r->dmarc_ran, .dmarc = r->dmarc.result, .dmarc_from = r->dmarc.header_from,
		.dmarc_reason = r->dmarc.result == DMARC_PASS ? NULL : r->dmarc.why,
		.iprev_ran = r->iprev_ran, .iprev = r->iprev, .iprev_ip = client_ip,
		.iprev_name = r->iprev_name[0] ? r->iprev_name : NULL,
	};
	if (r->null_sender) { /* one verdict: the HELO's, written as the MAIL FROM identity's (smtp.helo) */
		a.spf_ran = r->helo_ran;
		a.spf = r->helo;
		a.spf_reason = r->helo_explanation[0] ? r->helo_explanation : NULL;
	} else {
		a.spf_ran = r->spf_ran;
		a.spf = r->spf;
		a.spf_reason = r->spf_explanation[0] ? r->spf_explanation : NULL;
		a.helo_ran = r->helo_ran;
		a.helo = r->helo;
		a.helo_reason = r->helo_explanation[0] ? r->helo_explanation : NULL;
	}
	struct buf b = {0};
	authres_format(&a, &b);
	char *s = xstrndup((const char *)b.data, b.len);
	buf_free(&b);
	return s;
}
