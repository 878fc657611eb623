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
#include "base/verify.h"
#include "smtp_parse.h"

struct policy_reply {
	int code;          /* 250 to accept */
	const char *enh;   /* RFC 3463 code, "2.1.5" */
	const char *text;
};

/* policy_rcpt's code for "a callout domain, an address it does not list: ask the primary". */
#define POLICY_ASK_PRIMARY 0

/*
 * Decides on one recipient. encrypted: the session runs over TLS (a domain
 * with require_tls refuses others, postmaster excepted). On acceptance,
 * addr (size SMTP_PATH_MAX + 1) gets the address to store, "local@domain",
 * with <postmaster> rewritten to the configured postmaster and the domain
 * in lower case.
 */
void policy_rcpt(const struct cfg *cfg, const struct mailaddr *to, bool encrypted, struct policy_reply *r,
		 char *addr, size_t addrsz);

/*
 * The reply to RCPT once the primary was asked about an address not yet
 * learned (pure): accepted 250; refused 550 5.1.1 with the primary's text,
 * sanitised (its codes dropped, printable ASCII only, at most
 * POLICY_PRIMARY_TEXT_MAX bytes) into buf; 4xx 451 4.3.0; timeout 451
 * 4.4.3; unreachable: what unknown_during_outage says (451 4.3.0, 250,
 * 550 5.1.1).
 */
#define POLICY_PRIMARY_TEXT_MAX 200
void policy_callout_reply(enum verify_result v, const char *primary_reply, enum outage_mode outage,
			  struct policy_reply *r, char *buf, size_t bufsz);
/* Copies the text of an SMTP reply ("550 5.1.1 No such user") without its codes and controls. */
void policy_sanitise_reply(const char *reply, char *out, size_t n);

/* True if the local part asks for sender-specified routing (user%host, host!user, "u@h"). */
bool policy_is_routing_local_part(const char *local);

#endif
