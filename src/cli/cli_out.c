/*
 * cli_out: see cli_out.h. Moved out of queue_cli.c so that every command
 * escapes the same way.
 */
#include "cli_out.h"

#include <string.h>

#include "base/util.h"

/*
 * Text from peers (addresses, replies) reaches an administrator's terminal:
 * every control, C1 control (U+0080..U+009F) and byte that is not UTF-8 is
 * escaped, "\u00XX" in JSON and "\xXX" in the text listing; well-formed
 * UTF-8 passes through (JSON text is UTF-8).
 */
void cli_put_escaped(FILE *out, const char *s, bool json)
{
	cli_put_escaped_n(out, s ? s : "", s ? strlen(s) : 0, json);
}

void cli_put_escaped_n(FILE *out, const void *s, size_t n, bool json)
{
	cli_put_escaped_mode(out, s, n, json ? CLI_ESC_JSON : CLI_ESC_TEXT);
}

void cli_put_escaped_mode(FILE *out, const void *s, size_t n, enum cli_esc mode)
{
	const unsigned char *p = s;
	bool json = mode == CLI_ESC_JSON;
	for (size_t i = 0; i < n;) {
		if (mode == CLI_ESC_LINES && (p[i] == '\t' || p[i] == '\n' || (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n'))) {
			if (p[i] != '\r')
				fputc(p[i], out); /* a message's own line ends and tabs, as lines on the terminal */
			i++;
			continue;
		}
		size_t len = p[i] >= 0x80 ? utf8_seq_len(p + i, n - i) : 1;
		bool c1 = len == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0;
		if (len > 1 && !c1) {
			fwrite(p + i, 1, len, out);
			i += len;
			continue;
		}
		unsigned c = c1 ? p[i + 1] : p[i];
		i += c1 ? 2 : 1;
		if (json && (c == '"' || c == '\\'))
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(out, json ? "\\u%04x" : "\\x%02x", c);
		else
			fputc((int)c, out);
	}
}

void cli_json_str(FILE *out, const char *s)
{
	fputc('"', out);
	cli_put_escaped(out, s, true);
	fputc('"', out);
}
