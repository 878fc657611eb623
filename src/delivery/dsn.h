/*
 * dsn: builds RFC 3464 delivery status notifications (bounces and delay
 * warnings) as complete RFC 5322 messages, multipart/report (RFC 6522)
 * with a human-readable part, a message/delivery-status part and the
 * returned original: its headers (text/rfc822-headers) or, with RET=FULL,
 * the whole message (message/rfc822). Pure: no I/O; the caller passes the
 * original message's bytes (or just its header section) in.
 */
#ifndef MXV_DSN_H
#define MXV_DSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "spool/spool_rec.h"
#include "base/util.h"

enum dsn_action { DSN_FAILED, DSN_DELAYED };

struct dsn_rcpt {
	const struct spool_rcpt *rcpt; /* address, ORCPT */
	const char *status;            /* RFC 3463 code, "5.1.1" */
	const char *remote_mta;        /* host name of the MTA that answered, or NULL (see below) */
	const char *diagnostic;        /* "550 5.1.1 User unknown" (the reply), or NULL */
	int64_t last_attempt;          /* Unix seconds, 0 if never tried */
};

struct dsn_input {
	const char *reporting_mta;     /* our hostname */
	const char *queue_id;          /* 16 hex */
	const struct spool_env *env;   /* the original envelope (ENVID, RET, arrival, sender) */
	enum dsn_action action;
	const struct dsn_rcpt *rcpts;
	size_t nrcpt;
	const char *original;          /* original message bytes (may be just headers) */
	size_t original_len;
	int64_t now;                   /* Unix seconds, for Date: */
	int64_t will_retry_until;      /* for DSN_DELAYED: expiry time */
	const char *boundary_seed;     /* unique text for the MIME boundary and Message-ID */
};

/*
 * Remote-MTA (RFC 3464 2.3.5) is written with the "dns" MTA-name-type,
 * whose MTA name is a domain name (2.1.2 (c); RFC 3461 defines the type),
 * so it gets only a host name. remote_mta should be just that; whatever it
 * is, the field gets the host name at its start when one is followed by
 * nothing, "[address]", ":port", or white space or a control
 * ("mx1.example.com[192.0.2.1]:25" gives "mx1.example.com"), and is left
 * out otherwise: an address ("192.0.2.1", "[192.0.2.1]", "2001:db8::1"),
 * or anything else. "dns; [192.0.2.1]" is not written: an address literal
 * is not a domain name, and the field is optional; the Diagnostic-Code
 * and the text part still say who answered. The text part names the server
 * as remote_mta gives it (controls removed).
 */

/* Diagnostic text longer than this is cut (and marked) in the report. */
#define DSN_DIAG_MAX 2000

/*
 * Appends the notification (headers + body, CRLF line endings, every line
 * at most 998 octets) to out. The returned part is the header section of
 * the original unless env->ret is SMTP_RET_FULL; a full message larger
 * than max_full is returned as headers only. So is a full message that
 * could not travel unchanged: bare CR or LF, NUL, a line over 998 octets,
 * or 8-bit octets when the original came without BODY=8BITMIME or
 * SMTPUTF8. The header section is returned byte for byte (tabs, folding,
 * 8-bit octets and all) when it can travel unchanged by the same rules;
 * only when it cannot is it a cleaned copy: CRLF line ends, tabs and
 * controls as spaces or '?', 8-bit octets as '?' unless SMTPUTF8, long
 * lines folded. A part (and the whole message) with 8-bit octets is labelled
 * "Content-Transfer-Encoding: 8bit": send it with BODY=8BITMIME. With
 * env->smtputf8 the RFC 6533 types are used (message/global-delivery-status,
 * message/global, message/global-headers) and addresses keep their UTF-8;
 * otherwise every octet of text we copy in (addresses, diagnostics) is
 * ASCII, and the returned original has 8-bit octets only when it came with
 * BODY=8BITMIME. Text from peers (diagnostics, host names, ORCPT, ENVID)
 * has CR, LF and other controls removed before use.
 */
void dsn_build(const struct dsn_input *in, size_t max_full, struct buf *out);

/*
 * True when a DSN of this action must be sent to this recipient's sender:
 * never for the null sender or a message we generated (SPOOL_ENV_IS_DSN);
 * without NOTIFY, for both actions (RFC 3461 4.1 leaves delays to us);
 * otherwise as NOTIFY asks (NEVER, FAILURE, DELAY).
 */
bool dsn_wanted(const struct spool_env *env, const struct spool_rcpt *r, enum dsn_action action);

#endif
