/*
 * smtp_send: a small blocking SMTP client for the command line (`mxvault
 * drill` sends its test message with it): one message to one recipient,
 * over plain SMTP (no STARTTLS: it talks to this host's own listener),
 * every wait bounded by one deadline. Never used in the daemon.
 */
#ifndef MXV_SMTP_SEND_H
#define MXV_SMTP_SEND_H

#include <stdint.h>
#include <sys/socket.h>

#include "base/util.h"

struct smtp_send_req {
	const struct sockaddr *addr;
	socklen_t addrlen;
	const char *helo;
	const char *sender;    /* "" for the null sender <> */
	const char *rcpt;
	const char *data;      /* the message, CRLF line ends, no line starting with "." */
	int64_t deadline_ms;   /* clock_mono_ms() time by which it is all over */
};

/*
 * The outcome: code is the last reply's (0: none came: a connection error
 * or the deadline), reply its text on one line ("250 2.0.0 Ok: queued as
 * ID"), or why nothing came; stage what it answered.
 */
struct smtp_send_result {
	int code;
	char reply[512];
	const char *stage; /* "greeting", "EHLO", ... (smtp_cmd_name), or "connect" */
};

/* 0 when the message was accepted (a 250 to the final dot), else -1; res says what happened. */
int smtp_send(const struct smtp_send_req *req, struct smtp_send_result *res) MUST_CHECK;

#endif
