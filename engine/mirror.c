/*
 * The mount's side of the engine: a union view of the two partners in which
 * every change is made on both sides before the call returns, and a
 * recorder thread that keeps the state current. Paths are relative to the
 * roots (no leading '/'); a name NAME.conflict-source or NAME.conflict-target
 * stands for one side's version of a conflicted NAME.
 *
 * State updates are queued and written by the recorder in batches, each
 * committed after syncfs of both partners (the same rule as apply.c): the
 * state never vouches for data a crash could still lose. A change that
 * failed on one side is not recorded, so the next reconcile takes it.
 *
 * The rest of the mirror is in the files that mirror_int.h lists, with
 * the locks and the order they are taken in.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <stdio.h>

#include "mirror_int.h"

/* ------------------------------------------------------------ recorder */

int sb_mi_enqueue(struct sb_mirror *m, int kind, const char *path,
		   const char *path2, const struct known *k)
{
	return sb_rec_enqueue(m->rec, kind, path, path2, k);
}

int sb_mirror_flush(struct sb_mirror *m)
{
	sb_rec_flush(m->rec);
	return 0;
}

int sb_mirror_open(struct sb_pship *p, struct sb_mirror **out)
{
	struct sb_mirror *m = calloc(1, sizeof(*m));
	int ret;

	*out = NULL;
	if (!m || !(m->listings = sb_mi_listings_new())) {
		free(m);
		return -ENOMEM;
	}
	m->p = p;
	if (sb_journal_open(p, &m->journal) < 0)
		m->journal = -1;	/* only the crash hint is lost */
	pthread_mutex_init(&m->wmu, NULL);
	pthread_cond_init(&m->wcv, NULL);
	pthread_cond_init(&m->wdone, NULL);
	m->wtail = &m->whead;
	for (int i = 0; i < 2; i++)
		if (pthread_create(&m->wthr[i], NULL, sb_mi_writer, m) == 0)
			m->nwthr++;	/* none: writes go one side after the other */
	pthread_rwlock_init(&m->clock, NULL);
	pthread_rwlock_init(&m->oplock, NULL);
	pthread_mutex_init(&m->files_mu, NULL);
	pthread_mutex_init(&m->lmu, NULL);
	if ((ret = sb_mirror_reload_conflicts(m)) < 0 || (ret = sb_rec_open(p, &m->rec)) < 0)
		goto fail;
	*out = m;
	return 0;
fail:
	sb_mirror_close(m);
	return ret;
}

void sb_mirror_close(struct sb_mirror *m)
{
	if (!m)
		return;
	sb_rec_close(m->rec);	/* everything queued is written first */
	pthread_mutex_lock(&m->wmu);
	m->wstop = 1;
	pthread_cond_broadcast(&m->wcv);
	pthread_mutex_unlock(&m->wmu);
	for (int i = 0; i < m->nwthr; i++)
		pthread_join(m->wthr[i], NULL);
	pthread_mutex_destroy(&m->wmu);
	pthread_cond_destroy(&m->wcv);
	pthread_cond_destroy(&m->wdone);
	for (size_t i = 0; i < m->nconf; i++)
		free(m->conf[i]);
	free(m->conf);
	for (size_t i = 0; i < m->nfold; i++)
		free(m->fold[i]);
	free(m->fold);
	pthread_rwlock_destroy(&m->clock);
	pthread_rwlock_destroy(&m->oplock);
	pthread_mutex_destroy(&m->files_mu);
	pthread_mutex_destroy(&m->lmu);
	sb_mi_listings_free(m->listings);
	/* Every file was closed: nothing is left half written. */
	if (m->journal >= 0) {
		close(m->journal);
		if (!m->files)
			sb_journal_clear(m->p);
	}
	free(m);
}

/* ------------------------------------------------------------ helpers */

/* Parent directory of rel on side i; with create, missing ones are made. */
int sb_mi_side_parent(struct sb_mirror *m, int i, const char *rel, int create,
		       int *dfd, const char **base)
{
	size_t len = strlen(rel);
	if (!len)
		return -EINVAL;
	int ret = sb_open_parent(m->p->rootfd[i], rel, len, create ? 0755 : 0, dfd, base);
	/* The partner was remounted under the mount (see sb_pship_refresh_root). */
	if ((ret == -ENOTCONN || ret == -ESTALE || ret == -EIO) &&
	    sb_pship_refresh_root(m->p, i, 0) == 1)
		ret = sb_open_parent(m->p->rootfd[i], rel, len, create ? 0755 : 0, dfd, base);
	return ret;
}

/*
 * 1 when rel, absent from the source, is found on a case-insensitive
 * target only under another spelling: it is not there. Else a lookup of
 * CASE.TXT would show, and a write would open, the target's case.txt.
 */
static int tgt_alias(struct sb_mirror *m, const char *rel)
{
	int dfd, alias = 0;
	const char *base;

	if (!(sb_pship_caps(m->p, SB_TGT)->flags & SB_CAP_FOLD) ||
	    sb_mi_side_parent(m, SB_TGT, rel, 0, &dfd, &base) < 0)
		return 0;
	alias = sb_fold_alias(dfd, base);
	close(dfd);
	return alias;
}

/* The side to read rel from: the source where it has it, else the target. */
static int find_side(struct sb_mirror *m, const char *rel, int side, int *dfd,
		     const char **base, struct stat *st)
{
	int ret = -ENOENT;
	for (int i = 0; i < 2; i++) {
		if (side >= 0 && i != side)
			continue;
		if ((ret = sb_mi_side_parent(m, i, rel, 0, dfd, base)) < 0) {
			if (ret == -ENOENT || ret == -ENOTDIR)
				continue;
			return ret;
		}
		ret = fstatat(*dfd, *base, st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : -errno;
		if (ret == 0 && i == SB_TGT && tgt_alias(m, rel))
			ret = -ENOENT;
		if (ret == 0)
			return i;
		close(*dfd);
		*dfd = -1;
		if (ret != -ENOENT)
			return ret;
	}
	return ret;
}

/* ------------------------------------------------------------ resolving */

int sb_mirror_exclusive(struct sb_mirror *m, int begin)
{
	if (begin) {
		pthread_rwlock_wrlock(&m->oplock);
		__atomic_add_fetch(&m->mode_gen, 1, __ATOMIC_RELAXED);
		int ret = sb_mirror_flush(m);	/* nothing can queue more now */
		/* A reconcile must list the partners as they are now, not through
		 * a descriptor of a file system that has since been remounted. */
		for (int i = 0; i < 2; i++) {
			int r = sb_pship_refresh_root(m->p, i, 1);
			if (r < 0 && ret == 0)
				ret = r;
		}
		return ret;
	}
	int ret = sb_mirror_reload_conflicts(m);
	pthread_rwlock_unlock(&m->oplock);
	return ret;
}

struct fixed_choice {
	int choice;
};

static int choose_fixed(void *arg, const struct sb_item *it)
{
	(void)it;
	return ((struct fixed_choice *)arg)->choice;
}

/* Settles paths through the engine's plan, as `sbfs resolve` would. */
int sb_mi_resolve_paths(struct sb_mirror *m, const char *const *paths, size_t n,
			 int choice)
{
	struct fixed_choice fc = { choice };
	struct sb_hooks h = { .arg = &fc, .choose = choose_fixed, .ignore = m->ig };
	struct sb_plan *plan = NULL;
	struct sb_apply_result res;
	int ret;

	sb_mirror_exclusive(m, 1);
	ret = sb_plan_build(m->p, paths, n, &h, &plan);
	if (ret == 0)
		ret = sb_plan_apply(m->p, plan, &h, 0, &res);
	if (ret == 0 && res.gone)	/* a partner went: the mount's own errno for it */
		ret = res.gone_err > -4096 ? res.gone_err : -ENODEV;
	else if (ret == 0 && res.failed)
		ret = -EIO;
	sb_plan_free(plan);
	sb_mirror_exclusive(m, 0);
	return ret;
}

/* ------------------------------------------------------------ metadata */

static int sb_mirror_getattr_impl(struct sb_mirror *m, const char *path, struct stat *st)
{
	char *rel;
	int side, ret;

	if (!*path)
		return fstat(m->p->rootfd[0], st) < 0 ? -errno : 0;
	if ((ret = sb_mi_map(m, path, &rel, &side)) < 0)
		return ret;
	ret = -ENOENT;
	for (int i = 0; i < 2; i++) {
		if (side >= 0 && i != side)
			continue;
		ret = sb_stat_beneath(m->p->rootfd[i], rel, strlen(rel), st);
		if (ret == 0 && i == SB_TGT && tgt_alias(m, rel))
			ret = -ENOENT;
		if (ret == 0) {
			if (i == SB_TGT)
				st->st_ino = SB_VIEW_INO(st->st_ino, SB_TGT);
			break;
		}
		if (ret != -ENOENT && ret != -ENOTDIR)
			break;
	}
	free(rel);
	return ret;
}

static int sb_mirror_readlink_impl(struct sb_mirror *m, const char *path, char *buf, size_t size)
{
	char *rel;
	int side, dfd = -1, ret;
	const char *base;
	struct stat st;

	if ((ret = sb_mi_map(m, path, &rel, &side)) < 0)
		return ret;
	if ((ret = find_side(m, rel, side, &dfd, &base, &st)) >= 0) {
		ssize_t n = readlinkat(dfd, base, buf, size - 1);
		ret = n < 0 ? -errno : 0;
		if (n >= 0)
			buf[n] = '\0';
	}
	if (dfd >= 0)
		close(dfd);
	free(rel);
	return ret;
}

/*
 * access(2) and chdir in a mount without default_permissions: the daemon
 * runs as the only user the kernel lets in, so the partner's own check,
 * made with the daemon's credentials, is the caller's answer.
 */
static int sb_mirror_access_impl(struct sb_mirror *m, const char *path, int mask)
{
	char *rel;
	int side, dfd = -1, ret;
	const char *base;
	struct stat st;

	if (!*path)
		return faccessat(m->p->rootfd[0], ".", mask, AT_EACCESS) < 0 ? -errno : 0;
	if ((ret = sb_mi_map(m, path, &rel, &side)) < 0)
		return ret;
	if ((ret = find_side(m, rel, side, &dfd, &base, &st)) >= 0)
		ret = faccessat(dfd, base, mask, AT_EACCESS | AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
	if (dfd >= 0)
		close(dfd);
	free(rel);
	return ret;
}

int sb_mirror_statfs(struct sb_mirror *m, struct statvfs *out)
{
	struct statvfs s[2];
	for (int i = 0; i < 2; i++)
		if (fstatvfs(m->p->rootfd[i], &s[i]) < 0)
			return -errno;
	/* The smaller free space is all a write through both sides can use. */
	int i = (double)s[1].f_bavail * s[1].f_frsize < (double)s[0].f_bavail * s[0].f_frsize;
	*out = s[i];
	return 0;
}

/* ------------------------------------------------------------ locked entry points */

int sb_mirror_getattr(struct sb_mirror *m, const char *path, struct stat *st)
{
	SHARED(m);
	int ret = sb_mirror_getattr_impl(m, path, st);
	UNSHARED(m);
	return ret;
}

int sb_mirror_access(struct sb_mirror *m, const char *path, int mask)
{
	SHARED(m);
	int ret = sb_mirror_access_impl(m, path, mask);
	UNSHARED(m);
	return ret;
}

int sb_mirror_readlink(struct sb_mirror *m, const char *path, char *buf, size_t size)
{
	SHARED(m);
	int ret = sb_mirror_readlink_impl(m, path, buf, size);
	UNSHARED(m);
	return ret;
}

void sb_mi_log_oneside(struct sb_mirror *m, const char *what, const char *rel, int side,
		       int err)
{
	char action[64];
	snprintf(action, sizeof(action), "%s refused by the %s", what, side ? "target" : "source");
	sb_log_op(m->p->log, m->p->id, action, rel, strlen(rel), 0, NULL, err);
}
