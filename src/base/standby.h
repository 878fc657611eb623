/*
 * standby: whether the primary of each domain with `accept =
 * when-primary-down` answers (issue 9, standby mode), shared by the two
 * sides of the daemon on its one thread: the queue manager writes it from
 * its probes and deliveries (standby_set), the SMTP server reads it at RCPT
 * (standby_primary_up: while the primary answers, mail for the domain gets
 * 451 4.7.0 and goes there instead). A domain starts "down": until a probe
 * has reached the primary, mail is accepted, so nothing is refused on a
 * guess. Each change of state is logged. No I/O; one entry per domain.
 */
#ifndef MXV_STANDBY_H
#define MXV_STANDBY_H

#include <stdbool.h>

struct standby;

struct standby *standby_new(void);
void standby_free(struct standby *sb);
/* What the latest probe or delivery found: up (a session opened) or down. why: for the log, or NULL. */
void standby_set(struct standby *sb, const char *domain, bool up, const char *why);
/* True while the primary of domain (lower case) is known to answer. NULL sb: never. */
bool standby_primary_up(const struct standby *sb, const char *domain);

#endif
