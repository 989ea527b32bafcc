/*
 * Extended attributes through the view, every namespace (user.*, the
 * POSIX ACLs in system.posix_acl_*, trusted.* and security.* for root):
 * set on both sides (or on the one a mapped path is limited to), undone on
 * the first when the second refuses, read from the side shown. Which names
 * a file may hold is the partner's kernel's to say, as it would natively.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "mirror_int.h"

/*
 * An O_PATH descriptor of rel on side i, the entry itself even when it is a
 * symlink: the kernel asks for a symlink's attributes on the link's own
 * inode, and opening it for reading would fail (ELOOP) or follow it. An
 * O_PATH descriptor takes no f*xattr, so the calls go by its /proc path,
 * which resolves to the entry and no further (see xattr_path).
 */
static int xattr_fd(struct sb_mirror *m, int i, const char *rel)
{
	int dfd, fd;
	const char *base;
	if (!*rel)	/* the mount's root: the partners' roots */
		return (fd = openat(m->p->rootfd[i], ".", O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0 ?
		       -errno : fd;
	int ret = sb_mi_side_parent(m, i, rel, 0, &dfd, &base);
	if (ret < 0)
		return ret;
	fd = openat(dfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	ret = fd < 0 ? -errno : fd;
	close(dfd);
	return ret;
}

/* The magic link of fd: the following *xattr calls on it act on the entry
 * fd names, a symlink's own inode included, never on what a symlink names. */
static const char *xattr_path(char buf[32], int fd)
{
	snprintf(buf, 32, "/proc/self/fd/%d", fd);
	return buf;
}

/* name's value on fd's entry (malloc'd, *len bytes) or *had = 0 when it has
 * none; what an undo puts back. */
static int value_of(int fd, const char *name, char **val, size_t *len, int *had)
{
	char p[32];
	*val = NULL;
	*len = 0;
	*had = 0;
	for (int tries = 0; tries < 4; tries++) {
		ssize_t n = getxattr(xattr_path(p, fd), name, NULL, 0);
		if (n < 0)
			return errno == ENODATA ? 0 : -errno;
		char *v = malloc(n ? (size_t)n : 1);
		if (!v)
			return -ENOMEM;
		ssize_t got = getxattr(p, name, v, (size_t)n);
		if (got >= 0) {
			*val = v;
			*len = (size_t)got;
			*had = 1;
			return 0;
		}
		free(v);
		if (errno == ENODATA)
			return 0;
		if (errno != ERANGE)	/* ERANGE: it grew in between */
			return -errno;
	}
	return -ERANGE;
}

/* The change on fd's entry: set (flags as setxattr(2)) or remove. */
static int change(int fd, const char *name, const void *val, size_t size, int flags,
		  int remove)
{
	char p[32];
	int r = remove ? removexattr(xattr_path(p, fd), name)
		       : setxattr(xattr_path(p, fd), name, val, size, flags);
	return r < 0 ? -errno : 0;
}

static int sb_mirror_setxattr_impl(struct sb_mirror *m, const char *path, const char *name,
		       const void *val, size_t size, int flags, int remove)
{
	char *rel, *old = NULL;
	size_t olen = 0;
	int side, ret, had = 0, done = -1, fd[2] = { -1, -1 };
	struct stat pre[2];
	struct known k = { .how = K_NONE };
	if ((ret = sb_mi_map(m, path, &rel, &side)) < 0)
		return ret;
	int files = side < 0 && sb_mi_stat_files(m, rel, pre) == 0;
	for (int i = 0; i < 2 && ret == 0; i++) {
		if (side >= 0 && i != side)
			continue;
		/* What a side cannot hold is no difference (as holds()). */
		if (side < 0 && !(sb_pship_caps(m->p, i)->flags & SB_CAP_XATTR))
			continue;
		if ((fd[i] = xattr_fd(m, i, rel)) == -ENOENT)
			continue;
		if (fd[i] < 0) {
			ret = fd[i];
			break;
		}
		/* Before the first side changes: what to put back there
		 * should the second refuse (a partner without ACLs, a value
		 * too large for it). */
		if (done < 0 && side < 0 && (ret = value_of(fd[i], name, &old, &olen, &had)) < 0)
			break;
		if ((ret = change(fd[i], name, val, size, flags, remove)) == 0 && done < 0)
			done = i;
	}
	if (ret < 0 && done >= 0 && fd[done] >= 0)
		(void)(had ? change(fd[done], name, old, olen, 0, 0)
			   : change(fd[done], name, NULL, 0, 0, 1));
	if (ret == 0 && done < 0)
		ret = -ENOENT;
	if (ret == 0 && side < 0) {
		if (files)
			sb_mi_seen_meta(m, rel, pre, NULL, &k);
		sb_mi_files_follow(m, rel, &k);
		ret = sb_mi_enqueue(m, ROP_META, rel, NULL, &k);	/* its ctime moved */
	}
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	free(old);
	free(rel);
	return ret;
}

static long sb_mirror_getxattr_impl(struct sb_mirror *m, const char *path, const char *name,
			void *val, size_t size, int list)
{
	char *rel, p[32];
	int side;
	ssize_t ret;
	if ((ret = sb_mi_map(m, path, &rel, &side)) < 0)
		return ret;
	ret = -ENOENT;
	for (int i = 0; i < 2; i++) {
		if (side >= 0 && i != side)
			continue;
		int fd = xattr_fd(m, i, rel);
		if (fd == -ENOENT)
			continue;
		if (fd < 0) {
			ret = fd;
			break;
		}
		ssize_t n = list ? listxattr(xattr_path(p, fd), val, size)
				 : getxattr(xattr_path(p, fd), name, val, size);
		ret = n < 0 ? -errno : n;
		close(fd);
		break;
	}
	free(rel);
	return ret;
}

/* ------------------------------------------------------------ locked entry points */

int sb_mirror_setxattr(struct sb_mirror *m, const char *path, const char *name,
		       const void *val, size_t size, int flags, int remove)
{
	SHARED(m);
	int ret = sb_mirror_setxattr_impl(m, path, name, val, size, flags, remove);
	UNSHARED(m);
	return ret;
}

long sb_mirror_getxattr(struct sb_mirror *m, const char *path, const char *name,
			void *val, size_t size, int list)
{
	SHARED(m);
	long ret = sb_mirror_getxattr_impl(m, path, name, val, size, list);
	UNSHARED(m);
	return ret;
}
