/*
 * dest: the delivery policy of one destination (a recipient domain, or the
 * sender domain a DSN goes to), decided on a clock the caller passes in:
 * when it may be connected to, how it backs off while it fails (and so is
 * down: the queue manager probes it), the bounce guard that holds bounces
 * when a primary comes back refusing everything, and how often its
 * failures are logged. Pure: no I/O, no timers, no allocation. The queue
 * manager keeps one per destination beside its queues and turns the
 * answers into events.
 *
 * Two clocks: now_ms is monotonic (backoff gates, log windows), now_s is
 * wall-clock seconds (the guard's hold, which the log states as a time).
 */
#ifndef MXV_DEST_H
#define MXV_DEST_H

#include <stdbool.h>
#include <stdint.h>

/* Recipients judged after a recovery before the bounce guard decides. */
#define DEST_GUARD_SAMPLE 10
/* Failure lines logged per destination and window; the rest are counted. */
#define DEST_LOG_BURST 20
#define DEST_LOG_WINDOW_MS 10000

struct dest_params {
	int64_t retry_min_s, retry_max_s; /* backoff bounds */
	uint32_t guard_percent;           /* 5xx share that turns the guard on; 0: no guard */
	int64_t guard_hold_s;             /* how long the guard holds at most */
};

struct dest_policy {
	struct dest_params p;
	bool down;              /* an outage: no new connection before next_try_ms, probes find the end */
	int64_t backoff_s;
	int64_t next_try_ms;
	bool window;            /* judging the first recipients after a recovery */
	uint32_t win_total, win_5xx;
	bool guard;             /* holding 5xx as deferred, no bounces */
	int64_t guard_until;    /* wall seconds */
	int64_t log_window_ms;  /* start of the current log window */
	uint32_t log_lines, log_suppressed;
};

/* What a recipient's reply means at this destination now. */
enum dest_verdict {
	DEST_SENT,     /* 2xx */
	DEST_BOUNCE,   /* 5xx, and nothing holds it: a bounce */
	DEST_HOLD,     /* 5xx while the window or the guard holds bounces: deferred */
	DEST_DEFER,    /* 4xx, or no reply */
};

/* What judging that reply did to the bounce guard. */
enum dest_guard_change {
	DEST_GUARD_SAME,
	DEST_GUARD_ON,       /* the window found most recipients refused: hold */
	DEST_GUARD_RELEASE,  /* the window closed without finding that: held mail flows now */
	DEST_GUARD_OFF,      /* the guard was on and a recipient was accepted: held mail flows now */
};

/* A new destination starts with the guard's window open (if the guard is on). */
void dest_policy_init(struct dest_policy *dp, const struct dest_params *p);

/* May a new connection start? Not while down and the backoff runs. */
bool dest_may_connect(const struct dest_policy *dp, int64_t now_ms);
/* `queue flush`: the next attempt may start now, whatever the backoff said. */
void dest_retry_now(struct dest_policy *dp);

/*
 * An attempt failed before a session was established (no address greeted,
 * a refusal, a protocol error or timeout before EHLO completed, TLS
 * required and missing), or the destination said 421. Returns true when it
 * counts: it starts the outage or fails a retry made once the backoff had
 * run out, and the backoff doubles (retry_min .. retry_max). Attempts that
 * were already under way when the outage began do not count twice.
 */
bool dest_attempt_failed(struct dest_policy *dp, int64_t now_ms);

/* A session was established. True when that ends an outage: send everything now. */
bool dest_session_up(struct dest_policy *dp);

/* Judges one recipient's reply (code 0: none) and feeds the guard's window. */
enum dest_verdict dest_judge(struct dest_policy *dp, int code, int64_t now_s, enum dest_guard_change *change);

/* True while 5xx replies are held back (the window is open or the guard is on). */
bool dest_holds_bounces(const struct dest_policy *dp);

/* The guard's hold ran out: true when that turned it off (held mail flows). */
bool dest_guard_expired(struct dest_policy *dp, int64_t now_s);

/*
 * Nothing is queued or connected, and the window is open with too few
 * recipients to judge: it closes (true), so the held recipients are retried
 * now and bounce if refused again.
 */
bool dest_window_idle(struct dest_policy *dp, bool busy);

/*
 * May a failure line be logged now? At most DEST_LOG_BURST per window;
 * *suppressed is set to the lines held back since the last one logged (to
 * be reported once, then reset).
 */
bool dest_log_allowed(struct dest_policy *dp, int64_t now_ms, uint32_t *suppressed);

/* No outage, no guard to remember: the state can be forgotten. */
bool dest_is_settled(const struct dest_policy *dp);

#endif
