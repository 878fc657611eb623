/*
 * drill_cli: `mxvault drill DOMAIN --to ADDRESS -c FILE [--timeout DURATION]
 * [--json]`, a failover drill on the live set-up (the daemon's side is
 * src/drill.c, which has the control protocol; docs/operations.md,
 * "Failover drills"). It asks the running daemon to hold delivery to
 * DOMAIN, sends a tagged test message to the daemon's first listen address
 * over SMTP, tells the daemon its queue id, and prints each step the daemon
 * reports (queued, released, deferred, delivered) with the time since the
 * start, then the verdict. Interrupted or killed at any point, it leaves
 * nothing held: the hold lives only as long as its control connection.
 *
 * Exit status: 0 the primary accepted the test message (PASS), 1 it did not
 * within the timeout, or refused it, or the backup refused it (FAIL), 64
 * bad usage, 65 the running daemon does not back up DOMAIN, 69 no daemon
 * answers on the control socket, 75 a drill of DOMAIN is already running,
 * 78 a bad configuration file.
 */
#ifndef MXV_DRILL_CLI_H
#define MXV_DRILL_CLI_H

/* argv[0] is "drill". Returns the exit status. */
int drill_main(int argc, char **argv);

#endif
