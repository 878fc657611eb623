/*
 * check_cli: `mxvault check DOMAIN [--probe] [--json] [-c FILE]
 * [--resolver IP[:PORT]] [--port N] [--timeout SECS]`: parses the command
 * line, runs check/ and prints its report as a table with a fix under each
 * problem, or as JSON. Exit 0: all ok, 1: warnings, 2: errors; 64: bad
 * usage, 78: bad configuration.
 */
#ifndef MXV_CHECK_CLI_H
#define MXV_CHECK_CLI_H

/* argv[0] is "check". */
int check_cli(int argc, char **argv);

#endif
