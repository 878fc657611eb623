/*
 * queue_cli: see queue_cli.h. JSON output is an array of
 * {"id", "arrival", "size", "sender", "recipients": [{"address", "state"}]}
 * plus extra fields; field names are a stable interface for scripts.
 */
#include "queue_cli.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
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

static void json_str(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
		if (*p == '"' || *p == '\\')
			fprintf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			fprintf(out, "\\u%04x", *p);
		else
			fputc(*p, out); /* UTF-8 passes through: JSON text is UTF-8 */
	}
	fputc('"', out);
}

struct list_ctx {
	FILE *out;
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
	json_str(c->out, m->env.sender);
	fprintf(c->out, ", \"client\": ");
	json_str(c->out, m->env.client_addr);
	fprintf(c->out, ", \"attempts\": %" PRIu32 ", \"next_attempt\": %" PRId64 ", \"recipients\": [", m->meta.attempts,
		m->meta.next_attempt);
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		fprintf(c->out, "%s{\"address\": ", i ? ", " : "");
		json_str(c->out, r->addr);
		fprintf(c->out, ", \"state\": \"%s\"", queue_rcpt_state_name(r));
		if (r->reply) {
			fprintf(c->out, ", \"reply\": ");
			json_str(c->out, r->reply);
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
	fprintf(c->out, "%-16s  %-20s  %10" PRIu64 "  <%s>\n", id, when, m->env.body_size, m->env.sender);
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		fprintf(c->out, "%18s%-9s <%s>%s%s\n", "", queue_rcpt_state_name(r), r->addr, r->reply ? " " : "",
			r->reply ? r->reply : "");
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
		return 74; /* EX_IOERR */
	}
	struct list_ctx c = {.out = out, .json = json};
	if (json)
		fputc('[', out);
	spool_each_msg(sp, print_msg, &c);
	if (json)
		fprintf(out, "%s]\n", c.count ? "\n" : "");
	else
		fprintf(out, "-- %zu message%s, %" PRIu64 " bytes\n", c.count, c.count == 1 ? "" : "s", c.bytes);
	spool_close(sp);
	return 0;
}
