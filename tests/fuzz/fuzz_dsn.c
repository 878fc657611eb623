// fuzz-sources: src/delivery/dsn.c src/base/util.c
/*
 * fuzz_dsn: libFuzzer target for the DSN builder, fed with the fields a
 * peer controls. Input: octet 0 holds flags (bits 0-1 RET as stored, 2-3
 * BODY, 4 SMTPUTF8, 5 a delay warning rather than a failure, 6 empty
 * optional fields passed as NULL); octet 1 the recipients (bits 0-1, one to
 * four) and max_full (bits 2-7: 0 is 1 MiB, else that many times 32
 * octets); octets 2-9 a time (the dates are derived from it, so out of
 * range values reach put_date). Then NUL-terminated fields: the envelope
 * sender, ENVID, the boundary seed, and per recipient its address, ORCPT,
 * status, remote MTA and diagnostic; whatever follows the last of them is
 * the original message, NULs and all. Our own hostname and queue id are
 * fixed: they come from the configuration and the spool, not from a peer.
 *
 * Besides memory safety (ASan, UBSan, leaks) it checks the output contract
 * of dsn.h and aborts when it breaks: CRLF line ends only, no line over 998
 * octets; the message header is exactly our fields; the boundary occurs only
 * on its delimiter lines; each part's header is its Content-Type and, iff
 * the part has 8-bit octets, "Content-Transfer-Encoding: 8bit"; every line
 * of the delivery-status part is a known field in the right group, or a
 * continuation of Diagnostic-Code; Remote-MTA is a host name taken from the
 * start of the remote MTA given; 8-bit octets appear only with BODY=8BITMIME
 * or SMTPUTF8 (only in the returned original without SMTPUTF8), and the
 * message says so; the returned part is the original, or its header section,
 * byte for byte exactly when an independent check says it can travel
 * unchanged; and two builds of one input are identical.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/smtp_proto.h"
#include "delivery/dsn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

#define MAX_RCPT 4
#define HEAD 10          /* flags, counts, time */
#define LINE_MAX_OCTETS 998
#define MTA "mx2.example.net"

struct input {
	char *copy; /* the input, NUL-terminated; the fields point into it */
	struct spool_env env;
	struct spool_rcpt r[MAX_RCPT];
	struct dsn_rcpt d[MAX_RCPT];
	struct dsn_input in;
	size_t max_full;
};

struct view {
	const char *p;
	size_t n;
};

struct part {
	struct view whole, content; /* content: after the part's header */
};

static char empty[1];

/* The next NUL-terminated field at *at, or "" once the input is used up. */
static char *next_field(char **at, const char *end)
{
	if (*at >= end)
		return empty;
	char *f = *at;
	*at += strlen(f) + 1;
	return f;
}

static char *optional(char *f, bool nulls)
{
	return f[0] == '\0' && nulls ? NULL : f;
}

static bool parse(const uint8_t *data, size_t size, struct input *x)
{
	int64_t t;

	if (size < HEAD)
		return false;
	memset(x, 0, sizeof(*x));
	unsigned flags = data[0], counts = data[1];
	bool nulls = flags & 0x40;
	size_t nrcpt = (counts & 3) + 1;
	memcpy(&t, data + 2, sizeof(t));
	x->copy = malloc(size + 1);
	CHECK(x->copy);
	memcpy(x->copy, data, size);
	x->copy[size] = '\0';
	char *at = x->copy + HEAD, *end = x->copy + size;

	x->env.sender = next_field(&at, end);
	x->env.envid = optional(next_field(&at, end), nulls);
	x->env.ret = flags & 3;
	x->env.body = (flags >> 2 & 3) == 3 ? SMTP_BODY_8BITMIME : flags >> 2 & 3;
	x->env.smtputf8 = flags & 0x10;
	x->env.arrival = t;
	const char *seed = optional(next_field(&at, end), nulls);
	for (size_t i = 0; i < nrcpt; i++) {
		x->r[i].addr = next_field(&at, end);
		x->r[i].orcpt = optional(next_field(&at, end), nulls);
		x->d[i].rcpt = &x->r[i];
		x->d[i].status = optional(next_field(&at, end), nulls);
		x->d[i].remote_mta = optional(next_field(&at, end), nulls);
		x->d[i].diagnostic = optional(next_field(&at, end), nulls);
		x->d[i].last_attempt = i & 1 ? ~t : t ^ 0x5a5a;
	}
	x->in = (struct dsn_input){
		.reporting_mta = MTA, .queue_id = "0123456789abcdef", .env = &x->env,
		.action = flags & 0x20 ? DSN_DELAYED : DSN_FAILED, .rcpts = x->d, .nrcpt = nrcpt,
		.original = at < end ? at : NULL, .original_len = at < end ? (size_t)(end - at) : 0,
		.now = t ^ 0x7fff, .will_retry_until = t ^ INT64_MIN, .boundary_seed = seed,
	};
	x->max_full = counts >> 2 ? (size_t)(counts >> 2) * 32 : 1 << 20;
	return true;
}

/* --- an oracle for the returned part, written apart from dsn.c's ------------ */

/* Octets before the first empty line (CRLF or a lone LF), or all of them. */
static size_t oracle_header_len(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && p[i - 1] != '\n')
			continue;
		if (p[i] == '\n' || (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n'))
			return i;
	}
	return n;
}

static bool oracle_sendable(const char *p, size_t n, bool allow8)
{
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r') {
			if (i + 1 == n || p[i + 1] != '\n')
				return false;
			i++;
			col = 0;
		} else if (c == '\n' || c == 0 || (c >= 0x80 && !allow8) || ++col > LINE_MAX_OCTETS) {
			return false;
		}
	}
	return true;
}

/* --- reading the output back ------------------------------------------------- */

static bool has_8bit(struct view v)
{
	for (size_t i = 0; i < v.n; i++)
		if ((unsigned char)v.p[i] >= 0x80)
			return true;
	return false;
}

static bool starts(struct view v, const char *s)
{
	size_t n = strlen(s);
	return v.n >= n && memcmp(v.p, s, n) == 0;
}

static bool is(struct view v, const char *s)
{
	return v.n == strlen(s) && memcmp(v.p, s, v.n) == 0;
}

/* The next line of *rest, without its CRLF (every line has one: checked first). */
static bool next_line(struct view *rest, struct view *line)
{
	if (rest->n == 0)
		return false;
	const char *eol = memmem(rest->p, rest->n, "\r\n", 2);
	CHECK(eol);
	*line = (struct view){rest->p, (size_t)(eol - rest->p)};
	rest->n -= line->n + 2;
	rest->p = eol + 2;
	return true;
}

static void check_line_rules(struct view v)
{
	size_t col = 0;
	CHECK(v.n >= 2 && v.p[v.n - 2] == '\r' && v.p[v.n - 1] == '\n');
	for (size_t i = 0; i < v.n; i++) {
		if (v.p[i] == '\r') {
			CHECK(i + 1 < v.n && v.p[i + 1] == '\n');
			i++;
			col = 0;
		} else {
			CHECK(v.p[i] != '\n' && v.p[i] != '\0');
			CHECK(++col <= LINE_MAX_OCTETS);
		}
	}
}

/*
 * The message header is our fields, in order, one line each but for the
 * boundary's continuation: nothing a peer sent adds or splits a field.
 * Returns the body; *boundary is the boundary, *cte whether 8bit is declared.
 */
static struct view check_top(struct view all, bool utf8, struct view *boundary, bool *cte)
{
	static const char *const want[] = {
		"From: \"Mail Delivery System\" <MAILER-DAEMON@" MTA ">", "To: <", "Subject: ", "Date: ",
		"Message-ID: <", "Auto-Submitted: auto-replied", "MIME-Version: 1.0",
	};
	struct view rest = all, l;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		CHECK(next_line(&rest, &l) && starts(l, want[i]));
		CHECK(i > 0 || is(l, want[0]));
		CHECK(utf8 || !has_8bit(l));
	}
	CHECK(next_line(&rest, &l));
	CHECK(is(l, utf8 ? "Content-Type: multipart/report; report-type=global-delivery-status;"
			 : "Content-Type: multipart/report; report-type=delivery-status;"));
	CHECK(next_line(&rest, &l) && starts(l, "\tboundary=\"") && l.n > 12 && l.p[l.n - 1] == '"');
	*boundary = (struct view){l.p + 11, l.n - 12};
	CHECK(boundary->n >= 1 && boundary->n <= 70);
	for (size_t i = 0; i < boundary->n; i++)
		CHECK(boundary->p[i] && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=_-.",
					       boundary->p[i]));
	CHECK(next_line(&rest, &l));
	*cte = is(l, "Content-Transfer-Encoding: 8bit");
	if (*cte)
		CHECK(next_line(&rest, &l));
	CHECK(l.n == 0);
	return rest;
}

/*
 * Splits the body at its delimiters: every occurrence of "--" boundary must
 * start a line and be a delimiter ("--B" CRLF) or, last of all and ending
 * the message, the close ("--B--" CRLF). Returns the number of parts.
 */
static size_t split_parts(struct view body, struct view b, struct part *parts, size_t max)
{
	char delim[80];
	size_t found = 0, dn = b.n + 2;
	const char *prev = NULL, *end = body.p + body.n;

	memcpy(delim, "--", 2);
	memcpy(delim + 2, b.p, b.n);
	for (const char *at = body.p; (at = memmem(at, (size_t)(end - at), delim, dn)) != NULL; at++) {
		CHECK(at > body.p + 1 && at[-2] == '\r' && at[-1] == '\n');
		bool close = (size_t)(end - at) >= dn + 2 && at[dn] == '-' && at[dn + 1] == '-';
		const char *eol = at + dn + (close ? 2 : 0);
		CHECK((size_t)(end - eol) >= 2 && eol[0] == '\r' && eol[1] == '\n');
		if (prev) {
			CHECK(found < max);
			parts[found].whole = (struct view){prev, (size_t)(at - 2 - prev)};
			found++;
		}
		if (close) {
			CHECK(eol + 2 == end && prev);
			return found;
		}
		prev = eol + 2;
	}
	CHECK(false); /* no close delimiter */
	return 0;
}

/* Part header: Content-Type, then the 8bit label iff the content has 8-bit octets. */
static void check_part(struct part *pt, const char *type)
{
	struct view rest = pt->whole, l;

	CHECK(next_line(&rest, &l) && starts(l, "Content-Type: "));
	CHECK(is((struct view){l.p + 14, l.n - 14}, type));
	CHECK(next_line(&rest, &l));
	bool cte = is(l, "Content-Transfer-Encoding: 8bit");
	if (cte)
		CHECK(next_line(&rest, &l));
	CHECK(l.n == 0);
	pt->content = rest;
	CHECK(cte == has_8bit(pt->content));
}

/* --- the delivery-status part ----------------------------------------------- */

enum { F_PER_MSG = 4 };
static const char *const fields[] = {
	("Reporting-MTA: dns; " MTA), "X-Mxvault-Queue-ID: ", "Original-Envelope-Id: ", "Arrival-Date: ",
	"Original-Recipient: ", "Final-Recipient: ", "Action: ", "Status: ", "Remote-MTA: dns; ",
	"Diagnostic-Code: smtp; ", "Last-Attempt-Date: ", "Will-Retry-Until: ",
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

/* RFC 3463 status-code with a class a DSN may carry. */
static bool is_status(struct view v)
{
	size_t i = 0, dots = 0, digits = 0;
	if (v.n < 5 || (v.p[0] != '2' && v.p[0] != '4' && v.p[0] != '5') || v.p[1] != '.')
		return false;
	for (i = 2; i < v.n; i++) {
		if (v.p[i] == '.' && digits > 0 && dots++ == 0)
			digits = 0;
		else if (v.p[i] >= '0' && v.p[i] <= '9' && ++digits <= 3)
			continue;
		else
			return false;
	}
	return dots == 1 && digits > 0;
}

/* Remote-MTA: a host name's octets only, a prefix of what the caller gave. */
static void check_remote_mta(struct view v, const char *given)
{
	CHECK(given && v.n > 0 && v.n <= strlen(given) && memcmp(v.p, given, v.n) == 0);
	for (size_t i = 0; i < v.n; i++)
		CHECK(v.p[i] && strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-", v.p[i]));
	CHECK(v.p[0] != '.' && v.p[0] != '-' && v.p[v.n - 1] != '-' && v.p[v.n - 1] != '.');
}

/* Field counts of one group: each at most once, the required ones once. */
static void check_group(const struct input *x, size_t group, const unsigned *seen)
{
	bool delayed = x->in.action == DSN_DELAYED;
	for (size_t f = 0; f < NFIELDS; f++) {
		bool mine = (f < F_PER_MSG) == (group == 0);
		CHECK(seen[f] <= (mine ? 1u : 0u));
	}
	if (group == 0) {
		CHECK(seen[0] == 1 && seen[1] == 1 && seen[3] == 1);
		CHECK(seen[2] == (unsigned)(x->env.envid && x->env.envid[0]));
	} else {
		CHECK(seen[5] == 1 && seen[6] == 1 && seen[7] == 1);
		CHECK(seen[11] == (unsigned)delayed);
	}
}

/* A known field of the current group (its value checked), else abort; returns its index. */
static size_t status_field(const struct input *x, size_t group, struct view l)
{
	for (size_t f = 0; f < NFIELDS; f++) {
		if (!starts(l, fields[f]))
			continue;
		struct view v = {l.p + strlen(fields[f]), l.n - strlen(fields[f])};
		if (f == 0)
			CHECK(v.n == 0);
		if (f == 5)
			CHECK(starts(v, "rfc822; ") || (x->env.smtputf8 && starts(v, "utf-8; ")));
		if (f == 6)
			CHECK(is(v, x->in.action == DSN_DELAYED ? "delayed" : "failed"));
		if (f == 7)
			CHECK(is_status(v));
		if (f == 8)
			check_remote_mta(v, x->d[group - 1].remote_mta);
		return f;
	}
	CHECK(false);
	return 0;
}

/*
 * Groups separated by one empty line: the per-message one, then one per
 * recipient. A line starting with white space continues Diagnostic-Code
 * and has more than white space on it.
 */
static void check_status(const struct input *x, struct view content)
{
	struct view rest = content, l;
	unsigned seen[NFIELDS] = {0};
	size_t group = 0, last = NFIELDS;

	CHECK(x->env.smtputf8 || !has_8bit(content));
	while (next_line(&rest, &l)) {
		if (l.n == 0) {
			CHECK(last != NFIELDS && group < x->in.nrcpt);
			check_group(x, group++, seen);
			memset(seen, 0, sizeof(seen));
			last = NFIELDS;
		} else if (l.p[0] == ' ' || l.p[0] == '\t') {
			CHECK(last == 9);
			CHECK(strspn(l.p, " \t") < l.n); /* the line's CR stops strspn */
		} else {
			last = status_field(x, group, l);
			seen[last]++;
		}
	}
	CHECK(last != NFIELDS && group == x->in.nrcpt);
	check_group(x, group, seen);
}

/* --- the whole message -------------------------------------------------------- */

/* The returned part is exactly what the oracle says can travel, else a cleaned copy. */
static void check_returned(const struct input *x, struct part *pt)
{
	bool utf8 = x->env.smtputf8, allow8 = utf8 || x->env.body == SMTP_BODY_8BITMIME;
	const char *p = x->in.original;
	size_t n = x->in.original_len, hn = oracle_header_len(p, n);

	if (x->env.ret == SMTP_RET_FULL && n <= x->max_full && oracle_sendable(p, n, allow8)) {
		check_part(pt, utf8 ? "message/global" : "message/rfc822");
		CHECK(pt->content.n == n && memcmp(pt->content.p, p, n) == 0);
		return;
	}
	check_part(pt, utf8 ? "message/global-headers" : "text/rfc822-headers");
	if (oracle_sendable(p, hn, allow8)) {
		CHECK(pt->content.n == hn && memcmp(pt->content.p, p, hn) == 0);
		return;
	}
	CHECK(utf8 || !has_8bit(pt->content));
	CHECK(pt->content.n >= 2 && memcmp(pt->content.p + pt->content.n - 2, "\r\n", 2) == 0);
}

static void check_output(const struct input *x, const struct buf *out)
{
	struct view all = {(const char *)out->data, out->len}, b;
	struct part parts[4];
	bool utf8 = x->env.smtputf8, cte;

	check_line_rules(all);
	struct view body = check_top(all, utf8, &b, &cte);
	CHECK(cte == has_8bit(body)); /* the label is about the body; with SMTPUTF8 the header may be UTF-8 */
	CHECK(!cte || utf8 || x->env.body == SMTP_BODY_8BITMIME);
	size_t n = split_parts(body, b, parts, 4);
	CHECK(n == (x->in.original_len > 0 ? 3u : 2u));
	check_part(&parts[0], utf8 ? "text/plain; charset=utf-8" : "text/plain; charset=us-ascii");
	CHECK(utf8 || !has_8bit(parts[0].content));
	check_part(&parts[1], utf8 ? "message/global-delivery-status" : "message/delivery-status");
	check_status(x, parts[1].content);
	if (n == 3)
		check_returned(x, &parts[2]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input x;
	struct buf out = {0}, again = {0};

	if (!parse(data, size, &x))
		return 0;
	dsn_build(&x.in, x.max_full, &out);
	check_output(&x, &out);
	dsn_build(&x.in, x.max_full, &again); /* nothing depends on memory left uninitialised */
	CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0);
	buf_free(&out);
	buf_free(&again);
	free(x.copy);
	return 0;
}
