/*
 * log: one line per event, "module: key=value ...", to stderr in the
 * foreground or syslog(3) when daemonized. Never message content.
 */
#ifndef MXV_LOG_H
#define MXV_LOG_H

#include "util.h"

enum log_level { LOG_LVL_ERR, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

void log_open_syslog(void);
void log_set_level(enum log_level lvl);
void log_msg(enum log_level lvl, const char *module, const char *fmt, ...) PRINTF_LIKE(3, 4);

#define log_err(mod, ...) log_msg(LOG_LVL_ERR, mod, __VA_ARGS__)
#define log_warn(mod, ...) log_msg(LOG_LVL_WARN, mod, __VA_ARGS__)
#define log_info(mod, ...) log_msg(LOG_LVL_INFO, mod, __VA_ARGS__)
#define log_debug(mod, ...) log_msg(LOG_LVL_DEBUG, mod, __VA_ARGS__)

/*
 * Copies s into out as a log-safe value: printable ASCII only, others as
 * \xNN, quotes and backslashes escaped, truncated with "..." at n-1 bytes.
 */
const char *log_safe(char *out, size_t n, const char *s, size_t len);

#endif
