/*
 * util: allocation that aborts on failure, the flat byte buffer used to build
 * spool records, bounded formatting, clocks, and a small hash table.
 * Everything here is pure (no I/O beyond abort on out-of-memory).
 */
#ifndef MXV_UTIL_H
#define MXV_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MUST_CHECK __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* A contiguous growable byte buffer. Zero-initialised is empty and valid. */
struct buf {
	unsigned char *data;
	size_t len;
	size_t cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_append_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);
/* Returns the contents as a NUL-terminated string (the NUL is not counted). */
const char *buf_cstr(struct buf *b);

/* snprintf that reports truncation: 0, or -ENOSPC when out was too small. */
int fmt(char *out, size_t n, const char *f, ...) PRINTF_LIKE(3, 4) MUST_CHECK;

int64_t clock_mono_ms(void);
int64_t clock_wall_s(void);

/* "30s 15m 4h 5d" (a bare number is seconds): 0 or -EINVAL. */
int parse_duration(const char *s, int64_t *secs) MUST_CHECK;
/* "512K 50M 1G" (a bare number is bytes): 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *bytes) MUST_CHECK;
/* Whole number in [min, max]: 0 or -EINVAL. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out) MUST_CHECK;
int parse_bool(const char *s, bool *out) MUST_CHECK;
/* Writes all n bytes (a blocking fd; EINTR retried): 0 or -errno. */
int fd_write_all(int fd, const void *p, size_t n) MUST_CHECK;

void ascii_lower(char *s, size_t n);
/*
 * A host name (RFC 1123 2.1, RFC 5321 4.1.2 Domain): labels of 1-63 letters,
 * digits and inner hyphens, at most 253 octets, and a last label that is
 * not all digits (that would be an IPv4 address). No trailing dot.
 */
bool is_host_name(const char *s, size_t n);
/*
 * Length of the well-formed UTF-8 sequence at s (RFC 3629 4: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. n > 0.
 */
size_t utf8_seq_len(const unsigned char *s, size_t n);
bool ascii_ieq(const char *a, size_t alen, const char *b, size_t blen);

/*
 * Open-addressing hash table keyed by byte strings or by 64-bit integers.
 * Values are opaque pointers; keys given as strings are copied. String keys
 * are hashed with a keyed hash (SipHash, random key per process), so keys
 * chosen by a peer cannot be made to collide. Integer keys must be our own
 * (queue ids, segment numbers): they are only mixed, not keyed.
 */
struct htab_slot;
struct htab {
	struct htab_slot *slots;
	size_t cap;   /* power of two or 0 */
	size_t count;
	size_t tombs;
};

void *htab_get_str(const struct htab *h, const char *key, size_t n);
void htab_put_str(struct htab *h, const char *key, size_t n, void *val);
void *htab_del_str(struct htab *h, const char *key, size_t n);
void *htab_get_u64(const struct htab *h, uint64_t key);
void htab_put_u64(struct htab *h, uint64_t key, void *val);
void *htab_del_u64(struct htab *h, uint64_t key);
/* Calls fn for every entry; fn must not modify the table. */
void htab_each(const struct htab *h, void (*fn)(void *val, void *arg), void *arg);
/*
 * Every value, in a new array (free it) of *n entries: for walks whose step
 * may change the table (an entry that removes itself as it is told).
 */
void **htab_values(const struct htab *h, size_t *n);
void htab_free(struct htab *h);

uint32_t crc32_of(uint32_t crc, const void *p, size_t n);

#endif
