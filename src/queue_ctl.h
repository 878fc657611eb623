/*
 * queue_ctl: the control socket's queue commands (`mxvault queue hold,
 * release, delete, flush, extend`): each request's words parsed, the queue
 * manager asked (delivery/qmgr.h, "what the administrator asks"), and the
 * answer given in text or, with --json, as one JSON object. A change to a
 * message is answered once it is durable. The read-only commands (list,
 * show, export) read the spool in the command line, daemon or not.
 */
#ifndef MXV_QUEUE_CTL_H
#define MXV_QUEUE_CTL_H

struct ctl;
struct qmgr;

/* Registers the commands; q outlives ctl's calls (the daemon closes ctl first). */
void queue_ctl_register(struct ctl *ctl, struct qmgr *q);

#endif
