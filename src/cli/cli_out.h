/*
 * cli_out: printing text that came from outside (peers, DNS, the spool) to
 * an administrator's terminal or to a JSON reader, for every command.
 */
#ifndef MXV_CLI_OUT_H
#define MXV_CLI_OUT_H

#include <stdbool.h>
#include <stdio.h>

/*
 * s, escaped: every control, C1 control (U+0080..U+009F) and byte that is
 * not UTF-8 becomes "\u00XX" in JSON and "\xXX" in text; well-formed
 * UTF-8 passes through (JSON text is UTF-8). NULL prints as "".
 */
void cli_put_escaped(FILE *out, const char *s, bool json);
/* The same for n bytes that may hold NULs (each becomes "\x00"). */
void cli_put_escaped_n(FILE *out, const void *s, size_t n, bool json);
/*
 * CLI_ESC_LINES: text in which CRLF, LF and TAB stay line ends and tabs (a
 * message's header section or body on a terminal); the rest as CLI_ESC_TEXT.
 */
enum cli_esc { CLI_ESC_TEXT, CLI_ESC_JSON, CLI_ESC_LINES };
void cli_put_escaped_mode(FILE *out, const void *s, size_t n, enum cli_esc mode);
/* s as a JSON string, quotes included. */
void cli_json_str(FILE *out, const char *s);

#endif
