/*
 * cfg: loads and checks the INI configuration; see cfg.h for the contract.
 * Called once by main at startup; the result is read-only afterwards. The
 * keys themselves live in cfg_keys.c, recipients files in cfg_rcpt.c.
 *
 * inih splits "key = value" lines and strips comments; the rest is ours.
 * Debian's inih neither passes line numbers to the handler nor reports more
 * than the first syntax error, and it never tells the handler about a
 * section without keys (an empty [domain example.org] is normal). So
 * cfg_reader, the line reader we hand to inih, counts lines, rejects lines
 * too long for inih's buffer and malformed lines (passing an empty line on
 * instead), and opens sections itself. It also strips leading whitespace:
 * inih would read an indented line as a continuation of the previous value,
 * so "  listen = ..." under "hostname = ..." would silently become part of
 * the host name. The handler then only sees key lines of known sections.
 *
 * Error policy: every problem is printed as "FILE:LINE: message" and loading
 * goes on, so one run shows them all; then the load fails with -EINVAL and
 * frees everything. A key whose value is bad keeps its default and is marked
 * failed so the cross-checks after parsing do not pile on.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfg_int.h"
#include "tls.h"

#define DEFAULT_LISTEN "0.0.0.0:25"

void cfg_report(FILE *err, const char *file, int line, const char *f, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, f);
	vsnprintf(msg, sizeof(msg), f, ap);
	va_end(ap);
	fprintf(err, "%s:%d: %s\n", file, line, msg);
}

/* Line of a [server] key (0 = default), or -1 if its value was bad. */
static int server_key_line(const struct cfg_loader *ld, const char *name)
{
	const struct cfg_key *k = cfg_find_key(cfg_server_keys, cfg_nserver_keys, name);
	int line = ld->server_lines[k - cfg_server_keys];
	return line < 0 ? -1 : line;
}

/* --- sections ---------------------------------------------------------- */

static void set_defaults(struct cfg *c)
{
	c->max_message_size = 50u << 20;
	c->mx_port = 25;
	c->max_recipients = 100;
	c->max_sessions = 1000;
	c->max_sessions_per_ip = 50;
	c->max_errors = 10;
	c->command_timeout = 5 * 60;
	c->auth_timeout = 20;
	c->milter_connect_timeout = 30;
	c->milter_command_timeout = 30;
	c->milter_content_timeout = 300;
	c->greylist_delay = 5 * 60;
	c->data_timeout = 10 * 60;
	c->reject_bare_lf = true;
	c->min_free_space = 100u << 20;
	c->notify_timeout = 60;
	c->alert_age = 3600;
	c->probe_interval = 15;
	c->retry_min = 60;
	c->retry_max = 30 * 60;
	c->max_hops = 100;
	c->dedup_window = 24 * 3600;
	c->bounce_guard = 50;
	c->bounce_guard_hold = 3600;
	c->max_connections_per_destination = 4;
	c->user = xstrdup("mxvault");
	c->max_session_time = 30 * 60;
	c->min_data_rate = 500;
	c->dnsbl_threshold = 1;
	c->max_connection_rate = (struct connspec_rate){60, 60};
	c->max_message_rate = (struct connspec_rate){600, 3600};
	/* Like Postfix's smtpd_client_event_limit_exceptions = $mynetworks: the host itself is not limited. */
	c->nrate_limit_exceptions = 2;
	c->rate_limit_exceptions = xcalloc(2, sizeof(*c->rate_limit_exceptions));
	if (connspec_parse_cidr("127.0.0.0/8", &c->rate_limit_exceptions[0]) < 0 ||
	    connspec_parse_cidr("::1", &c->rate_limit_exceptions[1]) < 0)
		abort(); /* constants */
	c->max_pending_bytes = 64u << 20;
	c->max_outbound_connections = 100;
	c->delivery_connect_timeout = 30;
	c->delivery_reply_timeout = 5 * 60;
	c->delivery_final_reply_timeout = 10 * 60;
	c->callout_timeout = 10;
	c->callout_cache = 30 * 86400;
}

static void add_domain(struct cfg_loader *ld, const char *name, size_t n)
{
	struct cfg *c = ld->c;
	if (c->ndomains == ld->domcap) {
		ld->domcap = ld->domcap ? ld->domcap * 2 : 4;
		c->domains = xrealloc(c->domains, ld->domcap * sizeof(*c->domains));
		ld->domain_lines = xrealloc(ld->domain_lines, ld->domcap * sizeof(*ld->domain_lines));
	}
	struct cfg_domain *d = &c->domains[c->ndomains];
	*d = (struct cfg_domain){
		.name = xstrndup(name, n), .line = ld->lineno,
		.retention = 5 * 86400, .warn_after = 4 * 3600, .tls = TLS_AUTO,
		.spf = SPF_MODE_TAG, .dmarc = DMARC_MODE_TAG,
	};
	memset(ld->domain_lines[c->ndomains], 0, sizeof(ld->domain_lines[0]));
	/* The index holds position + 1 while the array may still move; cfg_load
	 * swaps in the final pointers once parsing is done. */
	htab_put_str(&c->domain_index, d->name, n, (void *)(uintptr_t)(c->ndomains + 1));
	ld->dom = c->ndomains++;
	ld->sect = CFG_SECT_DOMAIN;
}

static void open_domain(struct cfg_loader *ld, const char *name)
{
	char buf[256];
	size_t n = strlen(name);
	if (n && name[n - 1] == '.')
		n--;
	ld->sect = CFG_SECT_SKIP;
	if (n == 0) {
		cfg_err(ld, ld->lineno, "[domain] needs a domain name, like [domain example.com]");
		return;
	}
	if (n >= sizeof(buf) || !is_host_name(name, n)) {
		cfg_err(ld, ld->lineno, "bad domain name '%s' in section header", name);
		return;
	}
	memcpy(buf, name, n);
	buf[n] = '\0';
	ascii_lower(buf, n);
	uintptr_t prev = (uintptr_t)htab_get_str(&ld->c->domain_index, buf, n);
	if (prev) {
		cfg_err(ld, ld->lineno, "duplicate section [domain %s] (first at line %d)", buf,
			ld->c->domains[prev - 1].line);
		return;
	}
	add_domain(ld, buf, n);
}

static void open_section(struct cfg_loader *ld, const char *name)
{
	if (strcmp(name, "server") == 0) {
		if (ld->server_line) {
			cfg_err(ld, ld->lineno, "duplicate section [server] (first at line %d)", ld->server_line);
			ld->sect = CFG_SECT_SKIP;
			return;
		}
		ld->server_line = ld->lineno;
		ld->sect = CFG_SECT_SERVER;
	} else if (strncmp(name, "domain", 6) == 0 && (name[6] == '\0' || name[6] == ' ' || name[6] == '\t')) {
		open_domain(ld, cfg_skip_space(name + 6));
	} else {
		cfg_err(ld, ld->lineno, "unknown section [%s]", name);
		ld->sect = CFG_SECT_SKIP;
	}
}

/* inih's rule for where a token ends: at one of chars, or at an inline ';'
 * comment (a ';' after whitespace). Mirrored so that we agree with it. */
static const char *find_sep(const char *s, const char *chars)
{
	bool was_space = false;
	while (*s && !strchr(chars, *s) && !(was_space && *s == ';')) {
		was_space = *s == ' ' || *s == '\t';
		s++;
	}
	return s;
}

static int parse_section_header(struct cfg_loader *ld, const char *s)
{
	const char *end = find_sep(s + 1, "]");
	ld->sect = CFG_SECT_SKIP;
	if (*end != ']') {
		cfg_err(ld, ld->lineno, "section header without a closing ']'");
		return -EINVAL;
	}
	const char *rest = cfg_skip_space(end + 1);
	if (*rest && *rest != ';' && *rest != '#') {
		cfg_err(ld, ld->lineno, "unexpected text after section header: '%s'", rest);
		return -EINVAL;
	}
	const char *start = cfg_skip_space(s + 1);
	while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	char *name = xstrndup(start, (size_t)(end - start));
	open_section(ld, name);
	free(name);
	return 0;
}

/* 0 if inih may see the line. s has no leading whitespace. */
static int check_line(struct cfg_loader *ld, const char *s)
{
	if (*s == '\0' || *s == ';' || *s == '#')
		return 0;
	if (*s == '[')
		return parse_section_header(ld, s);
	if (!*find_sep(s, "=:")) {
		cfg_err(ld, ld->lineno, "expected 'key = value', '[section]' or a comment");
		return -EINVAL;
	}
	return 0;
}

/* fgets-like, for ini_parse_stream: see the file comment for why. */
static char *cfg_reader(char *str, int num, void *stream)
{
	struct cfg_loader *ld = stream;
	errno = 0;
	ssize_t got = getline(&ld->line, &ld->linecap, ld->in);
	if (got < 0) {
		if (ferror(ld->in)) {
			cfg_err(ld, ld->lineno + 1, "cannot read: %s", strerror(errno ? errno : EIO));
			ld->read_failed = true;
		}
		return NULL;
	}
	ld->lineno++;
	size_t n = (size_t)got;
	char *s = ld->line;
	if (n && s[n - 1] == '\n')
		s[--n] = '\0';
	if (n && s[n - 1] == '\r')
		s[--n] = '\0';
	if (ld->lineno == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
		s += 3;
		n -= 3;
	}
	str[0] = '\0';
	if (num < 2 || n > (size_t)num - 1)
		cfg_err(ld, ld->lineno, "line too long (max %d characters)", num - 1);
	else if (memchr(s, '\0', n))
		cfg_err(ld, ld->lineno, "NUL byte in line");
	else if (check_line(ld, s = cfg_skip_space(s)) == 0)
		memcpy(str, s, strlen(s) + 1);
	return str;
}

struct section_view {
	const struct cfg_key *tab;
	size_t n;
	void *obj;
	int *lines;
	char label[300];
};

static void set_key(struct cfg_loader *ld, struct section_view *sv, const char *name, const char *value)
{
	const struct cfg_key *k = cfg_find_key(sv->tab, sv->n, name);
	if (!k) {
		cfg_err(ld, ld->lineno, "unknown key '%s' in %s", name, sv->label);
		return;
	}
	int *line = &sv->lines[k - sv->tab];
	if (*line) {
		cfg_err(ld, ld->lineno, "duplicate key '%s' in %s (first at line %d)", name, sv->label, abs(*line));
		return;
	}
	*line = k->set(ld, sv->obj, k, value) == 0 ? ld->lineno : -ld->lineno;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_loader *ld = user;
	struct section_view sv = {0};
	(void)section; /* inih's idea of the section; ours is ld->sect */
	if (ld->sect == CFG_SECT_SERVER) {
		sv = (struct section_view){cfg_server_keys, cfg_nserver_keys, ld->c, ld->server_lines, "[server]"};
	} else if (ld->sect == CFG_SECT_DOMAIN) {
		struct cfg_domain *d = &ld->c->domains[ld->dom];
		sv = (struct section_view){cfg_domain_keys, cfg_ndomain_keys, d, ld->domain_lines[ld->dom], ""};
		if (fmt(sv.label, sizeof(sv.label), "[domain %s]", d->name) < 0)
			sv.label[0] = '\0';
	} else if (ld->sect == CFG_SECT_NONE) {
		cfg_err(ld, ld->lineno, "key '%s' before any section (start with [server] or [domain NAME])", name);
		return 1;
	} else {
		return 1; /* a section already reported as bad */
	}
	set_key(ld, &sv, name, value);
	return 1; /* errors are ours to report; inih would only keep the first */
}

/* --- checks after parsing ---------------------------------------------- */

static int first_line(int a, int b)
{
	return a > 0 ? a : b > 0 ? b : 1;
}

static void default_hostname(struct cfg_loader *ld)
{
	char name[256];
	if (gethostname(name, sizeof(name)) < 0) {
		cfg_err(ld, first_line(ld->server_line, 0), "hostname is not set and gethostname failed: %s",
			strerror(errno));
		return;
	}
	name[sizeof(name) - 1] = '\0';
	ascii_lower(name, strlen(name));
	if (!is_host_name(name, strlen(name))) {
		cfg_err(ld, first_line(ld->server_line, 0),
			"hostname is not set and the system's name '%s' is not a domain name; set hostname in [server]",
			name);
		return;
	}
	ld->c->hostname = xstrdup(name);
}

/* SPOOL/control, unless that is too long for a UNIX socket's path. */
static void default_control_socket(struct cfg_loader *ld)
{
	struct buf b = {0};
	buf_printf(&b, "%s/control", ld->c->spool);
	if (b.len >= sizeof(((struct sockaddr_un *)0)->sun_path))
		cfg_err(ld, first_line(server_key_line(ld, "spool"), ld->server_line),
			"the control socket %s would be longer than 107 bytes; set control_socket", buf_cstr(&b));
	ld->c->control_socket = xstrdup(buf_cstr(&b));
	buf_free(&b);
}

static void fill_defaults(struct cfg_loader *ld)
{
	struct cfg *c = ld->c;
	if (!c->hostname && server_key_line(ld, "hostname") == 0)
		default_hostname(ld);
	if (!c->authserv_id && c->hostname && server_key_line(ld, "authserv_id") == 0)
		c->authserv_id = xstrdup(c->hostname);
	if (!c->listen) {
		c->listen = xcalloc(1, sizeof(*c->listen));
		c->nlisten = 1;
		if (cfg_parse_addr(DEFAULT_LISTEN, &c->listen[0]) < 0)
			abort(); /* our own constant */
	}
	if (!c->spool)
		c->spool = xstrdup(CFG_DEFAULT_SPOOL);
	if (!c->control_socket)
		default_control_socket(ld);
	if (!c->postmaster && c->ndomains) {
		struct buf b = {0};
		buf_printf(&b, "postmaster@%s", c->domains[0].name);
		c->postmaster = xstrdup(buf_cstr(&b));
		buf_free(&b);
	}
}

static void check_retry(struct cfg_loader *ld)
{
	const struct cfg *c = ld->c;
	int min_line = server_key_line(ld, "retry_min"), max_line = server_key_line(ld, "retry_max");
	char a[32], b[32];
	if (min_line < 0 || max_line < 0 || c->retry_max >= c->retry_min)
		return;
	cfg_err(ld, first_line(max_line, min_line), "retry_max (%s) is shorter than retry_min (%s)",
		cfg_fmt_duration(a, sizeof(a), c->retry_max), cfg_fmt_duration(b, sizeof(b), c->retry_min));
}

/*
 * The greeting must be complete before a silent client times out: a 421
 * cannot end a reply that began 220- (RFC 5321 4.2.1), and every client
 * would be dropped before it was greeted.
 */
static void check_greet_pause(struct cfg_loader *ld)
{
	const struct cfg *c = ld->c;
	int pause_line = server_key_line(ld, "greet_pause"), timeout_line = server_key_line(ld, "command_timeout");
	char a[32], b[32];
	if (pause_line < 0 || timeout_line < 0 || c->greet_pause < c->command_timeout)
		return;
	cfg_err(ld, first_line(pause_line, timeout_line), "greet_pause (%s) is not shorter than command_timeout (%s)",
		cfg_fmt_duration(a, sizeof(a), c->greet_pause), cfg_fmt_duration(b, sizeof(b), c->command_timeout));
}

static void cfg_warn(struct cfg_loader *ld, int line, const char *f, ...) PRINTF_LIKE(3, 4);
static void cfg_warn(struct cfg_loader *ld, int line, const char *f, ...)
{
	char msg[1024];
	va_list ap;
	if (!(ld->flags & CFG_LOAD_WARN))
		return;
	va_start(ap, f);
	vsnprintf(msg, sizeof(msg), f, ap);
	va_end(ap);
	buf_printf(&ld->warnings, "%s:%d: warning: %s\n", ld->c->path, line, msg);
}

/* Line of a [domain] key (0 = not set), or -1 if its value was bad. */
static int domain_key_line(const struct cfg_loader *ld, size_t dom, const char *name)
{
	const struct cfg_key *k = cfg_find_key(cfg_domain_keys, cfg_ndomain_keys, name);
	int line = ld->domain_lines[dom][k - cfg_domain_keys];
	return line < 0 ? -1 : line;
}

/*
 * No backscatter by default: accepting every local part means that each
 * address the primary later refuses becomes a bounce to a sender that may
 * be forged. So the choice must be written down, and it is warned about.
 */
static void check_recipients(struct cfg_loader *ld)
{
	for (size_t i = 0; i < ld->c->ndomains; i++) {
		const struct cfg_domain *d = &ld->c->domains[i];
		int line = domain_key_line(ld, i, "recipients");
		if (line == 0)
			cfg_err(ld, d->line, "[domain %s] needs recipients = FILE or recipients = *", d->name);
		int outage = domain_key_line(ld, i, "unknown_during_outage");
		if (outage > 0 && !d->callout)
			cfg_err(ld, outage, "[domain %s] unknown_during_outage needs recipients = callout", d->name);
		else if (line > 0 && d->any_recipient)
			cfg_warn(ld, line,
				 "[domain %s] accepts every address (recipients = *): mail for unknown recipients "
				 "is accepted and bounced later, when the primary refuses it",
				 d->name);
	}
}

/* The status page shows addresses and queue contents, with no password: say so when others can reach it. */
static void check_http_listen(struct cfg_loader *ld)
{
	const struct cfg_addr *a = ld->c->http_listen;
	int line = server_key_line(ld, "http_listen");
	if (!a || line <= 0)
		return;
	const struct sockaddr_storage *ss = &a->ss;
	bool loopback = ss->ss_family == AF_INET
				? (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127
				: IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
	if (!loopback)
		cfg_warn(ld, line,
			 "http_listen %s is not a loopback address: the status page and /metrics show domains, "
			 "addresses and queue contents to whoever can connect, without a password",
			 a->text);
}

/* As root, the user to switch to must exist and must not be root itself. */
static void check_user(struct cfg_loader *ld)
{
	struct cfg *c = ld->c;
	int line = first_line(server_key_line(ld, "user"), ld->server_line);
	if (server_key_line(ld, "user") < 0 || geteuid() != 0)
		return;
	struct passwd *pw = getpwnam(c->user);
	if (!pw) {
		cfg_err(ld, line, "user %s does not exist (create it with adduser --system %s, or set user =)", c->user,
			c->user);
		return;
	}
	if (pw->pw_uid == 0 || pw->pw_gid == 0) {
		cfg_err(ld, line, "user %s has uid or gid 0: mxvault must not run its parsers as root", c->user);
		return;
	}
	c->user_uid = (uint32_t)pw->pw_uid;
	c->user_gid = (uint32_t)pw->pw_gid;
	c->drop_privileges = true;
}

/* mkdir -p: parents get 0755, the spool itself 0700. 0 or -errno. */
static int mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	if (fmt(buf, sizeof(buf), "%s", path) < 0)
		return -ENAMETOOLONG;
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) < 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

/* Creates and removes a file: as root, access(2) says yes to anything. */
static int probe_writable(const char *dir)
{
	char path[PATH_MAX];
	if (fmt(path, sizeof(path), "%s/.mxvault-probe-XXXXXX", dir) < 0)
		return -ENAMETOOLONG;
	int fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	close(fd);
	return unlink(path) < 0 ? -errno : 0;
}

static void check_spool(struct cfg_loader *ld)
{
	int line = server_key_line(ld, "spool");
	if (line < 0)
		return;
	int rc = mkdir_p(ld->c->spool);
	if (rc == 0)
		rc = probe_writable(ld->c->spool);
	if (rc < 0)
		cfg_err(ld, first_line(line, ld->server_line), "spool directory '%s': %s", ld->c->spool,
			strerror(-rc));
}

/* tls_cert and tls_key go together; a key without a certificate is a mistake, not a default. */
static bool tls_keys_paired(struct cfg_loader *ld, int cert_line, int key_line)
{
	const struct cfg *c = ld->c;
	if (c->tls_inbound_off && key_line > 0)
		cfg_err(ld, key_line, "tls_key is set but tls_cert = none (inbound TLS is off)");
	else if (cert_line > 0 && !c->tls_inbound_off && key_line == 0)
		cfg_err(ld, cert_line, "tls_cert needs tls_key (the certificate's private key, PEM)");
	else if (key_line > 0 && cert_line == 0)
		cfg_err(ld, key_line, "tls_key needs tls_cert (the certificate, PEM)");
	else
		return true;
	return false;
}

/*
 * The files are loaded exactly as the daemon will load them (the same
 * call), so "config check" finds an unreadable, malformed or mismatched
 * pair before a restart does.
 */
static void check_tls(struct cfg_loader *ld)
{
	const struct cfg *c = ld->c;
	int cert_line = server_key_line(ld, "tls_cert"), key_line = server_key_line(ld, "tls_key");
	if (cert_line < 0 || key_line < 0 || !tls_keys_paired(ld, cert_line, key_line) || !c->tls_cert)
		return;
	if (ld->flags & (CFG_LOAD_NO_SYSTEM | CFG_LOAD_NO_USER))
		return;
	struct tls_error e;
	SSL_CTX *ctx = tls_server_context(c->tls_cert, c->tls_key, &e);
	if (ctx) {
		tls_context_free(ctx);
		return;
	}
	bool cert = e.file == TLS_FILE_CERT;
	cfg_err(ld, cert ? cert_line : key_line, "%s %s: %s", cert ? "tls_cert" : "tls_key",
		cert ? c->tls_cert : c->tls_key, e.text);
}

static void finish(struct cfg_loader *ld)
{
	struct cfg *c = ld->c;
	fill_defaults(ld);
	if (!c->ndomains)
		cfg_err(ld, 1, "no [domain NAME] section: mxvault would accept no mail");
	for (size_t i = 0; i < c->ndomains; i++)
		htab_put_str(&c->domain_index, c->domains[i].name, strlen(c->domains[i].name), &c->domains[i]);
	check_retry(ld);
	check_greet_pause(ld);
	check_recipients(ld);
	check_tls(ld);
	check_http_listen(ld);
	if (!(ld->flags & CFG_LOAD_NO_SYSTEM)) {
		check_spool(ld);
		if (!(ld->flags & CFG_LOAD_NO_USER))
			check_user(ld);
	}
}

/* --- public ------------------------------------------------------------ */

static char *dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		return xstrdup(".");
	return xstrndup(path, slash == path ? 1 : (size_t)(slash - path));
}

static void parse_file(struct cfg_loader *ld)
{
	ld->in = fopen(ld->c->path, "re");
	if (!ld->in) {
		cfg_err(ld, 1, "cannot read: %s", strerror(errno));
		return;
	}
	int rc = ini_parse_stream(cfg_reader, ld, cfg_handler, ld);
	/* Every line inih could object to was checked by cfg_reader first. */
	if (rc != 0 && ld->nerrors == 0)
		cfg_err(ld, rc > 0 ? rc : 1, "syntax error");
	fclose(ld->in);
	/* Checks of the whole file mean nothing for a file not read to its end. */
	if (!ld->read_failed)
		finish(ld);
}

int cfg_load_flags(const char *path, FILE *err, unsigned flags, struct cfg **out)
{
	struct cfg *c = xcalloc(1, sizeof(*c));
	c->refs = 1;
	c->path = xstrdup(path);
	set_defaults(c);
	struct cfg_loader ld = {.c = c, .err = err, .flags = flags, .dir = dir_of(path)};
	parse_file(&ld);
	if (!ld.nerrors && ld.warnings.len)
		fputs(buf_cstr(&ld.warnings), err);
	buf_free(&ld.warnings);
	free(ld.line);
	free(ld.dir);
	free(ld.domain_lines);
	*out = NULL;
	if (ld.nerrors) {
		cfg_unref(c);
		return -EINVAL;
	}
	*out = c;
	return 0;
}

int cfg_load(const char *path, FILE *err, struct cfg **out)
{
	return cfg_load_flags(path, err, 0, out);
}

struct cfg *cfg_ref(const struct cfg *cc)
{
	struct cfg *c = (struct cfg *)cc; /* the count is the one mutable field */
	c->refs++;
	return c;
}

void cfg_unref(const struct cfg *cc)
{
	struct cfg *c = (struct cfg *)cc;
	if (!c || --c->refs > 0)
		return;
	for (size_t i = 0; i < c->nlisten; i++)
		free(c->listen[i].text);
	for (size_t i = 0; i < c->naka; i++)
		free(c->also_known_as[i]);
	for (size_t i = 0; i < c->ndomains; i++) {
		struct cfg_domain *d = &c->domains[i];
		for (size_t j = 0; j < d->nprimary; j++)
			free(d->primary[j].host);
		free(d->primary);
		free(d->name);
		free(d->recipients_path);
		htab_free(&d->recipients);
	}
	htab_free(&c->domain_index);
	free(c->domains);
	free(c->also_known_as);
	for (size_t i = 0; i < c->nmilters; i++)
		free(c->milters[i]);
	free(c->milters);
	free(c->listen);
	free(c->path);
	free(c->hostname);
	free(c->authserv_id);
	free(c->control_socket);
	free(c->notify_command);
	if (c->http_listen)
		free(c->http_listen->text);
	free(c->http_listen);
	free(c->spool);
	free(c->resolver);
	free(c->postmaster);
	free(c->user);
	free(c->pid_file);
	free(c->tls_ca_file);
	free(c->tls_cert);
	free(c->tls_key);
	free(c->dnsbl);
	free(c->dnswl);
	free(c->rate_limit_exceptions);
	free(c);
}

static void print_keys(FILE *out, const struct cfg_key *tab, size_t n, const void *obj)
{
	for (size_t i = 0; i < n; i++)
		tab[i].print(out, obj, &tab[i]);
}

void cfg_print(const struct cfg *c, FILE *out)
{
	fprintf(out, "# effective configuration loaded from %s\n[server]\n", c->path);
	print_keys(out, cfg_server_keys, cfg_nserver_keys, c);
	for (size_t i = 0; i < c->ndomains; i++) {
		fprintf(out, "\n[domain %s]\n", c->domains[i].name);
		print_keys(out, cfg_domain_keys, cfg_ndomain_keys, &c->domains[i]);
	}
	fputc('\n', out);
	for (size_t i = 0; i < c->ndomains; i++) {
		const struct cfg_domain *d = &c->domains[i];
		if (!d->recipients_path)
			fprintf(out, d->callout ? "# %s: recipients checked with the primary\n"
						: "# %s: every recipient accepted\n", d->name);
		else
			fprintf(out, "# %s: %zu recipients loaded%s\n", d->name, d->recipients.count,
				d->any_recipient ? " (and *: every recipient accepted)" : "");
	}
}

const struct cfg_domain *cfg_find_domain(const struct cfg *c, const char *domain)
{
	char buf[256];
	size_t n = strlen(domain);
	if (n >= sizeof(buf))
		return NULL;
	memcpy(buf, domain, n);
	ascii_lower(buf, n);
	return htab_get_str(&c->domain_index, buf, n);
}

bool cfg_domain_has_recipient(const struct cfg_domain *d, const char *local)
{
	char buf[CFG_RCPT_MAX_LINE + 256 + 2];
	size_t n = strlen(local);
	if (d->any_recipient)
		return true;
	if (n > CFG_RCPT_MAX_LINE || fmt(buf, sizeof(buf), "%s@%s", local, d->name) < 0)
		return false;
	ascii_lower(buf, n);
	return htab_get_str(&d->recipients, buf, n) || htab_get_str(&d->recipients, buf, strlen(buf));
}
