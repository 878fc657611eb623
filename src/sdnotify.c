/*
 * sdnotify: see sdnotify.h. A failed notification is logged at debug level
 * and otherwise ignored: the manager's view is not worth stopping mail for.
 * The socket write never blocks the loop (a datagram to a local socket;
 * sd_notify sends with MSG_NOSIGNAL and does not wait).
 */
#include "sdnotify.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "base/log.h"

static void send_state(const char *state)
{
	int rc = sd_notify(0, state);
	if (rc < 0)
		log_debug("mxvault", "sd_notify: %s", strerror(-rc));
}

void notify_ready(const char *fmt, ...)
{
	char status[256], state[300];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(status, sizeof(status), fmt, ap);
	va_end(ap);
	snprintf(state, sizeof(state), "READY=1\nSTATUS=%s", status);
	send_state(state);
}

/* systemd 253 and later want the time of the reload with it (Type=notify-reload); older ones ignore it. */
void notify_reloading(void)
{
	char state[128];
	snprintf(state, sizeof(state), "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=%lld",
		 (long long)clock_mono_ms() * 1000);
	send_state(state);
}

void notify_stopping(void)
{
	send_state("STOPPING=1\nSTATUS=stopping: finishing messages in progress");
}
