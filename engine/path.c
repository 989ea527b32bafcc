/*
 * Resolving relative paths beneath a partner's root without following
 * symlinks, so that a symlink planted inside a tree (by the user or an
 * attacker racing us) can never make the engine read or write outside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/openat2.h>

#include "internal.h"

#define DIR_FLAGS (O_RDONLY | O_DIRECTORY | O_CLOEXEC)

/* Set once the kernel has told us it has no openat2, to spare the failing
 * syscall on every later lookup. Atomic because the engine may resolve
 * paths from several threads. */
static int no_openat2;

int sb_path_valid(const char *rel, size_t len)
{
	size_t i, start = 0;

	if (len == 0)
		return 1;
	if (memchr(rel, '\0', len))
		return 0;
	/* Walk the components; i == len closes the last one. */
	for (i = 0; i <= len; i++) {
		size_t clen;

		if (i < len && rel[i] != '/')
			continue;
		clen = i - start;
		/* Catches a leading '/', a trailing '/' and "//". */
		if (clen == 0)
			return 0;
		if (rel[start] == '.' &&
		    (clen == 1 || (clen == 2 && rel[start + 1] == '.')))
			return 0;
		start = i + 1;
	}
	return 1;
}

/* A fresh open file description of dir rather than a dup, so that the
 * caller's directory offset is its own. */
static int reopen_dir(int dirfd, int *out)
{
	int fd, ret = 0;

	fd = openat(dirfd, ".", DIR_FLAGS);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	*out = fd;
out:
	return ret;
}

/*
 * One openat2 call of rel (a directory or, for a stat, any entry) with
 * flags. Returns 1 when the caller must fall back to the component walk.
 */
static int open_beneath(int rootfd, const char *rel, size_t len, int flags, int *out)
{
	char buf[PATH_MAX];
	struct open_how how;
	long fd;
	int ret = 0;

	memcpy(buf, rel, len);
	buf[len] = '\0';
	memset(&how, 0, sizeof(how));
	how.flags = flags;
	how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
		      RESOLVE_NO_MAGICLINKS;
	do
		fd = syscall(SYS_openat2, rootfd, buf, &how, sizeof(how));
	while (fd < 0 && errno == EINTR);
	if (fd >= 0) {
		*out = (int)fd;
		goto out;
	}
	switch (errno) {
	case ENOSYS:
		__atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
		ret = 1;
		break;
	case EPERM:
		/* Older container seccomp profiles deny syscalls they do not
		 * know with EPERM; the walk then reports the real answer. */
	case EAGAIN:
		/* A concurrent rename made the kernel give up on a safe
		 * RESOLVE_BENEATH lookup; the walk has no such restriction. */
		ret = 1;
		break;
	default:
		ret = -errno;
		break;
	}
out:
	return ret;
}

/* Why openat(..., O_NOFOLLOW|O_DIRECTORY) failed on an existing name: a
 * symlink is -ELOOP whichever of ELOOP/ENOTDIR the kernel chose. */
static int classify(int dirfd, const char *name, int err)
{
	struct stat st;
	int ret = -err;

	if (err != ENOTDIR && err != ELOOP)
		goto out;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		goto out;
	ret = S_ISLNK(st.st_mode) ? -ELOOP : -ENOTDIR;
out:
	return ret;
}

/* Opens one component below dirfd, creating it first when asked to. */
static int open_comp(int dirfd, const char *name, mode_t mkdir_mode, int *out)
{
	int fd, ret = 0, tries;

	/* Bounded: a directory we created may be removed before we open it,
	 * but a peer doing that forever must not hang us. */
	for (tries = 0;; tries++) {
		fd = openat(dirfd, name, DIR_FLAGS | O_NOFOLLOW);
		if (fd >= 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno != ENOENT || !mkdir_mode || tries >= 3) {
			ret = classify(dirfd, name, errno);
			goto out;
		}
		if (mkdirat(dirfd, name, mkdir_mode) < 0 && errno != EEXIST) {
			ret = -errno;
			goto out;
		}
	}
	*out = fd;
out:
	return ret;
}

static int walk(int rootfd, const char *dir, size_t dlen, mode_t mkdir_mode,
		int *out)
{
	char name[NAME_MAX + 1];
	int cur = -1, next = -1, ret;
	size_t start = 0, i;

	ret = reopen_dir(rootfd, &cur);
	if (ret < 0)
		goto out;
	for (i = 0; i <= dlen; i++) {
		size_t clen;

		if (i < dlen && dir[i] != '/')
			continue;
		clen = i - start;
		if (clen > NAME_MAX) {
			ret = -ENAMETOOLONG;
			goto out;
		}
		memcpy(name, dir + start, clen);
		name[clen] = '\0';
		ret = open_comp(cur, name, mkdir_mode, &next);
		if (ret < 0)
			goto out;
		close(cur);
		cur = next;
		next = -1;
		start = i + 1;
	}
	*out = cur;
	cur = -1;
out:
	if (cur >= 0)
		close(cur);
	return ret;
}

/* Opens directory dir (dlen bytes, already validated) beneath rootfd. */
static int open_dir_at(int rootfd, const char *dir, size_t dlen,
		       mode_t mkdir_mode, int *out)
{
	int ret;

	if (dlen == 0) {
		ret = reopen_dir(rootfd, out);
		goto out;
	}
	/* openat2 takes at most PATH_MAX bytes, and cannot create: a missing
	 * directory to be made is left to the walk. */
	if (dlen < PATH_MAX && !__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
		ret = open_beneath(rootfd, dir, dlen, DIR_FLAGS, out);
		if (ret == 0 || (ret < 0 && !(mkdir_mode && ret == -ENOENT)))
			goto out;
	}
	ret = walk(rootfd, dir, dlen, mkdir_mode, out);
out:
	return ret;
}

int sb_open_parent(int rootfd, const char *rel, size_t len, mode_t mkdir_mode,
		   int *dirfd, const char **base)
{
	const char *slash;
	size_t dlen;
	int ret;

	*dirfd = -1;
	*base = NULL;
	if (len == 0 || !sb_path_valid(rel, len)) {
		ret = -EINVAL;
		goto out;
	}
	slash = memrchr(rel, '/', len);
	dlen = slash ? (size_t)(slash - rel) : 0;
	ret = open_dir_at(rootfd, rel, dlen, mkdir_mode, dirfd);
	if (ret < 0)
		goto out;
	*base = slash ? slash + 1 : rel;
out:
	return ret;
}

int sb_open_dir(int rootfd, const char *rel, size_t len, int *dirfd)
{
	int ret;

	*dirfd = -1;
	if (!sb_path_valid(rel, len)) {
		ret = -EINVAL;
		goto out;
	}
	ret = open_dir_at(rootfd, rel, len, 0, dirfd);
out:
	return ret;
}

int sb_stat_beneath(int rootfd, const char *rel, size_t len, struct stat *st)
{
	const char *base;
	int dfd = -1, ret;

	if (len == 0 || !sb_path_valid(rel, len)) {
		ret = -EINVAL;
		goto out;
	}
	/* One openat2 of the whole path: a missing name costs one syscall
	 * instead of three, which is what a create's lookup finds. O_PATH with
	 * O_NOFOLLOW opens a last component that is a symlink itself. */
	if (len < PATH_MAX && !__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
		int fd;
		ret = open_beneath(rootfd, rel, len, O_PATH | O_NOFOLLOW | O_CLOEXEC, &fd);
		if (ret == 0) {
			ret = fstat(fd, st) < 0 ? -errno : 0;
			close(fd);
		}
		if (ret <= 0)
			goto out;
	}
	if ((ret = sb_open_parent(rootfd, rel, len, 0, &dfd, &base)) < 0)
		goto out;
	ret = fstatat(dfd, base, st, AT_SYMLINK_NOFOLLOW) < 0 ? -errno : 0;
out:
	if (dfd >= 0)
		close(dfd);
	return ret;
}
