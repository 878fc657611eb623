/*
 * cfg: loads and validates the INI configuration (inih), and answers the
 * lookups the rest of the daemon needs (is this a backed-up domain, is this
 * a known recipient). Loading is all-or-nothing: every problem is printed
 * as "FILE:LINE: message" on stderr and the load fails, so nothing starts
 * on a half-valid configuration. After loading, a struct cfg is immutable
 * and passed around as const. It is reference-counted: whoever keeps it
 * beyond the call that handed it over (a session, a destination) takes a
 * reference, so a reload can swap in a new one while old users finish.
 */
#ifndef MXV_CFG_H
#define MXV_CFG_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "connspec.h"
#include "util.h"

/*
 * The most recipients a message may have. The spool stores the envelope
 * in one record; spool_rec.c asserts that this many recipients, each with
 * the longest address, ORCPT and reply, still fit in it.
 */
#define CFG_MAX_RECIPIENTS 10000

/*
 * Outbound TLS to the next hop (per domain, key "tls"): auto is DANE when the
 * host has DNSSEC-validated TLSA records, else MTA-STS when the domain
 * publishes a policy, else may.
 */
enum tls_mode { TLS_MAY = 0, TLS_ENCRYPT, TLS_VERIFY, TLS_DANE, TLS_MTA_STS, TLS_AUTO };

/*
 * Sender authentication (issue 8), per domain. SPF (key "spf"): off, tag
 * (the result goes into Authentication-Results only), or reject (a fail is
 * refused at RCPT with 550 5.7.23, a temperror deferred with 451 4.7.24).
 * DMARC (key "dmarc"): off, tag, or enforce (p=reject that fails is refused
 * at end of data with 550 5.7.1; a temperror deferred with 451 4.7.1).
 */
enum spf_mode { SPF_MODE_OFF = 0, SPF_MODE_TAG, SPF_MODE_REJECT };
enum dmarc_mode { DMARC_MODE_OFF = 0, DMARC_MODE_TAG, DMARC_MODE_ENFORCE };
/* Standby mode (issue 9): take the domain's mail always, or only while its primary does not answer. */
enum accept_mode { ACCEPT_ALWAYS = 0, ACCEPT_WHEN_PRIMARY_DOWN };

/*
 * Recipients learned from the primary (issue 9, key "recipients = callout"):
 * what a never-seen address gets while the primary cannot be reached (key
 * "unknown_during_outage"): 451 4.3.0 (default), 250, or 550 5.1.1.
 */
enum outage_mode { OUTAGE_TEMPFAIL = 0, OUTAGE_ACCEPT, OUTAGE_REJECT };

struct cfg_addr {
	char *text;                    /* as written: "127.0.0.1:2525", "[::1]:25" */
	struct sockaddr_storage ss;
	socklen_t sslen;
};

struct cfg_host {
	char *host;    /* host name or IP address literal, without brackets */
	uint16_t port; /* 0 = the server's mx_port */
};

struct cfg_domain {
	char *name;            /* lower-case, no trailing dot */
	int line;              /* line of its [domain NAME] header */
	char *recipients_path; /* the recipients file, or NULL for "recipients = *" or "= callout" */
	bool callout;          /* "recipients = callout[, FILE]": unknown addresses are asked of the primary */
	enum outage_mode unknown_during_outage; /* callout: a never-seen address while the primary is down */
	bool any_recipient;    /* "recipients = *", or the file contains "*" */
	struct htab recipients;/* lower-cased "local" and "local@domain" entries */
	struct cfg_host *primary;
	size_t nprimary;       /* 0: use the domain's MX records */
	int64_t retention;     /* seconds, default 5d */
	int64_t warn_after;    /* seconds, default 4h, 0 = never */
	enum tls_mode tls;     /* outbound TLS, default auto */
	bool require_tls;      /* inbound: RCPT without STARTTLS gets 530 (postmaster excepted); default no */
	enum spf_mode spf;     /* default tag */
	enum dmarc_mode dmarc; /* default tag */
	enum accept_mode accept; /* default always */
	bool greylist;         /* issue 9: greylist first attempts (default no) */
};

struct cfg {
	int refs;                    /* cfg_ref / cfg_unref; main thread only */
	char *path;
	char *hostname;
	int64_t greylist_delay;        /* seconds, default 5m: the earliest a greylisted retry passes */
	int64_t auth_timeout;          /* seconds, default 20s: the longest a reply waits for the sender checks */
	char *authserv_id;           /* RFC 8601 authserv-id of our Authentication-Results; default hostname */
	/* Milters (issue 9): "inet:IP:PORT" / "unix:/PATH", asked in this order. */
	char **milters;
	size_t nmilters;
	bool milter_default_accept;    /* milter_default_action: accept (true) or tempfail (default) */
	int64_t milter_connect_timeout; /* seconds, default 30s */
	int64_t milter_command_timeout; /* default 30s */
	int64_t milter_content_timeout; /* default 300s */
	struct cfg_addr *listen;
	size_t nlisten;
	char *spool;
	uint64_t max_message_size;   /* default 50M */
	char *resolver;              /* "IP[:PORT]" or NULL for /etc/resolv.conf */
	uint16_t mx_port;            /* default 25 */
	char *postmaster;            /* where RCPT TO:<postmaster> goes; default postmaster@<first domain> */

	/* Session limits (issue 2). */
	uint32_t max_recipients;       /* per message, default 100 */
	uint32_t max_sessions;         /* default 1000 */
	uint32_t max_sessions_per_ip;  /* default 50 */
	uint32_t max_errors;           /* per session, default 10 */
	int64_t command_timeout;       /* seconds, default 5m (RFC 5321 4.5.3.2.7) */
	int64_t data_timeout;          /* seconds, default 10m: between reads during DATA/BDAT */
	bool reject_bare_lf;           /* default yes */
	uint64_t min_free_space;       /* refuse MAIL below this free space in the spool, default 100M */

	/* Facing the internet (issue 6). */
	char *user;                    /* run as this user when started as root, default "mxvault" */
	char *pid_file;                /* serve: the pid file; NULL = SPOOL/mxvault.pid with -d, none in the foreground */
	uint32_t user_uid, user_gid;   /* resolved when loaded as root (CFG_LOAD_NO_SYSTEM unset) */
	bool drop_privileges;          /* loaded as root: serve switches to user */
	int64_t max_session_time;      /* seconds, default 30m: a session's whole life */
	uint64_t min_data_rate;        /* bytes/s while receiving content, default 500, 0 = off */
	uint64_t max_pending_bytes;    /* message bytes waiting for the disk, default 64M */

	/* Forward side (issue 3). */
	char **also_known_as;
	size_t naka;
	int64_t probe_interval;   /* default 15s */
	int64_t retry_min;        /* default 1m */
	int64_t retry_max;        /* default 30m */
	uint32_t max_hops;        /* default 100 */
	int64_t dedup_window;     /* default 24h, 0 = off */
	uint32_t bounce_guard;    /* percent, default 50, 0 = off */
	int64_t bounce_guard_hold;/* default 1h */
	uint32_t max_connections_per_destination; /* default 4 */
	uint32_t max_outbound_connections; /* server-wide, default 100 */
	int64_t delivery_connect_timeout;  /* default 30s */
	int64_t delivery_reply_timeout;    /* each reply of a next hop, at most; default 5m (RFC 5321 4.5.3.2) */
	int64_t delivery_final_reply_timeout; /* the reply to the final dot; default 10m */
	int64_t callout_timeout;  /* a recipient check with the primary, at most; default 10s */
	int64_t callout_cache;    /* how long a learned recipient is trusted; default 30d */

	/* Encryption (issue 7). */
	char *tls_ca_file;        /* outbound trust store (SMTP verify, MTA-STS over HTTPS); NULL: the system's */
	char *tls_cert;           /* inbound STARTTLS: PEM certificate, chain after it; NULL: self-signed in the spool */
	char *tls_key;            /* its PEM private key; set with tls_cert, and only then */
	bool tls_inbound_off;     /* tls_cert = none: STARTTLS is not offered */

	/* Abuse defences at connect (issue 9; docs/operations.md). */
	struct connspec_dnsbl *dnsbl;  /* queried at connect; NULL when none */
	size_t ndnsbl;
	char (*dnswl)[254];            /* a client listed here is never blocked by dnsbl */
	size_t ndnswl;
	int32_t dnsbl_threshold;       /* the summed weight that blocks, default 1 */
	int64_t greet_pause;           /* seconds between "220-" and "220 ", default 0 = off */
	struct connspec_rate max_connection_rate; /* per client (IPv6: per /64), default 60/m */
	struct connspec_rate max_message_rate;    /* MAIL commands per client, default 600/h */
	struct connspec_cidr *rate_limit_exceptions; /* default 127.0.0.0/8, ::1 */
	size_t nrate_limit_exceptions;

	/* Running it (issue 10; docs/operations.md). */
	char *control_socket;          /* the queue-control socket, default SPOOL/control */
	/* Alerts without mail (issue 10, section 4; src/notify/alerts.h). */
	char *notify_command;          /* run by /bin/sh per alert; NULL: alerts are only logged */
	int64_t notify_timeout;        /* seconds, default 60s: then it is killed */
	int64_t alert_age;             /* seconds, default 1h: "old-mail" when the oldest message passes it */
	uint64_t alert_spool_size;     /* "spool-size" when the spool's files pass it; 0 (default): off */
	struct cfg_addr *http_listen;  /* /metrics, /healthz and the status page (web/); NULL: off (default) */

	struct cfg_domain *domains;
	size_t ndomains;
	struct htab domain_index; /* name -> struct cfg_domain * */
};

#define CFG_DEFAULT_SPOOL "/var/spool/mxvault"

/* 0, or -EINVAL after printing every problem found to err (of a recipients file, the first few and a count). */
int cfg_load(const char *path, FILE *err, struct cfg **out) MUST_CHECK;
/*
 * cfg_load with flags. CFG_LOAD_NO_SYSTEM skips what looks at this host:
 * creating and probing the spool directory, and looking up user (for
 * fuzzing, where the input must not pick directories to create, and for
 * checking a configuration meant for another host). CFG_LOAD_NO_USER skips
 * the user lookup and the TLS files (for commands that never switch user
 * and serve nothing, which may run as a user that cannot read the key). CFG_LOAD_WARN
 * also prints warnings ("FILE:LINE: warning: ...") about risky settings;
 * they never fail the load.
 */
#define CFG_LOAD_NO_SYSTEM 0x1u
#define CFG_LOAD_WARN 0x2u
#define CFG_LOAD_NO_USER 0x4u
int cfg_load_flags(const char *path, FILE *err, unsigned flags, struct cfg **out) MUST_CHECK;
/* A new reference to c (returned for convenience). */
struct cfg *cfg_ref(const struct cfg *c);
/* Drops a reference; the last one frees everything. NULL is ignored. */
void cfg_unref(const struct cfg *c);
/* Prints the effective configuration, every key with its value, as INI. */
void cfg_print(const struct cfg *c, FILE *out);
/*
 * Calls fn for every key the configuration knows, in table order, with its
 * section ("server" or "domain") and name: for checks that the documentation
 * lists every key (tests/unit/test_conf_doc.c).
 */
typedef void cfg_key_fn(const char *section, const char *name, void *arg);
void cfg_key_each(cfg_key_fn *fn, void *arg);

/*
 * Whether KEY (a [server] key, or a [domain] key) has another value in b
 * than in a, as cfg_print would show it (cfg_diff.c; for a reload). KEY
 * must be a known key.
 */
bool cfg_server_key_differs(const struct cfg *a, const struct cfg *b, const char *key);
bool cfg_domain_key_differs(const struct cfg_domain *a, const struct cfg_domain *b, const char *key);

/* domain: as given by the client, any case, no trailing dot. NULL if not backed up. */
const struct cfg_domain *cfg_find_domain(const struct cfg *c, const char *domain);
/* local: the local part as received (case-insensitive match). */
bool cfg_domain_has_recipient(const struct cfg_domain *d, const char *local);

/* "ADDR:PORT", "[v6]:PORT" -> sockaddr. 0 or -EINVAL. */
int cfg_parse_addr(const char *s, struct cfg_addr *out) MUST_CHECK;

#endif
