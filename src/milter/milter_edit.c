/*
 * milter_edit: splitting a header section into fields and applying
 * milters' header changes (contract: milter_edit.h). Pure.
 */
#include "milter_edit.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool milter_next_field(const char *head, size_t n, size_t *off, struct milter_field *f)
{
	size_t i = *off;
	if (i >= n)
		return false;
	const char *colon = memchr(head + i, ':', n - i);
	const char *eol = memchr(head + i, '\n', n - i);
	if (!colon || (eol && eol < colon) || colon == head + i)
		return false;
	size_t j = i;
	for (;;) { /* to the end of the field: a line not starting with space or tab */
		const char *nl = memchr(head + j, '\n', n - j);
		if (!nl) {
			j = n;
			break;
		}
		j = (size_t)(nl - head) + 1;
		if (j >= n || (head[j] != ' ' && head[j] != '\t'))
			break;
	}
	f->start = head + i;
	f->len = j - i;
	f->name = head + i;
	f->name_len = (size_t)(colon - (head + i));
	while (f->name_len && (f->name[f->name_len - 1] == ' ' || f->name[f->name_len - 1] == '\t'))
		f->name_len--;
	f->value = colon + 1;
	if (f->value < head + j && *f->value == ' ')
		f->value++;
	const char *end = head + j;
	if (end > f->value && end[-1] == '\n')
		end--;
	if (end > f->value && end[-1] == '\r')
		end--;
	f->value_len = (size_t)(end - f->value);
	*off = j;
	return true;
}

void milter_value_for_milter(const char *v, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++)
		if (!(v[i] == '\r' && i + 1 < n && v[i + 1] == '\n'))
			buf_append(out, v + i, 1);
}

/* A field of the result: a piece of head, or one made from an edit. */
struct piece {
	const char *p;
	size_t n;
	const char *name;
	size_t name_len;
	bool made; /* p is owned (made from an edit) */
};

static struct piece make_field(const char *name, const char *value)
{
	struct buf b = {0};
	buf_printf(&b, "%s: ", name);
	for (const char *v = value; *v; v++) { /* LF from the milter: CRLF; a lone CR dropped */
		if (*v == '\n')
			buf_append(&b, "\r\n", 2);
		else if (*v != '\r')
			buf_append(&b, v, 1);
	}
	buf_append(&b, "\r\n", 2);
	struct piece pc = {.p = (const char *)b.data, .n = b.len, .name = (const char *)b.data, .name_len = strlen(name), .made = true};
	return pc;
}

static void insert_at(struct piece **v, size_t *nv, size_t at, struct piece pc)
{
	*v = xrealloc(*v, (*nv + 1) * sizeof(**v));
	memmove(*v + at + 1, *v + at, (*nv - at) * sizeof(**v));
	(*v)[at] = pc;
	(*nv)++;
}

static bool same_name(const struct piece *pc, const char *name)
{
	size_t n = strlen(name);
	return pc->name_len == n && strncasecmp(pc->name, name, n) == 0;
}

static void apply_one(struct piece **v, size_t *nv, const struct milter_edit *e)
{
	if (e->op == MILTER_EDIT_ADD) {
		insert_at(v, nv, *nv, make_field(e->name, e->value));
		return;
	}
	if (e->op == MILTER_EDIT_INSERT) {
		insert_at(v, nv, e->index < *nv ? e->index : *nv, make_field(e->name, e->value));
		return;
	}
	uint32_t seen = 0;
	for (size_t i = 0; i < *nv; i++) {
		if (!same_name(&(*v)[i], e->name) || ++seen != e->index)
			continue;
		if ((*v)[i].made)
			free((void *)(*v)[i].p);
		if (e->value[0]) {
			(*v)[i] = make_field(e->name, e->value);
		} else {
			memmove(*v + i, *v + i + 1, (*nv - i - 1) * sizeof(**v));
			(*nv)--;
		}
		return;
	}
	if (e->value[0]) /* no such field: Sendmail adds it */
		insert_at(v, nv, *nv, make_field(e->name, e->value));
}

void milter_edit_apply(const char *head, size_t n, const struct milter_edit *e, size_t ne, struct buf *out)
{
	struct piece *v = NULL;
	size_t nv = 0, off = 0;
	struct milter_field f;
	while (milter_next_field(head, n, &off, &f))
		insert_at(&v, &nv, nv, (struct piece){.p = f.start, .n = f.len, .name = f.name, .name_len = f.name_len});
	if (off < n) /* what is no field stays as it was, at the end */
		insert_at(&v, &nv, nv, (struct piece){.p = head + off, .n = n - off});
	for (size_t i = 0; i < ne; i++)
		apply_one(&v, &nv, &e[i]);
	for (size_t i = 0; i < nv; i++) {
		buf_append(out, v[i].p, v[i].n);
		if (v[i].made)
			free((void *)v[i].p);
	}
	free(v);
}
