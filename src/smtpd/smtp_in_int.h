/*
 * smtp_in_int: the session object and what the three files of a session
 * share. smtp_in.c owns its life (I/O, deadlines, the wait state, ending);
 * smtp_in_cmd.c answers commands; smtp_in_data.c receives message content
 * and commits it. Only src/smtpd/smtp_in*.c include this.
 *
 * Life of a session, and the invariant that keeps it safe: a session is
 * freed only from a top-level event callback (a socket event, its timer,
 * the end of a wait), never from inside a handler, and never while an
 * asynchronous step it started (the spool's commit, later a DNS-backed
 * policy step) may still call back: then a timeout or a vanished peer is
 * only noted in `doomed`, and takes effect when the step's callback runs.
 */
#ifndef MXV_SMTP_IN_INT_H
#define MXV_SMTP_IN_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth_step.h"
#include "base/verify.h"
#include "base/tls.h"
#include "hdr_strip.h"
#include "milter/milter.h"
#include "msg_hdr.h"
#include "smtp_in.h"
#include "smtp_parse.h"
#include "spool/spool.h"

struct bufferevent;
struct event;
struct evbuffer;
struct iprev_check;
struct spf_check;
struct dkim_verify;
struct dmarc_check;
struct dnsbl_check;

enum smtp_in_state {
	SMTP_IN_HELO,    /* greeted, waiting for HELO/EHLO */
	SMTP_IN_READY,   /* after HELO/EHLO, no transaction */
	SMTP_IN_MAIL,    /* transaction open: recipients collect in env */
	SMTP_IN_DATA,    /* receiving DATA content */
	SMTP_IN_BDAT,    /* receiving a BDAT chunk */
	SMTP_IN_CLOSING, /* flushing the last reply, then freed (hard deadline) */
	SMTP_IN_TLS_HANDSHAKE, /* after 220 to STARTTLS: OpenSSL reads, no command is read */
};

/* Whether the sender's domain publishes a DMARC policy (smtp_in_auth_sender_policy). */
enum sender_policy { SENDER_POLICY_UNKNOWN = 0, SENDER_POLICY_PENDING, SENDER_POLICY_YES, SENDER_POLICY_NO };

/* Why a session must end once its wait is over. */
enum smtp_in_doom {
	SMTP_IN_DOOM_NONE = 0,
	SMTP_IN_DOOM_TIMEOUT, /* say 421 (doom_text), then close */
	SMTP_IN_DOOM_GONE,    /* the peer is gone: free */
};

struct smtp_in;
/* A continuation: what to do when the asynchronous step answers. */
typedef void smtp_in_cont_fn(struct smtp_in *s, int result);
/* Withdraws the session from the step it waits on (server teardown only). */
typedef void smtp_in_cancel_fn(struct smtp_in *s);

/* A canned reply. */
struct canned {
	int code;
	const char *enh;
	const char *text;
};

struct smtp_in {
	const struct smtp_in_ctx *ctx;
	const struct cfg *cfg;   /* a reference, held for the session's life */
	struct bufferevent *bev;
	struct event *timer;     /* session deadline, data rate, closing deadline */
	uint64_t no;
	char ip[INET6_ADDRSTRLEN];
	char client_key[INET6_ADDRSTRLEN + 4]; /* what max_sessions_per_ip counts */
	char *helo;
	bool esmtp;
	enum smtp_in_state state;
	uint32_t errors;         /* toward max_errors */
	uint32_t forgiven;       /* refused recipients forgiven by stored messages (at most max_recipients) */
	bool discarding;         /* dropping the rest of an over-long command line */
	bool shutdown;           /* server stopping: close after this transaction */
	bool eof;                /* the peer sent FIN: finish what was pipelined, then close */
	bool out_full;           /* stopped reading until the client reads its replies */
	struct tls_info tls;     /* what STARTTLS negotiated; version empty: in clear */
	bool close_notified;     /* our TLS close_notify is on its way */
	uint32_t messages;
	int64_t deadline_ms;     /* max_session_time, monotonic */
	int64_t closing_deadline_ms;

	/* The wait state: one asynchronous step at a time. */
	smtp_in_cont_fn *wait_k;
	smtp_in_cancel_fn *wait_cancel;
	enum smtp_in_doom doomed;
	const char *doom_text;

	/* Back-pressure: paused while the spool has too much waiting for the disk. */
	struct spool_room_wait room;
	bool paused;
	int64_t paused_since_ms;

	/* The transaction. env collects what the spool will store. */
	struct spool_env env;
	struct htab rcpt_seen;   /* lower-cased addresses already in env */
	uint32_t rejected_rcpts; /* refused by policy in this transaction: settled when it ends */
	bool rcpt_refused;       /* some RCPT of this transaction failed (DATA then says 554) */
	struct spool_txn *tx;
	struct smtp_data_dec dec;
	struct msg_hdr *hdr;     /* Received: count, Message-ID, content hash */
	struct hdr_strip strip;  /* removes forged Authentication-Results on the way to the spool */
	struct auth_results auth;/* sender-authentication verdicts (iprev: the session's; the rest: this transaction's) */
	/* The checks under way (smtp_in_auth.c): non-NULL while their callback is owed. */
	struct sockaddr_storage peer;
	struct iprev_check *iprev;
	struct spf_check *spf;
	struct spf_check *spf_helo; /* the session's: from HELO/EHLO to the next one */
	struct dkim_verify *dkim;  /* the whole transaction (freed when it ends) */
	size_t dkim_held;          /* its header copy, held against max_pending_bytes */
	bool dkim_finishing;
	struct dmarc_check *dmarc;
	bool dmarc_started;
	struct dmarc_check *sender_policy_check; /* greylisting's exemption: does the sender's domain publish DMARC */
	enum sender_policy sender_policy;
	bool auth_waiting;         /* the wait state waits on the checks */
	struct event *auth_timer;  /* auth_timeout of the current wait */
	bool auth_episode;         /* a wait (RCPT, end of data) is under way: its clock runs */
	bool auth_expired;         /* it ran out: what did not answer is temperror */
	smtp_in_cont_fn *auth_then;
	int held_verb;             /* a command waiting on the checks, run again when they answer */
	char held_args[SMTP_PARAM_LINE_MAX + 1];
	size_t held_args_len;
	char spf_helo_name[SMTP_DOMAIN_MAX + 1]; /* the HELO name spf_helo / auth.helo is about */
	/* A RCPT waiting on a callout to the primary (smtp_in_cmd.c), then run again with its answer. */
	struct verify_req *verify;
	bool verify_have;
	enum verify_result verify_result;
	char verify_reply[256];     /* the primary's text, sanitised (policy_sanitise_reply) */
	/* The abuse defences at connect (smtp_in_connect.c). */
	struct dnsbl_check *dnsbl; /* non-NULL while its callback is owed */
	bool dnsbl_blocked;        /* refused at the first RCPT */
	bool dnswl_listed;         /* some dnswl zone lists the client (greylisting exempts it) */
	char dnsbl_zone[254];      /* the zone named in that refusal */
	struct event *greet_timer; /* non-NULL while greet_pause runs */
	struct buf dbuf;
	bool too_big;
	uint64_t bdat_left;
	bool bdat_last;
	const struct canned *bdat_error; /* the reply owed when the chunk is consumed */
	enum smtp_in_state before_bdat;
	bool bdat_used;
	/* Milters (smtp_in_milter.c): NULL until the first MAIL of a session with milters. */
	struct milter_sess *milter;
	struct milter_verdict mverdict; /* the last stage's verdict */
	struct buf mhead;          /* the header section as stored (our Received: first), until its blank line */
	size_t mhead_scan;
	bool mhead_done;           /* its fields went to the milters; the body streams */
	bool mhead_over;           /* longer than MILTER_HEAD_MAX: not kept, the default action decides */
	bool milter_discard;       /* discarded at MAIL or RCPT */
	size_t milter_held;        /* held with spool_hold_bytes */
	char mrcpt_addr[SMTP_PATH_MAX + 1]; /* the RCPT waiting on the milters */
	struct smtp_rcpt_params mrcpt_params;
	smtp_in_cont_fn *milter_then;
	/* min_data_rate: measured over one content phase (DATA, or one BDAT chunk). */
	int64_t content_start_ms;
	int64_t content_paused_ms;
	uint64_t content_bytes;
};

extern const struct canned SMTP_IN_TOO_BIG;

/* smtp_in.c: replies, ending, waiting */
void smtp_in_reply(struct smtp_in *s, int code, const char *enh, const char *f, ...) PRINTF_LIKE(4, 5);
/* A reply to bad input: counts toward max_errors, and may end the session. */
void smtp_in_reply_error(struct smtp_in *s, int code, const char *enh, const char *text);
void smtp_in_log_reject(struct smtp_in *s, const char *what, const char *value, int code, const char *enh,
			const char *text);
/* Adds n errors; at max_errors says 421 and closes. True if the session is closing. */
bool smtp_in_add_errors(struct smtp_in *s, uint32_t n);
/* Sends what is queued, then frees the session (within a hard deadline). Never frees at once. */
void smtp_in_close_after_reply(struct smtp_in *s);
/* 421 with text, and close; deferred to the end of a wait. */
void smtp_in_end_421(struct smtp_in *s, const char *enh, const char *text);
/* Enters the wait state: no input is read until smtp_in_resume. */
void smtp_in_wait(struct smtp_in *s, smtp_in_cont_fn *k, smtp_in_cancel_fn *cancel);
/* The step answered: runs the continuation, then whatever the wait deferred. */
void smtp_in_resume(struct smtp_in *s, int result);
void smtp_in_set_timeout(struct smtp_in *s, int64_t seconds);
/* Content starts (DATA, or a BDAT chunk): the data-rate clock starts. */
void smtp_in_content_started(struct smtp_in *s);
/* The session runs over TLS (STARTTLS done). */
bool smtp_in_is_encrypted(const struct smtp_in *s);
/*
 * STARTTLS accepted: replies 220 (or 454 when no TLS session can be made),
 * discards what the client pipelined after the command (it came in clear),
 * forgets HELO/EHLO and any transaction (RFC 3207 4.2) and starts the
 * handshake. Reading resumes as commands once the handshake is done.
 */
void smtp_in_start_tls(struct smtp_in *s);

/* smtp_in_cmd.c */
/* Runs one complete command line (CRLF removed). */
void smtp_in_command(struct smtp_in *s, const char *line, size_t n);
/* Ends the transaction; refusals count as errors unless a message was stored. True if closing. */
bool smtp_in_txn_end(struct smtp_in *s, bool stored);
void smtp_in_txn_reset(struct smtp_in *s);
/* A recipient accepted (once, whatever its case) / refused by policy (counted when the transaction ends). */
void smtp_in_add_rcpt(struct smtp_in *s, const char *addr, const struct smtp_rcpt_params *rp);
void smtp_in_refuse_rcpt(struct smtp_in *s, const char *logged, int code, const char *enh, const char *text);

/* smtp_in_data.c */
void smtp_in_txn_begin_content(struct smtp_in *s);
/* Consumes DATA or BDAT bytes from in; false when more input is needed. */
bool smtp_in_feed_data(struct smtp_in *s, struct evbuffer *in);
bool smtp_in_feed_bdat(struct smtp_in *s, struct evbuffer *in);
/* A BDAT chunk is complete (also for BDAT 0). */
void smtp_in_end_of_chunk(struct smtp_in *s);
/* Releases what content the transaction holds (not yet committed). */
void smtp_in_drop_content(struct smtp_in *s);

/* smtp_in_auth.c: the sender-authentication checks (map: auth_step.h) */
/*
 * Whether the MAIL FROM domain publishes a DMARC policy (greylisting
 * exempts a sender that passes SPF for one): looked up on first call;
 * PENDING until it answers (wait with smtp_in_auth_wait); forgotten with
 * the transaction. A null sender has none.
 */
enum sender_policy smtp_in_auth_sender_policy(struct smtp_in *s);
void smtp_in_auth_connect(struct smtp_in *s, const struct sockaddr *sa);
/* HELO/EHLO accepted (s->helo set): the HELO identity's SPF check starts (unless the name is the same). */
void smtp_in_auth_helo(struct smtp_in *s);
/*
 * A check would be abandoned while still running by RSET (MAIL FROM's) or
 * by a HELO/EHLO naming name (both). A cancelled check lives on until its
 * DNS answer, so such a command first waits for the checks.
 */
bool smtp_in_auth_would_abandon(const struct smtp_in *s, const char *helo_name);
void smtp_in_auth_mail(struct smtp_in *s, const struct mailaddr *from);
/* Some SPF check (MAIL FROM or HELO) has not answered yet. */
bool smtp_in_auth_spf_pending(const struct smtp_in *s);
/*
 * Waits on the checks: k runs once one of them answers, or once the wait
 * has lasted auth_timeout (then what did not answer is temperror). A wait
 * that k resumes and enters again keeps its deadline until
 * smtp_in_auth_wait_over.
 */
void smtp_in_auth_wait(struct smtp_in *s, smtp_in_cont_fn *k);
void smtp_in_auth_wait_over(struct smtp_in *s);
void smtp_in_auth_content_start(struct smtp_in *s);
void smtp_in_auth_feed(struct smtp_in *s, const void *p, size_t n);
/* Waits for every check of the message (DMARC started here), then runs then. */
void smtp_in_auth_end_of_data(struct smtp_in *s, smtp_in_cont_fn *then);
void smtp_in_auth_txn_reset(struct smtp_in *s);
void smtp_in_auth_free(struct smtp_in *s);
/* A check answered: a session waiting on the checks goes on (for checks run elsewhere, like smtp_in_connect.c). */
void smtp_in_auth_answered(struct smtp_in *s);

/* smtp_in_connect.c: the abuse defences at connect (issue 9) */
/* At connect: the DNS list check starts; the greeting (or its first line, under greet_pause) is queued. */
void smtp_in_connect_start(struct smtp_in *s, const struct sockaddr *sa);
void smtp_in_greet(struct smtp_in *s);
/* The greeting is still incomplete: it never will be (the session is closing). True if so. */
bool smtp_in_greet_abandon(struct smtp_in *s);
/* Input before the greeting was complete: 554 5.5.0 and closing. True if so. */
bool smtp_in_early_talker(struct smtp_in *s);
bool smtp_in_dnsbl_pending(const struct smtp_in *s);
/* Some dnswl zone listed the client (known once smtp_in_dnsbl_pending is false). */
bool smtp_in_dnswl_listed(const struct smtp_in *s);
/* A wait on the checks ran out: the DNS list verdict is taken from what answered. */
void smtp_in_dnsbl_expire(struct smtp_in *s);
/* At a RCPT (rcpt: as logged): a client the DNS lists block gets 554 5.7.1 and is closed. True if so. */
bool smtp_in_dnsbl_refuse(struct smtp_in *s, const char *rcpt);
/* At MAIL: past max_message_rate, 421 4.7.0 and closing. True if so. */
bool smtp_in_message_rate_exceeded(struct smtp_in *s);
void smtp_in_connect_free(struct smtp_in *s);

/* smtp_in_milter.c: true when the milters answer (the session waits; the reply comes from there). */
bool smtp_in_milter_mail(struct smtp_in *s);
bool smtp_in_milter_rcpt(struct smtp_in *s, const char *addr, const struct smtp_rcpt_params *rp);
void smtp_in_milter_content_start(struct smtp_in *s);
/* Bytes on their way to the spool (our Received: included). */
void smtp_in_milter_content(struct smtp_in *s, const void *p, size_t n);
/* The end of the message: waits for the milters' verdict and applies their changes, then runs then. */
bool smtp_in_milter_eom(struct smtp_in *s, smtp_in_cont_fn *then);
void smtp_in_milter_txn_reset(struct smtp_in *s);
void smtp_in_milter_free(struct smtp_in *s);

#endif
