/*
 * The conflict view: names in both directions. A conflicted NAME shows as
 * NAME.conflict-source and NAME.conflict-target (or NAME.conflict-source~
 * where a real entry has the name), each one side's version; a case clash
 * is held by one side alone; an ignored path is the source's only. sb_mi_map
 * takes a view path to the real path and the side it is limited to, and the
 * listing (mirror_list.c) takes names the other way.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ignore.h"
#include "mirror_int.h"

static int cmp_len(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b), n = alen < blen ? alen : blen;
	int c = memcmp(a, b, n);
	return c ? c : (alen > blen) - (alen < blen);
}

static int in_list(char *const *v, size_t n, const char *rel, size_t len)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = cmp_len(rel, len, v[mid]);
		if (c == 0)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

int sb_mi_in_conflict(struct sb_mirror *m, const char *rel, size_t len)
{
	return in_list(m->conf, m->nconf, rel, len);
}

int sb_mirror_reload_conflicts(struct sb_mirror *m)
{
	struct sb_conflict_list l;
	int ret = sb_conflicts_list(m->p, &l);
	if (ret < 0)
		return ret;
	char **v = calloc(l.n ? l.n : 1, sizeof(*v)), **fv = calloc(l.n ? l.n : 1, sizeof(*fv));
	if (!v || !fv) {
		free(v);
		free(fv);
		sb_conflicts_free(&l);
		return -ENOMEM;
	}
	size_t n = 0, nf = 0;
	/* A case clash is no pair of conflict entries: the side that is not
	 * case-insensitive holds the name alone, and every change to it is
	 * made there only (sb_mi_map()), never to the other spelling. */
	for (size_t i = 0; i < l.n; i++) {
		if (l.v[i].c.kind == SB_CK_CASE)
			fv[nf++] = l.v[i].path;
		else
			v[n++] = l.v[i].path;
		l.v[i].path = NULL;
	}
	/* Both sides' caps are known from here on, before any request runs:
	 * sb_pship_caps() is then only read. */
	sb_pship_caps(m->p, SB_SRC);
	int fold_side = sb_pship_caps(m->p, SB_TGT)->flags & SB_CAP_FOLD ? SB_SRC : SB_TGT;
	pthread_rwlock_wrlock(&m->clock);
	for (size_t i = 0; i < m->nfold; i++)
		free(m->fold[i]);
	free(m->fold);
	m->fold = fv;
	m->nfold = nf;
	m->fold_side = fold_side;
	__atomic_add_fetch(&m->view_gen, 1, __ATOMIC_RELAXED);
	for (size_t i = 0; i < m->nconf; i++)
		free(m->conf[i]);
	free(m->conf);
	m->conf = v;
	m->nconf = n;
	pthread_rwlock_unlock(&m->clock);
	sb_conflicts_free(&l);
	return 0;
}

static int ends_with(const char *s, size_t len, const char *suf, size_t sl)
{
	return len > sl && !memcmp(s + len - sl, suf, sl);
}

/* Whether the real entry rel[0..len) exists on side (-1: either side). */
static int real_exists(struct sb_mirror *m, const char *rel, size_t len, int side)
{
	char *p = strndup(rel, len);	/* the base name is used NUL-terminated */
	int found = 0;
	if (!p)
		return 1;	/* in doubt, a real entry keeps its name */
	for (int i = 0; !found && i < 2; i++) {
		int dfd;
		const char *base;
		struct stat st;
		if ((side >= 0 && i != side) ||
		    sb_open_parent(m->p->rootfd[i], p, len, 0, &dfd, &base) < 0)
			continue;
		found = fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
		close(dfd);
	}
	free(p);
	return found;
}

/*
 * Whether the view name buf[0..o) (within side) is the entry of one side
 * of a conflicted NAME, suf being that side's suffix: NAME<suf>, or
 * NAME<suf>~ when a real entry already has the name NAME<suf>. A real
 * entry is never shadowed; the entry's name is the one left free.
 */
static int is_entry(struct sb_mirror *m, const char *buf, size_t o, int side,
		    const char *suf, size_t sl)
{
	int alt = o > 0 && buf[o - 1] == '~';
	size_t e = o - alt;
	if (!ends_with(buf, e, suf, sl) || !sb_mi_in_conflict(m, buf, e - sl) ||
	    real_exists(m, buf, o, side))
		return 0;
	return !alt || real_exists(m, buf, e, side);
}

/*
 * View path -> real relative path (malloc'd) and the side it is limited
 * to (-1: both). -ENOENT for the plain name of a conflicted path: the view
 * shows only its conflict entries.
 */
/*
 * -1, or the one side that can hold rel when a name in it is one the other
 * side's file system refuses (a ':' on exFAT): changes to it are made there
 * only, as reconcile skips it ("cannot be stored"), and it stays visible.
 */
static int storable_side(struct sb_mirror *m, const char *rel)
{
	for (int i = 0; i < 2; i++) {
		const struct sb_caps *c = sb_pship_caps(m->p, i);
		if (sb_caps_any_name(c))
			continue;	/* every mount call comes here: most partners */
		for (const char *s = rel; *s;) {
			const char *e = strchrnul(s, '/'), *why;
			char buf[64];
			if (sb_caps_storable(c, s, (size_t)(e - s), SB_DIR, 0, buf, &why) < 0)
				return !i;
			s = *e ? e + 1 : e;
		}
	}
	return -1;
}

static int map_conf(struct sb_mirror *m, const char *path, char **out, int *side)
{
	size_t len = strlen(path), o = 0;
	char *buf = malloc(len + 1);
	int ret = 0;

	*side = -1;
	*out = NULL;
	if (!buf)
		return -ENOMEM;
	/* Each side's old versions are its own, not part of the view. */
	if (sb_versions_reserved(path, len)) {
		free(buf);
		return -ENOENT;
	}
	pthread_rwlock_rdlock(&m->clock);
	if (!m->nconf && !m->nfold) {
		memcpy(buf, path, len + 1);
		goto out;
	}
	for (size_t i = 0; i < len;) {
		size_t j = i;
		while (j < len && path[j] != '/')
			j++;
		if (o)
			buf[o++] = '/';
		memcpy(buf + o, path + i, j - i);
		o += j - i;
		size_t ls = sizeof(SUF_SRC) - 1, lt = sizeof(SUF_TGT) - 1;
		int alt = o > 0 && buf[o - 1] == '~';
		if (is_entry(m, buf, o, *side, SUF_SRC, ls)) {
			ret = *side == SB_TGT ? -ENOENT : 0;
			*side = SB_SRC;
			o -= ls + alt;
		} else if (is_entry(m, buf, o, *side, SUF_TGT, lt)) {
			ret = *side == SB_SRC ? -ENOENT : 0;
			*side = SB_TGT;
			o -= lt + alt;
		} else if (*side < 0 && sb_mi_in_conflict(m, buf, o)) {
			ret = -ENOENT;
		} else if (*side < 0 && in_list(m->fold, m->nfold, buf, o)) {
			*side = m->fold_side;
		}
		if (ret < 0)
			break;
		i = j + 1;
	}
	buf[o] = '\0';
out:
	pthread_rwlock_unlock(&m->clock);
	if (ret < 0)
		free(buf);
	else
		*out = buf;
	if (ret == 0 && *side < 0)
		*side = storable_side(m, buf);
	return ret;
}

/*
 * map_conf, and then an ignored path is the source's only (*side SB_SRC,
 * *ign set), as a conflict entry is one side's: every operation then sees
 * one side, and none records what only one side holds. The one place the
 * view learns of ignore patterns, but for the listing (dread_side) and the
 * calls that must tell an ignored path from a conflict entry. hint: as
 * sb_ignore_view's, for a path neither side has yet.
 */
int sb_mi_map_ign(struct sb_mirror *m, const char *path, char **out, int *side, int hint,
		   int *ign)
{
	int ret = map_conf(m, path, out, side);
	*ign = 0;
	if (ret == 0 && *side < 0 && m->ig && **out &&
	    sb_ignore_view(m->ig, m->p->rootfd, *out, hint)) {
		*side = SB_SRC;
		*ign = 1;
	}
	return ret;
}

int sb_mi_map(struct sb_mirror *m, const char *path, char **out, int *side)
{
	int ign;
	return sb_mi_map_ign(m, path, out, side, 0, &ign);
}

void sb_mirror_set_ignore(struct sb_mirror *m, const struct sb_ignore *ig)
{
	m->ig = ig;
}

size_t sb_conflict_suffixes(const char *const **out)
{
	/* with and without the '~' of a name already taken */
	static const char *const suffixes[] = { SUF_SRC, SUF_TGT, SUF_SRC "~", SUF_TGT "~" };
	*out = suffixes;
	return sizeof(suffixes) / sizeof(*suffixes);
}
