/*
 * fuzz_callout_reply: libFuzzer target for what mxvault makes of a
 * primary's reply to a callout (policy_sanitise_reply and
 * policy_callout_reply, src/smtpd/policy.c): the primary is a peer, so its
 * text is hostile. The first byte picks the verify result and the outage
 * mode, the rest is the reply (NUL-terminated). Besides memory safety it
 * checks: the sanitised text is printable ASCII only, within
 * POLICY_PRIMARY_TEXT_MAX and the buffer, has no trailing space, and is
 * the same when sanitised twice; the RCPT reply is 250, 451 or 550 with a
 * matching enhanced code, and printable.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtpd/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void check_printable(const char *s)
{
	for (; *s; s++)
		CHECK((unsigned char)*s >= 0x20 && (unsigned char)*s < 0x7f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *reply = malloc(size);
	memcpy(reply, data + 1, size - 1);
	reply[size - 1] = '\0';
	char out[POLICY_PRIMARY_TEXT_MAX + 1], again[POLICY_PRIMARY_TEXT_MAX + 1], tiny[8];
	policy_sanitise_reply(reply, out, sizeof(out));
	size_t n = strlen(out);
	CHECK(n <= POLICY_PRIMARY_TEXT_MAX);
	CHECK(n == 0 || out[n - 1] != ' ');
	check_printable(out);
	policy_sanitise_reply(reply, tiny, sizeof(tiny));
	CHECK(strlen(tiny) < sizeof(tiny));
	CHECK(strncmp(tiny, out, strlen(tiny)) == 0);
	/* Sanitising the text alone again changes nothing (unless it now looks like a code). */
	if (!(out[0] >= '2' && out[0] <= '5')) {
		policy_sanitise_reply(out, again, sizeof(again));
		CHECK(strcmp(out, again) == 0);
	}
	struct policy_reply r;
	char buf[POLICY_PRIMARY_TEXT_MAX + 64];
	enum verify_result v = (enum verify_result)(data[0] % 5);
	enum outage_mode m = (enum outage_mode)((data[0] / 5) % 3);
	policy_callout_reply(v, reply, m, &r, buf, sizeof(buf));
	CHECK(r.code == 250 || r.code == 451 || r.code == 550);
	CHECK(r.enh[0] == '0' + r.code / 100);
	check_printable(r.text);
	free(reply);
	return 0;
}
