/*
 * msg_hdr: streaming header scanner (see msg_hdr.h for the contract).
 * Caller: the DATA/BDAT path of smtp_in.c, which feeds the client's content
 * (not our own Received: line) as it arrives and reads the results at the
 * end. A byte-at-a-time state machine over the header section; SHA-256 over
 * everything fed, in bulk. Invariants: message_id is always NUL-terminated
 * at id_len <= MSG_HDR_MSGID_MAX; every octet fed is hashed exactly once.
 * Error policy: input is never an error; a failure inside OpenSSL is
 * treated like out-of-memory (abort).
 *
 * The one subtle part is the first line: until it shows a ':' after a
 * field name we do not know whether it is a header field or the start of
 * a headerless body; until then header_len counts it provisionally.
 */
#include "msg_hdr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

enum {
	MH_LINE_START = 0, /* at the start of a header line */
	MH_LINE_CR,        /* a line that so far is just CR: the empty line? */
	MH_NAME,           /* in a field name */
	MH_NAME_WSP,       /* WSP after a field name (obs-optional, RFC 5322 4.5.3) */
	MH_VALUE,          /* after the ':' (or in a continuation line) */
	MH_SKIP,           /* a line that is not a field: ignored up to LF */
	MH_BODY            /* past the header section */
};

static void sha_init(struct msg_hdr *h)
{
	if (EVP_DigestInit_ex(h->sha, EVP_sha256(), NULL) != 1) {
		fprintf(stderr, "msg_hdr: EVP_DigestInit_ex failed\n");
		abort();
	}
}

static void sha_update(struct msg_hdr *h, const char *p, size_t n)
{
	if (n > 0 && EVP_DigestUpdate(h->sha, p, n) != 1) {
		fprintf(stderr, "msg_hdr: EVP_DigestUpdate failed\n");
		abort();
	}
}

void msg_hdr_init(struct msg_hdr *h)
{
	memset(h, 0, sizeof(*h));
	h->state = MH_LINE_START;
	h->sha = EVP_MD_CTX_new();
	if (!h->sha) {
		fprintf(stderr, "msg_hdr: out of memory\n");
		abort();
	}
	sha_init(h);
}

/* ftext = %d33-57 / %d59-126 (RFC 5322 3.6.8) */
static bool is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

static char lower(unsigned char c)
{
	return (char)(c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c);
}

static bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* The current field (with its continuation lines) is over. */
static void end_field(struct msg_hdr *h)
{
	if (h->cur_is_from) {
		char *v = h->from[h->nfrom - 1];
		while (h->from_len > 0 && is_wsp((unsigned char)v[h->from_len - 1]))
			h->from_len--;
		v[h->from_len] = '\0';
	}
	h->cur_is_from = false;
	if (h->cur_is_msgid) {
		while (h->id_len > 0 && is_wsp((unsigned char)h->message_id[h->id_len - 1]))
			h->id_len--;
		h->message_id[h->id_len] = '\0';
		h->have_msgid = true;
	}
	h->cur_is_msgid = false;
	h->cur_is_received = false;
}

/* The ':' after a field name: classify the field. */
static void start_value(struct msg_hdr *h)
{
	h->cur_is_received = h->name_len == 8 && memcmp(h->name, "received", 8) == 0;
	h->cur_is_msgid = !h->have_msgid && h->name_len == 10 && memcmp(h->name, "message-id", 10) == 0;
	if (h->cur_is_received)
		h->received++;
	if (h->name_len == 4 && memcmp(h->name, "from", 4) == 0) {
		h->cur_is_from = h->nfrom < MSG_HDR_FROM_KEEP;
		h->nfrom++;
		h->from_len = 0;
	}
	h->state = MH_VALUE;
}

/*
 * A value byte of a captured field (Message-ID, From): leading WSP is
 * skipped (unfolding keeps the WSP of a continuation line, trimming drops
 * it), CR/LF and other controls are dropped so the value is one clean line;
 * the rest is capped at max.
 */
static bool capture(char *v, size_t *len, size_t max, unsigned char c)
{
	if ((c < 0x20 && c != '\t') || c == 0x7f)
		return true;
	if (*len == 0 && is_wsp(c))
		return true;
	if (*len >= max)
		return false;
	v[(*len)++] = (char)c;
	v[*len] = '\0';
	return true;
}

static void capture_value(struct msg_hdr *h, unsigned char c)
{
	if (h->cur_is_msgid)
		capture(h->message_id, &h->id_len, MSG_HDR_MSGID_MAX, c);
	else if (h->cur_is_from && !capture(h->from[h->nfrom - 1], &h->from_len, MSG_HDR_FROM_MAX, c))
		h->from_cut = true; /* a cut author list could name other authors than the whole (DMARC must not guess) */
}

/* A line that is not a field: kept in the header section, ignored. */
static void not_a_field(struct msg_hdr *h, unsigned char c)
{
	end_field(h);
	h->state = c == '\n' ? MH_LINE_START : MH_SKIP;
}

static void empty_line(struct msg_hdr *h)
{
	end_field(h);
	h->state = MH_BODY;
	h->in_body = true;
}

static void at_line_start(struct msg_hdr *h, unsigned char c)
{
	if (c == '\n') {
		empty_line(h);
		return;
	}
	if (c == '\r') {
		h->state = MH_LINE_CR;
		return;
	}
	if (is_wsp(c)) {
		/* A continuation line: unfold into the current field (first of all, our Received:). */
		h->state = MH_VALUE;
		capture_value(h, c);
		return;
	}
	end_field(h);
	if (!is_ftext(c)) {
		not_a_field(h, c);
		return;
	}
	h->name_len = 0;
	h->state = MH_NAME;
	h->name[h->name_len++] = lower(c);
}

static void at_name(struct msg_hdr *h, unsigned char c)
{
	if (c == ':') {
		start_value(h);
		return;
	}
	if (is_wsp(c)) {
		h->state = MH_NAME_WSP;
		return;
	}
	if (h->state == MH_NAME && is_ftext(c)) {
		/* Only short names matter; longer ones are counted, not kept. */
		if (h->name_len < sizeof(h->name))
			h->name[h->name_len] = lower(c);
		h->name_len++;
		return;
	}
	not_a_field(h, c);
}

/* One octet of the header section. */
static void header_byte(struct msg_hdr *h, unsigned char c)
{
	switch (h->state) {
	case MH_LINE_START:
		at_line_start(h, c);
		break;
	case MH_LINE_CR:
		if (c == '\n') {
			empty_line(h);
			break;
		}
		end_field(h);
		not_a_field(h, c);
		break;
	case MH_NAME:
	case MH_NAME_WSP:
		at_name(h, c);
		break;
	case MH_VALUE:
		if (c == '\n')
			h->state = MH_LINE_START;
		else
			capture_value(h, c);
		break;
	default: /* MH_SKIP */
		if (c == '\n')
			h->state = MH_LINE_START;
		break;
	}
}

void msg_hdr_feed(struct msg_hdr *h, const char *p, size_t n)
{
	sha_update(h, p, n);
	for (size_t i = 0; i < n && h->state != MH_BODY; i++) {
		header_byte(h, (unsigned char)p[i]);
		h->header_len++;
	}
}

void msg_hdr_free(struct msg_hdr *h)
{
	EVP_MD_CTX_free(h->sha);
	h->sha = NULL;
}

void msg_hdr_finish(struct msg_hdr *h)
{
	unsigned int len = 0;

	if (h->state != MH_BODY)
		end_field(h); /* no empty line: everything was header */
	if (!h->sha)
		return;
	if (EVP_DigestFinal_ex(h->sha, h->content_sha256, &len) != 1 || len != sizeof(h->content_sha256)) {
		fprintf(stderr, "msg_hdr: EVP_DigestFinal_ex failed\n");
		abort();
	}
	msg_hdr_free(h);
}
