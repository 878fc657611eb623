// fuzz-sources: src/spool/spool.c src/spool/spool_compact.c src/spool/spool_dir.c src/spool/spool_io.c src/spool/spool_replay.c src/spool/spool_rec.c src/base/util.c src/base/log.c
/*
 * Fuzz target for the spool format and recovery: the input is decoded as a
 * record stream, as an envelope, as updates, and finally written as a
 * segment file that a read-only replay must survive (recovery reads bytes a
 * crash or a bad disk left behind, so they are hostile too).
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void decode_all(const uint8_t *data, size_t size)
{
	struct spool_rec r;
	size_t pos = 0;
	while (pos < size) {
		long n = spool_rec_decode(data + pos, size - pos, &r);
		if (n <= 0)
			break;
		pos += (size_t)n;
	}
	struct spool_env env;
	if (spool_env_decode(data, size, &env) == 0)
		spool_env_free(&env);
	struct spool_rcpt_update u;
	size_t rl;
	(void)spool_rcpt_update_decode(data, size, &u, &rl);
	struct spool_meta m;
	(void)spool_meta_decode(data, size, &m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/mxv-fuzz-spool-XXXXXX");
		if (!mkdtemp(dir))
			abort();
		/* Recovery logs every damaged byte range: keep the fuzzer's output readable. */
		if (!freopen("/dev/null", "w", stderr))
			abort();
	}
	decode_all(data, size);
	char path[128];
	snprintf(path, sizeof(path), "%s/00000001.seg", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	struct spool *sp;
	if (spool_open_readonly(dir, &sp) == 0)
		spool_close(sp);
	return 0;
}
