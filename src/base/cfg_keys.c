/*
 * cfg_keys: every configuration key, in two tables ([server] and
 * [domain NAME]), each with the function that parses its value and the one
 * that prints it back, plus the pure syntax checks they share. cfg.c looks
 * keys up here; cfg_print walks the same tables, so a new key is printed as
 * soon as it can be set.
 *
 * Setters report their own errors ("bad value for KEY: 'V' (HINT)") at the
 * loader's current line and leave the field at its default on failure.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "cfg_int.h"
#include "tls.h"

static int bad_value(struct cfg_loader *ld, const struct cfg_key *k, const char *v, const char *hint)
{
	cfg_err(ld, ld->lineno, "bad value for %s: '%s' (%s)", k->name, v, hint ? hint : k->hint);
	return -EINVAL;
}

/* --- small parsers ----------------------------------------------------- */

char *cfg_skip_space(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\f' || *s == '\v')
		s++;
	return (char *)s;
}

static bool is_label_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-';
}

/*
 * An unquoted local part: printable, no space, none of RFC 5322's specials;
 * UTF-8 (RFC 6531) as well, since SMTPUTF8 recipients must be listable.
 * At most 64 octets, as on the wire (RFC 5321 4.5.3.1.1).
 */
bool cfg_is_local_part(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n;) {
		unsigned char ch = (unsigned char)s[i];
		if (ch >= 0x80) {
			size_t len = utf8_seq_len((const unsigned char *)s + i, n - i);
			if (len == 0)
				return false;
			i += len;
			continue;
		}
		if (ch <= ' ' || ch == 127 || strchr("<>()[]\\,;:\"@", ch))
			return false;
		i++;
	}
	return true;
}

static bool is_address(const char *s)
{
	const char *at = strrchr(s, '@');
	return at && cfg_is_local_part(s, (size_t)(at - s)) && is_host_name(at + 1, strlen(at + 1));
}

static bool is_ip(int af, const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(af, s, buf) == 1;
}

struct hostport {
	char host[256];    /* without brackets */
	const char *port;  /* NULL: none given */
	bool bracketed;
};

/* "host", "host:port", "[v6]", "[v6]:port", or a bare IPv6 address (more
 * than one colon, so it cannot carry a port). Syntax only. */
static int split_hostport(const char *s, struct hostport *hp)
{
	const char *h = s, *end, *rest;
	hp->bracketed = *s == '[';
	if (hp->bracketed) {
		h = s + 1;
		end = strchr(h, ']');
		if (!end)
			return -EINVAL;
		rest = end + 1;
		if (*rest && *rest != ':')
			return -EINVAL;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':'))
			colon = NULL;
		end = colon ? colon : s + strlen(s);
		rest = end;
	}
	size_t n = (size_t)(end - h);
	if (n == 0 || n >= sizeof(hp->host))
		return -EINVAL;
	memcpy(hp->host, h, n);
	hp->host[n] = '\0';
	hp->port = *rest == ':' ? rest + 1 : NULL;
	return 0;
}

static int parse_port(const char *s, uint16_t *port)
{
	uint64_t v;
	if (parse_uint(s, 1, 65535, &v) < 0)
		return -EINVAL;
	*port = (uint16_t)v;
	return 0;
}

int cfg_parse_addr(const char *s, struct cfg_addr *out)
{
	struct hostport hp;
	uint16_t port;
	if (split_hostport(s, &hp) < 0 || !hp.port || parse_port(hp.port, &port) < 0)
		return -EINVAL;
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	if (hp.bracketed) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, hp.host, &sin6->sin6_addr) != 1)
			return -EINVAL;
		len = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		if (inet_pton(AF_INET, hp.host, &sin->sin_addr) != 1)
			return -EINVAL;
		len = sizeof(*sin);
	}
	out->text = xstrdup(s);
	out->ss = ss;
	out->sslen = len;
	return 0;
}

/* A DNS server: IPv4 or IPv6, with an optional port (IPv6 then in brackets). */
static bool is_resolver(const char *s)
{
	struct hostport hp;
	uint16_t port;
	if (split_hostport(s, &hp) < 0 || (hp.port && parse_port(hp.port, &port) < 0))
		return false;
	if (hp.bracketed)
		return is_ip(AF_INET6, hp.host);
	return is_ip(AF_INET, hp.host) || (!hp.port && is_ip(AF_INET6, hp.host));
}

static int parse_host(const char *s, struct cfg_host *out)
{
	struct hostport hp;
	uint16_t port = 0;
	if (split_hostport(s, &hp) < 0 || (hp.port && parse_port(hp.port, &port) < 0))
		return -EINVAL;
	if (hp.bracketed ? !is_ip(AF_INET6, hp.host) : !is_ip(AF_INET, hp.host) && !is_ip(AF_INET6, hp.host)) {
		ascii_lower(hp.host, strlen(hp.host));
		if (hp.bracketed || !is_host_name(hp.host, strlen(hp.host)))
			return -EINVAL;
	}
	out->host = xstrdup(hp.host);
	out->port = port;
	return 0;
}

/* Splits "a, b ,c" into trimmed copies; "" gives one empty item. */
static size_t split_list(const char *v, char ***out)
{
	size_t n = 1;
	for (const char *p = v; *p; p++)
		n += *p == ',';
	char **items = xcalloc(n, sizeof(*items));
	for (size_t i = 0; i < n; i++) {
		const char *start = cfg_skip_space(v);
		const char *comma = strchr(start, ',');
		const char *end = comma ? comma : start + strlen(start);
		v = comma ? comma + 1 : end;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		items[i] = xstrndup(start, (size_t)(end - start));
	}
	*out = items;
	return n;
}

static void free_list(char **items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

/* --- formatting, shared by messages and cfg_print ---------------------- */

/* The largest unit that divides exactly: 86400 -> "1d", 90 -> "90s". */
const char *cfg_fmt_duration(char *buf, size_t n, int64_t secs)
{
	static const struct { char unit; int64_t secs; } units[] = {
		{'w', 604800}, {'d', 86400}, {'h', 3600}, {'m', 60}, {'s', 1},
	};
	size_t i = 0;
	if (secs == 0)
		return "0";
	while (secs % units[i].secs != 0)
		i++; /* ends at 's' at the latest */
	return fmt(buf, n, "%lld%c", (long long)(secs / units[i].secs), units[i].unit) == 0 ? buf : "?";
}

/* Likewise for sizes; bytes when not a whole number of K. */
static const char *fmt_size(char *buf, size_t n, uint64_t bytes)
{
	static const struct { const char *unit; uint64_t bytes; } units[] = {
		{"G", 1073741824}, {"M", 1048576}, {"K", 1024}, {"", 1},
	};
	size_t i = 0;
	if (bytes == 0)
		return "0";
	while (bytes % units[i].bytes != 0)
		i++; /* ends at plain bytes at the latest */
	return fmt(buf, n, "%llu%s", (unsigned long long)(bytes / units[i].bytes), units[i].unit) == 0 ? buf : "?";
}

/* --- setters: one per kind of value ------------------------------------ */

#define FIELD(obj, k, type) ((type *)((char *)(obj) + (k)->off))
#define CFIELD(obj, k, type) ((const type *)((const char *)(obj) + (k)->off))

static int set_uint(struct cfg_loader *ld, const struct cfg_key *k, const char *v, uint64_t *out)
{
	char hint[80];
	if (parse_uint(v, (uint64_t)k->min, (uint64_t)k->max, out) == 0)
		return 0;
	if (fmt(hint, sizeof(hint), "expected a whole number from %lld to %lld", (long long)k->min,
		(long long)k->max) < 0)
		hint[0] = '\0';
	return bad_value(ld, k, v, k->hint ? k->hint : hint);
}

static int set_u32(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	uint64_t u;
	if (set_uint(ld, k, v, &u) < 0)
		return -EINVAL;
	*FIELD(obj, k, uint32_t) = (uint32_t)u;
	return 0;
}

static int set_u16(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	uint64_t u;
	if (set_uint(ld, k, v, &u) < 0)
		return -EINVAL;
	*FIELD(obj, k, uint16_t) = (uint16_t)u;
	return 0;
}

static int set_percent(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	char num[16];
	size_t n = strlen(v);
	uint64_t u;
	if (n && v[n - 1] == '%')
		n--;
	if (n >= sizeof(num))
		return bad_value(ld, k, v, NULL);
	memcpy(num, v, n);
	num[n] = '\0';
	if (parse_uint(num, (uint64_t)k->min, (uint64_t)k->max, &u) < 0)
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, uint32_t) = (uint32_t)u;
	return 0;
}

static int set_size(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	uint64_t u;
	char hint[64], min[32];
	if (parse_size(v, &u) < 0)
		return bad_value(ld, k, v, NULL);
	if (u < (uint64_t)k->min) {
		if (fmt(hint, sizeof(hint), "must be at least %s", fmt_size(min, sizeof(min), (uint64_t)k->min)) < 0)
			hint[0] = '\0';
		return bad_value(ld, k, v, hint);
	}
	*FIELD(obj, k, uint64_t) = u;
	return 0;
}

static int set_duration(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	int64_t secs;
	char hint[64], min[32];
	if (parse_duration(v, &secs) < 0)
		return bad_value(ld, k, v, NULL);
	if (secs < k->min) {
		if (fmt(hint, sizeof(hint), "must be at least %s", cfg_fmt_duration(min, sizeof(min), k->min)) < 0)
			hint[0] = '\0';
		return bad_value(ld, k, v, hint);
	}
	if (k->max && secs > (int64_t)k->max) {
		if (fmt(hint, sizeof(hint), "must be at most %s", cfg_fmt_duration(min, sizeof(min), (int64_t)k->max)) < 0)
			hint[0] = '\0';
		return bad_value(ld, k, v, hint);
	}
	*FIELD(obj, k, int64_t) = secs;
	return 0;
}

static int set_bool(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	return parse_bool(v, FIELD(obj, k, bool)) == 0 ? 0 : bad_value(ld, k, v, NULL);
}

static const char *const tls_mode_names[] = {
	[TLS_MAY] = "may",   [TLS_ENCRYPT] = "encrypt",  [TLS_VERIFY] = "verify",
	[TLS_DANE] = "dane", [TLS_MTA_STS] = "mta-sts", [TLS_AUTO] = "auto",
};

static const char *const spf_mode_names[] = {
	[SPF_MODE_OFF] = "off", [SPF_MODE_TAG] = "tag", [SPF_MODE_REJECT] = "reject",
};

static const char *const dmarc_mode_names[] = {
	[DMARC_MODE_OFF] = "off", [DMARC_MODE_TAG] = "tag", [DMARC_MODE_ENFORCE] = "enforce",
};

static const char *const outage_mode_names[] = {
	[OUTAGE_TEMPFAIL] = "tempfail", [OUTAGE_ACCEPT] = "accept", [OUTAGE_REJECT] = "reject",
};

static const char *const accept_mode_names[] = {
	[ACCEPT_ALWAYS] = "always", [ACCEPT_WHEN_PRIMARY_DOWN] = "when-primary-down",
};

/* The index of v in names[0..n), or -1 (the caller reports it). */
static int find_choice(const char *const *names, size_t n, const char *v)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v, names[i]) == 0)
			return (int)i;
	return -1;
}

static int set_tls(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	int i = find_choice(tls_mode_names, ARRAY_LEN(tls_mode_names), v);
	if (i < 0)
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, enum tls_mode) = (enum tls_mode)i;
	return 0;
}

static int set_spf(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	int i = find_choice(spf_mode_names, ARRAY_LEN(spf_mode_names), v);
	if (i < 0)
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, enum spf_mode) = (enum spf_mode)i;
	return 0;
}

static int set_dmarc(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	int i = find_choice(dmarc_mode_names, ARRAY_LEN(dmarc_mode_names), v);
	if (i < 0)
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, enum dmarc_mode) = (enum dmarc_mode)i;
	return 0;
}

static int set_outage(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	int i = find_choice(outage_mode_names, ARRAY_LEN(outage_mode_names), v);
	if (i < 0)
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, enum outage_mode) = (enum outage_mode)i;
	return 0;
}

static int set_path(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	if (!*v)
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, char *) = xstrdup(v);
	return 0;
}

/* A UNIX socket's path: absolute, and short enough for sun_path with its NUL. */
static int set_socket_path(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	if (v[0] != '/' || strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, char *) = xstrdup(v);
	return 0;
}

static int set_hostname(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	char *name = xstrdup(v);
	ascii_lower(name, strlen(name));
	if (!is_host_name(name, strlen(name))) {
		free(name);
		return bad_value(ld, k, v, NULL);
	}
	*FIELD(obj, k, char *) = name;
	return 0;
}

static int set_resolver(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	if (!is_resolver(v))
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, char *) = xstrdup(v);
	return 0;
}

static int set_address(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	if (!is_address(v))
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, char *) = xstrdup(v);
	return 0;
}

/*
 * Parses a comma-separated list into an array of items of the given size,
 * all or nothing: every bad item is reported, and then nothing is kept.
 */
static int parse_items(struct cfg_loader *ld, const struct cfg_key *k, const char *v, size_t size,
		       int (*parse)(const char *s, void *item), void (*free_item)(void *item), void **out,
		       size_t *nout)
{
	char **items;
	size_t n = split_list(v, &items), ok = 0;
	char *arr = xcalloc(n ? n : 1, size);
	for (size_t i = 0; i < n; i++) {
		if (parse(items[i], arr + ok * size) == 0)
			ok++;
		else
			bad_value(ld, k, items[i], NULL);
	}
	free_list(items, n);
	if (ok < n) {
		for (size_t i = 0; i < ok; i++)
			free_item(arr + i * size);
		free(arr);
		return -EINVAL;
	}
	*out = arr;
	*nout = n;
	return 0;
}

static int parse_addr_item(const char *s, void *item)
{
	return cfg_parse_addr(s, item);
}

static void free_addr_item(void *item)
{
	free(((struct cfg_addr *)item)->text);
}

static int parse_host_item(const char *s, void *item)
{
	return parse_host(s, item);
}

static void free_host_item(void *item)
{
	free(((struct cfg_host *)item)->host);
}

static int set_listen(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg *c = obj;
	return parse_items(ld, k, v, sizeof(struct cfg_addr), parse_addr_item, free_addr_item, (void **)&c->listen,
			   &c->nlisten);
}

static int set_http_listen(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg *c = obj;
	struct cfg_addr a;
	if (cfg_parse_addr(v, &a) < 0)
		return bad_value(ld, k, v, NULL);
	if (c->http_listen)
		free(c->http_listen->text);
	else
		c->http_listen = xcalloc(1, sizeof(*c->http_listen));
	*c->http_listen = a;
	return 0;
}

static int set_aka(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg *c = obj;
	char **items;
	size_t n = split_list(v, &items);
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		ascii_lower(items[i], strlen(items[i]));
		if (!is_host_name(items[i], strlen(items[i])))
			rc = bad_value(ld, k, items[i], NULL);
	}
	if (rc < 0) {
		free_list(items, n);
		return rc;
	}
	c->also_known_as = items;
	c->naka = n;
	return 0;
}

/* "unix:/absolute/path" or "inet:IP:PORT" (IPv6 in brackets, or inet6:): a milter's address, no DNS. */
static bool is_milter_spec(const char *s)
{
	if (strncmp(s, "unix:/", 6) == 0)
		return strlen(s + 5) < 108; /* sun_path */
	const char *h = strncmp(s, "inet:", 5) == 0 ? s + 5 : strncmp(s, "inet6:", 6) == 0 ? s + 6 : NULL;
	const char *colon = h ? strrchr(h, ':') : NULL;
	uint64_t port;
	char host[INET6_ADDRSTRLEN + 2];
	if (!colon || (size_t)(colon - h) >= sizeof(host) || parse_uint(colon + 1, 1, 65535, &port) < 0)
		return false;
	size_t n = (size_t)(colon - h);
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	memcpy(host, h, n);
	host[n] = '\0';
	unsigned char a[16];
	return inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
}

static int set_milters(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg *c = obj;
	char **items;
	size_t n = split_list(v, &items);
	int rc = n ? 0 : bad_value(ld, k, v, NULL);
	for (size_t i = 0; i < n; i++)
		if (!is_milter_spec(items[i]))
			rc = bad_value(ld, k, items[i], NULL);
	if (rc < 0) {
		free_list(items, n);
		return rc;
	}
	c->milters = items;
	c->nmilters = n;
	return 0;
}

static int set_milter_default(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	bool *accept = (bool *)((char *)obj + k->off);
	if (strcmp(v, "tempfail") == 0 || strcmp(v, "accept") == 0) {
		*accept = v[0] == 'a';
		return 0;
	}
	return bad_value(ld, k, v, NULL);
}

static int set_primary(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg_domain *d = obj;
	return parse_items(ld, k, v, sizeof(struct cfg_host), parse_host_item, free_host_item, (void **)&d->primary,
			   &d->nprimary);
}

/* Appends dir and a slash, unless dir already ends with one ("/"). */
static void append_dir(struct buf *b, const char *dir)
{
	size_t n = strlen(dir);
	buf_append(b, dir, n);
	if (n == 0 || dir[n - 1] != '/')
		buf_append(b, "/", 1);
}

/*
 * Relative names are relative to the config file; the stored path is made
 * absolute so a daemon that changes directory can still reread it. shown
 * gets the name as messages should show it.
 */
static char *config_relative_path(const struct cfg_loader *ld, const char *v, struct buf *shown)
{
	struct buf full = {0};
	char cwd[PATH_MAX];
	if (v[0] != '/' && strcmp(ld->dir, ".") != 0)
		append_dir(shown, ld->dir);
	buf_append_str(shown, v);
	if (buf_cstr(shown)[0] != '/' && getcwd(cwd, sizeof(cwd)))
		append_dir(&full, cwd);
	buf_append_str(&full, buf_cstr(shown));
	char *path = xstrdup(buf_cstr(&full));
	buf_free(&full);
	return path;
}

static int set_recipients(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg_domain *d = obj;
	struct buf shown = {0};
	if (!*v)
		return bad_value(ld, k, v, NULL);
	if (strcmp(v, "*") == 0) {
		d->any_recipient = true; /* cfg.c warns about it */
		return 0;
	}
	/* "callout" alone, or "callout, FILE": the file's addresses are known-good without asking. */
	if (strncmp(v, "callout", 7) == 0 && (v[7] == '\0' || v[7] == ',' || v[7] == ' ' || v[7] == '\t')) {
		const char *rest = cfg_skip_space(v + 7);
		if (*rest && *rest != ',')
			return bad_value(ld, k, v, NULL);
		d->callout = true;
		d->any_recipient = false;
		if (!*rest)
			return 0;
		v = cfg_skip_space(rest + 1);
		if (!*v || strcmp(v, "*") == 0 || strchr(v, ','))
			return bad_value(ld, k, v, "expected callout, FILE: one recipients file, not *");
	}
	d->recipients_path = config_relative_path(ld, v, &shown);
	d->any_recipient = false;
	int errors = cfg_rcpt_load(ld->err, ld->c->path, ld->lineno, d, buf_cstr(&shown));
	ld->nerrors += errors;
	buf_free(&shown);
	return errors ? -EINVAL : 0;
}

/* A trust store: loaded now the way the daemon will load it, so a bad file stops the load. */
static int set_ca_file(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct buf shown = {0};
	if (!*v)
		return bad_value(ld, k, v, NULL);
	char *path = config_relative_path(ld, v, &shown);
	SSL_CTX *ctx = tls_client_context(path);
	int rc = 0;
	if (!ctx) {
		cfg_err(ld, ld->lineno, "%s: cannot load CA certificates from %s (%s)", k->name, buf_cstr(&shown),
			access(path, R_OK) < 0 ? strerror(errno) : "not a PEM certificate file");
		free(path);
		rc = -EINVAL;
	} else {
		tls_context_free(ctx);
		free(*FIELD(obj, k, char *));
		*FIELD(obj, k, char *) = path;
	}
	buf_free(&shown);
	return rc;
}

/* tls_cert and tls_key: PEM files, relative to the config file; "tls_cert = none" turns inbound TLS off.
 * The files themselves are checked once both keys are known (cfg.c). */
static int set_tls_file(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg *c = obj;
	struct buf shown = {0};
	if (!*v)
		return bad_value(ld, k, v, NULL);
	if (k->off == offsetof(struct cfg, tls_cert) && strcmp(v, "none") == 0) {
		c->tls_inbound_off = true;
		return 0;
	}
	*FIELD(obj, k, char *) = config_relative_path(ld, v, &shown);
	buf_free(&shown);
	return 0;
}

/* A user name as useradd(8) takes it: letters, digits, '_', '-', '.', not leading '-'. */
static int set_user(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 32 || v[0] == '-')
		return bad_value(ld, k, v, NULL);
	for (size_t i = 0; i < n; i++)
		if (!is_label_char(v[i]) && v[i] != '_' && v[i] != '.')
			return bad_value(ld, k, v, NULL);
	if (strcmp(v, "root") == 0)
		return bad_value(ld, k, v, "mxvault drops root after binding its ports: name an unprivileged user");
	free(*FIELD(obj, k, char *));
	*FIELD(obj, k, char *) = xstrdup(v);
	return 0;
}

/* --- the abuse defences at connect (connspec.h) -------------------------- */

static int parse_dnsbl_item(const char *s, void *item)
{
	return connspec_parse_dnsbl(s, item);
}

static int parse_zone_item(const char *s, void *item)
{
	return connspec_parse_zone(s, item);
}

static int parse_cidr_item(const char *s, void *item)
{
	return connspec_parse_cidr(s, item);
}

static void free_plain_item(void *item)
{
	(void)item; /* the items own nothing */
}

/* An empty value is an empty list: "dnsbl =" turns the lookups off, "rate_limit_exceptions =" limits everyone. */
static bool is_empty_list(const char *v)
{
	return *cfg_skip_space(v) == '\0';
}

static int set_dnsbl(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg *c = obj;
	if (is_empty_list(v))
		return 0;
	return parse_items(ld, k, v, sizeof(struct connspec_dnsbl), parse_dnsbl_item, free_plain_item,
			   (void **)&c->dnsbl, &c->ndnsbl);
}

static int set_dnswl(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg *c = obj;
	if (is_empty_list(v))
		return 0;
	return parse_items(ld, k, v, sizeof(*c->dnswl), parse_zone_item, free_plain_item, (void **)&c->dnswl,
			   &c->ndnswl);
}

static int set_cidrs(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	struct cfg *c = obj;
	struct connspec_cidr *list = NULL;
	size_t n = 0;
	if (!is_empty_list(v) && parse_items(ld, k, v, sizeof(*list), parse_cidr_item, free_plain_item,
					     (void **)&list, &n) < 0)
		return -EINVAL;
	free(c->rate_limit_exceptions); /* the default */
	c->rate_limit_exceptions = list;
	c->nrate_limit_exceptions = n;
	return 0;
}

static int set_rate(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	return connspec_parse_rate(v, FIELD(obj, k, struct connspec_rate)) == 0 ? 0 : bad_value(ld, k, v, NULL);
}

static int set_i32(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	char hint[80];
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (*v && !*end && errno == 0 && n >= k->min && n <= k->max) {
		*FIELD(obj, k, int32_t) = (int32_t)n;
		return 0;
	}
	if (fmt(hint, sizeof(hint), "expected a whole number from %lld to %lld", (long long)k->min,
		(long long)k->max) < 0)
		hint[0] = '\0';
	return bad_value(ld, k, v, hint);
}

/* --- printers, the inverse of the setters ------------------------------ */

static void print_unset(FILE *out, const struct cfg_key *k)
{
	fprintf(out, "# %s is not set\n", k->name);
}

static void print_str(FILE *out, const void *obj, const struct cfg_key *k)
{
	const char *s = *CFIELD(obj, k, char *);
	if (s)
		fprintf(out, "%s = %s\n", k->name, s);
	else
		print_unset(out, k);
}

static void print_tls_cert(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg *c = obj;
	if (c->tls_inbound_off)
		fprintf(out, "%s = none\n", k->name);
	else if (c->tls_cert)
		fprintf(out, "%s = %s\n", k->name, c->tls_cert);
	else
		fprintf(out, "# %s is not set: a self-signed certificate in the spool\n", k->name);
}

static void print_recipients(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg_domain *d = obj;
	if (d->callout)
		fprintf(out, "%s = callout%s%s\n", k->name, d->recipients_path ? ", " : "",
			d->recipients_path ? d->recipients_path : "");
	else
		fprintf(out, "%s = %s\n", k->name, d->recipients_path ? d->recipients_path : "*");
}

static void print_u32(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %u\n", k->name, (unsigned)*CFIELD(obj, k, uint32_t));
}

static void print_u16(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %u\n", k->name, (unsigned)*CFIELD(obj, k, uint16_t));
}

static void print_percent(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %u%%\n", k->name, (unsigned)*CFIELD(obj, k, uint32_t));
}

static void print_size(FILE *out, const void *obj, const struct cfg_key *k)
{
	char buf[32];
	fprintf(out, "%s = %s\n", k->name, fmt_size(buf, sizeof(buf), *CFIELD(obj, k, uint64_t)));
}

static void print_duration(FILE *out, const void *obj, const struct cfg_key *k)
{
	char buf[32];
	fprintf(out, "%s = %s\n", k->name, cfg_fmt_duration(buf, sizeof(buf), *CFIELD(obj, k, int64_t)));
}

static void print_bool(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %s\n", k->name, *CFIELD(obj, k, bool) ? "yes" : "no");
}

static int set_accept(struct cfg_loader *ld, void *obj, const struct cfg_key *k, const char *v)
{
	int i = find_choice(accept_mode_names, ARRAY_LEN(accept_mode_names), v);
	if (i < 0)
		return bad_value(ld, k, v, NULL);
	*FIELD(obj, k, enum accept_mode) = (enum accept_mode)i;
	return 0;
}

static void print_accept(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %s\n", k->name, accept_mode_names[*CFIELD(obj, k, enum accept_mode)]);
}

static void print_tls(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %s\n", k->name, tls_mode_names[*CFIELD(obj, k, enum tls_mode)]);
}

static void print_spf(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %s\n", k->name, spf_mode_names[*CFIELD(obj, k, enum spf_mode)]);
}

static void print_dmarc(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %s\n", k->name, dmarc_mode_names[*CFIELD(obj, k, enum dmarc_mode)]);
}

static void print_outage(FILE *out, const void *obj, const struct cfg_key *k)
{
	if (!((const struct cfg_domain *)obj)->callout) {
		fprintf(out, "# %s: only with recipients = callout\n", k->name);
		return;
	}
	fprintf(out, "%s = %s\n", k->name, outage_mode_names[*CFIELD(obj, k, enum outage_mode)]);
}

/* Lists are printed with bare commas: the output must fit the same 199
 * characters per line that the input did. */
static void print_http_listen(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg *c = obj;
	if (c->http_listen)
		fprintf(out, "%s = %s\n", k->name, c->http_listen->text);
	else
		print_unset(out, k);
}

static void print_listen(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg *c = obj;
	fprintf(out, "%s = ", k->name);
	for (size_t i = 0; i < c->nlisten; i++)
		fprintf(out, "%s%s", i ? "," : "", c->listen[i].text);
	fputc('\n', out);
}

static void print_aka(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg *c = obj;
	if (!c->naka) {
		print_unset(out, k);
		return;
	}
	fprintf(out, "%s = ", k->name);
	for (size_t i = 0; i < c->naka; i++)
		fprintf(out, "%s%s", i ? "," : "", c->also_known_as[i]);
	fputc('\n', out);
}

static void print_milters(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg *c = obj;
	if (!c->nmilters) {
		print_unset(out, k);
		return;
	}
	fprintf(out, "%s = ", k->name);
	for (size_t i = 0; i < c->nmilters; i++)
		fprintf(out, "%s%s", i ? "," : "", c->milters[i]);
	fputc('\n', out);
}

static void print_milter_default(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %s\n", k->name, *(const bool *)((const char *)obj + k->off) ? "accept" : "tempfail");
}

static void print_primary(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg_domain *d = obj;
	if (!d->nprimary) {
		print_unset(out, k);
		return;
	}
	fprintf(out, "%s = ", k->name);
	for (size_t i = 0; i < d->nprimary; i++) {
		const struct cfg_host *h = &d->primary[i];
		bool v6 = strchr(h->host, ':') != NULL;
		fputs(i ? "," : "", out);
		if (h->port)
			fprintf(out, v6 ? "[%s]:%u" : "%s:%u", h->host, (unsigned)h->port);
		else
			fputs(h->host, out);
	}
	fputc('\n', out);
}

/* A list of strings held in an array (the n strings start stride bytes apart). */
static void print_texts(FILE *out, const struct cfg_key *k, const char *first, size_t n, size_t stride)
{
	fprintf(out, "%s = ", k->name);
	for (size_t i = 0; i < n; i++)
		fprintf(out, "%s%s", i ? "," : "", first + i * stride);
	fputc('\n', out);
}

static void print_dnsbl(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg *c = obj;
	print_texts(out, k, c->ndnsbl ? c->dnsbl[0].text : "", c->ndnsbl, sizeof(*c->dnsbl));
}

static void print_dnswl(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg *c = obj;
	print_texts(out, k, c->ndnswl ? c->dnswl[0] : "", c->ndnswl, sizeof(*c->dnswl));
}

static void print_cidrs(FILE *out, const void *obj, const struct cfg_key *k)
{
	const struct cfg *c = obj;
	char buf[INET6_ADDRSTRLEN + 8];
	fprintf(out, "%s = ", k->name);
	for (size_t i = 0; i < c->nrate_limit_exceptions; i++)
		fprintf(out, "%s%s", i ? "," : "", connspec_fmt_cidr(buf, sizeof(buf), &c->rate_limit_exceptions[i]));
	fputc('\n', out);
}

static void print_rate(FILE *out, const void *obj, const struct cfg_key *k)
{
	char buf[32];
	fprintf(out, "%s = %s\n", k->name, connspec_fmt_rate(buf, sizeof(buf), CFIELD(obj, k, struct connspec_rate)));
}

static void print_i32(FILE *out, const void *obj, const struct cfg_key *k)
{
	fprintf(out, "%s = %d\n", k->name, (int)*CFIELD(obj, k, int32_t));
}

/* --- key tables: the single list of what may be configured ------------- */

#define SRV(f) offsetof(struct cfg, f)
#define DOM(f) offsetof(struct cfg_domain, f)
#define NUMBER NULL /* set_uint builds "expected a whole number from MIN to MAX" */
#define SIZE_HINT "expected a size like 512K or 50M"
#define DURATION_HINT "expected a duration like 30s, 15m, 4h or 5d"

const struct cfg_key cfg_server_keys[] = {
	{"hostname", set_hostname, print_str, SRV(hostname), 0, 0, "expected a domain name like mx.example.com"},
	{"listen", set_listen, print_listen, 0, 0, 0, "expected ADDR:PORT, like 127.0.0.1:25 or [::1]:25"},
	{"spool", set_path, print_str, SRV(spool), 0, 0, "expected a directory"},
	{"control_socket", set_socket_path, print_str, SRV(control_socket), 0, 0, "expected an absolute path of at most 107 bytes"},
	{"http_listen", set_http_listen, print_http_listen, 0, 0, 0, "expected ADDR:PORT, like 127.0.0.1:9325"},
	{"max_message_size", set_size, print_size, SRV(max_message_size), 1024, 0, SIZE_HINT},
	{"resolver", set_resolver, print_str, SRV(resolver), 0, 0,
	 "expected IP or IP:PORT, like 127.0.0.1:53 or [::1]:53"},
	{"mx_port", set_u16, print_u16, SRV(mx_port), 1, 65535, NUMBER},
	{"postmaster", set_address, print_str, SRV(postmaster), 0, 0,
	 "expected an address like postmaster@example.com"},
	{"max_recipients", set_u32, print_u32, SRV(max_recipients), 1, CFG_MAX_RECIPIENTS, NUMBER},
	{"max_sessions", set_u32, print_u32, SRV(max_sessions), 1, 1000000, NUMBER},
	{"max_sessions_per_ip", set_u32, print_u32, SRV(max_sessions_per_ip), 1, 1000000, NUMBER},
	{"max_errors", set_u32, print_u32, SRV(max_errors), 1, 1000, NUMBER},
	{"command_timeout", set_duration, print_duration, SRV(command_timeout), 1, 0, DURATION_HINT},
	{"data_timeout", set_duration, print_duration, SRV(data_timeout), 1, 0, DURATION_HINT},
	{"reject_bare_lf", set_bool, print_bool, SRV(reject_bare_lf), 0, 0, "expected yes or no"},
	{"min_free_space", set_size, print_size, SRV(min_free_space), 0, 0, SIZE_HINT},
	{"also_known_as", set_aka, print_aka, 0, 0, 0, "expected host names separated by commas"},
	{"probe_interval", set_duration, print_duration, SRV(probe_interval), 1, 0, DURATION_HINT},
	{"retry_min", set_duration, print_duration, SRV(retry_min), 1, 0, DURATION_HINT},
	{"retry_max", set_duration, print_duration, SRV(retry_max), 1, 0, DURATION_HINT},
	{"max_hops", set_u32, print_u32, SRV(max_hops), 1, 1000, NUMBER},
	{"dedup_window", set_duration, print_duration, SRV(dedup_window), 0, 0, DURATION_HINT},
	{"bounce_guard", set_percent, print_percent, SRV(bounce_guard), 0, 100,
	 "expected a percentage from 0 to 100, like 50%"},
	{"bounce_guard_hold", set_duration, print_duration, SRV(bounce_guard_hold), 1, 0, DURATION_HINT},
	{"max_connections_per_destination", set_u32, print_u32, SRV(max_connections_per_destination), 1, 1000,
	 NUMBER},
	{"user", set_user, print_str, SRV(user), 0, 0, "expected a user name like mxvault"},
	{"pid_file", set_path, print_str, SRV(pid_file), 0, 0, "expected a file name like /run/mxvault/mxvault.pid"},
	{"max_session_time", set_duration, print_duration, SRV(max_session_time), 1, 0, DURATION_HINT},
	{"min_data_rate", set_size, print_size, SRV(min_data_rate), 0, 0,
	 "expected bytes per second like 500 or 2K (0 = off)"},
	{"max_pending_bytes", set_size, print_size, SRV(max_pending_bytes), 65536, 0, SIZE_HINT},
	{"max_outbound_connections", set_u32, print_u32, SRV(max_outbound_connections), 1, 100000, NUMBER},
	{"delivery_connect_timeout", set_duration, print_duration, SRV(delivery_connect_timeout), 1, 0,
	 DURATION_HINT},
	{"delivery_reply_timeout", set_duration, print_duration, SRV(delivery_reply_timeout), 1, 0, DURATION_HINT},
	{"delivery_final_reply_timeout", set_duration, print_duration, SRV(delivery_final_reply_timeout), 1, 0,
	 DURATION_HINT},
	{"tls_ca_file", set_ca_file, print_str, SRV(tls_ca_file), 0, 0, "expected a file of PEM certificates"},
	{"tls_cert", set_tls_file, print_tls_cert, SRV(tls_cert), 0, 0,
	 "expected a PEM certificate file (the chain after it), or none"},
	{"tls_key", set_tls_file, print_str, SRV(tls_key), 0, 0, "expected a PEM private key file"},
	/* RFC 8601 2.5: the authserv-id should be a domain name under our control; the host name is one. */
	{"greylist_delay", set_duration, print_duration, SRV(greylist_delay), 1, 43200, DURATION_HINT},
	{"auth_timeout", set_duration, print_duration, SRV(auth_timeout), 1, 3600, DURATION_HINT},
	{"authserv_id", set_hostname, print_str, SRV(authserv_id), 0, 0, "expected a domain name like mx.example.com"},
	{"callout_timeout", set_duration, print_duration, SRV(callout_timeout), 1, 600, DURATION_HINT},
	{"callout_cache", set_duration, print_duration, SRV(callout_cache), 60, 0, DURATION_HINT},
	{"milter", set_milters, print_milters, 0, 0, 0, "expected inet:IP:PORT or unix:/PATH, separated by commas"},
	{"milter_default_action", set_milter_default, print_milter_default, SRV(milter_default_accept), 0, 0,
	 "expected tempfail or accept"},
	{"milter_connect_timeout", set_duration, print_duration, SRV(milter_connect_timeout), 1, 3600, DURATION_HINT},
	{"milter_command_timeout", set_duration, print_duration, SRV(milter_command_timeout), 1, 3600, DURATION_HINT},
	{"milter_content_timeout", set_duration, print_duration, SRV(milter_content_timeout), 1, 3600, DURATION_HINT},
	/* Abuse defences at connect (issue 9). */
	{"dnsbl", set_dnsbl, print_dnsbl, 0, 0, 0,
	 "expected ZONE[=CODES][*WEIGHT], like zen.example.org=127.0.0.[2..11]*2"},
	{"dnswl", set_dnswl, print_dnswl, 0, 0, 0, "expected zone names separated by commas"},
	{"dnsbl_threshold", set_i32, print_i32, SRV(dnsbl_threshold), 1, 100000, NUMBER},
	{"greet_pause", set_duration, print_duration, SRV(greet_pause), 0, 60, DURATION_HINT},
	{"max_connection_rate", set_rate, print_rate, SRV(max_connection_rate), 0, 0,
	 "expected N/s, N/m or N/h, like 60/m, or 0 for no limit"},
	{"max_message_rate", set_rate, print_rate, SRV(max_message_rate), 0, 0,
	 "expected N/s, N/m or N/h, like 600/h, or 0 for no limit"},
	{"rate_limit_exceptions", set_cidrs, print_cidrs, 0, 0, 0,
	 "expected addresses or CIDR blocks, like 127.0.0.0/8, ::1"},
	/* Alerts without mail (issue 10). */
	{"notify_command", set_path, print_str, SRV(notify_command), 0, 0, "expected a shell command"},
	{"notify_timeout", set_duration, print_duration, SRV(notify_timeout), 1, 3600, DURATION_HINT},
	{"alert_age", set_duration, print_duration, SRV(alert_age), 1, 0, DURATION_HINT},
	{"alert_spool_size", set_size, print_size, SRV(alert_spool_size), 0, 0, SIZE_HINT " (0 = off)"},
};

const struct cfg_key cfg_domain_keys[] = {
	{"recipients", set_recipients, print_recipients, 0, 0, 0, "expected a file name, callout, callout, FILE or *"},
	{"primary", set_primary, print_primary, 0, 0, 0,
	 "expected HOST or HOST:PORT, like mx1.example.com:25 or [2001:db8::1]:25"},
	{"retention", set_duration, print_duration, DOM(retention), 60, 0, DURATION_HINT},
	{"warn_after", set_duration, print_duration, DOM(warn_after), 0, 0, DURATION_HINT},
	{"tls", set_tls, print_tls, DOM(tls), 0, 0, "expected auto, may, encrypt, verify, dane or mta-sts"},
	{"require_tls", set_bool, print_bool, DOM(require_tls), 0, 0, "expected yes or no"},
	{"spf", set_spf, print_spf, DOM(spf), 0, 0, "expected off, tag or reject"},
	{"dmarc", set_dmarc, print_dmarc, DOM(dmarc), 0, 0, "expected off, tag or enforce"},
	{"unknown_during_outage", set_outage, print_outage, DOM(unknown_during_outage), 0, 0,
	 "expected tempfail, accept or reject"},
	{"accept", set_accept, print_accept, DOM(accept), 0, 0, "expected always or when-primary-down"},
	{"greylist", set_bool, print_bool, DOM(greylist), 0, 0, "expected on or off"},
};

const size_t cfg_nserver_keys = ARRAY_LEN(cfg_server_keys);
const size_t cfg_ndomain_keys = ARRAY_LEN(cfg_domain_keys);
_Static_assert(ARRAY_LEN(cfg_server_keys) <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");
_Static_assert(ARRAY_LEN(cfg_domain_keys) <= CFG_MAX_KEYS, "raise CFG_MAX_KEYS");

const struct cfg_key *cfg_find_key(const struct cfg_key *tab, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(tab[i].name, name) == 0)
			return &tab[i];
	return NULL;
}

void cfg_key_each(cfg_key_fn *fn, void *arg)
{
	for (size_t i = 0; i < cfg_nserver_keys; i++)
		fn("server", cfg_server_keys[i].name, arg);
	for (size_t i = 0; i < cfg_ndomain_keys; i++)
		fn("domain", cfg_domain_keys[i].name, arg);
}
