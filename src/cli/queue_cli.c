/*
 * queue_cli: see queue_cli.h. JSON output is an array of
 * {"id", "arrival", "size", "sender", "recipients": [{"address", "state"}]}
 * plus extra fields; field names are a stable interface for scripts.
 */
#include "queue_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

#include "spool/spool.h"

const char *queue_rcpt_state_name(const struct spool_rcpt *r)
{
	switch (r->state) {
	case SPOOL_RCPT_DELIVERED: return "delivered";
	case SPOOL_RCPT_FAILED: return "bounced";
	case SPOOL_RCPT_EXPIRED: return "expired";
	default: return r->code >= 400 ? "deferred" : "queued";
	}
}

bool queue_is_quarantined(const struct spool_msg *m)
{
	return m->env.quarantine && !(m->meta.flags & SPOOL_META_RELEASED);
}

static bool domain_is_held(const struct queue_held *h, const char *addr)
{
	const char *at = strrchr(addr, '@');
	for (size_t i = 0; h && at && i < h->n; i++)
		if (strcasecmp(h->v[i].domain, at + 1) == 0)
			return true;
	return false;
}

const char *queue_state_of(const struct queue_held *h, const struct spool_msg *m, const struct spool_rcpt *r)
{
	if (r->state != SPOOL_RCPT_PENDING)
		return queue_rcpt_state_name(r);
	if (queue_is_quarantined(m))
		return "quarantined"; /* held by a milter until released */
	if ((m->meta.flags & SPOOL_META_HELD) || domain_is_held(h, r->addr))
		return "held";
	return queue_rcpt_state_name(r);
}

int queue_held_load(struct spool *sp, struct queue_held *h)
{
	size_t bad;
	int rc = spool_held_read(sp, &h->v, &h->n, &bad);
	if (rc < 0)
		fprintf(stderr, "mxvault: cannot read the held domains: %s\n", strerror(-rc));
	return rc;
}

/*
 * Text from peers (addresses, replies) reaches an administrator's terminal:
 * every control, C1 control (U+0080..U+009F) and byte that is not UTF-8 is
 * escaped, "\u00XX" in JSON and "\xXX" in the text listing; well-formed
 * UTF-8 passes through (JSON text is UTF-8).
 */
void queue_put_escaped(FILE *out, const void *bytes, size_t n, enum queue_esc mode)
{
	const unsigned char *p = bytes;
	bool json = mode == QUEUE_ESC_JSON;
	for (size_t i = 0; i < n;) {
		if (mode == QUEUE_ESC_LINES && (p[i] == '\t' || p[i] == '\n' || (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n'))) {
			if (p[i] != '\r')
				fputc(p[i], out); /* a message's own line ends and tabs, as lines on the terminal */
			i++;
			continue;
		}
		size_t len = p[i] >= 0x80 ? utf8_seq_len(p + i, n - i) : 1;
		bool c1 = len == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0;
		if (len > 1 && !c1) {
			fwrite(p + i, 1, len, out);
			i += len;
			continue;
		}
		unsigned c = c1 ? p[i + 1] : p[i];
		i += c1 ? 2 : 1;
		if (json && (c == '"' || c == '\\'))
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(out, json ? "\\u%04x" : "\\x%02x", c);
		else
			fputc((int)c, out);
	}
}

static void put_escaped(FILE *out, const char *s, bool json)
{
	s = s ? s : "";
	queue_put_escaped(out, s, strlen(s), json ? QUEUE_ESC_JSON : QUEUE_ESC_TEXT);
}

void queue_json_str(FILE *out, const char *s)
{
	fputc('"', out);
	put_escaped(out, s, true);
	fputc('"', out);
}

struct list_ctx {
	FILE *out;
	struct queue_held held;
	bool json;
	size_t count;
	uint64_t bytes;
};

static void print_json(struct list_ctx *c, const struct spool_msg *m)
{
	char id[17];
	spool_id_str(m->id, id);
	fprintf(c->out, "%s\n  {\"id\": \"%s\", \"arrival\": %" PRId64 ", \"size\": %" PRIu64 ", \"sender\": ",
		c->count ? "," : "", id, m->env.arrival, m->env.body_size);
	queue_json_str(c->out, m->env.sender);
	fprintf(c->out, ", \"client\": ");
	queue_json_str(c->out, m->env.client_addr);
	if (queue_is_quarantined(m)) {
		fprintf(c->out, ", \"quarantine\": ");
		queue_json_str(c->out, m->env.quarantine);
	}
	fprintf(c->out, ", \"held\": %s", (m->meta.flags & SPOOL_META_HELD) ? "true" : "false");
	fprintf(c->out, ", \"attempts\": %" PRIu32 ", \"next_attempt\": %" PRId64 ", \"recipients\": [", m->meta.attempts,
		m->meta.next_attempt);
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		fprintf(c->out, "%s{\"address\": ", i ? ", " : "");
		queue_json_str(c->out, r->addr);
		fprintf(c->out, ", \"state\": \"%s\"", queue_state_of(&c->held, m, r));
		if (r->reply) {
			fprintf(c->out, ", \"reply\": ");
			queue_json_str(c->out, r->reply);
		}
		fputc('}', c->out);
	}
	fprintf(c->out, "]}");
}

static void print_text(struct list_ctx *c, const struct spool_msg *m)
{
	char id[17], when[32];
	time_t t = (time_t)m->env.arrival;
	struct tm tm;
	spool_id_str(m->id, id);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
	if (c->count == 0)
		fprintf(c->out, "%-16s  %-20s  %10s  %s\n", "ID", "ARRIVAL", "SIZE", "SENDER");
	fprintf(c->out, "%-16s  %-20s  %10" PRIu64 "  <", id, when, m->env.body_size);
	put_escaped(c->out, m->env.sender, false);
	fputs(">\n", c->out);
	if (m->meta.flags & SPOOL_META_HELD)
		fprintf(c->out, "%18sheld by the administrator\n", "");
	if (queue_is_quarantined(m)) {
		fprintf(c->out, "%18squarantined by a milter: ", "");
		put_escaped(c->out, m->env.quarantine, false);
		fputc('\n', c->out);
	}
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		fprintf(c->out, "%18s%-11s <", "", queue_state_of(&c->held, m, r));
		put_escaped(c->out, r->addr, false);
		fputc('>', c->out);
		if (r->reply) {
			fputc(' ', c->out);
			put_escaped(c->out, r->reply, false);
		}
		fputc('\n', c->out);
	}
}

static void print_msg(void *arg, struct spool_msg *m)
{
	struct list_ctx *c = arg;
	if (c->json)
		print_json(c, m);
	else
		print_text(c, m);
	c->count++;
	c->bytes += m->env.body_size;
}

int queue_list(const struct cfg *cfg, bool json, FILE *out)
{
	struct spool *sp;
	int rc = spool_open_readonly(cfg->spool, &sp);
	if (rc < 0) {
		fprintf(stderr, "mxvault: spool %s: %s\n", cfg->spool, strerror(-rc));
		return EX_IOERR;
	}
	struct list_ctx c = {.out = out, .json = json};
	if (queue_held_load(sp, &c.held) < 0) {
		spool_close(sp);
		return EX_IOERR;
	}
	if (json)
		fputc('[', out);
	spool_each_msg(sp, print_msg, &c);
	if (json)
		fprintf(out, "%s]\n", c.count ? "\n" : "");
	else
		fprintf(out, "-- %zu message%s, %" PRIu64 " bytes\n", c.count, c.count == 1 ? "" : "s", c.bytes);
	free(c.held.v);
	spool_close(sp);
	return 0;
}
