/*
 * policy: the decisions between a command and its reply. Today: relay
 * control and recipient validation at RCPT time. This is the seam where
 * SPF, DNSBL and rate limits plug in later: smtp_in asks, policy answers
 * with a complete reply, and nothing here does I/O.
 */
#ifndef MXV_POLICY_H
#define MXV_POLICY_H

#include <stdbool.h>

#include "base/cfg.h"
#include "smtp_parse.h"

struct policy_reply {
	int code;          /* 250 to accept */
	const char *enh;   /* RFC 3463 code, "2.1.5" */
	const char *text;
};

/*
 * Decides on one recipient. encrypted: the session runs over TLS (a domain
 * with require_tls refuses others, postmaster excepted). On acceptance,
 * addr (size SMTP_PATH_MAX + 1) gets the address to store, "local@domain",
 * with <postmaster> rewritten to the configured postmaster and the domain
 * in lower case.
 */
void policy_rcpt(const struct cfg *cfg, const struct mailaddr *to, bool encrypted, struct policy_reply *r,
		 char *addr, size_t addrsz);

/* True if the local part asks for sender-specified routing (user%host, host!user, "u@h"). */
bool policy_is_routing_local_part(const char *local);

#endif
