/*
 * msg_hdr: a streaming scanner over the header section of a message as it
 * is received (after dot-unstuffing). It counts Received: fields (for the
 * hop limit, RFC 5321 6.3), captures the Message-ID and the From: values
 * (for DMARC, RFC 7489 6.6.1: unfolded, trimmed, the first
 * MSG_HDR_FROM_KEEP of them, with the count of all), and hashes the whole
 * content (for duplicate detection: a copy with altered headers is another
 * message), without buffering the message. Pure and
 * bounded: header lines of any length are handled, captured values are
 * capped, so it can be fuzzed.
 *
 * The header section runs from the start to the first empty line (CRLF
 * CRLF; a bare LF also ends a line). The content is scanned as it is
 * stored, after our Received: field: a leading WSP line continues that
 * field, and a line that is neither a field (1*ftext, optional WSP, ':';
 * RFC 5322 2.2 and 4.5.3) nor a continuation is kept in the header section
 * but ignored, wherever it is (so no leading line can hide the From: or
 * Authentication-Results fields after it from us and not from the
 * primary). Results do not depend on how the
 * input is split across msg_hdr_feed calls.
 */
#ifndef MXV_MSG_HDR_H
#define MXV_MSG_HDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define MSG_HDR_MSGID_MAX 998
#define MSG_HDR_FROM_MAX 998
#define MSG_HDR_FROM_KEEP 2 /* DMARC needs exactly one: a second one is enough to say no */

struct msg_hdr {
	/* results */
	uint32_t received;             /* Received: fields in the header section */
	char message_id[MSG_HDR_MSGID_MAX + 1]; /* Message-ID value, trimmed, "" if none */
	uint32_t nfrom;                /* From: fields in the header section */
	char from[MSG_HDR_FROM_KEEP][MSG_HDR_FROM_MAX + 1]; /* the first ones' values, unfolded and trimmed */
	bool from_cut;                 /* a kept From: value was longer than MSG_HDR_FROM_MAX: what is kept is not it */
	bool in_body;                  /* the header section is over (empty line seen) */
	uint64_t header_len;           /* octets of the header section including the empty line;
					  all octets fed when in_body is false */
	unsigned char content_sha256[32]; /* of every octet fed; valid after msg_hdr_finish */
	/* private */
	int state;
	char name[32];
	size_t name_len;
	bool cur_is_msgid;
	bool cur_is_received;
	size_t id_len;
	bool cur_is_from;              /* capturing into from[nfrom - 1] */
	size_t from_len;
	bool have_msgid;               /* a Message-ID field was seen: later ones are ignored */
	void *sha;                     /* EVP_MD_CTX */
};

void msg_hdr_init(struct msg_hdr *h);
/* Feeds message bytes in order (any split). */
void msg_hdr_feed(struct msg_hdr *h, const char *p, size_t n);
/* Ends the message: finalises content_sha256. Frees internal state. */
void msg_hdr_finish(struct msg_hdr *h);
/* Releases internal state without finishing (aborted message). */
void msg_hdr_free(struct msg_hdr *h);

#endif
