/*
 * connspec: see connspec.h. Pure: no I/O, no allocation; every input is
 * bounded by the caller's string. Error policy: anything not exactly of the
 * documented shape is -EINVAL, and *out is then unspecified.
 */
#include "connspec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A decimal number from min to max at *p, advancing *p. */
static int take_num(const char **p, long min, long max, long *out)
{
	const char *s = *p;
	long v = 0;
	bool neg = *s == '-';
	if (neg)
		s++;
	if (*s < '0' || *s > '9')
		return -EINVAL;
	while (*s >= '0' && *s <= '9') {
		v = v * 10 + (*s - '0');
		if (v > 10000000)
			return -EINVAL;
		s++;
	}
	if (neg)
		v = -v;
	if (v < min || v > max)
		return -EINVAL;
	*p = s;
	*out = v;
	return 0;
}

static void set_bits(uint8_t map[32], long lo, long hi)
{
	for (long v = lo; v <= hi; v++)
		map[v >> 3] |= (uint8_t)(1u << (v & 7));
}

/* One octet of a pattern: "N", or "[R;R...]" with R "N" or "N..M". */
static int take_octet(const char **p, uint8_t map[32])
{
	long lo, hi;
	if (**p != '[') {
		if (take_num(p, 0, 255, &lo) < 0 || lo < 0)
			return -EINVAL;
		set_bits(map, lo, lo);
		return 0;
	}
	(*p)++;
	for (;;) {
		if (**p == '-' || take_num(p, 0, 255, &lo) < 0)
			return -EINVAL;
		hi = lo;
		if ((*p)[0] == '.' && (*p)[1] == '.') {
			*p += 2;
			if (**p == '-' || take_num(p, 0, 255, &hi) < 0 || hi < lo)
				return -EINVAL;
		}
		set_bits(map, lo, hi);
		if (**p == ']') {
			(*p)++;
			return 0;
		}
		if (**p != ';')
			return -EINVAL;
		(*p)++;
	}
}

/* CODES up to end: patterns separated by ';' (outside brackets). */
static int take_codes(const char *p, const char *end, struct connspec_dnsbl *out)
{
	for (;;) {
		if (out->ncodes == CONNSPEC_CODES_MAX)
			return -EINVAL;
		struct connspec_code *c = &out->codes[out->ncodes++];
		memset(c, 0, sizeof(*c));
		for (int i = 0; i < 4; i++) {
			if (i && *p++ != '.')
				return -EINVAL;
			if (p >= end || take_octet(&p, c->octet[i]) < 0 || p > end)
				return -EINVAL;
		}
		if (p == end)
			return 0;
		if (*p++ != ';')
			return -EINVAL;
	}
}

int connspec_parse_zone(const char *s, char out[254])
{
	size_t n = strlen(s);
	if (n && s[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return -EINVAL;
	memcpy(out, s, n);
	out[n] = '\0';
	ascii_lower(out, n);
	/* Every DNSBL zone in use is a host name (letters, digits, hyphens). */
	return is_host_name(out, n) ? 0 : -EINVAL;
}

int connspec_parse_dnsbl(const char *s, struct connspec_dnsbl *out)
{
	memset(out, 0, sizeof(*out));
	out->weight = 1;
	if (fmt(out->text, sizeof(out->text), "%s", s) < 0)
		return -EINVAL;
	const char *star = strrchr(s, '*');
	const char *eq = strchr(s, '=');
	const char *end = star ? star : s + strlen(s);
	if (eq && eq > end)
		return -EINVAL;
	const char *zend = eq ? eq : end;
	char zone[256];
	size_t zn = (size_t)(zend - s);
	if (zn >= sizeof(zone))
		return -EINVAL;
	memcpy(zone, s, zn);
	zone[zn] = '\0';
	if (connspec_parse_zone(zone, out->zone) < 0)
		return -EINVAL;
	if (eq && take_codes(eq + 1, end, out) < 0)
		return -EINVAL;
	if (star) {
		const char *p = star + 1;
		long w;
		if (take_num(&p, -CONNSPEC_WEIGHT_MAX, CONNSPEC_WEIGHT_MAX, &w) < 0 || *p)
			return -EINVAL;
		out->weight = (int)w;
	}
	return 0;
}

static bool has_bit(const uint8_t map[32], uint8_t v)
{
	return map[v >> 3] & (1u << (v & 7));
}

bool connspec_dnsbl_matches(const struct connspec_dnsbl *z, const uint8_t a[4])
{
	if (z->ncodes == 0)
		return a[0] == 127;
	for (size_t i = 0; i < z->ncodes; i++)
		if (has_bit(z->codes[i].octet[0], a[0]) && has_bit(z->codes[i].octet[1], a[1]) &&
		    has_bit(z->codes[i].octet[2], a[2]) && has_bit(z->codes[i].octet[3], a[3]))
			return true;
	return false;
}

int connspec_parse_rate(const char *s, struct connspec_rate *out)
{
	static const struct { char unit; int64_t secs; } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}};
	if (strcmp(s, "0") == 0) {
		*out = (struct connspec_rate){0, 0};
		return 0;
	}
	const char *p = s;
	long n;
	if (*p == '-' || take_num(&p, 1, 1000000, &n) < 0 || *p++ != '/')
		return -EINVAL;
	for (size_t i = 0; i < ARRAY_LEN(units); i++) {
		if (p[0] == units[i].unit && p[1] == '\0') {
			*out = (struct connspec_rate){(uint32_t)n, units[i].secs};
			return 0;
		}
	}
	return -EINVAL;
}

const char *connspec_fmt_rate(char *buf, size_t n, const struct connspec_rate *r)
{
	if (!r->count)
		return "0";
	char unit = r->period == 1 ? 's' : r->period == 60 ? 'm' : 'h';
	return fmt(buf, n, "%u/%c", (unsigned)r->count, unit) == 0 ? buf : "?";
}

int connspec_parse_cidr(const char *s, struct connspec_cidr *out)
{
	char ip[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(s, '/');
	size_t n = slash ? (size_t)(slash - s) : strlen(s);
	if (n == 0 || n >= sizeof(ip))
		return -EINVAL;
	memcpy(ip, s, n);
	ip[n] = '\0';
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, ip, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, ip, out->addr) == 1)
		out->family = AF_INET6;
	else
		return -EINVAL;
	long max = out->family == AF_INET ? 32 : 128, bits = max;
	if (slash) {
		const char *p = slash + 1;
		if (*p == '-' || take_num(&p, 0, max, &bits) < 0 || *p)
			return -EINVAL;
	}
	out->bits = (uint8_t)bits;
	/* Bits past the prefix are cleared, so "10.1.2.3/8" means 10.0.0.0/8. */
	for (long i = bits; i < max; i++)
		out->addr[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
	return 0;
}

const char *connspec_fmt_cidr(char *buf, size_t n, const struct connspec_cidr *c)
{
	char ip[INET6_ADDRSTRLEN];
	long max = c->family == AF_INET ? 32 : 128;
	if (!inet_ntop(c->family, c->addr, ip, sizeof(ip)))
		return "?";
	int rc = c->bits == max ? fmt(buf, n, "%s", ip) : fmt(buf, n, "%s/%u", ip, (unsigned)c->bits);
	return rc == 0 ? buf : "?";
}

static bool prefix_equal(const uint8_t *a, const uint8_t *net, unsigned bits)
{
	unsigned full = bits / 8, rest = bits % 8;
	if (memcmp(a, net, full) != 0)
		return false;
	if (!rest)
		return true;
	uint8_t mask = (uint8_t)(0xff00u >> rest);
	return (a[full] & mask) == net[full];
}

bool connspec_cidr_match(const struct connspec_cidr *c, size_t n, const struct sockaddr *sa)
{
	uint8_t a[16];
	int family = sa->sa_family;
	if (family == AF_INET) {
		memcpy(a, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			family = AF_INET;
			memcpy(a, a6->s6_addr + 12, 4);
		} else {
			memcpy(a, a6->s6_addr, 16);
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < n; i++)
		if (c[i].family == family && prefix_equal(a, c[i].addr, c[i].bits))
			return true;
	return false;
}
