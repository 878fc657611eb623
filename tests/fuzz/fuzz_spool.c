// fuzz-sources: src/spool/spool.c src/spool/spool_compact.c src/spool/spool_dir.c src/spool/spool_io.c src/spool/spool_replay.c src/spool/spool_rec.c src/base/util.c src/base/log.c
/*
 * Fuzz target for the spool format and recovery: the input is decoded as a
 * record stream (v2 with a fixed test key, and v1), as an envelope, as
 * updates, and finally written as a segment file that a read-only replay
 * must survive (recovery reads bytes a crash or a bad disk left behind, so
 * they are hostile too). A mutated v2 record almost never verifies, which
 * would keep the fuzzer out of replay's logic, so the input is replayed a
 * second time with every "MXV2" header that fits re-signed with the key.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The key of the seeds in tests/fuzz/corpus/spool/. */
static const unsigned char test_key[SPOOL_KEY_SIZE] = "mxvault fuzz key, never a secret";
static char dir[64];
static struct spool_mac *mac;

static void decode_all(const uint8_t *data, size_t size)
{
	struct spool_rec r;
	size_t pos = 0;
	long n;
	while (pos < size && (n = spool_rec_decode(mac, data + pos, size - pos, &r)) > 0)
		pos += (size_t)n;
	pos = 0;
	while (pos < size && (n = spool_rec_decode_v1(data + pos, size - pos, &r)) > 0)
		pos += (size_t)n;
	struct spool_env env;
	if (spool_env_decode(data, size, &env) == 0)
		spool_env_free(&env);
	struct spool_rcpt_update u;
	size_t rl;
	(void)spool_rcpt_update_decode(data, size, &u, &rl);
	struct spool_meta m;
	(void)spool_meta_decode(data, size, &m);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The input with each v2 header whose payload fits given a valid tag and MAC. */
static void resign(const uint8_t *p, size_t n, struct buf *out)
{
	buf_reset(out);
	for (size_t i = 0; i < n;) {
		uint32_t len = n - i >= SPOOL_REC_HDR_SIZE ? le32(p + i + 8) : 0;
		if (n - i >= SPOOL_REC_HDR_SIZE && memcmp(p + i, "MXV2", 4) == 0 && len <= n - i - SPOOL_REC_HDR_SIZE) {
			uint64_t id = (uint64_t)le32(p + i + 12) | (uint64_t)le32(p + i + 16) << 32;
			spool_rec_append(mac, out, p[i + 4], id, p + i + SPOOL_REC_HDR_SIZE, len);
			i += SPOOL_REC_HDR_SIZE + len;
		} else {
			buf_append(out, p + i, 1);
			i++;
		}
	}
}

static void replay(const void *p, size_t n)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/00000001.seg", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, p, n) != (ssize_t)n)
		abort();
	close(fd);
	struct spool *sp;
	if (spool_open_readonly(dir, &sp) == 0)
		spool_close(sp);
}

static void init(void)
{
	snprintf(dir, sizeof(dir), "/tmp/mxv-fuzz-spool-XXXXXX");
	if (!mkdtemp(dir) || spool_mac_new(test_key, &mac) < 0)
		abort();
	char path[128];
	snprintf(path, sizeof(path), "%s/key", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, test_key, sizeof(test_key)) != (ssize_t)sizeof(test_key))
		abort();
	close(fd);
	/*
	 * Recovery logs every damaged byte range: send the log (which writes to
	 * the stream stderr names) to /dev/null. Not freopen: that would take fd 2
	 * from libFuzzer's statistics and the sanitizers' reports too (glibc lets
	 * stderr be assigned; libFuzzer keeps the stream it saw at start-up).
	 */
	FILE *null = fopen("/dev/null", "w");
	if (!null)
		abort();
	stderr = null;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct buf signed_input;
	if (!dir[0])
		init();
	decode_all(data, size);
	replay(data, size);
	resign(data, size, &signed_input);
	replay(signed_input.data, signed_input.len);
	return 0;
}
