/*
 * Unit tests for the spool log (src/spool/): durability callbacks, replay,
 * torn tails, damaged records, segment rotation and reclamation, records
 * forged in content, the key, and reading format v1. Each test
 * uses a fresh directory and a real event loop, waiting on conditions.
 */
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "spool/spool.h"
#include "spool_v1.h"

struct fixture {
	char dir[64];
	struct event_base *base;
	struct spool *sp;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/mxv-spool-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->base = event_base_new();
	*state = f;
	return spool_open(f->dir, -1, f->base, 0, &f->sp);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	spool_close(f->sp);
	event_base_free(f->base);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

struct result {
	int done;
	int err;
};

static void on_done(void *arg, int err)
{
	struct result *r = arg;
	r->done++;
	r->err = err;
}

/* Runs the loop until *counter reaches want, or 5 s pass (then fails). */
static void run_until(struct fixture *f, const int *counter, int want)
{
	for (int i = 0; i < 5000 && *counter < want; i++)
		event_base_loop(f->base, EVLOOP_ONCE | EVLOOP_NONBLOCK), usleep(1000);
	assert_int_equal(*counter, want);
}

static struct spool_rcpt rcpt_alice = {.addr = "alice@example.com"};

static uint64_t commit_msg(struct fixture *f, const char *body, struct result *r)
{
	struct spool_env env = {.sender = "s@x.org", .nrcpt = 1, .rcpts = &rcpt_alice, .arrival = 1};
	struct spool_txn *tx = spool_txn_begin(f->sp);
	uint64_t id = spool_txn_id(tx);
	spool_txn_write(tx, body, strlen(body));
	spool_txn_commit(tx, &env, on_done, r);
	return id;
}

static void reopen(struct fixture *f)
{
	spool_close(f->sp);
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), 0);
}

static void assert_body(struct fixture *f, uint64_t id, const char *body)
{
	struct spool_msg *m = spool_msg_find(f->sp, id);
	assert_non_null(m);
	char got[1024] = {0};
	assert_int_equal(m->env.body_size, strlen(body));
	assert_int_equal(spool_msg_read(f->sp, m, 0, got, sizeof(got) - 1), (long)strlen(body));
	assert_string_equal(got, body);
}

static void test_commit_is_durable_and_replayed(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	uint64_t id = commit_msg(f, "Subject: hi\r\n\r\nbody\r\n", &r);
	assert_int_equal(r.done, 0); /* never before the batch is synced */
	run_until(f, &r.done, 1);
	assert_int_equal(r.err, 0);
	assert_body(f, id, "Subject: hi\r\n\r\nbody\r\n");
	reopen(f);
	assert_body(f, id, "Subject: hi\r\n\r\nbody\r\n");
	struct spool *ro;
	assert_int_equal(spool_open_readonly(f->dir, &ro), 0);
	assert_non_null(spool_msg_find(ro, id));
	spool_close(ro);
}

static void test_many_commits_share_syncs(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	for (int i = 0; i < 200; i++)
		commit_msg(f, "x\r\n", &r);
	run_until(f, &r.done, 200);
	struct spool_stats st;
	spool_get_stats(f->sp, &st);
	assert_int_equal(st.commits, 200);
	assert_true(st.syncs < 200); /* group commit: fewer syncs than messages */
}

static void test_large_body_spans_chunks(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	size_t n = SPOOL_DATA_CHUNK * 3 + 17;
	char *big = malloc(n);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	struct spool_env env = {.sender = "", .nrcpt = 1, .rcpts = &rcpt_alice};
	struct spool_txn *tx = spool_txn_begin(f->sp);
	uint64_t id = spool_txn_id(tx);
	for (size_t i = 0; i < n; i += 1000)
		spool_txn_write(tx, big + i, n - i < 1000 ? n - i : 1000);
	spool_txn_commit(tx, &env, on_done, &r);
	run_until(f, &r.done, 1);
	reopen(f);
	struct spool_msg *m = spool_msg_find(f->sp, id);
	assert_non_null(m);
	char *got = malloc(n);
	assert_int_equal(spool_msg_read(f->sp, m, 0, got, n), (long)n);
	assert_memory_equal(got, big, n);
	assert_int_equal(spool_msg_read(f->sp, m, n - 7, got, 100), 7);
	free(got);
	free(big);
}

static void test_abort_and_done_are_forgotten(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	struct spool_txn *tx = spool_txn_begin(f->sp);
	uint64_t aborted = spool_txn_id(tx);
	char chunk[SPOOL_DATA_CHUNK + 10];
	memset(chunk, 'z', sizeof(chunk));
	spool_txn_write(tx, chunk, sizeof(chunk)); /* forces a DATA record to the log */
	spool_txn_abort(tx);
	uint64_t keep = commit_msg(f, "keep\r\n", &r);
	uint64_t gone = commit_msg(f, "gone\r\n", &r);
	run_until(f, &r.done, 2);
	struct spool_msg *m = spool_msg_find(f->sp, gone);
	spool_msg_set_rcpt(f->sp, m, 0, SPOOL_RCPT_DELIVERED, 250, "250 ok", NULL, NULL);
	spool_msg_done(f->sp, m, on_done, &r);
	m = spool_msg_find(f->sp, keep);
	spool_msg_set_rcpt(f->sp, m, 0, SPOOL_RCPT_PENDING, 451, "451 try later", on_done, &r);
	run_until(f, &r.done, 4);
	reopen(f);
	assert_null(spool_msg_find(f->sp, aborted));
	assert_null(spool_msg_find(f->sp, gone));
	m = spool_msg_find(f->sp, keep);
	assert_non_null(m);
	assert_int_equal(m->env.rcpts[0].code, 451);
	assert_string_equal(m->env.rcpts[0].reply, "451 try later");
}

static int count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;
	while ((e = readdir(d)))
		n += strstr(e->d_name, ".seg") != NULL;
	closedir(d);
	return n;
}

static void test_rotation_and_reclaim(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	spool_set_segment_size(f->sp, 4096);
	uint64_t ids[40];
	char body[300];
	memset(body, 'b', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	for (int i = 0; i < 40; i++)
		ids[i] = commit_msg(f, body, &r);
	run_until(f, &r.done, 40);
	assert_true(count_segments(f->dir) > 3);
	reopen(f);
	for (int i = 0; i < 40; i++)
		assert_body(f, ids[i], body);
	/* Finishing every message lets every old segment go. */
	for (int i = 0; i < 40; i++)
		spool_msg_done(f->sp, spool_msg_find(f->sp, ids[i]), on_done, &r);
	run_until(f, &r.done, 80);
	struct result r2 = {0};
	commit_msg(f, "new\r\n", &r2); /* one more round through the I/O thread */
	run_until(f, &r2.done, 1);
	assert_true(count_segments(f->dir) <= 2);
	reopen(f);
	struct spool_stats st;
	spool_get_stats(f->sp, &st);
	assert_int_equal(st.messages, 1);
}

static void test_compaction_frees_old_segments(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	spool_set_segment_size(f->sp, 4096);
	char body[300];
	memset(body, 'c', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	uint64_t keep = commit_msg(f, "the long-lived one\r\n", &r);
	uint64_t ids[40];
	for (int i = 0; i < 40; i++)
		ids[i] = commit_msg(f, body, &r);
	run_until(f, &r.done, 41);
	struct spool_msg *m = spool_msg_find(f->sp, keep);
	spool_msg_set_rcpt(f->sp, m, 0, SPOOL_RCPT_PENDING, 451, "451 4.2.0 try later", NULL, NULL);
	for (int i = 0; i < 40; i++)
		spool_msg_done(f->sp, spool_msg_find(f->sp, ids[i]), on_done, &r);
	run_until(f, &r.done, 81);
	int before = count_segments(f->dir);
	assert_true(before > 3); /* the first segment pins all the others */
	/* Each step frees one segment once its copy is durable. */
	for (int step = 0; step < 3000 && count_segments(f->dir) > 2; step++) {
		spool_compact(f->sp);
		struct result tick = {0};
		commit_msg(f, "tick\r\n", &tick);
		run_until(f, &tick.done, 1);
	}
	assert_true(count_segments(f->dir) <= 3);
	reopen(f);
	assert_body(f, keep, "the long-lived one\r\n");
	m = spool_msg_find(f->sp, keep);
	assert_int_equal(m->env.rcpts[0].code, 451);
	assert_string_equal(m->env.rcpts[0].reply, "451 4.2.0 try later");
}

static char *newest_segment(const char *dir)
{
	static char path[512];
	DIR *d = opendir(dir);
	struct dirent *e;
	char best[256] = "";
	while ((e = readdir(d)))
		if (strstr(e->d_name, ".seg") && strcmp(e->d_name, best) > 0)
			snprintf(best, sizeof(best), "%s", e->d_name);
	closedir(d);
	snprintf(path, sizeof(path), "%s/%s", dir, best);
	return path;
}

/* Commits one message, waits until it is durable, and closes the spool (as a crash would leave it). */
static uint64_t commit_then_close(struct fixture *f, const char *body)
{
	struct result r = {0};
	uint64_t id = commit_msg(f, body, &r);
	run_until(f, &r.done, 1);
	spool_close(f->sp);
	f->sp = NULL;
	return id;
}

static void test_torn_tail_is_cut(void **state)
{
	struct fixture *f = *state;
	uint64_t id = commit_then_close(f, "before the crash\r\n");
	char *seg = newest_segment(f->dir);
	struct stat st0;
	stat(seg, &st0);
	int fd = open(seg, O_WRONLY | O_APPEND);
	assert_true(write(fd, "MXV1\x02\0\0\0garbage", 15) == 15); /* a torn record */
	close(fd);
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), 0);
	assert_body(f, id, "before the crash\r\n");
	struct stat st1;
	stat(seg, &st1);
	assert_int_equal(st1.st_size, st0.st_size);
}

static void test_damaged_record_is_set_aside(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	uint64_t a = commit_msg(f, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n", &r);
	uint64_t b = commit_msg(f, "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\r\n", &r);
	run_until(f, &r.done, 2);
	spool_close(f->sp);
	f->sp = NULL;
	/* Flip a byte inside message a's body: its DATA record fails its checksum. */
	char *seg = newest_segment(f->dir);
	int fd = open(seg, O_RDWR);
	char buf[8192];
	ssize_t n = read(fd, buf, sizeof(buf));
	char *p = memmem(buf, (size_t)n, "AAAA", 4);
	assert_non_null(p);
	assert_true(pwrite(fd, "X", 1, p - buf) == 1);
	close(fd);
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), 0);
	assert_null(spool_msg_find(f->sp, a));
	assert_body(f, b, "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB\r\n");
	char path[128], sid[17];
	spool_id_str(a, sid);
	snprintf(path, sizeof(path), "%s/corrupt/%s.eml", f->dir, sid);
	assert_int_equal(access(path, F_OK), 0);
}

/*
 * A spool another user left (the daemon ran as root before) is taken over
 * by spool_dir_prepare, which walks the directory through the fd it then
 * hands to spool_open: the queue must still be found (the walk used to
 * leave the shared directory offset at the end, so replay saw no segment).
 */
static void test_taken_over_spool_keeps_its_queue(void **state)
{
	struct fixture *f = *state;
	if (geteuid() != 0)
		skip(); /* chown needs root */
	uint64_t id = commit_then_close(f, "queued by another owner\r\n");
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "chown -R 1:1 %s", f->dir);
	assert_int_equal(system(cmd), 0);
	int dirfd = spool_dir_prepare(f->dir, true, 0, 0);
	assert_true(dirfd >= 0);
	assert_int_equal(spool_open(f->dir, dirfd, f->base, 0, &f->sp), 0);
	assert_body(f, id, "queued by another owner\r\n");
	struct stat st;
	assert_int_equal(stat(newest_segment(f->dir), &st), 0);
	assert_int_equal(st.st_uid, 0);
}

/* --- authenticated records, the key, format v1 --------------------------- */

static void read_file(const char *path, struct buf *b)
{
	buf_reset(b);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	char tmp[65536];
	ssize_t n;
	while ((n = read(fd, tmp, sizeof(tmp))) > 0)
		buf_append(b, tmp, (size_t)n);
	close(fd);
}

static void write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_true(write(fd, p, n) == (ssize_t)n);
	close(fd);
}

/* SPOOL/held-domains: replaced whole and read back; bad lines skipped; no file is no hold. */
static void test_held_domains_round_trip(void **state)
{
	struct fixture *f = *state;
	struct spool_held *v;
	size_t n, bad;
	assert_int_equal(spool_held_read(f->sp, &v, &n, &bad), 0);
	assert_true(v == NULL && n == 0 && bad == 0);
	struct spool_held in[2] = {{"example.com", 1790000000}, {"mx-2.example.org", 5}};
	assert_int_equal(spool_held_write(f->sp, in, 2), 0);
	assert_int_equal(spool_held_read(f->sp, &v, &n, &bad), 0);
	assert_int_equal(n, 2);
	assert_string_equal(v[1].domain, "mx-2.example.org");
	assert_true(v[0].since == 1790000000 && v[1].since == 5);
	free(v);
	char path[128], other[128];
	snprintf(path, sizeof(path), "%s/held-domains", f->dir);
	snprintf(other, sizeof(other), "%s/held-domains.tmp", f->dir);
	assert_int_equal(access(other, F_OK), -1); /* renamed into place */
	static const char text[] = "ok.test 7\nBad.Test 1\nno-time.test\nevil\x1b.test 1\nneg.test -4\n";
	write_file(path, text, sizeof(text) - 1);
	assert_int_equal(spool_held_read(f->sp, &v, &n, &bad), 0);
	assert_true(n == 1 && bad == 4);
	assert_string_equal(v[0].domain, "ok.test");
	free(v);
	/* A NUL inside a line: that line is bad, the next one is still read. */
	static const char nul[] = "nul\0.test 1\nok2.test 3\nnum.test 4\0x\n";
	write_file(path, nul, sizeof(nul) - 1);
	assert_int_equal(spool_held_read(f->sp, &v, &n, &bad), 0);
	assert_true(n == 1 && bad == 2);
	assert_string_equal(v[0].domain, "ok2.test");
	free(v);
	/* Not a regular file (a FIFO: the open would block until a writer came): refused, never waited on. */
	assert_int_equal(unlink(path), 0);
	assert_int_equal(mkfifo(path, 0600), 0);
	assert_int_equal(spool_held_read(f->sp, &v, &n, &bad), -EINVAL);
	assert_true(v == NULL && n == 0);
	assert_int_equal(unlink(path), 0);
	assert_false(spool_held_domain_ok(""));
	assert_false(spool_held_domain_ok("a b"));
	assert_true(spool_held_domain_ok("a.b"));
}


/* Flips a byte in the header of the record whose payload holds marker: the byte at header + at. */
static void damage_header_before(const char *seg, const char *marker, const char *magic, size_t at)
{
	struct buf b = {0};
	read_file(seg, &b);
	unsigned char *m = memmem(b.data, b.len, marker, strlen(marker));
	assert_non_null(m);
	unsigned char *h = m;
	while (h > b.data && memcmp(h, magic, 4) != 0)
		h--;
	assert_memory_equal(h, magic, 4);
	h[at] ^= 0x40;
	write_file(seg, b.data, b.len);
	buf_free(&b);
}

static size_t count_in(const char *dir, const char *sub, const char *suffix)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	DIR *d = opendir(path);
	struct dirent *e;
	size_t n = 0;
	while (d && (e = readdir(d))) {
		size_t l = strlen(e->d_name);
		n += e->d_name[0] != '.' && l > strlen(suffix) && strcmp(e->d_name + l - strlen(suffix), suffix) == 0;
	}
	if (d)
		closedir(d);
	return n;
}

static void corrupt_exists(struct fixture *f, uint64_t id)
{
	char path[128], sid[17];
	spool_id_str(id, sid);
	snprintf(path, sizeof(path), "%s/corrupt/%s.eml", f->dir, sid);
	assert_int_equal(access(path, F_OK), 0);
}

/* A forged message to victim@elsewhere.test (id) and a DONE for victim_of, as records of the given kind. */
static void forge(struct buf *out, struct spool_mac *mac, uint64_t id, uint64_t victim_of)
{
	static const char body[] = "Subject: forged\r\n\r\nforged\r\n";
	struct spool_rcpt to = {.addr = "victim@elsewhere.test"};
	struct spool_env env = {.sender = "x@evil.test", .nrcpt = 1, .rcpts = &to, .body_size = sizeof(body) - 1};
	struct buf e = {0};
	spool_env_encode(&env, &e);
	if (mac) {
		spool_rec_append(mac, out, SPOOL_REC_DATA, id, body, sizeof(body) - 1);
		spool_rec_append(mac, out, SPOOL_REC_COMMIT, id, e.data, (uint32_t)e.len);
		spool_rec_append(mac, out, SPOOL_REC_DONE, victim_of, "", 0);
	} else {
		v1_rec(out, SPOOL_REC_DATA, id, body, sizeof(body) - 1);
		v1_rec(out, SPOOL_REC_COMMIT, id, e.data, (uint32_t)e.len);
		v1_rec(out, SPOOL_REC_DONE, victim_of, "", 0);
	}
	buf_free(&e);
}

/*
 * The regression of issue 6: a body carrying records (v1 ones with a valid
 * CRC, v2 ones made with another key, v2 ones with a made-up MAC), then
 * damage in front of them. Recovery scans that body; none of it may count.
 */
static void test_forged_records_in_a_body_are_ignored(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	uint64_t c = commit_msg(f, "C: queued before\r\n", &r);
	run_until(f, &r.done, 1);
	static const unsigned char other_key[SPOOL_KEY_SIZE] = "an attacker's own mxvault key...";
	struct spool_mac *other;
	assert_int_equal(spool_mac_new(other_key, &other), 0);
	struct buf body = {0};
	buf_append_str(&body, "Subject: A\r\n\r\nMARKER-A\r\n");
	forge(&body, NULL, c + 1000, c);
	forge(&body, other, c + 2000, c);
	size_t made_up = body.len;
	forge(&body, other, c + 3000, c);
	for (size_t i = made_up; i < body.len; i++)
		if (memcmp(body.data + i, "MXV2", 4) == 0)
			memset(body.data + i + 20, 0x5a, SPOOL_REC_TAG_SIZE + SPOOL_REC_MAC_SIZE);
	buf_append_str(&body, "\r\nend of A\r\n");
	spool_mac_free(other);
	uint64_t a = commit_msg(f, buf_cstr(&body), &r);
	uint64_t b = commit_msg(f, "B: queued after\r\n", &r);
	run_until(f, &r.done, 3);
	spool_close(f->sp);
	f->sp = NULL;
	damage_header_before(newest_segment(f->dir), "MARKER-A", "MXV2", 12);
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), 0);
	assert_body(f, c, "C: queued before\r\n");
	assert_body(f, b, "B: queued after\r\n");
	assert_null(spool_msg_find(f->sp, a));
	corrupt_exists(f, a);
	struct spool_stats st;
	spool_get_stats(f->sp, &st);
	assert_int_equal(st.messages, 2); /* nothing forged came back */
	buf_free(&body);
}

/* A damaged region spanning records of several messages: every intact message after it is salvaged. */
static void test_damaged_region_then_intact_messages(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	char big[3 * SPOOL_DATA_CHUNK / 2];
	memset(big, 'd', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "MARKER-D", 8);
	uint64_t before = commit_msg(f, "before\r\n", &r);
	uint64_t d = commit_msg(f, big, &r); /* two DATA records */
	uint64_t after[5];
	char bodies[5][32];
	for (int i = 0; i < 5; i++) {
		snprintf(bodies[i], sizeof(bodies[i]), "after %d\r\n", i);
		after[i] = commit_msg(f, bodies[i], &r);
	}
	run_until(f, &r.done, 7);
	spool_close(f->sp);
	f->sp = NULL;
	struct buf seg = {0};
	char *path = newest_segment(f->dir);
	read_file(path, &seg);
	unsigned char *m = memmem(seg.data, seg.len, "MARKER-D", 8);
	assert_non_null(m);
	memset(m + 100, 0, SPOOL_DATA_CHUNK); /* from inside D's first DATA to inside its second */
	write_file(path, seg.data, seg.len);
	buf_free(&seg);
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), 0);
	assert_body(f, before, "before\r\n");
	for (int i = 0; i < 5; i++)
		assert_body(f, after[i], bodies[i]);
	assert_null(spool_msg_find(f->sp, d));
	corrupt_exists(f, d);
	assert_int_equal(count_in(f->dir, "corrupt", ".bin"), 1);
}

static void test_key_is_created_0600(void **state)
{
	struct fixture *f = *state;
	char path[128];
	snprintf(path, sizeof(path), "%s/key", f->dir);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	assert_int_equal(st.st_size, SPOOL_KEY_SIZE);
	/* A key a crash left short while no segment used it (crash state K1) is replaced. */
	spool_close(f->sp);
	f->sp = NULL;
	write_file(path, "short", 5);
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, SPOOL_KEY_SIZE);
	/* A read-only open of a spool with no key and nothing in it creates nothing. */
	char empty[64];
	snprintf(empty, sizeof(empty), "/tmp/mxv-spool-XXXXXX");
	assert_non_null(mkdtemp(empty));
	struct spool *ro;
	assert_int_equal(spool_open_readonly(empty, &ro), 0);
	spool_close(ro);
	snprintf(path, sizeof(path), "%s/key", empty);
	assert_int_equal(access(path, F_OK), -1);
	rmdir(empty);
}

static void test_key_missing_refuses_open(void **state)
{
	struct fixture *f = *state;
	uint64_t id = commit_then_close(f, "needs the key\r\n");
	char key[128], saved[SPOOL_KEY_SIZE];
	snprintf(key, sizeof(key), "%s/key", f->dir);
	int fd = open(key, O_RDONLY);
	assert_int_equal(read(fd, saved, sizeof(saved)), sizeof(saved));
	close(fd);
	struct stat st0, st1;
	assert_int_equal(stat(newest_segment(f->dir), &st0), 0);
	struct spool *ro;
	assert_int_equal(unlink(key), 0);
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), -ENOKEY);
	assert_int_equal(spool_open_readonly(f->dir, &ro), -ENOKEY);
	write_file(key, saved, 10); /* short */
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), -ENOKEY);
	/* Nothing was set aside, cut or created meanwhile. */
	assert_int_equal(stat(newest_segment(f->dir), &st1), 0);
	assert_int_equal(st1.st_size, st0.st_size);
	assert_int_equal(count_in(f->dir, "corrupt", ""), 0);
	assert_int_equal(count_segments(f->dir), 1);
	write_file(key, saved, sizeof(saved));
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), 0);
	assert_body(f, id, "needs the key\r\n");
}

static void v1_msg(struct buf *seg, uint64_t id, const void *body, size_t n)
{
	struct spool_env env = {.sender = "s@x.org", .nrcpt = 1, .rcpts = &rcpt_alice, .body_size = n};
	struct buf e = {0};
	spool_env_encode(&env, &e);
	v1_rec(seg, SPOOL_REC_DATA, id, body, (uint32_t)n);
	v1_rec(seg, SPOOL_REC_COMMIT, id, e.data, (uint32_t)e.len);
	buf_free(&e);
}

/*
 * A spool written before records had a MAC (format v1, no key) is read
 * after the upgrade; after damage a v1 segment is not searched (content can
 * look like v1 records), so the rest is set aside. New records are v2.
 */
static void test_v1_spool_is_read_after_upgrade(void **state)
{
	struct fixture *f = *state;
	spool_close(f->sp);
	f->sp = NULL;
	char path[256];
	snprintf(path, sizeof(path), "rm -f %s/*.seg %s/key", f->dir, f->dir);
	assert_int_equal(system(path), 0);
	uint64_t x = 0x1000, y = 0x1001, z = 0x1002;
	struct buf seg = {0}, body = {0};
	v1_rec(&seg, SPOOL_REC_SEGMENT, 1, "mxvault spool segment v1", 24);
	v1_msg(&seg, x, "X: v1, intact\r\n", 15);
	buf_append_str(&body, "Y: MARKER-Y\r\n");
	v1_rec(&body, SPOOL_REC_DONE, x, "", 0); /* forged, in the part a scan would find */
	buf_append_str(&body, "\r\n");
	v1_msg(&seg, y, body.data, body.len);
	v1_msg(&seg, z, "Z: after the damage\r\n", 21);
	snprintf(path, sizeof(path), "%s/00000001.seg", f->dir);
	write_file(path, seg.data, seg.len);
	damage_header_before(path, "MARKER-Y", "MXV1", 12);
	struct spool *ro;
	assert_int_equal(spool_open_readonly(f->dir, &ro), 0); /* no key needed to read v1 */
	assert_non_null(spool_msg_find(ro, x));
	assert_null(spool_msg_find(ro, y));
	assert_null(spool_msg_find(ro, z)); /* set aside with the rest of the segment */
	spool_close(ro);
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), 0);
	assert_body(f, x, "X: v1, intact\r\n");
	assert_int_equal(count_in(f->dir, "corrupt", ".bin"), 1);
	struct result r = {0};
	uint64_t n = commit_msg(f, "new: v2\r\n", &r);
	run_until(f, &r.done, 1);
	read_file(newest_segment(f->dir), &seg);
	assert_memory_equal(seg.data, "MXV2", 4);
	reopen(f);
	assert_body(f, x, "X: v1, intact\r\n");
	assert_body(f, n, "new: v2\r\n");
	buf_free(&seg);
	buf_free(&body);
}

/* Regression: bytes staged in a transaction escaped max_pending_bytes. */
static void test_staged_bytes_are_pending(void **state)
{
	struct fixture *f = *state;
	char body[32 * 1024];
	memset(body, 'x', sizeof(body));
	spool_set_pending_limit(f->sp, 1 << 20);
	struct spool_txn *txs[40];
	for (int i = 0; i < 40; i++) {
		txs[i] = spool_txn_begin(f->sp);
		spool_txn_write(txs[i], body, sizeof(body)); /* under one chunk: not yet a record */
	}
	assert_int_equal(spool_pending_bytes(f->sp), 40 * sizeof(body));
	assert_true(spool_is_congested(f->sp));
	for (int i = 0; i < 40; i++)
		spool_txn_abort(txs[i]);
	assert_int_equal(spool_pending_bytes(f->sp), 0);
	assert_false(spool_is_congested(f->sp));
}

static void on_room(void *arg)
{
	(*(int *)arg)++;
}

/* Bytes a receiver holds outside the spool (a DKIM header copy) count toward max_pending_bytes. */
static void test_held_bytes_are_pending(void **state)
{
	struct fixture *f = *state;
	spool_set_pending_limit(f->sp, 1 << 20);
	spool_hold_bytes(f->sp, (1 << 20) + 1);
	assert_true(spool_is_congested(f->sp));
	int woken = 0;
	struct spool_room_wait w = {0};
	spool_wait_room(f->sp, &w, on_room, &woken);
	event_base_loop(f->base, EVLOOP_NONBLOCK);
	assert_int_equal(woken, 0);
	spool_release_bytes(f->sp, (1 << 20) + 1); /* released: whoever waits for room is woken */
	assert_int_equal(spool_pending_bytes(f->sp), 0);
	run_until(f, &woken, 1);
}

static int open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}

/* Reading a queue spread over many segments holds at most SPOOL_MAX_READ_FDS open. */
static void test_read_fds_are_bounded(void **state)
{
	struct fixture *f = *state;
	struct result r = {0};
	spool_set_segment_size(f->sp, 1024);
	uint64_t ids[3 * SPOOL_MAX_READ_FDS];
	char body[600];
	memset(body, 'b', sizeof(body) - 1);
	body[sizeof(body) - 1] = '\0';
	for (size_t i = 0; i < ARRAY_LEN(ids); i++)
		ids[i] = commit_msg(f, body, &r);
	run_until(f, &r.done, (int)ARRAY_LEN(ids));
	spool_close(f->sp);
	int before = open_fds();
	/* Replay reads every segment, and so does reading every message. */
	assert_int_equal(spool_open(f->dir, -1, f->base, 0, &f->sp), 0);
	for (size_t i = 0; i < ARRAY_LEN(ids); i++)
		assert_body(f, ids[i], body);
	assert_true(count_segments(f->dir) > 2 * SPOOL_MAX_READ_FDS);
	/* Besides the cache: the directory, the eventfd, the segment being written. */
	assert_true(open_fds() <= before + SPOOL_MAX_READ_FDS + 4);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_commit_is_durable_and_replayed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_commits_share_syncs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_large_body_spans_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_abort_and_done_are_forgotten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotation_and_reclaim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compaction_frees_old_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_is_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_record_is_set_aside, setup, teardown),
		cmocka_unit_test_setup_teardown(test_taken_over_spool_keeps_its_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_forged_records_in_a_body_are_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_region_then_intact_messages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_is_created_0600, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_missing_refuses_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1_spool_is_read_after_upgrade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_bytes_are_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_staged_bytes_are_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_fds_are_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_domains_round_trip, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
