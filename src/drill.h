/*
 * drill: the daemon's side of `mxvault drill DOMAIN --to ADDRESS` (the
 * command line's side is cli/drill_cli.c; docs/operations.md, "Failover
 * drills"). It registers two commands on the control socket:
 *
 *   drill start DOMAIN TAG SECONDS
 *       holds delivery to DOMAIN (qmgr_drill_hold: in memory only) and
 *       answers with the drill's steps as they happen, one line each,
 *       "NAME TEXT": hold, queued, release, deferred (any number),
 *       delivered or bounced, and last "verdict PASS" (exit 0) or
 *       "verdict FAIL: why" (exit 1). SECONDS bounds the whole drill.
 *   drill queued TAG ID
 *       the test message of drill TAG was taken as queue id ID (the
 *       command line sent it over SMTP): the drill checks that it waits for
 *       DOMAIN, releases the hold and watches the message's delivery.
 *
 * The hold lives as long as the start call and no longer: it is released
 * when the message is queued, at the drill's end or timeout, and at once
 * when the call's client goes away (the command interrupted or killed) or
 * the daemon stops. One drill per domain at a time.
 */
#ifndef MXV_DRILL_H
#define MXV_DRILL_H

struct event_base;
struct qmgr;
struct ctl;
struct drills;

/* Registers the drill commands on ctl and observes q; both outlive the result until drills_free. */
struct drills *drills_new(struct event_base *base, struct qmgr *q, struct ctl *ctl);
/* After ctl_close (which ends the drills still running) and qmgr_free. NULL is ignored. */
void drills_free(struct drills *ds);

#endif
