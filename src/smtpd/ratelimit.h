/*
 * ratelimit: counts events per client in fixed windows, in a table of
 * bounded size (the abuse defences at connect, issue 9): connections and
 * messages per client address, and the clients that passed greet_pause.
 * Owned by smtp_server, shared by its sessions through smtp_in_ctx.
 *
 * Memory: at most cap entries. A full table forgets its least recently
 * used entry first, and an entry whose window is over is forgotten when it
 * is next looked at: a flood of distinct addresses costs the memory of cap
 * entries and makes the table forget old counts, never grow. Time is
 * passed in (seconds), so the table is pure and testable.
 */
#ifndef MXV_RATELIMIT_H
#define MXV_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

struct ratelimit;

struct ratelimit *ratelimit_new(size_t cap);
void ratelimit_free(struct ratelimit *t);
/*
 * One event of key at now, in a window of period seconds that starts with
 * the first event of key (or the first after the last window ended). The
 * count in the window, this event included.
 */
uint32_t ratelimit_hit(struct ratelimit *t, const char *key, int64_t period, int64_t now);
/* The count of key's current window (0 if none); no event is added. */
uint32_t ratelimit_count(struct ratelimit *t, const char *key, int64_t period, int64_t now);
size_t ratelimit_size(const struct ratelimit *t);

#endif
