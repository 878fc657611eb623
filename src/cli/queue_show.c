/*
 * queue_show: see queue_show.h. What a message says (addresses, replies,
 * header fields, its body) came from peers: every byte reaches a terminal
 * or a JSON string escaped (cli_put_escaped_mode), except the .eml files of an
 * export, which are the message itself. Reads are bounded: the header
 * section shown is at most SHOW_HEAD_MAX octets.
 */
#include "queue_show.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "base/smtp_proto.h"
#include "queue_cli.h"
#include "cli_out.h"
#include "spool/spool.h"

#define SHOW_HEAD_MAX (SPOOL_HEAD_MAX + SPOOL_AUTH_HEADER_MAX + 4096)
#define CHUNK (64u << 10)

static int open_spool(const struct cfg *cfg, struct spool **sp, struct queue_held *held)
{
	int rc = spool_open_readonly(cfg->spool, sp);
	if (rc < 0) {
		fprintf(stderr, "mxvault: spool %s: %s\n", cfg->spool, strerror(-rc));
		return EX_IOERR;
	}
	if (queue_held_load(*sp, held) < 0) {
		spool_close(*sp);
		return EX_IOERR;
	}
	return EX_OK;
}

static void close_spool(struct spool *sp, struct queue_held *held)
{
	free(held->v);
	spool_close(sp);
}

/* The message as sent on, from off: up to max octets into b (stops after the header section if head). */
static int read_out(struct spool *sp, const struct spool_msg *m, bool head, uint64_t max, struct buf *b)
{
	char chunk[CHUNK];
	for (uint64_t off = 0; off < max;) {
		size_t want = max - off < CHUNK ? (size_t)(max - off) : CHUNK;
		long got = spool_msg_read_out(sp, m, off, chunk, want);
		if (got < 0)
			return (int)got;
		if (got == 0)
			break;
		size_t from = b->len >= 3 ? b->len - 3 : 0;
		buf_append(b, chunk, (size_t)got);
		off += (uint64_t)got;
		const char *end = head ? memmem(b->data + from, b->len - from, "\r\n\r\n", 4) : NULL;
		if (end) {
			b->len = (size_t)(end - (const char *)b->data) + 2; /* the last field's CRLF, not the blank line */
			break;
		}
	}
	return 0;
}

static const char *ret_name(uint8_t ret)
{
	return ret == SMTP_RET_FULL ? "FULL" : ret == SMTP_RET_HDRS ? "HDRS" : NULL;
}

static void notify_names(uint8_t n, char out[40])
{
	out[0] = '\0';
	static const struct { uint8_t bit; const char *name; } names[] = {
		{SMTP_NOTIFY_NEVER, "NEVER"}, {SMTP_NOTIFY_SUCCESS, "SUCCESS"},
		{SMTP_NOTIFY_FAILURE, "FAILURE"}, {SMTP_NOTIFY_DELAY, "DELAY"},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (n & names[i].bit) {
			size_t len = strlen(out);
			snprintf(out + len, 40 - len, "%s%s", len ? "," : "", names[i].name); /* at most 29 octets */
		}
}

/* --- show: JSON --------------------------------------------------------- */

static void json_field(FILE *out, const char *name, const char *v)
{
	fprintf(out, ", \"%s\": ", name);
	if (v)
		cli_json_str(out, v);
	else
		fputs("null", out);
}

/* The envelope and its recipients: the fields of `queue show --json` and of an export's ID.json. */
static void json_envelope(FILE *out, const struct queue_held *h, const struct spool_msg *m)
{
	char id[17], notify[40];
	spool_id_str(m->id, id);
	fprintf(out, "{\"id\": \"%s\", \"arrival\": %" PRId64 ", \"size\": %" PRIu64, id, m->env.arrival,
		m->env.body_size);
	json_field(out, "sender", m->env.sender);
	json_field(out, "client", m->env.client_addr);
	json_field(out, "helo", m->env.client_helo);
	json_field(out, "protocol", m->env.proto);
	json_field(out, "envid", m->env.envid);
	json_field(out, "ret", ret_name(m->env.ret));
	json_field(out, "quarantine", queue_is_quarantined(m) ? m->env.quarantine : NULL);
	fprintf(out, ", \"smtputf8\": %s, \"held\": %s, \"attempts\": %" PRIu32 ", \"next_attempt\": %" PRId64
		     ", \"retention_extended\": %" PRId64 ", \"recipients\": [",
		m->env.smtputf8 ? "true" : "false", (m->meta.flags & SPOOL_META_HELD) ? "true" : "false",
		m->meta.attempts, m->meta.next_attempt, m->meta.extend_s);
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		fprintf(out, "%s{\"address\": ", i ? ", " : "");
		cli_json_str(out, r->addr);
		fprintf(out, ", \"state\": \"%s\", \"pending\": %s, \"code\": %u", queue_state_of(h, m, r),
			r->state == SPOOL_RCPT_PENDING ? "true" : "false", (unsigned)r->code);
		json_field(out, "reply", r->reply);
		json_field(out, "orcpt", r->orcpt);
		notify_names(r->notify, notify);
		json_field(out, "notify", notify[0] ? notify : NULL);
		fputc('}', out);
	}
	fputc(']', out);
}

static void show_json(FILE *out, const struct queue_held *h, const struct spool_msg *m, const struct buf *b,
		      bool body)
{
	json_envelope(out, h, m);
	fprintf(out, ", \"%s\": \"", body ? "message" : "headers");
	cli_put_escaped_mode(out, b->data, b->len, CLI_ESC_JSON);
	fputs("\"}\n", out);
}

/* --- show: text --------------------------------------------------------- */

static void text_line(FILE *out, const char *label, const char *v)
{
	if (!v)
		return;
	fprintf(out, "%-12s ", label);
	cli_put_escaped_mode(out, v, strlen(v), CLI_ESC_TEXT);
	fputc('\n', out);
}

static void show_text(FILE *out, const struct queue_held *h, const struct spool_msg *m, const struct buf *b)
{
	char id[17], when[32], notify[40];
	time_t t = (time_t)m->env.arrival;
	struct tm tm;
	spool_id_str(m->id, id);
	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%SZ", &tm);
	fprintf(out, "%-12s %s\n%-12s %s\n%-12s %" PRIu64 "\n%-12s <", "id:", id, "arrival:", when, "size:",
		m->env.body_size, "sender:");
	cli_put_escaped_mode(out, m->env.sender, strlen(m->env.sender), CLI_ESC_TEXT);
	fputs(">\n", out);
	text_line(out, "client:", m->env.client_addr);
	text_line(out, "helo:", m->env.client_helo);
	text_line(out, "envid:", m->env.envid);
	text_line(out, "ret:", ret_name(m->env.ret));
	text_line(out, "quarantine:", queue_is_quarantined(m) ? m->env.quarantine : NULL);
	if (m->meta.flags & SPOOL_META_HELD)
		fprintf(out, "%-12s by the administrator\n", "held:");
	fprintf(out, "%-12s %" PRIu32 "\n", "attempts:", m->meta.attempts);
	for (uint32_t i = 0; i < m->env.nrcpt; i++) {
		const struct spool_rcpt *r = &m->env.rcpts[i];
		fprintf(out, "%-12s %-11s <", "recipient:", queue_state_of(h, m, r));
		cli_put_escaped_mode(out, r->addr, strlen(r->addr), CLI_ESC_TEXT);
		fputc('>', out);
		notify_names(r->notify, notify);
		if (notify[0])
			fprintf(out, " notify=%s", notify);
		if (r->reply) {
			fputs(" last reply: ", out);
			cli_put_escaped_mode(out, r->reply, strlen(r->reply), CLI_ESC_TEXT);
		}
		fputc('\n', out);
	}
	fputc('\n', out);
	cli_put_escaped_mode(out, b->data, b->len, CLI_ESC_LINES);
}

int queue_show(const struct cfg *cfg, const char *idtext, bool json, bool body, FILE *out)
{
	uint64_t id = 0;
	struct spool *sp;
	struct queue_held held = {0};
	bool valid = spool_id_parse(idtext, &id);
	int rc = open_spool(cfg, &sp, &held);
	if (rc != EX_OK)
		return rc;
	struct spool_msg *m = valid ? spool_msg_find(sp, id) : NULL;
	if (!m) {
		fprintf(stderr, "mxvault: no message %s in the queue\n", idtext);
		close_spool(sp, &held);
		return 1;
	}
	struct buf b = {0};
	int err = read_out(sp, m, !body, body ? spool_msg_out_size(m) : SHOW_HEAD_MAX, &b);
	if (err < 0) {
		fprintf(stderr, "mxvault: cannot read message %s: %s\n", idtext, strerror(-err));
		rc = EX_IOERR;
	} else if (json) {
		show_json(out, &held, m, &b, body);
	} else {
		show_text(out, &held, m, &b);
	}
	buf_free(&b);
	close_spool(sp, &held);
	return rc;
}

/* --- export ------------------------------------------------------------- */

struct export_ctx {
	struct spool *sp;
	const struct queue_held *held;
	int dirfd;
	size_t count;
	int err;
	char failed_id[17];
	FILE *ids;   /* the exported IDs, for the summary */
};

/* Writes the message with LF line ends ("\r\n" -> "\n"; a lone CR stays). */
static int write_eml(struct spool *sp, const struct spool_msg *m, FILE *f)
{
	char chunk[CHUNK];
	bool cr = false; /* the last chunk ended in CR, not yet written */
	uint64_t size = spool_msg_out_size(m);
	for (uint64_t off = 0; off < size;) {
		long got = spool_msg_read_out(sp, m, off, chunk, CHUNK);
		if (got < 0)
			return (int)got;
		if (got == 0)
			break;
		off += (uint64_t)got;
		for (long i = 0; i < got; i++) {
			if (cr && chunk[i] != '\n')
				fputc('\r', f);
			cr = chunk[i] == '\r';
			if (!cr)
				fputc(chunk[i], f);
		}
	}
	if (cr)
		fputc('\r', f);
	return ferror(f) ? -EIO : 0;
}

/* A new file: an old one of that name is removed first, never opened, so that a hard link left in the
 * directory is not written through (export may run as root). */
static FILE *create_at(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
		return NULL;
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "w");
	if (!f)
		close(fd);
	return f;
}

static int close_synced(FILE *f, int err)
{
	if (fflush(f) != 0 || fsync(fileno(f)) < 0)
		err = err ? err : -errno;
	if (fclose(f) != 0 && !err)
		err = -errno;
	return err;
}

static int export_one(struct export_ctx *c, const struct spool_msg *m, const char *id)
{
	char name[32];
	snprintf(name, sizeof(name), "%s.eml", id); /* 16 hex digits and a suffix */
	FILE *f = create_at(c->dirfd, name);
	if (!f)
		return -errno;
	int err = close_synced(f, write_eml(c->sp, m, f));
	if (err < 0)
		return err;
	snprintf(name, sizeof(name), "%s.json", id);
	f = create_at(c->dirfd, name);
	if (!f)
		return -errno;
	json_envelope(f, c->held, m);
	fputs("}\n", f);
	return close_synced(f, ferror(f) ? -EIO : 0);
}

static void export_msg(void *arg, struct spool_msg *m)
{
	struct export_ctx *c = arg;
	char id[17];
	if (c->err)
		return;
	spool_id_str(m->id, id);
	int err = export_one(c, m, id);
	if (err < 0) {
		c->err = err;
		memcpy(c->failed_id, id, sizeof(id));
		return;
	}
	fprintf(c->ids, "%s\"%s\"", c->count ? ", " : "", id);
	c->count++;
}

static int export_summary(FILE *out, const char *dir, bool json, size_t count, const char *ids)
{
	if (!json) {
		fprintf(out, "exported %zu message%s to ", count, count == 1 ? "" : "s");
		cli_put_escaped_mode(out, dir, strlen(dir), CLI_ESC_TEXT);
		fputs(" (ID.eml: the message, LF line ends; ID.json: its envelope)\n", out);
		return EX_OK;
	}
	fputs("{\"dir\": ", out);
	cli_json_str(out, dir);
	fprintf(out, ", \"exported\": %zu, \"ids\": [%s]}\n", count, ids);
	return EX_OK;
}

/*
 * The export directory, opened: made (0700) if it is not there; one that is must be a directory, not a
 * symbolic link, owned by us and writable by no one else. Export often runs as root, into a place such as
 * /var/tmp: a directory (or link) someone else made there would let them read the mail, swap the files
 * before they are re-injected, or have root write into a directory of their choosing.
 */
static int open_export_dir(const char *dir)
{
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		fprintf(stderr, "mxvault: cannot make %s: %s\n", dir, strerror(errno));
		return -1;
	}
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (dirfd < 0) {
		fprintf(stderr, "mxvault: cannot open %s: %s%s\n", dir, strerror(errno),
			errno == ELOOP || errno == ENOTDIR ? " (a directory is needed, not a symbolic link)" : "");
		return -1;
	}
	struct stat st;
	if (fstat(dirfd, &st) < 0 || st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
		fprintf(stderr, "mxvault: will not export to %s: it must be owned by this user and writable by no one "
				"else\n", dir);
		close(dirfd);
		return -1;
	}
	return dirfd;
}

int queue_export(const struct cfg *cfg, const char *dir, bool json, FILE *out)
{
	int dirfd = open_export_dir(dir);
	if (dirfd < 0)
		return EX_CANTCREAT;
	struct spool *sp;
	struct queue_held held = {0};
	int rc = open_spool(cfg, &sp, &held);
	if (rc != EX_OK) {
		close(dirfd);
		return rc;
	}
	char *ids = NULL;
	size_t ids_len = 0;
	struct export_ctx c = {.sp = sp, .held = &held, .dirfd = dirfd, .ids = open_memstream(&ids, &ids_len)};
	if (!c.ids)
		abort(); /* out of memory */
	spool_each_msg(sp, export_msg, &c);
	fclose(c.ids);
	if (c.err == 0 && fsync(dirfd) < 0)
		c.err = -errno;
	if (c.err < 0) {
		fprintf(stderr, "mxvault: cannot export %s to %s: %s (%zu exported before)\n",
			c.failed_id[0] ? c.failed_id : "the directory", dir, strerror(-c.err), c.count);
		rc = EX_CANTCREAT;
	} else {
		rc = export_summary(out, dir, json, c.count, ids);
	}
	free(ids);
	close(dirfd);
	close_spool(sp, &held);
	return rc;
}
