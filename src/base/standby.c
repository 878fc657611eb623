/*
 * standby: the table behind standby.h, a hash of domain -> up or down.
 * Invariants: a domain absent from the table has not been probed yet and
 * counts as down; only standby_set adds entries (one per standby domain, so the table stays as small as the
 * configuration). Error policy: nothing fails (allocation aborts).
 */
#include "standby.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct standby {
	struct htab state; /* domain -> UP or DOWN; absent: not probed yet (taken as down) */
};

static int up_mark, down_mark;
#define UP ((void *)&up_mark)
#define DOWN ((void *)&down_mark)

struct standby *standby_new(void)
{
	return xcalloc(1, sizeof(struct standby));
}

void standby_free(struct standby *sb)
{
	if (!sb)
		return;
	htab_free(&sb->state);
	free(sb);
}

void standby_set(struct standby *sb, const char *domain, bool up, const char *why)
{
	if (!sb)
		return;
	void *was = htab_get_str(&sb->state, domain, strlen(domain));
	if (was == (up ? UP : DOWN))
		return;
	htab_put_str(&sb->state, domain, strlen(domain), up ? UP : DOWN);
	char safe[300];
	if (up)
		log_info("standby", "domain=%s primary=up: its mail now gets 451 4.7.0, deliver to the primary", domain);
	else
		log_warn("standby", "domain=%s primary=down%s%s%s: accepting its mail", domain, why ? " reason=\"" : "",
			 why ? log_safe(safe, sizeof(safe), why, strlen(why)) : "", why ? "\"" : "");
}

bool standby_primary_up(const struct standby *sb, const char *domain)
{
	return sb && htab_get_str(&sb->state, domain, strlen(domain)) == UP;
}
