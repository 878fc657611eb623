/*
 * test_cfg: the configuration loader against real files in a temporary
 * directory. Error output is captured and compared whole, with the
 * temporary directory's name replaced by "$T", so each test states the
 * exact messages and line numbers a user would see.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/cfg.h"
#include "base/log.h"
#include "base/tls.h"

static char tmp[PATH_MAX];

/* Returns text with every "$T" replaced by the temporary directory. */
static char *subst(const char *text)
{
	struct buf b = {0};
	for (const char *p = text; *p; p++) {
		if (p[0] == '$' && p[1] == 'T') {
			buf_append_str(&b, tmp);
			p++;
		} else {
			buf_append(&b, p, 1);
		}
	}
	char *s = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return s;
}

/* The inverse, for captured output. */
static char *unsubst(const char *text)
{
	struct buf b = {0};
	size_t n = strlen(tmp);
	for (const char *p = text; *p; p++) {
		if (strncmp(p, tmp, n) == 0) {
			buf_append_str(&b, "$T");
			p += n - 1;
		} else {
			buf_append(&b, p, 1);
		}
	}
	char *s = xstrdup(buf_cstr(&b));
	buf_free(&b);
	return s;
}

static void write_file(const char *name, const char *text)
{
	char path[PATH_MAX * 2];
	char *body = subst(text);
	assert_int_equal(fmt(path, sizeof(path), "%s/%s", tmp, name), 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(body, f);
	assert_int_equal(fclose(f), 0);
	free(body);
}

/* Loads path (with "$T"), returns cfg_load's result; *errs gets the
 * captured error output with "$T" put back. */
static int load_path(const char *path, struct cfg **c, char **errs)
{
	char *p = subst(path), *raw = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&raw, &len);
	assert_non_null(err);
	int rc = cfg_load(p, err, c);
	fclose(err);
	*errs = unsubst(raw);
	free(raw);
	free(p);
	return rc;
}

/* Writes text as $T/m.conf and loads it. */
static int load_text(const char *text, struct cfg **c, char **errs)
{
	write_file("m.conf", text);
	return load_path("$T/m.conf", c, errs);
}

static struct cfg *load_ok(const char *text)
{
	struct cfg *c = NULL;
	char *errs;
	int rc = load_text(text, &c, &errs);
	assert_string_equal(errs, "");
	assert_int_equal(rc, 0);
	assert_non_null(c);
	free(errs);
	return c;
}

static void expect_errors(const char *text, const char *expected)
{
	struct cfg *c = (struct cfg *)1;
	char *errs;
	int rc = load_text(text, &c, &errs);
	assert_string_equal(errs, expected);
	assert_int_equal(rc, -EINVAL);
	assert_null(c);
	free(errs);
}

#define SERVER "[server]\nhostname = mx.example.net\nspool = $T/spool\n"
#define ANY "recipients = *\n"

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	if (fmt(tmp, sizeof(tmp), "/tmp/test_cfg.XXXXXX") < 0 || !mkdtemp(tmp))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --- good configurations ------------------------------------------------ */

static const char full_conf[] =
	"; every key, none at its default\n"
	"[server]\n"
	"hostname = MX.Example.NET\n"
	"listen = 127.0.0.1:2525, [::1]:2526\n"
	"spool = $T/spool\n"
	"max_message_size = 10M\n"
	"resolver = [::1]:5353\n"
	"mx_port = 2525\n"
	"postmaster = hostmaster@example.net\n"
	"max_recipients = 50\n"
	"max_sessions = 200\n"
	"max_sessions_per_ip = 20\n"
	"max_errors = 5\n"
	"command_timeout = 2m\n"
	"data_timeout = 90\n"
	"reject_bare_lf = no\n"
	"min_free_space = 0\n"
	"also_known_as = MX2.example.net,mx3.example.net\n"
	"probe_interval = 30s\n"
	"retry_min = 2m\n"
	"retry_max = 1h\n"
	"max_hops = 50\n"
	"dedup_window = 0\n"
	"bounce_guard = 25%\n"
	"bounce_guard_hold = 2h\n"
	"max_connections_per_destination = 8\n"
	"user = nobody\n"
	"max_session_time = 10m\n"
	"min_data_rate = 1K\n"
	"max_pending_bytes = 16M\n"
	"max_outbound_connections = 50\n"
	"delivery_connect_timeout = 10s\n"
	"delivery_reply_timeout = 2m\n"
	"delivery_final_reply_timeout = 4m\n"
	"authserv_id = Auth.Example.NET\n"
	"\n"
	"[domain Example.COM.]   ; case and trailing dot are normalised\n"
	"recipients = r.txt\n"
	"primary = mx1.example.com:2525, [2001:db8::1]:25, 192.0.2.1, 2001:db8::2\n"
	"retention = 7d\n"
	"warn_after = 0\n"
	"tls = verify\n"
	"spf = reject\n"
	"dmarc = enforce\n"
	"\n"
	"[domain example.org]\n"
	"recipients = *\n";

static void assert_same_cfg(const struct cfg *a, const struct cfg *b)
{
	assert_string_equal(a->hostname, b->hostname);
	assert_string_equal(a->authserv_id, b->authserv_id);
	assert_int_equal(a->nlisten, b->nlisten);
	for (size_t i = 0; i < a->nlisten; i++) {
		assert_string_equal(a->listen[i].text, b->listen[i].text);
		assert_int_equal(a->listen[i].sslen, b->listen[i].sslen);
		assert_memory_equal(&a->listen[i].ss, &b->listen[i].ss, a->listen[i].sslen);
	}
	assert_string_equal(a->spool, b->spool);
	assert_int_equal(a->max_message_size, b->max_message_size);
	assert_string_equal(a->resolver ? a->resolver : "-", b->resolver ? b->resolver : "-");
	assert_int_equal(a->mx_port, b->mx_port);
	assert_string_equal(a->postmaster, b->postmaster);
	assert_int_equal(a->max_recipients, b->max_recipients);
	assert_int_equal(a->max_sessions, b->max_sessions);
	assert_int_equal(a->max_sessions_per_ip, b->max_sessions_per_ip);
	assert_int_equal(a->max_errors, b->max_errors);
	assert_int_equal(a->command_timeout, b->command_timeout);
	assert_int_equal(a->data_timeout, b->data_timeout);
	assert_int_equal(a->reject_bare_lf, b->reject_bare_lf);
	assert_int_equal(a->min_free_space, b->min_free_space);
	assert_int_equal(a->naka, b->naka);
	for (size_t i = 0; i < a->naka; i++)
		assert_string_equal(a->also_known_as[i], b->also_known_as[i]);
	assert_int_equal(a->probe_interval, b->probe_interval);
	assert_int_equal(a->retry_min, b->retry_min);
	assert_int_equal(a->retry_max, b->retry_max);
	assert_int_equal(a->max_hops, b->max_hops);
	assert_int_equal(a->dedup_window, b->dedup_window);
	assert_int_equal(a->bounce_guard, b->bounce_guard);
	assert_int_equal(a->bounce_guard_hold, b->bounce_guard_hold);
	assert_int_equal(a->max_connections_per_destination, b->max_connections_per_destination);
	assert_string_equal(a->user, b->user);
	assert_int_equal(a->max_session_time, b->max_session_time);
	assert_int_equal(a->min_data_rate, b->min_data_rate);
	assert_int_equal(a->max_pending_bytes, b->max_pending_bytes);
	assert_int_equal(a->max_outbound_connections, b->max_outbound_connections);
	assert_int_equal(a->delivery_connect_timeout, b->delivery_connect_timeout);
	assert_int_equal(a->delivery_reply_timeout, b->delivery_reply_timeout);
	assert_int_equal(a->delivery_final_reply_timeout, b->delivery_final_reply_timeout);
}

static void assert_same_domain(const struct cfg_domain *a, const struct cfg_domain *b)
{
	assert_string_equal(a->name, b->name);
	assert_string_equal(a->recipients_path ? a->recipients_path : "-",
			    b->recipients_path ? b->recipients_path : "-");
	assert_int_equal(a->any_recipient, b->any_recipient);
	assert_int_equal(a->recipients.count, b->recipients.count);
	assert_int_equal(a->nprimary, b->nprimary);
	for (size_t i = 0; i < a->nprimary; i++) {
		assert_string_equal(a->primary[i].host, b->primary[i].host);
		assert_int_equal(a->primary[i].port, b->primary[i].port);
	}
	assert_int_equal(a->retention, b->retention);
	assert_int_equal(a->warn_after, b->warn_after);
	assert_int_equal(a->tls, b->tls);
	assert_int_equal(a->spf, b->spf);
	assert_int_equal(a->dmarc, b->dmarc);
}

/* Prints a, loads the output again from another directory (so relative
 * paths would break), checks that nothing changed, and returns the copy. */
static struct cfg *print_and_reload(const struct cfg *a, char **printed)
{
	size_t len = 0;
	FILE *out = open_memstream(printed, &len);
	cfg_print(a, out);
	fclose(out);
	char *sub = subst("$T/sub");
	if (mkdir(sub, 0755) < 0)
		assert_int_equal(errno, EEXIST);
	free(sub);
	write_file("sub/printed.conf", *printed);
	struct cfg *b = NULL;
	char *errs;
	assert_int_equal(load_path("$T/sub/printed.conf", &b, &errs), 0);
	assert_string_equal(errs, "");
	free(errs);
	assert_same_cfg(a, b);
	assert_int_equal(a->ndomains, b->ndomains);
	for (size_t i = 0; i < a->ndomains; i++)
		assert_same_domain(&a->domains[i], &b->domains[i]);
	return b;
}

static void test_round_trip(void **state)
{
	(void)state;
	write_file("r.txt", "alice\nBob@Example.com\n");
	struct cfg *a = load_ok(full_conf);

	assert_string_equal(a->hostname, "mx.example.net");
	assert_int_equal(a->nlisten, 2);
	assert_string_equal(a->listen[1].text, "[::1]:2526");
	assert_int_equal(a->data_timeout, 90);
	assert_int_equal(a->bounce_guard, 25);
	assert_string_equal(a->also_known_as[0], "mx2.example.net");
	assert_int_equal(a->ndomains, 2);
	const struct cfg_domain *d = &a->domains[0];
	assert_string_equal(d->name, "example.com");
	char *rpath = subst("$T/r.txt");
	assert_string_equal(d->recipients_path, rpath);
	free(rpath);
	assert_int_equal(d->nprimary, 4);
	assert_string_equal(d->primary[0].host, "mx1.example.com");
	assert_int_equal(d->primary[0].port, 2525);
	assert_string_equal(d->primary[1].host, "2001:db8::1");
	assert_int_equal(d->primary[1].port, 25);
	assert_string_equal(d->primary[2].host, "192.0.2.1");
	assert_int_equal(d->primary[2].port, 0);
	assert_string_equal(d->primary[3].host, "2001:db8::2");
	assert_int_equal(d->tls, TLS_VERIFY);
	assert_string_equal(a->authserv_id, "auth.example.net");
	assert_int_equal(d->spf, SPF_MODE_REJECT);
	assert_int_equal(d->dmarc, DMARC_MODE_ENFORCE);

	char *printed;
	struct cfg *b = print_and_reload(a, &printed);
	/* Durations and sizes come back in their largest exact unit. */
	assert_non_null(strstr(printed, "\ndata_timeout = 90s\n"));
	assert_non_null(strstr(printed, "\nretention = 1w\n"));
	assert_non_null(strstr(printed, "\nmax_message_size = 10M\n"));
	assert_non_null(strstr(printed, "\nmin_free_space = 0\n"));
	assert_non_null(strstr(printed, "\nbounce_guard = 25%\n"));
	assert_non_null(strstr(printed, "\nprimary = mx1.example.com:2525,[2001:db8::1]:25,192.0.2.1,2001:db8::2\n"));
	assert_non_null(strstr(printed, "\n# example.com: 2 recipients loaded\n"));
	assert_non_null(strstr(printed, "\n# example.org: every recipient accepted\n"));
	assert_non_null(strstr(printed, "\n[domain example.org]\nrecipients = *\n"));
	assert_non_null(strstr(printed, "\nauthserv_id = auth.example.net\n"));
	assert_non_null(strstr(printed, "\nspf = reject\ndmarc = enforce\n"));
	assert_non_null(strstr(printed, "\nspf = tag\ndmarc = tag\n")); /* example.org: the defaults */
	free(printed);
	cfg_unref(a);
	cfg_unref(b);
}

static void test_defaults(void **state)
{
	(void)state;
	char host[256] = "";
	assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
	ascii_lower(host, strlen(host));
	struct cfg *c = load_ok("[server]\nspool = $T/spool\n[domain example.com]\nrecipients = *\n");
	assert_string_equal(c->hostname, host);
	assert_string_equal(c->authserv_id, host);
	assert_int_equal(c->domains[0].spf, SPF_MODE_TAG);
	assert_int_equal(c->domains[0].accept, ACCEPT_ALWAYS);
	assert_int_equal(c->domains[0].dmarc, DMARC_MODE_TAG);
	assert_int_equal(c->nlisten, 1);
	assert_string_equal(c->listen[0].text, "0.0.0.0:25");
	assert_int_equal(c->listen[0].ss.ss_family, AF_INET);
	assert_int_equal(ntohs(((struct sockaddr_in *)&c->listen[0].ss)->sin_port), 25);
	assert_string_equal(CFG_DEFAULT_SPOOL, "/var/spool/mxvault");
	assert_int_equal(c->max_message_size, 50 << 20);
	assert_null(c->resolver);
	assert_int_equal(c->mx_port, 25);
	assert_string_equal(c->postmaster, "postmaster@example.com");
	assert_int_equal(c->max_recipients, 100);
	assert_int_equal(c->max_sessions, 1000);
	assert_int_equal(c->max_sessions_per_ip, 50);
	assert_int_equal(c->max_errors, 10);
	assert_int_equal(c->command_timeout, 300);
	assert_int_equal(c->auth_timeout, 20);
	assert_int_equal(c->data_timeout, 600);
	assert_true(c->reject_bare_lf);
	assert_int_equal(c->min_free_space, 100 << 20);
	assert_int_equal(c->naka, 0);
	assert_null(c->also_known_as);
	assert_int_equal(c->probe_interval, 15);
	assert_int_equal(c->retry_min, 60);
	assert_int_equal(c->retry_max, 1800);
	assert_int_equal(c->max_hops, 100);
	assert_int_equal(c->dedup_window, 86400);
	assert_int_equal(c->bounce_guard, 50);
	assert_int_equal(c->bounce_guard_hold, 3600);
	assert_int_equal(c->max_connections_per_destination, 4);
	assert_string_equal(c->user, "mxvault");
	assert_int_equal(c->max_session_time, 1800);
	assert_int_equal(c->min_data_rate, 500);
	assert_int_equal(c->max_pending_bytes, 64 << 20);
	assert_int_equal(c->max_outbound_connections, 100);
	assert_int_equal(c->delivery_connect_timeout, 30);
	assert_int_equal(c->delivery_reply_timeout, 300);
	assert_int_equal(c->delivery_final_reply_timeout, 600);
	assert_int_equal(c->ndomains, 1);
	const struct cfg_domain *d = &c->domains[0];
	assert_string_equal(d->name, "example.com");
	assert_null(d->recipients_path);
	assert_true(d->any_recipient);
	assert_int_equal(d->nprimary, 0);
	assert_int_equal(d->retention, 5 * 86400);
	assert_int_equal(d->warn_after, 4 * 3600);
	assert_int_equal(d->tls, TLS_AUTO);

	char *printed;
	struct cfg *b = print_and_reload(c, &printed);
	assert_non_null(strstr(printed, "\n# resolver is not set\n"));
	assert_non_null(strstr(printed, "\nlisten = 0.0.0.0:25\n"));
	assert_non_null(strstr(printed, "\ncommand_timeout = 5m\n"));
	assert_non_null(strstr(printed, "\nprobe_interval = 15s\n"));
	assert_non_null(strstr(printed, "\nretention = 5d\n"));
	assert_non_null(strstr(printed, "\nmax_message_size = 50M\n"));
	free(printed);
	cfg_unref(b);
	cfg_unref(c);
}

static void test_sizes_print_exactly(void **state)
{
	(void)state;
	struct cfg *c = load_ok(SERVER "max_message_size = 1537\nmin_free_space = 2048\n[domain example.com]\n" ANY);
	char *printed;
	struct cfg *b = print_and_reload(c, &printed);
	assert_non_null(strstr(printed, "\nmax_message_size = 1537\n"));
	assert_non_null(strstr(printed, "\nmin_free_space = 2K\n"));
	free(printed);
	cfg_unref(b);
	cfg_unref(c);
}

/* Indented keys are keys, not inih continuation lines; comments anywhere. */
static void test_layout(void **state)
{
	(void)state;
	struct cfg *c = load_ok("\xEF\xBB\xBF# a BOM, then a comment\n"
				"  [server]  ; trailing comment\n"
				"    hostname = mx.example.net ; inline comment\n"
				"\tmax_errors: 7\r\n"
				"    spool = $T/spool\n"
				"\n"
				"[ domain   example.com ]\n" ANY);
	assert_string_equal(c->hostname, "mx.example.net");
	assert_int_equal(c->max_errors, 7);
	assert_string_equal(c->domains[0].name, "example.com");
	cfg_unref(c);
}

/* --- lookups ------------------------------------------------------------ */

static void test_recipient_lookup(void **state)
{
	(void)state;
	write_file("r1.txt", "# staff\n  Alice  \n\nbob@EXAMPLE.com\n");
	write_file("r2.txt", "carol\n*\n");
	struct cfg *c = load_ok(SERVER "[domain example.com]\nrecipients = r1.txt\n"
				       "[domain example.net]\nrecipients = r2.txt\n"
				       "[domain example.org]\n" ANY);
	const struct cfg_domain *d = cfg_find_domain(c, "EXAMPLE.Com");
	assert_non_null(d);
	assert_ptr_equal(d, cfg_find_domain(c, "example.com"));
	assert_false(d->any_recipient);
	assert_int_equal(d->recipients.count, 2);
	assert_true(cfg_domain_has_recipient(d, "alice"));
	assert_true(cfg_domain_has_recipient(d, "ALICE"));
	assert_true(cfg_domain_has_recipient(d, "Bob"));
	assert_false(cfg_domain_has_recipient(d, "carol"));
	assert_false(cfg_domain_has_recipient(d, "alice@example.com"));
	assert_false(cfg_domain_has_recipient(d, ""));

	d = cfg_find_domain(c, "example.net");
	assert_true(d->any_recipient);
	assert_true(cfg_domain_has_recipient(d, "anyone"));
	d = cfg_find_domain(c, "example.org");
	assert_true(d->any_recipient);
	assert_true(cfg_domain_has_recipient(d, "whoever"));

	assert_null(cfg_find_domain(c, "example.info"));
	assert_null(cfg_find_domain(c, "com"));
	char longname[300];
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_null(cfg_find_domain(c, longname));
	char longlocal[600];
	memset(longlocal, 'a', sizeof(longlocal) - 1);
	longlocal[sizeof(longlocal) - 1] = '\0';
	assert_false(cfg_domain_has_recipient(cfg_find_domain(c, "example.com"), longlocal));
	cfg_unref(c);
}

static void test_ipv6_listen(void **state)
{
	(void)state;
	struct cfg *c = load_ok("[server]\nhostname = mx.example.net\nlisten = [::1]:2525\nspool = $T/spool\n"
				"[domain example.com]\n" ANY);
	assert_int_equal(c->nlisten, 1);
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&c->listen[0].ss;
	assert_int_equal(sin6->sin6_family, AF_INET6);
	assert_int_equal(ntohs(sin6->sin6_port), 2525);
	assert_int_equal(c->listen[0].sslen, sizeof(*sin6));
	assert_memory_equal(&sin6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback));
	cfg_unref(c);
}

static void test_parse_addr(void **state)
{
	(void)state;
	static const struct {
		const char *text;
		int family; /* 0: rejected */
		unsigned port;
	} cases[] = {
		{"127.0.0.1:25", AF_INET, 25},
		{"0.0.0.0:65535", AF_INET, 65535},
		{"[::]:1", AF_INET6, 1},
		{"[2001:db8::1]:587", AF_INET6, 587},
		{"127.0.0.1", 0, 0},
		{"127.0.0.1:", 0, 0},
		{"127.0.0.1:0", 0, 0},
		{"127.0.0.1:65536", 0, 0},
		{"127.0.0.1:25x", 0, 0},
		{"::1:25", 0, 0},
		{"[::1]", 0, 0},
		{"[::1]25", 0, 0},
		{"[127.0.0.1]:25", 0, 0},
		{"localhost:25", 0, 0},
		{"1.2.3:25", 0, 0},
		{"", 0, 0},
		{":25", 0, 0},
	};
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		struct cfg_addr a = {0};
		int rc = cfg_parse_addr(cases[i].text, &a);
		if (!cases[i].family) {
			if (rc != -EINVAL)
				fail_msg("accepted '%s'", cases[i].text);
			continue;
		}
		if (rc != 0)
			fail_msg("rejected '%s'", cases[i].text);
		assert_int_equal(a.ss.ss_family, cases[i].family);
		assert_string_equal(a.text, cases[i].text);
		uint16_t port = a.ss.ss_family == AF_INET ? ((struct sockaddr_in *)&a.ss)->sin_port
							    : ((struct sockaddr_in6 *)&a.ss)->sin6_port;
		assert_int_equal(ntohs(port), cases[i].port);
		free(a.text);
	}
}

/* --- errors ------------------------------------------------------------- */

static void test_unreadable_config(void **state)
{
	(void)state;
	struct cfg *c = (struct cfg *)1;
	char *errs;
	assert_int_equal(load_path("$T/nonexistent.conf", &c, &errs), -EINVAL);
	assert_null(c);
	assert_string_equal(errs, "$T/nonexistent.conf:1: cannot read: No such file or directory\n");
	free(errs);
}

static void test_unknown_key(void **state)
{
	(void)state;
	expect_errors(SERVER "colour = blue\n[domain example.com]\nretension = 5d\n" ANY,
		      "$T/m.conf:4: unknown key 'colour' in [server]\n"
		      "$T/m.conf:6: unknown key 'retension' in [domain example.com]\n");
}

static void test_unknown_section(void **state)
{
	(void)state;
	/* The keys of an unknown section are not reported one by one. */
	expect_errors(SERVER "[servers]\nlisten = 1.2.3.4:25\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: unknown section [servers]\n");
}

static void test_duplicate_key(void **state)
{
	(void)state;
	expect_errors(SERVER "max_errors = 3\nmax_errors = 4\n[domain example.com]\ntls = may\ntls = encrypt\n" ANY,
		      "$T/m.conf:5: duplicate key 'max_errors' in [server] (first at line 4)\n"
		      "$T/m.conf:8: duplicate key 'tls' in [domain example.com] (first at line 7)\n");
}

static void test_duplicate_section(void **state)
{
	(void)state;
	expect_errors(SERVER "[domain example.com]\n" ANY "[domain Example.Com.]\nretention = 1d\n[server]\n",
		      "$T/m.conf:6: duplicate section [domain example.com] (first at line 4)\n"
		      "$T/m.conf:8: duplicate section [server] (first at line 1)\n");
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_errors(SERVER
		      "max_message_size = abc\n"
		      "command_timeout = 5 minutes\n"
		      "mx_port = 65536\n"
		      "reject_bare_lf = maybe\n"
		      "max_recipients = 0\n"
		      "bounce_guard = 101%\n"
		      "max_message_size2 = 1\n"
		      "data_timeout = 0\n"
		      "listen = 127.0.0.1:25, localhost:25\n"
		      "resolver = dns.example:53\n"
		      "postmaster = nobody\n"
		      "also_known_as = ok.example, bad_name.example\n"
		      "hostname2 = x\n"
		      "[domain example.com]\n"
		      "tls = required\n"
		      "retention = 30s\n"
		      "primary = mx.example.com:0\n"
		      "warn_after =\n" ANY,
		      "$T/m.conf:4: bad value for max_message_size: 'abc' (expected a size like 512K or 50M)\n"
		      "$T/m.conf:5: bad value for command_timeout: '5 minutes' "
		      "(expected a duration like 30s, 15m, 4h or 5d)\n"
		      "$T/m.conf:6: bad value for mx_port: '65536' (expected a whole number from 1 to 65535)\n"
		      "$T/m.conf:7: bad value for reject_bare_lf: 'maybe' (expected yes or no)\n"
		      "$T/m.conf:8: bad value for max_recipients: '0' (expected a whole number from 1 to 10000)\n"
		      "$T/m.conf:9: bad value for bounce_guard: '101%' "
		      "(expected a percentage from 0 to 100, like 50%)\n"
		      "$T/m.conf:10: unknown key 'max_message_size2' in [server]\n"
		      "$T/m.conf:11: bad value for data_timeout: '0' (must be at least 1s)\n"
		      "$T/m.conf:12: bad value for listen: 'localhost:25' "
		      "(expected ADDR:PORT, like 127.0.0.1:25 or [::1]:25)\n"
		      "$T/m.conf:13: bad value for resolver: 'dns.example:53' "
		      "(expected IP or IP:PORT, like 127.0.0.1:53 or [::1]:53)\n"
		      "$T/m.conf:14: bad value for postmaster: 'nobody' "
		      "(expected an address like postmaster@example.com)\n"
		      "$T/m.conf:15: bad value for also_known_as: 'bad_name.example' "
		      "(expected host names separated by commas)\n"
		      "$T/m.conf:16: unknown key 'hostname2' in [server]\n"
		      "$T/m.conf:18: bad value for tls: 'required' (expected auto, may, encrypt, verify, dane or mta-sts)\n"
		      "$T/m.conf:19: bad value for retention: '30s' (must be at least 1m)\n"
		      "$T/m.conf:20: bad value for primary: 'mx.example.com:0' "
		      "(expected HOST or HOST:PORT, like mx1.example.com:25 or [2001:db8::1]:25)\n"
		      "$T/m.conf:21: bad value for warn_after: '' (expected a duration like 30s, 15m, 4h or 5d)\n");
}

/* Standby mode: accept = always (default) | when-primary-down. */
static void test_accept_mode(void **state)
{
	(void)state;
	expect_errors(SERVER "[domain example.com]\naccept = sometimes\n" ANY,
		      "$T/m.conf:5: bad value for accept: 'sometimes' (expected always or when-primary-down)\n");
}

/* A duration with an upper bound says so; auth_timeout defaults to 20s. */
static void test_auth_timeout(void **state)
{
	(void)state;
	expect_errors(SERVER "auth_timeout = 2h\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: bad value for auth_timeout: '2h' (must be at most 1h)\n");
	expect_errors(SERVER "auth_timeout = 0\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: bad value for auth_timeout: '0' (must be at least 1s)\n");
}

/* The abuse defences at connect (issue 9): their syntax errors, defaults, empty lists and printing. */
static void test_connect_defences(void **state)
{
	(void)state;
	expect_errors(SERVER
		      "dnsbl = zen.example.org, bl.test=127.0.0.[2..1], bl2.test*x\n"
		      "dnswl = wl.test, bad_zone\n"
		      "dnsbl_threshold = 0\n"
		      "greet_pause = 2m\n"
		      "max_connection_rate = 60/d\n"
		      "max_message_rate = 600\n"
		      "rate_limit_exceptions = 127.0.0.0/8, 10.0.0.0/33\n"
		      "[domain example.com]\n" ANY,
		      "$T/m.conf:4: bad value for dnsbl: 'bl.test=127.0.0.[2..1]' "
		      "(expected ZONE[=CODES][*WEIGHT], like zen.example.org=127.0.0.[2..11]*2)\n"
		      "$T/m.conf:4: bad value for dnsbl: 'bl2.test*x' "
		      "(expected ZONE[=CODES][*WEIGHT], like zen.example.org=127.0.0.[2..11]*2)\n"
		      "$T/m.conf:5: bad value for dnswl: 'bad_zone' (expected zone names separated by commas)\n"
		      "$T/m.conf:6: bad value for dnsbl_threshold: '0' (expected a whole number from 1 to 100000)\n"
		      "$T/m.conf:7: bad value for greet_pause: '2m' (must be at most 1m)\n"
		      "$T/m.conf:8: bad value for max_connection_rate: '60/d' "
		      "(expected N/s, N/m or N/h, like 60/m, or 0 for no limit)\n"
		      "$T/m.conf:9: bad value for max_message_rate: '600' "
		      "(expected N/s, N/m or N/h, like 600/h, or 0 for no limit)\n"
		      "$T/m.conf:10: bad value for rate_limit_exceptions: '10.0.0.0/33' "
		      "(expected addresses or CIDR blocks, like 127.0.0.0/8, ::1)\n");

	expect_errors(SERVER "greet_pause = 30s\ncommand_timeout = 30s\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: greet_pause (30s) is not shorter than command_timeout (30s)\n");
	expect_errors(SERVER "command_timeout = 5s\ngreet_pause = 6s\n[domain example.com]\n" ANY,
		      "$T/m.conf:5: greet_pause (6s) is not shorter than command_timeout (5s)\n");

	struct cfg *c = load_ok("[server]\nspool = $T/spool\n[domain example.com]\nrecipients = *\n");
	assert_int_equal(c->ndnsbl, 0);
	assert_int_equal(c->ndnswl, 0);
	assert_int_equal(c->dnsbl_threshold, 1);
	assert_int_equal(c->greet_pause, 0);
	assert_int_equal(c->max_connection_rate.count, 60);
	assert_int_equal(c->max_connection_rate.period, 60);
	assert_int_equal(c->max_message_rate.count, 600);
	assert_int_equal(c->max_message_rate.period, 3600);
	assert_int_equal(c->nrate_limit_exceptions, 2);
	char *printed;
	struct cfg *b = print_and_reload(c, &printed);
	assert_non_null(strstr(printed, "\nrate_limit_exceptions = 127.0.0.0/8,::1\n"));
	assert_non_null(strstr(printed, "\nmax_connection_rate = 60/m\n"));
	assert_non_null(strstr(printed, "\nmax_message_rate = 600/h\n"));
	assert_non_null(strstr(printed, "\ngreet_pause = 0\n"));
	assert_non_null(strstr(printed, "\ndnsbl = \n"));
	free(printed);
	cfg_unref(b);
	cfg_unref(c);

	c = load_ok("[server]\nspool = $T/spool\n"
		    "dnsbl = Zen.Example.org=127.0.0.[2..11]*2, bl.test\ndnswl = wl.test.\ndnsbl_threshold = 3\n"
		    "greet_pause = 6s\nmax_connection_rate = 0\nmax_message_rate = 10/s\nrate_limit_exceptions =\n"
		    "[domain example.com]\nrecipients = *\n");
	assert_int_equal(c->ndnsbl, 2);
	assert_string_equal(c->dnsbl[0].zone, "zen.example.org");
	assert_int_equal(c->dnsbl[0].weight, 2);
	assert_int_equal(c->dnsbl[1].weight, 1);
	assert_int_equal(c->ndnswl, 1);
	assert_string_equal(c->dnswl[0], "wl.test");
	assert_int_equal(c->dnsbl_threshold, 3);
	assert_int_equal(c->greet_pause, 6);
	assert_int_equal(c->max_connection_rate.count, 0);
	assert_int_equal(c->max_message_rate.period, 1);
	assert_int_equal(c->nrate_limit_exceptions, 0);
	b = print_and_reload(c, &printed);
	assert_non_null(strstr(printed, "\ndnsbl = Zen.Example.org=127.0.0.[2..11]*2,bl.test\n"));
	assert_non_null(strstr(printed, "\ndnswl = wl.test\n"));
	assert_non_null(strstr(printed, "\nrate_limit_exceptions = \n"));
	assert_int_equal(b->ndnsbl, 2);
	assert_int_equal(b->dnsbl[0].weight, 2);
	assert_int_equal(b->nrate_limit_exceptions, 0);
	assert_int_equal(b->max_connection_rate.count, 0);
	free(printed);
	cfg_unref(b);
	cfg_unref(c);
}

static void test_min_size(void **state)
{
	(void)state;
	expect_errors(SERVER "max_message_size = 1000\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: bad value for max_message_size: '1000' (must be at least 1K)\n");
}

static void test_syntax_errors(void **state)
{
	(void)state;
	expect_errors("max_errors = 3\n" SERVER "just words\n[domain example.com\n[domain a..b]\n"
		      "[domain example.com] junk\n[domain]\n[domain example.com]\n" ANY,
		      "$T/m.conf:1: key 'max_errors' before any section (start with [server] or [domain NAME])\n"
		      "$T/m.conf:5: expected 'key = value', '[section]' or a comment\n"
		      "$T/m.conf:6: section header without a closing ']'\n"
		      "$T/m.conf:7: bad domain name 'a..b' in section header\n"
		      "$T/m.conf:8: unexpected text after section header: 'junk'\n"
		      "$T/m.conf:9: [domain] needs a domain name, like [domain example.com]\n");
}

static void test_line_too_long(void **state)
{
	(void)state;
	char text[1024], comment[200], value[300];
	memset(comment, 'x', sizeof(comment) - 1);
	comment[0] = '#';
	comment[sizeof(comment) - 1] = '\0'; /* 199 characters: the longest allowed */
	memset(value, 'a', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	assert_int_equal(fmt(text, sizeof(text), SERVER "%s\nhostname2 = %s\nmax_errors = 0\n[domain example.com]\n" ANY,
			     comment, value), 0);
	expect_errors(text, "$T/m.conf:5: line too long (max 199 characters)\n"
			    "$T/m.conf:6: bad value for max_errors: '0' (expected a whole number from 1 to 1000)\n");
}

static void test_missing_recipients_file(void **state)
{
	(void)state;
	expect_errors(SERVER "[domain example.com]\nrecipients = nope.txt\n",
		      "$T/m.conf:5: recipients file '$T/nope.txt': No such file or directory\n");
	expect_errors(SERVER "[domain example.com]\nrecipients = /dev/null\n",
		      "$T/m.conf:5: recipients file '/dev/null': not a regular file\n");
}

/* The outbound trust store is loaded at config time: a bad one never starts a daemon. */
static void test_tls_ca_file(void **state)
{
	(void)state;
	expect_errors(SERVER "tls_ca_file = nope.pem\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: tls_ca_file: cannot load CA certificates from $T/nope.pem (No such file or directory)\n");
	write_file("junk.pem", "not a certificate\n");
	expect_errors(SERVER "tls_ca_file = junk.pem\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: tls_ca_file: cannot load CA certificates from $T/junk.pem (not a PEM certificate file)\n");
}

static void test_recipients_errors(void **state)
{
	(void)state;
	char line[600];
	memset(line, 'a', sizeof(line) - 1);
	line[sizeof(line) - 1] = '\0';
	char text[1024];
	assert_int_equal(fmt(text, sizeof(text), "alice\n\n# comment\nbob@example.org\nx y\n%s\n@example.com\n", line),
			 0);
	write_file("bad.txt", text);
	expect_errors(SERVER "[domain example.com]\nrecipients = bad.txt\n",
		      "$T/bad.txt:4: address 'bob@example.org' is not in domain 'example.com'\n"
		      "$T/bad.txt:5: bad entry 'x y' (expected *, a local part or an address in example.com)\n"
		      "$T/bad.txt:6: line too long (max 512 characters)\n"
		      "$T/bad.txt:7: bad entry '@example.com' (expected *, a local part or an address in example.com)\n");
}

static void test_unwritable_spool(void **state)
{
	(void)state;
	write_file("file", "not a directory\n");
	expect_errors("[server]\nhostname = mx.example.net\n\nspool = $T/file/spool\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: spool directory '$T/file/spool': Not a directory\n");
}

static void test_spool_created(void **state)
{
	(void)state;
	struct cfg *c =
		load_ok("[server]\nhostname = mx.example.net\nspool = $T/a/b/spool\n[domain example.com]\n" ANY);
	struct stat st;
	assert_int_equal(stat(c->spool, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	cfg_unref(c);
}

static void test_retry_order(void **state)
{
	(void)state;
	expect_errors(SERVER "retry_max = 5m\nretry_min = 10m\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: retry_max (5m) is shorter than retry_min (10m)\n");
	/* Only retry_min set: the default retry_max is at fault at its line. */
	expect_errors(SERVER "retry_min = 1h\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: retry_max (30m) is shorter than retry_min (1h)\n");
	/* A bad value is reported once, not again by the cross-check. */
	expect_errors(SERVER "retry_min = 10m\nretry_max = soon\n[domain example.com]\n" ANY,
		      "$T/m.conf:5: bad value for retry_max: 'soon' (expected a duration like 30s, 15m, 4h or 5d)\n");
}

static void test_no_domain(void **state)
{
	(void)state;
	expect_errors(SERVER, "$T/m.conf:1: no [domain NAME] section: mxvault would accept no mail\n");
	expect_errors("", "$T/m.conf:1: no [domain NAME] section: mxvault would accept no mail\n");
}

static void test_multiple_errors(void **state)
{
	(void)state;
	write_file("file", "not a directory\n");
	expect_errors("[server]\nhostname = -bad-\nspool = $T/file/spool\nmx_port = 0\n[mail]\n"
		      "retry_min = 2h\n",
		      "$T/m.conf:2: bad value for hostname: '-bad-' (expected a domain name like mx.example.com)\n"
		      "$T/m.conf:4: bad value for mx_port: '0' (expected a whole number from 1 to 65535)\n"
		      "$T/m.conf:5: unknown section [mail]\n"
		      "$T/m.conf:1: no [domain NAME] section: mxvault would accept no mail\n"
		      "$T/m.conf:3: spool directory '$T/file/spool': Not a directory\n");
}

static void test_no_spool_flag(void **state)
{
	(void)state;
	write_file("file", "not a directory\n");
	write_file("m.conf", "[server]\nhostname = mx.example.net\nspool = $T/file/spool\nuser = nosuchuser\n"
			     "[domain example.com]\n" ANY);
	char *p = subst("$T/m.conf");
	struct cfg *c;
	assert_int_equal(cfg_load_flags(p, stderr, CFG_LOAD_NO_SYSTEM, &c), 0);
	cfg_unref(c);
	free(p);
}

/* No backscatter by default: a domain must say who its recipients are. */
static void test_recipients_required(void **state)
{
	(void)state;
	expect_errors(SERVER "[domain example.com]\nretention = 2d\n\n[domain example.org]\n" ANY,
		      "$T/m.conf:4: [domain example.com] needs recipients = FILE or recipients = *\n");
}

/* "recipients = *" loads, with one warning per domain when warnings are asked for. */
static void test_recipients_star_warns(void **state)
{
	(void)state;
	write_file("m.conf", SERVER "[domain example.com]\n" ANY "[domain example.org]\nrecipients = *\n");
	char *p = subst("$T/m.conf"), *raw = NULL;
	size_t len = 0;
	FILE *err = open_memstream(&raw, &len);
	struct cfg *c = NULL;
	assert_int_equal(cfg_load_flags(p, err, CFG_LOAD_WARN, &c), 0);
	fclose(err);
	char *errs = unsubst(raw);
	assert_string_equal(errs, "$T/m.conf:5: warning: [domain example.com] accepts every address (recipients = *): "
				  "mail for unknown recipients is accepted and bounced later, when the primary "
				  "refuses it\n"
				  "$T/m.conf:7: warning: [domain example.org] accepts every address (recipients = *): "
				  "mail for unknown recipients is accepted and bounced later, when the primary "
				  "refuses it\n");
	assert_true(c->domains[0].any_recipient);
	assert_null(c->domains[0].recipients_path);
	cfg_unref(c);
	free(errs);
	free(raw);
	free(p);
}

/* SMTPUTF8 recipients can be listed (RFC 6531). */
static void test_utf8_recipients(void **state)
{
	(void)state;
	write_file("u.txt", "j\xc3\xb6s\xc3\xa9\n\xe7\x94\xa8\xe6\x88\xb7@example.com\n");
	struct cfg *c = load_ok(SERVER "[domain example.com]\nrecipients = u.txt\n");
	const struct cfg_domain *d = &c->domains[0];
	assert_true(cfg_domain_has_recipient(d, "j\xc3\xb6s\xc3\xa9"));
	assert_true(cfg_domain_has_recipient(d, "\xe7\x94\xa8\xe6\x88\xb7"));
	assert_false(cfg_domain_has_recipient(d, "jose"));
	cfg_unref(c);
	write_file("bad.txt", "ok\nbad\xc3\n\xed\xa0\x80x\n");
	expect_errors(SERVER "[domain example.com]\nrecipients = bad.txt\n",
		      "$T/bad.txt:2: bad entry 'bad\xc3' (expected *, a local part or an address in example.com)\n"
		      "$T/bad.txt:3: bad entry '\xed\xa0\x80x' (expected *, a local part or an address in example.com)\n");
}

/* As root: the user must exist and must not be root. */
static void test_user(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip();
	expect_errors(SERVER "user = nosuchuser\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: user nosuchuser does not exist (create it with adduser --system nosuchuser, "
		      "or set user =)\n");
	expect_errors(SERVER "user = root\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: bad value for user: 'root' (mxvault drops root after binding its ports: "
		      "name an unprivileged user)\n");
	struct cfg *c = load_ok(SERVER "user = nobody\n[domain example.com]\n" ANY);
	assert_true(c->drop_privileges);
	assert_int_not_equal(c->user_uid, 0);
	assert_int_not_equal(c->user_gid, 0);
	cfg_unref(c);
}

/* A reference keeps the configuration alive after the loader's is dropped. */
static void test_refcount(void **state)
{
	(void)state;
	struct cfg *c = load_ok(SERVER "[domain example.com]\n" ANY);
	const struct cfg *held = cfg_ref(c);
	cfg_unref(c);
	assert_string_equal(held->domains[0].name, "example.com"); /* ASan: no use after free */
	cfg_unref(held);
}

/* A certificate and key made with the daemon's own generator, in $T/DIR. */
static void make_pair(const char *dir, const char *host)
{
	char path[PATH_MAX + 16], cert[PATH_MAX + 32], key[PATH_MAX + 32];
	assert_int_equal(fmt(path, sizeof(path), "%s/%s", tmp, dir), 0);
	log_set_level(LOG_LVL_WARN);
	assert_int_equal(tls_selfsigned_ensure(path, host, false, 0, 0, cert, key, sizeof(cert)), 0);
}

/* Prints c, which must show line, and drops it; returns the configuration read back from the print. */
static struct cfg *expect_printed(struct cfg *c, const char *line)
{
	char *printed;
	struct cfg *b = print_and_reload(c, &printed);
	assert_non_null(strstr(printed, line));
	free(printed);
	cfg_unref(c);
	return b;
}

/* tls_cert and tls_key: paths relative to the config file, "none", and both or neither. */
static void test_tls_keys(void **state)
{
	(void)state;
	make_pair("a", "mx.example.net");
	struct cfg *c = load_ok(SERVER "tls_cert = a/cert.pem\ntls_key = a/key.pem\n[domain example.com]\n" ANY
				"require_tls = yes\n[domain example.org]\n" ANY);
	char *want = subst("$T/a/cert.pem");
	assert_string_equal(c->tls_cert, want);
	assert_false(c->tls_inbound_off);
	assert_true(c->domains[0].require_tls);
	assert_false(c->domains[1].require_tls);
	struct cfg *b = expect_printed(c, "\nrequire_tls = yes\n");
	assert_string_equal(b->tls_cert, want);
	cfg_unref(expect_printed(b, "\nrequire_tls = no\n")); /* also drops b */
	free(want);

	c = load_ok(SERVER "tls_cert = none\n[domain example.com]\n" ANY);
	assert_true(c->tls_inbound_off);
	assert_null(c->tls_cert);
	b = expect_printed(c, "\ntls_cert = none\n");
	assert_true(b->tls_inbound_off);
	cfg_unref(b);

	c = load_ok(SERVER "[domain example.com]\n" ANY);
	assert_null(c->tls_cert);
	assert_false(c->tls_inbound_off);
	cfg_unref(expect_printed(c, "\n# tls_cert is not set: a self-signed certificate in the spool\n"));

	expect_errors(SERVER "tls_cert = a/cert.pem\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: tls_cert needs tls_key (the certificate's private key, PEM)\n");
	expect_errors(SERVER "tls_key = a/key.pem\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: tls_key needs tls_cert (the certificate, PEM)\n");
	expect_errors(SERVER "tls_cert = none\ntls_key = a/key.pem\n[domain example.com]\n" ANY,
		      "$T/m.conf:5: tls_key is set but tls_cert = none (inbound TLS is off)\n");
	expect_errors(SERVER "tls_cert =\n[domain example.com]\n" ANY "require_tls = sometimes\n",
		      "$T/m.conf:4: bad value for tls_cert: '' (expected a PEM certificate file (the chain after it), "
		      "or none)\n"
		      "$T/m.conf:7: bad value for require_tls: 'sometimes' (expected yes or no)\n");
}

/* Sender authentication keys (issue 8): bad values, FILE:LINE of each. */
static void test_auth_keys(void **state)
{
	(void)state;
	expect_errors(SERVER "authserv_id = not an id\n[domain example.com]\n" ANY "spf = fail\ndmarc = reject\n"
		      "[domain example.org]\n" ANY "spf =\ndmarc = Tag\n",
		      "$T/m.conf:4: bad value for authserv_id: 'not an id' (expected a domain name like mx.example.com)\n"
		      "$T/m.conf:7: bad value for spf: 'fail' (expected off, tag or reject)\n"
		      "$T/m.conf:8: bad value for dmarc: 'reject' (expected off, tag or enforce)\n"
		      "$T/m.conf:11: bad value for spf: '' (expected off, tag or reject)\n"
		      "$T/m.conf:12: bad value for dmarc: 'Tag' (expected off, tag or enforce)\n");
	struct cfg *c = load_ok(SERVER "authserv_id = mx-auth.example.net\n[domain example.com]\n" ANY
				"spf = off\ndmarc = off\n");
	assert_string_equal(c->authserv_id, "mx-auth.example.net");
	assert_int_equal(c->domains[0].spf, SPF_MODE_OFF);
	assert_int_equal(c->domains[0].dmarc, DMARC_MODE_OFF);
	cfg_unref(expect_printed(c, "\nspf = off\ndmarc = off\n"));
}

/* recipients = callout[, FILE], unknown_during_outage, callout_timeout, callout_cache (issue 9). */
static void test_callout_keys(void **state)
{
	(void)state;
	write_file("known", "listed\n");
	expect_errors(SERVER "callout_timeout = 0s\ncallout_cache = 30s\n[domain example.com]\nrecipients = callout, *\n"
		      "[domain example.org]\nrecipients = callouts\n[domain example.net]\n" ANY
		      "unknown_during_outage = accept\n[domain example.info]\nrecipients = callout\n"
		      "unknown_during_outage = maybe\n",
		      "$T/m.conf:4: bad value for callout_timeout: '0s' (must be at least 1s)\n"
		      "$T/m.conf:5: bad value for callout_cache: '30s' (must be at least 1m)\n"
		      "$T/m.conf:7: bad value for recipients: '*' (expected callout, FILE: one recipients file, not *)\n"
		      "$T/m.conf:9: recipients file '$T/callouts': No such file or directory\n"
		      "$T/m.conf:15: bad value for unknown_during_outage: 'maybe' (expected tempfail, accept or reject)\n"
		      "$T/m.conf:12: [domain example.net] unknown_during_outage needs recipients = callout\n");
	struct cfg *c = load_ok(SERVER "callout_timeout = 2s\n[domain example.com]\nrecipients = callout, known\n"
				"unknown_during_outage = reject\n[domain example.org]\nrecipients = callout\n");
	assert_int_equal(c->callout_timeout, 2);
	assert_int_equal(c->callout_cache, 30 * 86400);
	assert_true(c->domains[0].callout);
	assert_int_equal(c->domains[0].unknown_during_outage, OUTAGE_REJECT);
	assert_true(cfg_domain_has_recipient(&c->domains[0], "Listed"));
	assert_false(cfg_domain_has_recipient(&c->domains[0], "other"));
	assert_true(c->domains[1].callout);
	assert_int_equal(c->domains[1].unknown_during_outage, OUTAGE_TEMPFAIL);
	assert_false(cfg_domain_has_recipient(&c->domains[1], "anyone"));
	cfg_unref(expect_printed(c, "\nrecipients = callout\n"));
}

/* Unreadable, not PEM, or a key of another certificate: FILE:LINE of the key that names the file. */
static void test_tls_bad_files(void **state)
{
	(void)state;
	make_pair("a", "mx.example.net");
	make_pair("b", "other.example.net");
	expect_errors(SERVER "tls_cert = nope.pem\ntls_key = a/key.pem\n[domain example.com]\n" ANY,
		      "$T/m.conf:4: tls_cert $T/nope.pem: cannot read: No such file or directory\n");
	expect_errors(SERVER "tls_cert = a/cert.pem\ntls_key = a/nope.pem\n[domain example.com]\n" ANY,
		      "$T/m.conf:5: tls_key $T/a/nope.pem: cannot read: No such file or directory\n");

	struct cfg *c = (struct cfg *)1;
	char *errs;
	write_file("m.conf", SERVER "tls_cert = m.conf\ntls_key = a/key.pem\n[domain example.com]\n" ANY);
	assert_int_equal(load_path("$T/m.conf", &c, &errs), -EINVAL);
	assert_non_null(strstr(errs, "$T/m.conf:4: tls_cert $T/m.conf: no PEM certificate in the file ("));
	free(errs);
	write_file("m.conf", SERVER "tls_cert = a/cert.pem\ntls_key = a/cert.pem\n[domain example.com]\n" ANY);
	assert_int_equal(load_path("$T/m.conf", &c, &errs), -EINVAL);
	assert_non_null(strstr(errs, "$T/m.conf:5: tls_key $T/a/cert.pem: no PEM private key in the file"));
	free(errs);
	write_file("m.conf", SERVER "tls_cert = a/cert.pem\ntls_key = b/key.pem\n[domain example.com]\n" ANY);
	assert_int_equal(load_path("$T/m.conf", &c, &errs), -EINVAL);
	assert_non_null(
		strstr(errs, "$T/m.conf:5: tls_key $T/b/key.pem: the private key does not match the certificate"));
	assert_null(strchr(errs, '\n') + 1 == errs + strlen(errs) ? NULL : "one line only");
	free(errs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_sizes_print_exactly),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_recipient_lookup),
		cmocka_unit_test(test_ipv6_listen),
		cmocka_unit_test(test_parse_addr),
		cmocka_unit_test(test_unreadable_config),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_unknown_section),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_duplicate_section),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_min_size),
		cmocka_unit_test(test_auth_timeout),
		cmocka_unit_test(test_connect_defences),
		cmocka_unit_test(test_accept_mode),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_line_too_long),
		cmocka_unit_test(test_missing_recipients_file),
		cmocka_unit_test(test_tls_ca_file),
		cmocka_unit_test(test_recipients_errors),
		cmocka_unit_test(test_unwritable_spool),
		cmocka_unit_test(test_spool_created),
		cmocka_unit_test(test_retry_order),
		cmocka_unit_test(test_no_domain),
		cmocka_unit_test(test_multiple_errors),
		cmocka_unit_test(test_no_spool_flag),
		cmocka_unit_test(test_recipients_required),
		cmocka_unit_test(test_recipients_star_warns),
		cmocka_unit_test(test_utf8_recipients),
		cmocka_unit_test(test_user),
		cmocka_unit_test(test_refcount),
		cmocka_unit_test(test_tls_keys),
		cmocka_unit_test(test_tls_bad_files),
		cmocka_unit_test(test_auth_keys),
		cmocka_unit_test(test_callout_keys),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
