/*
 * The changes apply.c makes to a side: copies go to a temporary file in
 * the destination directory, hashed while written, and are renamed into
 * place; metadata is carried onto content already the same; deletions.
 * Each re-checks the entry against what the scan saw first.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "apply_int.h"
#include "versions.h"

/* 0 if side's entry is still what the scan saw, -EAGAIN if it changed. */
int sb_ap_unchanged(int pfd, const char *name, const struct sb_scan *s)
{
	struct stat st;
	struct sb_fp fp;

	if (pfd < 0 || fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (pfd >= 0 && errno != ENOENT)
			return -errno;
		return s->info.type == SB_NONE ? 0 : -EAGAIN;
	}
	if (s->info.type != sb_type_of_mode(st.st_mode))
		return -EAGAIN;
	sb_fp_from_stat(&fp, &st);
	if (s->info.type == SB_DIR)
		return fp.dev == s->fp.dev && fp.ino == s->fp.ino ? 0 : -EAGAIN;
	if (!sb_fp_equal(&fp, &s->fp) || (st.st_mode & 07777) != s->rawmode)
		return -EAGAIN;
	return 0;
}

/* Unique per run and per file; O_EXCL catches the impossible clash. */
static void make_temp_name(struct apply *a, char out[64])
{
	snprintf(out, 64, SB_TMP_PREFIX "%ld.%08llx.%llu", (long)a->pid_self,
		 (unsigned long long)a->nonce, (unsigned long long)++a->ntemp);
}

/*
 * Ownership as the original where we may (as root), and mode, on side
 * `to`, as far as its file system keeps them: FAT answers ENOSYS to chmod,
 * and a mode or owner it cannot hold is no change (plan.c's as_held()).
 */
static int set_owner_mode(const struct apply *a, int to, int fd, const struct sb_scan *s)
{
	uint32_t caps = sb_pship_caps(a->p, to)->flags;
	if ((caps & SB_CAP_OWNER) && a->euid == 0 && (s->uid != a->euid || s->gid != a->egid) &&
	    fchown(fd, s->uid, s->gid) < 0 && errno != EPERM)
		return -errno;
	if ((caps & SB_CAP_MODE) && fchmod(fd, s->info.mode) < 0)
		return -errno;
	return 0;
}

/* Ownership, mode and times of side `to`'s new copy. */
static int set_meta_fd(const struct apply *a, int to, int fd, const struct sb_scan *s)
{
	struct timespec t[2] = { ts_of(s->atime_ns), ts_of(s->info.mtime_ns) };
	int ret = set_owner_mode(a, to, fd, s);
	if (ret == 0 && futimens(fd, t) < 0)
		ret = -errno;
	return ret;
}

/* Whether a copy takes xattr name: the SELinux label is the destination's
 * policy's; trusted.* and security.* are root's to read and set. */
static int xattr_carried(const struct apply *a, const char *name)
{
	if (!strcmp(name, "security.selinux"))
		return 0;
	return a->euid == 0 || !strncmp(name, "user.", 5) || !strncmp(name, "system.posix_acl_", 17);
}

/*
 * The extended attributes of in (ACLs among them) onto out, a new copy on
 * side `to`, as rsync -X does: nothing where that side holds none (caps),
 * and a name it refuses (no ACLs there, a namespace it lacks) is left out,
 * as a mode it cannot hold is. Reconcile does not compare xattrs: one
 * changed alone is not carried (see README).
 */
static int copy_xattrs(const struct apply *a, int to, int in, int out)
{
	char *names = NULL, *val = NULL;
	size_t vcap = 0;
	int ret = 0;

	if (!(sb_pship_caps(a->p, to)->flags & SB_CAP_XATTR))
		return 0;
	ssize_t n = flistxattr(in, NULL, 0);
	if (n <= 0)
		return n < 0 && errno != ENOTSUP ? -errno : 0;
	if (!(names = malloc((size_t)n)) || (n = flistxattr(in, names, (size_t)n)) < 0) {
		ret = !names ? -ENOMEM : errno == ERANGE ? -EAGAIN : -errno;
		goto out;
	}
	for (char *nm = names; nm < names + n; nm += strlen(nm) + 1) {
		if (!xattr_carried(a, nm))
			continue;
		ssize_t vn = fgetxattr(in, nm, NULL, 0);
		if (vn < 0 && errno == ENODATA)
			continue;	/* gone since the listing */
		if (vn < 0) {
			ret = -errno;
			goto out;
		}
		if ((size_t)vn + 1 > vcap) {
			free(val);
			if (!(val = malloc((vcap = (size_t)vn + 1)))) {
				ret = -ENOMEM;
				goto out;
			}
		}
		if ((vn = fgetxattr(in, nm, val, vcap)) < 0) {
			ret = errno == ERANGE ? -EAGAIN : errno == ENODATA ? 0 : -errno;
			if (ret < 0)
				goto out;
			continue;
		}
		if (fsetxattr(out, nm, val, (size_t)vn, 0) < 0 && errno != ENOTSUP &&
		    errno != EPERM && errno != EINVAL && errno != ENOSPC && errno != E2BIG) {
			ret = -errno;
			goto out;
		}
	}
out:
	free(names);
	free(val);
	return ret;
}

/* Name's value on fd into *val (grown as needed): its length, -ENODATA. */
static ssize_t xattr_value(int fd, const char *name, char **val, size_t *cap)
{
	for (int tries = 0; tries < 3; tries++) {
		ssize_t n = fgetxattr(fd, name, NULL, 0);
		if (n < 0)
			return -errno;
		if ((size_t)n + 1 > *cap) {
			char *v = realloc(*val, (size_t)n + 1);
			if (!v)
				return -ENOMEM;
			*val = v;
			*cap = (size_t)n + 1;
		}
		if ((n = fgetxattr(fd, name, *val, *cap)) >= 0 || errno != ERANGE)
			return n < 0 ? -errno : n;
	}
	return -EAGAIN;
}

/* Whether name is in the list of n bytes. */
static int listed(const char *list, ssize_t n, const char *name)
{
	for (const char *nm = list; nm && nm < list + n; nm += strlen(nm) + 1)
		if (!strcmp(nm, name))
			return 1;
	return 0;
}

/* Side i's name, open (O_RDONLY is enough for xattrs) and still as want
 * says, with its xattr names in *list (malloc'd, *n bytes). */
static int xattr_side(struct apply *a, const struct sb_fp *want, int i, const char *name,
		      int *fd, char **list, ssize_t *n)
{
	struct stat st;
	struct sb_fp fp;

	*fd = openat(a->pfd[i], name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (*fd < 0 || fstat(*fd, &st) < 0)
		return errno == ENOENT || errno == ELOOP ? -EAGAIN : -errno;
	sb_fp_from_stat(&fp, &st);
	if (!sb_fp_equal(&fp, want))
		return -EAGAIN;
	if ((*n = flistxattr(*fd, NULL, 0)) <= 0)
		return *n < 0 && errno != ENOTSUP ? -errno : (*n = 0);
	if (!(*list = malloc((size_t)*n)))
		return -ENOMEM;
	return (*n = flistxattr(*fd, *list, (size_t)*n)) < 0 ? -EAGAIN : 0;
}

/*
 * The xattrs of a file's side that changed onto the other, where they
 * differ, the content being the same: with *from < 0 (a RECORD: same
 * content and metadata), the side whose fingerprint alone moved since the
 * last sync (its ctime: an xattr or an ACL set there, say), if only one
 * did; else (a META, after sb_ap_meta) *from, the other side being as
 * *tofp says. 1 with *from that side and *tofp the other's new fingerprint
 * when it changed them; 0 when nothing was to do; -EAGAIN when a side
 * moved since.
 */
int sb_ap_xattr_follow(struct apply *a, const struct sb_pitem *it, const char *name, int *from,
		       struct sb_fp *tofp)
{
	int fd[2] = { -1, -1 }, ret = 0, changed = 0, f = *from;
	char *list[2] = { NULL, NULL }, *v[2] = { NULL, NULL };
	size_t cap[2] = { 0, 0 };
	ssize_t n[2] = { 0, 0 };
	struct sb_fp want[2] = { it->s[0].fp, it->s[1].fp };
	struct stat st;

	if (it->s[0].info.type != SB_FILE || !(it->flags & SB_IF_REC) ||
	    !(sb_pship_caps(a->p, 0)->flags & SB_CAP_XATTR) ||
	    !(sb_pship_caps(a->p, 1)->flags & SB_CAP_XATTR))
		return 0;
	if (f < 0) {
		int m0 = !sb_fp_equal(&it->s[0].fp, &it->rec.fp[0]);
		int m1 = !sb_fp_equal(&it->s[1].fp, &it->rec.fp[1]);
		if (m0 == m1)
			return 0;
		f = m0 ? 0 : 1;
	} else {
		want[!f] = *tofp;
	}
	int t = !f;
	int64_t before = sb_wall_ns();
	for (int i = 0; i < 2; i++)
		if ((ret = xattr_side(a, &want[i], i, name, &fd[i], &list[i], &n[i])) < 0)
			goto out;
	/* The changed side's names onto the other where the value differs... */
	for (const char *nm = list[f]; nm && nm < list[f] + n[f]; nm += strlen(nm) + 1) {
		if (!xattr_carried(a, nm))
			continue;
		ssize_t x = xattr_value(fd[f], nm, &v[0], &cap[0]);
		ssize_t y = listed(list[t], n[t], nm) ? xattr_value(fd[t], nm, &v[1], &cap[1]) : -ENODATA;
		if (x == -ENODATA)
			continue;
		if (x < 0 || (y < 0 && y != -ENODATA)) {
			ret = x < 0 ? (int)x : (int)y;
			goto out;
		}
		if (y == x && !memcmp(v[0], v[1], (size_t)x))
			continue;
		if (fsetxattr(fd[t], nm, v[0], (size_t)x, 0) == 0)
			changed = 1;
		else if (errno != ENOTSUP && errno != EPERM && errno != EINVAL && errno != E2BIG) {
			ret = -errno;
			goto out;
		}
	}
	/* ...and the other's that the changed side no longer has go. */
	for (const char *nm = list[t]; nm && nm < list[t] + n[t]; nm += strlen(nm) + 1)
		if (xattr_carried(a, nm) && !listed(list[f], n[f], nm) && fremovexattr(fd[t], nm) == 0)
			changed = 1;
	if (changed && fstat(fd[t], &st) < 0) {
		ret = -errno;
		goto out;
	}
	if (changed) {
		sb_fp_from_stat(tofp, &st);
		sb_fp_settle(tofp, sb_pship_fine(a->p, t), before);
		*from = f;
		ret = 1;
	}
out:
	for (int i = 0; i < 2; i++) {
		if (fd[i] >= 0)
			close(fd[i]);
		free(list[i]);
		free(v[i]);
	}
	return ret;
}

/*
 * Copies a file into a new temporary on side `to`; -EAGAIN if the source moved.
 * The temporary is returned open in *outfd, with its fingerprint once its
 * times were set (*wrote; see installed()). With anon set (a new name) it
 * may be an unnamed O_TMPFILE (tmp then stays empty) for link_anon(): a
 * killed run then leaves nothing behind, and no rename is needed.
 */
static int copy_file(struct apply *a, int sfd, const char *name,
		     const struct sb_scan *s, int to, char tmp[64],
		     uint8_t sha[SB_SHA_LEN], int anon, int *outfd, struct sb_fp *wrote)
{
	int in = -1, out = -1, ret, dfd = a->pfd[to];
	struct stat st;
	struct sb_fp fp;
	uint64_t total = 0;

	tmp[0] = '\0';
	in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (in < 0)
		return errno == ENOENT || errno == ELOOP ? -EAGAIN : -errno;
	if (fstat(in, &st) < 0) {
		ret = -errno;
		goto out;
	}
	sb_fp_from_stat(&fp, &st);
	ret = -EAGAIN;
	if (!sb_fp_equal(&fp, &s->fp))
		goto out;
	if (anon && !a->no_tmpfile) {
		out = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
		if (out < 0)
			a->no_tmpfile = 1;	/* not on this file system: named ones */
	}
	if (out < 0) {
		make_temp_name(a, tmp);
		out = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (out < 0) {
			ret = -errno;
			tmp[0] = '\0';
			goto out;
		}
	}
	/* Holes stay holes: a sparse image is neither read nor written whole. */
	if ((ret = sb_sha_reset(a->sha)) < 0 ||
	    (ret = sb_sparse_copy(in, out, 0, s->info.size, a->sha, a->buf, COPY_BUF,
				  &total)) < 0 ||
	    (ret = sb_sha_final(a->sha, sha)) < 0)
		goto out;
	/* A write during the copy moves size, mtime or ctime: never record it. */
	if (fstat(in, &st) < 0) {
		ret = -errno;
		goto out;
	}
	sb_fp_from_stat(&fp, &st);
	ret = -EAGAIN;
	if (!sb_fp_equal(&fp, &s->fp) || total != s->info.size)
		goto out;
	if ((ret = set_meta_fd(a, to, out, s)) < 0 || (ret = copy_xattrs(a, to, in, out)) < 0)
		goto out;
	if (fstat(out, &st) < 0) {
		ret = -errno;
		goto out;
	}
	sb_fp_from_stat(wrote, &st);
	/* Start writeback of a large file now, so the syncfs before the next
	 * commit finds little left to write and the I/O overlaps the rest of
	 * the copy (for small files the call costs more than it saves). */
	if (total >= COPY_BUF)
		sync_file_range(out, 0, 0, SYNC_FILE_RANGE_WRITE);
	*outfd = out;
	out = -1;
	ret = 0;
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (ret < 0 && tmp[0]) {
		unlinkat(dfd, tmp, 0);
		tmp[0] = '\0';
	}
	return ret;
}

static int copy_link(struct apply *a, int sfd, const char *name,
		     const struct sb_scan *s, int dfd, char tmp[64],
		     uint8_t sha[SB_SHA_LEN], struct sb_fp *wrote)
{
	char *target = malloc(s->info.size + 1);
	int ret;

	tmp[0] = '\0';
	if (!target)
		return -ENOMEM;
	ssize_t n = readlinkat(sfd, name, target, s->info.size + 1);
	if (n < 0 || (uint64_t)n != s->info.size) {
		ret = n < 0 && errno != ENOENT && errno != EINVAL ? -errno : -EAGAIN;
		goto out;
	}
	target[n] = '\0';
	if ((ret = sb_hash_buf(target, n, sha)) < 0)
		goto out;
	make_temp_name(a, tmp);
	if (symlinkat(target, dfd, tmp) < 0) {
		ret = -errno;
		tmp[0] = '\0';
		goto out;
	}
	struct timespec t[2] = { ts_of(s->atime_ns), ts_of(s->info.mtime_ns) };
	if (a->euid == 0 && (s->uid != a->euid || s->gid != a->egid))
		fchownat(dfd, tmp, s->uid, s->gid, AT_SYMLINK_NOFOLLOW);
	utimensat(dfd, tmp, t, AT_SYMLINK_NOFOLLOW);
	struct stat st;
	if (fstatat(dfd, tmp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		ret = -errno;
		unlinkat(dfd, tmp, 0);
		tmp[0] = '\0';
		goto out;
	}
	sb_fp_from_stat(wrote, &st);
out:
	free(target);
	return ret;
}

/*
 * A FIFO or device node made anew under a temporary name, with the
 * source's type, rdev (its size field), owner, mode and times; nothing to
 * read or hash. A socket is never made: no process would be listening.
 */
static int copy_node(struct apply *a, const struct sb_scan *s, int dfd, char tmp[64],
		     uint8_t sha[SB_SHA_LEN], struct sb_fp *wrote)
{
	struct timespec t[2] = { ts_of(s->atime_ns), ts_of(s->info.mtime_ns) };
	struct stat st;
	int ret = 0;

	tmp[0] = '\0';
	memset(sha, 0, SB_SHA_LEN);
	if (s->info.type == SB_SOCK)
		return -EOPNOTSUPP;
	make_temp_name(a, tmp);
	if (mknodat(dfd, tmp, sb_mode_of_type(s->info.type) | 0600, s->info.size) < 0) {
		tmp[0] = '\0';
		return -errno;
	}
	if (a->euid == 0 && (s->uid != a->euid || s->gid != a->egid))
		fchownat(dfd, tmp, s->uid, s->gid, AT_SYMLINK_NOFOLLOW);
	if (fchmodat(dfd, tmp, s->info.mode, 0) < 0 ||
	    utimensat(dfd, tmp, t, AT_SYMLINK_NOFOLLOW) < 0 ||
	    fstatat(dfd, tmp, &st, AT_SYMLINK_NOFOLLOW) < 0)
		ret = -errno;
	if (ret < 0) {
		unlinkat(dfd, tmp, 0);
		tmp[0] = '\0';
		return ret;
	}
	sb_fp_from_stat(wrote, &st);
	return 0;
}

/* What a replacement or deletion keeps as a version: files and symlinks,
 * and a directory going whole (one the plan empties first holds nothing). */
static int kept_kind(int type, int whole)
{
	return type == SB_FILE || type == SB_LINK || (type == SB_DIR && whole);
}

/*
 * Puts the finished temporary in place of name, if name is still as
 * scanned. The version it replaces is kept first (versions.c), at the very
 * point it would be renamed over or removed: kept by a link, the rename
 * over it stays atomic; moved away (a directory, or no hard links), the
 * name is free for the rename.
 */
static int install(struct apply *a, int to, const char *tmp, const char *name,
		   const struct sb_scan *was, int rmtree_ok)
{
	int dfd = a->pfd[to], gone = 0;
	/* An absent destination needs no look: RENAME_NOREPLACE refuses a newcomer. */
	int ret = was->info.type == SB_NONE ? 0 : sb_ap_unchanged(dfd, name, was);
	if (ret < 0)
		return ret;
	if (kept_kind(was->info.type, rmtree_ok) &&
	    (gone = sb_vrun_keep(a->vers, to, dfd, name, a->cur, a->curlen,
				 was->info.type == SB_DIR ? SB_VK_MOVE : SB_VK_LINK)) < 0)
		return gone;
	if (was->info.type == SB_DIR && !gone) {
		ret = rmtree_ok ? sb_rmtree(dfd, name)
			: unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
		if (ret < 0)
			return ret == -ENOTEMPTY ? -EAGAIN : ret;
	}
	if (was->info.type == SB_NONE || was->info.type == SB_DIR || gone) {
		if (renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST)
			return -EAGAIN;
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
	}
	return renameat(dfd, tmp, dfd, name) < 0 ? -errno : 0;
}

/* Gives an unnamed temporary the name, which must still be free. */
static int link_anon(struct apply *a, int fd, int dfd, const char *name)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	if (errno == EEXIST)
		return -EAGAIN;	/* it appeared since the scan */
	if (errno == ENOENT || errno == EPERM || errno == EXDEV)
		a->no_tmpfile = 1;	/* no /proc here: named temporaries from now on */
	return -errno;
}

/*
 * The fingerprint a record may keep for a copy just put in place: taken on
 * the copy's own descriptor (fd, or for a symlink by name) after the rename
 * or link, since those move the ctime. It vouches for the bytes written
 * only if the copy still has the inode, size and mtime it had when sbfs
 * set its times (*wrote): a write landing in between is stamped with the
 * time of the write, which differs from the mtime given where stamps are
 * fine, and on a coarse file system when the mtime given is older than
 * SB_RACY_NS. Otherwise its ctime is spoiled and the next scan looks.
 */
static void installed(struct apply *a, int fd, int dfd, const char *name,
		      const struct sb_fp *wrote, int side, int64_t before, struct sb_fp *fp)
{
	struct stat st;
	int ok = fd >= 0 ? fstat(fd, &st) == 0 : fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;

	*fp = *wrote;
	if (ok)
		sb_fp_from_stat(fp, &st);
	if (!ok || fp->ino != wrote->ino || fp->size != wrote->size ||
	    fp->mtime_ns != wrote->mtime_ns ||
	    (!sb_pship_fine(a->p, side) && wrote->mtime_ns > before - SB_RACY_NS))
		fp->ctime_ns = SB_FP_UNSURE;
}


/*
 * Reads fd back after sbfs set its times: a write landing in between would
 * have had its mtime overwritten, so *fp, taken now on that descriptor,
 * may vouch only for bytes hashed to want (NULL: any); -EAGAIN if not.
 */
static int read_back(struct apply *a, int fd, int to, const uint8_t *want, struct sb_fp *fp)
{
	uint8_t sha[SB_SHA_LEN];
	struct stat st;
	int ret;

	if (fstat(fd, &st) < 0)
		return -errno;
	int64_t before = sb_wall_ns();
	sb_fp_from_stat(fp, &st);
	if ((ret = sb_hash_stable(fd, fp, sha)) < 0)
		return ret;
	if (want && memcmp(sha, want, SB_SHA_LEN))
		return -EAGAIN;
	sb_fp_settle(fp, sb_pship_fine(a->p, to), before);
	return 0;
}

/*
 * For a copy whose mtime moved when it was renamed into place, on a file
 * system known to do that (fusefat stamps the rename of an open file with
 * the time of day; caps.c): sets the time again. A write may have moved it
 * instead, so the bytes are read back on the same descriptor, as sb_ap_meta()
 * does; unless they are the bytes copied, *fp stays spoiled (installed()
 * saw the mtime move) and the next scan finds the change by its hash.
 */
static void retime(struct apply *a, int dfd, const char *name, const struct sb_scan *s,
		   const uint8_t sha[SB_SHA_LEN], int to, struct sb_fp *fp)
{
	struct timespec t[2] = { ts_of(s->atime_ns), ts_of(s->info.mtime_ns) };
	struct stat st;
	struct sb_fp now;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && st.st_ino == fp->ino && futimens(fd, t) == 0 &&
	    read_back(a, fd, to, sha, &now) == 0)
		*fp = now;
	close(fd);
}

/* *tofp gets the fingerprint a record may keep for the copy (files and
 * symlinks; see installed()). */
int sb_ap_copy(struct apply *a, const struct sb_pitem *it, const char *name,
		   uint8_t sha[SB_SHA_LEN], struct sb_fp *tofp)
{
	int to = it->to, from = !to, ret;
	const struct sb_scan *src = &it->s[from], *dst = &it->s[to];
	char tmp[64] = "";

	/* Its directory went (or became a symlink) since the scan. */
	if (a->pfd[from] < 0 || a->pfd[to] < 0) {
		a->pgone = a->pfd[from] < 0 ? from + 1 : to + 1;
		return -EAGAIN;
	}
	/* A file's source is checked on its open descriptor by copy_file. */
	if (src->info.type != SB_FILE && (ret = sb_ap_unchanged(a->pfd[from], name, src)) < 0)
		return ret;
	if (src->info.type == SB_DIR) {
		if ((ret = sb_ap_unchanged(a->pfd[to], name, dst)) < 0)
			return ret;
		if (dst->info.type != SB_NONE && dst->info.type != SB_DIR) {
			int gone = !kept_kind(dst->info.type, 0) ? 0
				: sb_vrun_keep(a->vers, to, a->pfd[to], name, a->cur, a->curlen,
					       SB_VK_MOVE);
			if (gone < 0)
				return gone;
			if (!gone && unlinkat(a->pfd[to], name, 0) < 0)
				return -errno;
		}
		int made = mkdirat(a->pfd[to], name, 0700) == 0;
		if (!made && errno != EEXIST)
			return -errno;
		int fd = openat(a->pfd[to], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		ret = set_owner_mode(a, to, fd, src);
		if (ret == 0 && made) {	/* a new directory takes its ACLs, the default one too */
			int in = openat(a->pfd[from], name,
					O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			ret = in < 0 ? -EAGAIN : copy_xattrs(a, to, in, fd);
			if (in >= 0)
				close(in);
		}
		close(fd);
		memset(sha, 0, SB_SHA_LEN);
		return ret;
	}
	int out = -1, fresh = dst->info.type == SB_NONE;
	struct sb_fp wrote;
	int64_t before = sb_wall_ns();	/* before the copy's times are set */
	ret = sb_type_special(src->info.type)
		? copy_node(a, src, a->pfd[to], tmp, sha, &wrote)
		: src->info.type == SB_LINK
		? copy_link(a, a->pfd[from], name, src, a->pfd[to], tmp, sha, &wrote)
		: copy_file(a, a->pfd[from], name, src, to, tmp, sha, fresh,
			    &out, &wrote);
	/* A full disk: the oldest versions there go first, then once more. */
	if (ret == -ENOSPC && src->info.type == SB_FILE && !a->retried &&
	    sb_vrun_make_room(a->vers, to, src->info.size) > 0) {
		a->retried = 1;
		ret = sb_ap_copy(a, it, name, sha, tofp);
		a->retried = 0;
		return ret;
	}
	if (ret < 0)
		return ret;
	int unnamed = !tmp[0];
	/* The plan may already know the content: a mismatch means it moved. */
	if ((it->flags & (from ? SB_IF_HASH1 : SB_IF_HASH0)) &&
	    memcmp(sha, it->sha[from], SB_SHA_LEN))
		ret = -EAGAIN;
	if (ret == 0)
		ret = unnamed ? link_anon(a, out, a->pfd[to], name)
			: install(a, to, tmp, name, dst, it->flags & SB_IF_RMTREE);
	if (ret == 0)
		installed(a, out, a->pfd[to], name, &wrote, to, before, tofp);
	if (out >= 0)
		close(out);
	if (ret == 0 && src->info.type == SB_FILE && tofp->mtime_ns != wrote.mtime_ns &&
	    (sb_pship_caps(a->p, to)->flags & SB_CAP_MVTIME))
		retime(a, a->pfd[to], name, src, sha, to, tofp);
	if (ret < 0 && !unnamed)
		unlinkat(a->pfd[to], tmp, 0);
	if (unnamed && (ret == -ENOENT || ret == -EPERM || ret == -EXDEV))
		return sb_ap_copy(a, it, name, sha, tofp);	/* again, with a named temporary */
	return ret;
}

/*
 * Carries mode and mtime to side `to`, whose content is already the same.
 * A write landing between the check and the change of mtime would have its
 * mtime overwritten, so the file is read back on the same descriptor after
 * the change: *tofp is the fingerprint of bytes hashed to the known hash.
 */
int sb_ap_meta(struct apply *a, const struct sb_pitem *it, const char *name,
		   struct sb_fp *tofp)
{
	int to = it->to, from = !to, ret, fd = -1;
	const struct sb_scan *src = &it->s[from];
	const uint8_t *want = known_sha(it);
	struct stat st;
	struct sb_fp fp;

	if ((ret = sb_ap_unchanged(a->pfd[from], name, src)) < 0 ||
	    (ret = sb_ap_unchanged(a->pfd[to], name, &it->s[to])) < 0)
		return ret;
	int modes = sb_pship_caps(a->p, to)->flags & SB_CAP_MODE;
	if (src->info.type != SB_FILE)
		return modes && fchmodat(a->pfd[to], name, src->info.mode, 0) < 0 ? -errno : 0;
	fd = openat(a->pfd[to], name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ELOOP ? -EAGAIN : -errno;
	ret = -EAGAIN;
	if (fstat(fd, &st) < 0)
		goto errno_out;
	sb_fp_from_stat(&fp, &st);
	if (!sb_fp_equal(&fp, &it->s[to].fp))
		goto out;
	/* Its own atime, not UTIME_OMIT, which exfat-fuse mishandles. */
	struct timespec t[2] = { ts_of(it->s[to].atime_ns), ts_of(src->info.mtime_ns) };
	if ((modes && fchmod(fd, src->info.mode) < 0) || futimens(fd, t) < 0)
		goto errno_out;
	ret = read_back(a, fd, to, want, tofp);
	goto out;
errno_out:
	ret = -errno;
out:
	close(fd);
	return ret;
}

int sb_ap_delete(struct apply *a, const struct sb_pitem *it, const char *name)
{
	int to = it->to, ret;
	if ((ret = sb_ap_unchanged(a->pfd[to], name, &it->s[to])) < 0)
		return ret;
	if (it->s[to].info.type == SB_NONE)
		return 0;
	/* Kept rather than deleted, unless versions are off (0). */
	if (kept_kind(it->s[to].info.type, it->flags & SB_IF_RMTREE) &&
	    (ret = sb_vrun_keep(a->vers, to, a->pfd[to], name, a->cur, a->curlen,
				SB_VK_MOVE)) != 0)
		return ret < 0 ? ret : 0;
	if (it->s[to].info.type != SB_DIR)
		return unlinkat(a->pfd[to], name, 0) < 0 ? -errno : 0;
	if (it->flags & SB_IF_RMTREE)
		return sb_rmtree(a->pfd[to], name);
	if (unlinkat(a->pfd[to], name, AT_REMOVEDIR) < 0)
		return errno == ENOTEMPTY || errno == EEXIST ? -EAGAIN : -errno;
	return 0;
}
