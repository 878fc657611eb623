/*
 * policy: see policy.h. A backup MX that relays for strangers is an open
 * relay, so every path that is not plainly "known recipient in a domain we
 * back up" is refused, including the old routing tricks (RFC 5321 3.6.1,
 * Appendix C; Postfix's permit_mx_backup applies the same rules).
 */
#include "policy.h"

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
	if (!to_in->no_domain && !postmaster && !cfg_domain_has_recipient(d, to.local)) {
		set(r, 550, "5.1.1", "Recipient address rejected: User unknown");
		return;
	}
	char path[SMTP_PATH_MAX + 8];
	size_t n;
	if (smtp_format_path(&to, path, sizeof(path)) < 0 || (n = strlen(path)) < 2 || n - 2 >= addrsz) {
		set(r, 501, "5.1.3", "Recipient address too long");
		return;
	}
	memcpy(addr, path + 1, n - 2); /* without the angle brackets */
	addr[n - 2] = '\0';
	set(r, 250, "2.1.5", "Ok");
}
