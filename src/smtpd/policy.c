/*
 * policy: see policy.h. A backup MX that relays for strangers is an open
 * relay, so every path that is not plainly "known recipient in a domain we
 * back up" is refused, including the old routing tricks (RFC 5321 3.6.1,
 * Appendix C; Postfix's permit_mx_backup applies the same rules).
 */
#include "policy.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

bool policy_is_routing_local_part(const char *local)
{
	return strpbrk(local, "@%!") != NULL;
}

static void set(struct policy_reply *r, int code, const char *enh, const char *text)
{
	r->code = code;
	r->enh = enh;
	r->text = text;
}

static bool split_postmaster(const struct cfg *cfg, struct mailaddr *out)
{
	const char *at = strrchr(cfg->postmaster, '@');
	if (!at || (size_t)(at - cfg->postmaster) >= sizeof(out->local) || strlen(at + 1) >= sizeof(out->domain))
		return false;
	memset(out, 0, sizeof(*out));
	memcpy(out->local, cfg->postmaster, (size_t)(at - cfg->postmaster));
	memcpy(out->domain, at + 1, strlen(at + 1) + 1);
	return true;
}

void policy_rcpt(const struct cfg *cfg, const struct mailaddr *to_in, bool encrypted, struct policy_reply *r,
		 char *addr, size_t addrsz)
{
	struct mailaddr to = *to_in;
	if (to.has_route) {
		/* RFC 5321 4.1.1.3 lets a server refuse source routes rather than ignore them. */
		set(r, 550, "5.7.1", "Relay access denied: source routes are not accepted");
		return;
	}
	if (to.no_domain && !split_postmaster(cfg, &to)) {
		set(r, 550, "5.1.1", "Recipient address rejected: no postmaster configured");
		return;
	}
	const struct cfg_domain *d = to.domain_literal ? NULL : cfg_find_domain(cfg, to.domain);
	if (!d) {
		set(r, 550, "5.7.1", "Relay access denied");
		return;
	}
	if (policy_is_routing_local_part(to.local)) {
		set(r, 550, "5.7.1", "Relay access denied: sender-specified routing is not allowed");
		return;
	}
	/* RFC 5321 4.5.1: postmaster (any case) must always be accepted. */
	bool postmaster = strcasecmp(to.local, "postmaster") == 0 && !to.quoted_local;
	/* Before the recipient check: a domain that wants TLS does not let its addresses be probed in clear. */
	if (d->require_tls && !encrypted && !postmaster && !to_in->no_domain) {
		set(r, 530, "5.7.0", "Must issue a STARTTLS command first");
		return;
	}
	bool ask = false;
	if (!to_in->no_domain && !postmaster && !cfg_domain_has_recipient(d, to.local)) {
		if (!d->callout) {
			set(r, 550, "5.1.1", "Recipient address rejected: User unknown");
			return;
		}
		ask = true; /* the file (if any) does not list it: the primary or what we learned from it decides */
	}
	char path[SMTP_PATH_MAX + 8];
	size_t n;
	if (smtp_format_path(&to, path, sizeof(path)) < 0 || (n = strlen(path)) < 2 || n - 2 >= addrsz) {
		set(r, 501, "5.1.3", "Recipient address too long");
		return;
	}
	memcpy(addr, path + 1, n - 2); /* without the angle brackets */
	addr[n - 2] = '\0';
	if (ask)
		set(r, POLICY_ASK_PRIMARY, "", "");
	else
		set(r, 250, "2.1.5", "Ok");
}

void policy_sanitise_reply(const char *reply, char *out, size_t n)
{
	const char *p = reply;
	size_t k = 0;
	if (n == 0)
		return;
	/* "550-" or "550 ", then an optional enhanced code "5.1.1 ". */
	if (strlen(p) >= 3 && p[0] >= '2' && p[0] <= '5' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' &&
	    (p[3] == ' ' || p[3] == '-' || p[3] == '\0'))
		p += p[3] ? 4 : 3;
	if (p[0] >= '2' && p[0] <= '5' && p[1] == '.') {
		size_t span = strspn(p, "0123456789.");
		if (p[span] == ' ' || p[span] == '\0')
			p += span + (p[span] == ' ');
	}
	for (; *p && k + 1 < n && k < POLICY_PRIMARY_TEXT_MAX; p++)
		if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f)
			out[k++] = *p;
	while (k && out[k - 1] == ' ')
		k--;
	out[k] = '\0';
}

void policy_callout_reply(enum verify_result v, const char *primary_reply, enum outage_mode outage,
			  struct policy_reply *r, char *buf, size_t bufsz)
{
	static const char *const outage_text = "Recipient address not verifiable now (primary unreachable), try again later";
	switch (v) {
	case VERIFY_ACCEPTED:
		set(r, 250, "2.1.5", "Ok");
		return;
	case VERIFY_REFUSED: {
		char clean[POLICY_PRIMARY_TEXT_MAX + 1];
		policy_sanitise_reply(primary_reply ? primary_reply : "", clean, sizeof(clean));
		if (fmt(buf, bufsz, "Recipient address rejected by the primary: %s", clean[0] ? clean : "User unknown") < 0)
			snprintf(buf, bufsz, "Recipient address rejected by the primary");
		set(r, 550, "5.1.1", buf);
		return;
	}
	case VERIFY_TEMPFAIL:
		set(r, 451, "4.3.0", "Recipient address not verifiable now, try again later");
		return;
	case VERIFY_TIMEOUT:
		set(r, 451, "4.4.3", "Recipient address verification timed out, try again later");
		return;
	case VERIFY_UNREACHABLE:
		break;
	}
	if (outage == OUTAGE_ACCEPT)
		set(r, 250, "2.1.5", "Ok");
	else if (outage == OUTAGE_REJECT)
		set(r, 550, "5.1.1", "Recipient address rejected: User unknown");
	else
		set(r, 451, "4.3.0", outage_text);
}
