/*
 * queue_cmd: `mxvault queue VERB ...`, every verb but list: show and export
 * read the spool (queue_show.c); hold, release, delete, flush and extend ask
 * the running daemon on its control socket (ctl_client.h), which says so
 * (exit 69) when no daemon answers.
 */
#ifndef MXV_QUEUE_CMD_H
#define MXV_QUEUE_CMD_H

/* argv[0] is "queue", argv[1] the verb. Returns the exit status; usage errors print usage and return 64. */
int queue_cmd(int argc, char **argv, const char *usage_text);

#endif
