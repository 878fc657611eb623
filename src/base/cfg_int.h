/*
 * cfg_int: internals shared by the files of the cfg module, and nothing
 * else: cfg.c reads the file and runs the checks, cfg_keys.c knows every key
 * (its syntax, how to set it, how to print it), cfg_rcpt.c reads recipients
 * files. Only src/cfg*.c include this.
 */
#ifndef MXV_CFG_INT_H
#define MXV_CFG_INT_H

#include "cfg.h"

#define CFG_MAX_KEYS 96       /* per section; asserted in cfg_keys.c */
#define CFG_RCPT_MAX_LINE 512 /* longest recipients file line */
#define CFG_RCPT_MAX_SHOWN 10 /* problems of one recipients file printed; the rest are counted */

enum cfg_section { CFG_SECT_NONE, CFG_SECT_SERVER, CFG_SECT_DOMAIN, CFG_SECT_SKIP };

/* State of one cfg_load call. */
struct cfg_loader {
	struct cfg *c;
	FILE *in;
	FILE *err;
	unsigned flags;
	char *dir;             /* directory of the config file, for recipients */
	int lineno;            /* line being parsed */
	int nerrors;
	bool read_failed;      /* the file could not be read to its end */
	char *line;            /* getline buffer */
	size_t linecap;
	enum cfg_section sect;
	size_t dom;            /* current domain while sect == CFG_SECT_DOMAIN */
	size_t domcap;
	int server_line;       /* line of [server], 0 if absent */
	/* Line where each key was set: 0 = default, negative = its value was bad. */
	int server_lines[CFG_MAX_KEYS];
	int (*domain_lines)[CFG_MAX_KEYS]; /* parallel to c->domains */
	struct buf warnings;   /* printed at the end, only if there is no error */
};

struct cfg_key;
/* Parses v into obj (struct cfg or struct cfg_domain): 0, or -EINVAL after
 * reporting the error. */
typedef int cfg_set_fn(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v);
/* Prints "name = value" (or a comment when unset) that cfg_set_fn reads back. */
typedef void cfg_print_fn(FILE *out, const void *obj, const struct cfg_key *k);

struct cfg_key {
	const char *name;
	cfg_set_fn *set;
	cfg_print_fn *print;
	size_t off;          /* field in struct cfg or struct cfg_domain */
	int64_t min, max;    /* for numbers, sizes and durations */
	const char *hint;    /* what a good value looks like, for errors */
};

extern const struct cfg_key cfg_server_keys[];
extern const size_t cfg_nserver_keys;
extern const struct cfg_key cfg_domain_keys[];
extern const size_t cfg_ndomain_keys;

const struct cfg_key *cfg_find_key(const struct cfg_key *tab, size_t n, const char *name);

/* Prints "file:line: message". */
void cfg_report(FILE *err, const char *file, int line, const char *f, ...) PRINTF_LIKE(4, 5);
#define cfg_err(ld, line, ...) ((ld)->nerrors++, cfg_report((ld)->err, (ld)->c->path, line, __VA_ARGS__))

/* Syntax, no I/O (cfg_keys.c). */
char *cfg_skip_space(const char *s);
bool cfg_is_local_part(const char *s, size_t n);
const char *cfg_fmt_duration(char *buf, size_t n, int64_t secs);

/*
 * Reads the recipients file at path (as it should appear in messages) into
 * d. Problems are reported against the recipients file and its lines, or
 * against cfg_path:cfg_line when it cannot be read at all. Returns the
 * number of problems reported.
 */
int cfg_rcpt_load(FILE *err, const char *cfg_path, int cfg_line, struct cfg_domain *d, const char *path);

#endif
