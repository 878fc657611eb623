/*
 * check_int: the parts of check shared between its files: check.c (the
 * DNS and the run) and check_smtp.c (the SMTP probes and the rules that
 * need them, MTA-STS and TLSA).
 */
#ifndef MXV_CHECK_INT_H
#define MXV_CHECK_INT_H

#include "check.h"
#include "delivery/mta_sts.h"

/* Reachability of the primaries (always) and, with o->probe, a full probe of every MX; adds the findings. */
void check_smtp_all(struct check_report *r, const struct check_opts *o);
/* A primary with TLSA records while the backup has none. */
void check_rules_tlsa(struct check_report *r);
/* The MTA-STS policy (st as mta_sts_get gave it) against the MX set and the backup's certificate. */
void check_rules_sts(struct check_report *r, enum mta_sts_status st, const struct mta_sts_policy *p,
		     const char *why);

#endif
