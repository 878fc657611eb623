/*
 * spool_rec: see spool_rec.h. Pure: no I/O, no global state; the key comes
 * in as a struct spool_mac. Called by spool.c (appending, under its mutex,
 * on the event loop), spool_replay.c and spool_compact.c, and the fuzz
 * target. All integers are little-endian. A v2 record is
 *   u32 magic "MXV2" | u8 type | u8[3] zero | u32 payload length | u64 message id |
 *   u8[8] header tag | u8[16] MAC | payload
 * header tag = SipHash-2-4 of bytes 0..19, under a key derived from the spool key;
 * MAC = HMAC-SHA256 of bytes 0..27 and the payload, under the spool key, cut to 16 bytes.
 * Without the key no one can make bytes that decode, so a sender cannot
 * plant records in message content (docs/spool.md, invariant 7). The tag
 * only makes rejecting a forged header cheap; the MAC is what authenticates.
 * A v1 record (read only) is the same first 20 bytes with a CRC-32 at 20.
 * Envelopes and updates are sequences of TLV fields (u8 tag, u32 length,
 * value); unknown tags are skipped so newer versions can add fields.
 *
 * Error policy: bad bytes are -EBADMSG or -EAGAIN, never a crash; OpenSSL
 * failing on a context that already worked is a broken invariant (abort).
 */
#include "spool_rec.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdlib.h>
#include <string.h>

#include "base/cfg.h"
#include "base/smtp_proto.h"

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* --- keys and MACs ------------------------------------------------------ */

#define REC_FIELDS_SIZE 20 /* magic, type, zero, length, id: what the header tag covers */
#define SUBKEY_LABEL "mxvault spool header tag"

struct spool_mac {
	EVP_MAC_CTX *hmac; /* HMAC-SHA256 keyed with the spool key */
	EVP_MAC_CTX *sip;  /* SipHash-2-4 (8 bytes) keyed with a key derived from it */
};

/* One keyed context; NULL if OpenSSL lacks the algorithm. Fetched once per spool, never per record. */
static EVP_MAC_CTX *mac_ctx_new(const char *alg, const unsigned char *key, size_t keylen)
{
	size_t size = SPOOL_REC_TAG_SIZE;
	OSSL_PARAM hmac_params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
				    OSSL_PARAM_construct_end()};
	OSSL_PARAM sip_params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size), OSSL_PARAM_construct_end()};
	EVP_MAC *mac = EVP_MAC_fetch(NULL, alg, NULL);
	EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac); /* the context keeps its own reference */
	if (ctx && EVP_MAC_init(ctx, key, keylen, strcmp(alg, "HMAC") == 0 ? hmac_params : sip_params) == 1)
		return ctx;
	EVP_MAC_CTX_free(ctx);
	return NULL;
}

/* out = the first outn bytes of the MAC of a then b. A NULL key re-initialises with the key set (no allocation). */
static void mac_run(EVP_MAC_CTX *ctx, const void *a, size_t an, const void *b, size_t bn, unsigned char *out,
		    size_t outn)
{
	unsigned char full[EVP_MAX_MD_SIZE];
	size_t len = 0;
	if (EVP_MAC_init(ctx, NULL, 0, NULL) != 1 || EVP_MAC_update(ctx, a, an) != 1 ||
	    (bn && EVP_MAC_update(ctx, b, bn) != 1) || EVP_MAC_final(ctx, full, &len, sizeof(full)) != 1 || len < outn)
		abort();
	memcpy(out, full, outn);
}

int spool_mac_new(const unsigned char key[SPOOL_KEY_SIZE], struct spool_mac **out)
{
	struct spool_mac *m = xcalloc(1, sizeof(*m));
	unsigned char subkey[16];
	m->hmac = mac_ctx_new("HMAC", key, SPOOL_KEY_SIZE);
	if (m->hmac) {
		mac_run(m->hmac, SUBKEY_LABEL, strlen(SUBKEY_LABEL), NULL, 0, subkey, sizeof(subkey));
		m->sip = mac_ctx_new("SIPHASH", subkey, sizeof(subkey));
		OPENSSL_cleanse(subkey, sizeof(subkey));
	}
	if (!m->sip) {
		spool_mac_free(m);
		return -ENOTSUP;
	}
	*out = m;
	return 0;
}

void spool_mac_free(struct spool_mac *mac)
{
	if (!mac)
		return;
	EVP_MAC_CTX_free(mac->hmac);
	EVP_MAC_CTX_free(mac->sip);
	free(mac);
}

/* --- records ------------------------------------------------------------ */

void spool_rec_append(struct spool_mac *mac, struct buf *out, uint8_t type, uint64_t msgid, const void *payload,
		      uint32_t len)
{
	unsigned char h[SPOOL_REC_HDR_SIZE] = {0};
	put_u32(h, SPOOL_REC_MAGIC);
	h[4] = type;
	put_u32(h + 8, len);
	put_u64(h + 12, msgid);
	mac_run(mac->sip, h, REC_FIELDS_SIZE, NULL, 0, h + REC_FIELDS_SIZE, SPOOL_REC_TAG_SIZE);
	mac_run(mac->hmac, h, REC_FIELDS_SIZE + SPOOL_REC_TAG_SIZE, payload, len, h + REC_FIELDS_SIZE + SPOOL_REC_TAG_SIZE,
		SPOOL_REC_MAC_SIZE);
	buf_reserve(out, sizeof(h) + len);
	buf_append(out, h, sizeof(h));
	buf_append(out, payload, len);
}

/* The payload length the fixed fields declare, or -EBADMSG. */
static long rec_fields(const unsigned char *h, uint32_t magic)
{
	if (get_u32(h) != magic || h[4] == 0 || h[4] > SPOOL_REC_TYPE_MAX || h[5] || h[6] || h[7])
		return -EBADMSG;
	uint32_t len = get_u32(h + 8);
	return len > SPOOL_REC_MAX_PAYLOAD ? -EBADMSG : (long)len;
}

static long rec_out(const unsigned char *p, size_t hdr, long len, struct spool_rec *out)
{
	out->type = p[4];
	out->msgid = get_u64(p + 12);
	out->payload = p + hdr;
	out->len = (uint32_t)len;
	return (long)hdr + len;
}

long spool_rec_decode(struct spool_mac *mac, const unsigned char *p, size_t n, struct spool_rec *out)
{
	unsigned char want[SPOOL_REC_MAC_SIZE];
	if (n < SPOOL_REC_HDR_SIZE)
		return -EAGAIN;
	long len = rec_fields(p, SPOOL_REC_MAGIC);
	if (len < 0)
		return len;
	mac_run(mac->sip, p, REC_FIELDS_SIZE, NULL, 0, want, SPOOL_REC_TAG_SIZE);
	if (CRYPTO_memcmp(want, p + REC_FIELDS_SIZE, SPOOL_REC_TAG_SIZE) != 0)
		return -EBADMSG;
	if (n - SPOOL_REC_HDR_SIZE < (size_t)len)
		return -EAGAIN;
	mac_run(mac->hmac, p, REC_FIELDS_SIZE + SPOOL_REC_TAG_SIZE, p + SPOOL_REC_HDR_SIZE, (size_t)len, want,
		SPOOL_REC_MAC_SIZE);
	if (CRYPTO_memcmp(want, p + REC_FIELDS_SIZE + SPOOL_REC_TAG_SIZE, SPOOL_REC_MAC_SIZE) != 0)
		return -EBADMSG;
	return rec_out(p, SPOOL_REC_HDR_SIZE, len, out);
}

static uint32_t rec_crc_v1(const unsigned char *hdr, const void *payload, uint32_t len)
{
	unsigned char h[SPOOL_REC_V1_HDR_SIZE];
	memcpy(h, hdr, sizeof(h));
	put_u32(h + REC_FIELDS_SIZE, 0);
	return crc32_of(crc32_of(0, h, sizeof(h)), payload, len);
}

long spool_rec_decode_v1(const unsigned char *p, size_t n, struct spool_rec *out)
{
	if (n < SPOOL_REC_V1_HDR_SIZE)
		return -EAGAIN;
	long len = rec_fields(p, SPOOL_REC_MAGIC_V1);
	if (len < 0)
		return len;
	if (n - SPOOL_REC_V1_HDR_SIZE < (size_t)len)
		return -EAGAIN;
	if (rec_crc_v1(p, p + SPOOL_REC_V1_HDR_SIZE, (uint32_t)len) != get_u32(p + REC_FIELDS_SIZE))
		return -EBADMSG;
	return rec_out(p, SPOOL_REC_V1_HDR_SIZE, len, out);
}

bool spool_seg_is_v1(const unsigned char *p, size_t n)
{
	return n >= 4 && get_u32(p) == SPOOL_REC_MAGIC_V1;
}

/* --- TLV fields ------------------------------------------------------- */

enum {
	ENV_SENDER = 1, ENV_ENVID, ENV_BODY, ENV_RET, ENV_SMTPUTF8, ENV_SIZE, ENV_CLIENT_ADDR,
	ENV_HELO, ENV_PROTO, ENV_ARRIVAL, ENV_BODY_SIZE, ENV_FLAGS, ENV_DEDUP, ENV_AUTH_HEADER, ENV_HEAD, ENV_HEAD_SKIP,
	ENV_QUARANTINE, ENV_RCPT = 20
};
enum { RC_ADDR = 1, RC_ORCPT, RC_NOTIFY, RC_STATE, RC_CODE, RC_REPLY };
enum { UPD_INDEX = 1, UPD_STATE, UPD_CODE, UPD_REPLY };
enum { META_ATTEMPTS = 1, META_NEXT, META_FLAGS, META_EXTEND, META_HELD_SINCE };

static void tlv(struct buf *out, uint8_t tag, const void *v, size_t n)
{
	unsigned char h[5];
	h[0] = tag;
	put_u32(h + 1, (uint32_t)n);
	buf_append(out, h, sizeof(h));
	buf_append(out, v, n);
}

static void tlv_str(struct buf *out, uint8_t tag, const char *s)
{
	if (s)
		tlv(out, tag, s, strlen(s));
}

static void tlv_u64(struct buf *out, uint8_t tag, uint64_t v)
{
	unsigned char b[8];
	put_u64(b, v);
	tlv(out, tag, b, sizeof(b));
}

struct tlv_reader {
	const unsigned char *p;
	size_t n;
};

/* 1 with a field, 0 at the end, -EBADMSG on a truncated field. */
static int tlv_next(struct tlv_reader *r, uint8_t *tag, const unsigned char **v, size_t *len)
{
	if (r->n == 0)
		return 0;
	if (r->n < 5)
		return -EBADMSG;
	uint32_t l = get_u32(r->p + 1);
	if (l > r->n - 5)
		return -EBADMSG;
	*tag = r->p[0];
	*v = r->p + 5;
	*len = l;
	r->p += 5 + l;
	r->n -= 5 + l;
	return 1;
}

static int take_str(const unsigned char *v, size_t n, char **out)
{
	if (*out || memchr(v, '\0', n))
		return -EBADMSG;  /* repeated field, or a NUL inside */
	*out = xstrndup((const char *)v, n);
	return 0;
}

char *spool_reply_dup(const char *s, size_t n)
{
	if (!s)
		return NULL;
	if (n > SPOOL_REPLY_MAX) {
		n = SPOOL_REPLY_MAX;
		while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
			n--; /* not inside a UTF-8 sequence */
	}
	return xstrndup(s, n);
}

/* Like take_str, cut to SPOOL_REPLY_MAX: a reply stored by a v1 spool may be longer. */
static int take_reply(const unsigned char *v, size_t n, char **out)
{
	if (*out || memchr(v, '\0', n))
		return -EBADMSG;
	*out = spool_reply_dup((const char *)v, n);
	return 0;
}

static int take_uint(const unsigned char *v, size_t n, uint64_t *out)
{
	uint64_t x = 0;
	if (n == 0 || n > 8)
		return -EBADMSG;
	for (size_t i = 0; i < n; i++)
		x |= (uint64_t)v[i] << (8 * i);
	*out = x;
	return 0;
}

static void rcpt_encode(const struct spool_rcpt *r, struct buf *out)
{
	tlv_str(out, RC_ADDR, r->addr);
	tlv_str(out, RC_ORCPT, r->orcpt);
	tlv_u64(out, RC_NOTIFY, r->notify);
	tlv_u64(out, RC_STATE, r->state);
	tlv_u64(out, RC_CODE, r->code);
	tlv_str(out, RC_REPLY, r->reply);
}

/*
 * The envelope is one record, so it must fit in one, whatever the clients
 * send: CFG_MAX_RECIPIENTS recipients, each with the longest address, ORCPT
 * and stored reply (cut to SPOOL_REPLY_MAX wherever one is stored), plus the
 * fixed fields at their longest (sender, ENVID, client address, HELO within
 * one command line, protocol keyword, seven numbers, the dedup key).
 * Compaction re-encodes envelopes with their replies, so they count too.
 */
#define TLV_SIZE(n) (5u + (n))
#define UINT_FIELD TLV_SIZE(8u)
#define RCPT_MAX \
	TLV_SIZE(TLV_SIZE(SMTP_PATH_MAX) + TLV_SIZE(SMTP_ORCPT_MAX) + 3 * UINT_FIELD + TLV_SIZE(SPOOL_REPLY_MAX))
#define ENV_FIXED_MAX                                                                                            \
	(TLV_SIZE(SMTP_PATH_MAX) + TLV_SIZE(SMTP_ENVID_MAX) + TLV_SIZE(INET6_ADDRSTRLEN) +                        \
	 TLV_SIZE(SMTP_CMD_LINE_MAX) + TLV_SIZE(32u) + 8 * UINT_FIELD + TLV_SIZE(32u) + TLV_SIZE(SPOOL_AUTH_HEADER_MAX) + \
	 TLV_SIZE(SPOOL_HEAD_MAX) + TLV_SIZE(SPOOL_REPLY_MAX))
_Static_assert((uint64_t)CFG_MAX_RECIPIENTS * RCPT_MAX + ENV_FIXED_MAX <= SPOOL_REC_MAX_PAYLOAD,
	       "an envelope with CFG_MAX_RECIPIENTS recipients must fit in one record");

void spool_env_encode(const struct spool_env *env, struct buf *out)
{
	tlv_str(out, ENV_SENDER, env->sender ? env->sender : "");
	tlv_str(out, ENV_ENVID, env->envid);
	tlv_u64(out, ENV_BODY, env->body);
	tlv_u64(out, ENV_RET, env->ret);
	tlv_u64(out, ENV_SMTPUTF8, env->smtputf8);
	tlv_u64(out, ENV_SIZE, env->size_param);
	tlv_str(out, ENV_CLIENT_ADDR, env->client_addr);
	tlv_str(out, ENV_HELO, env->client_helo);
	tlv_str(out, ENV_PROTO, env->proto);
	tlv_u64(out, ENV_ARRIVAL, (uint64_t)env->arrival);
	tlv_u64(out, ENV_BODY_SIZE, env->body_size);
	tlv_u64(out, ENV_FLAGS, env->flags);
	if (env->has_dedup_key)
		tlv(out, ENV_DEDUP, env->dedup_key, sizeof(env->dedup_key));
	if (env->auth_header && strlen(env->auth_header) <= SPOOL_AUTH_HEADER_MAX)
		tlv_str(out, ENV_AUTH_HEADER, env->auth_header);
	if (env->head && strlen(env->head) <= SPOOL_HEAD_MAX) {
		tlv_str(out, ENV_HEAD, env->head);
		tlv_u64(out, ENV_HEAD_SKIP, env->head_skip);
	}
	if (env->quarantine)
		tlv_str(out, ENV_QUARANTINE, env->quarantine);
	struct buf r = {0};
	for (uint32_t i = 0; i < env->nrcpt; i++) {
		buf_reset(&r);
		rcpt_encode(&env->rcpts[i], &r);
		tlv(out, ENV_RCPT, r.data, r.len);
	}
	buf_free(&r);
}

static int rcpt_decode(const unsigned char *p, size_t n, struct spool_rcpt *r)
{
	struct tlv_reader rd = {p, n};
	uint8_t tag;
	const unsigned char *v;
	size_t len;
	uint64_t x = 0;
	int rc;
	while ((rc = tlv_next(&rd, &tag, &v, &len)) > 0) {
		switch (tag) {
		case RC_ADDR: rc = take_str(v, len, &r->addr); break;
		case RC_ORCPT: rc = take_str(v, len, &r->orcpt); break;
		case RC_REPLY: rc = take_reply(v, len, &r->reply); break;
		case RC_NOTIFY: rc = take_uint(v, len, &x); r->notify = (uint8_t)x; break;
		case RC_STATE:
			rc = take_uint(v, len, &x);
			if (rc == 0 && x > SPOOL_RCPT_STATE_MAX)
				rc = -EBADMSG;
			r->state = (uint8_t)x;
			break;
		case RC_CODE: rc = take_uint(v, len, &x); r->code = (uint16_t)x; break;
		default: rc = 0; break;
		}
		if (rc < 0)
			return rc;
	}
	return rc < 0 || !r->addr ? -EBADMSG : 0;
}

static int env_add_rcpt(struct spool_env *env, const unsigned char *v, size_t len)
{
	env->rcpts = xrealloc(env->rcpts, (env->nrcpt + 1) * sizeof(*env->rcpts));
	struct spool_rcpt *r = &env->rcpts[env->nrcpt++];
	memset(r, 0, sizeof(*r));
	return rcpt_decode(v, len, r);
}

static int env_field(struct spool_env *env, uint8_t tag, const unsigned char *v, size_t len)
{
	uint64_t x = 0;
	int rc;
	switch (tag) {
	case ENV_SENDER: return take_str(v, len, &env->sender);
	case ENV_ENVID: return take_str(v, len, &env->envid);
	case ENV_CLIENT_ADDR: return take_str(v, len, &env->client_addr);
	case ENV_HELO: return take_str(v, len, &env->client_helo);
	case ENV_PROTO: return take_str(v, len, &env->proto);
	case ENV_RCPT: return env_add_rcpt(env, v, len);
	case ENV_AUTH_HEADER:
		if (len > SPOOL_AUTH_HEADER_MAX)
			return -EBADMSG;
		return take_str(v, len, &env->auth_header);
	case ENV_HEAD:
		if (len > SPOOL_HEAD_MAX)
			return -EBADMSG;
		return take_str(v, len, &env->head);
	case ENV_QUARANTINE:
		return take_reply(v, len, &env->quarantine);
	case ENV_DEDUP:
		if (len != sizeof(env->dedup_key))
			return -EBADMSG;
		memcpy(env->dedup_key, v, len);
		env->has_dedup_key = true;
		return 0;
	case ENV_BODY:
	case ENV_RET:
	case ENV_SMTPUTF8:
	case ENV_SIZE:
	case ENV_ARRIVAL:
	case ENV_BODY_SIZE:
	case ENV_FLAGS:
	case ENV_HEAD_SKIP:
		break;
	default:
		return 0;
	}
	if ((rc = take_uint(v, len, &x)) < 0)
		return rc;
	switch (tag) {
	case ENV_BODY: env->body = (uint8_t)x; break;
	case ENV_RET: env->ret = (uint8_t)x; break;
	case ENV_SMTPUTF8: env->smtputf8 = x != 0; break;
	case ENV_SIZE: env->size_param = x; break;
	case ENV_ARRIVAL: env->arrival = (int64_t)x; break;
	case ENV_BODY_SIZE: env->body_size = x; break;
	case ENV_FLAGS: env->flags = (uint32_t)x; break;
	case ENV_HEAD_SKIP: env->head_skip = x; break;
	}
	return 0;
}

int spool_env_decode(const unsigned char *p, size_t n, struct spool_env *env)
{
	memset(env, 0, sizeof(*env));
	struct tlv_reader rd = {p, n};
	uint8_t tag;
	const unsigned char *v;
	size_t len;
	int rc;
	while ((rc = tlv_next(&rd, &tag, &v, &len)) > 0)
		if ((rc = env_field(env, tag, v, len)) < 0)
			break;
	if (rc < 0 || !env->sender || env->nrcpt == 0 || (env->head && env->head_skip > env->body_size)) {
		spool_env_free(env);
		return -EBADMSG;
	}
	return 0;
}

void spool_env_free(struct spool_env *env)
{
	for (uint32_t i = 0; i < env->nrcpt; i++) {
		free(env->rcpts[i].addr);
		free(env->rcpts[i].orcpt);
		free(env->rcpts[i].reply);
	}
	free(env->rcpts);
	free(env->sender);
	free(env->envid);
	free(env->client_addr);
	free(env->client_helo);
	free(env->proto);
	free(env->auth_header);
	free(env->head);
	free(env->quarantine);
	memset(env, 0, sizeof(*env));
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void spool_env_copy(struct spool_env *dst, const struct spool_env *src)
{
	*dst = *src;
	dst->sender = dup_or_null(src->sender);
	dst->envid = dup_or_null(src->envid);
	dst->client_addr = dup_or_null(src->client_addr);
	dst->client_helo = dup_or_null(src->client_helo);
	dst->proto = dup_or_null(src->proto);
	dst->auth_header = dup_or_null(src->auth_header);
	dst->head = dup_or_null(src->head);
	dst->quarantine = dup_or_null(src->quarantine);
	dst->rcpts = xcalloc(src->nrcpt, sizeof(*dst->rcpts));
	for (uint32_t i = 0; i < src->nrcpt; i++) {
		dst->rcpts[i] = src->rcpts[i];
		dst->rcpts[i].addr = dup_or_null(src->rcpts[i].addr);
		dst->rcpts[i].orcpt = dup_or_null(src->rcpts[i].orcpt);
		dst->rcpts[i].reply = dup_or_null(src->rcpts[i].reply);
	}
}

void spool_rcpt_update_encode(const struct spool_rcpt_update *u, struct buf *out)
{
	tlv_u64(out, UPD_INDEX, u->index);
	tlv_u64(out, UPD_STATE, u->state);
	tlv_u64(out, UPD_CODE, u->code);
	tlv_str(out, UPD_REPLY, u->reply);
}

int spool_rcpt_update_decode(const unsigned char *p, size_t n, struct spool_rcpt_update *u, size_t *reply_len)
{
	struct tlv_reader rd = {p, n};
	uint8_t tag;
	const unsigned char *v;
	size_t len;
	uint64_t x;
	int rc, seen = 0;
	memset(u, 0, sizeof(*u));
	*reply_len = 0;
	while ((rc = tlv_next(&rd, &tag, &v, &len)) > 0) {
		if (tag == UPD_REPLY) {
			u->reply = (const char *)v;
			*reply_len = len;
			continue;
		}
		if (tag < UPD_INDEX || tag > UPD_CODE)
			continue;
		if (take_uint(v, len, &x) < 0)
			return -EBADMSG;
		seen |= 1 << tag;
		if (tag == UPD_INDEX)
			u->index = (uint32_t)x;
		else if (tag == UPD_STATE)
			u->state = (uint8_t)x;
		else
			u->code = (uint16_t)x;
	}
	if (rc < 0 || !(seen & (1 << UPD_INDEX)) || u->state > SPOOL_RCPT_STATE_MAX)
		return -EBADMSG;
	return 0;
}

void spool_meta_encode(const struct spool_meta *m, struct buf *out)
{
	tlv_u64(out, META_ATTEMPTS, m->attempts);
	tlv_u64(out, META_NEXT, (uint64_t)m->next_attempt);
	tlv_u64(out, META_FLAGS, m->flags);
	/* Written only when set: a record without them is the same as one from before they existed. */
	if (m->extend_s)
		tlv_u64(out, META_EXTEND, (uint64_t)m->extend_s);
	if (m->held_since)
		tlv_u64(out, META_HELD_SINCE, (uint64_t)m->held_since);
}

int spool_meta_decode(const unsigned char *p, size_t n, struct spool_meta *m)
{
	struct tlv_reader rd = {p, n};
	uint8_t tag;
	const unsigned char *v;
	size_t len;
	uint64_t x;
	int rc;
	memset(m, 0, sizeof(*m));
	while ((rc = tlv_next(&rd, &tag, &v, &len)) > 0) {
		if (tag < META_ATTEMPTS || tag > META_HELD_SINCE)
			continue; /* a later version's field */
		if (take_uint(v, len, &x) < 0)
			return -EBADMSG;
		if (tag == META_ATTEMPTS)
			m->attempts = (uint32_t)x;
		else if (tag == META_NEXT)
			m->next_attempt = (int64_t)x;
		else if (tag == META_FLAGS)
			m->flags = (uint32_t)x;
		else if (tag == META_EXTEND)
			m->extend_s = (int64_t)x;
		else
			m->held_since = (int64_t)x;
	}
	return rc < 0 ? -EBADMSG : 0;
}
