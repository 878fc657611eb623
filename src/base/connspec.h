/*
 * connspec: the pure parsers behind the abuse defences at connect (issue 9
 * section 3): a DNSBL site as postscreen writes it (ZONE[=CODES][*WEIGHT]),
 * an event rate (N/s, N/m, N/h) and a CIDR block. No I/O; cfg_keys.c calls
 * them for the [server] keys dnsbl, dnswl, max_connection_rate,
 * max_message_rate and rate_limit_exceptions, and smtpd/ asks the compiled
 * results (connspec_dnsbl_matches, connspec_cidr_match). Fuzzed
 * (tests/fuzz/fuzz_connspec.c).
 */
#ifndef MXV_CONNSPEC_H
#define MXV_CONNSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "util.h"

/* The most answer patterns one DNSBL site may list (';'-separated). */
#define CONNSPEC_CODES_MAX 16
/* Weights are bounded so that no sum over CFG-sized lists can overflow. */
#define CONNSPEC_WEIGHT_MAX 1000

/* One answer pattern: for each octet of the A record, the values it accepts. */
struct connspec_code {
	uint8_t octet[4][32]; /* bit v of octet[i] set: value v is accepted in octet i */
};

/* The longest site spec kept (a configuration line is shorter). */
#define CONNSPEC_TEXT_MAX 256

struct connspec_dnsbl {
	char text[CONNSPEC_TEXT_MAX]; /* as written, for printing back */
	char zone[254];        /* lower-case, no trailing dot */
	int weight;            /* -CONNSPEC_WEIGHT_MAX .. CONNSPEC_WEIGHT_MAX, default 1 */
	size_t ncodes;         /* 0: any answer in 127.0.0.0/8 lists */
	struct connspec_code codes[CONNSPEC_CODES_MAX];
};

/*
 * One site: "zone", "zone=127.0.0.2", "zone=127.0.0.[2..11]",
 * "zone=127.0.[0;1].[2;4..6];127.0.1.1", each optionally followed by
 * "*WEIGHT" (a signed integer). 0 or -EINVAL.
 */
int connspec_parse_dnsbl(const char *s, struct connspec_dnsbl *out) MUST_CHECK;
/* Whether the A record a (network order, a[0] first) lists the client on this site. */
bool connspec_dnsbl_matches(const struct connspec_dnsbl *z, const uint8_t a[4]);
/* A DNSWL site is only a zone name: lower-cased into out. 0 or -EINVAL. */
int connspec_parse_zone(const char *s, char out[254]) MUST_CHECK;

struct connspec_rate {
	uint32_t count;  /* events allowed per period; 0 = no limit */
	int64_t period;  /* seconds: 1, 60 or 3600 */
};

/* "N/s", "N/m", "N/h" (N from 1 to 1000000), or "0" for no limit. 0 or -EINVAL. */
int connspec_parse_rate(const char *s, struct connspec_rate *out) MUST_CHECK;
/* The inverse: "60/m", or "0". */
const char *connspec_fmt_rate(char *buf, size_t n, const struct connspec_rate *r);

struct connspec_cidr {
	int family;        /* AF_INET or AF_INET6 */
	uint8_t addr[16];  /* network order; bits past the prefix are zero */
	uint8_t bits;      /* 0..32 or 0..128 */
};

/* "192.0.2.0/24", "2001:db8::/32", or a bare address (all bits). 0 or -EINVAL. */
int connspec_parse_cidr(const char *s, struct connspec_cidr *out) MUST_CHECK;
const char *connspec_fmt_cidr(char *buf, size_t n, const struct connspec_cidr *c);
/* Whether sa (an IPv4-mapped IPv6 address counts as IPv4) is inside one of the n blocks. */
bool connspec_cidr_match(const struct connspec_cidr *c, size_t n, const struct sockaddr *sa);

#endif
