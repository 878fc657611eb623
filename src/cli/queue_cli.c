/*
 * queue_cli: see queue_cli.h. JSON output is an array of
 * {"id", "arrival", "size", "sender", "recipients": [{"address", "state"}]}
 * plus extra fields; field names are a stable interface for scripts.
 */
#include "queue_cli.h"
#include "cli_out.h"

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
	cli_json_str(c->out, m->env.sender);
	fprintf(c->out, ", \"client\": ");
	cli_json_str(c->out, m->env.client_addr);
	if (queue_is_quarantined(m)) {
		fprintf(c->out, ", \"quarantine\": ");
		cli_json_str(c->out, m->env.quarantine);
	}
	fprintf(c->out, ", \"held\": %s", (m->meta.flags & SPOOL_META_HELD) ? "true" : "false");
	fprintf(c->out, ", \"attempts\": %" PRIu32 ", \"next_attempt\": %" PRId64 ", \"recipients\": [", m->meta.attempts,
		m->meta.next_attempt);
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		fprintf(c->out, "%s{\"address\": ", i ? ", " : "");
		cli_json_str(c->out, r->addr);
		fprintf(c->out, ", \"state\": \"%s\"", queue_state_of(&c->held, m, r));
		if (r->reply) {
			fprintf(c->out, ", \"reply\": ");
			cli_json_str(c->out, r->reply);
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
	cli_put_escaped(c->out, m->env.sender, false);
	fputs(">\n", c->out);
	if (m->meta.flags & SPOOL_META_HELD)
		fprintf(c->out, "%18sheld by the administrator\n", "");
	if (queue_is_quarantined(m)) {
		fprintf(c->out, "%18squarantined by a milter: ", "");
		cli_put_escaped(c->out, m->env.quarantine, false);
		fputc('\n', c->out);
	}
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		fprintf(c->out, "%18s%-11s <", "", queue_state_of(&c->held, m, r));
		cli_put_escaped(c->out, r->addr, false);
		fputc('>', c->out);
		if (r->reply) {
			fputc(' ', c->out);
			cli_put_escaped(c->out, r->reply, false);
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
