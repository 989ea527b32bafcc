/*
 * The mount's inode table (fs/itab.c): the names of a hard-linked file are
 * one kernel inode, a file unlinked while open keeps working through its
 * descriptor, and an inode number a partner uses again for another file
 * never makes the mount serve one file's content under another's name.
 *
 * Every test mounts in its .init and is unmounted in its .fini (lazily,
 * even after a failure); the watchdog of testlib covers a crash.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static struct tl_env env;
static struct tl_mount mnt;

#define S(rel) tl_at(env.src, rel)
#define T(rel) tl_at(env.tgt, rel)
#define M(rel) tl_at(mnt.dir, rel)

static void setup(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	tl_mount(&env, &mnt, NULL);
}

static void teardown(void)
{
	tl_mount_cleanup(&mnt);
	tl_env_fini(&env);
}

TestSuite(inodes, .init = setup, .fini = teardown, .timeout = 120);

/* The content of path, at most 255 bytes, in buf. */
static void slurp(const char *path, char buf[256])
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	ssize_t n = read(fd, buf, 255);
	close(fd);
	cr_assert(n >= 0, "read %s: %s", path, strerror(errno));
	buf[n] = '\0';
}

static void expect_str(const char *path, const char *want)
{
	char buf[256];
	slurp(path, buf);
	cr_assert_str_eq(buf, want, "%s holds \"%s\", \"%s\" expected", path, buf, want);
}

/* For edits made outside: the watcher drops what the kernel cached within
 * a moment (see test_watch.c); well below the 5 s cache timeouts. */
static void wait_str(const char *path, const char *want)
{
	char buf[256];
	for (int ms = 0;; ms++) {
		slurp(path, buf);
		if (!strcmp(buf, want))
			return;
		cr_assert(ms < 3000, "%s holds \"%s\" after 3 s, \"%s\" expected", path, buf, want);
		usleep(1000);
	}
}

static void put(const char *path, const char *s, int flags)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, s, strlen(s)), (ssize_t)strlen(s), "write %s", path);
	cr_assert_eq(close(fd), 0);
}

/*
 * A change through one name shows through the other at once, with no
 * attribute timeout to wait for: mode, size, content and link count.
 */
Test(inodes, hard_links_are_one_inode)
{
	struct stat a, b;

	put(M("a"), "one\n", O_TRUNC);
	cr_assert(link(M("a"), M("b")) == 0, "link: %s", strerror(errno));
	cr_assert(stat(M("a"), &a) == 0 && stat(M("b"), &b) == 0);
	cr_assert_eq(a.st_ino, b.st_ino);
	cr_assert_eq(a.st_nlink, 2);
	cr_assert_eq(b.st_nlink, 2);

	cr_assert(chmod(M("b"), 0600) == 0);
	cr_assert(stat(M("a"), &a) == 0);
	cr_assert_eq(a.st_mode & 07777, 0600, "a shows mode %o after chmod of b", a.st_mode & 07777);

	put(M("a"), "and two\n", O_APPEND);
	cr_assert(stat(M("b"), &b) == 0);
	cr_assert_eq(b.st_size, 12, "b shows %jd bytes after an append through a", (intmax_t)b.st_size);
	expect_str(M("b"), "one\nand two\n");

	cr_assert(unlink(M("a")) == 0);
	cr_assert(stat(M("b"), &b) == 0);
	cr_assert_eq(b.st_nlink, 1, "b shows %ju links after a was unlinked", (uintmax_t)b.st_nlink);
	expect_str(M("b"), "one\nand two\n");
	/* and in the partners too, one file there as well */
	for (int i = 0; i < 2; i++) {
		struct stat st;
		const char *root = i ? env.tgt : env.src;
		cr_assert(stat(tl_at(root, "b"), &st) == 0 && st.st_nlink == 1);
		cr_assert(!tl_exists(root, "a"));
	}
}

/* pjdfstest unlink/14: fstat, fchmod, write and read on a descriptor
 * whose last name was unlinked. */
Test(inodes, unlinked_open_file_keeps_working)
{
	int fd = open(M("t"), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	cr_assert(fd >= 0, "%s", strerror(errno));
	cr_assert_eq(write(fd, "abc", 3), 3);
	cr_assert(unlink(M("t")) == 0);
	cr_assert(!tl_exists(env.src, "t") && !tl_exists(env.tgt, "t"));

	struct stat st;
	cr_assert(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
	cr_assert_eq(st.st_size, 3);
	cr_assert(fchmod(fd, 0600) == 0, "fchmod: %s", strerror(errno));
	cr_assert(fstat(fd, &st) == 0 && (st.st_mode & 07777) == 0600, "mode %o",
		  st.st_mode & 07777);
	cr_assert(fchown(fd, 1, 1) == 0, "fchown: %s", strerror(errno));
	cr_assert(fstat(fd, &st) == 0 && st.st_uid == 1 && st.st_gid == 1);
	cr_assert_eq(pwrite(fd, "defg", 4, 3), 4);
	char buf[16] = { 0 };
	cr_assert_eq(pread(fd, buf, sizeof(buf), 0), 7);
	cr_assert_str_eq(buf, "abcdefg");
	cr_assert(ftruncate(fd, 2) == 0, "ftruncate: %s", strerror(errno));
	cr_assert(fstat(fd, &st) == 0 && st.st_size == 2);
	cr_assert(close(fd) == 0);
	cr_assert(!tl_exists(env.src, "t") && !tl_exists(env.tgt, "t"));
}

/*
 * A name edited outside by rename (as editors save) frees its old inode
 * number, which the partner may give the next file made. The mount still
 * holds the old node: taken for the new file, it would serve the edited
 * name's content as the new file's. Repeated, as a number is used again
 * only sometimes.
 */
Test(inodes, inode_number_used_again_outside)
{
	int reused = 0;
	char name[32], want[64];

	for (int i = 0; i < 40; i++) {
		struct stat old, st;
		snprintf(want, sizeof(want), "a, round %d\n", i);
		tl_write(env.src, "a", want);
		tl_write(env.tgt, "a", want);
		wait_str(M("a"), want);	/* the kernel holds a's node now */
		cr_assert(lstat(S("a"), &old) == 0);

		/* saved by rename: a's old inode is free */
		snprintf(want, sizeof(want), "a, saved in round %d\n", i);
		tl_write(env.src, "a.new", want);
		tl_write(env.tgt, "a.new", want);
		cr_assert(rename(S("a.new"), S("a")) == 0 && rename(T("a.new"), T("a")) == 0);

		snprintf(name, sizeof(name), "b%02d", i);
		char other[64];
		snprintf(other, sizeof(other), "b, made in round %d\n", i);
		tl_write(env.src, name, other);
		tl_write(env.tgt, name, other);
		cr_assert(lstat(S(name), &st) == 0);
		reused += st.st_ino == old.st_ino;

		wait_str(M(name), other);
		wait_str(M("a"), want);
	}
	cr_log_info("the source used an inode number again in %d of 40 rounds", reused);
	cr_assert(reused > 0, "the source's file system never used an inode number again: "
		  "this test tests nothing there");
}

/* A directory renamed through the mount takes its open children along. */
Test(inodes, renamed_directory_children_follow)
{
	cr_assert(mkdir(M("d"), 0755) == 0 && mkdir(M("d/sub"), 0755) == 0);
	put(M("d/sub/f"), "inside\n", O_TRUNC);
	int fd = open(M("d/sub/f"), O_RDWR | O_CLOEXEC);
	cr_assert(fd >= 0);
	cr_assert(rename(M("d"), M("e")) == 0);
	struct stat st;
	cr_assert(fstat(fd, &st) == 0 && st.st_size == 7);
	cr_assert(fchmod(fd, 0640) == 0);
	cr_assert(stat(S("e/sub/f"), &st) == 0 && (st.st_mode & 07777) == 0640);
	cr_assert(stat(T("e/sub/f"), &st) == 0 && (st.st_mode & 07777) == 0640);
	cr_assert(close(fd) == 0);
	expect_str(M("e/sub/f"), "inside\n");
	cr_assert(!tl_exists(mnt.dir, "d"));
}

/* Made with the caller's mode and umask, and nothing of the daemon's (022):
 * umask 0 and 04777 give 04777; umask 002 gives group-writable. */
Test(inodes, creates_with_the_callers_umask)
{
	static const struct {
		mode_t umask, ask, want;
		char kind;	/* f file, d directory, p FIFO */
		const char *name;
	} c[] = {
		{ 0, 04777, 04777, 'f', "f0" }, { 0, 0777, 0777, 'd', "d0" },
		{ 0, 0666, 0666, 'p', "p0" }, { 002, 0666, 0664, 'f', "f2" },
		{ 002, 0777, 0775, 'd', "d2" }, { 077, 0666, 0600, 'f', "f77" },
	};
	for (size_t i = 0; i < sizeof(c) / sizeof(*c); i++) {
		mode_t um = umask(c[i].umask);
		int r = c[i].kind == 'd' ? mkdir(M(c[i].name), c[i].ask)
		      : c[i].kind == 'p' ? mkfifo(M(c[i].name), c[i].ask)
					 : open(M(c[i].name), O_CREAT | O_WRONLY | O_CLOEXEC, c[i].ask);
		umask(um);
		cr_assert(r >= 0, "%s: %s", c[i].name, strerror(errno));
		if (c[i].kind == 'f')
			close(r);
		struct stat st;
		const char *where[3] = { mnt.dir, env.src, env.tgt };
		for (int k = 0; k < 3; k++) {
			cr_assert(lstat(tl_at(where[k], c[i].name), &st) == 0);
			cr_assert_eq(st.st_mode & 07777, c[i].want,
				     "%s/%s: mode %o, %o expected (umask %03o, asked %o)", where[k],
				     c[i].name, st.st_mode & 07777, c[i].want, c[i].umask, c[i].ask);
		}
	}
}

/*
 * The kernel remembers a missing name (a negative entry, for the long
 * timeout while the watcher covers the partners): made outside, in either
 * partner, a file or a directory, it shows all the same within a moment.
 */
Test(inodes, missing_name_shows_once_made_outside)
{
	static const char *const where[] = { "source", "target", "both" };
	struct stat st;
	char name[32];

	for (int i = 0; i < 12; i++) {
		int dir = i % 2, side = (i / 2) % 3;
		snprintf(name, sizeof(name), "%s%d", dir ? "d" : "f", i);
		cr_assert(lstat(M(name), &st) < 0 && errno == ENOENT);
		cr_assert(lstat(M(name), &st) < 0 && errno == ENOENT);	/* now remembered */
		for (int k = 0; k < 2; k++) {
			if (side != 2 && side != k)
				continue;
			const char *root = k ? env.tgt : env.src;
			if (dir)
				tl_mkdir(root, name);
			else
				tl_write(root, name, "made outside\n");
		}
		int ms = 0;
		while (lstat(M(name), &st) < 0) {
			cr_assert(ms++ < 3000, "%s, made in the %s, not in the mount after 3 s: %s",
				  name, where[side], strerror(errno));
			usleep(1000);
		}
		cr_assert_eq(!!S_ISDIR(st.st_mode), dir);
	}
}

static int flags_of(const char *path, int *flags)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int r = fd < 0 ? -1 : ioctl(fd, FS_IOC_GETFLAGS, flags);
	if (fd >= 0)
		close(fd);
	return r;
}

static int set_flags_of(const char *path, int flags)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	int r = fd < 0 ? -1 : ioctl(fd, FS_IOC_SETFLAGS, &flags);
	if (fd >= 0)
		close(fd);
	return r;
}

/* lsattr and chattr: the inode flags reach both partners, are read back
 * through the mount, and immutable refuses changes as natively. */
Test(inodes, chattr_flags_on_both_sides)
{
	const char *names[2] = { "f", "d" };
	put(M("f"), "x\n", O_TRUNC);
	cr_assert(mkdir(M("d"), 0755) == 0);
	for (int i = 0; i < 2; i++) {
		int fl = 0, got = 0;
		cr_assert(flags_of(M(names[i]), &fl) == 0, "%s: FS_IOC_GETFLAGS: %s", names[i],
			  strerror(errno));
		cr_assert(set_flags_of(M(names[i]), fl | FS_NOATIME_FL) == 0,
			  "%s: FS_IOC_SETFLAGS: %s", names[i], strerror(errno));
		for (int k = 0; k < 3; k++) {
			const char *root = k == 0 ? mnt.dir : k == 1 ? env.src : env.tgt;
			cr_assert(flags_of(tl_at(root, names[i]), &got) == 0);
			cr_assert(got & FS_NOATIME_FL, "%s/%s: no noatime flag", root, names[i]);
		}
	}
	int fl = 0;
	cr_assert(flags_of(M("f"), &fl) == 0 && set_flags_of(M("f"), fl | FS_IMMUTABLE_FL) == 0);
	errno = 0;
	cr_assert(open(M("f"), O_WRONLY | O_APPEND | O_CLOEXEC) < 0 && errno == EPERM,
		  "an immutable file opened for writing: %s", strerror(errno));
	cr_assert(unlink(M("f")) < 0 && errno == EPERM);
	cr_assert(tl_exists(env.src, "f") && tl_exists(env.tgt, "f"));
	cr_assert(set_flags_of(M("f"), fl & ~FS_IMMUTABLE_FL) == 0);
	cr_assert(unlink(M("f")) == 0, "%s", strerror(errno));
}
