/*
 * milter: the client side of the milter protocol for one SMTP session, on
 * the event loop. A session (smtpd) makes one struct milter_sess when it
 * starts its first transaction; it holds one connection per configured
 * milter, made on first use and kept for the session's life.
 *
 * Stages that decide a reply (MAIL, RCPT, the end of message) are
 * asynchronous: the call returns at once and `done` runs later from the
 * event loop with the verdict, exactly once, unless milter_sess_cancel or
 * milter_sess_free comes first. Milters are asked in configuration order;
 * the first verdict other than "continue" ends the stage. Content (header
 * fields, body) is queued per milter and sent as the milter answers, never
 * waited on; what is queued counts in milter_sess_held, which the caller
 * holds against max_pending_bytes.
 *
 * A milter that cannot be reached, breaks the protocol or does not answer
 * within its timeout is closed and given up for the session: its verdict
 * is the default action (tempfail, or accept = as if it were not
 * configured). Every connection is freed with the session whatever the
 * milter does.
 */
#ifndef MXV_MILTER_H
#define MXV_MILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/util.h"
#include "milter_proto.h"

struct event_base;
struct milter_sess;

enum milter_default { MILTER_DEFAULT_TEMPFAIL = 0, MILTER_DEFAULT_ACCEPT };

/* What the configuration says (cfg owns the strings). */
struct milter_params {
	char *const *specs;          /* "inet:HOST:PORT" or "unix:PATH" */
	size_t n;
	enum milter_default dflt;
	int64_t connect_timeout_s;   /* connect and option negotiation */
	int64_t command_timeout_s;   /* each reply to connect, helo, mail, rcpt, header, eoh */
	int64_t content_timeout_s;   /* each reply to body, end of message */
	uint64_t max_message_size;   /* bounds a replaced body */
	/* Called (from the event loop or inside a milter_sess_* call) when milter_sess_held went down; may be NULL. */
	void (*held_changed)(void *arg);
	void *held_arg;
};

enum milter_action {
	MILTER_CONTINUE = 0, /* go on: nothing to say */
	MILTER_REJECT,       /* code/text set (5xx) */
	MILTER_TEMPFAIL,     /* code/text set (4xx) */
	MILTER_DISCARD,      /* 250, and the message is dropped */
};

/* The header changes of one message, name and value bytes: at most this much (else the milter failed). */
#define MILTER_EDIT_BYTES_MAX (64u << 10)
/* The header section a session keeps for milters (and their changes): at most this much. */
#define MILTER_HEAD_MAX (256u << 10)

/* A header change asked for at the end of the message. */
enum milter_edit_op { MILTER_EDIT_ADD, MILTER_EDIT_INSERT, MILTER_EDIT_CHANGE };
struct milter_edit {
	enum milter_edit_op op;
	uint32_t index;  /* INSERT: position (0 = first); CHANGE: n-th field of that name (1-based) */
	char *name;
	char *value;     /* CHANGE with "": delete */
};

struct milter_verdict {
	enum milter_action action;
	int code;
	char enh[8];
	char text[MILTER_TEXT_MAX + 1];
	const char *milter;   /* the spec that decided, for the log (NULL: none) */
	bool by_default;      /* the default action for a milter that failed */
};

/* What the end of the message collected besides the verdict (owned by the milter_sess until the next message). */
struct milter_changes {
	struct milter_edit *edits;
	size_t nedits;
	size_t edit_bytes;
	bool body_replaced;
	struct buf body;        /* the new body when body_replaced (as the milter sent it) */
	char *quarantine;       /* the reason, or NULL */
	uint32_t rcpt_changes;  /* addrcpt/delrcpt asked for: refused (logged), not carried out */
};

typedef void milter_done_fn(void *arg, const struct milter_verdict *v);

/* Facts about the session, for the connect and helo commands and the macros. */
struct milter_conn_info {
	const char *client_addr;   /* "192.0.2.1" */
	const char *client_name;   /* "[192.0.2.1]" when unknown */
	int family;                /* AF_INET, AF_INET6 */
	uint16_t client_port;
	const char *hostname;      /* j, {daemon_name} */
	const char *helo;          /* NULL before HELO */
	const char *tls_version;   /* "" in clear */
	const char *queue_id;      /* {i}: the transaction's id, or "" */
};

struct milter_sess *milter_sess_new(struct event_base *base, const struct milter_params *p);
/* Frees everything; no callback runs after it. */
void milter_sess_free(struct milter_sess *ms);
/* Withdraws the pending stage's callback (server teardown); the session is freed soon after. */
void milter_sess_cancel(struct milter_sess *ms);

/*
 * MAIL FROM: sends, to each milter, what it has not seen (connect, HELO
 * with the current name), then the sender ("<a@b>" and ESMTP parameters).
 */
void milter_sess_mail(struct milter_sess *ms, const struct milter_conn_info *ci, const char *const *args, size_t nargs,
		      milter_done_fn *done, void *arg);
void milter_sess_rcpt(struct milter_sess *ms, const struct milter_conn_info *ci, const char *const *args, size_t nargs,
		      milter_done_fn *done, void *arg);
/* Content: queued, never waited on. name/value as in the message (value without the CRLF at its end). */
void milter_sess_data(struct milter_sess *ms, const struct milter_conn_info *ci);
void milter_sess_header(struct milter_sess *ms, const char *name, size_t nlen, const char *value, size_t vlen);
void milter_sess_eoh(struct milter_sess *ms);
void milter_sess_body(struct milter_sess *ms, const void *p, size_t n);
/* The end of the message: the verdict, and the changes in *milter_sess_changes. */
void milter_sess_eom(struct milter_sess *ms, const struct milter_conn_info *ci, milter_done_fn *done, void *arg);
const struct milter_changes *milter_sess_changes(const struct milter_sess *ms);
/* The message is over (stored, refused, RSET): milters are told to forget it (ABORT). */
void milter_sess_end_message(struct milter_sess *ms);
/* Bytes of content and changes held for milters (the caller counts them as pending). */
size_t milter_sess_held(const struct milter_sess *ms);

#endif
