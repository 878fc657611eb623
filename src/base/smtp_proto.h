/*
 * smtp_proto: the facts of the SMTP protocol that both sides share, the
 * server (smtpd/) and the client (delivery/), and that the spool stores:
 * RFC 5321 size limits, the BODY and RET parameters and the DSN NOTIFY
 * bits. Constants only; no code.
 */
#ifndef MXV_SMTP_PROTO_H
#define MXV_SMTP_PROTO_H

#define SMTP_CMD_LINE_MAX 512      /* RFC 5321 4.5.3.1.4, including CRLF */
#define SMTP_PARAM_LINE_MAX 1536   /* MAIL/RCPT with ESMTP parameters (RFC 1869 4.1.2, RFC 3461) */
#define SMTP_LOCAL_MAX 64          /* RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX 255        /* RFC 5321 4.5.3.1.2 */
#define SMTP_PATH_MAX 256          /* RFC 5321 4.5.3.1.3, including the angle brackets */
#define SMTP_ENVID_MAX 100         /* RFC 3461 4.4 */
#define SMTP_ORCPT_MAX 500         /* RFC 3461 4.2 */
#define SMTP_TEXT_LINE_MAX 1000    /* RFC 5321 4.5.3.1.6, including CRLF */

enum smtp_body { SMTP_BODY_UNSPEC = 0, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };
enum smtp_ret { SMTP_RET_UNSPEC = 0, SMTP_RET_FULL, SMTP_RET_HDRS };

#define SMTP_NOTIFY_NEVER 1u
#define SMTP_NOTIFY_SUCCESS 2u
#define SMTP_NOTIFY_FAILURE 4u
#define SMTP_NOTIFY_DELAY 8u

#endif
