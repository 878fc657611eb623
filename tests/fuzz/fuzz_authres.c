// fuzz-sources: src/auth/authres.c src/smtpd/hdr_strip.c src/base/util.c
/*
 * fuzz_authres: libFuzzer target for Authentication-Results handling: the
 * recogniser of fields claiming our authserv-id (authres_is_ours), the
 * streaming filter that removes them (hdr_strip), and the writer
 * (authres_format) fed with hostile text.
 * The input is split at NUL bytes: the first piece is an authserv-id, the
 * second a message (or a field value), the rest texts for the writer.
 * Besides memory safety it checks: the recogniser answers the same twice
 * and never says "ours" for a value that does not contain the id (any
 * case); the filter's output does not depend on the split (whole, one byte
 * at a time, cut at a point taken from the input), is the input when
 * nothing was removed and shorter when something was, and keeps everything
 * from the first empty line on; the written field has CRLF line ends only,
 * lines within 998 octets, continuation lines that start with a tab, and,
 * when the id is a host name, is recognised as ours and removed by the
 * filter.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth/authres.h"
#include "smtpd/hdr_strip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void sink(void *arg, const char *p, size_t n)
{
	CHECK(n > 0);
	buf_append(arg, p, n);
}

/* Runs the filter on msg split at cut (step 0), or step bytes at a time. */
static uint32_t strip(const char *id, const char *msg, size_t n, size_t cut, size_t step, struct buf *out)
{
	struct hdr_strip f;
	hdr_strip_init(&f, id, sink, out);
	if (step == 0) {
		hdr_strip_feed(&f, msg, cut);
		hdr_strip_feed(&f, msg + cut, n - cut);
	} else {
		for (size_t i = 0; i < n; i += step)
			hdr_strip_feed(&f, msg + i, n - i < step ? n - i : step);
	}
	hdr_strip_finish(&f);
	return f.removed;
}

static bool contains_ci(const char *hay, size_t n, const char *needle)
{
	size_t k = strlen(needle);
	for (size_t i = 0; k && i + k <= n; i++)
		if (strncasecmp(hay + i, needle, k) == 0)
			return true;
	return false;
}

static void check_filter(const char *id, const char *msg, size_t n, size_t cut)
{
	struct buf a = {0}, b = {0}, c = {0};
	uint32_t ra = strip(id, msg, n, n, 0, &a);
	uint32_t rb = strip(id, msg, n, 0, 1, &b);
	uint32_t rc = strip(id, msg, n, cut % (n + 1), 0, &c);
	CHECK(ra == rb && ra == rc);
	CHECK(a.len == b.len && a.len == c.len);
	CHECK(a.len == 0 || (memcmp(a.data, b.data, a.len) == 0 && memcmp(a.data, c.data, a.len) == 0));
	if (ra == 0)
		CHECK(a.len == n && (n == 0 || memcmp(a.data, msg, n) == 0));
	else
		CHECK(a.len < n);
	/* The output ends like the input from its first empty line (the body is never touched). */
	const char *body = NULL;
	for (size_t i = 0; i + 1 < n && !body; i++)
		if (msg[i] == '\n' && (msg[i + 1] == '\n' || (msg[i + 1] == '\r' && i + 2 < n && msg[i + 2] == '\n')))
			body = msg + i + 1;
	if (body) {
		size_t blen = n - (size_t)(body - msg);
		CHECK(a.len >= blen && memcmp(a.data + a.len - blen, body, blen) == 0);
	}
	buf_free(&a);
	buf_free(&b);
	buf_free(&c);
}

static void check_lines(const struct buf *f)
{
	size_t start = 0, lines = 0;
	for (size_t i = 0; i < f->len; i++) {
		if (f->data[i] == '\r') {
			CHECK(i + 1 < f->len && f->data[i + 1] == '\n');
			CHECK(i - start <= 998);
			CHECK(lines == 0 || f->data[start] == '\t');
			lines++;
			start = i + 2;
			i++;
		} else {
			CHECK(f->data[i] != '\n' && f->data[i] != '\0');
		}
	}
	CHECK(lines > 0 && start == f->len);
}

static void check_format(const char *id, const char *const *t, size_t nt, uint8_t sel)
{
	struct dkim_sig_result sig = {.result = (enum dkim_result)(sel % 7), .why = nt > 3 ? t[3] : NULL};
	if (nt > 4)
		strncpy(sig.domain, t[4], sizeof(sig.domain) - 1);
	if (nt > 5)
		strncpy(sig.selector, t[5], sizeof(sig.selector) - 1);
	struct authres r = {
		.authserv_id = id,
		.spf_ran = sel & 1, .spf = (enum spf_result)(sel % 7),
		.spf_mailfrom = nt > 0 ? t[0] : NULL, .spf_helo = nt > 1 ? t[1] : NULL, .spf_reason = nt > 2 ? t[2] : NULL,
		.dkim_ran = sel & 2, .dkim = &sig, .ndkim = (sel >> 2) & 1,
		.dmarc_ran = sel & 8, .dmarc = (enum dmarc_result)(sel % 5), .dmarc_from = nt > 6 ? t[6] : NULL,
		.iprev_ran = sel & 16, .iprev = (enum iprev_result)(sel % 4), .iprev_ip = nt > 7 ? t[7] : NULL,
		.iprev_name = nt > 8 ? t[8] : NULL,
	};
	struct buf f = {0};
	authres_format(&r, &f);
	check_lines(&f);
	size_t name = strlen("Authentication-Results:");
	if (is_host_name(id, strlen(id))) {
		CHECK(authres_is_ours((const char *)f.data + name, f.len - name, id));
		struct buf out = {0};
		CHECK(strip(id, (const char *)f.data, f.len, f.len, 0, &out) == 1 && out.len == 0);
		buf_free(&out);
	}
	buf_free(&f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *copy = malloc(size + 1);
	CHECK(copy);
	memcpy(copy, data + 1, size - 1);
	copy[size - 1] = '\0';
	/* Pieces at NUL bytes: id, message, texts. */
	const char *piece[12];
	size_t lens[12], np = 0;
	for (size_t i = 0, start = 0; i <= size - 1 && np < 12; i++) {
		if (i == size - 1 || copy[i] == '\0') {
			piece[np] = copy + start;
			lens[np++] = i - start;
			start = i + 1;
		}
	}
	const char *id = piece[0];
	const char *msg = np > 1 ? piece[1] : "";
	size_t msglen = np > 1 ? lens[1] : 0;

	bool ours = authres_is_ours(msg, msglen, id);
	CHECK(ours == authres_is_ours(msg, msglen, id));
	if (ours) {
		size_t idlen = strlen(id);
		char bare[256];
		/* Ours means the id is in there (less its trailing dot). */
		if (idlen && id[idlen - 1] == '.')
			idlen--;
		CHECK(idlen > 0 && idlen < sizeof(bare));
		memcpy(bare, id, idlen);
		bare[idlen] = '\0';
		CHECK(contains_ci(msg, msglen, bare) || memchr(msg, '"', msglen));
	}
	check_filter(id, msg, msglen, data[0]);
	check_format(id, piece + 2, np > 2 ? np - 2 : 0, data[0]);
	free(copy);
	return 0;
}
