/*
 * cfg_diff: compares two loaded configurations key by key, for a reload
 * (src/reload.c) that must tell which keys changed. A key is compared by
 * what cfg_print writes for it, so every key the tables know can be
 * compared, with the same notion of "the same value" as `config check`
 * shows. Pure: no I/O beyond a memory stream.
 */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_int.h"

/* What the key's print function writes for obj; the caller frees it. */
static char *printed(const struct cfg_key *k, const void *obj)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		abort(); /* out of memory */
	k->print(f, obj, k);
	fclose(f);
	return text;
}

static bool key_differs(const struct cfg_key *tab, size_t n, const char *name, const void *a, const void *b)
{
	const struct cfg_key *k = cfg_find_key(tab, n, name);
	assert(k);
	char *ta = printed(k, a), *tb = printed(k, b);
	bool differs = strcmp(ta, tb) != 0;
	free(ta);
	free(tb);
	return differs;
}

bool cfg_server_key_differs(const struct cfg *a, const struct cfg *b, const char *name)
{
	return key_differs(cfg_server_keys, cfg_nserver_keys, name, a, b);
}

bool cfg_domain_key_differs(const struct cfg_domain *a, const struct cfg_domain *b, const char *name)
{
	return key_differs(cfg_domain_keys, cfg_ndomain_keys, name, a, b);
}
