/*
 * qmgr_drill: the queue manager's part in a failover drill (src/drill.c
 * runs the drill, cli/drill_cli.c is the command): a hold of one
 * destination's delivery, and whether a message waits for it.
 *
 * The hold is a flag on the destination, in memory only, so that nothing
 * a drill does can outlive the daemon: a restart forgets it. While it is
 * set, the scheduler starts no connection for the destination (wants_conn)
 * and a connection already open takes no further job from it
 * (conn_next_job); probes go on, so what is known of the primary stays
 * true, and a held destination is never forgotten as idle (dest_is_idle),
 * or the flag would go with it. Expiry and delay warnings go on as usual:
 * a drill lasts minutes. Main thread only.
 */
#include "qmgr_int.h"

#include <errno.h>
#include <string.h>

/*
 * The destination of domain, or NULL. Only a backed-up domain may be held
 * (configured: make it if need be); a hold is looked up by name alone, since
 * a reload may drop the domain while it is held, and a release that asked
 * the configuration would leave that hold on for good (the domain's mail
 * held until a restart, and every later drill of it refused).
 */
static struct dest *drill_dest(struct qmgr *s, const char *domain, bool configured)
{
	char name[256];
	if (fmt(name, sizeof(name), "%s", domain) < 0)
		return NULL;
	ascii_lower(name, strlen(name));
	if (configured && !cfg_find_domain(s->cfg, name))
		return NULL;
	struct dest *d = htab_get_str(&s->dests, name, strlen(name));
	return d || !configured ? d : qmgr_dest_get(s, name);
}

int qmgr_drill_hold(struct qmgr *s, const char *domain)
{
	struct dest *d = drill_dest(s, domain, true);
	if (!d)
		return -ENOENT;
	if (d->drill_hold)
		return -EBUSY;
	d->drill_hold = true;
	return 0;
}

void qmgr_drill_release(struct qmgr *s, const char *domain)
{
	struct dest *d = drill_dest(s, domain, false);
	if (!d || !d->drill_hold)
		return;
	d->drill_hold = false;
	qmgr_dest_kick(d);
}

bool qmgr_drill_is_queued(struct qmgr *s, const char *domain, uint64_t msg_id)
{
	const struct dest *d = drill_dest(s, domain, false);
	for (const struct job *j = d ? d->jobs : NULL; j; j = j->dnext)
		if (j->out.m->id == msg_id)
			return true;
	return false;
}
