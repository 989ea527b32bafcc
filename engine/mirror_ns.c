/*
 * Namespace changes through the view, each made on both sides (or on the
 * one side a mapped path is limited to) before the call returns: mkdir,
 * symlink, unlink, rmdir, rename, link, and chmod, chown, utimens and
 * truncate. A creation lands on both sides or on neither, a removal too;
 * deleting or renaming a conflict entry resolves the conflict.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mirror_int.h"

/* The more telling of two sides' errors (ENOENT says least). */
static int worse(int a, int b)
{
	if (a == 0 || a == -ENOENT)
		return b ? b : a;
	return a;
}

/*
 * Runs op on each side that holds rel (both when side < 0). The call
 * succeeds only when every side did; on a failure the path is left
 * unrecorded, for the next reconcile.
 */
typedef int (*side_op)(int dfd, const char *base, void *arg);

/*
 * -EEXIST (and a log line) when base would be made in side i's directory
 * dfd where that side is case-insensitive and already holds a name that
 * differs only in case: creating it would open or replace that other file.
 */
int sb_mi_fold_clash(struct sb_mirror *m, int i, int dfd, const char *base, const char *rel)
{
	if (!(sb_pship_caps(m->p, i)->flags & SB_CAP_FOLD) || !sb_fold_alias(dfd, base))
		return 0;
	sb_log_op(m->p->log, m->p->id, "case-clash", rel, strlen(rel), 0, NULL, -EEXIST);
	return -EEXIST;
}

static int op_chmod(int dfd, const char *base, void *arg);
static int op_chown(int dfd, const char *base, void *arg);
static int op_mkdir(int dfd, const char *base, void *arg);
static int op_symlink(int dfd, const char *base, void *arg);
static int op_mknod(int dfd, const char *base, void *arg);
static int op_utimens(int dfd, const char *base, void *arg);
static int op_truncate(int dfd, const char *base, void *arg);

/* For the log. */
static const char *op_name(side_op op)
{
	return op == op_chmod ? "chmod" : op == op_chown ? "chown" : op == op_mkdir ? "mkdir"
	       : op == op_symlink ? "symlink" : op == op_mknod ? "mknod"
	       : op == op_utimens ? "utimens" : op == op_truncate ? "truncate" : "change";
}

/* 0 where side i's file system cannot hold what op sets (FAT answers chmod
 * with ENOSYS): the change is then made on the other side alone, and is no
 * difference between them (plan.c's as_held()). */
static int holds(struct sb_mirror *m, int i, side_op op)
{
	uint32_t f = sb_pship_caps(m->p, i)->flags;
	return !((op == op_chmod && !(f & SB_CAP_MODE)) || (op == op_chown && !(f & SB_CAP_OWNER)));
}

/* 1 if a/an and b/bn are one entry (a case-only rename on a folding side). */
static int same_entry(int a, const char *an, int b, const char *bn)
{
	struct stat x, y;
	return fstatat(a, an, &x, AT_SYMLINK_NOFOLLOW) == 0 &&
	       fstatat(b, bn, &y, AT_SYMLINK_NOFOLLOW) == 0 && x.st_dev == y.st_dev &&
	       x.st_ino == y.st_ino;
}

static int on_sides(struct sb_mirror *m, const char *rel, int side, int create,
		    side_op op, void *arg, int *done)
{
	int ret = 0, any = 0;
	*done = 0;
	for (int i = 0; i < 2; i++) {
		int dfd;
		const char *base;
		if (side >= 0 && i != side)
			continue;
		int r = 0;
		if (!holds(m, i, op)) {
			*done |= 1 << i;
			continue;
		}
		if (!*rel) {
			r = op(m->p->rootfd[i], ".", arg);	/* the root itself */
		} else if ((r = sb_mi_side_parent(m, i, rel, create, &dfd, &base)) == 0) {
			if (!create || (r = sb_mi_fold_clash(m, i, dfd, base, rel)) == 0)
				r = op(dfd, base, arg);
			close(dfd);
		}
		if (r == 0) {
			*done |= 1 << i;
			any = 1;
		} else {
			ret = worse(ret, r);
		}
	}
	if (any && ret == -ENOENT && !create)
		ret = 0;	/* present on one side only: done there */
	if (ret < 0 && any && side < 0)
		sb_mi_log_oneside(m, op_name(op), rel, !(*done & 1) ? SB_SRC : SB_TGT, ret);
	return ret;
}

/*
 * New entries belong to the caller, as if made without sbfs (root only). In
 * a set-group-ID directory the kernel already gave the directory's group,
 * which the caller would have got too.
 */
void sb_mi_own(int dfd, const char *base, const struct creds *c)
{
	struct stat dst;

	if (!c || (c->uid == 0 && c->gid == 0) || geteuid() != 0)
		return;
	gid_t gid = fstat(dfd, &dst) == 0 && (dst.st_mode & S_ISGID) ? (gid_t)-1 : c->gid;
	fchownat(dfd, base, c->uid, gid, AT_SYMLINK_NOFOLLOW);
}

static int op_mkdir(int dfd, const char *base, void *arg)
{
	struct creds *c = arg;
	if (mkdirat(dfd, base, c->mode) < 0)
		return -errno;
	sb_mi_own(dfd, base, c);
	return 0;
}

static int op_rmdir(int dfd, const char *base, void *arg)
{
	(void)arg;
	return unlinkat(dfd, base, AT_REMOVEDIR) < 0 ? -errno : 0;
}

static int op_unlink(int dfd, const char *base, void *arg)
{
	(void)arg;
	return unlinkat(dfd, base, 0) < 0 ? -errno : 0;
}

static int op_symlink(int dfd, const char *base, void *arg)
{
	struct creds *c = arg;
	if (symlinkat(c->target, dfd, base) < 0)
		return -errno;
	sb_mi_own(dfd, base, c);
	return 0;
}

static int op_mknod(int dfd, const char *base, void *arg)
{
	struct creds *c = arg;
	if (mknodat(dfd, base, c->mode, c->rdev) < 0)
		return -errno;
	sb_mi_own(dfd, base, c);
	return 0;
}

/* Undoes a creation on the sides where it succeeded, when another failed. */
static void undo(struct sb_mirror *m, const char *rel, int done, int dir)
{
	for (int i = 0; i < 2; i++) {
		int dfd;
		const char *base;
		if (!(done & (1 << i)) || sb_mi_side_parent(m, i, rel, 0, &dfd, &base) < 0)
			continue;
		unlinkat(dfd, base, dir ? AT_REMOVEDIR : 0);
		close(dfd);
	}
}

/* A creation must land on both sides or on neither. */
static int create_both(struct sb_mirror *m, const char *path, side_op op,
		       struct creds *c, int dir, int only)
{
	char *rel;
	int side, done, ret, ign;
	if ((ret = sb_mi_map_ign(m, path, &rel, &side, dir, &ign)) < 0)
		return ret == -ENOENT ? -EEXIST : ret;
	if (side < 0)
		side = only;
	ret = on_sides(m, rel, side, 1, op, c, &done);
	if (ret < 0)
		undo(m, rel, done, dir);
	else if (!ign)
		ret = sb_mi_enqueue(m, ROP_REFRESH, rel, NULL, NULL);
	free(rel);
	return ret;
}

static int sb_mirror_mkdir_impl(struct sb_mirror *m, const char *path, unsigned mode,
		    unsigned uid, unsigned gid)
{
	struct creds c = { uid, gid, mode, NULL, 0 };
	return create_both(m, path, op_mkdir, &c, 1, -1);
}

static int sb_mirror_symlink_impl(struct sb_mirror *m, const char *target, const char *path,
		      unsigned uid, unsigned gid)
{
	struct creds c = { uid, gid, 0, target, 0 };
	/* Where the target has no symlinks, the source alone holds it (and
	 * reconcile skips it: "cannot be stored"). */
	return create_both(m, path, op_symlink, &c, 0,
			   sb_pship_caps(m->p, SB_TGT)->flags & SB_CAP_SYMLINK ? -1 : SB_SRC);
}

static int sb_mirror_mknod_impl(struct sb_mirror *m, const char *path, unsigned mode,
				uint64_t rdev, unsigned uid, unsigned gid)
{
	struct creds c = { uid, gid, mode, NULL, rdev };
	int type = sb_type_of_mode(mode);
	if (type == SB_OTHER || type == SB_DIR || type == SB_LINK)
		return -EINVAL;
	/* As for symlinks: where the target cannot hold it, the source alone
	 * does (and reconcile skips it: "cannot be stored"). */
	char buf[64];
	const char *why;
	int only = type != SB_FILE && sb_caps_storable(sb_pship_caps(m->p, SB_TGT), "x", 1,
						       type, 0, buf, &why) < 0 ? SB_SRC : -1;
	return create_both(m, path, op_mknod, &c, 0, only);
}

/*
 * Removes rel on every side that has it, or on none: a side that refuses
 * (read-only, gone, I/O error) must not leave the other side's copy
 * deleted, which the next reconcile would then carry over. The source's
 * entry is first renamed aside (a temporary name scans ignore), and put
 * back if the target's removal fails; a directory (empty) is made again.
 */
static int remove_both(struct sb_mirror *m, const char *rel, int dir, int *done)
{
	static unsigned long seq;
	int dfd[2] = { -1, -1 }, have[2] = { 0, 0 }, ret = 0;
	const char *base[2];
	struct stat st[2];
	char aside[64];
	int flag = dir ? AT_REMOVEDIR : 0;

	*done = 0;
	for (int i = 0; i < 2; i++) {
		int r = sb_mi_side_parent(m, i, rel, 0, &dfd[i], &base[i]);
		if (r == -ENOENT || r == -ENOTDIR) {
			dfd[i] = -1;
			continue;
		}
		if (r < 0) {
			ret = r;
			goto out;
		}
		have[i] = fstatat(dfd[i], base[i], &st[i], AT_SYMLINK_NOFOLLOW) == 0;
	}
	if (!have[0] && !have[1]) {
		ret = -ENOENT;
		goto out;
	}
	if (!have[0] || !have[1] || (dir && !S_ISDIR(st[0].st_mode))) {
		for (int i = 0; i < 2; i++) {
			if (!have[i])
				continue;
			if (unlinkat(dfd[i], base[i], flag) < 0) {
				ret = worse(ret, -errno);
				continue;
			}
			*done |= 1 << i;
		}
		goto out;
	}
	if (dir) {
		/* The target first: an empty directory is easily made again. */
		if (unlinkat(dfd[1], base[1], AT_REMOVEDIR) < 0) {
			ret = -errno;
			goto out;
		}
		if (unlinkat(dfd[0], base[0], AT_REMOVEDIR) < 0) {
			ret = -errno;
			if (mkdirat(dfd[1], base[1], st[1].st_mode & 07777) == 0)
				fchownat(dfd[1], base[1], st[1].st_uid, st[1].st_gid, AT_SYMLINK_NOFOLLOW);
			goto out;
		}
		*done = 3;
		goto out;
	}
	snprintf(aside, sizeof(aside), SB_TMP_PREFIX "rm.%ld.%lu", (long)getpid(),
		 __atomic_add_fetch(&seq, 1, __ATOMIC_RELAXED));
	if (renameat2(dfd[0], base[0], dfd[0], aside, RENAME_NOREPLACE) < 0) {
		ret = -errno;
		goto out;
	}
	if (unlinkat(dfd[1], base[1], 0) < 0) {
		ret = -errno;
		renameat2(dfd[0], aside, dfd[0], base[0], RENAME_NOREPLACE);
		goto out;
	}
	unlinkat(dfd[0], aside, 0);
	*done = 3;
out:
	for (int i = 0; i < 2; i++)
		if (dfd[i] >= 0)
			close(dfd[i]);
	return ret;
}

/* Deleting NAME.conflict-X resolves the conflict for the other side. */
static int remove_entry(struct sb_mirror *m, const char *path, side_op op)
{
	char *rel;
	int side, done, ret, ign;
	SHARED(m);
	if ((ret = sb_mi_map_ign(m, path, &rel, &side, op == op_rmdir, &ign)) < 0) {
		UNSHARED(m);
		return ret;
	}
	if (ign) {
		/* A record left of it (by a reconcile with other patterns)
		 * would make the target's copy a deletion once un-ignored. */
		ret = on_sides(m, rel, SB_SRC, 0, op, NULL, &done);
		if (done)
			sb_mi_enqueue(m, ROP_DEL, rel, NULL, NULL);
	} else if (side < 0) {
		ret = remove_both(m, rel, op == op_rmdir, &done);
		if (done)
			sb_mi_enqueue(m, ret == 0 ? ROP_DEL : ROP_REFRESH, rel, NULL, NULL);
	}
	UNSHARED(m);
	if (side >= 0 && !ign) {
		const char *paths[1] = { rel };
		ret = sb_mi_resolve_paths(m, paths, 1, side == SB_SRC ? SB_CHOOSE_TARGET : SB_CHOOSE_SOURCE);
	}
	free(rel);
	return ret;
}

int sb_mirror_unlink(struct sb_mirror *m, const char *path)
{
	return remove_entry(m, path, op_unlink);
}

int sb_mirror_rmdir(struct sb_mirror *m, const char *path)
{
	return remove_entry(m, path, op_rmdir);
}

static int op_chmod(int dfd, const char *base, void *arg)
{
	return fchmodat(dfd, base, *(mode_t *)arg, 0) < 0 ? -errno : 0;
}

struct own_arg {
	uid_t uid;
	gid_t gid;
};

static int op_chown(int dfd, const char *base, void *arg)
{
	struct own_arg *o = arg;
	return fchownat(dfd, base, o->uid, o->gid, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int op_utimens(int dfd, const char *base, void *arg)
{
	return utimensat(dfd, base, arg, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
}

static int op_truncate(int dfd, const char *base, void *arg)
{
	int fd = openat(dfd, base, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	int ret = ftruncate(fd, *(off_t *)arg) < 0 ? -errno : 0;
	close(fd);
	return ret;
}

/* Both sides carry the source's mtime, as a copy would. */
static void same_mtime(struct sb_mirror *m, const char *rel)
{
	int d0, d1;
	const char *b0, *b1;
	struct stat st;
	if (sb_mi_side_parent(m, 0, rel, 0, &d0, &b0) < 0)
		return;
	if (sb_mi_side_parent(m, 1, rel, 0, &d1, &b1) == 0) {
		if (fstatat(d0, b0, &st, AT_SYMLINK_NOFOLLOW) == 0) {
			struct timespec t[2] = { st.st_atim, st.st_mtim };
			utimensat(d1, b1, t, AT_SYMLINK_NOFOLLOW);
		}
		close(d1);
	}
	close(d0);
}

/* mt: the mtime op sets (utimens), else NULL. */
static int change(struct sb_mirror *m, const char *path, side_op op, void *arg,
		  const struct timespec *mt)
{
	char *rel;
	int side, done, ret;
	struct stat pre[2];
	struct known k = { .how = K_NONE };
	if ((ret = sb_mi_map(m, path, &rel, &side)) < 0)
		return ret;
	int files = side < 0 && sb_mi_stat_files(m, rel, pre) == 0;
	ret = on_sides(m, rel, side, 0, op, arg, &done);
	if (ret == 0 && side < 0) {
		if (op == op_truncate) {
			/* New content, not hashed here: K_POST from the stats
			 * after both sides got the source's mtime. */
			same_mtime(m, rel);
			struct stat st[2];
			k.before_ns = sb_wall_ns();
			if (files && sb_mi_stat_files(m, rel, st) == 0) {
				k.how = K_POST;
				for (int i = 0; i < 2; i++)
					sb_fp_from_stat(&k.fp[i], &st[i]);
				k.mode = st[0].st_mode & 07777;
				k.mtime_ns = sb_mi_ts_ns(&st[0].st_mtim);
			}
		} else if (files) {
			sb_mi_seen_meta(m, rel, pre, mt, &k);
		}
		sb_mi_files_follow(m, rel, &k);
		ret = sb_mi_enqueue(m, op == op_truncate ? ROP_REFRESH : ROP_META, rel, NULL, &k);
	}
	free(rel);
	return ret;
}

static int sb_mirror_chmod_impl(struct sb_mirror *m, const char *path, unsigned mode)
{
	mode_t md = mode;
	__atomic_add_fetch(&m->mode_gen, 1, __ATOMIC_RELAXED);
	return change(m, path, op_chmod, &md, NULL);
}

static int sb_mirror_chown_impl(struct sb_mirror *m, const char *path, unsigned uid, unsigned gid)
{
	struct own_arg o = { uid, gid };
	return change(m, path, op_chown, &o, NULL);
}

static int sb_mirror_utimens_impl(struct sb_mirror *m, const char *path, const struct timespec tv[2])
{
	/* "Now" once, so both sides get the very same time. */
	struct timespec t[2] = { tv[0], tv[1] }, now;
	clock_gettime(CLOCK_REALTIME, &now);
	for (int i = 0; i < 2; i++)
		if (t[i].tv_nsec == UTIME_NOW)
			t[i] = now;
	return change(m, path, op_utimens, t, &t[1]);
}

static int sb_mirror_truncate_impl(struct sb_mirror *m, const char *path, int64_t size)
{
	off_t sz = size;
	return change(m, path, op_truncate, &sz, NULL);
}

/* rf to rt on side i only. */
static int rename_side(struct sb_mirror *m, int i, const char *rf, const char *rt,
		       unsigned int flags)
{
	int dfd, dfd2, ret;
	const char *b1, *b2;
	if ((ret = sb_mi_side_parent(m, i, rf, 0, &dfd, &b1)) < 0)
		return ret;
	if ((ret = sb_mi_side_parent(m, i, rt, 1, &dfd2, &b2)) == 0) {
		ret = renameat2(dfd, b1, dfd2, b2, flags) < 0 ? -errno : 0;
		if (ret == -EINVAL && !flags)
			ret = renameat(dfd, b1, dfd2, b2) < 0 ? -errno : 0;
		close(dfd2);
	}
	close(dfd);
	return ret;
}

/* Whether rel is a directory where side (-1: the source, else the
 * target) has it: the kind a new name for it will have. */
static int is_dir_at(struct sb_mirror *m, const char *rel, int side)
{
	struct stat st;
	for (int i = 0; i < 2; i++)
		if ((side < 0 || i == side) &&
		    sb_stat_beneath(m->p->rootfd[i], rel, strlen(rel), &st) == 0)
			return S_ISDIR(st.st_mode);
	return 0;
}

/*
 * rf, sf, ign: the source path as sb_mi_map_ign() gave it (the caller owns rf).
 * Between an ignored name and one that is not, the entry would have to
 * appear on the target or leave it: EXDEV, so that mv copies and deletes,
 * each through the view.
 */
static int rename_impl(struct sb_mirror *m, const char *rf, int sf, int ign, const char *to,
		       unsigned int flags)
{
	char *rt = NULL;
	int st, ret, done = 0, ign_to;

	if (sf >= 0 && !ign) {
		/* A conflict entry renamed: to NAME, that side wins; elsewhere,
		 * that version lives on under the new name and the other is NAME. */
		ret = sb_mi_map_ign(m, to, &rt, &st, is_dir_at(m, rf, sf), &ign_to);
		if (ret == -ENOENT && !strcmp(to, rf))
			ret = 0, st = -2;
		if (ret == 0 && ign_to)
			ret = -EXDEV;
		if (ret < 0)
			goto out;
		const char *paths[2] = { rf, rt };
		if (st == -2) {
			ret = sb_mi_resolve_paths(m, paths, 1, sf == SB_SRC ? SB_CHOOSE_SOURCE : SB_CHOOSE_TARGET);
			goto out;
		}
		ret = rename_side(m, sf, rf, rt, RENAME_NOREPLACE);
		if (ret == 0)
			ret = sb_mi_resolve_paths(m, paths, 2, sf == SB_SRC ? SB_CHOOSE_TARGET : SB_CHOOSE_SOURCE);
		goto out;
	}
	if ((ret = sb_mi_map_ign(m, to, &rt, &st, is_dir_at(m, rf, sf), &ign_to)) < 0)
		goto out;
	if (ign != ign_to) {
		ret = -EXDEV;
		goto out;
	}
	if (ign) {
		if ((ret = rename_side(m, SB_SRC, rf, rt, flags)) == 0) {
			sb_mi_files_renamed(m, rf, rt);
			/* no record may outlive either name: see remove_entry */
			if ((ret = sb_mi_enqueue(m, ROP_DEL, rf, NULL, NULL)) == 0)
				ret = sb_mi_enqueue(m, ROP_DEL, rt, NULL, NULL);
		}
		goto out;
	}
	struct stat pre[2], pre2[2];
	struct known k = { .how = K_NONE }, k2 = { .how = K_NONE };
	int files = sb_mi_stat_files(m, rf, pre) == 0;
	int files2 = (flags & RENAME_EXCHANGE) && sb_mi_stat_files(m, rt, pre2) == 0;
	for (int i = 0; i < 2; i++) {
		int d1, d2;
		const char *b1, *b2;
		int r = sb_mi_side_parent(m, i, rf, 0, &d1, &b1);
		if (r == 0) {
			r = sb_mi_side_parent(m, i, rt, 1, &d2, &b2);
			if (r == 0 && !same_entry(d1, b1, d2, b2))
				r = sb_mi_fold_clash(m, i, d2, b2, rt);	/* not a case-only rename */
			if (r == 0) {
				r = renameat2(d1, b1, d2, b2, flags) < 0 ? -errno : 0;
				if (r < 0 && errno == EINVAL && !flags)
					r = renameat(d1, b1, d2, b2) < 0 ? -errno : 0;
				close(d2);
			}
			close(d1);
		}
		if (r == 0) {
			done |= 1 << i;
		} else if (r != -ENOENT || !i || !done) {
			if (r == -ENOENT && i == 1 && done)
				continue;
			ret = r;
			if (done & 1) {
				/* roll the source back: one side changed is worse than none */
				int d1b, d2b;
				const char *x, *y;
				if (sb_mi_side_parent(m, 0, rt, 0, &d2b, &y) == 0) {
					if (sb_mi_side_parent(m, 0, rf, 0, &d1b, &x) == 0) {
						renameat2(d2b, y, d1b, x, flags & RENAME_EXCHANGE);
						close(d1b);
					}
					close(d2b);
				}
			}
			if (r != -ENOENT || i == 1)
				goto out;
		}
	}
	if (!done) {
		ret = -ENOENT;
		goto out;
	}
	ret = 0;
	/* A rename moves ctimes: the names get a refresh. */
	if (flags & RENAME_EXCHANGE) {
		if (files && done == 3)
			sb_mi_seen_meta(m, rt, pre, NULL, &k);
		if (files2 && done == 3)
			sb_mi_seen_meta(m, rf, pre2, NULL, &k2);
		sb_mi_files_follow(m, rt, &k);
		sb_mi_files_follow(m, rf, &k2);
		ret = sb_mi_enqueue(m, ROP_SWAP, rf, rt, NULL);
		if (ret == 0)
			ret = sb_mi_enqueue(m, ROP_META, rt, NULL, &k);
		if (ret == 0)
			ret = sb_mi_enqueue(m, ROP_META, rf, NULL, &k2);
	} else {
		sb_mi_files_renamed(m, rf, rt);
		if (files && done == 3)
			sb_mi_seen_meta(m, rt, pre, NULL, &k);
		sb_mi_files_follow(m, rt, &k);
		ret = sb_mi_enqueue(m, ROP_MOVE, rf, rt, NULL);
		if (ret == 0)
			ret = sb_mi_enqueue(m, ROP_META, rt, NULL, &k);
	}
out:
	free(rt);
	return ret;
}

static int sb_mirror_link_impl(struct sb_mirror *m, const char *from, const char *to)
{
	char *rf = NULL, *rt = NULL;
	int sf, st, ret, done = 0, ignf, ignt;

	struct stat pre[2];
	if ((ret = sb_mi_map_ign(m, from, &rf, &sf, 0, &ignf)) < 0 ||
	    (ret = sb_mi_map_ign(m, to, &rt, &st, 0, &ignt)) < 0)
		goto out;
	if (ignf != ignt) {
		ret = -EXDEV;	/* one name on both sides, the other on one: see rename_impl */
		goto out;
	}
	int files = sf < 0 && sb_mi_stat_files(m, rf, pre) == 0;
	for (int i = 0; i < 2; i++) {
		int d1, d2;
		const char *b1, *b2;
		if ((sf >= 0 && i != sf) || sb_mi_side_parent(m, i, rf, 0, &d1, &b1) < 0)
			continue;
		int r = sb_mi_side_parent(m, i, rt, 1, &d2, &b2);
		if (r == 0) {
			r = linkat(d1, b1, d2, b2, 0) < 0 ? -errno : 0;
			close(d2);
		}
		close(d1);
		if (r < 0) {
			undo(m, rt, done, 0);
			ret = r;
			goto out;
		}
		done |= 1 << i;
	}
	if (!done) {
		ret = -ENOENT;
		goto out;
	}
	struct known k = { .how = K_NONE };
	if (files && done == 3)
		sb_mi_seen_meta(m, rf, pre, NULL, &k);
	sb_mi_files_follow(m, rf, &k);
	ret = sb_mi_enqueue(m, ROP_META, rt, rf, &k);		/* rf's content, a new name */
	if (ret == 0)
		ret = sb_mi_enqueue(m, ROP_META, rf, NULL, &k);	/* its ctime moved */
out:
	free(rf);
	free(rt);
	return ret;
}

/* ------------------------------------------------------------ locked entry points */

int sb_mirror_mkdir(struct sb_mirror *m, const char *path, unsigned mode,
		    unsigned uid, unsigned gid)
{
	SHARED(m);
	int ret = sb_mirror_mkdir_impl(m, path, mode, uid, gid);
	UNSHARED(m);
	return ret;
}

int sb_mirror_symlink(struct sb_mirror *m, const char *target, const char *path,
		      unsigned uid, unsigned gid)
{
	SHARED(m);
	int ret = sb_mirror_symlink_impl(m, target, path, uid, gid);
	UNSHARED(m);
	return ret;
}

int sb_mirror_mknod(struct sb_mirror *m, const char *path, unsigned mode, uint64_t rdev,
		    unsigned uid, unsigned gid)
{
	SHARED(m);
	int ret = sb_mirror_mknod_impl(m, path, mode, rdev, uid, gid);
	UNSHARED(m);
	return ret;
}

int sb_mirror_chmod(struct sb_mirror *m, const char *path, unsigned mode)
{
	SHARED(m);
	int ret = sb_mirror_chmod_impl(m, path, mode);
	UNSHARED(m);
	return ret;
}

int sb_mirror_chown(struct sb_mirror *m, const char *path, unsigned uid, unsigned gid)
{
	SHARED(m);
	int ret = sb_mirror_chown_impl(m, path, uid, gid);
	UNSHARED(m);
	return ret;
}

int sb_mirror_utimens(struct sb_mirror *m, const char *path, const struct timespec tv[2])
{
	SHARED(m);
	int ret = sb_mirror_utimens_impl(m, path, tv);
	UNSHARED(m);
	return ret;
}

int sb_mirror_truncate(struct sb_mirror *m, const char *path, int64_t size)
{
	SHARED(m);
	int ret = sb_mirror_truncate_impl(m, path, size);
	UNSHARED(m);
	return ret;
}

int sb_mirror_link(struct sb_mirror *m, const char *from, const char *to)
{
	SHARED(m);
	int ret = sb_mirror_link_impl(m, from, to);
	UNSHARED(m);
	return ret;
}

/* A renamed conflict entry is a resolution: it must not hold the lock shared. */
int sb_mirror_rename(struct sb_mirror *m, const char *from, const char *to,
		     unsigned int flags)
{
	char *rf;
	int side, ret, ign;
	SHARED(m);
	if ((ret = sb_mi_map_ign(m, from, &rf, &side, 0, &ign)) < 0) {
		UNSHARED(m);
		return ret;
	}
	if (side < 0 || ign) {
		ret = rename_impl(m, rf, side, ign, to, flags);
		UNSHARED(m);
	} else {
		UNSHARED(m);
		ret = rename_impl(m, rf, side, ign, to, flags);
	}
	free(rf);
	return ret;
}
