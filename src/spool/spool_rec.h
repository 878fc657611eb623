/*
 * spool_rec: the on-disk record format of the spool log, and the envelope
 * encoding carried by COMMIT records. Pure: bytes (and the spool's key, as
 * a struct spool_mac) in, structs out, every length bounded, so it can be
 * fuzzed. Records are authenticated (HMAC-SHA256), so bytes a sender wrote
 * never decode as one. See docs/spool.md for the format and the
 * invariants; spool.c is the only user that touches files.
 */
#ifndef MXV_SPOOL_REC_H
#define MXV_SPOOL_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"

#define SPOOL_REC_MAGIC 0x3256584dU    /* "MXV2" little-endian: format v2, written */
#define SPOOL_REC_MAGIC_V1 0x3156584dU /* "MXV1": format v1 (CRC-32), only read */
#define SPOOL_REC_HDR_SIZE 44          /* v2: magic..id (20), header tag (8), MAC (16) */
#define SPOOL_REC_V1_HDR_SIZE 24
#define SPOOL_REC_TAG_SIZE 8
#define SPOOL_REC_MAC_SIZE 16
#define SPOOL_REC_MAX_PAYLOAD (16u << 20)
#define SPOOL_DATA_CHUNK (64u << 10)
#define SPOOL_KEY_SIZE 32
/* Reply texts are stored cut to this many bytes, so an envelope is bounded (spool_rec.c). */
#define SPOOL_REPLY_MAX 512

enum spool_rec_type {
	SPOOL_REC_SEGMENT = 1, /* first record of every segment file */
	SPOOL_REC_DATA = 2,    /* a piece of a message body */
	SPOOL_REC_COMMIT = 3,  /* envelope: the message is complete and acknowledged once durable */
	SPOOL_REC_RCPT = 4,    /* a recipient's delivery outcome */
	SPOOL_REC_DONE = 5,    /* every recipient is final: the message is gone */
	SPOOL_REC_ABORT = 6,   /* the DATA records of an unfinished message are garbage */
	SPOOL_REC_META = 7,    /* per-message delivery state (attempts, next try, flags) */
	SPOOL_REC_TYPE_MAX = 7
};

struct spool_rec {
	uint8_t type;
	uint64_t msgid;
	const unsigned char *payload;
	uint32_t len;
};

/*
 * The keyed state that authenticates records: made from the spool's secret
 * key (SPOOL/key, spool_dir.c). Not thread-safe: one per spool, used by the
 * thread that appends and replays (the event loop). Holds no I/O and no
 * global state, so the codec stays pure and fuzzable with a fixed key.
 */
struct spool_mac;

/* 0, or -ENOTSUP when OpenSSL offers no HMAC-SHA256 or SipHash. */
int spool_mac_new(const unsigned char key[SPOOL_KEY_SIZE], struct spool_mac **out) MUST_CHECK;
void spool_mac_free(struct spool_mac *mac);

/* Appends a v2 record (header, header tag, MAC, payload) to out. No allocation beyond out growing. */
void spool_rec_append(struct spool_mac *mac, struct buf *out, uint8_t type, uint64_t msgid, const void *payload,
		      uint32_t len);

/*
 * Decodes the v2 record at p. Returns the record's total size (> 0);
 * -EAGAIN when n is too short to hold it (a torn tail), -EBADMSG when the
 * magic, type, length, header tag or MAC is wrong. The header tag is checked
 * before the payload is read, so trying a record at every offset of a
 * damaged region costs O(1) per offset whatever length the bytes there
 * claim. A v1 record never decodes here.
 */
long spool_rec_decode(struct spool_mac *mac, const unsigned char *p, size_t n, struct spool_rec *out) MUST_CHECK;
/* The same for a v1 record (CRC-32, no key): only for segments written in format v1. */
long spool_rec_decode_v1(const unsigned char *p, size_t n, struct spool_rec *out) MUST_CHECK;
/* True if a segment starting with these bytes was written in format v1. */
bool spool_seg_is_v1(const unsigned char *p, size_t n);

enum spool_rcpt_state {
	SPOOL_RCPT_PENDING = 0, /* not yet delivered (maybe deferred) */
	SPOOL_RCPT_DELIVERED,   /* the next hop answered 2xx */
	SPOOL_RCPT_FAILED,      /* permanent failure; a bounce has been queued if asked for */
	SPOOL_RCPT_EXPIRED,     /* retention ran out; a bounce has been queued if asked for */
	SPOOL_RCPT_STATE_MAX = SPOOL_RCPT_EXPIRED
};

struct spool_rcpt {
	char *addr;       /* local@domain, as it will be sent to the next hop */
	char *orcpt;      /* RFC 3461 ORCPT as received, or NULL */
	uint8_t notify;   /* SMTP_NOTIFY_* bits */
	uint8_t state;    /* enum spool_rcpt_state */
	uint16_t code;    /* last SMTP reply code from the next hop, 0 if none */
	char *reply;      /* last reply text (for DSNs), or NULL */
};

struct spool_env {
	char *sender;        /* "" for the null reverse-path */
	char *envid;         /* RFC 3461 ENVID or NULL */
	uint8_t body;        /* enum smtp_body */
	uint8_t ret;         /* enum smtp_ret */
	bool smtputf8;
	uint64_t size_param; /* SIZE= as declared, 0 if none */
	char *client_addr;   /* "192.0.2.1" */
	char *client_helo;
	char *proto;         /* "ESMTP", "SMTP", ... (the Received: with keyword) */
	int64_t arrival;     /* Unix seconds */
	uint64_t body_size;  /* octets stored, including our Received: header */
	uint32_t flags;      /* SPOOL_ENV_* */
	bool has_dedup_key;
	unsigned char dedup_key[32]; /* see dedup.h */
	/*
	 * A header field the forward side sends in front of the stored body
	 * ("Authentication-Results: ...\r\n", CRLF line ends, folded), or NULL.
	 * Made at the end of data, after the body streamed into the spool, so
	 * it is kept beside it; not counted in body_size. At most
	 * SPOOL_AUTH_HEADER_MAX octets (a longer one is not stored).
	 */
	char *auth_header;
	/*
	 * The header section as milters left it (milter/milter_edit.h): sent
	 * in place of the first head_skip octets of the stored body (our
	 * Received: and the header fields as received), or NULL. At most
	 * SPOOL_HEAD_MAX octets.
	 */
	char *head;
	uint64_t head_skip;
	/* A milter quarantined the message: why (cut to SPOOL_REPLY_MAX). Held, never delivered. NULL: not. */
	char *quarantine;
	uint32_t nrcpt;
	struct spool_rcpt *rcpts;
};

#define SPOOL_ENV_IS_DSN 1u  /* generated by us: never bounce a bounce */
#define SPOOL_AUTH_HEADER_MAX 16384
#define SPOOL_HEAD_MAX (320u << 10)

void spool_env_encode(const struct spool_env *env, struct buf *out);
/* 0 or -EBADMSG; on success env owns allocated strings (spool_env_free). */
int spool_env_decode(const unsigned char *p, size_t n, struct spool_env *env) MUST_CHECK;
void spool_env_free(struct spool_env *env);
void spool_env_copy(struct spool_env *dst, const struct spool_env *src);

/* A copy of reply text (n bytes, no NUL needed) cut to SPOOL_REPLY_MAX at a UTF-8 boundary; NULL for NULL. */
char *spool_reply_dup(const char *s, size_t n);

struct spool_rcpt_update {
	uint32_t index;
	uint8_t state;
	uint16_t code;
	const char *reply; /* may be NULL */
};

void spool_rcpt_update_encode(const struct spool_rcpt_update *u, struct buf *out);
/* reply points into p (not NUL-terminated: reply_len). 0 or -EBADMSG. */
int spool_rcpt_update_decode(const unsigned char *p, size_t n, struct spool_rcpt_update *u,
			     size_t *reply_len) MUST_CHECK;

struct spool_meta {
	uint32_t attempts;
	int64_t next_attempt; /* Unix seconds, 0 = as soon as possible */
	uint32_t flags;       /* SPOOL_META_* */
	int64_t extend_s;     /* seconds added to its retention: `queue extend`, and time spent held */
	int64_t held_since;   /* with SPOOL_META_HELD: wall seconds when the hold began */
};

#define SPOOL_META_WARNED 1u  /* the delay DSN has been queued */
#define SPOOL_META_MAYBE_DUP 2u /* a delivery's outcome was lost in flight */
#define SPOOL_META_HELD 4u      /* `queue hold ID`: not delivered, never expires, until released */
#define SPOOL_META_RELEASED 8u  /* `queue release ID` of a quarantined message: delivered after all */
#define SPOOL_META_DELETED 16u  /* `queue delete ID`: its pending recipients go without a bounce */

void spool_meta_encode(const struct spool_meta *m, struct buf *out);
int spool_meta_decode(const unsigned char *p, size_t n, struct spool_meta *m) MUST_CHECK;

#endif
