// fuzz-sources: src/smtpd/smtp_parse.c src/smtpd/smtp_data.c src/base/util.c
/*
 * fuzz_smtp_parse: libFuzzer target for every parser in smtp_parse.c. The
 * first input byte picks the parser (low 3 bits) and its flags (the rest);
 * the remaining bytes are the input. Besides memory safety (ASan, UBSan) it
 * checks properties and aborts when one breaks: results stay within the
 * RFC limits, a formatted path parses back to the same address, the DATA
 * decoder gives one result however its input is split, and dot-stuffing
 * what it decoded then decoding again gives the same message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/smtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_addr(const struct mailaddr *a, bool nul, bool nodom, bool utf8)
{
	struct mailaddr b;
	enum smtp_err err;
	char out[SMTP_PATH_MAX + 1];
	size_t used;

	CHECK(strlen(a->local) <= SMTP_LOCAL_MAX && strlen(a->domain) <= SMTP_DOMAIN_MAX);
	if (!a->domain_literal)
		for (const char *p = a->domain; *p; p++)
			CHECK(*p < 'A' || *p > 'Z');
	CHECK(smtp_format_path(a, out, sizeof(out)) == 0);
	CHECK(smtp_parse_path(out, strlen(out), nul, nodom, utf8, &b, &used, &err) == 0);
	CHECK(used == strlen(out));
	/* The route is dropped, and with it any UTF-8 it held. */
	if (a->has_route) {
		b.has_route = true;
		b.utf8 = a->utf8;
	}
	CHECK(memcmp(a, &b, sizeof(b)) == 0);
}

static void fuzz_path(unsigned flags, const char *s, size_t n)
{
	bool nul = flags & 1, nodom = flags & 2, utf8 = flags & 4;
	struct mailaddr a;
	enum smtp_err err;
	size_t used;

	if (smtp_parse_path(s, n, nul, nodom, utf8, &a, &used, &err) == 0) {
		CHECK(err == SMTP_ERR_NONE && used <= n && used <= SMTP_PATH_MAX);
		CHECK(!a.utf8 || utf8);
		check_addr(&a, nul, nodom, utf8);
	} else {
		CHECK(err != SMTP_ERR_NONE && used == 0);
	}
}

static void fuzz_mail_rcpt(unsigned flags, const char *s, size_t n, bool rcpt)
{
	struct mailaddr a;
	struct smtp_mail_params mp;
	struct smtp_rcpt_params rp;
	enum smtp_err err;
	int rc;

	if (rcpt)
		rc = smtp_parse_rcpt(s, n, flags & 1, &a, &rp, &err);
	else
		rc = smtp_parse_mail(s, n, &a, &mp, &err);
	CHECK((rc == 0) == (err == SMTP_ERR_NONE));
	if (rc)
		return;
	if (rcpt) {
		CHECK(strlen(rp.orcpt) <= SMTP_ORCPT_MAX);
		CHECK(!(rp.notify & SMTP_NOTIFY_NEVER) || rp.notify == SMTP_NOTIFY_NEVER);
		check_addr(&a, false, true, flags & 1);
	} else {
		CHECK(strlen(mp.envid) <= SMTP_ENVID_MAX);
		CHECK(!a.utf8 || mp.smtputf8);
		check_addr(&a, true, false, true);
	}
}

static void fuzz_small(unsigned which, const char *s, size_t n)
{
	struct smtp_cmd c;
	uint64_t size;
	bool last;
	char helo[SMTP_DOMAIN_MAX + 1];

	switch (which) {
	case 0:
		if (smtp_parse_cmd(s, n, &c) == 0)
			CHECK(c.args >= s && c.args + c.args_len <= s + n);
		break;
	case 4:
		if (smtp_parse_bdat(s, n, &size, &last) == 0)
			CHECK(size <= (uint64_t)INT64_MAX);
		break;
	case 5:
		if (smtp_parse_helo(s, n, helo, sizeof(helo)) == 0)
			CHECK(strlen(helo) > 0 && strlen(helo) <= n);
		break;
	case 6:
		(void)smtp_check_xtext(s, n);
		break;
	}
}

struct fed {
	struct smtp_data_dec d;
	struct buf out;
	size_t used;
	bool done;
};

static void feed_in_steps(const char *s, size_t n, size_t step, struct fed *f)
{
	memset(f, 0, sizeof(*f));
	while (f->used < n && !f->done) {
		size_t len = n - f->used < step ? n - f->used : step;
		size_t got = smtp_data_feed(&f->d, s + f->used, len, &f->out, &f->done);
		CHECK(got == len || (f->done && got < len));
		f->used += got;
	}
	CHECK(f->d.out_bytes == f->out.len);
}

static void check_same(const struct fed *a, const struct fed *b)
{
	CHECK(a->used == b->used && a->done == b->done && a->out.len == b->out.len);
	CHECK(a->out.len == 0 || memcmp(a->out.data, b->out.data, a->out.len) == 0);
	CHECK(a->d.bare_cr_or_lf == b->d.bare_cr_or_lf && a->d.long_lines == b->d.long_lines);
}

/* What a sender would put on the wire for the message m: stuffed, terminated. */
static void stuff(const struct buf *m, struct buf *wire)
{
	bool bol = true;

	for (size_t i = 0; i < m->len; i++) {
		if (bol && m->data[i] == '.')
			buf_append(wire, ".", 1);
		buf_append(wire, m->data + i, 1);
		bol = m->data[i] == '\n' && i > 0 && m->data[i - 1] == '\r';
	}
	buf_append(wire, ".\r\n", 3);
}

static void fuzz_data(unsigned flags, const char *s, size_t n)
{
	struct fed whole, steps, again;
	struct buf wire = {0};
	struct smtp_data_dec d1 = {0}, d2 = {0};

	feed_in_steps(s, n, n ? n : 1, &whole);
	feed_in_steps(s, n, 1, &steps);
	check_same(&whole, &steps);
	buf_free(&steps.out);
	feed_in_steps(s, n, 1 + flags % 17, &steps);
	check_same(&whole, &steps);
	buf_free(&steps.out);
	if (whole.done) {
		CHECK(whole.out.len == 0 || (whole.out.len >= 2 && whole.out.data[whole.out.len - 1] == '\n'));
		stuff(&whole.out, &wire);
		feed_in_steps((const char *)wire.data, wire.len, wire.len, &again);
		CHECK(again.done && again.used == wire.len && again.out.len == whole.out.len);
		CHECK(whole.out.len == 0 || memcmp(again.out.data, whole.out.data, whole.out.len) == 0);
		buf_free(&again.out);
		buf_free(&wire);
	}
	buf_free(&whole.out);
	smtp_data_scan(&d1, s, n);
	for (size_t i = 0; i < n; i++)
		smtp_data_scan(&d2, s + i, 1);
	CHECK(d1.bare_cr_or_lf == d2.bare_cr_or_lf && d1.long_lines == d2.long_lines);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data + 1;
	unsigned which, flags;

	if (size == 0)
		return 0;
	which = data[0] & 7;
	flags = data[0] >> 3;
	size--;
	switch (which) {
	case 1:
		fuzz_path(flags, s, size);
		break;
	case 2:
	case 3:
		fuzz_mail_rcpt(flags, s, size, which == 3);
		break;
	case 7:
		fuzz_data(flags, s, size);
		break;
	default:
		fuzz_small(which, s, size);
	}
	return 0;
}
