/*
 * cfg_rcpt: reads one domain's recipients file into cfg_domain.recipients.
 * Called by the "recipients" key's setter (cfg_keys.c) while the
 * configuration loads; nothing reads the file afterwards.
 *
 * Format: one entry per line: "*" (anyone), a local part ("user"), or an
 * address in this very domain ("user@example.com"). Blank lines and lines
 * starting with '#' are skipped and surrounding whitespace is ignored.
 * Entries are stored lower-cased in the form written, which is why
 * cfg_domain_has_recipient tries both "local" and "local@domain".
 *
 * Errors name the recipients file and its line, except when the file cannot
 * be read at all: that is the config line's fault. Only the first
 * CFG_RCPT_MAX_SHOWN are printed, then how many more there were: a file of
 * another kind named by mistake (a map, a log) has a problem on every line,
 * and a reload holds its whole report in memory and logs it line by line. Only regular files are
 * read, so a slip like "recipients = /dev/zero" fails instead of hanging.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_int.h"

/* The value stored for every entry: htab_get_str returns NULL for "absent". */
static char present;

struct rcpt_reader {
	FILE *err;
	const char *path;
	struct cfg_domain *d;
	int line;
	int errors;
};

/* NULL with *why set when path is not a readable regular file. */
static FILE *open_regular(const char *path, const char **why)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		*why = strerror(errno);
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	if (!S_ISREG(st.st_mode)) {
		*why = S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file";
		close(fd);
		return NULL;
	}
	FILE *f = fdopen(fd, "r");
	if (!f) {
		*why = strerror(errno);
		close(fd);
	}
	return f;
}

/* Counts a problem; true while it is still one of those printed. */
static bool shown(struct rcpt_reader *r)
{
	return ++r->errors <= CFG_RCPT_MAX_SHOWN;
}

static void add_entry(struct rcpt_reader *r, char *s, size_t n)
{
	struct cfg_domain *d = r->d;
	const char *at = memrchr(s, '@', n);
	size_t local = at ? (size_t)(at - s) : n;
	if (n == 1 && s[0] == '*') {
		d->any_recipient = true;
		return;
	}
	if (at && !ascii_ieq(at + 1, n - local - 1, d->name, strlen(d->name))) {
		if (shown(r))
			cfg_report(r->err, r->path, r->line, "address '%s' is not in domain '%s'", s, d->name);
		return;
	}
	if (!cfg_is_local_part(s, local)) {
		if (shown(r))
			cfg_report(r->err, r->path, r->line,
				   "bad entry '%s' (expected *, a local part or an address in %s)", s, d->name);
		return;
	}
	ascii_lower(s, n);
	htab_put_str(&d->recipients, s, n, &present);
}

static void read_line(struct rcpt_reader *r, char *s, size_t n)
{
	r->line++;
	while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
		s[--n] = '\0';
	if (n > CFG_RCPT_MAX_LINE) {
		if (shown(r))
			cfg_report(r->err, r->path, r->line, "line too long (max %d characters)", CFG_RCPT_MAX_LINE);
		return;
	}
	if (memchr(s, '\0', n)) {
		if (shown(r))
			cfg_report(r->err, r->path, r->line, "NUL byte in line");
		return;
	}
	char *start = cfg_skip_space(s);
	n -= (size_t)(start - s);
	if (n == 0 || *start == '#')
		return;
	add_entry(r, start, n);
}

int cfg_rcpt_load(FILE *err, const char *cfg_path, int cfg_line, struct cfg_domain *d, const char *path)
{
	const char *why = NULL;
	FILE *f = open_regular(path, &why);
	if (!f) {
		cfg_report(err, cfg_path, cfg_line, "recipients file '%s': %s", path, why);
		return 1;
	}
	struct rcpt_reader r = {.err = err, .path = path, .d = d};
	char *buf = NULL;
	size_t cap = 0;
	ssize_t got;
	while ((got = getline(&buf, &cap, f)) >= 0)
		read_line(&r, buf, (size_t)got);
	if (r.errors > CFG_RCPT_MAX_SHOWN)
		cfg_report(err, path, r.line, "%d more problems in this file are not shown", r.errors - CFG_RCPT_MAX_SHOWN);
	if (ferror(f)) {
		cfg_report(err, cfg_path, cfg_line, "recipients file '%s': %s", path, strerror(errno ? errno : EIO));
		r.errors++;
	}
	free(buf);
	fclose(f);
	return r.errors;
}
