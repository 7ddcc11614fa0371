/* Structured log lines on stderr: `level=info ts=2026-11-25T10:00:00.123Z event=ready k=v ...`,
 * one line per call, written with a single write(2) so that threads never interleave. */
#ifndef CORE_LOG_H
#define CORE_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Lines below level are dropped (default LOG_INFO). */
void log_set_level(enum log_level level);

/* event: a short snake_case name; fmt: the rest as `key=value` pairs (printf-style). */
void log_msg(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
