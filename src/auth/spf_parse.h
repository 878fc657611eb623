/*
 * spf_parse: the pure half of SPF (RFC 7208), no I/O: the record parser
 * (section 4.6, 5, 6, 12 ABNF), the macro expander (section 7) and CIDR
 * matching. Called by spf.c, the unit tests and the fuzz target.
 * A parsed record points into the text it was parsed from.
 */
#ifndef MXV_SPF_PARSE_H
#define MXV_SPF_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/spf.h"
#include "base/util.h"

/* The longest expansion kept: more is a permerror (domain) or no explanation (exp). */
#define SPF_EXPAND_MAX 2048

enum spf_mech { SPF_M_ALL, SPF_M_INCLUDE, SPF_M_A, SPF_M_MX, SPF_M_PTR, SPF_M_IP4, SPF_M_IP6, SPF_M_EXISTS };

struct spf_term {
	enum spf_mech mech;
	enum spf_result qual;   /* SPF_PASS, SPF_FAIL, SPF_SOFTFAIL or SPF_NEUTRAL */
	const char *spec;       /* the domain-spec, inside the record; NULL when absent */
	size_t spec_len;
	unsigned cidr4, cidr6;  /* 32 and 128 when absent; ip4 and ip6: the prefix */
	unsigned char ip[16];   /* ip4 (first 4 bytes) and ip6: the network */
};

struct spf_record {
	struct spf_term *terms; /* the mechanisms in order */
	size_t n;
	const char *redirect, *exp; /* domain-specs inside the record, or NULL */
	size_t redirect_len, exp_len;
};

/* The values macros expand to (section 7.2); NULL strings expand as empty, p as "unknown". */
struct spf_macro_env {
	const char *sender, *local, *sender_domain, *domain, *helo, *receiver, *ptr;
	int family;             /* AF_INET or AF_INET6 */
	unsigned char ip[16];   /* 4 bytes for AF_INET */
	int64_t now;
};

/* A TXT string that is an SPF record: "v=spf1" (any case), then a space or the end (4.5). */
bool spf_is_record(const char *txt);

/* 0, or -EINVAL for a syntax error (a permerror). Free *out with spf_record_free. */
int spf_parse_record(const char *txt, struct spf_record *out) MUST_CHECK;
void spf_record_free(struct spf_record *r);

/*
 * Expands a macro-string into out (NUL-terminated). exp: explanation text,
 * where c, r and t are allowed and spaces are literal; otherwise a
 * domain-spec: the result has no trailing dot and is cut from the left to
 * 253 characters by whole labels (7.3). 0, -EINVAL for a syntax error,
 * -E2BIG when longer than SPF_EXPAND_MAX (or n).
 */
int spf_expand(const char *s, size_t len, const struct spf_macro_env *env, bool exp, char *out, size_t n) MUST_CHECK;

/* Whether a macro-string uses %{p}, which needs the validated PTR name first. */
bool spf_uses_p(const char *s, size_t len);

/* Whether ip (family's length) lies in net/bits. */
bool spf_cidr_match(int family, const unsigned char *ip, const unsigned char *net, unsigned bits);

/* A domain check_host() accepts (4.3): multi-label, labels of 1-63, at most 253, no literal. */
bool spf_domain_is_valid(const char *d);

#endif
