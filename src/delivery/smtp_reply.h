/*
 * smtp_reply: the SMTP client's reply parser (RFC 5321 4.2). Pure: lines in
 * (without their CRLF), a reply out: its code, a bounded one-line text for
 * logs, spool and DSNs, and, for an EHLO reply, the extensions offered. Also
 * the table of which reply each command must get. The peer is hostile: a
 * line, the lines of a reply and the text kept are all bounded, and
 * anything outside the reply ABNF is an error, never a guess.
 */
#ifndef MXV_SMTP_REPLY_H
#define MXV_SMTP_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

/* One reply line without CRLF. RFC 5321 4.5.3.1.5 says 512 with CRLF; real servers send longer text. */
#define SMTP_REPLY_LINE_MAX 2048
/* Lines of one reply: an EHLO reply has a dozen or two; more is a peer trying to keep us reading. */
#define SMTP_REPLY_LINES_MAX 100
/* Text kept from a reply (code included), for logs, the spool and DSNs. */
#define SMTP_REPLY_TEXT_MAX 500

/* The SMTP service extensions the client uses (RFC 5321 4.1.1.1). */
struct smtp_caps {
	bool pipelining, size, eightbit, smtputf8, dsn, starttls;
	uint64_t size_max; /* SIZE's parameter, 0 if none or unusable */
};

struct smtp_reply {
	bool ehlo;            /* lines after the first name extensions */
	int code;             /* of the first line; 0 before it */
	uint32_t lines;
	struct smtp_caps caps;
	size_t len;
	/* "250 first line text next line text": controls dropped, cut at SMTP_REPLY_TEXT_MAX */
	char text[SMTP_REPLY_TEXT_MAX + 1];
};

#define SMTP_REPLY_MORE 0
#define SMTP_REPLY_DONE 1

void smtp_reply_init(struct smtp_reply *r, bool ehlo);
/*
 * Feeds one line (n bytes, no CRLF; NUL bytes are just bytes). Returns
 * SMTP_REPLY_MORE after a continuation line ("250-"), SMTP_REPLY_DONE after
 * the last line, or an error: -EBADMSG for a line outside the ABNF (code
 * digits out of range, no SP or "-" after the code) or with a code unlike
 * the first line's, -EMSGSIZE for a line over SMTP_REPLY_LINE_MAX, -E2BIG
 * for a reply over SMTP_REPLY_LINES_MAX lines. After DONE or an error,
 * init again before the next reply.
 */
int smtp_reply_feed(struct smtp_reply *r, const char *line, size_t n) MUST_CHECK;
/* A short reason for an error of smtp_reply_feed, for logs. */
const char *smtp_reply_strerror(int err);

/* RFC 5321 4.2 Reply-code: %x32-35 %x30-35 %x30-39. */
bool smtp_reply_code_valid(int code);

enum smtp_cmd {
	SMTP_CMD_GREETING, SMTP_CMD_EHLO, SMTP_CMD_HELO, SMTP_CMD_STARTTLS, SMTP_CMD_MAIL,
	SMTP_CMD_RCPT, SMTP_CMD_DATA, SMTP_CMD_DOT, SMTP_CMD_RSET, SMTP_CMD_QUIT,
};

enum smtp_verdict {
	SMTP_VERDICT_OK,        /* the positive reply this command defines */
	SMTP_VERDICT_TEMPFAIL,  /* 4yz */
	SMTP_VERDICT_PERMFAIL,  /* 5yz */
	SMTP_VERDICT_PROTOCOL,  /* anything else: the peer does not speak SMTP to us */
};

/*
 * What code means as the reply to cmd: only the code the command defines is
 * success (greeting and STARTTLS 220; EHLO, HELO, MAIL, RSET and the final
 * dot 250; RCPT 250 or 251; DATA 354; QUIT 221); any other valid 4yz or
 * 5yz is a failure by its first digit; everything else is a protocol error.
 */
enum smtp_verdict smtp_reply_verdict(enum smtp_cmd cmd, int code);
const char *smtp_cmd_name(enum smtp_cmd cmd);

#endif
