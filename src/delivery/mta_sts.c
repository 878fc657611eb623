/*
 * mta_sts: see mta_sts.h. IN PROGRESS: the fetch and the cache are being
 * written (branch mta-sts); until then no policy is available and
 * tls_policy treats every domain as publishing none.
 */
#include "mta_sts.h"

#include <stddef.h>

struct mta_sts *mta_sts_new(struct event_base *base, struct dns *dns, const char *cache_dir, const char *ca_file)
{
	(void)base;
	(void)dns;
	(void)cache_dir;
	(void)ca_file;
	return NULL;
}

void mta_sts_free(struct mta_sts *m)
{
	(void)m;
}

void mta_sts_get(struct mta_sts *m, const char *domain, mta_sts_fn *fn, void *arg)
{
	(void)m;
	(void)domain;
	fn(arg, MTA_STS_NONE, NULL, NULL);
}
