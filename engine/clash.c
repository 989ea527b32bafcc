/*
 * Case clashes: names one directory holds on a case-sensitive side that a
 * case-insensitive side (FAT, exFAT, NTFS as Windows uses it) takes for one
 * name. Copying both there would overwrite one with the other, so in each
 * group of names that fold to one (sb_caps_fold), the spelling the folding
 * side already holds, else the first in byte order, is synced as usual and
 * every other spelling is a case-clash conflict: left on the side that has
 * it, never copied, until the user renames it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

struct keyed {
	char *key;
	const char *name;
};

static int cmp_keyed(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : strcmp(x->name, y->name);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int held(const char *const *v, size_t n, const char *name)
{
	return n && bsearch(&name, v, n, sizeof(*v), cmp_str) != NULL;
}

int sb_clash_find(const char *const *names, size_t n, const char *const *have, size_t nhave,
		  char ***out, size_t *nout)
{
	struct keyed *k = NULL;
	char **res = NULL;
	size_t nres = 0;
	int ret = -ENOMEM;

	*out = NULL;
	*nout = 0;
	if (n < 2)
		return 0;
	if (!(k = calloc(n, sizeof(*k))))
		goto out;
	for (size_t i = 0; i < n; i++) {
		k[i].name = names[i];
		if (!(k[i].key = sb_caps_fold(names[i], strlen(names[i]))))
			goto out;
	}
	qsort(k, n, sizeof(*k), cmp_keyed);
	for (size_t g = 0, e; g < n; g = e) {
		for (e = g + 1; e < n && !strcmp(k[e].key, k[g].key); e++)
			;
		if (e - g < 2)
			continue;
		size_t keep = g;
		for (size_t i = g; i < e; i++)
			if (held(have, nhave, k[i].name)) {
				keep = i;
				break;
			}
		for (size_t i = g; i < e; i++) {
			if (i == keep)
				continue;
			char **nr = realloc(res, (nres + 1) * sizeof(*nr));
			if (!nr)
				goto out;
			res = nr;
			if (!(res[nres] = strdup(k[i].name)))
				goto out;
			nres++;
		}
	}
	if (nres > 1)
		qsort(res, nres, sizeof(*res), cmp_str);
	*out = res;
	*nout = nres;
	res = NULL;
	nres = 0;
	ret = 0;
out:
	for (size_t i = 0; k && i < n; i++)
		free(k[i].key);
	free(k);
	for (size_t i = 0; i < nres; i++)
		free(res[i]);
	free(res);
	return ret;
}

int sb_clash_has(char *const *clash, size_t n, const char *name)
{
	return n && bsearch(&name, clash, n, sizeof(*clash), cmp_str) != NULL;
}

int sb_fold_alias(int dfd, const char *base)
{
	struct stat st;
	struct dirent *de;
	int found = 0;

	if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return 0;
	int lfd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR *d = lfd < 0 ? NULL : fdopendir(lfd);
	if (!d) {
		if (lfd >= 0)
			close(lfd);
		return 0;
	}
	while (!found && (de = readdir(d)))
		found = !strcmp(de->d_name, base);
	closedir(d);
	return !found;
}
