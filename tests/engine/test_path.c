/* Path validation and symlink-safe resolution beneath a root. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>

#include "internal.h"

/* 40 levels of 200-byte names: about 8 KB, well past PATH_MAX. */
#define DEEP_LEVELS 40
#define DEEP_NAME 200

/* Removes name under dirfd and everything beneath it using only fds, so
 * that trees deeper than PATH_MAX go too. Never follows symlinks. */
static void rm_rf_at(int dirfd, const char *name)
{
	struct dirent *de;
	DIR *d;
	int fd;

	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		unlinkat(dirfd, name, 0);
		return;
	}
	d = fdopendir(fd);
	cr_assert_not_null(d);
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		rm_rf_at(fd, de->d_name);
	}
	closedir(d);
	cr_assert_eq(unlinkat(dirfd, name, AT_REMOVEDIR), 0, "rmdir %s: %s",
		     name, strerror(errno));
}

struct fixture {
	char base[64];		/* mkdtemp dir holding root/ and outside/ */
	char root[80];
	char outside[80];
	int rootfd;
};

static void fx_init(struct fixture *fx)
{
	char b[128];

	strcpy(fx->base, "/tmp/sbfs-test-path-XXXXXX");
	cr_assert_not_null(mkdtemp(fx->base));
	snprintf(fx->root, sizeof(fx->root), "%s/root", fx->base);
	snprintf(fx->outside, sizeof(fx->outside), "%s/outside", fx->base);
	cr_assert_eq(mkdir(fx->root, 0700), 0);
	cr_assert_eq(mkdir(fx->outside, 0700), 0);
	snprintf(b, sizeof(b), "%s/b", fx->outside);
	cr_assert_eq(mkdir(b, 0700), 0);
	fx->rootfd = open(fx->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fx->rootfd, 0);
}

static void fx_fini(struct fixture *fx)
{
	close(fx->rootfd);
	rm_rf_at(AT_FDCWD, fx->base);
}

static void mkdirs(int rootfd, const char *rel)
{
	char buf[256], *p;

	snprintf(buf, sizeof(buf), "%s", rel);
	for (p = buf; (p = strchr(p, '/')); p++) {
		*p = '\0';
		mkdirat(rootfd, buf, 0700);
		*p = '/';
	}
	cr_assert_eq(mkdirat(rootfd, buf, 0700), 0);
}

static void touch(int rootfd, const char *rel)
{
	int fd = openat(rootfd, rel, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

	cr_assert_geq(fd, 0);
	close(fd);
}

/* Is fd the directory rel (reached with plain openat from rootfd)? */
static void assert_same_dir(int fd, int rootfd, const char *rel)
{
	struct stat a, b;

	cr_assert_eq(fstat(fd, &a), 0);
	cr_assert_eq(fstatat(rootfd, rel, &b, AT_SYMLINK_NOFOLLOW), 0, "%s", rel);
	cr_assert(S_ISDIR(a.st_mode));
	cr_assert(a.st_dev == b.st_dev && a.st_ino == b.st_ino, "not %s", rel);
}

#define V(s) sb_path_valid(s, sizeof(s) - 1)

Test(path, valid)
{
	cr_assert_eq(V(""), 1);
	cr_assert_eq(sb_path_valid(NULL, 0), 1);
	cr_assert_eq(V("a"), 1);
	cr_assert_eq(V("a/b/c"), 1);
	cr_assert_eq(V(".a"), 1);
	cr_assert_eq(V("a/..b"), 1);
	cr_assert_eq(V("a/b..."), 1);
	cr_assert_eq(V("a/ /b"), 1);
	cr_assert_eq(V("\xff\xfe/\n"), 1);

	cr_assert_eq(V("/"), 0);
	cr_assert_eq(V("/a"), 0);
	cr_assert_eq(V("a/"), 0);
	cr_assert_eq(V("a//b"), 0);
	cr_assert_eq(V("//"), 0);
	cr_assert_eq(V("."), 0);
	cr_assert_eq(V(".."), 0);
	cr_assert_eq(V("./a"), 0);
	cr_assert_eq(V("a/."), 0);
	cr_assert_eq(V("a/../b"), 0);
	cr_assert_eq(V("a/.."), 0);
	cr_assert_eq(V("a\0b"), 0);
	/* The length is what counts, not a NUL: "a/" cut to "a" is fine. */
	cr_assert_eq(sb_path_valid("a/", 1), 1);
	cr_assert_eq(sb_path_valid("a/b", 2), 0);
}

Test(path, open_parent)
{
	struct fixture fx;
	const char *rel = "a/b/c", *base = NULL;
	int fd = -1;

	fx_init(&fx);
	mkdirs(fx.rootfd, "a/b");

	cr_assert_eq(sb_open_parent(fx.rootfd, rel, 5, 0, &fd, &base), 0);
	assert_same_dir(fd, fx.rootfd, "a/b");
	cr_assert_eq(base, rel + 4);
	close(fd);

	/* c need not exist, nor be a directory. */
	touch(fx.rootfd, "a/b/c");
	cr_assert_eq(sb_open_parent(fx.rootfd, rel, 5, 0, &fd, &base), 0);
	close(fd);

	/* A top-level name: the root itself, as a fresh fd. */
	cr_assert_eq(sb_open_parent(fx.rootfd, "x", 1, 0, &fd, &base), 0);
	assert_same_dir(fd, fx.rootfd, ".");
	cr_assert_neq(fd, fx.rootfd);
	cr_assert_str_eq(base, "x");
	close(fd);

	/* rel is not NUL-terminated: only len bytes count. */
	cr_assert_eq(sb_open_parent(fx.rootfd, "a/b/cXYZ/q", 5, 0, &fd, &base),
		     0);
	assert_same_dir(fd, fx.rootfd, "a/b");
	cr_assert_eq(strncmp(base, "c", 1), 0);
	close(fd);

	fx_fini(&fx);
}

Test(path, open_dir)
{
	struct fixture fx;
	int fd = -1;

	fx_init(&fx);
	mkdirs(fx.rootfd, "a/b");
	touch(fx.rootfd, "a/f");

	cr_assert_eq(sb_open_dir(fx.rootfd, "", 0, &fd), 0);
	assert_same_dir(fd, fx.rootfd, ".");
	close(fd);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a/b", 3, &fd), 0);
	assert_same_dir(fd, fx.rootfd, "a/b");
	close(fd);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a/bogus", 3, &fd), 0);
	assert_same_dir(fd, fx.rootfd, "a/b");
	close(fd);

	fd = 1234;
	cr_assert_eq(sb_open_dir(fx.rootfd, "a/nope", 6, &fd), -ENOENT);
	cr_assert_eq(fd, -1);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a/f", 3, &fd), -ENOTDIR);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a/f/x", 5, &fd), -ENOTDIR);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a//b", 4, &fd), -EINVAL);
	cr_assert_eq(sb_open_dir(fx.rootfd, "..", 2, &fd), -EINVAL);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a/../..", 7, &fd), -EINVAL);
	cr_assert_eq(sb_open_dir(fx.rootfd, "/tmp", 4, &fd), -EINVAL);
	cr_assert_eq(fd, -1);

	fx_fini(&fx);
}

Test(path, open_parent_invalid)
{
	struct fixture fx;
	const char *base = "set";
	int fd = 1234;

	fx_init(&fx);
	cr_assert_eq(sb_open_parent(fx.rootfd, "", 0, 0, &fd, &base), -EINVAL);
	cr_assert_eq(fd, -1);
	cr_assert_null(base);
	cr_assert_eq(sb_open_parent(fx.rootfd, "/a", 2, 0, &fd, &base), -EINVAL);
	cr_assert_eq(sb_open_parent(fx.rootfd, "a/", 2, 0, &fd, &base), -EINVAL);
	cr_assert_eq(sb_open_parent(fx.rootfd, "a//b", 4, 0, &fd, &base), -EINVAL);
	cr_assert_eq(sb_open_parent(fx.rootfd, ".", 1, 0, &fd, &base), -EINVAL);
	cr_assert_eq(sb_open_parent(fx.rootfd, "../b", 4, 0755, &fd, &base),
		     -EINVAL);
	cr_assert_eq(sb_open_parent(fx.rootfd, "a/./b", 5, 0755, &fd, &base),
		     -EINVAL);
	cr_assert_eq(sb_open_parent(fx.rootfd, "a/b", 3, 0, &fd, &base), -ENOENT);
	/* Nothing was created by the refused mkdir_mode calls. */
	cr_assert_eq(faccessat(fx.rootfd, "a", F_OK, AT_SYMLINK_NOFOLLOW), -1);
	fx_fini(&fx);
}

Test(path, mkdir_mode)
{
	struct fixture fx;
	const char *rel = "n1/n2/n3/file", *base = NULL;
	struct stat st;
	int fd = -1;

	fx_init(&fx);
	cr_assert_eq(sb_open_parent(fx.rootfd, rel, strlen(rel), 0750, &fd,
				    &base), 0);
	assert_same_dir(fd, fx.rootfd, "n1/n2/n3");
	cr_assert_str_eq(base, "file");
	close(fd);
	cr_assert_eq(fstatat(fx.rootfd, "n1/n2", &st, 0), 0);
	cr_assert_eq(st.st_mode & 0700, 0700);
	cr_assert_eq(fstatat(fx.rootfd, "n1/n2/n3/file", &st, 0), -1);

	/* Existing dirs are fine, a file in the way is not. */
	cr_assert_eq(sb_open_parent(fx.rootfd, rel, strlen(rel), 0750, &fd,
				    &base), 0);
	close(fd);
	touch(fx.rootfd, "n1/f");
	cr_assert_eq(sb_open_parent(fx.rootfd, "n1/f/x/y", 8, 0750, &fd, &base),
		     -ENOTDIR);
	cr_assert_eq(fd, -1);
	fx_fini(&fx);
}

/* Number of entries in directory path (not counting . and ..). */
static int count_entries(const char *path)
{
	struct dirent *de;
	DIR *d = opendir(path);
	int n = 0;

	cr_assert_not_null(d, "%s", path);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

/* A symlink as an intermediate component must stop the lookup, whether it
 * points outside the root, to "..", or even to a directory inside. */
static void check_link(struct fixture *fx, const char *target)
{
	const char *base = NULL;
	int fd = 1234;

	cr_assert_eq(symlinkat(target, fx->rootfd, "a"), 0);

	cr_assert_eq(sb_open_parent(fx->rootfd, "a/b/c", 5, 0, &fd, &base),
		     -ELOOP, "%s", target);
	cr_assert_eq(fd, -1);
	cr_assert_eq(sb_open_parent(fx->rootfd, "a/c", 3, 0, &fd, &base),
		     -ELOOP, "%s", target);
	cr_assert_eq(sb_open_dir(fx->rootfd, "a/b", 3, &fd), -ELOOP);
	/* The final component too: a directory symlink is not a directory. */
	cr_assert_eq(sb_open_dir(fx->rootfd, "a", 1, &fd), -ELOOP);
	/* The component walk (mkdir_mode) must not create through it. */
	cr_assert_eq(sb_open_parent(fx->rootfd, "a/b/new/c", 9, 0700, &fd,
				    &base), -ELOOP);
	cr_assert_eq(sb_open_parent(fx->rootfd, "a/new2/c", 8, 0700, &fd,
				    &base), -ELOOP);
	cr_assert_eq(fd, -1);
	/* Nothing appeared anywhere the link could lead: base holds root and
	 * outside, outside holds b, b is empty, and likewise inside. */
	{
		char p[160];

		cr_assert_eq(count_entries(fx->base), 2);
		cr_assert_eq(count_entries(fx->outside), 1);
		snprintf(p, sizeof(p), "%s/b", fx->outside);
		cr_assert_eq(count_entries(p), 0);
		snprintf(p, sizeof(p), "%s/real/b", fx->root);
		if (access(p, F_OK) == 0)
			cr_assert_eq(count_entries(p), 0);
	}
	cr_assert_eq(unlinkat(fx->rootfd, "a", 0), 0);
}

Test(path, symlink_outside_absolute)
{
	struct fixture fx;

	fx_init(&fx);
	check_link(&fx, fx.outside);
	fx_fini(&fx);
}

Test(path, symlink_dotdot)
{
	struct fixture fx;

	fx_init(&fx);
	check_link(&fx, "..");
	check_link(&fx, "../outside");
	fx_fini(&fx);
}

Test(path, symlink_inside)
{
	struct fixture fx;

	fx_init(&fx);
	mkdirs(fx.rootfd, "real/b");
	check_link(&fx, "real");
	fx_fini(&fx);
}

Test(path, symlink_deeper)
{
	struct fixture fx;
	const char *base;
	int fd = 1234;

	fx_init(&fx);
	mkdirs(fx.rootfd, "x/y");
	cr_assert_eq(symlinkat(fx.outside, fx.rootfd, "x/y/l"), 0);
	cr_assert_eq(sb_open_parent(fx.rootfd, "x/y/l/b/c", 9, 0, &fd, &base),
		     -ELOOP);
	cr_assert_eq(sb_open_parent(fx.rootfd, "x/y/l/b/c", 9, 0700, &fd,
				    &base), -ELOOP);
	cr_assert_eq(fd, -1);
	/* The link itself is fine as a last component of open_parent. */
	cr_assert_eq(sb_open_parent(fx.rootfd, "x/y/l", 5, 0, &fd, &base), 0);
	cr_assert_str_eq(base, "l");
	close(fd);
	fx_fini(&fx);
}

/* lstat beneath the root: the same answers with and without openat2. */
static void check_stat_beneath(struct fixture *fx)
{
	struct stat st, want;

	mkdirs(fx->rootfd, "s/d");
	touch(fx->rootfd, "s/d/f");
	cr_assert_eq(symlinkat(fx->outside, fx->rootfd, "s/out"), 0);
	cr_assert_eq(sb_stat_beneath(fx->rootfd, "s/d/f", 5, &st), 0);
	cr_assert_eq(fstatat(fx->rootfd, "s/d/f", &want, AT_SYMLINK_NOFOLLOW), 0);
	cr_assert(st.st_ino == want.st_ino && S_ISREG(st.st_mode));
	cr_assert_eq(sb_stat_beneath(fx->rootfd, "s/d", 3, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	/* a last-component symlink is the link itself, never its target */
	cr_assert_eq(sb_stat_beneath(fx->rootfd, "s/out", 5, &st), 0);
	cr_assert(S_ISLNK(st.st_mode));
	/* one on the way is refused, whatever lies beyond it */
	cr_assert_eq(sb_stat_beneath(fx->rootfd, "s/out/b", 7, &st), -ELOOP);
	cr_assert_eq(sb_stat_beneath(fx->rootfd, "s/d/nope", 8, &st), -ENOENT);
	cr_assert_eq(sb_stat_beneath(fx->rootfd, "s/nope/f", 8, &st), -ENOENT);
	cr_assert_eq(sb_stat_beneath(fx->rootfd, "s/d/f/x", 7, &st), -ENOTDIR);
	cr_assert_eq(sb_stat_beneath(fx->rootfd, "", 0, &st), -EINVAL);
	cr_assert_eq(sb_stat_beneath(fx->rootfd, "s/../s", 6, &st), -EINVAL);
}

Test(path, stat_beneath)
{
	struct fixture fx;

	fx_init(&fx);
	check_stat_beneath(&fx);
	fx_fini(&fx);
}

/* Builds DEEP_LEVELS nested dirs under rootfd/top using fds only; returns
 * the malloc'd relative path ("top/ddd.../ddd...") and its length. */
static char *build_deep(int rootfd, const char *top, size_t *len, int *leaf)
{
	size_t tlen = strlen(top), cap = tlen + DEEP_LEVELS * (DEEP_NAME + 1) + 1;
	char *rel = malloc(cap), name[DEEP_NAME + 1];
	int fd, next, i;

	cr_assert_not_null(rel);
	memcpy(rel, top, tlen);
	*len = tlen;
	cr_assert_eq(mkdirat(rootfd, top, 0700), 0);
	fd = openat(rootfd, top, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	for (i = 0; i < DEEP_LEVELS; i++) {
		memset(name, 'a' + i % 26, DEEP_NAME);
		name[DEEP_NAME] = '\0';
		cr_assert_eq(mkdirat(fd, name, 0700), 0);
		next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		cr_assert_geq(next, 0);
		close(fd);
		fd = next;
		rel[(*len)++] = '/';
		memcpy(rel + *len, name, DEEP_NAME);
		*len += DEEP_NAME;
	}
	*leaf = fd;
	return rel;
}

static int same_file(int a, int b)
{
	struct stat sa, sb;

	cr_assert_eq(fstat(a, &sa), 0);
	cr_assert_eq(fstat(b, &sb), 0);
	return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

Test(path, deep_tree)
{
	struct fixture fx;
	const char *base = NULL;
	size_t len, flen;
	char *rel, *frel;
	int leaf, fd = -1;

	fx_init(&fx);
	rel = build_deep(fx.rootfd, "deep", &len, &leaf);
	cr_assert_gt(len, PATH_MAX);

	cr_assert_eq(sb_open_dir(fx.rootfd, rel, len, &fd), 0);
	cr_assert(same_file(fd, leaf));
	close(fd);
	struct stat st, want;
	cr_assert_eq(sb_stat_beneath(fx.rootfd, rel, len, &st), 0);
	cr_assert_eq(fstat(leaf, &want), 0);
	cr_assert_eq(st.st_ino, want.st_ino);

	/* open_parent of a name inside the leaf. */
	flen = len + 5;
	frel = malloc(flen);
	cr_assert_not_null(frel);
	memcpy(frel, rel, len);
	memcpy(frel + len, "/file", 5);
	cr_assert_eq(sb_open_parent(fx.rootfd, frel, flen, 0, &fd, &base), 0);
	cr_assert(same_file(fd, leaf));
	cr_assert_eq(base, frel + len + 1);
	close(fd);

	/* open_parent of the leaf itself: its parent. */
	cr_assert_eq(sb_open_parent(fx.rootfd, rel, len, 0, &fd, &base), 0);
	cr_assert_eq(base, rel + len - DEEP_NAME);
	{
		int p = openat(leaf, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		cr_assert_geq(p, 0);
		cr_assert(same_file(fd, p));
		close(p);
	}
	close(fd);

	/* Missing at the far end. */
	memcpy(frel + len, "/nope", 5);
	cr_assert_eq(sb_open_dir(fx.rootfd, frel, flen, &fd), -ENOENT);

	/* A symlink planted deep down, beyond PATH_MAX. */
	cr_assert_eq(symlinkat(fx.outside, leaf, "lnk"), 0);
	memcpy(frel + len, "/lnk", 4);
	cr_assert_eq(sb_open_dir(fx.rootfd, frel, len + 4, &fd), -ELOOP);
	cr_assert_eq(fd, -1);

	free(frel);
	free(rel);
	close(leaf);
	fx_fini(&fx);
}

Test(path, deep_mkdir)
{
	struct fixture fx;
	const char *base = NULL;
	size_t len, i;
	char *rel, name[DEEP_NAME + 1];
	int fd = -1, chk;

	fx_init(&fx);
	len = DEEP_LEVELS * (DEEP_NAME + 1) + 4;
	rel = malloc(len);
	cr_assert_not_null(rel);
	memcpy(rel, "mk", 2);
	for (i = 0; i < DEEP_LEVELS; i++) {
		rel[2 + i * (DEEP_NAME + 1)] = '/';
		memset(rel + 3 + i * (DEEP_NAME + 1), 'A' + i % 26, DEEP_NAME);
	}
	memcpy(rel + len - 2, "/f", 2);

	cr_assert_eq(sb_open_parent(fx.rootfd, rel, len, 0755, &fd, &base), 0);
	cr_assert_eq(base, rel + len - 1);

	/* Walk down with plain fds to check the chain really exists. */
	chk = openat(fx.rootfd, "mk", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(chk, 0);
	for (i = 0; i < DEEP_LEVELS; i++) {
		int next;

		memset(name, 'A' + i % 26, DEEP_NAME);
		name[DEEP_NAME] = '\0';
		next = openat(chk, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		cr_assert_geq(next, 0, "level %zu", i);
		close(chk);
		chk = next;
	}
	cr_assert(same_file(fd, chk));
	close(fd);

	/* Now it exists: open_dir (no mkdir) reaches it too. */
	cr_assert_eq(sb_open_dir(fx.rootfd, rel, len - 2, &fd), 0);
	cr_assert(same_file(fd, chk));
	close(fd);
	close(chk);

	free(rel);
	fx_fini(&fx);
}

Test(path, long_component)
{
	struct fixture fx;
	char rel[NAME_MAX + 10];
	const char *base;
	int fd = -1;

	fx_init(&fx);
	memset(rel, 'z', sizeof(rel));
	rel[NAME_MAX + 1] = '/';
	cr_assert_eq(sb_open_parent(fx.rootfd, rel, sizeof(rel), 0, &fd, &base),
		     -ENAMETOOLONG);
	cr_assert_eq(sb_open_parent(fx.rootfd, rel, sizeof(rel), 0700, &fd,
				    &base), -ENAMETOOLONG);
	cr_assert_eq(fd, -1);
	fx_fini(&fx);
}

/* Makes openat2 fail with ENOSYS in this (criterion-forked) test process,
 * as on kernels before 5.6, so that the component walk does everything. */
static void deny_openat2(void)
{
	struct sock_filter insns[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat2, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {
		.len = sizeof(insns) / sizeof(insns[0]),
		.filter = insns,
	};
	struct open_how how = { .flags = O_RDONLY | O_DIRECTORY };

	cr_assert_eq(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
	cr_assert_eq(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog), 0);
	cr_assert_eq(syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof(how)), -1);
	cr_assert_eq(errno, ENOSYS);
}

Test(path, without_openat2)
{
	struct fixture fx;
	const char *base = NULL;
	int fd = -1, leaf;
	size_t len;
	char *rel;

	deny_openat2();
	fx_init(&fx);
	mkdirs(fx.rootfd, "a2/b");
	touch(fx.rootfd, "a2/f");
	cr_assert_eq(sb_open_parent(fx.rootfd, "a2/b/c", 6, 0, &fd, &base), 0);
	assert_same_dir(fd, fx.rootfd, "a2/b");
	cr_assert_str_eq(base, "c");
	close(fd);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a2/b", 4, &fd), 0);
	assert_same_dir(fd, fx.rootfd, "a2/b");
	close(fd);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a2/nope", 7, &fd), -ENOENT);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a2/f", 4, &fd), -ENOTDIR);
	cr_assert_eq(sb_open_dir(fx.rootfd, "a2/f/x", 6, &fd), -ENOTDIR);

	check_link(&fx, fx.outside);
	check_link(&fx, "..");
	check_link(&fx, "a2");
	check_stat_beneath(&fx);

	rel = build_deep(fx.rootfd, "deep", &len, &leaf);
	cr_assert_eq(sb_open_dir(fx.rootfd, rel, len, &fd), 0);
	cr_assert(same_file(fd, leaf));
	close(fd);
	struct stat st;
	cr_assert_eq(sb_stat_beneath(fx.rootfd, rel, len, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	close(leaf);
	free(rel);
	fx_fini(&fx);
}
