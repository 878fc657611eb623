/*
 * dest: see dest.h. Owns nothing but the caller's struct dest_policy;
 * called by the queue manager (qmgr.c, qmgr_conn.c) and by the unit tests
 * with a fake clock. Invariants: backoff_s is 0 when not down, else within
 * [retry_min, retry_max]; the window and the guard are never both on; the
 * guard is only ever on with guard_percent set. No errors: every event has
 * an answer.
 */
#include "dest.h"

#include <string.h>

void dest_policy_init(struct dest_policy *dp, const struct dest_params *p)
{
	memset(dp, 0, sizeof(*dp));
	dp->p = *p;
	dp->window = p->guard_percent > 0;
}

bool dest_may_connect(const struct dest_policy *dp, int64_t now_ms)
{
	return !dp->down || now_ms >= dp->next_try_ms;
}

void dest_retry_now(struct dest_policy *dp)
{
	dp->next_try_ms = 0; /* the backoff itself stays: a failure now doubles it as any other would */
}

bool dest_attempt_failed(struct dest_policy *dp, int64_t now_ms)
{
	if (dp->down && now_ms < dp->next_try_ms)
		return false;
	dp->down = true;
	int64_t b = dp->backoff_s ? dp->backoff_s * 2 : dp->p.retry_min_s;
	dp->backoff_s = b > dp->p.retry_max_s ? dp->p.retry_max_s : b;
	dp->next_try_ms = now_ms + dp->backoff_s * 1000;
	return true;
}

bool dest_session_up(struct dest_policy *dp)
{
	if (!dp->down)
		return false;
	dp->down = false;
	dp->backoff_s = 0;
	dp->next_try_ms = 0;
	if (dp->p.guard_percent && !dp->guard) {
		/* A recovery: judge the first recipients before bouncing any. */
		dp->window = true;
		dp->win_total = dp->win_5xx = 0;
	}
	return true;
}

/* Counts a reply in the window; decides when the sample is big enough. */
static enum dest_guard_change window_count(struct dest_policy *dp, int code, int64_t now_s)
{
	if (!dp->window)
		return DEST_GUARD_SAME;
	dp->win_total++;
	if (code / 100 == 5)
		dp->win_5xx++;
	if (dp->win_total < DEST_GUARD_SAMPLE)
		return DEST_GUARD_SAME;
	dp->window = false;
	if ((uint64_t)dp->win_5xx * 100 > (uint64_t)dp->p.guard_percent * dp->win_total) {
		dp->guard = true;
		dp->guard_until = now_s + dp->p.guard_hold_s;
		return DEST_GUARD_ON;
	}
	return DEST_GUARD_RELEASE;
}

enum dest_verdict dest_judge(struct dest_policy *dp, int code, int64_t now_s, enum dest_guard_change *change)
{
	*change = window_count(dp, code, now_s);
	if (code / 100 == 2) {
		if (dp->guard) {
			dp->guard = false; /* the primary accepts mail again */
			*change = DEST_GUARD_OFF;
		}
		return DEST_SENT;
	}
	if (code / 100 == 5)
		return dest_holds_bounces(dp) ? DEST_HOLD : DEST_BOUNCE;
	return DEST_DEFER;
}

bool dest_holds_bounces(const struct dest_policy *dp)
{
	return dp->window || dp->guard;
}

bool dest_guard_expired(struct dest_policy *dp, int64_t now_s)
{
	if (!dp->guard || now_s < dp->guard_until)
		return false;
	dp->guard = false;
	return true;
}

bool dest_window_idle(struct dest_policy *dp, bool busy)
{
	if (!dp->window || !dp->win_total || busy)
		return false;
	dp->window = false;
	return true;
}

bool dest_log_allowed(struct dest_policy *dp, int64_t now_ms, uint32_t *suppressed)
{
	*suppressed = 0;
	if (dp->log_lines == 0 || now_ms - dp->log_window_ms >= DEST_LOG_WINDOW_MS) {
		dp->log_window_ms = now_ms;
		dp->log_lines = 0;
	}
	if (dp->log_lines >= DEST_LOG_BURST) {
		dp->log_suppressed++;
		return false;
	}
	dp->log_lines++;
	*suppressed = dp->log_suppressed;
	dp->log_suppressed = 0;
	return true;
}

bool dest_is_settled(const struct dest_policy *dp)
{
	return !dp->guard;
}
