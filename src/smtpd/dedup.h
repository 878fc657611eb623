/*
 * dedup: recognises a message sent again after a lost 250 (same
 * Message-ID, sender, recipients and content) within dedup_window, so it is
 * accepted but delivered once. The receive side asks before committing and
 * records after a commit; keys live in memory, and the keys of messages
 * still queued come back from the spool at start (their envelopes keep it).
 */
#ifndef MXV_DEDUP_H
#define MXV_DEDUP_H

#include <stdbool.h>
#include <stdint.h>

#include "spool/spool_rec.h"

#define DEDUP_KEY_LEN 32

struct dedup;

struct dedup *dedup_new(int64_t window_s);
void dedup_free(struct dedup *d);
/*
 * SHA-256 of Message-ID, sender, the recipients (sorted, lower-case) and the
 * SHA-256 of the whole content, headers included: an earlier copy with
 * altered headers is another message and must not suppress this one.
 */
void dedup_key(const char *message_id, const struct spool_env *env, const unsigned char content_sha256[32],
	       unsigned char key[DEDUP_KEY_LEN]);
/* True (and *orig set) if key was recorded less than the window ago. */
bool dedup_find(struct dedup *d, const unsigned char key[DEDUP_KEY_LEN], int64_t now, uint64_t *orig);
void dedup_add(struct dedup *d, const unsigned char key[DEDUP_KEY_LEN], uint64_t id, int64_t at);

#endif
