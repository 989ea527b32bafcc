/*
 * Attributes outside the state: chmod, chown and utimens through an open
 * handle, and the inode flags of lsattr and chattr.
 *
 * Through a handle: what the mount uses for
 * a file whose last name was unlinked while it is open (fchmod, fchown and
 * futimens on it). There is no name left to record, so the state is not
 * told; both sides' descriptors get the change, a side whose file system
 * cannot hold it (see caps.h) excepted, as in mirror_ns.c.
 */
#include "mirror_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum what { SET_MODE, SET_OWNER, SET_TIMES };

struct fattr {
	enum what what;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec tv[2];
};

static int holds(struct sb_file *f, int side, enum what w)
{
	uint32_t c = sb_pship_caps(f->m->p, side)->flags;
	return !((w == SET_MODE && !(c & SB_CAP_MODE)) || (w == SET_OWNER && !(c & SB_CAP_OWNER)));
}

static int set_one(int fd, const struct fattr *a)
{
	int r = 0;
	switch (a->what) {
	case SET_MODE: r = fchmod(fd, a->mode); break;
	case SET_OWNER: r = fchown(fd, a->uid, a->gid); break;
	case SET_TIMES: r = futimens(fd, a->tv); break;
	}
	return r < 0 ? -errno : 0;
}

/* Both sides, the source first; the first refusal is the answer (the
 * other side is left as it is: the file is gone from the view). */
static int set_both(struct sb_file *f, const struct fattr *a)
{
	int ret = 0;
	SHARED(f->m);
	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < 2 && ret == 0; i++)
		if (f->fd[i] >= 0 && holds(f, i, a->what))
			ret = set_one(f->fd[i], a);
	pthread_mutex_unlock(&f->lock);
	UNSHARED(f->m);
	return ret;
}

int sb_file_chmod(struct sb_file *f, unsigned mode)
{
	struct fattr a = { .what = SET_MODE, .mode = mode };
	return set_both(f, &a);
}

int sb_file_chown(struct sb_file *f, unsigned uid, unsigned gid)
{
	struct fattr a = { .what = SET_OWNER, .uid = uid, .gid = gid };
	return set_both(f, &a);
}

int sb_file_utimens(struct sb_file *f, const struct timespec tv[2])
{
	/* "Now" once, so both sides get the very same time. */
	struct fattr a = { .what = SET_TIMES, .tv = { tv[0], tv[1] } };
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	for (int i = 0; i < 2; i++)
		if (a.tv[i].tv_nsec == UTIME_NOW)
			a.tv[i] = now;
	return set_both(f, &a);
}

/* ------------------------------------------------------------ inode flags */

/*
 * Side i's rel, open for the flags' ioctls: a regular file or a directory
 * only (opening a device would start its driver, a FIFO its peer's wait),
 * reopened from an O_PATH descriptor so that a symlink is never followed.
 */
static int flags_fd(struct sb_mirror *m, int i, const char *rel)
{
	int dfd, pfd, fd, ret;
	const char *base;
	struct stat st;
	char proc[32];

	if (!*rel)
		return (fd = openat(m->p->rootfd[i], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0
			       ? -errno : fd;
	if ((ret = sb_mi_side_parent(m, i, rel, 0, &dfd, &base)) < 0)
		return ret;
	pfd = openat(dfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	ret = pfd < 0 ? -errno : 0;
	close(dfd);
	if (ret < 0)
		return ret;
	if (fstat(pfd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
		close(pfd);
		return -ENOTTY;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
	fd = open(proc, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	ret = fd < 0 ? -errno : fd;
	close(pfd);
	return ret;
}

/* A file system without such flags (exFAT, FAT, sshfs): no side to them. */
static int no_flags(int err)
{
	return err == -ENOTTY || err == -EOPNOTSUPP || err == -ENOSYS || err == -EINVAL;
}

/* The ioctls of one kind: the flags (an int) or the fsxattr struct. */
struct kind {
	unsigned long get, set;
	size_t len;
};

static const struct kind kinds[2] = {
	{ FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, sizeof(int) },
	{ FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR, sizeof(struct fsxattr) },
};

union attr {
	int flags;
	struct fsxattr fsx;
};

/*
 * Set on each side that has them, the source first; when the target
 * refuses after the source took them, the source gets its old ones back.
 */
static int fileattr_impl(struct sb_mirror *m, const char *path, int fsx, int set, void *val)
{
	const struct kind *k = &kinds[!!fsx];
	int side, fd[2] = { -1, -1 }, held = 0, ret;
	union attr old[2];
	char *rel;

	if ((ret = sb_mi_map(m, path, &rel, &side)) < 0)
		return ret;
	ret = -ENOENT;
	for (int i = 0; i < 2; i++) {
		if ((side >= 0 && i != side) || (!set && held))
			continue;
		int r = fd[i] = flags_fd(m, i, rel);
		if (r >= 0)
			r = ioctl(fd[i], k->get, &old[i]) < 0 ? -errno : 0;
		if (r == -ENOENT || (r < 0 && no_flags(r) && (ret = r)))
			continue;
		if (r < 0) {
			ret = r;
			goto out;
		}
		held |= 1 << i;
		if (!set)
			memcpy(val, &old[i], k->len);
		ret = 0;
	}
	for (int i = 0; set && ret == 0 && i < 2; i++) {
		if (!(held & 1 << i) || (ret = ioctl(fd[i], k->set, val) < 0 ? -errno : 0) == 0)
			continue;
		if (i == 1 && (held & 1))
			(void)!ioctl(fd[0], k->set, &old[0]);
	}
out:
	for (int i = 0; i < 2; i++)
		if (fd[i] >= 0)
			close(fd[i]);
	free(rel);
	return ret;
}

int sb_mirror_fileattr(struct sb_mirror *m, const char *path, int fsx, int set, void *val)
{
	SHARED(m);
	int ret = fileattr_impl(m, path, fsx, set, val);
	UNSHARED(m);
	return ret;
}
