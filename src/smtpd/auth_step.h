/*
 * auth_step: the sender-authentication side of one SMTP session (issue 8),
 * between the session (smtp_in*.c) and the engines of auth/. It keeps each
 * check's verdict as it comes in (struct auth_results), says what the
 * session must refuse (auth_rcpt_refusal, auth_dmarc_refusal: pure), and
 * writes the one Authentication-Results header stored with the message
 * (auth_header). Without any verdict the header says "none" (RFC 8601
 * 2.2: no method ran): what every message gets when all domains have
 * spf = off and dmarc = off (then no check runs at all; otherwise DKIM and
 * iprev run for every message, since they never refuse).
 *
 * Where each check belongs in a session (the engines are called there):
 *   iprev  at connect (smtp_in_new): iprev_check_start on the client's
 *          address; the result is set with auth_results_set_iprev and kept
 *          for the whole session (auth_results_reset keeps it).
 *   SPF    after HELO/EHLO (cmd_helo): spf_check_start for the HELO name
 *          (kept for the session; none for an address literal); after MAIL
 *          FROM is accepted (cmd_mail): for the MAIL FROM domain (for <>
 *          the HELO check is the MAIL FROM one), asynchronously; a RCPT
 *          for a domain with spf = reject waits for it in the session's
 *          wait state (smtp_in_wait, resumed from the SPF callback) and is
 *          answered by auth_rcpt_refusal. The check is cancelled with the
 *          transaction (RSET, a new MAIL, the end of the session).
 *   DKIM   dkim_verify_new when content starts (smtp_in_txn_begin_content);
 *          every content byte as received, dot-unstuffed, fed from
 *          content_out (DATA and BDAT alike), before the forged-header
 *          filter; dkim_finish at the end of data.
 *   DMARC  at the end of data, once SPF and DKIM are in, with the From:
 *          values of the header section: dmarc_check_start; its outcome is
 *          answered by auth_dmarc_refusal before the commit: a refusal
 *          aborts the spool transaction (the message is not stored).
 * Then auth_header goes into env.auth_header, and the message is committed.
 */
#ifndef MXV_AUTH_STEP_H
#define MXV_AUTH_STEP_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/authres.h"
#include "base/cfg.h"
#include "spool/spool.h"

struct auth_results {
	bool null_sender;            /* MAIL FROM:<>: the MAIL FROM identity is the HELO's (RFC 7208 2.4) */
	bool spf_ran;                /* MAIL FROM identity (never for <>: see helo) */
	enum spf_result spf;
	char spf_explanation[AUTHRES_MAX_TEXT + 1]; /* exp= text of a fail, "" if none */

	bool helo_ran;               /* HELO identity: per session, kept by auth_results_reset */
	enum spf_result helo;
	char helo_explanation[AUTHRES_MAX_TEXT + 1];

	bool dkim_ran;
	struct dkim_sig_result dkim[DKIM_MAX_SIGNATURES];
	size_t ndkim;

	bool dmarc_ran;
	struct dmarc_outcome dmarc;  /* why is static text */

	bool iprev_ran;              /* per session: kept by auth_results_reset */
	enum iprev_result iprev;
	char iprev_name[256];
};

/* A reply the session owes: code, enhanced code, text. */
struct auth_reply {
	int code;
	const char *enh;
	const char *text;
};

/* A new transaction: forgets SPF (MAIL FROM), DKIM and DMARC, keeps iprev and the HELO's SPF. */
void auth_results_reset(struct auth_results *r);
/* A new HELO/EHLO: forgets the HELO's SPF. */
void auth_results_forget_helo(struct auth_results *r);
void auth_results_set_spf(struct auth_results *r, enum spf_result res, const char *explanation);
void auth_results_set_helo(struct auth_results *r, enum spf_result res, const char *explanation);
/*
 * The SPF verdict of the MAIL FROM identity, the one DMARC aligns with: for
 * <> the HELO's (RFC 7208 2.4). ran false: no verdict (yet).
 */
enum spf_result auth_mailfrom_spf(const struct auth_results *r, bool *ran);
void auth_results_set_dkim(struct auth_results *r, const struct dkim_sig_result *sigs, size_t n);
void auth_results_set_dmarc(struct auth_results *r, const struct dmarc_outcome *o);
void auth_results_set_iprev(struct auth_results *r, enum iprev_result res, const char *name);

/*
 * What RCPT to a domain must answer for SPF (RFC 7372 codes): with
 * spf = reject, a fail of the MAIL FROM identity or of the HELO identity
 * (RFC 7208 2.3: a HELO fail is conclusive) gives 550 5.7.23 (the
 * explanation, when there is one, in the text), a temperror of the MAIL
 * FROM identity 451 4.7.24; anything else, or another mode, or no result,
 * false. text is written into buf (n bytes).
 */
bool auth_rcpt_refusal(const struct cfg_domain *d, const struct auth_results *r, char *buf, size_t n,
		       struct auth_reply *out);
/*
 * Whether DMARC is enforced for this message: some recipient's domain has
 * dmarc = enforce (the end of data has one reply for every recipient, so
 * one enforcing domain decides it). And whether any domain checks at all.
 */
bool auth_dmarc_enforced(const struct cfg *c, const struct spool_rcpt *rcpts, size_t n);
bool auth_dmarc_wanted(const struct cfg *c, const struct spool_rcpt *rcpts, size_t n);
/*
 * What the end of data must answer for DMARC when it is enforced: a fail
 * whose policy is reject gives 550 5.7.1, and so does a message without
 * exactly one author domain in From: (none, several, unparseable, too
 * long: a permerror with bad_author, RFC 7489 6.6.1), since no policy could
 * ever be applied to it; a temperror 451 4.7.1; otherwise (quarantine is
 * accepted and tagged, a broken DMARC record is tagged) false.
 */
bool auth_dmarc_refusal(bool enforced, const struct auth_results *r, struct auth_reply *out);

/*
 * The header field stored with the message (spool env.auth_header), a
 * malloc'ed string "Authentication-Results: ...\r\n". mail_from: the MAIL
 * FROM address ("" for <>); helo: the HELO/EHLO name; client_ip: for
 * policy.iprev.
 */
char *auth_header(const struct auth_results *r, const char *authserv_id, const char *mail_from, const char *helo,
		  const char *client_ip);

#endif
