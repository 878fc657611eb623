/*
 * milter_proto: the Sendmail milter protocol, version 6, as a pure codec.
 * Encoders append one packet (4-byte length in network order, the command
 * byte, its data) to a struct buf; the decoder takes bytes a milter sent
 * and returns one reply at a time, with every length checked against the
 * limits below. No I/O, no allocation in the decoder: it is fuzzed
 * (tests/fuzz/fuzz_milter.c). Used by milter.c only.
 *
 * Reference: Sendmail's libmilter (mfdef.h, engine.c, smfi.c) and
 * Postfix's milter8.c; the constants keep their libmilter names.
 */
#ifndef MXV_MILTER_PROTO_H
#define MXV_MILTER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define MILTER_VERSION 6
/* Body chunks we send: at most this many bytes (libmilter's MILTER_CHUNK_SIZE). */
#define MILTER_CHUNK_MAX 65535u
/*
 * The largest reply packet we take (length field: command byte + data): a
 * replbody chunk of MILTER_CHUNK_MAX, or a header change whose name and
 * value fit that too. A longer length is a protocol error, decided before
 * any of the data is read.
 */
#define MILTER_REPLY_MAX (MILTER_CHUNK_MAX + 1u)
#define MILTER_NAME_MAX 998u   /* a header field name (RFC 5322 line limit) */
#define MILTER_TEXT_MAX 4096u  /* replycode text, quarantine reason, recipient */

/* Commands (MTA to milter). */
enum {
	SMFIC_ABORT = 'A', SMFIC_BODY = 'B', SMFIC_CONNECT = 'C', SMFIC_MACRO = 'D', SMFIC_BODYEOB = 'E',
	SMFIC_HELO = 'H', SMFIC_QUIT_NC = 'K', SMFIC_HEADER = 'L', SMFIC_MAIL = 'M', SMFIC_EOH = 'N',
	SMFIC_OPTNEG = 'O', SMFIC_QUIT = 'Q', SMFIC_RCPT = 'R', SMFIC_DATA = 'T', SMFIC_UNKNOWN = 'U',
};

/* Replies (milter to MTA). */
enum {
	SMFIR_ADDRCPT = '+', SMFIR_DELRCPT = '-', SMFIR_ADDRCPT_PAR = '2', SMFIR_SHUTDOWN = '4',
	SMFIR_ACCEPT = 'a', SMFIR_REPLBODY = 'b', SMFIR_CONTINUE = 'c', SMFIR_DISCARD = 'd',
	SMFIR_CHGFROM = 'e', SMFIR_CONN_FAIL = 'f', SMFIR_ADDHEADER = 'h', SMFIR_INSHEADER = 'i',
	SMFIR_SETSYMLIST = 'l', SMFIR_CHGHEADER = 'm', SMFIR_PROGRESS = 'p', SMFIR_QUARANTINE = 'q',
	SMFIR_REJECT = 'r', SMFIR_SKIP = 's', SMFIR_TEMPFAIL = 't', SMFIR_REPLYCODE = 'y',
	SMFIR_OPTNEG = 'O',
};

/* Actions a milter may take (negotiated). */
#define SMFIF_ADDHDRS 0x01u
#define SMFIF_CHGBODY 0x02u
#define SMFIF_ADDRCPT 0x04u
#define SMFIF_DELRCPT 0x08u
#define SMFIF_CHGHDRS 0x10u
#define SMFIF_QUARANTINE 0x20u
#define SMFIF_CHGFROM 0x40u
#define SMFIF_ADDRCPT_PAR 0x80u
#define SMFIF_SETSYMLIST 0x100u

/* Protocol steps (negotiated): stages not sent (NO*), replies not expected (NR_*). */
#define SMFIP_NOCONNECT 0x01u
#define SMFIP_NOHELO 0x02u
#define SMFIP_NOMAIL 0x04u
#define SMFIP_NORCPT 0x08u
#define SMFIP_NOBODY 0x10u
#define SMFIP_NOHDRS 0x20u
#define SMFIP_NOEOH 0x40u
#define SMFIP_NR_HDR 0x80u
#define SMFIP_NOUNKNOWN 0x100u
#define SMFIP_NODATA 0x200u
#define SMFIP_SKIP 0x400u
#define SMFIP_RCPT_REJ 0x800u
#define SMFIP_NR_CONN 0x1000u
#define SMFIP_NR_HELO 0x2000u
#define SMFIP_NR_MAIL 0x4000u
#define SMFIP_NR_RCPT 0x8000u
#define SMFIP_NR_DATA 0x10000u
#define SMFIP_NR_UNKN 0x20000u
#define SMFIP_NR_EOH 0x40000u
#define SMFIP_NR_BODY 0x80000u
#define SMFIP_HDR_LEADSPC 0x100000u

/* What we offer: every action we carry out, every step a milter may skip or not answer. */
#define MILTER_OUR_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGBODY | SMFIF_CHGHDRS | SMFIF_QUARANTINE | SMFIF_ADDRCPT | \
			    SMFIF_DELRCPT | SMFIF_SETSYMLIST)
#define MILTER_OUR_STEPS (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOMAIL | SMFIP_NORCPT | SMFIP_NOBODY | SMFIP_NOHDRS | \
			  SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_SKIP | SMFIP_NR_CONN |   \
			  SMFIP_NR_HELO | SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_DATA | SMFIP_NR_UNKN | SMFIP_NR_EOH | \
			  SMFIP_NR_BODY)

/* --- encoders: each appends one packet ------------------------------------- */
struct milter_macro {
	const char *name; /* "{client_addr}", "j", "_" */
	const char *value;
};

void milter_enc_optneg(struct buf *b, uint32_t version, uint32_t actions, uint32_t steps);
/* family: '4', '6' or 'U' (unknown: no port, no address). */
void milter_enc_connect(struct buf *b, const char *hostname, char family, uint16_t port, const char *addr);
void milter_enc_macro(struct buf *b, char stage, const struct milter_macro *m, size_t n);
/* HELO name; MAIL/RCPT: the path in angle brackets, then ESMTP parameters (may be 0). */
void milter_enc_str(struct buf *b, char cmd, const char *s);
void milter_enc_strs(struct buf *b, char cmd, const char *const *v, size_t n);
void milter_enc_header(struct buf *b, const char *name, size_t nlen, const char *value, size_t vlen);
/* A command with no data (EOH, EOB, DATA, ABORT, QUIT); a body chunk (n <= MILTER_CHUNK_MAX). */
void milter_enc_empty(struct buf *b, char cmd);
void milter_enc_body(struct buf *b, const void *p, size_t n);

/* --- the reply decoder ------------------------------------------------------ */
struct milter_reply {
	char cmd;                /* SMFIR_* */
	/* OPTNEG */
	uint32_t version, actions, steps;
	/* INSHEADER, CHGHEADER: the index (1-based among fields of that name for CHGHEADER) */
	uint32_t index;
	/* ADDHEADER, INSHEADER, CHGHEADER: name and value (value "" with CHGHEADER: delete) */
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
	/* REPLYCODE: code (4xx/5xx), the text after it ("5.7.1 text"); QUARANTINE: the reason;
	 * ADDRCPT, DELRCPT, ADDRCPT_PAR, CHGFROM: the address */
	int code;
	const char *text;
	size_t text_len;
	/* REPLBODY: the chunk */
	const unsigned char *data;
	size_t data_len;
};

/*
 * Decodes the packet at the start of p[0..n). Returns the packet's size
 * (> 0) with *r filled (pointers into p), 0 when more bytes are needed,
 * -EMSGSIZE when the length field is over MILTER_REPLY_MAX or zero, and
 * -EBADMSG for an unknown command or data that does not fit it.
 */
long milter_decode_reply(const unsigned char *p, size_t n, struct milter_reply *r);

/* True if r ends the milter's say on the current command (not an edit, progress or the like). */
bool milter_reply_is_final(char cmd);
const char *milter_reply_name(char cmd);

#endif
