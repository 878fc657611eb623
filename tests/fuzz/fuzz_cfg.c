// fuzz-sources: src/base/cfg.c src/base/cfg_keys.c src/base/cfg_rcpt.c src/base/tls.c src/base/tls_server.c src/base/util.c
/*
 * fuzz_cfg: libFuzzer target for the configuration loader. The input is a
 * config file, optionally followed by "\n%%\n" and a recipients file that
 * the config can name as "recipients = r.txt". Both are written to a private
 * temporary directory and loaded; errors go to /dev/null.
 *
 * Beyond "no crash, no leak", it checks the cfg_print contract: whatever
 * loads, printed and loaded again, must load. (Exempt: printed lines over
 * inih's limit, which only a recipients path made absolute can produce.)
 *
 * cfg_load_flags(CFG_LOAD_NO_SYSTEM) rather than cfg_load: the spool check
 * creates directories, and the fuzzer must not choose where.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/cfg.h"

static char dir[64], conf_path[128], rcpt_path[128], print_path[128];
static FILE *devnull;

/* The directory lives for one input only: libFuzzer may leave without
 * running atexit handlers, and must not leave directories behind. */
static void make_dir(void)
{
	if (fmt(dir, sizeof(dir), "/tmp/fuzz_cfg.XXXXXX") < 0 || !mkdtemp(dir))
		abort();
	if (fmt(conf_path, sizeof(conf_path), "%s/m.conf", dir) < 0 ||
	    fmt(rcpt_path, sizeof(rcpt_path), "%s/r.txt", dir) < 0 ||
	    fmt(print_path, sizeof(print_path), "%s/printed.conf", dir) < 0)
		abort();
}

static void remove_dir(void)
{
	unlink(conf_path);
	unlink(rcpt_path);
	unlink(print_path);
	rmdir(dir);
}

static void write_file(const char *path, const void *data, size_t n)
{
	FILE *f = fopen(path, "w");
	if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0)
		abort();
}

static bool has_long_line(const char *s)
{
	for (const char *nl; (nl = strchr(s, '\n')); s = nl + 1)
		if (nl - s > 199)
			return true;
	return strlen(s) > 199;
}

static void check_reload(const struct cfg *c)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (!out)
		abort();
	cfg_print(c, out);
	fclose(out);
	write_file(print_path, text, len);
	struct cfg *again;
	if (cfg_load_flags(print_path, devnull, CFG_LOAD_NO_SYSTEM, &again) == 0)
		cfg_unref(again);
	else if (!has_long_line(text))
		abort(); /* cfg_print wrote something cfg_load rejects */
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!devnull && !(devnull = fopen("/dev/null", "w")))
		abort();
	make_dir();
	const uint8_t *sep = memmem(data, size, "\n%%\n", 4);
	size_t n = sep ? (size_t)(sep - data) : size;
	write_file(conf_path, data, n);
	write_file(rcpt_path, sep ? sep + 4 : data, sep ? size - n - 4 : 0);

	struct cfg *c;
	if (cfg_load_flags(conf_path, devnull, CFG_LOAD_NO_SYSTEM, &c) == 0) {
		for (size_t i = 0; i < c->ndomains; i++) {
			const struct cfg_domain *d = cfg_find_domain(c, c->domains[i].name);
			if (d != &c->domains[i])
				abort();
			(void)cfg_domain_has_recipient(d, "Postmaster");
		}
		check_reload(c);
		cfg_unref(c);
	}
	remove_dir();
	return 0;
}
