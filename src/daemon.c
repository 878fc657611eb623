/*
 * daemon: see daemon.h. The start order is the security argument:
 *
 *   1. the configuration is loaded (main.c), as root: it is ours, not a peer's
 *   2. the listeners are bound (ports below 1024 need root), and the
 *      control socket (a second daemon on the same spool stops here)
 *   3. the spool directory is opened and given to the unprivileged user
 *   4. the TLS contexts are created (key files may be root's); without
 *      tls_cert, the self-signed certificate is made in the spool first,
 *      owned by the unprivileged user
 *   5. root is dropped for good (privs.c), before any thread exists
 *   6. the spool is recovered (its bytes came from peers) and its I/O
 *      thread started; the resolver is opened
 *   7. the SMTP server starts accepting and the queue manager delivering
 *
 * so no parser of outside bytes ever runs as root. Stopping is the reverse:
 * stop accepting and delivering, let messages in progress finish (up to
 * DRAIN_MS), then free in the order that lets cancelled callbacks run
 * against live owners (the resolver before the queue manager that asked it).
 *
 * The daemon owns the shared services: the resolver (delivery routing now,
 * SPF/DKIM/DMARC and DNSBL lookups from the SMTP side later) and the TLS
 * contexts.
 *
 * A reload (SIGHUP, daemon_reload) swaps the configuration while the loop
 * runs: reload.c loads and judges the new one, then each part that keeps
 * the configuration is handed it through its set_cfg function, and the
 * daemon's own reference moves last. Parts that started with the old one
 * (sessions, outbound connections) hold their own references and finish
 * with it.
 */
#include "daemon.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "base/dns.h"
#include "base/log.h"
#include "base/standby.h"
#include "base/tls.h"
#include "ctl/ctl.h"
#include "delivery/callout.h"
#include "delivery/qmgr.h"
#include "drill.h"
#include "notify/alerts.h"
#include "pidfile.h"
#include "privs.h"
#include "reload.h"
#include "sdnotify.h"
#include "queue_ctl.h"
#include "smtpd/smtp_server.h"
#include "spool/spool.h"
#include "store/learned.h"
#include "web/web.h"

#define DRAIN_MS 10000
#define DNS_TIMEOUT_MS 2000

struct daemon {
	const struct cfg *cfg;   /* a reference; a reload replaces it */
	struct event_base *base;
	struct smtp_server *srv;
	int spool_dirfd;
	struct spool *sp;
	SSL_CTX *tls_client;
	SSL_CTX *tls_server;     /* NULL: inbound TLS is off (tls_cert = none) */
	struct dns *dns;
	struct qmgr *qmgr;
	struct learned *learned;  /* NULL unless a domain has recipients = callout */
	struct callout *callout;
	struct verifier verifier; /* the callout module's, lent to the SMTP server */
	struct standby *standby; /* written by the queue manager, read by the SMTP server */
	int ctl_fd;              /* the control socket, bound as root */
	struct ctl *ctl;         /* its server (queue commands, reload, drills) */
	struct alerts *alerts;   /* watches the queue manager and the spool; runs notify_command */
	struct drills *drills;   /* the drill commands (drill.c), once the queue manager runs */
	int web_fd;              /* http_listen, bound as root; -1: off or taken over */
	struct web *web;         /* /metrics, /healthz, the status page */
	struct event *sigterm, *sigint, *sighup, *drain_ev;
	int64_t deadline_ms;
	char pid_path[PATH_MAX]; /* empty: no pid file */
	struct pidfile pid_file;
};

static void check_drained(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct daemon *d = arg;
	if ((smtp_server_idle(d->srv) && qmgr_idle(d->qmgr)) || clock_mono_ms() >= d->deadline_ms)
		event_base_loopexit(d->base, NULL);
}

static void on_stop_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct daemon *d = arg;
	if (d->drain_ev)
		return;
	log_info("mxvault", "signal=%d stopping: finishing messages in progress", (int)sig);
	notify_stopping();
	smtp_server_shutdown(d->srv);
	qmgr_stop(d->qmgr);
	d->deadline_ms = clock_mono_ms() + DRAIN_MS;
	d->drain_ev = event_new(d->base, -1, EV_PERSIST, check_drained, d);
	event_add(d->drain_ev, &(struct timeval){0, 50000});
}

static int daemonize(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -errno;
	int fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	log_open_syslog();
	return 0;
}

/* Step 4 for inbound STARTTLS: the configured pair, or the self-signed one in the spool. */
static int start_server_tls(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	char dir[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];
	if (cfg->tls_inbound_off) {
		log_info("mxvault", "inbound TLS is off (tls_cert = none): STARTTLS is not offered");
		return EX_OK;
	}
	const char *cert_path = cfg->tls_cert, *key_path = cfg->tls_key;
	if (!cert_path) {
		if (fmt(dir, sizeof(dir), "%s/tls", cfg->spool) < 0 ||
		    tls_selfsigned_ensure(dir, cfg->hostname, cfg->drop_privileges, cfg->user_uid, cfg->user_gid, cert,
					  key, sizeof(cert)) < 0)
			return EX_CANTCREAT;
		cert_path = cert;
		key_path = key;
	}
	struct tls_error e;
	d->tls_server = tls_server_context(cert_path, key_path, &e);
	if (!d->tls_server) {
		/* config check passed, so the files changed since, or the spool's pair is damaged */
		log_err("mxvault", "cannot load %s: %s", e.file == TLS_FILE_CERT ? cert_path : key_path, e.text);
		return EX_CONFIG;
	}
	log_info("mxvault", "inbound TLS on: cert=%s", cert_path);
	return EX_OK;
}

/*
 * Step 3 for the control socket, in the spool once it exists: bound as root (the path above the spool
 * may be closed to the daemon's user), given to that user, mode 0600. A
 * second daemon on the same spool stops here (the socket answers), before
 * it touches the spool's queue.
 */
static int bind_control(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	int rc = ctl_bind(cfg->control_socket, cfg->drop_privileges, cfg->user_uid, cfg->user_gid, &d->ctl_fd);
	if (rc < 0) {
		log_err("mxvault", "cannot listen on the control socket %s: %s", cfg->control_socket,
			rc == -EADDRINUSE ? "a daemon is already running on it" : strerror(-rc));
		return rc == -EADDRINUSE ? EX_UNAVAILABLE : EX_OSERR;
	}
	return EX_OK;
}

/* Steps 2 to 5: everything that needs root, then root is gone. */
static int start_privileged(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	/* Sessions, outbound connections, segment files read and written, the resolver's sockets. */
	uint64_t want = (uint64_t)cfg->max_sessions + cfg->max_outbound_connections + SPOOL_MAX_READ_FDS + 256;
	uint64_t have = privs_raise_fd_limit(want);
	int rc;
	if (have < want)
		log_warn("mxvault", "file descriptor limit is %llu, under the %llu that max_sessions needs",
			 (unsigned long long)have, (unsigned long long)want);
	if (smtp_server_bind(cfg, &d->srv) < 0)
		return EX_OSERR;
	if (cfg->http_listen && (rc = web_bind(cfg->http_listen, &d->web_fd)) < 0) {
		log_err("mxvault", "cannot listen on http_listen %s: %s", cfg->http_listen->text, strerror(-rc));
		return EX_OSERR;
	}
	d->spool_dirfd = spool_dir_prepare(cfg->spool, cfg->drop_privileges, cfg->user_uid, cfg->user_gid);
	if (d->spool_dirfd < 0) {
		log_err("mxvault", "cannot open the spool %s: %s", cfg->spool, strerror(-d->spool_dirfd));
		return EX_IOERR;
	}
	rc = bind_control(d);
	if (rc != EX_OK)
		return rc;
	d->tls_client = tls_client_context(cfg->tls_ca_file);
	if (!d->tls_client)
		log_warn("mxvault", "no client TLS context: outbound mail goes without STARTTLS");
	rc = start_server_tls(d);
	if (rc != EX_OK)
		return rc;
	if (!cfg->drop_privileges) {
		if (geteuid() != 0)
			log_info("mxvault", "running as uid=%u: user=%s is ignored (not started as root)",
				 (unsigned)geteuid(), cfg->user);
		return EX_OK;
	}
	rc = privs_drop(cfg->user_uid, cfg->user_gid);
	if (rc < 0) {
		log_err("mxvault", "cannot switch to user %s: %s", cfg->user, strerror(-rc));
		return EX_OSERR;
	}
	log_info("mxvault", "running as user=%s uid=%u gid=%u", cfg->user, (unsigned)cfg->user_uid,
		 (unsigned)cfg->user_gid);
	return EX_OK;
}

/*
 * Recipients learned from the primary (issue 9), only when some domain has
 * recipients = callout: the store in SPOOL/learned/, opened after the
 * privilege drop so that the unprivileged user creates and owns it, and
 * the callout module, lent to the SMTP server through a verifier.
 */
static int start_callout(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	bool any = false;
	for (size_t i = 0; i < cfg->ndomains; i++)
		any |= cfg->domains[i].callout;
	if (!any)
		return EX_OK;
	char dir[PATH_MAX];
	if (fmt(dir, sizeof(dir), "%s/learned", cfg->spool) < 0)
		return EX_CONFIG;
	int fd = spool_open_subdir(d->sp, "learned");
	if (fd < 0) {
		log_err("mxvault", "cannot open %s: %s", dir, strerror(-fd));
		return EX_IOERR;
	}
	if (learned_open(fd, dir, cfg->callout_cache, 0, &d->learned) < 0)
		return EX_IOERR;
	struct callout_deps cd = {.cfg = cfg, .base = d->base, .dns = d->dns, .learned = d->learned};
	d->callout = callout_new(&cd);
	d->verifier = (struct verifier){.start = callout_start, .cancel = callout_cancel, .impl = d->callout};
	return EX_OK;
}

static void cmd_ping(void *arg, struct ctl_call *c, int argc, char **argv)
{
	(void)arg;
	(void)argc;
	(void)argv;
	ctl_out(c, "pong");
	ctl_finish(c, EX_OK);
}

/* `mxvault reload`: the report to the client, on stdout when it took, on stderr when refused. */
static void cmd_reload(void *arg, struct ctl_call *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	struct daemon *d = arg;
	struct buf report = {0};
	log_info("mxvault", "control: reloading %s", d->cfg->path);
	bool stopping = d->drain_ev != NULL;
	int rc = daemon_reload(d, &report);
	if (rc == 0)
		ctl_out(c, "%s", buf_cstr(&report));
	else
		ctl_err(c, "%s", buf_cstr(&report));
	buf_free(&report);
	ctl_finish(c, rc == 0 ? EX_OK : stopping ? EX_TEMPFAIL : EX_CONFIG);
}

/* Each part registers its commands on the control socket. */
static void start_control(struct daemon *d)
{
	d->ctl = ctl_open(d->base, d->cfg->control_socket, d->ctl_fd);
	d->ctl_fd = -1;
	ctl_register(d->ctl, "ping", cmd_ping, d);
	ctl_register(d->ctl, "reload", cmd_reload, d);
}

/* Steps 6 and 7. */
static int start_services(struct daemon *d)
{
	const struct cfg *cfg = d->cfg;
	int rc = spool_open(cfg->spool, d->spool_dirfd, d->base, cfg->min_free_space, &d->sp);
	d->spool_dirfd = -1; /* the spool took it over, also on failure */
	if (rc < 0) {
		log_err("mxvault", "cannot open the spool %s: %s", cfg->spool, strerror(-rc));
		return EX_IOERR;
	}
	spool_set_pending_limit(d->sp, cfg->max_pending_bytes);
	rc = dns_open(d->base, cfg->resolver, DNS_TIMEOUT_MS, &d->dns);
	if (rc < 0) {
		log_err("mxvault", "cannot start the resolver: %s", strerror(-rc));
		return EX_OSERR;
	}
	rc = start_callout(d);
	if (rc != EX_OK)
		return rc;
	start_control(d);
	d->standby = standby_new();
	struct smtpd_deps sd = {.cfg = cfg, .base = d->base, .sp = d->sp, .dns = d->dns, .tls = d->tls_server,
				.verifier = d->callout ? &d->verifier : NULL, .learned = d->learned,
				.standby = d->standby};
	if (smtp_server_start(d->srv, &sd) < 0)
		return EX_OSERR;
	struct qmgr_deps qd = {.cfg = cfg, .base = d->base, .sp = d->sp, .dns = d->dns, .tls = d->tls_client,
			       .learned = d->learned, .standby = d->standby};
	rc = qmgr_start(&qd, &d->qmgr);
	if (rc < 0) {
		log_err("mxvault", "cannot start delivery: %s", strerror(-rc));
		return EX_OSERR;
	}
	struct alerts_deps ad = {.cfg = cfg, .base = d->base, .qmgr = d->qmgr, .sp = d->sp};
	d->alerts = alerts_start(&ad);
	d->drills = drills_new(d->base, d->qmgr, d->ctl);
	queue_ctl_register(d->ctl, d->qmgr); /* before the loop runs: no request is read until then */
	if (d->web_fd >= 0) {
		struct web_deps wd = {.cfg = cfg, .base = d->base, .qmgr = d->qmgr, .srv = d->srv, .sp = d->sp};
		d->web = web_start(&wd, d->web_fd);
		d->web_fd = -1;
	}
	return EX_OK;
}

/* Each line of a reload's report as its own log line (the lines quote the operator's file: made log-safe). */
static void log_report(enum log_level lvl, const char *what, struct buf *report)
{
	const char *s = buf_cstr(report);
	while (*s) {
		size_t n = strcspn(s, "\n");
		char safe[1200];
		log_msg(lvl, "mxvault", "%s: %s", what, log_safe(safe, sizeof(safe), s, n));
		s += n + (s[n] == '\n');
	}
}

/* The new inbound TLS context, or the old one kept when the new certificate cannot be loaded. */
static SSL_CTX *reload_tls(struct daemon *d, const struct cfg *next, struct buf *report)
{
	struct buf why = {0};
	SSL_CTX *tls = NULL;
	if (reload_server_tls(next, &why, &tls) < 0) {
		log_report(LOG_LVL_WARN, "reload: keeps the old certificate", &why);
		buf_printf(report, "keeps the old certificate: %s", buf_cstr(&why));
		tls = d->tls_server;
	}
	buf_free(&why);
	return tls;
}

int daemon_reload(struct daemon *d, struct buf *report)
{
	if (d->drain_ev) {
		buf_append_str(report, "stopping: not reloaded\n");
		return -1;
	}
	notify_reloading();
	struct cfg *next = NULL;
	if (reload_load(d->cfg, report, &next) < 0) {
		log_report(LOG_LVL_ERR, "reload refused", report);
		notify_ready("reload refused; serving with the configuration of before");
		return -1;
	}
	log_report(LOG_LVL_WARN, "reload", report); /* the file's warnings, if any */
	struct buf changes = {0};
	reload_describe(d->cfg, next, &changes);
	log_report(LOG_LVL_INFO, "reload", &changes);
	buf_append(report, changes.data, changes.len);
	buf_free(&changes);
	SSL_CTX *tls = reload_tls(d, next, report);
	smtp_server_set_cfg(d->srv, next, tls);
	qmgr_set_cfg(d->qmgr, next);
	if (d->callout)
		callout_set_cfg(d->callout, next);
	web_set_cfg(d->web, next);
	spool_set_pending_limit(d->sp, next->max_pending_bytes);
	if (tls != d->tls_server && d->tls_server)
		tls_context_free(d->tls_server); /* sessions in TLS hold their own references */
	d->tls_server = tls;
	cfg_unref(d->cfg);
	d->cfg = next;
	log_info("mxvault", "reload ok config=%s domains=%zu", next->path, next->ndomains);
	buf_printf(report, "reload ok: %s, %zu domains\n", next->path, next->ndomains);
	notify_ready("accepting mail; configuration reloaded");
	return 0;
}

static void on_reload_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	struct buf report = {0};
	log_info("mxvault", "signal=SIGHUP reloading %s", ((struct daemon *)arg)->cfg->path);
	(void)daemon_reload(arg, &report); /* logged there */
	buf_free(&report);
}

static void watch_signals(struct daemon *d)
{
	signal(SIGPIPE, SIG_IGN);
	d->sigterm = evsignal_new(d->base, SIGTERM, on_stop_signal, d);
	d->sigint = evsignal_new(d->base, SIGINT, on_stop_signal, d);
	d->sighup = evsignal_new(d->base, SIGHUP, on_reload_signal, d);
	event_add(d->sigterm, NULL);
	event_add(d->sigint, NULL);
	event_add(d->sighup, NULL);
}

/* The reverse of the start, from whatever point it reached. */
static void stop_all(struct daemon *d)
{
	alerts_stop(d->alerts); /* what stopping does to the queue is no alert */
	if (d->qmgr)
		qmgr_stop(d->qmgr);
	ctl_close(d->ctl); /* calls still open are told, while what they watch is alive */
	smtp_server_free(d->srv); /* sessions still open are closed with the base */
	if (d->callout)
		callout_stop(d->callout); /* every session is gone: no request is left */
	dns_free(d->dns);         /* cancelled lookups call back into a live qmgr and callout */
	qmgr_free(d->qmgr);
	alerts_free(d->alerts); /* the queue manager's observer: after it */
	drills_free(d->drills); /* ctl_close ended every drill; what it observed is gone */
	web_free(d->web);         /* after the queue manager, whose last events it may hear */
	callout_free(d->callout);
	learned_close(d->learned); /* after the queue manager, which writes to it */
	standby_free(d->standby);
	spool_close(d->sp);
	if (d->spool_dirfd >= 0)
		close(d->spool_dirfd);
	if (d->ctl_fd >= 0)
		close(d->ctl_fd);
	if (d->web_fd >= 0)
		close(d->web_fd);
	if (d->tls_client)
		tls_context_free(d->tls_client);
	if (d->tls_server)
		tls_context_free(d->tls_server);
	if (d->sigterm)
		event_free(d->sigterm);
	if (d->sigint)
		event_free(d->sigint);
	if (d->sighup)
		event_free(d->sighup);
	pidfile_remove(&d->pid_file);
	cfg_unref(d->cfg);
	if (d->drain_ev)
		event_free(d->drain_ev);
	event_base_free(d->base);
}

/*
 * pid_file, or SPOOL/mxvault.pid with -d. Refused before anything starts
 * when it names a live process; written after the fork (the child's pid),
 * as root, before the spool is handed to the user (who can then remove it
 * at the stop; spool_dir_prepare gives it the file too).
 */
static int pid_file_path(const struct cfg *cfg, bool background, char *path, size_t n)
{
	path[0] = '\0';
	if (!cfg->pid_file && !background)
		return EX_OK;
	if (fmt(path, n, "%s", cfg->pid_file ? cfg->pid_file : "") < 0 ||
	    (!cfg->pid_file && fmt(path, n, "%s/mxvault.pid", cfg->spool) < 0)) {
		fprintf(stderr, "mxvault: pid_file: name too long\n");
		return EX_CONFIG;
	}
	pid_t other = 0;
	int rc = pidfile_check(path, &other);
	if (rc == -EEXIST)
		fprintf(stderr, "mxvault: %s names process %ld, which runs: is mxvault running already?\n", path,
			(long)other);
	else if (rc < 0)
		fprintf(stderr, "mxvault: cannot read %s: %s\n", path, strerror(-rc));
	return rc < 0 ? EX_UNAVAILABLE : EX_OK;
}

static int write_pid_file(const char *path, struct pidfile *pf)
{
	int rc = path[0] ? pidfile_write(path, pf) : 0;
	if (rc < 0) {
		log_err("mxvault", "cannot write pid_file %s: %s", path, strerror(-rc));
		return EX_CANTCREAT;
	}
	return EX_OK;
}

int daemon_run(const struct cfg *cfg, bool background)
{
	struct daemon d = {.cfg = cfg_ref(cfg), .spool_dirfd = -1, .ctl_fd = -1, .web_fd = -1, .pid_file.dirfd = -1};
	int rc = pid_file_path(cfg, background, d.pid_path, sizeof(d.pid_path));
	if (rc != EX_OK) {
		d.pid_path[0] = '\0';
		cfg_unref(d.cfg);
		return rc;
	}
	/* Until the loop watches it, a SIGHUP (an early systemctl reload) must not kill the start: its default does. */
	signal(SIGHUP, SIG_IGN);
	if (background && daemonize() < 0) {
		perror("mxvault: fork");
		cfg_unref(d.cfg);
		return EX_OSERR;
	}
	d.base = event_base_new();
	rc = write_pid_file(d.pid_path, &d.pid_file);
	if (rc == EX_OK)
		rc = start_privileged(&d);
	if (rc == EX_OK)
		rc = start_services(&d);
	if (rc == EX_OK) {
		watch_signals(&d);
		log_info("mxvault", "started hostname=%s spool=%s domains=%zu", cfg->hostname, cfg->spool,
			 cfg->ndomains);
		notify_ready("accepting mail on %zu listeners, %zu domains", cfg->nlisten, cfg->ndomains);
		event_base_dispatch(d.base);
	}
	stop_all(&d);
	if (rc == EX_OK)
		log_info("mxvault", "stopped");
	return rc;
}
