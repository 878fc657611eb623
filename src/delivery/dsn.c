/*
 * dsn: builds delivery status notifications (see dsn.h for the contract).
 * Caller: the scheduler, when a recipient fails or its delay warning is
 * due; it spools the result as a new message flagged SPOOL_ENV_IS_DSN.
 * Shape: the three parts are built into scratch buffers first, so the MIME
 * boundary can be checked against all of them, then the message is
 * assembled. Invariants of the output: CRLF line endings only, no line over
 * DSN_LINE_MAX octets, and no text from a peer (diagnostics, host names,
 * ORCPT, ENVID) is copied in without its controls removed: a hostile reply
 * cannot add header fields or MIME structure. The original (or its header
 * section) goes in byte for byte only when it already obeys the line rules,
 * inside its own part, under a boundary chosen not to occur in it.
 * Error policy: none; bad input is cleaned up, never refused.
 */
#include "dsn.h"

#include <string.h>
#include <time.h>

#include "base/smtp_proto.h"

#define DSN_LINE_MAX 998 /* RFC 5322 2.1.1, excluding CRLF */
#define DSN_LINE_SOFT 78 /* where we wrap text when a space allows */
#define DSN_SEED_MAX 54  /* "=_mxv_" seed "." 8 hex: at most 69 of the 70 octets (RFC 2046 5.1.1) */

struct dsn_ctx {
	const struct dsn_input *in;
	bool utf8;               /* SMTPUTF8 envelope: RFC 6533 types, UTF-8 addresses */
	char seed[DSN_SEED_MAX + 1];
	const char *mta;         /* cleaned reporting MTA */
	struct buf mta_buf;
	struct buf tmp;          /* scratch for cleaned values */
};

/* --- cleaning and formatting --------------------------------------------- */

/*
 * Appends s with controls made harmless: CR, LF and HTAB become a space
 * (a multi-line reply reads as one line), other controls and DEL '?', and
 * 8-bit octets '?' unless keep8.
 */
static void put_clean(struct buf *out, const char *s, size_t n, bool keep8)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\r' || c == '\n' || c == '\t')
			c = ' ';
		else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !keep8))
			c = '?';
		buf_append(out, &c, 1);
	}
}

static const char *clean(struct dsn_ctx *x, const char *s, size_t max, bool keep8)
{
	size_t n = s ? strnlen(s, max) : 0;
	buf_reset(&x->tmp);
	put_clean(&x->tmp, s ? s : "", n, keep8);
	return buf_cstr(&x->tmp);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* xtext (RFC 3461 4) decoded into out; a malformed "+" escape is kept as is. */
static void xtext_decode(const char *s, struct buf *out)
{
	for (size_t i = 0; s[i]; i++) {
		int hi, lo;
		if (s[i] == '+' && (hi = hexval(s[i + 1])) >= 0 && (lo = hexval(s[i + 2])) >= 0) {
			unsigned char c = (unsigned char)(hi << 4 | lo);
			buf_append(out, &c, 1);
			i += 2;
		} else {
			buf_append(out, &s[i], 1);
		}
	}
}

/* RFC 5322 3.3 date-time in UTC. */
static void put_date(struct buf *out, int64_t t)
{
	static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t tt = (time_t)(t < 0 ? 0 : t > 253402300799 ? 253402300799 : t); /* years 1970..9999 */
	struct tm tm;

	gmtime_r(&tt, &tm);
	buf_printf(out, "%s, %d %s %d %02d:%02d:%02d +0000", days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
		   tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static void newline(struct buf *out, const char *indent, size_t *col)
{
	buf_append_str(out, "\r\n");
	buf_append_str(out, indent);
	*col = strlen(indent);
}

/*
 * Appends lead, then the words of text (clean: no CR or LF), wrapped at a
 * space before column DSN_LINE_SOFT; each continuation line starts with
 * indent (WSP, so a header field stays one folded field). A word too long
 * for any line is split at DSN_LINE_MAX. Ends the line with CRLF.
 */
static void put_wrapped(struct buf *out, const char *lead, const char *text, const char *indent)
{
	size_t col = strlen(lead), i = 0, n = strlen(text);
	bool fresh = true; /* nothing after lead (or indent) on this line yet */

	buf_append_str(out, lead);
	for (;;) {
		while (i < n && text[i] == ' ')
			i++;
		size_t end = i;
		while (end < n && text[end] != ' ')
			end++;
		size_t w = end - i;
		if (w == 0)
			break;
		if (!fresh && col + 1 + w > DSN_LINE_SOFT) {
			newline(out, indent, &col);
		} else if (!fresh) {
			buf_append_str(out, " ");
			col++;
		}
		while (col + w > DSN_LINE_MAX) {
			size_t take = DSN_LINE_MAX - col;
			buf_append(out, text + i, take);
			i += take;
			w -= take;
			newline(out, indent, &col);
		}
		buf_append(out, text + i, w);
		col += w;
		fresh = false;
		i = end;
	}
	buf_append_str(out, "\r\n");
}

/* The diagnostic, cleaned and cut at DSN_DIAG_MAX. */
static const char *diag_text(struct dsn_ctx *x, const char *diag)
{
	size_t n = strnlen(diag, DSN_DIAG_MAX + 1);
	buf_reset(&x->tmp);
	put_clean(&x->tmp, diag, n > DSN_DIAG_MAX ? DSN_DIAG_MAX : n, false);
	if (n > DSN_DIAG_MAX)
		buf_append_str(&x->tmp, " [...]");
	return buf_cstr(&x->tmp);
}

/* RFC 3463 status-code: class "." subject "." detail, else the default. */
static const char *status_of(const struct dsn_ctx *x, const char *s)
{
	const char *def = x->in->action == DSN_FAILED ? "5.0.0" : "4.0.0";
	size_t digits = 0, dots = 0;

	if (!s || !(s[0] == '2' || s[0] == '4' || s[0] == '5') || s[1] != '.')
		return def;
	for (const char *p = s + 2; *p; p++) {
		if (*p == '.' && digits > 0 && dots == 0) {
			dots++;
			digits = 0;
		} else if (*p >= '0' && *p <= '9' && digits < 3) {
			digits++;
		} else {
			return def;
		}
	}
	return dots == 1 && digits > 0 ? s : def;
}

static bool is_let_dig(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/*
 * Length of the host name at the start of a remote MTA's description, or
 * 0: a name followed by nothing, by "[address]", by ":port", or by white
 * space or a control (the rest is dropped). A root dot is left out. What
 * else follows (another ':' of an IPv6 address, '_', '/') makes it not a
 * name of its own, so none.
 */
static size_t host_name_prefix(const char *s)
{
	size_t n = 0;

	while (n <= SMTP_DOMAIN_MAX && (is_let_dig(s[n]) || s[n] == '-' || s[n] == '.'))
		n++;
	const char *rest = s + n;
	if (*rest == ':') {
		size_t port = strspn(rest + 1, "0123456789");
		if (port == 0 || port > 5 || rest[1 + port] != '\0')
			return 0;
	} else if (*rest != '\0' && *rest != '[' && *rest != ' ' && (unsigned char)*rest >= 0x20 && *rest != 0x7f) {
		return 0;
	}
	if (n > 0 && s[n - 1] == '.')
		n--;
	return is_host_name(s, n) ? n : 0;
}

static bool has_8bit(const void *p, size_t n)
{
	const unsigned char *s = p;
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 0x80)
			return true;
	return false;
}

/* --- part 1: text/plain ---------------------------------------------------- */

static void text_intro(struct dsn_ctx *x, struct buf *t)
{
	buf_printf(t, "This is the mail system at host %s.\r\n\r\n", x->mta);
	buf_append_str(t, "It is a backup mail exchanger (secondary MX) for the domains of the\r\n"
			  "recipients below: it accepted your message for them and has been\r\n"
			  "trying to pass it on to their primary mail servers.\r\n\r\n");
	if (x->in->action == DSN_FAILED) {
		buf_append_str(t, "Your message could not be delivered to the recipients below. It is\r\n"
				  "returned to you with this report; nothing more will be tried.\r\n\r\n");
		return;
	}
	buf_append_str(t, "Your message has not yet been delivered to the recipients below.\r\n"
			  "This is only a warning: you do not need to send it again.\r\n"
			  "Delivery will be tried until ");
	put_date(t, x->in->will_retry_until);
	buf_append_str(t, ".\r\n\r\n");
}

static void text_rcpt(struct dsn_ctx *x, struct buf *t, const struct dsn_rcpt *r)
{
	char lead[320];

	buf_printf(t, "<%s>\r\n", clean(x, r->rcpt->addr, SMTP_PATH_MAX, x->utf8));
	if (r->diagnostic && r->diagnostic[0]) {
		if (fmt(lead, sizeof(lead), "    %s said: ",
			r->remote_mta ? clean(x, r->remote_mta, SMTP_DOMAIN_MAX, false) : "the mail server") < 0)
			lead[0] = '\0';
		put_wrapped(t, lead, diag_text(x, r->diagnostic), "    ");
	} else {
		buf_printf(t, "    status %s, no reply from a mail server\r\n", status_of(x, r->status));
	}
}

static void build_text(struct dsn_ctx *x, struct buf *t)
{
	text_intro(x, t);
	for (size_t i = 0; i < x->in->nrcpt; i++)
		text_rcpt(x, t, &x->in->rcpts[i]);
	buf_printf(t, "\r\nQueue ID: %s\r\n", clean(x, x->in->queue_id, 64, false));
}

/* --- part 2: message/delivery-status (RFC 3464 2.2, 2.3) ------------------ */

static void status_per_message(struct dsn_ctx *x, struct buf *s)
{
	const struct spool_env *env = x->in->env;

	buf_printf(s, "Reporting-MTA: dns; %s\r\n", x->mta);
	buf_printf(s, "X-Mxvault-Queue-ID: %s\r\n", clean(x, x->in->queue_id, 64, false));
	if (env->envid && env->envid[0]) {
		struct buf dec = {0};
		xtext_decode(env->envid, &dec); /* RFC 3461 6.3 (a): decoded */
		buf_printf(s, "Original-Envelope-Id: %s\r\n", clean(x, buf_cstr(&dec), SMTP_ENVID_MAX, false));
		buf_free(&dec);
	}
	buf_append_str(s, "Arrival-Date: ");
	put_date(s, env->arrival);
	buf_append_str(s, "\r\n");
}

/* "Original-Recipient: addr-type;address", decoded from the ORCPT's xtext (RFC 3461 6.3 (c)). */
static void status_orcpt(struct dsn_ctx *x, struct buf *s, const char *orcpt)
{
	const char *semi = strchr(orcpt, ';');
	struct buf dec = {0};

	if (!semi || semi == orcpt)
		return;
	buf_append(&dec, orcpt, (size_t)(semi - orcpt) + 1);
	if ((size_t)(semi - orcpt) == 5 && ascii_ieq(orcpt, 5, "utf-8", 5))
		buf_append_str(&dec, semi + 1); /* utf-8-addr-xtext (RFC 6533 3): kept as received */
	else
		xtext_decode(semi + 1, &dec);
	buf_printf(s, "Original-Recipient: %s\r\n", clean(x, buf_cstr(&dec), SMTP_ORCPT_MAX, x->utf8));
	buf_free(&dec);
}

static void status_per_rcpt(struct dsn_ctx *x, struct buf *s, const struct dsn_rcpt *r)
{
	const char *addr = r->rcpt->addr ? r->rcpt->addr : "";

	buf_append_str(s, "\r\n");
	if (r->rcpt->orcpt)
		status_orcpt(x, s, r->rcpt->orcpt);
	buf_printf(s, "Final-Recipient: %s; %s\r\n", x->utf8 && has_8bit(addr, strlen(addr)) ? "utf-8" : "rfc822",
		   clean(x, addr, SMTP_PATH_MAX, x->utf8));
	buf_printf(s, "Action: %s\r\n", x->in->action == DSN_FAILED ? "failed" : "delayed");
	buf_printf(s, "Status: %s\r\n", status_of(x, r->status));
	size_t host = r->remote_mta ? host_name_prefix(r->remote_mta) : 0;
	if (host > 0) /* the dns type takes a host name: see dsn.h */
		buf_printf(s, "Remote-MTA: dns; %.*s\r\n", (int)host, r->remote_mta);
	if (r->diagnostic && r->diagnostic[0])
		put_wrapped(s, "Diagnostic-Code: smtp; ", diag_text(x, r->diagnostic), " ");
	if (r->last_attempt > 0) {
		buf_append_str(s, "Last-Attempt-Date: ");
		put_date(s, r->last_attempt);
		buf_append_str(s, "\r\n");
	}
	if (x->in->action == DSN_DELAYED) {
		buf_append_str(s, "Will-Retry-Until: ");
		put_date(s, x->in->will_retry_until);
		buf_append_str(s, "\r\n");
	}
}

static void build_status(struct dsn_ctx *x, struct buf *s)
{
	status_per_message(x, s);
	for (size_t i = 0; i < x->in->nrcpt; i++)
		status_per_rcpt(x, s, &x->in->rcpts[i]);
}

/* --- part 3: the original ---------------------------------------------------- */

struct returned {
	const char *type;
	const char *p;
	size_t n;
};

/* Octets before the empty line ending the header section (all, if none). */
static size_t header_section_len(const char *p, size_t n)
{
	size_t line = 0;
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i == line || (i == line + 1 && p[line] == '\r'))
			return line;
		line = i + 1;
	}
	return n;
}

/*
 * Can these octets travel unchanged, as the whole message (message/rfc822)
 * or its header section (RFC 5322 2.1.1, 2.3; RFC 6152)? CRLF line ends
 * only, no NUL, no line over DSN_LINE_MAX octets (the last one too, CRLF
 * or not), and 8-bit octets only if the original came with them allowed.
 */
static bool travels_unchanged(const char *p, size_t n, bool allow8)
{
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r' && (i + 1 == n || p[i + 1] != '\n'))
			return false;
		if (c == '\n' && (i == 0 || p[i - 1] != '\r'))
			return false;
		if (c == 0 || (c >= 0x80 && !allow8))
			return false;
		if (c == '\n')
			col = 0;
		else if (c != '\r' && ++col > DSN_LINE_MAX) /* a CR is always the CRLF's here */
			return false;
	}
	return true;
}

/*
 * The header section made fit to travel, for when it cannot as it is: any
 * line ending becomes CRLF, controls and (unless utf8) 8-bit octets are
 * replaced, and a line too long is broken with a continuation (CRLF SP).
 */
static void copy_headers(const char *p, size_t n, bool utf8, struct buf *out)
{
	size_t col = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '\r' || c == '\n') {
			if (c == '\r' && i + 1 < n && p[i + 1] == '\n')
				i++;
			buf_append_str(out, "\r\n");
			col = 0;
			continue;
		}
		if (col == DSN_LINE_MAX) {
			buf_append_str(out, "\r\n ");
			col = 1;
		}
		put_clean(out, (const char *)&c, 1, utf8);
		col++;
	}
	if (col > 0)
		buf_append_str(out, "\r\n");
}

/*
 * The whole original (RET=FULL, small enough) or its header section, each
 * byte for byte when it can travel unchanged; a header section that cannot
 * is returned as a cleaned copy, a whole message that cannot as headers.
 */
static void build_returned(struct dsn_ctx *x, size_t max_full, struct buf *hdrs, struct returned *r)
{
	const struct dsn_input *in = x->in;
	bool allow8 = in->env->body == SMTP_BODY_8BITMIME || x->utf8;

	if (in->env->ret == SMTP_RET_FULL && in->original_len <= max_full &&
	    travels_unchanged(in->original, in->original_len, allow8)) {
		r->type = x->utf8 ? "message/global" : "message/rfc822";
		r->p = in->original;
		r->n = in->original_len;
		return;
	}
	size_t n = header_section_len(in->original, in->original_len);
	r->type = x->utf8 ? "message/global-headers" : "text/rfc822-headers";
	if (travels_unchanged(in->original, n, allow8)) {
		r->p = in->original;
		r->n = n;
		return;
	}
	copy_headers(in->original, n, x->utf8, hdrs);
	r->p = (const char *)hdrs->data;
	r->n = hdrs->len;
}

/* --- assembly ------------------------------------------------------------------ */

static bool occurs(const char *hay, size_t n, const char *needle)
{
	return hay && memmem(hay, n, needle, strlen(needle)) != NULL;
}

/*
 * "=_mxv_" + seed, unless "--" + it occurs in a part (RFC 2046 5.1.1); then
 * the seed plus a checksum of the parts and an attempt counter. Each
 * attempt is a new string and the parts are finite, so this ends; the
 * checksum keeps a sender from lining up the candidates in advance.
 */
static void pick_boundary(struct dsn_ctx *x, const struct buf *t, const struct buf *s, const struct returned *r,
			  char *out, size_t outsz)
{
	uint32_t sum = crc32_of(0, r->p ? r->p : "", r->n);
	char delim[96];

	for (uint32_t k = 0;; k++) {
		int rc = k == 0 ? fmt(out, outsz, "=_mxv_%s", x->seed)
				: fmt(out, outsz, "=_mxv_%s.%08x", x->seed, crc32_of(sum, &k, sizeof(k)));
		if (rc < 0 || fmt(delim, sizeof(delim), "--%s", out) < 0)
			continue; /* cannot happen: the seed is capped */
		if (!occurs((const char *)t->data, t->len, delim) && !occurs((const char *)s->data, s->len, delim) &&
		    !occurs(r->p, r->n, delim))
			return;
	}
}

static void put_top(struct dsn_ctx *x, struct buf *out, const char *boundary, bool eight)
{
	const struct dsn_input *in = x->in;

	buf_printf(out, "From: \"Mail Delivery System\" <MAILER-DAEMON@%s>\r\n", x->mta);
	buf_printf(out, "To: <%s>\r\n", clean(x, in->env->sender, SMTP_PATH_MAX, x->utf8));
	buf_printf(out, "Subject: %s\r\n", in->action == DSN_FAILED ? "Undelivered Mail Returned to Sender"
								      : "Delayed Mail (still being retried)");
	buf_append_str(out, "Date: ");
	put_date(out, in->now);
	buf_printf(out, "\r\nMessage-ID: <%s@%s>\r\n", x->seed, x->mta);
	buf_append_str(out, "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n");
	buf_printf(out, "Content-Type: multipart/report; report-type=%sdelivery-status;\r\n\tboundary=\"%s\"\r\n",
		   x->utf8 ? "global-" : "", boundary);
	if (eight)
		buf_append_str(out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_append_str(out, "\r\nThis is a MIME-encapsulated message.\r\n");
}

/* One body part: delimiter, its header, its content; the delimiter's CRLF follows in the next call. */
static void put_part(struct buf *out, const char *boundary, const char *type, const void *p, size_t n)
{
	buf_printf(out, "\r\n--%s\r\nContent-Type: %s\r\n", boundary, type);
	if (has_8bit(p, n))
		buf_append_str(out, "Content-Transfer-Encoding: 8bit\r\n");
	buf_append_str(out, "\r\n");
	buf_append(out, p, n);
}

/* Letters, digits, '-' and '_': fit for both a msg-id and a boundary. */
static void set_seed(struct dsn_ctx *x, const char *seed)
{
	size_t n = 0;
	for (; seed && seed[n] && n < DSN_SEED_MAX; n++) {
		char c = seed[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
		x->seed[n] = ok ? c : '_';
	}
	x->seed[n] = '\0';
	if (n == 0)
		memcpy(x->seed, "dsn", 4);
}

void dsn_build(const struct dsn_input *in, size_t max_full, struct buf *out)
{
	struct dsn_ctx x = {.in = in, .utf8 = in->env->smtputf8};
	struct buf text = {0}, status = {0}, hdrs = {0};
	struct returned ret = {0};
	char boundary[80];

	const char *mta = in->reporting_mta ? in->reporting_mta : "localhost";
	put_clean(&x.mta_buf, mta, strnlen(mta, SMTP_DOMAIN_MAX), false);
	x.mta = buf_cstr(&x.mta_buf);
	set_seed(&x, in->boundary_seed);
	build_text(&x, &text);
	build_status(&x, &status);
	if (in->original && in->original_len > 0)
		build_returned(&x, max_full, &hdrs, &ret);
	pick_boundary(&x, &text, &status, &ret, boundary, sizeof(boundary));

	bool eight = has_8bit(text.data, text.len) || has_8bit(status.data, status.len) || has_8bit(ret.p, ret.n);
	put_top(&x, out, boundary, eight);
	put_part(out, boundary, x.utf8 ? "text/plain; charset=utf-8" : "text/plain; charset=us-ascii", text.data,
		 text.len);
	put_part(out, boundary, x.utf8 ? "message/global-delivery-status" : "message/delivery-status", status.data,
		 status.len);
	if (ret.type)
		put_part(out, boundary, ret.type, ret.p, ret.n);
	buf_printf(out, "\r\n--%s--\r\n", boundary);
	buf_free(&text);
	buf_free(&status);
	buf_free(&hdrs);
	buf_free(&x.mta_buf);
	buf_free(&x.tmp);
}

bool dsn_wanted(const struct spool_env *env, const struct spool_rcpt *r, enum dsn_action action)
{
	if (!env->sender || env->sender[0] == '\0' || (env->flags & SPOOL_ENV_IS_DSN))
		return false;
	if (r->notify == 0)
		return true;
	if (r->notify & SMTP_NOTIFY_NEVER)
		return false;
	return (r->notify & (action == DSN_FAILED ? SMTP_NOTIFY_FAILURE : SMTP_NOTIFY_DELAY)) != 0;
}
