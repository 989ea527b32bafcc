/*
 * Extended attributes through the view: user.* only, set on both sides (or
 * on the one a mapped path is limited to), read from the side shown.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "mirror_int.h"

static int xattr_fd(struct sb_mirror *m, int i, const char *rel)
{
	int dfd, fd;
	const char *base;
	if (!*rel)	/* the mount's root: the partners' roots */
		return (fd = openat(m->p->rootfd[i], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ?
		       -errno : fd;
	int ret = sb_mi_side_parent(m, i, rel, 0, &dfd, &base);
	if (ret < 0)
		return ret;
	fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	ret = fd < 0 ? -errno : fd;
	close(dfd);
	return ret;
}

static int sb_mirror_setxattr_impl(struct sb_mirror *m, const char *path, const char *name,
		       const void *val, size_t size, int flags, int remove)
{
	char *rel;
	int side, ret, any = 0;
	if (strncmp(name, "user.", 5))
		return -ENOTSUP;
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
		int fd = xattr_fd(m, i, rel);
		if (fd == -ENOENT)
			continue;
		if (fd < 0) {
			ret = fd;
			break;
		}
		int r = remove ? fremovexattr(fd, name) : fsetxattr(fd, name, val, size, flags);
		ret = r < 0 ? -errno : 0;
		close(fd);
		any = 1;
	}
	if (ret == 0 && !any)
		ret = -ENOENT;
	if (ret == 0 && side < 0) {
		if (files)
			sb_mi_seen_meta(m, rel, pre, NULL, &k);
		sb_mi_files_follow(m, rel, &k);
		ret = sb_mi_enqueue(m, ROP_META, rel, NULL, &k);	/* its ctime moved */
	}
	free(rel);
	return ret;
}

static long sb_mirror_getxattr_impl(struct sb_mirror *m, const char *path, const char *name,
			void *val, size_t size, int list)
{
	char *rel;
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
		ssize_t n = list ? flistxattr(fd, val, size) : fgetxattr(fd, name, val, size);
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
