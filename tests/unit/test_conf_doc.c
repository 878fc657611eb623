/*
 * test_conf_doc: the configuration's documentation cannot drift from its
 * key table. Every key of src/base/cfg_keys.c (cfg_key_each) must have an
 * entry in man/mxvault.conf.5 and a row in README.md's configuration
 * tables, in the right section; neither may document a key the table does
 * not have; and every literal default they show must be what
 * `config check` prints for a configuration that leaves the key unset.
 * One failure lists every problem, each naming its key and file, so a merge
 * that adds keys learns at once what to document.
 *
 * Reads the files relative to the current directory: run from the source
 * tree (make unit and make asan do).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cfg.h"

#define MAN_PAGE "man/mxvault.conf.5"
#define README "README.md"
#define MAX_KEYS 256

/*
 * The configuration whose printout gives the defaults. It must set
 * hostname (the machine's own name may not be a domain name) and one
 * domain; "recipients = callout" so that unknown_during_outage, which only
 * means something with it, is printed with its default.
 */
static const char minimal_conf[] = "[server]\nhostname = mx.test\n[domain example.com]\nrecipients = callout\n";

/*
 * Keys whose default the documentation describes instead of printing: the
 * ones minimal_conf sets, and the ones derived from other keys (authserv_id
 * is the host name, postmaster is at the first domain; control_socket and
 * pid_file, of issue 10, live in the spool). A name here that the table
 * does not have is harmless.
 */
static const char *const described_defaults[] = {"hostname", "recipients", "authserv_id", "postmaster",
						  "control_socket", "pid_file"};

struct key {
	char section[8];   /* "server" or "domain" */
	char name[64];
	char *printed;     /* value `config check` prints by default; NULL: unset */
	int in_man, in_readme;
};

struct keys {
	struct key k[MAX_KEYS];
	size_t n;
	struct buf problems;
};

static void add_key(const char *section, const char *name, void *arg)
{
	struct keys *ks = arg;
	assert_true(ks->n < MAX_KEYS);
	struct key *k = &ks->k[ks->n++];
	assert_int_equal(fmt(k->section, sizeof(k->section), "%s", section), 0);
	assert_int_equal(fmt(k->name, sizeof(k->name), "%s", name), 0);
}

static struct key *find_key(struct keys *ks, const char *section, const char *name)
{
	for (size_t i = 0; i < ks->n; i++)
		if (strcmp(ks->k[i].section, section) == 0 && strcmp(ks->k[i].name, name) == 0)
			return &ks->k[i];
	return NULL;
}

static bool has_described_default(const char *name)
{
	for (size_t i = 0; i < ARRAY_LEN(described_defaults); i++)
		if (strcmp(described_defaults[i], name) == 0)
			return true;
	return false;
}

/* A default as written, made comparable: roff escapes resolved, no space after commas. */
static char *normalize(const char *s, size_t n)
{
	struct buf b = {0};
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\\' && i + 1 < n && (s[i + 1] == '-' || s[i + 1] == '&' || s[i + 1] == 'e')) {
			if (s[i + 1] != '&')
				buf_append(&b, s[i + 1] == 'e' ? "\\" : "-", 1);
			i++;
		} else if (s[i] == ' ' && b.len && buf_cstr(&b)[b.len - 1] == ',') {
			continue;
		} else {
			buf_append(&b, s + i, 1);
		}
	}
	char *out = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return out;
}

static void problem(struct keys *ks, const char *f, ...) PRINTF_LIKE(2, 3);
static void problem(struct keys *ks, const char *f, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, f);
	vsnprintf(line, sizeof(line), f, ap);
	va_end(ap);
	buf_printf(&ks->problems, "  %s\n", line);
}

/* --- the defaults, from cfg_print ------------------------------------- */

/* One line of cfg_print: "KEY = VALUE", or "# KEY ..." for a key left unset. */
static void read_printed_line(struct keys *ks, const char *section, const char *line)
{
	bool unset = line[0] == '#';
	const char *p = unset ? line + 2 : line;
	size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz_");
	char name[64];
	if (n == 0 || fmt(name, sizeof(name), "%.*s", (int)n, p) < 0)
		return;
	struct key *k = find_key(ks, section, name);
	if (!k || k->printed)
		return;
	/* An empty list ("dnsbl = ") is as unset as a commented key. */
	if (!unset && strncmp(p + n, " = ", 3) == 0 && p[n + 3])
		k->printed = normalize(p + n + 3, strlen(p + n + 3));
}

static void read_defaults(struct keys *ks)
{
	char path[] = "/tmp/test_conf_doc.XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, minimal_conf, strlen(minimal_conf)), (ssize_t)strlen(minimal_conf));
	close(fd);
	struct cfg *c = NULL;
	int rc = cfg_load_flags(path, stderr, CFG_LOAD_NO_SYSTEM | CFG_LOAD_NO_USER, &c);
	unlink(path);
	assert_int_equal(rc, 0);
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	assert_non_null(out);
	cfg_print(c, out);
	fclose(out);
	cfg_unref(c);
	const char *section = "";
	for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
		if (strcmp(line, "[server]") == 0)
			section = "server";
		else if (strncmp(line, "[domain ", 8) == 0)
			section = "domain";
		else
			read_printed_line(ks, section, line);
	}
	free(text);
}

/*
 * Whether a documented default says the same as the printed one: the same
 * text, or the same duration ("24h" and "1d"), size or yes/no ("off" and
 * "no"), since the page is written for readers, not for the printer.
 */
static bool same_value(const char *printed, const char *doc)
{
	int64_t d1, d2;
	uint64_t s1, s2;
	bool b1, b2;
	if (strcmp(printed, doc) == 0)
		return true;
	if (parse_duration(printed, &d1) == 0 && parse_duration(doc, &d2) == 0)
		return d1 == d2;
	if (parse_size(printed, &s1) == 0 && parse_size(doc, &s2) == 0)
		return s1 == s2;
	return parse_bool(printed, &b1) == 0 && parse_bool(doc, &b2) == 0 && b1 == b2;
}

/* Compares one documented default with the printed one. */
static void check_default(struct keys *ks, const struct key *k, const char *where, const char *doc)
{
	if (has_described_default(k->name))
		return;
	if (!k->printed && doc)
		problem(ks, "%s: %s ([%s]) is unset by default, but the default shown is '%s'", where, k->name,
			k->section, doc);
	else if (k->printed && !doc)
		problem(ks, "%s: %s ([%s]) defaults to '%s'; show it as a literal", where, k->name, k->section,
			k->printed);
	else if (k->printed && !same_value(k->printed, doc))
		problem(ks, "%s: %s ([%s]) defaults to '%s', not '%s'", where, k->name, k->section, k->printed,
			doc);
}

/* --- the man page ------------------------------------------------------ */

/*
 * An entry is ".TP", then "\fBKEY\fR = \fITYPE\fR" (or "\fBKEY\fR"), then
 * "Default: \fBVALUE\fR." for a literal default or "Default: \fIwords\fR."
 * for one described in words. Entries count under ".SS" headings naming
 * "[server]" or "[domain", up to the next ".SH".
 */
static void check_man_entry(struct keys *ks, const char *section, int lineno, const char *head,
			    const char *next)
{
	size_t n = strspn(head + 3, "abcdefghijklmnopqrstuvwxyz_");
	char name[64], where[64];
	if (n == 0 || strncmp(head + 3 + n, "\\fR", 3) != 0 || fmt(name, sizeof(name), "%.*s", (int)n, head + 3) < 0)
		return;
	assert_int_equal(fmt(where, sizeof(where), "%s:%d", MAN_PAGE, lineno), 0);
	struct key *k = find_key(ks, section, name);
	if (!k) {
		problem(ks, "%s: documents %s ([%s]), which the key table does not have", where, name, section);
		return;
	}
	if (k->in_man++)
		problem(ks, "%s: documents %s ([%s]) a second time", where, name, section);
	if (!next || strncmp(next, "Default: ", 9) != 0) {
		problem(ks, "%s: %s: the line after it must be 'Default: \\fBVALUE\\fR.' or 'Default: \\fIwords\\fR.'",
			where, name);
		return;
	}
	const char *v = next + 9, *end = strstr(v, "\\fR");
	char *doc = strncmp(v, "\\fB", 3) == 0 && end ? normalize(v + 3, (size_t)(end - v - 3)) : NULL;
	check_default(ks, k, where, doc);
	free(doc);
}

static void read_man_page(struct keys *ks)
{
	FILE *f = fopen(MAN_PAGE, "r");
	if (!f)
		fail_msg("cannot open %s: run from the source tree", MAN_PAGE);
	char *line = NULL, *prev = NULL, *head = NULL;
	size_t cap = 0;
	int lineno = 0, head_line = 0;
	const char *section = "";
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		line[strcspn(line, "\n")] = '\0';
		if (head) {
			check_man_entry(ks, section, head_line, head, line);
			free(head);
			head = NULL;
		}
		if (strncmp(line, ".SH", 3) == 0)
			section = "";
		else if (strncmp(line, ".SS", 3) == 0)
			section = strstr(line, "[server]") ? "server" : strstr(line, "[domain") ? "domain" : "";
		else if (*section && prev && strcmp(prev, ".TP") == 0 && strncmp(line, "\\fB", 3) == 0) {
			head = xstrdup(line);
			head_line = lineno;
		}
		free(prev);
		prev = xstrdup(line);
	}
	if (head)
		check_man_entry(ks, section, head_line, head, NULL);
	free(head);
	free(prev);
	free(line);
	fclose(f);
}

/* --- README.md --------------------------------------------------------- */

/* The backquoted spans of a table cell, at most max. */
static size_t code_spans(const char *cell, size_t len, const char **span, size_t *span_len, size_t max)
{
	size_t n = 0;
	for (const char *p = cell, *end = cell + len; p < end && n < max;) {
		const char *open = memchr(p, '`', (size_t)(end - p));
		const char *close = open ? memchr(open + 1, '`', (size_t)(end - open - 1)) : NULL;
		if (!close)
			break;
		span[n] = open + 1;
		span_len[n++] = (size_t)(close - open - 1);
		p = close + 1;
	}
	return n;
}

/*
 * A row "| `KEY`[, `KEY`] | DEFAULT | meaning |". A first cell like
 * "`recipients = callout`" names a way of setting a key: only its name
 * counts. Defaults are compared when the cell starts with a span and has
 * one per key.
 */
static void check_readme_row(struct keys *ks, const char *section, int lineno, const char *row)
{
	const char *c1 = row + 1, *c2 = strchr(c1, '|'), *c3 = c2 ? strchr(c2 + 1, '|') : NULL;
	if (!c3)
		return;
	const char *keys[8], *defs[8];
	size_t klen[8], dlen[8];
	size_t nk = code_spans(c1, (size_t)(c2 - c1), keys, klen, 8);
	size_t nd = code_spans(c2 + 1, (size_t)(c3 - c2 - 1), defs, dlen, 8);
	/* A cell that starts with a span is the value; "a self-signed certificate in `SPOOL/tls/`" describes it. */
	bool literal = c2[1 + strspn(c2 + 1, " ")] == '`';
	char where[64];
	assert_int_equal(fmt(where, sizeof(where), "%s:%d", README, lineno), 0);
	for (size_t i = 0; i < nk; i++) {
		char name[64];
		size_t n = strspn(keys[i], "abcdefghijklmnopqrstuvwxyz_");
		if (n == 0 || fmt(name, sizeof(name), "%.*s", (int)n, keys[i]) < 0)
			continue;
		struct key *k = find_key(ks, section, name);
		if (!k) {
			problem(ks, "%s: documents %s ([%s]), which the key table does not have", where, name, section);
			continue;
		}
		k->in_readme++;
		if (n == klen[i] && nd == nk && literal) {
			char *doc = normalize(defs[i], dlen[i]);
			check_default(ks, k, where, doc);
			free(doc);
		}
	}
}

static void read_readme(struct keys *ks)
{
	FILE *f = fopen(README, "r");
	if (!f)
		fail_msg("cannot open %s: run from the source tree", README);
	char *line = NULL;
	size_t cap = 0;
	int lineno = 0;
	bool in_config = false;
	const char *section = "";
	while (getline(&line, &cap, f) > 0) {
		lineno++;
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "## ", 3) == 0)
			in_config = strcmp(line, "## Configuration") == 0;
		else if (in_config && strncmp(line, "### ", 4) == 0)
			section = strstr(line, "[server]") ? "server" : strstr(line, "[domain") ? "domain" : "";
		else if (in_config && *section && strncmp(line, "| `", 3) == 0)
			check_readme_row(ks, section, lineno, line);
	}
	free(line);
	fclose(f);
}

/* --- the test ---------------------------------------------------------- */

static void every_key_is_documented_with_its_default(void **state)
{
	(void)state;
	struct keys *ks = xcalloc(1, sizeof(*ks));
	cfg_key_each(add_key, ks);
	assert_true(ks->n > 0);
	read_defaults(ks);
	read_man_page(ks);
	read_readme(ks);
	for (size_t i = 0; i < ks->n; i++) {
		const struct key *k = &ks->k[i];
		if (!k->in_man)
			problem(ks, "%s: no entry for %s ([%s]), which the key table has", MAN_PAGE, k->name,
				k->section);
		if (!k->in_readme)
			problem(ks, "%s: no row for %s ([%s]), which the key table has", README, k->name, k->section);
	}
	bool ok = ks->problems.len == 0;
	if (!ok) {
		/* Line by line: cmocka's print_error truncates long messages. */
		print_error("the configuration's documentation has drifted from src/base/cfg_keys.c:\n");
		for (char *line = strtok((char *)buf_cstr(&ks->problems), "\n"); line; line = strtok(NULL, "\n"))
			print_error("%s\n", line);
	}
	for (size_t i = 0; i < ks->n; i++)
		free(ks->k[i].printed);
	buf_free(&ks->problems);
	free(ks);
	assert_true(ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_key_is_documented_with_its_default),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
