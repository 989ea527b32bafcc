/*
 * What plan.c merges, directory by directory: each side's listing, sorted,
 * the state's records of the directory, and the names a case-insensitive
 * side cannot hold (clash.c).
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

void sb_names_free(struct sb_names *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = l->cap = 0;
}

static int names_add(struct sb_names *l, const char *s, size_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 32;
		char **nv = realloc(l->v, cap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strndup(s, len)))
		return -ENOMEM;
	l->n++;
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int sb_list_dir(int fd, struct sb_names *out, struct sb_names *tmp)
{
	int dfd = dup(fd), ret = 0;
	DIR *d;
	struct dirent *de;

	if (dfd < 0)
		return -errno;
	if (!(d = fdopendir(dfd))) {
		close(dfd);
		return -errno;
	}
	rewinddir(d);	/* the dup shares its offset with fd */
	for (;;) {
		errno = 0;
		if (!(de = readdir(d))) {
			ret = -errno;
			break;
		}
		const char *n = de->d_name;
		if (n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
			continue;
		int stale = !strncmp(n, SB_TMP_PREFIX, sizeof(SB_TMP_PREFIX) - 1);
		if ((ret = names_add(stale ? tmp : out, n, strlen(n))) < 0)
			break;
	}
	closedir(d);
	if (ret == 0 && out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), cmp_names);
	return ret;
}

void sb_recs_free(struct sb_recs *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->names[i]);
	free(r->names);
	free(r->v);
}

int sb_load_recs(struct sb_txn *txn, uint64_t dir_id, struct sb_recs *out)
{
	struct sb_cursor *c = NULL;
	const char *name;
	size_t nlen;
	struct sb_rec rec;
	int ret;

	if ((ret = sb_state_children(txn, dir_id, &c)) < 0)
		return ret;
	while ((ret = sb_cursor_next(c, &name, &nlen, &rec)) > 0) {
		if (out->n == out->cap) {
			size_t cap = out->cap ? 2 * out->cap : 32;
			char **nn = realloc(out->names, cap * sizeof(*nn));
			if (!nn) {
				ret = -ENOMEM;
				break;
			}
			out->names = nn;
			struct sb_rec *nv = realloc(out->v, cap * sizeof(*nv));
			if (!nv) {
				ret = -ENOMEM;
				break;
			}
			out->v = nv;
			out->cap = cap;
		}
		if (!(out->names[out->n] = strndup(name, nlen))) {
			ret = -ENOMEM;
			break;
		}
		out->v[out->n++] = rec;
	}
	sb_cursor_close(c);
	return ret;
}

int sb_find_clashes(const struct sb_caps *const caps[2], const struct sb_names l[2],
		    const struct sb_recs *r, char **clash[2], size_t nclash[2])
{
	const char **u = NULL;
	size_t n = 0, i[3] = { 0, 0, 0 };
	int ret = 0;

	if (!(caps[0]->flags & SB_CAP_FOLD) && !(caps[1]->flags & SB_CAP_FOLD))
		return 0;
	if (!(u = malloc((l[0].n + l[1].n + r->n + 1) * sizeof(*u))))
		return -ENOMEM;
	/* The three sorted lists merged, each name once. */
	for (;;) {
		const char *x[3] = { i[0] < l[0].n ? l[0].v[i[0]] : NULL,
				     i[1] < l[1].n ? l[1].v[i[1]] : NULL,
				     i[2] < r->n ? r->names[i[2]] : NULL };
		const char *m = NULL;
		for (int s = 0; s < 3; s++)
			if (x[s] && (!m || strcmp(x[s], m) < 0))
				m = x[s];
		if (!m)
			break;
		u[n++] = m;
		for (int s = 0; s < 3; s++)
			if (x[s] && !strcmp(x[s], m))
				i[s]++;
	}
	for (int s = 0; s < 2 && ret == 0; s++)
		if (caps[s]->flags & SB_CAP_FOLD)
			ret = sb_clash_find(u, n, (const char *const *)l[s].v, l[s].n,
					    &clash[s], &nclash[s]);
	free(u);
	return ret;
}
