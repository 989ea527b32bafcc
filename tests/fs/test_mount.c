/*
 * sbfs mount, end to end: the FUSE view of a partnership on real temporary
 * trees. The union view; every change made through the mount, checked on
 * both partners directly on disk and in the state; conflicts as
 * NAME.conflict-source / NAME.conflict-target and their resolution by
 * deleting or renaming those entries; refused mounts; a daemon killed while
 * a writer is busy; allow_other with a non-root user; unmounting.
 *
 * Every test that mounts does so in its .init and is unmounted (lazily,
 * fusermount3 -u -z) in its .fini, and a watchdog process (testlib) does the
 * same should the test process die (crash, timeout, failed .init). Each
 * change is checked on both partners directly on disk. The state is checked
 * after an unmount (which waits for the daemon to exit, so its recorder is
 * flushed): the partners identical, `sbfs status` exits 0, `sbfs reconcile`
 * finds nothing to do (README: "A reconcile right after finds nothing to
 * do"), and with every file's ctime moved on the target alone, `sbfs status`
 * still exits 0 -- the hashes the mount recorded are right.
 *
 * Tests disabled with a BUG comment show bugs found; each comment has the
 * reproducer.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define MIB (1024 * 1024)

/* A fixed point in time (2023-11-14 22:13:20 UTC) for explicit mtimes. */
#define T0 1700000000L

#define NOBODY 65534

static struct tl_env env;
static struct tl_mount mnt;

/* ================================================================ helpers */

#define P tl_at
#define S(rel) P(env.src, rel)
#define T(rel) P(env.tgt, rel)
#define M(rel) P(mnt.dir, rel)

static const char *const side_name[3] = { "source", "target", "mount" };

/* The whole file at path (malloc'd, NUL-terminated), NULL with errno set. */
static char *slurp_path(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (n == cap)
			buf = realloc(buf, (cap *= 2) + 1);
		ssize_t r = read(fd, buf + n, cap - n);
		if (r < 0) {
			int e = errno;
			free(buf);
			close(fd);
			errno = e;
			return NULL;
		}
		if (r == 0)
			break;
		n += r;
	}
	close(fd);
	buf[n] = '\0';
	if (len)
		*len = n;
	return buf;
}

/* rel holds exactly want (len bytes) in each of the roots given. */
static void expect_in(const char *const *roots, int nroots, const char *rel,
		      const void *want, size_t len)
{
	for (int i = 0; i < nroots; i++) {
		size_t n;
		char *got = slurp_path(P(roots[i], rel), &n);
		cr_assert(got, "%s: %s cannot be read: %s", side_name[i], rel, strerror(errno));
		if (n != len || memcmp(got, want, len)) {
			size_t k = 0;
			while (k < n && k < len && got[k] == ((const char *)want)[k])
				k++;
			cr_assert_fail("%s: %s holds %zu bytes, %zu expected, first difference at %zu%s%.60s%s",
				       side_name[i], rel, n, len, k, len < 200 ? " (\"" : "",
				       len < 200 ? got : "", len < 200 ? "\")" : "");
		}
		free(got);
	}
}

/* On both partners, and in the mount. */
static void expect_all(const char *rel, const void *want, size_t len)
{
	const char *roots[3] = { env.src, env.tgt, mnt.dir };
	expect_in(roots, 3, rel, want, len);
}

static void expect_all_str(const char *rel, const char *want)
{
	expect_all(rel, want, strlen(want));
}

/* On both partners only (after an unmount). */
static void expect_sides_str(const char *rel, const char *want)
{
	const char *roots[2] = { env.src, env.tgt };
	expect_in(roots, 2, rel, want, strlen(want));
}

static void expect_absent(const char *rel, int with_mount)
{
	const char *roots[3] = { env.src, env.tgt, mnt.dir };
	for (int i = 0; i < 2 + !!with_mount; i++) {
		struct stat st;
		int r = lstat(P(roots[i], rel), &st);
		cr_assert(r < 0 && errno == ENOENT, "%s: %s should be absent (%s)", side_name[i], rel,
			  r == 0 ? "it exists" : strerror(errno));
	}
}

/* lstat of rel on source, target and (with_mount) in the mount. */
static void lstat_all(const char *rel, struct stat st[3], int with_mount)
{
	const char *roots[3] = { env.src, env.tgt, mnt.dir };
	for (int i = 0; i < 2 + !!with_mount; i++)
		cr_assert(lstat(P(roots[i], rel), &st[i]) == 0, "%s: lstat %s: %s", side_name[i], rel,
			  strerror(errno));
}

static void write_path(const char *path, const void *buf, size_t n, int flags)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	const char *p = buf;
	size_t left = n;
	while (left) {
		size_t chunk = left < 3 * MIB / 2 ? left : 3 * MIB / 2;	/* several requests */
		ssize_t w = write(fd, p, chunk);
		cr_assert(w > 0, "write %s: %s", path, strerror(errno));
		p += w;
		left -= w;
	}
	cr_assert(close(fd) == 0, "close %s: %s", path, strerror(errno));
}

static void write_str(const char *path, const char *s)
{
	write_path(path, s, strlen(s), O_TRUNC);
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in dir, joined by ' ' (as many as it holds: a writer in the
 * background may have made hundreds). */
static char *names(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert(d, "opendir %s: %s", dir, strerror(errno));
	char **v = NULL;
	size_t n = 0, cap = 0, total = 1;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			cr_assert((v = realloc(v, cap * sizeof(*v))));
		}
		cr_assert((v[n] = strdup(de->d_name)));
		total += strlen(v[n]) + 1;
		n++;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_name);
	char *s = calloc(1, total), *p = s;
	cr_assert(s);
	for (size_t i = 0; i < n; i++) {
		p += sprintf(p, "%s%s", i ? " " : "", v[i]);
		free(v[i]);
	}
	free(v);
	return s;
}

static void expect_names(const char *dir, const char *want)
{
	char *got = names(dir);
	cr_assert_str_eq(got, want, "%s lists \"%s\", expected \"%s\"", dir, got, want);
	free(got);
}

/* Deterministic pseudo-random bytes. */
static uint64_t rng = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill_random(void *buf, size_t n)
{
	unsigned char *p = buf;
	for (size_t i = 0; i < n; i++) {
		if (i % 8 == 0) {
			uint64_t r = rnd();
			for (size_t k = 0; k < 8 && i + k < n; k++)
				p[i + k] = (unsigned char)(r >> (8 * k));
			i += 7;
		}
	}
}

static int64_t mtime_ns(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* Moves the ctime of every entry but directories under dir (setting the
 * atime it already has): the next scan must hash them again. */
static void bump_ctimes(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert(d, "opendir %s: %s", dir, strerror(errno));
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *p = tl_join(dir, de->d_name);
		struct stat st;
		cr_assert(lstat(p, &st) == 0, "lstat %s: %s", p, strerror(errno));
		if (S_ISDIR(st.st_mode))
			bump_ctimes(p);
		else {
			struct timespec t[2] = { st.st_atim, { 0, UTIME_OMIT } };
			cr_assert(utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW) == 0,
				  "utimensat %s: %s", p, strerror(errno));
		}
		free(p);
	}
	closedir(d);
}

static void expect_status_clean(const char *when)
{
	struct tl_run r = tl_cmd(&env, "status", NULL);
	cr_assert_eq(r.status, 0, "sbfs status %s: exit %d (pending changes):\n%s%s", when,
		     r.status, r.out, r.err);
	tl_run_free(&r);
}

/*
 * After an unmount: both partners identical (names, types, contents,
 * modes, file mtimes) and nothing pending (`sbfs status` exits 0); with
 * strict, not even a record for the state to add (`sbfs reconcile` has
 * "Nothing to do"). Then, with every entry's ctime moved on the target
 * alone, still nothing pending: the hashes the mount recorded are right.
 */
static void expect_state_ok(int strict)
{
	char *why;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "the partners differ: %s", why);
	expect_status_clean("after the unmount");
	if (strict) {
		struct tl_run r = tl_cmd(&env, "reconcile", NULL);
		cr_assert(r.status == 0 && strstr(r.out, "Nothing to do"),
			  "the state is not current: sbfs reconcile after the unmount:\n%s%s", r.out,
			  r.err);
		tl_run_free(&r);
	}
	bump_ctimes(env.tgt);
	expect_status_clean("after moving the ctimes of the target's files (a wrong recorded hash?)");
}

static void expect_state_current(void)
{
	expect_state_ok(1);
}

static void finish(void)
{
	tl_umount(&env, &mnt);
	expect_state_current();
}

static void expect_no_conflicts(void)
{
	struct tl_run r = tl_cmd(&env, "conflicts", NULL);
	cr_assert_eq(r.status, 0, "sbfs conflicts: exit %d:\n%s%s", r.status, r.out, r.err);
	tl_run_free(&r);
}

/* ================================================================ suites */

/* (criterion runs no .fini after a failed .init: the watchdog started by
 * tl_mount then unmounts.) */
static void setup_env(void)
{
	tl_fuse_required();
	tl_env_init(&env);
}

/* The tree every write-through test starts from: some entries only on the
 * source, some only on the target; the mount's reconcile joins them. */
static void populate(void)
{
	tl_write(env.src, "only-src.txt", "from the source\n");
	tl_write(env.src, "dir/sub/deep.txt", "deep in the source\n");
	tl_mkdir(env.src, "empty-dir");
	tl_write(env.tgt, "only-tgt.txt", "from the target\n");
	tl_write(env.tgt, "dir/t.txt", "the target's file in dir\n");
}

static void setup_mounted(void)
{
	setup_env();
	populate();
	tl_mount(&env, &mnt, NULL);
}

/* Paths a test made immutable (FS_IMMUTABLE_FL), to clear before removal. */
static char *immutable[4];

static void set_immutable(const char *path, int on)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	int flags = 0;
	cr_assert(ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0, "FS_IOC_GETFLAGS %s: %s", path,
		  strerror(errno));
	flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
	cr_assert(ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0, "FS_IOC_SETFLAGS %s: %s", path,
		  strerror(errno));
	close(fd);
	for (int i = 0; i < 4; i++) {
		if (on && !immutable[i]) {
			immutable[i] = strdup(path);
			break;
		}
		if (!on && immutable[i] && !strcmp(immutable[i], path)) {
			free(immutable[i]);
			immutable[i] = NULL;
		}
	}
}

static void teardown(void)
{
	tl_mount_cleanup(&mnt);
	for (int i = 0; i < 4; i++) {
		if (!immutable[i])
			continue;
		int fd = open(immutable[i], O_RDONLY | O_NONBLOCK | O_CLOEXEC), flags = 0;
		if (fd >= 0 && ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
			flags &= ~FS_IMMUTABLE_FL;
			ioctl(fd, FS_IOC_SETFLAGS, &flags);
		}
		if (fd >= 0)
			close(fd);
		free(immutable[i]);
		immutable[i] = NULL;
	}
	tl_env_fini(&env);
}

TestSuite(mount, .init = setup_mounted, .fini = teardown, .timeout = 60);

/* ================================================================ 1. the view */

Test(mount, view_is_the_union_of_both_sides)
{
	/* The mount's reconcile brought both sides together... */
	char *why;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "after the mount's reconcile: %s", why);
	expect_sides_str("only-src.txt", "from the source\n");
	expect_sides_str("only-tgt.txt", "from the target\n");

	/* ...and the mount shows all of it. */
	expect_names(mnt.dir, "dir empty-dir only-src.txt only-tgt.txt");
	expect_names(M("dir"), "sub t.txt");
	expect_names(M("dir/sub"), "deep.txt");
	expect_names(M("empty-dir"), "");
	expect_all_str("only-src.txt", "from the source\n");
	expect_all_str("only-tgt.txt", "from the target\n");
	expect_all_str("dir/sub/deep.txt", "deep in the source\n");
	expect_all_str("dir/t.txt", "the target's file in dir\n");

	struct stat st[3];
	lstat_all("only-tgt.txt", st, 1);
	cr_assert(S_ISREG(st[2].st_mode));
	cr_assert_eq(st[2].st_size, (off_t)strlen("from the target\n"));
	cr_assert_eq(st[2].st_mode & 07777, st[0].st_mode & 07777);
	cr_assert_eq(mtime_ns(&st[2]), mtime_ns(&st[0]));
	lstat_all("dir", st, 1);
	cr_assert(S_ISDIR(st[2].st_mode));

	struct stat x;
	cr_assert(lstat(M("nothing-here"), &x) < 0 && errno == ENOENT);
	cr_assert(lstat(M("dir/nothing/deeper"), &x) < 0 && errno == ENOENT);

	/* An entry made outside, on one side only, shows in the union too. */
	tl_write(env.tgt, "late/outside.txt", "made on the target alone\n");
	tl_write(env.src, "late-src.txt", "made on the source alone\n");
	char *got = tl_read(mnt.dir, "late/outside.txt");
	cr_assert(got && !strcmp(got, "made on the target alone\n"), "mount: late/outside.txt: %s",
		  got ? got : strerror(errno));
	free(got);
	got = tl_read(mnt.dir, "late-src.txt");
	cr_assert(got && !strcmp(got, "made on the source alone\n"));
	free(got);
	expect_names(mnt.dir, "dir empty-dir late late-src.txt only-src.txt only-tgt.txt");

	tl_umount(&env, &mnt);
	/* Made outside the mount: a reconcile carries them, then all is quiet. */
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	expect_state_current();
}

/* Names in an open directory stream, from where it is; "." and ".." left out. */
static int read_names(DIR *d, char ***out)
{
	int n = 0;
	char **v = NULL;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		v = realloc(v, (n + 1) * sizeof(*v));
		cr_assert(v);
		v[n++] = strdup(de->d_name);
	}
	*out = v;
	return n;
}

static int has_name(char **v, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (!strcmp(v[i], name))
			return 1;
	return 0;
}

static void free_names(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * A large directory listed in many replies: each name once, telldir and
 * seekdir work, and an edit made outside the mount shows in the next
 * listing, at once, even right after one (the mount keeps listings while
 * the directories are unchanged), and after rewinddir on an open stream.
 */
Test(mount, listings_follow_edits_made_outside)
{
	char name[64];
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "big/a-fairly-long-file-name-%05d", i);
		if (i < 1500)
			tl_write(env.src, name, "s");
		if (i >= 1000)
			tl_write(env.tgt, name, "t");
	}
	DIR *d = opendir(M("big"));
	cr_assert(d, "%s", strerror(errno));
	char **v;
	int n = read_names(d, &v);
	cr_assert_eq(n, 2000, "%d names listed", n);
	qsort(v, n, sizeof(*v), cmp_names);
	for (int i = 1; i < n; i++)
		cr_assert(strcmp(v[i - 1], v[i]), "%s listed twice", v[i]);
	free_names(v, n);

	/* telldir/seekdir: the same names again from a remembered place */
	rewinddir(d);
	for (int i = 0; i < 700; i++)
		cr_assert(readdir(d));
	long pos = telldir(d);
	char first[3][256];
	for (int i = 0; i < 3; i++)
		snprintf(first[i], sizeof(first[i]), "%s", readdir(d)->d_name);
	seekdir(d, pos);
	for (int i = 0; i < 3; i++)
		cr_assert_str_eq(readdir(d)->d_name, first[i]);

	/* edits made outside, each checked in the very next listing */
	for (int round = 0; round < 3; round++) {
		snprintf(name, sizeof(name), "big/outside-%d", round);
		tl_write(round % 2 ? env.src : env.tgt, name, "x");
		d = d ? d : opendir(M("big"));
		rewinddir(d);
		n = read_names(d, &v);
		cr_assert_eq(n, 2001 + round, "round %d: %d names", round, n);
		cr_assert(has_name(v, n, name + 4), "round %d: %s not listed", round, name + 4);
		free_names(v, n);
		closedir(d);
		d = NULL;
		usleep(150 * 1000);	/* so that the next listing may be kept */
		d = opendir(M("big"));
		n = read_names(d, &v);
		free_names(v, n);
	}
	closedir(d);
	tl_rm(env.src, "big/outside-1");
	d = opendir(M("big"));
	n = read_names(d, &v);
	cr_assert(!has_name(v, n, "outside-1"), "a name deleted outside is still listed");
	cr_assert_eq(n, 2002);
	free_names(v, n);
	closedir(d);
}

/* ================================================================ 2. write-through */

Test(mount, create_small_and_large_files)
{
	write_str(M("new.txt"), "hello\n");
	expect_all_str("new.txt", "hello\n");

	size_t big = 5 * MIB + 12345;
	char *buf = malloc(big);
	fill_random(buf, big);
	write_path(M("dir/big.bin"), buf, big, O_TRUNC);
	expect_all("dir/big.bin", buf, big);

	/* A new file in a new directory, and an empty file. */
	cr_assert(mkdir(M("fresh"), 0755) == 0, "mkdir: %s", strerror(errno));
	write_path(M("fresh/empty"), "", 0, O_EXCL);
	expect_all("fresh/empty", "", 0);
	/* O_EXCL on an existing name. */
	int fd = open(M("new.txt"), O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert(fd < 0 && errno == EEXIST, "O_EXCL on an existing file: fd %d, %s", fd,
		  strerror(errno));
	free(buf);
	finish();
	expect_sides_str("new.txt", "hello\n");
}

Test(mount, overwrite)
{
	write_str(M("only-src.txt"), "replaced\n");
	expect_all_str("only-src.txt", "replaced\n");
	/* In place, without truncation. */
	int fd = open(M("only-tgt.txt"), O_WRONLY);
	cr_assert(fd >= 0, "%s", strerror(errno));
	cr_assert_eq(pwrite(fd, "TARGET", 6, 9), 6);
	cr_assert_eq(close(fd), 0);
	expect_all_str("only-tgt.txt", "from the TARGET\n");
	/* Longer, then shorter again. */
	write_str(M("dir/t.txt"), "a much longer replacement for the file in dir\n");
	write_str(M("dir/t.txt"), "short\n");
	expect_all_str("dir/t.txt", "short\n");
	finish();
}

Test(mount, truncate_smaller_and_larger)
{
	/* truncate(2), by path */
	cr_assert(truncate(M("only-src.txt"), 4) == 0, "%s", strerror(errno));
	expect_all_str("only-src.txt", "from");
	cr_assert(truncate(M("only-src.txt"), 10) == 0, "%s", strerror(errno));
	expect_all("only-src.txt", "from\0\0\0\0\0\0", 10);
	/* ftruncate(2), on an open file */
	int fd = open(M("only-tgt.txt"), O_RDWR);
	cr_assert(fd >= 0, "%s", strerror(errno));
	cr_assert(ftruncate(fd, 9) == 0, "%s", strerror(errno));
	expect_all_str("only-tgt.txt", "from the ");
	cr_assert(ftruncate(fd, 100000) == 0, "%s", strerror(errno));
	cr_assert(close(fd) == 0);
	char *want = calloc(1, 100000);
	memcpy(want, "from the ", 9);
	expect_all("only-tgt.txt", want, 100000);
	free(want);
	/* O_TRUNC on open, then to zero by path */
	write_path(M("dir/t.txt"), "x", 1, O_TRUNC);
	expect_all_str("dir/t.txt", "x");
	cr_assert(truncate(M("dir/t.txt"), 0) == 0);
	expect_all("dir/t.txt", "", 0);
	/* A truncate by path may leave the sides' mtimes apart (a bug, see
	 * truncate_by_path_same_mtime_on_both_sides): set them, so that the
	 * rest is checked. */
	struct timespec t[2] = { { T0, 0 }, { T0, 0 } };
	cr_assert(utimensat(AT_FDCWD, M("only-src.txt"), t, 0) == 0);
	cr_assert(utimensat(AT_FDCWD, M("dir/t.txt"), t, 0) == 0);
	finish();
}

/*
 * BUG: truncate(2) by path (FUSE setattr without a file handle) runs
 * ftruncate on each side in turn (sb_mirror_truncate), and each side takes
 * its own "now" as mtime: whenever the clock ticks between the two, the
 * partners are left with different mtimes (status still says 0: the state
 * records each side's fingerprint). Writes through an open file do not have
 * this: sb_file_release gives the target the source's mtime, "as a copy
 * would"; utimens takes "now" once for both sides.
 *   sbfs mount SRC TGT MNT; repeat: truncate(MNT/f, n); stat -c %y SRC/f TGT/f
 *   expected: the same mtime on both sides; actual: differing now and then
 *   (about 1 in 100 truncations here, by up to one clock tick).
 */
Test(mount, truncate_by_path_same_mtime_on_both_sides)
{
	/* Spaced out so that the coarse clock moves between truncations, each
	 * taking it anew (no timing is asserted: the mtimes must be equal). */
	for (int i = 0; i < 600; i++) {
		usleep(5000);
		cr_assert(truncate(M("only-src.txt"), 1 + i % 7) == 0, "%s", strerror(errno));
		struct stat st[3];
		lstat_all("only-src.txt", st, 0);
		cr_assert_eq(mtime_ns(&st[0]), mtime_ns(&st[1]),
			     "after truncate #%d by path: mtime %lld.%09lld on the source, %lld.%09lld "
			     "on the target", i, (long long)st[0].st_mtim.tv_sec,
			     (long long)st[0].st_mtim.tv_nsec, (long long)st[1].st_mtim.tv_sec,
			     (long long)st[1].st_mtim.tv_nsec);
	}
	finish();
}

/*
 * BUG: two descriptors open on one file: each sb_file keeps a running hash
 * of its own sequential writes. A, opened with O_TRUNC, writes "aaaaaaaa";
 * B writes "BB" at 0 and is closed; A is closed last and, its writes being
 * in order and covering the file's size, queues its hash (of "aaaaaaaa")
 * for a file that holds "BBaaaaaa". The state records a wrong hash: once
 * the target's ctime moves (chmod, touch -a, a backup tool), the target
 * looks changed ("Update source: f"); with a real change on the source it
 * becomes a spurious conflict.
 *   fd A = open(MNT/f, O_WRONLY|O_CREAT|O_TRUNC); write(A, "aaaaaaaa")
 *   fd B = open(MNT/f, O_WRONLY); pwrite(B, "BB", 0); close(B); close(A)
 *   sbfs umount MNT; touch -a TGT/f; sbfs status SRC TGT  -> exit 1, expected 0.
 */
Test(mount, two_descriptors_on_one_file)
{
	int a = open(M("two.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(a >= 0, "%s", strerror(errno));
	cr_assert_eq(write(a, "aaaaaaaa", 8), 8);
	int b = open(M("two.txt"), O_WRONLY);
	cr_assert(b >= 0, "%s", strerror(errno));
	cr_assert_eq(pwrite(b, "BB", 2, 0), 2);
	cr_assert(close(b) == 0);
	cr_assert(close(a) == 0);
	expect_all_str("two.txt", "BBaaaaaa");
	finish();
}

/*
 * BUG: a file renamed while open for writing: the rename records the new
 * name as it is then; later writes through the still-open descriptor are
 * queued at release under the old name (sb_file.rel), which no longer
 * exists, so the new name's record stays stale. `sbfs status` says 0, but
 * a change on one side afterwards is taken for a change on both sides: a
 * spurious conflict.
 *   fd = open(MNT/part, O_WRONLY|O_CREAT); write(fd, "first half ")
 *   rename(MNT/part, MNT/done); write(fd, "second half\n"); close(fd)
 *   sbfs umount MNT; echo edited > SRC/done; sbfs reconcile SRC TGT
 *   expected: "Update target: done"; actual: "done (changed on both sides)".
 */
/*
 * A file open for writing only is written uncached (direct_io): another
 * open that holds its pages in the kernel's cache must still read the new
 * bytes at once, even when the size does not change.
 */
Test(mount, cached_reader_sees_writes_made_uncached)
{
	char buf[8192];
	memset(buf, 'A', sizeof(buf));
	write_path(M("coherent"), buf, sizeof(buf), O_TRUNC);
	int r = open(M("coherent"), O_RDWR);
	cr_assert(r >= 0, "%s", strerror(errno));
	char got[8];
	cr_assert_eq(pread(r, got, 8, 4096), 8);
	cr_assert(!memcmp(got, "AAAAAAAA", 8));
	int w = open(M("coherent"), O_WRONLY);
	cr_assert(w >= 0, "%s", strerror(errno));
	memset(buf, 'B', sizeof(buf));
	cr_assert_eq(pwrite(w, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	cr_assert_eq(pread(r, got, 8, 4096), 8);
	cr_assert(!memcmp(got, "BBBBBBBB", 8), "the cached open still reads \"%.8s\"", got);
	cr_assert_eq(close(w), 0);
	cr_assert_eq(close(r), 0);
	expect_all("coherent", buf, sizeof(buf));
	finish();
}

Test(mount, rename_while_open_for_writing)
{
	int fd = open(M("part"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0, "%s", strerror(errno));
	cr_assert_eq(write(fd, "first half ", 11), 11);
	cr_assert(rename(M("part"), M("done")) == 0, "%s", strerror(errno));
	cr_assert_eq(write(fd, "second half\n", 12), 12);
	cr_assert(close(fd) == 0);
	expect_all_str("done", "first half second half\n");
	expect_absent("part", 1);
	tl_umount(&env, &mnt);
	expect_status_clean("after the unmount");
	/* a change on the source alone goes to the target */
	tl_write(env.src, "done", "edited on the source\n");
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "a change made on the source alone after the unmount:\n%s%s",
		     r.out, r.err);
	tl_run_free(&r);
	expect_sides_str("done", "edited on the source\n");
	expect_state_current();
}

Test(mount, append)
{
	for (int i = 0; i < 3; i++) {
		int fd = open(M("only-src.txt"), O_WRONLY | O_APPEND);
		cr_assert(fd >= 0, "%s", strerror(errno));
		char line[32];
		int n = snprintf(line, sizeof(line), "appended %d\n", i);
		cr_assert_eq(write(fd, line, n), n, "%s", strerror(errno));
		/* pwrite on O_APPEND appends too (Linux) */
		cr_assert_eq(pwrite(fd, "+", 1, 0), 1);
		cr_assert(close(fd) == 0);
	}
	expect_all_str("only-src.txt",
		       "from the source\nappended 0\n+appended 1\n+appended 2\n+");
	/* A new file made by appends. */
	for (int i = 0; i < 2; i++) {
		int fd = open(M("log.txt"), O_WRONLY | O_APPEND | O_CREAT, 0640);
		cr_assert(fd >= 0, "%s", strerror(errno));
		cr_assert_eq(write(fd, "line\n", 5), 5);
		cr_assert(close(fd) == 0);
	}
	expect_all_str("log.txt", "line\nline\n");
	finish();
}

Test(mount, random_writes_in_a_large_file)
{
	size_t size = 8 * MIB, cap = size + MIB;
	unsigned char *model = calloc(1, cap), *chunk = malloc(MIB);
	fill_random(model, size);
	write_path(M("random.bin"), model, size, O_TRUNC);

	int fd = open(M("random.bin"), O_RDWR);
	cr_assert(fd >= 0, "%s", strerror(errno));
	for (int i = 0; i < 300; i++) {
		size_t len = 1 + rnd() % (i % 10 == 0 ? 300000 : 5000);
		size_t off = rnd() % (size + 4096);	/* now and then beyond the end */
		fill_random(chunk, len);
		cr_assert_eq(pwrite(fd, chunk, len, off), (ssize_t)len, "pwrite at %zu: %s", off,
			     strerror(errno));
		memcpy(model + off, chunk, len);
		if (off + len > size)
			size = off + len;
		if (i % 50 == 0) {
			/* read back through the same descriptor */
			size_t roff = rnd() % size, rlen = size - roff < 70000 ? size - roff : 70000;
			cr_assert_eq(pread(fd, chunk, rlen, roff), (ssize_t)rlen);
			cr_assert(!memcmp(chunk, model + roff, rlen), "read back at %zu differs", roff);
		}
	}
	cr_assert(close(fd) == 0);
	expect_all("random.bin", model, size);
	free(model);
	free(chunk);
	finish();
}

/* copy_file_range (what cp uses) is done by the daemon in the kernel on
 * both sides; the copy must be whole on both, and the state right. */
Test(mount, copy_file_range)
{
	size_t size = 3 * MIB + 12345;
	unsigned char *model = malloc(size);
	fill_random(model, size);
	write_path(M("orig.bin"), model, size, O_TRUNC);

	int in = open(M("orig.bin"), O_RDONLY), out = open(M("copy.bin"), O_WRONLY | O_CREAT, 0644);
	cr_assert(in >= 0 && out >= 0, "%s", strerror(errno));
	size_t done = 0;
	while (done < size) {
		ssize_t n = copy_file_range(in, NULL, out, NULL, size - done, 0);
		cr_assert(n > 0, "copy_file_range after %zu bytes: %s", done,
			  n < 0 ? strerror(errno) : "end of file");
		done += n;
	}
	cr_assert(close(out) == 0);
	expect_all("copy.bin", model, size);

	/* A range from the middle into the middle of another file. */
	unsigned char *other = malloc(MIB);
	fill_random(other, MIB);
	write_path(M("other.bin"), other, MIB, O_TRUNC);
	out = open(M("other.bin"), O_WRONLY);
	cr_assert(out >= 0, "%s", strerror(errno));
	loff_t oi = 1000000, oo = 4096;
	cr_assert_eq(copy_file_range(in, &oi, out, &oo, 50000, 0), 50000, "%s", strerror(errno));
	cr_assert(close(out) == 0 && close(in) == 0);
	memcpy(other + 4096, model + 1000000, 50000);
	expect_all("other.bin", other, MIB);
	free(other);
	free(model);
	finish();
}

Test(mount, mmap_shared_writes)
{
	size_t size = 1 * MIB + 4096 * 3;
	unsigned char *want = malloc(size);
	fill_random(want, size);
	write_path(M("mapped.bin"), want, size, O_TRUNC);

	int fd = open(M("mapped.bin"), O_RDWR);
	cr_assert(fd >= 0, "%s", strerror(errno));
	unsigned char *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert(map != MAP_FAILED, "mmap MAP_SHARED through the mount: %s", strerror(errno));
	cr_assert(!memcmp(map, want, size), "the mapping does not show the file");
	for (size_t off = 100; off < size; off += 300007) {
		memset(map + off, 0xA5, 5000 < size - off ? 5000 : size - off);
		memset(want + off, 0xA5, 5000 < size - off ? 5000 : size - off);
	}
	memcpy(map + size - 7, "THE END", 7);
	memcpy(want + size - 7, "THE END", 7);
	cr_assert(msync(map, size, MS_SYNC) == 0, "msync: %s", strerror(errno));
	/* msync returned: the pages are written, on both sides. */
	const char *roots[2] = { env.src, env.tgt };
	expect_in(roots, 2, "mapped.bin", want, size);
	cr_assert(munmap(map, size) == 0);
	cr_assert(close(fd) == 0);
	expect_all("mapped.bin", want, size);
	free(want);
	finish();
}

Test(mount, fallocate)
{
	int fd = open(M("alloc.bin"), O_RDWR | O_CREAT | O_EXCL, 0644);
	cr_assert(fd >= 0, "%s", strerror(errno));
	cr_assert(fallocate(fd, 0, 0, 2 * MIB) == 0, "fallocate: %s", strerror(errno));
	struct stat st[3];
	lstat_all("alloc.bin", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(st[i].st_size, 2 * MIB, "%s: size %lld after fallocate", side_name[i],
			     (long long)st[i].st_size);
	cr_assert_eq(pwrite(fd, "data", 4, 4096), 4);
	/* beyond the end, keeping the size */
	cr_assert(fallocate(fd, FALLOC_FL_KEEP_SIZE, 2 * MIB, MIB) == 0, "%s", strerror(errno));
	/* a hole punched over the data */
	cr_assert(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096) == 0,
		  "punch hole: %s", strerror(errno));
	cr_assert_eq(pwrite(fd, "kept", 4, 3 * 4096), 4);
	cr_assert(close(fd) == 0);
	char *want = calloc(1, 2 * MIB);
	memcpy(want + 3 * 4096, "kept", 4);
	expect_all("alloc.bin", want, 2 * MIB);
	free(want);
	lstat_all("alloc.bin", st, 1);
	cr_assert_eq(st[0].st_size, 2 * MIB);
	cr_assert_eq(st[1].st_size, 2 * MIB);
	finish();
}

Test(mount, fsync_and_fdatasync)
{
	int fd = open(M("synced.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0, "%s", strerror(errno));
	cr_assert_eq(write(fd, "first\n", 6), 6);
	cr_assert(fsync(fd) == 0, "fsync: %s", strerror(errno));
	/* fsync returned: on both sides, while still open. */
	const char *roots[2] = { env.src, env.tgt };
	expect_in(roots, 2, "synced.txt", "first\n", 6);
	cr_assert_eq(write(fd, "second\n", 7), 7);
	cr_assert(fdatasync(fd) == 0, "fdatasync: %s", strerror(errno));
	expect_in(roots, 2, "synced.txt", "first\nsecond\n", 13);
	cr_assert(close(fd) == 0);
	int dfd = open(M("dir"), O_RDONLY | O_DIRECTORY);
	cr_assert(dfd >= 0, "%s", strerror(errno));
	cr_assert(fsync(dfd) == 0, "fsync of a directory: %s", strerror(errno));
	close(dfd);
	expect_all_str("synced.txt", "first\nsecond\n");
	finish();
}

Test(mount, mkdir_rmdir_unlink)
{
	cr_assert(mkdir(M("newdir"), 0750) == 0, "mkdir: %s", strerror(errno));
	cr_assert(mkdir(M("newdir/inner"), 0700) == 0, "mkdir: %s", strerror(errno));
	struct stat st[3];
	lstat_all("newdir", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert(S_ISDIR(st[i].st_mode) && (st[i].st_mode & 07777) == 0750,
			  "%s: newdir mode %o", side_name[i], st[i].st_mode);
	lstat_all("newdir/inner", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert(S_ISDIR(st[i].st_mode) && (st[i].st_mode & 07777) == 0700);
	cr_assert(mkdir(M("newdir"), 0755) < 0 && errno == EEXIST, "mkdir over a directory: %s",
		  strerror(errno));
	cr_assert(mkdir(M("only-src.txt"), 0755) < 0 && errno == EEXIST);

	/* rmdir of a non-empty directory fails and leaves both sides alone */
	cr_assert(rmdir(M("newdir")) < 0 && errno == ENOTEMPTY, "rmdir non-empty: %s",
		  strerror(errno));
	lstat_all("newdir/inner", st, 1);
	cr_assert(rmdir(M("newdir/inner")) == 0, "%s", strerror(errno));
	expect_absent("newdir/inner", 1);
	cr_assert(rmdir(M("empty-dir")) == 0, "%s", strerror(errno));
	expect_absent("empty-dir", 1);
	cr_assert(rmdir(M("only-src.txt")) < 0 && errno == ENOTDIR);

	cr_assert(unlink(M("only-tgt.txt")) == 0, "%s", strerror(errno));
	expect_absent("only-tgt.txt", 1);
	cr_assert(unlink(M("dir/sub/deep.txt")) == 0, "%s", strerror(errno));
	expect_absent("dir/sub/deep.txt", 1);
	cr_assert(unlink(M("no-such-file")) < 0 && errno == ENOENT);
	cr_assert(unlink(M("dir")) < 0 && (errno == EISDIR || errno == EPERM));
	lstat_all("dir", st, 1);

	/* Deleting a file still open: gone on both sides at once. */
	write_str(M("open-deleted.txt"), "open\n");
	int fd = open(M("open-deleted.txt"), O_RDWR);
	cr_assert(fd >= 0);
	cr_assert(unlink(M("open-deleted.txt")) == 0, "%s", strerror(errno));
	expect_absent("open-deleted.txt", 1);
	cr_assert_eq(write(fd, "more\n", 5), 5);
	close(fd);
	expect_absent("open-deleted.txt", 1);

	expect_names(mnt.dir, "dir newdir only-src.txt");
	finish();
}

/* Inode numbers are the partners' own: stable across a rename and a
 * remount, and the same in a directory listing as in stat. */
/* Each file open through the mount holds one descriptor per side: with a
 * soft limit of 1024 inherited, the mount still serves 1500 open files. */
Test(mount, many_open_files)
{
	enum { N = 1500 };
	char name[32];
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "many/f%04d", i);
		tl_write(env.src, name, "x");
		tl_write(env.tgt, name, "x");
	}
	tl_umount(&env, &mnt);
	tl_mount_cleanup(&mnt);
	struct rlimit rl, low;
	cr_assert(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	cr_assert(rl.rlim_max >= 2 * N + 64, "hard limit %lu too low for this test",
		  (unsigned long)rl.rlim_max);
	low = rl;
	low.rlim_cur = 1024;
	cr_assert(setrlimit(RLIMIT_NOFILE, &low) == 0);
	tl_mount(&env, &mnt, NULL);	/* inherits the soft limit of 1024 */
	low.rlim_cur = 2 * N + 64;
	cr_assert(setrlimit(RLIMIT_NOFILE, &low) == 0);
	static int fds[N];
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "many/f%04d", i);
		fds[i] = open(M(name), O_RDONLY);
		cr_assert(fds[i] >= 0, "open #%d: %s", i, strerror(errno));
	}
	for (int i = 0; i < N; i++)
		close(fds[i]);
	cr_assert(setrlimit(RLIMIT_NOFILE, &rl) == 0);
}

Test(mount, stable_inode_numbers)
{
	struct stat st, st2;
	cr_assert(mkdir(M("idir"), 0755) == 0);
	write_str(M("idir/f"), "x\n");
	cr_assert(stat(M("idir/f"), &st) == 0);
	cr_assert(stat(S("idir/f"), &st2) == 0);
	cr_assert_eq(st.st_ino, st2.st_ino, "the source's inode number");
	cr_assert(rename(M("idir/f"), M("idir/g")) == 0);
	cr_assert(stat(M("idir/g"), &st2) == 0);
	cr_assert_eq(st.st_ino, st2.st_ino, "changed by a rename");
	DIR *d = opendir(M("idir"));
	struct dirent *de;
	int seen = 0;
	while (d && (de = readdir(d)))
		if (!strcmp(de->d_name, "g")) {
			cr_assert_eq(de->d_ino, st.st_ino, "readdir and stat disagree");
			seen = 1;
		}
	if (d)
		closedir(d);
	cr_assert(seen);
	tl_umount(&env, &mnt);
	tl_mount_cleanup(&mnt);
	tl_mount(&env, &mnt, NULL);
	cr_assert(stat(M("idir/g"), &st2) == 0);
	cr_assert_eq(st.st_ino, st2.st_ino, "changed by a remount");
	finish();
}

/*
 * The first part of a listing carries each entry's attributes
 * (READDIRPLUS), which the kernel then keeps instead of asking again: they
 * must be what a stat of the shown side gives. Made outside the mount, so
 * that the kernel knows none of these names before the listing.
 */
Test(mount, listing_gives_the_attributes_stat_gives)
{
	const char *names[] = { "plain", "exec", "empty", "link", "sub", "twin", "tgt-only" };
	const int n = sizeof(names) / sizeof(names[0]);
	tl_write(env.src, "fresh/plain", "some bytes\n");
	tl_write(env.src, "fresh/exec", "#!/bin/sh\n");
	cr_assert(chmod(S("fresh/exec"), 0751) == 0);
	tl_write(env.src, "fresh/empty", "");
	cr_assert(symlink("plain", S("fresh/link")) == 0);
	tl_mkdir(env.src, "fresh/sub");
	cr_assert(link(S("fresh/plain"), S("fresh/twin")) == 0);
	tl_set_mtime(env.src, "fresh/plain", T0 + 5);
	tl_mkdir(env.tgt, "fresh");
	tl_write(env.tgt, "fresh/tgt-only", "on the target alone, longer\n");

	DIR *d = opendir(M("fresh"));
	cr_assert(d, "opendir: %s", strerror(errno));
	ino_t dino[8] = { 0 };
	struct dirent *de;
	while ((de = readdir(d)))
		for (int i = 0; i < n; i++)
			if (!strcmp(de->d_name, names[i]))
				dino[i] = de->d_ino;
	closedir(d);
	for (int i = 0; i < n; i++) {
		char rel[64];
		struct stat v, w;
		snprintf(rel, sizeof(rel), "fresh/%s", names[i]);
		cr_assert(dino[i], "%s not listed", rel);
		cr_assert(lstat(M(rel), &v) == 0, "mount: lstat %s: %s", rel, strerror(errno));
		cr_assert(lstat(i == n - 1 ? T(rel) : S(rel), &w) == 0);
		cr_assert_eq(v.st_mode, w.st_mode, "%s: mode %o, not %o", rel, v.st_mode, w.st_mode);
		cr_assert_eq(v.st_nlink, w.st_nlink, "%s: %lu links, not %lu", rel,
			     (unsigned long)v.st_nlink, (unsigned long)w.st_nlink);
		cr_assert_eq(v.st_uid, w.st_uid, "%s: uid", rel);
		cr_assert_eq(v.st_gid, w.st_gid, "%s: gid", rel);
		if (!S_ISDIR(w.st_mode))
			cr_assert_eq(v.st_size, w.st_size, "%s: size %lld, not %lld", rel,
				     (long long)v.st_size, (long long)w.st_size);
		cr_assert_eq(mtime_ns(&v), mtime_ns(&w), "%s: mtime", rel);
		cr_assert_eq(v.st_ino, dino[i], "%s: readdir and stat disagree on the inode", rel);
	}
}

Test(mount, rename)
{
	/* a file */
	cr_assert(rename(M("only-src.txt"), M("renamed.txt")) == 0, "%s", strerror(errno));
	expect_absent("only-src.txt", 1);
	expect_all_str("renamed.txt", "from the source\n");
	/* into another (new) directory */
	cr_assert(mkdir(M("box"), 0755) == 0);
	cr_assert(rename(M("renamed.txt"), M("box/moved.txt")) == 0, "%s", strerror(errno));
	expect_absent("renamed.txt", 1);
	expect_all_str("box/moved.txt", "from the source\n");
	/* a directory with children */
	cr_assert(rename(M("dir"), M("box/dir2")) == 0, "%s", strerror(errno));
	expect_absent("dir", 1);
	expect_all_str("box/dir2/sub/deep.txt", "deep in the source\n");
	expect_all_str("box/dir2/t.txt", "the target's file in dir\n");
	expect_names(M("box/dir2"), "sub t.txt");
	/* over an existing file */
	cr_assert(rename(M("only-tgt.txt"), M("box/moved.txt")) == 0, "%s", strerror(errno));
	expect_absent("only-tgt.txt", 1);
	expect_all_str("box/moved.txt", "from the target\n");
	/* a directory over an empty directory; a missing source */
	cr_assert(rename(M("box/dir2/sub"), M("empty-dir")) == 0, "%s", strerror(errno));
	expect_absent("box/dir2/sub", 1);
	expect_all_str("empty-dir/deep.txt", "deep in the source\n");
	cr_assert(rename(M("nothing"), M("else")) < 0 && errno == ENOENT);
	expect_absent("else", 1);
	/* a directory over a non-empty one fails, changing nothing */
	cr_assert(rename(M("box"), M("empty-dir")) < 0 && (errno == ENOTEMPTY || errno == EEXIST),
		  "%s", strerror(errno));
	expect_all_str("box/moved.txt", "from the target\n");
	expect_all_str("empty-dir/deep.txt", "deep in the source\n");
	finish();
}

static int renameat2_(const char *from, const char *to, unsigned flags)
{
	return (int)syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, flags);
}

Test(mount, renameat2_noreplace_and_exchange)
{
	/* RENAME_NOREPLACE: refused over an existing name, both sides intact */
	int r = renameat2_(M("only-src.txt"), M("only-tgt.txt"), RENAME_NOREPLACE);
	cr_assert(r < 0 && errno == EEXIST, "RENAME_NOREPLACE over an existing file: %d %s", r,
		  strerror(errno));
	expect_all_str("only-src.txt", "from the source\n");
	expect_all_str("only-tgt.txt", "from the target\n");
	/* ...and done over a free name */
	cr_assert(renameat2_(M("only-src.txt"), M("free.txt"), RENAME_NOREPLACE) == 0, "%s",
		  strerror(errno));
	expect_absent("only-src.txt", 1);
	expect_all_str("free.txt", "from the source\n");

	/* RENAME_EXCHANGE of two files */
	cr_assert(renameat2_(M("free.txt"), M("only-tgt.txt"), RENAME_EXCHANGE) == 0,
		  "RENAME_EXCHANGE: %s", strerror(errno));
	expect_all_str("free.txt", "from the target\n");
	expect_all_str("only-tgt.txt", "from the source\n");
	/* ...with a missing name */
	r = renameat2_(M("free.txt"), M("missing"), RENAME_EXCHANGE);
	cr_assert(r < 0 && errno == ENOENT, "RENAME_EXCHANGE with a missing name: %d %s", r,
		  strerror(errno));
	expect_absent("missing", 1);
	expect_all_str("free.txt", "from the target\n");
	finish();
}

/*
 * BUG: RENAME_EXCHANGE through the mount when one of the two is a
 * directory drops the records of everything beneath it from the state
 * (sb_mirror_rename queues ROP_DEL + ROP_REFRESH for both names; the
 * refresh records the directory itself with a new dir_id, not its
 * children). `sbfs status` still says 0, but `sbfs reconcile` has records
 * to add, and a file deleted on one side afterwards is copied back from the
 * other side instead of being deleted there.
 *   sbfs mount SRC TGT MNT    (SRC holds file and dir/child)
 *   renameat2(MNT/file, MNT/dir, RENAME_EXCHANGE); sbfs umount MNT
 *   rm SRC/file/child; sbfs reconcile SRC TGT
 *   expected: "Delete in target: file/child"; actual: "Copy to source: file/child".
 */
Test(mount, renameat2_exchange_with_a_directory)
{
	cr_assert(mkdir(M("other"), 0755) == 0);
	write_str(M("other/o.txt"), "in other\n");
	/* a file and a directory */
	cr_assert(renameat2_(M("only-src.txt"), M("dir"), RENAME_EXCHANGE) == 0,
		  "RENAME_EXCHANGE: %s", strerror(errno));
	expect_all_str("dir", "from the source\n");
	expect_all_str("only-src.txt/t.txt", "the target's file in dir\n");
	expect_all_str("only-src.txt/sub/deep.txt", "deep in the source\n");
	/* two directories */
	cr_assert(renameat2_(M("only-src.txt"), M("other"), RENAME_EXCHANGE) == 0,
		  "RENAME_EXCHANGE: %s", strerror(errno));
	expect_all_str("other/t.txt", "the target's file in dir\n");
	expect_all_str("only-src.txt/o.txt", "in other\n");
	tl_umount(&env, &mnt);
	expect_status_clean("after the unmount");

	/* Deleted on the source alone: the deletion must reach the target. */
	tl_rm(env.src, "other/sub/deep.txt");
	tl_rm(env.src, "only-src.txt/o.txt");
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	cr_assert(!tl_exists(env.src, "other/sub/deep.txt") && !tl_exists(env.tgt, "other/sub/deep.txt"),
		  "other/sub/deep.txt, deleted on the source after the exchange, was %s",
		  tl_exists(env.src, "other/sub/deep.txt") ? "copied back to the source" : "kept on the target");
	cr_assert(!tl_exists(env.src, "only-src.txt/o.txt") && !tl_exists(env.tgt, "only-src.txt/o.txt"),
		  "only-src.txt/o.txt, deleted on the source after the exchange, came back");
	expect_state_current();
}

Test(mount, symlink_and_readlink)
{
	cr_assert(symlink("only-src.txt", M("link")) == 0, "%s", strerror(errno));
	cr_assert(symlink("../nowhere/at all", M("dir/dangling")) == 0, "%s", strerror(errno));
	const char *roots[3] = { env.src, env.tgt, mnt.dir };
	for (int i = 0; i < 3; i++) {
		char buf[256];
		ssize_t n = readlink(P(roots[i], "link"), buf, sizeof(buf) - 1);
		cr_assert(n >= 0, "%s: readlink: %s", side_name[i], strerror(errno));
		buf[n] = '\0';
		cr_assert_str_eq(buf, "only-src.txt", "%s", side_name[i]);
		n = readlink(P(roots[i], "dir/dangling"), buf, sizeof(buf) - 1);
		cr_assert(n >= 0, "%s: readlink: %s", side_name[i], strerror(errno));
		buf[n] = '\0';
		cr_assert_str_eq(buf, "../nowhere/at all", "%s", side_name[i]);
	}
	/* followed through the mount */
	expect_all_str("link", "from the source\n");
	struct stat st[3];
	lstat_all("link", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert(S_ISLNK(st[i].st_mode), "%s: not a symlink", side_name[i]);
	cr_assert(symlink("x", M("link")) < 0 && errno == EEXIST);
	/* deleting the link leaves its target */
	cr_assert(unlink(M("link")) == 0);
	expect_absent("link", 1);
	expect_all_str("only-src.txt", "from the source\n");
	cr_assert(symlink("dir/t.txt", M("link2")) == 0, "%s", strerror(errno));
	finish();
}

Test(mount, hard_link)
{
	cr_assert(link(M("only-src.txt"), M("dir/hard")) == 0, "link: %s", strerror(errno));
	struct stat a[3], b[3];
	lstat_all("only-src.txt", a, 1);
	lstat_all("dir/hard", b, 1);
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(a[i].st_nlink, 2, "%s: link count %lu", side_name[i],
			     (unsigned long)a[i].st_nlink);
		cr_assert_eq(b[i].st_nlink, 2, "%s: link count %lu", side_name[i],
			     (unsigned long)b[i].st_nlink);
		cr_assert_eq(a[i].st_ino, b[i].st_ino, "%s: not the same inode", side_name[i]);
	}
	cr_assert_eq(b[2].st_nlink, 2, "mount: link count %lu", (unsigned long)b[2].st_nlink);
	expect_all_str("dir/hard", "from the source\n");
	cr_assert(link(M("only-tgt.txt"), M("dir/hard")) < 0 && errno == EEXIST);
	cr_assert(link(M("nothing"), M("dir/hard2")) < 0 && errno == ENOENT);
	expect_absent("dir/hard2", 1);
	finish();
	struct stat x, y;
	cr_assert(stat(S("dir/hard"), &x) == 0 && stat(T("dir/hard"), &y) == 0);
	cr_assert(x.st_nlink == 2 && y.st_nlink == 2);
}

Test(mount, chmod_and_chown)
{
	cr_assert(chmod(M("only-src.txt"), 0600) == 0, "%s", strerror(errno));
	cr_assert(chmod(M("dir"), 0750) == 0, "%s", strerror(errno));
	cr_assert(chmod(M("only-tgt.txt"), 04755) == 0, "%s", strerror(errno));
	cr_assert(chown(M("dir/t.txt"), 1234, 5678) == 0, "%s", strerror(errno));
	struct stat st[3];
	lstat_all("only-src.txt", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(st[i].st_mode & 07777, 0600, "%s: mode %o", side_name[i], st[i].st_mode);
	lstat_all("dir", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(st[i].st_mode & 07777, 0750, "%s: mode %o", side_name[i], st[i].st_mode);
	lstat_all("only-tgt.txt", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(st[i].st_mode & 07777, 04755, "%s: mode %o", side_name[i], st[i].st_mode);
	lstat_all("dir/t.txt", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert(st[i].st_uid == 1234 && st[i].st_gid == 5678, "%s: owner %u:%u",
			  side_name[i], st[i].st_uid, st[i].st_gid);
	cr_assert(chmod(M("missing"), 0600) < 0 && errno == ENOENT);
	finish();
}

/* access(2) in the mount answers as the partners would (here for root, in
 * a mount without default_permissions, which the kernel asks). */
Test(mount, access_answers_as_the_partners_do)
{
	tl_write(mnt.dir, "plain", "x\n");
	cr_assert(access(M("plain"), R_OK | W_OK) == 0, "%s", strerror(errno));
	cr_assert(access(M("plain"), X_OK) < 0 && errno == EACCES,
		  "X_OK on a 0644 file: %s", strerror(errno));
	cr_assert(chmod(M("plain"), 0755) == 0, "%s", strerror(errno));
	cr_assert(access(M("plain"), X_OK) == 0, "X_OK on a 0755 file: %s", strerror(errno));
	cr_assert(access(M("dir"), X_OK) == 0, "%s", strerror(errno));
	cr_assert(access(M("only-tgt.txt"), R_OK) == 0, "%s", strerror(errno));
	cr_assert(access(M("missing"), F_OK) < 0 && errno == ENOENT);
	cr_assert(access(mnt.dir, R_OK | W_OK | X_OK) == 0, "%s", strerror(errno));
	finish();
}

Test(mount, utimens)
{
	struct timespec t[2] = { { T0, 0 }, { T0 + 3600, 123456789 } };
	cr_assert(utimensat(AT_FDCWD, M("only-src.txt"), t, 0) == 0, "%s", strerror(errno));
	struct stat st[3];
	lstat_all("only-src.txt", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(mtime_ns(&st[i]), (T0 + 3600) * 1000000000LL + 123456789,
			     "%s: mtime %lld", side_name[i], (long long)mtime_ns(&st[i]));
	/* touch -d: mtime only, atime left */
	struct timespec m[2] = { { 0, UTIME_OMIT }, { T0 - 86400, 0 } };
	cr_assert(utimensat(AT_FDCWD, M("only-tgt.txt"), m, 0) == 0, "%s", strerror(errno));
	lstat_all("only-tgt.txt", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(mtime_ns(&st[i]), (T0 - 86400) * 1000000000LL, "%s", side_name[i]);
	/* "now": the very same time on both sides */
	cr_assert(utimensat(AT_FDCWD, M("dir/t.txt"), NULL, 0) == 0, "%s", strerror(errno));
	lstat_all("dir/t.txt", st, 1);
	cr_assert_eq(mtime_ns(&st[0]), mtime_ns(&st[1]), "touch: mtimes %lld and %lld",
		     (long long)mtime_ns(&st[0]), (long long)mtime_ns(&st[1]));
	cr_assert(st[0].st_mtim.tv_sec > T0);
	/* a directory, and a symlink itself */
	cr_assert(utimensat(AT_FDCWD, M("dir/sub"), t, 0) == 0, "%s", strerror(errno));
	lstat_all("dir/sub", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(mtime_ns(&st[i]), (T0 + 3600) * 1000000000LL + 123456789, "%s",
			     side_name[i]);
	cr_assert(symlink("only-src.txt", M("ln")) == 0);
	cr_assert(utimensat(AT_FDCWD, M("ln"), t, AT_SYMLINK_NOFOLLOW) == 0, "%s", strerror(errno));
	lstat_all("ln", st, 1);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(mtime_ns(&st[i]), (T0 + 3600) * 1000000000LL + 123456789,
			     "%s: the symlink's own mtime", side_name[i]);
	lstat_all("only-src.txt", st, 1);
	cr_assert_eq(mtime_ns(&st[0]), (T0 + 3600) * 1000000000LL + 123456789,
		     "the symlink's target changed");
	finish();
	lstat_all("only-tgt.txt", st, 0);
	cr_assert_eq(mtime_ns(&st[0]), mtime_ns(&st[1]));
}

/* ls -la asks the mount's root for its ACL: that must be an answer
 * (ENODATA), not an error; and the root's user attributes are the roots'. */
Test(mount, xattrs_on_the_mount_root)
{
	char buf[64];
	cr_assert(getxattr(mnt.dir, "system.posix_acl_access", buf, sizeof(buf)) < 0 &&
		  (errno == ENODATA || errno == EOPNOTSUPP), "getxattr on the root: %s",
		  strerror(errno));
	cr_assert(listxattr(mnt.dir, buf, sizeof(buf)) >= 0, "listxattr on the root: %s",
		  strerror(errno));
	cr_assert(setxattr(mnt.dir, "user.root", "r", 1, 0) == 0, "setxattr on the root: %s",
		  strerror(errno));
	const char *roots[2] = { env.src, env.tgt };
	for (int i = 0; i < 2; i++)
		cr_assert(getxattr(roots[i], "user.root", buf, sizeof(buf)) == 1 && buf[0] == 'r',
			  "%s root: user.root missing", side_name[i]);
	cr_assert(removexattr(mnt.dir, "user.root") == 0, "%s", strerror(errno));
	finish();
}

Test(mount, user_xattrs)
{
	const char *roots[3] = { env.src, env.tgt, mnt.dir };
	cr_assert(setxattr(M("only-src.txt"), "user.color", "blue", 4, 0) == 0, "setxattr: %s",
		  strerror(errno));
	cr_assert(setxattr(M("dir"), "user.dirattr", "d\0x", 3, 0) == 0, "setxattr on a dir: %s",
		  strerror(errno));
	for (int i = 0; i < 3; i++) {
		char buf[64];
		ssize_t n = getxattr(P(roots[i], "only-src.txt"), "user.color", buf, sizeof(buf));
		cr_assert(n == 4 && !memcmp(buf, "blue", 4), "%s: user.color: %zd %s", side_name[i], n,
			  n < 0 ? strerror(errno) : "");
		n = getxattr(P(roots[i], "dir"), "user.dirattr", buf, sizeof(buf));
		cr_assert(n == 3 && !memcmp(buf, "d\0x", 3), "%s: user.dirattr: %zd", side_name[i], n);
	}
	/* the size query, and the list */
	cr_assert_eq(getxattr(M("only-src.txt"), "user.color", NULL, 0), 4);
	cr_assert(setxattr(M("only-src.txt"), "user.second", "2", 1, 0) == 0);
	char list[256];
	ssize_t n = listxattr(M("only-src.txt"), list, sizeof(list));
	cr_assert(n > 0, "listxattr: %s", strerror(errno));
	int color = 0, second = 0;
	for (ssize_t k = 0; k < n; k += strlen(list + k) + 1) {
		color |= !strcmp(list + k, "user.color");
		second |= !strcmp(list + k, "user.second");
	}
	cr_assert(color && second, "listxattr through the mount misses a name");
	cr_assert(listxattr(M("only-src.txt"), NULL, 0) >= n);
	/* flags */
	cr_assert(setxattr(M("only-src.txt"), "user.color", "red", 3, XATTR_CREATE) < 0 &&
		  errno == EEXIST, "XATTR_CREATE over an existing attribute: %s", strerror(errno));
	cr_assert(setxattr(M("only-src.txt"), "user.none", "x", 1, XATTR_REPLACE) < 0 &&
		  errno == ENODATA, "XATTR_REPLACE of a missing attribute: %s", strerror(errno));
	cr_assert(setxattr(M("only-src.txt"), "user.color", "red", 3, XATTR_REPLACE) == 0);
	for (int i = 0; i < 3; i++) {
		char buf[64];
		ssize_t k = getxattr(P(roots[i], "only-src.txt"), "user.color", buf, sizeof(buf));
		cr_assert(k == 3 && !memcmp(buf, "red", 3), "%s: after XATTR_REPLACE", side_name[i]);
		cr_assert(getxattr(P(roots[i], "only-src.txt"), "user.none", buf, sizeof(buf)) < 0 &&
			  errno == ENODATA);
	}
	/* remove */
	cr_assert(removexattr(M("only-src.txt"), "user.color") == 0, "%s", strerror(errno));
	for (int i = 0; i < 3; i++) {
		char buf[64];
		cr_assert(getxattr(P(roots[i], "only-src.txt"), "user.color", buf, sizeof(buf)) < 0 &&
			  errno == ENODATA, "%s: user.color still there", side_name[i]);
		ssize_t k = getxattr(P(roots[i], "only-src.txt"), "user.second", buf, sizeof(buf));
		cr_assert(k == 1 && buf[0] == '2', "%s: user.second lost", side_name[i]);
	}
	cr_assert(removexattr(M("only-src.txt"), "user.color") < 0 && errno == ENODATA);
	/* every namespace goes through: trusted.* for root (test_xattr.c: ACLs) */
	cr_assert(setxattr(M("only-src.txt"), "trusted.sbfs-test", "x", 1, 0) == 0,
		  "a trusted.* attribute was refused: %s", strerror(errno));
	for (int i = 0; i < 2; i++) {
		char buf[8];
		cr_assert(getxattr(P(roots[i], "only-src.txt"), "trusted.sbfs-test", buf, sizeof(buf)) == 1,
			  "%s: trusted.sbfs-test was not set", side_name[i]);
	}
	/* through the mount a file created there carries them too */
	write_str(M("x.txt"), "x\n");
	cr_assert(setxattr(M("x.txt"), "user.k", "v", 1, 0) == 0);
	for (int i = 0; i < 2; i++) {
		char buf[8];
		cr_assert_eq(getxattr(P(roots[i], "x.txt"), "user.k", buf, sizeof(buf)), 1);
	}
	tl_umount(&env, &mnt);
	expect_state_ok(0);	/* not strict: see xattr_change_is_recorded */
}

/*
 * BUG (minor: costs a re-hash, decides nothing wrong): an xattr set through
 * the mount moves the file's ctime on both sides, but sb_mirror_setxattr
 * queues no state refresh, so the recorded fingerprints are stale: the next
 * `sbfs reconcile` hashes the file again and records it ("Done: 1") instead
 * of "Nothing to do".
 *   sbfs mount SRC TGT MNT; setfattr -n user.a -v 1 MNT/f; sbfs umount MNT
 *   sbfs reconcile SRC TGT   -> "Done: 1", expected "Nothing to do".
 */
Test(mount, xattr_change_is_recorded)
{
	cr_assert(setxattr(M("only-src.txt"), "user.color", "blue", 4, 0) == 0, "setxattr: %s",
		  strerror(errno));
	finish();
}

Test(mount, statfs)
{
	struct statvfs m, s;
	cr_assert(statvfs(mnt.dir, &m) == 0, "statvfs of the mount: %s", strerror(errno));
	cr_assert(statvfs(env.src, &s) == 0);
	cr_assert(m.f_bsize > 0 && m.f_frsize > 0 && m.f_blocks > 0);
	/* both partners live on one file system here */
	cr_assert_eq(m.f_blocks * m.f_frsize, s.f_blocks * s.f_frsize);
	cr_assert_eq(m.f_namemax, s.f_namemax);
	cr_assert(m.f_bavail <= m.f_blocks);
	struct statvfs sub;
	cr_assert(statvfs(M("dir/sub"), &sub) == 0, "%s", strerror(errno));
	finish();
}

/*
 * A change that cannot be made on one side: a creation is undone on the
 * other; another change returns the error and is left to the next
 * reconcile (README). The target's copy is made immutable to fail it.
 */
Test(mount, change_failing_on_one_side)
{
	cr_assert(mkdir(M("locked"), 0755) == 0);
	set_immutable(T("locked"), 1);
	int fd = open(M("locked/new.txt"), O_WRONLY | O_CREAT | O_EXCL, 0644);
	cr_assert(fd < 0, "a file was created where the target cannot hold it");
	cr_assert(errno == EPERM || errno == EACCES, "create: %s", strerror(errno));
	expect_absent("locked/new.txt", 1);
	cr_assert(mkdir(M("locked/d"), 0755) < 0);
	expect_absent("locked/d", 1);
	cr_assert(symlink("x", M("locked/ln")) < 0);
	expect_absent("locked/ln", 1);
	cr_assert(link(M("only-src.txt"), M("locked/hard")) < 0);
	expect_absent("locked/hard", 1);
	set_immutable(T("locked"), 0);

	set_immutable(T("only-src.txt"), 1);
	cr_assert(chmod(M("only-src.txt"), 0600) < 0 && (errno == EPERM || errno == EACCES),
		  "chmod with the target's copy immutable: %s", strerror(errno));
	set_immutable(T("only-src.txt"), 0);
	tl_umount(&env, &mnt);
	/* whatever was done on the source alone, the next reconcile settles it */
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	struct stat st[3];
	lstat_all("only-src.txt", st, 0);
	cr_assert_eq(st[0].st_mode & 07777, st[1].st_mode & 07777);
	expect_state_current();
}

/* README: `sbfs reconcile MOUNTPOINT` after editing a partner directly: the
 * mount does it, and what it changes shows in the mount at once. */
Test(mount, reconcile_while_mounted)
{
	expect_all_str("dir/t.txt", "the target's file in dir\n");	/* now cached */
	tl_write(env.tgt, "dir/t.txt", "edited on the target directly\n");
	tl_write(env.src, "outside.txt", "made on the source directly\n");
	tl_rm(env.src, "dir/sub/deep.txt");
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("status", mnt.dir));
	cr_assert_eq(r.status, 1, "sbfs status MNT with changes made outside: %d\n%s%s", r.status,
		     r.out, r.err);
	tl_run_free(&r);
	r = tl_sbfs_run(&env, NULL, OPTS("reconcile", mnt.dir));
	cr_assert_eq(r.status, 0, "sbfs reconcile MNT: %s%s", r.out, r.err);
	tl_run_free(&r);
	expect_all_str("dir/t.txt", "edited on the target directly\n");
	expect_all_str("outside.txt", "made on the source directly\n");
	expect_absent("dir/sub/deep.txt", 1);
	r = tl_cmd(&env, "status", NULL);	/* SOURCE TARGET: the mount answers too */
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	write_str(M("after.txt"), "after\n");
	finish();
}

/* A partnership is mounted once (bad input too). */
Test(mount, second_mount_is_refused)
{
	char *other = tl_join(env.base, "mnt2");
	cr_assert(mkdir(other, 0755) == 0);
	struct tl_run r = tl_mount_run(&env, other, NULL);
	cr_assert_eq(r.status, 2, "a second mount of the partnership: exit %d\n%s%s", r.status,
		     r.out, r.err);
	cr_assert(strstr(r.err, mnt.dir), "the refusal does not name where it is mounted: %s", r.err);
	cr_assert(!tl_mounted(other), "mounted twice");
	tl_run_free(&r);
	/* the first one still works */
	write_str(M("still.txt"), "still\n");
	expect_all_str("still.txt", "still\n");
	free(other);
	finish();
}

/* ================================================================ 3. the state after a write */

Test(mount, reconcile_after_unmount_has_nothing_to_do)
{
	write_str(M("written.txt"), "written through the mount\n");
	write_str(M("dir/t.txt"), "changed through the mount\n");
	cr_assert(mkdir(M("d2"), 0755) == 0);
	write_str(M("d2/f"), "f\n");
	tl_umount(&env, &mnt);
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	cr_assert(strstr(r.out, "Nothing to do"), "reconcile after the unmount:\n%s%s", r.out, r.err);
	tl_run_free(&r);
	expect_sides_str("written.txt", "written through the mount\n");
	expect_sides_str("dir/t.txt", "changed through the mount\n");
	expect_sides_str("d2/f", "f\n");
	expect_state_current();
}

Test(mount, state_current_while_mounted)
{
	write_str(M("w.txt"), "while mounted\n");
	cr_assert(mkdir(M("wd"), 0755) == 0);
	cr_assert(rename(M("only-src.txt"), M("wd/moved.txt")) == 0);
	cr_assert(unlink(M("only-tgt.txt")) == 0);
	int st = tl_status_wait_clean(&env, 2000);
	cr_assert_eq(st, 0, "sbfs status still exits %d 2 s after the changes (mounted)", st);
	expect_sides_str("w.txt", "while mounted\n");
	expect_sides_str("wd/moved.txt", "from the source\n");
	finish();
}

/* ================================================================ 8. unmounting */

Test(mount, sbfs_umount)
{
	write_str(M("before-umount.txt"), "x\n");
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("umount", mnt.dir));
	cr_assert_eq(r.status, 0, "sbfs umount: %s%s", r.out, r.err);
	tl_run_free(&r);
	tl_umount_wait(&mnt);
	cr_assert(!tl_mounted(mnt.dir));
	expect_names(mnt.dir, "");
	expect_sides_str("before-umount.txt", "x\n");
	expect_state_current();
	/* again: nothing is mounted there any more */
	r = tl_sbfs_run(&env, NULL, OPTS("umount", mnt.dir));
	cr_assert_eq(r.status, 2, "sbfs umount of a directory not mounted: exit %d", r.status);
	cr_assert(strstr(r.err, "not a mount point"), "%s", r.err);
	tl_run_free(&r);
	r = tl_sbfs_run(&env, NULL, OPTS("umount"));
	cr_assert_eq(r.status, 2);
	tl_run_free(&r);
}

Test(mount, fusermount_u)
{
	write_str(M("before-umount.txt"), "y\n");
	cr_assert(rename(M("dir"), M("dir-renamed")) == 0);
	struct tl_proc p;
	tl_spawn_ex(&p, NULL, "fusermount3", 0, OPTS("-u", mnt.dir));
	struct tl_run r = tl_proc_wait(&p, 0);
	cr_assert_eq(r.status, 0, "fusermount3 -u: %s", r.err);
	tl_run_free(&r);
	tl_umount_wait(&mnt);
	expect_sides_str("before-umount.txt", "y\n");
	expect_sides_str("dir-renamed/t.txt", "the target's file in dir\n");
	expect_state_current();
}

/* ================================================================ 6. daemon killed */

#define KW_SIZE (256 * 1024 + 1000)
#define KW_FILES 25
#define KW_CHUNK 65536
#define KW_PAUSED (-1)

static void kw_content(int i, unsigned char *buf)
{
	uint64_t x = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 1);
	for (size_t k = 0; k < KW_SIZE; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[k] = (unsigned char)x;
	}
}

/*
 * The writer (a child process): writes kw/f00000... one after the other,
 * reporting each number on fd once its close succeeded. After KW_FILES
 * files it opens one more, writes two chunks of it, reports KW_PAUSED and
 * waits on go; then goes on until the first error.
 */
static void kill_writer(const char *dir, int fd, int go)
{
	unsigned char *buf = malloc(KW_SIZE);
	for (int i = 0;; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/kw/f%05d", dir, i);
		kw_content(i, buf);
		int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (f < 0)
			_exit(0);
		for (size_t off = 0; off < KW_SIZE;) {
			size_t n = KW_SIZE - off < KW_CHUNK ? KW_SIZE - off : KW_CHUNK;
			if (i == KW_FILES && off == 2 * KW_CHUNK) {
				int p = KW_PAUSED;
				char c;
				if (write(fd, &p, sizeof(p)) != sizeof(p) || read(go, &c, 1) < 0)
					_exit(0);
			}
			ssize_t w = write(f, buf + off, n);
			if (w <= 0)
				_exit(0);
			off += w;
		}
		if (close(f) < 0)
			_exit(0);
		if (write(fd, &i, sizeof(i)) != sizeof(i))
			_exit(0);
	}
}

/*
 * The daemon killed (SIGKILL) while a writer is busy: KW_FILES files
 * written and closed one after the other just before (their releases and
 * state updates possibly still queued), one more open and half written.
 */
Test(mount, daemon_killed_while_writing)
{
	cr_assert(mkdir(M("kw"), 0755) == 0);
	int pfd[2], gfd[2];
	cr_assert(pipe(pfd) == 0 && pipe(gfd) == 0);
	fflush(NULL);
	pid_t w = fork();
	cr_assert(w >= 0);
	if (w == 0) {
		close(pfd[0]);
		close(gfd[1]);
		kill_writer(mnt.dir, pfd[1], gfd[0]);
	}
	close(pfd[1]);
	close(gfd[0]);
	int ndone = 0, i;
	while (read(pfd[0], &i, sizeof(i)) == sizeof(i) && i != KW_PAUSED) {
		cr_assert_eq(i, ndone, "the writer reported file %d after %d files", i, ndone);
		ndone++;
	}
	cr_assert_eq(i, KW_PAUSED, "the writer stopped early, after %d files", ndone);
	cr_assert_eq(ndone, KW_FILES);
	cr_assert(kill(mnt.daemon, SIGKILL) == 0, "kill: %s", strerror(errno));
	for (int k = 0; k < 500 && !tl_mount_daemon_gone(&mnt); k++)
		usleep(10000);
	cr_assert(tl_mount_daemon_gone(&mnt), "the daemon survived SIGKILL?");
	/* the writer goes on: its writes fail (ENOTCONN), it stops */
	cr_assert_eq(write(gfd[1], "g", 1), 1);
	close(gfd[1]);
	while (read(pfd[0], &i, sizeof(i)) == sizeof(i))
		cr_assert_fail("the writer closed file %d after the daemon was killed", i);
	close(pfd[0]);
	int st;
	cr_assert_eq(waitpid(w, &st, 0), w);

	/* Written through: the files closed before the kill are whole on both
	 * sides already, and so is what was written of the open one. */
	unsigned char *want = malloc(KW_SIZE);
	const char *roots[2] = { env.src, env.tgt };
	char rel[64];
	for (int k = 0; k < KW_FILES; k++) {
		snprintf(rel, sizeof(rel), "kw/f%05d", k);
		kw_content(k, want);
		expect_in(roots, 2, rel, want, KW_SIZE);
	}
	snprintf(rel, sizeof(rel), "kw/f%05d", KW_FILES);
	kw_content(KW_FILES, want);
	expect_in(roots, 2, rel, want, 2 * KW_CHUNK);

	/* A dead mount: lazily unmounted, then mounted again (its reconcile
	 * takes up whatever the dead daemon left unrecorded). */
	cr_assert(tl_mounted(mnt.dir));
	tl_mount_cleanup(&mnt);
	cr_assert(!tl_mounted_under(env.base), "still mounted after fusermount3 -u -z");
	/* the dead mount's control socket is left behind: commands run here */
	struct tl_run r = tl_cmd(&env, "status", NULL);
	cr_assert(r.status == 0 || r.status == 1, "sbfs status after the daemon died: exit %d\n%s%s",
		  r.status, r.out, r.err);
	tl_run_free(&r);
	tl_mount(&env, &mnt, NULL);
	for (int k = 0; k < KW_FILES; k++) {
		snprintf(rel, sizeof(rel), "kw/f%05d", k);
		kw_content(k, want);
		expect_all(rel, want, KW_SIZE);
	}
	snprintf(rel, sizeof(rel), "kw/f%05d", KW_FILES);
	kw_content(KW_FILES, want);
	expect_all(rel, want, 2 * KW_CHUNK);
	tl_umount(&env, &mnt);
	expect_no_conflicts();
	expect_state_current();
	free(want);
}

/* The partnership's journal of files open for writing (malloc'd path). */
static char *journal_path(void)
{
	DIR *d = opendir(env.state);
	struct dirent *de;
	char *res = NULL;
	cr_assert(d, "%s: %s", env.state, strerror(errno));
	while (!res && (de = readdir(d))) {
		struct stat st;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s/journal", env.state, de->d_name);
		if (de->d_name[0] != '.' && stat(path, &st) == 0)
			res = strdup(path);
	}
	closedir(d);
	cr_assert(res, "no journal in %s", env.state);
	return res;
}

/* Its size, and how many more times it says rel was opened than closed
 * (records: 'W' or 'C', a 4-byte length, the path). */
static off_t journal_count(const char *rel, long *opened)
{
	char *path = journal_path();
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
	size_t size = 0, cap = 1 << 16, len = strlen(rel);
	char *buf = malloc(cap);
	ssize_t n;
	while ((n = read(fd, buf + size, cap - size)) > 0)
		if ((size += n) == cap)
			buf = realloc(buf, cap *= 2);
	close(fd);
	*opened = 0;
	for (size_t off = 0; off + 5 <= size;) {
		uint32_t l;
		memcpy(&l, buf + off + 1, 4);
		if (off + 5 + l > size)
			break;
		if (l == len && !memcmp(buf + off + 5, rel, len))
			*opened += buf[off] == 'W' ? 1 : -1;
		off += 5 + l;
	}
	free(buf);
	free(path);
	return (off_t)size;
}

/*
 * A mount that runs for long keeps its journal small (it is rewritten with
 * the files open at the time), and the rewritten journal still names the
 * file open for writing when the daemon is killed, and only it.
 */
Test(mount, journal_stays_small_and_names_the_open_files)
{
	char name[241];
	memset(name, 'j', 240);
	name[240] = '\0';
	tl_write(mnt.dir, name, "long\n");
	tl_write(mnt.dir, "held", "held\n");
	int held = open(M("held"), O_WRONLY | O_APPEND);
	cr_assert(held >= 0, "%s", strerror(errno));
	cr_assert_eq(write(held, "more\n", 5), 5);
	/* 2 x 245 bytes of records per open: 3000 opens pass 1 MiB */
	for (int i = 0; i < 3000; i++) {
		int fd = open(M(name), O_WRONLY);
		cr_assert(fd >= 0 && close(fd) == 0, "open %d: %s", i, strerror(errno));
	}
	/* a release is answered after close(2) returns: wait for the last */
	long open_count = 1;
	off_t size = 0;
	for (int k = 0; k < 1000 && open_count; k++) {
		size = journal_count(name, &open_count);
		if (open_count)
			usleep(10000);
	}
	cr_assert_eq(open_count, 0, "the journal still has the long name open");
	cr_assert_lt(size, 1 << 20, "the journal grew to %lld bytes", (long long)size);

	cr_assert(kill(mnt.daemon, SIGKILL) == 0, "kill: %s", strerror(errno));
	for (int k = 0; k < 500 && !tl_mount_daemon_gone(&mnt); k++)
		usleep(10000);
	cr_assert(tl_mount_daemon_gone(&mnt), "the daemon survived SIGKILL?");
	close(held);
	tl_mount_cleanup(&mnt);
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "reconcile after the kill: exit %d\n%s%s", r.status, r.out, r.err);
	cr_assert(strstr(r.out, "1 file(s) were being written") && strstr(r.out, "\n  held\n"),
		  "the reconcile should name held, and only it:\n%s", r.out);
	tl_run_free(&r);
	expect_sides_str("held", "held\nmore\n");
	expect_sides_str(name, "long\n");
}

/*
 * The daemon killed while it carries one write out (it writes the source,
 * then the target): the file was open for writing in the mount's journal,
 * so the remount's reconcile lets the source's version, written first,
 * win: no conflict, both sides equal. The kill cannot be placed exactly:
 * up to 30 attempts until the sides differ (most attempts do); if none
 * does, the test checks nothing more.
 */
Test(mount, daemon_killed_in_the_middle_of_a_write)
{
	static char chunk[MIB];
	fill_random(chunk, sizeof(chunk));
	int diverged = 0;
	for (int attempt = 0; attempt < 30 && !diverged; attempt++) {
		char rel[64];
		snprintf(rel, sizeof(rel), "big%02d", attempt);
		const char *mp = M(rel);
		fflush(NULL);
		pid_t w = fork();
		cr_assert(w >= 0);
		if (w == 0) {
			int f = open(mp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			for (int k = 0; f >= 0 && k < 2000; k++)
				if (write(f, chunk, sizeof(chunk)) != (ssize_t)sizeof(chunk))
					_exit(0);
			_exit(0);
		}
		struct stat x;
		for (int k = 0; k < 1000; k++) {
			if (stat(S(rel), &x) == 0 && x.st_size >= 4 * MIB + attempt * 100000)
				break;
			usleep(1000);
		}
		cr_assert(kill(mnt.daemon, SIGKILL) == 0);
		int st;
		cr_assert_eq(waitpid(w, &st, 0), w);
		for (int k = 0; k < 500 && !tl_mount_daemon_gone(&mnt); k++)
			usleep(10000);
		tl_mount_cleanup(&mnt);
		struct stat a, b;
		cr_assert(stat(S(rel), &a) == 0);
		diverged = stat(T(rel), &b) < 0 || a.st_size != b.st_size;
		if (diverged)
			cr_log_info("attempt %d: %s has %lld bytes on the source, %lld on the target",
				    attempt, rel, (long long)a.st_size, (long long)b.st_size);
		tl_mount(&env, &mnt, NULL);
	}
	tl_umount(&env, &mnt);
	struct tl_run r = tl_cmd(&env, "conflicts", NULL);
	cr_assert_eq(r.status, 0, "after the remount:\n%s", r.out);
	tl_run_free(&r);
	expect_state_current();
}

/* ================================================================ 4. conflicts */

static void reconcile_ok(void)
{
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
}

#define V_SRC "the source's version\n"
#define V_TGT "the target's version, a longer one\n"

/* doc.txt changed differently on both sides since the last sync. */
static void setup_conflict(void)
{
	setup_env();
	tl_write(env.src, "doc.txt", "original\n");
	tl_write(env.src, "keep.txt", "unrelated\n");
	tl_write(env.src, "sub/inner.txt", "inner original\n");
	reconcile_ok();
	tl_write(env.src, "doc.txt", V_SRC);
	tl_write(env.tgt, "doc.txt", V_TGT);
	tl_set_mtime(env.src, "doc.txt", T0);
	tl_set_mtime(env.tgt, "doc.txt", T0 + 10);
	tl_mount(&env, &mnt, NULL);
	struct tl_run r = tl_cmd(&env, "conflicts", NULL);
	cr_assert_eq(r.status, 1, "the mount's reconcile should have left doc.txt in conflict:\n%s",
		     r.out);
	cr_assert(strstr(r.out, "doc.txt"));
	tl_run_free(&r);
}

TestSuite(mount_conflict, .init = setup_conflict, .fini = teardown, .timeout = 60);

Test(mount_conflict, view_shows_both_versions)
{
	expect_names(mnt.dir, "doc.txt.conflict-source doc.txt.conflict-target keep.txt sub");
	struct stat st;
	cr_assert(lstat(M("doc.txt"), &st) < 0 && errno == ENOENT,
		  "the conflicted name itself should not show");
	char *s = tl_read(mnt.dir, "doc.txt.conflict-source"), *t = tl_read(mnt.dir, "doc.txt.conflict-target");
	cr_assert(s && t, "cannot read the conflict entries");
	cr_assert_str_eq(s, V_SRC);
	cr_assert_str_eq(t, V_TGT);
	free(s);
	free(t);
	cr_assert(stat(M("doc.txt.conflict-target"), &st) == 0);
	cr_assert_eq(st.st_size, (off_t)strlen(V_TGT));
	cr_assert_eq(st.st_mtim.tv_sec, T0 + 10);
	/* other names are not affected */
	cr_assert(lstat(M("keep.txt.conflict-source"), &st) < 0 && errno == ENOENT);
	expect_all_str("keep.txt", "unrelated\n");
	/* the partners are untouched */
	char *a = tl_read(env.src, "doc.txt"), *b = tl_read(env.tgt, "doc.txt");
	cr_assert_str_eq(a, V_SRC);
	cr_assert_str_eq(b, V_TGT);
	free(a);
	free(b);
	cr_assert(!tl_exists(env.src, "doc.txt.conflict-source") &&
		  !tl_exists(env.tgt, "doc.txt.conflict-target"));
	tl_umount(&env, &mnt);
	struct tl_run r = tl_cmd(&env, "conflicts", NULL);
	cr_assert_eq(r.status, 1, "the conflict should still be recorded");
	tl_run_free(&r);
}

static void expect_resolved(const char *name_content)
{
	expect_names(mnt.dir, "doc.txt keep.txt sub");
	expect_all_str("doc.txt", name_content);
	tl_umount(&env, &mnt);
	expect_no_conflicts();
	expect_sides_str("doc.txt", name_content);
	expect_state_current();
}

Test(mount_conflict, delete_source_entry_target_wins)
{
	cr_assert(unlink(M("doc.txt.conflict-source")) == 0, "%s", strerror(errno));
	expect_resolved(V_TGT);
}

Test(mount_conflict, delete_target_entry_source_wins)
{
	cr_assert(unlink(M("doc.txt.conflict-target")) == 0, "%s", strerror(errno));
	expect_resolved(V_SRC);
}

Test(mount_conflict, rename_target_entry_to_name_target_wins)
{
	cr_assert(rename(M("doc.txt.conflict-target"), M("doc.txt")) == 0, "%s", strerror(errno));
	expect_resolved(V_TGT);
}

Test(mount_conflict, rename_source_entry_to_name_source_wins)
{
	cr_assert(rename(M("doc.txt.conflict-source"), M("doc.txt")) == 0, "%s", strerror(errno));
	expect_resolved(V_SRC);
}

Test(mount_conflict, rename_source_entry_elsewhere_keeps_both)
{
	cr_assert(rename(M("doc.txt.conflict-source"), M("other.txt")) == 0, "%s", strerror(errno));
	expect_names(mnt.dir, "doc.txt keep.txt other.txt sub");
	expect_all_str("other.txt", V_SRC);
	expect_all_str("doc.txt", V_TGT);
	tl_umount(&env, &mnt);
	expect_no_conflicts();
	expect_sides_str("other.txt", V_SRC);
	expect_sides_str("doc.txt", V_TGT);
	expect_state_current();
}

/* README: writing to a conflict entry changes that side only. */
Test(mount_conflict, writing_to_an_entry_changes_that_side_only)
{
	write_str(M("doc.txt.conflict-target"), "the target, edited in the mount\n");
	char *s = tl_read(env.src, "doc.txt"), *t = tl_read(env.tgt, "doc.txt");
	cr_assert_str_eq(s, V_SRC);
	cr_assert_str_eq(t, "the target, edited in the mount\n");
	free(s);
	free(t);
	expect_names(mnt.dir, "doc.txt.conflict-source doc.txt.conflict-target keep.txt sub");
	s = tl_read(mnt.dir, "doc.txt.conflict-target");
	cr_assert_str_eq(s, "the target, edited in the mount\n");
	free(s);
	/* then resolved: that edited version wins */
	cr_assert(unlink(M("doc.txt.conflict-source")) == 0, "%s", strerror(errno));
	expect_resolved("the target, edited in the mount\n");
}

/*
 * README: a real file named NAME.conflict-source beside a conflicted NAME
 * keeps its name; the conflict entry is NAME.conflict-source~ instead, and
 * resolves like any other.
 */
Test(mount_conflict, real_file_named_like_a_conflict_entry)
{
	tl_write(env.src, "doc.txt.conflict-source", "a real file\n");
	tl_write(env.tgt, "doc.txt.conflict-source", "a real file\n");
	expect_names(mnt.dir, "doc.txt.conflict-source doc.txt.conflict-source~ "
		     "doc.txt.conflict-target keep.txt sub");
	char *s = tl_read(mnt.dir, "doc.txt.conflict-source");
	cr_assert_str_eq(s, "a real file\n", "the real file should keep its name");
	free(s);
	s = tl_read(mnt.dir, "doc.txt.conflict-source~");
	cr_assert_str_eq(s, V_SRC, "the conflict entry should give way");
	free(s);
	cr_assert(rename(M("doc.txt.conflict-source~"), M("doc.txt")) == 0, "%s", strerror(errno));
	expect_names(mnt.dir, "doc.txt doc.txt.conflict-source keep.txt sub");
	expect_all_str("doc.txt", V_SRC);
	expect_all_str("doc.txt.conflict-source", "a real file\n");
	tl_umount(&env, &mnt);
	expect_no_conflicts();
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);	/* records the real file */
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	expect_state_current();
}

/* Both names taken by real files on one side each: all four are shown; the
 * renamed fallback entry resolves the conflict for its side. */
Test(mount_conflict, real_files_with_both_entry_names)
{
	tl_write(env.src, "doc.txt.conflict-target", "real, source only\n");
	tl_write(env.tgt, "doc.txt.conflict-target~", "real, target only\n");
	expect_names(mnt.dir, "doc.txt.conflict-source doc.txt.conflict-target "
		     "doc.txt.conflict-target~ keep.txt sub");
	char *s = tl_read(mnt.dir, "doc.txt.conflict-target");
	cr_assert_str_eq(s, "real, source only\n");
	free(s);
	s = tl_read(mnt.dir, "doc.txt.conflict-target~");
	cr_assert_str_eq(s, "real, target only\n");
	free(s);
	/* the target's version has no free name; the source's still resolves */
	cr_assert(rename(M("doc.txt.conflict-source"), M("doc.txt")) == 0, "%s", strerror(errno));
	expect_names(mnt.dir, "doc.txt doc.txt.conflict-target doc.txt.conflict-target~ keep.txt sub");
	expect_all_str("doc.txt", V_SRC);
}

/* md.txt: modified on the source, deleted on the target; sub/dm.txt:
 * deleted on the source, modified on the target. */
static void setup_modified_deleted(void)
{
	setup_env();
	tl_write(env.src, "md.txt", "md original\n");
	tl_write(env.src, "sub/dm.txt", "dm original\n");
	tl_write(env.src, "keep.txt", "unrelated\n");
	reconcile_ok();
	tl_write(env.src, "md.txt", "md modified on the source\n");
	tl_rm(env.tgt, "md.txt");
	tl_rm(env.src, "sub/dm.txt");
	tl_write(env.tgt, "sub/dm.txt", "dm modified on the target\n");
	tl_mount(&env, &mnt, NULL);
	struct tl_run r = tl_cmd(&env, "conflicts", NULL);
	cr_assert_eq(r.status, 1, "md.txt and dm.txt should be in conflict:\n%s", r.out);
	tl_run_free(&r);
}

TestSuite(mount_deleted, .init = setup_modified_deleted, .fini = teardown, .timeout = 60);

Test(mount_deleted, modified_vs_deleted_shows_one_entry)
{
	expect_names(mnt.dir, "keep.txt md.txt.conflict-source sub");
	expect_names(M("sub"), "dm.txt.conflict-target");
	struct stat st;
	cr_assert(lstat(M("md.txt"), &st) < 0 && errno == ENOENT);
	cr_assert(lstat(M("md.txt.conflict-target"), &st) < 0 && errno == ENOENT,
		  "the deleted side's entry should not exist");
	cr_assert(lstat(M("sub/dm.txt.conflict-source"), &st) < 0 && errno == ENOENT);
	cr_assert(lstat(M("sub/dm.txt"), &st) < 0 && errno == ENOENT);
	char *s = tl_read(mnt.dir, "md.txt.conflict-source"), *t = tl_read(mnt.dir, "sub/dm.txt.conflict-target");
	cr_assert(s && t);
	cr_assert_str_eq(s, "md modified on the source\n");
	cr_assert_str_eq(t, "dm modified on the target\n");
	free(s);
	free(t);

	/* Deleting md.txt.conflict-source: the target (its deletion) wins. */
	cr_assert(unlink(M("md.txt.conflict-source")) == 0, "%s", strerror(errno));
	expect_absent("md.txt", 1);
	expect_absent("md.txt.conflict-source", 1);
	/* Renaming dm.txt.conflict-target to dm.txt: the target's version wins. */
	cr_assert(rename(M("sub/dm.txt.conflict-target"), M("sub/dm.txt")) == 0, "%s",
		  strerror(errno));
	expect_all_str("sub/dm.txt", "dm modified on the target\n");
	expect_names(mnt.dir, "keep.txt sub");
	expect_names(M("sub"), "dm.txt");
	tl_umount(&env, &mnt);
	expect_no_conflicts();
	expect_absent("md.txt", 0);
	expect_sides_str("sub/dm.txt", "dm modified on the target\n");
	expect_state_current();
}

/* ================================================================ 7. allow_other */

static void setup_allow_other(void)
{
	setup_env();
	/* the way to the mount point must be open to the other user */
	cr_assert(chmod(env.base, 0755) == 0);
	tl_write(env.src, "rootfile", "root's file\n");
	tl_mount(&env, &mnt, OPTS("-o", "allow_other"));
}

TestSuite(mount_other, .init = setup_allow_other, .fini = teardown, .timeout = 60);

/* For the checks run as another user: says what went wrong, returns 1. */
#define DENY(...) (snprintf(msg, len, __VA_ARGS__), 1)
/* call must fail with err; what names it. */
#define REFUSED(call, err, what)                                                     \
	do {                                                                         \
		int r_ = (call);                                                     \
		if (r_ == 0 || errno != (err))                                       \
			return DENY("%s: %s", what, r_ == 0 ? "allowed" : strerror(errno)); \
	} while (0)

typedef int (*check_fn)(const char *mntdir, char *msg, size_t len);

static int become_nobody(char *msg, size_t len)
{
	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		return DENY("cannot become %d: %s", NOBODY, strerror(errno));
	return 0;
}

static int become_root_without_file_caps(char *msg, size_t len)
{
	int r = tl_drop_file_caps();
	return r < 0 ? DENY("cannot drop capabilities: %s", strerror(-r)) : 0;
}

/* In a child made by become: fn(mntdir, msg, len); returns "" or what went
 * wrong (malloc'd). */
static char *in_child(int (*become)(char *msg, size_t len), check_fn fn, const char *mntdir)
{
	int pfd[2];
	cr_assert(pipe(pfd) == 0);
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		char msg[512] = "";
		close(pfd[0]);
		if (!become(msg, sizeof(msg))) {
			umask(022);
			fn(mntdir, msg, sizeof(msg));
		}
		if (write(pfd[1], msg, strlen(msg)) < 0)
			_exit(2);
		_exit(0);
	}
	close(pfd[1]);
	char *msg = calloc(1, 600);
	size_t n = 0;
	ssize_t r;
	while ((r = read(pfd[0], msg + n, 599 - n)) > 0)
		n += r;
	close(pfd[0]);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child failed: %d", st);
	return msg;
}

static char *as_nobody(check_fn fn, const char *mntdir)
{
	return in_child(become_nobody, fn, mntdir);
}

static char *as_owner_without_file_caps(check_fn fn, const char *mntdir)
{
	return in_child(become_root_without_file_caps, fn, mntdir);
}

static int nobody_in_allow_other(const char *mntdir, char *msg, size_t len)
{
	char p[4096];
	int fd;

	snprintf(p, sizeof(p), "%s/pub/by-nobody", mntdir);
	if (mkdir(p, 0755) < 0)
		return DENY("mkdir pub/by-nobody: %s", strerror(errno));
	snprintf(p, sizeof(p), "%s/pub/by-nobody.txt", mntdir);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0 || write(fd, "nobody's\n", 9) != 9 || close(fd) < 0)
		return DENY("create pub/by-nobody.txt: %s", strerror(errno));
	snprintf(p, sizeof(p), "%s/pub/by-nobody/inner.txt", mntdir);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || close(fd) < 0)
		return DENY("create pub/by-nobody/inner.txt: %s", strerror(errno));
	snprintf(p, sizeof(p), "%s/rootfile", mntdir);
	fd = open(p, O_WRONLY);
	if (fd >= 0 || errno != EACCES)
		return DENY("open rootfile for writing: %s", fd >= 0 ? "allowed" : strerror(errno));
	REFUSED(truncate(p, 0), EACCES, "truncate rootfile");
	REFUSED(chmod(p, 0666), EPERM, "chmod rootfile");
	fd = open(p, O_RDONLY);
	if (fd < 0)
		return DENY("open rootfile for reading: %s", strerror(errno));
	close(fd);
	REFUSED(unlink(p), EACCES, "unlink rootfile in a root-owned 0755 directory");
	snprintf(p, sizeof(p), "%s/not-mine.txt", mntdir);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0 || errno != EACCES)
		return DENY("create in the root-owned root: %s", fd >= 0 ? "allowed" : strerror(errno));
	return 0;
}

Test(mount_other, non_root_user_in_allow_other_mount)
{
	cr_assert(mkdir(M("pub"), 0777) == 0, "%s", strerror(errno));
	cr_assert(chmod(M("pub"), 01777) == 0, "%s", strerror(errno));
	struct stat st[3];
	lstat_all("pub", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert(S_ISDIR(st[i].st_mode) && (st[i].st_mode & 07777) == 01777,
			  "%s: pub has mode %o", side_name[i], st[i].st_mode);

	char *msg = as_nobody(nobody_in_allow_other, mnt.dir);
	cr_assert_str_empty(msg, "as uid %d: %s", NOBODY, msg);
	free(msg);

	const char *made[] = { "pub/by-nobody", "pub/by-nobody.txt", "pub/by-nobody/inner.txt" };
	for (size_t k = 0; k < 3; k++) {
		lstat_all(made[k], st, 1);
		for (int i = 0; i < 3; i++)
			cr_assert(st[i].st_uid == NOBODY && st[i].st_gid == NOBODY,
				  "%s: %s is owned by %u:%u, not %d:%d", side_name[i], made[k],
				  st[i].st_uid, st[i].st_gid, NOBODY, NOBODY);
	}
	lstat_all("pub/by-nobody", st, 0);
	cr_assert_eq(st[0].st_mode & 07777, 0755);
	cr_assert_eq(st[1].st_mode & 07777, 0755);
	lstat_all("pub/by-nobody/inner.txt", st, 0);
	cr_assert_eq(st[0].st_mode & 07777, 0600);
	cr_assert_eq(st[1].st_mode & 07777, 0600);
	expect_all_str("pub/by-nobody.txt", "nobody's\n");
	expect_all_str("rootfile", "root's file\n");
	lstat_all("rootfile", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert(st[i].st_uid == 0 && (st[i].st_mode & 07777) == 0644);
	finish();
}

static int nobody_in_setgid_dir(const char *mntdir, char *msg, size_t len)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/shared/file", mntdir);
	int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0664);
	if (fd < 0 || close(fd) < 0)
		return DENY("create shared/file: %s", strerror(errno));
	snprintf(p, sizeof(p), "%s/shared/dir", mntdir);
	if (mkdir(p, 0775) < 0)
		return DENY("mkdir shared/dir: %s", strerror(errno));
	return 0;
}

/* What a user makes in a set-group-ID directory takes the directory's
 * group (and a directory the set-group-ID bit), as without sbfs. */
Test(mount_other, setgid_directory_gives_its_group)
{
	cr_assert(mkdir(M("shared"), 0777) == 0, "%s", strerror(errno));
	cr_assert(chown(M("shared"), 0, 1234) == 0, "%s", strerror(errno));
	cr_assert(chmod(M("shared"), 02777) == 0, "%s", strerror(errno));
	char *msg = as_nobody(nobody_in_setgid_dir, mnt.dir);
	cr_assert_str_empty(msg, "as uid %d: %s", NOBODY, msg);
	free(msg);
	struct stat st[3];
	lstat_all("shared/file", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert(st[i].st_uid == NOBODY && st[i].st_gid == 1234,
			  "%s: shared/file is %u:%u, not %d:1234", side_name[i], st[i].st_uid,
			  st[i].st_gid, NOBODY);
	lstat_all("shared/dir", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert(st[i].st_uid == NOBODY && st[i].st_gid == 1234 &&
			  (st[i].st_mode & S_ISGID),
			  "%s: shared/dir is %u:%u, mode %o", side_name[i], st[i].st_uid,
			  st[i].st_gid, st[i].st_mode);
	finish();
}

/* In a child as uid/gid 65534: appends to rel opened with flags; 0 or errno. */
static int nobody_appends(const char *rel, int flags)
{
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
			_exit(100);
		int fd = open(M(rel), flags | O_APPEND);
		if (fd < 0 || write(fd, "more\n", 5) != 5 || close(fd) < 0)
			_exit(errno & 0x7f);
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) != 100, "cannot become %d", NOBODY);
	return WEXITSTATUS(st);
}

/*
 * A write by a user without CAP_FSETID drops set-user-ID and set-group-ID,
 * whether the kernel caches the file (read-write open) or not (write-only
 * open, which the mount serves uncached); a write by root keeps them.
 */
Test(mount_other, write_drops_setuid_like_the_kernel)
{
	const int flags[] = { O_WRONLY, O_RDWR };
	struct stat st[3];
	for (int k = 0; k < 2; k++) {
		tl_write(mnt.dir, "suid", "x\n");
		cr_assert(chmod(M("suid"), 06777) == 0, "%s", strerror(errno));
		cr_assert_eq(nobody_appends("suid", flags[k]), 0);
		lstat_all("suid", st, 1);
		for (int i = 0; i < 3; i++)
			cr_assert_eq(st[i].st_mode & 07777, 0777, "%s, %s open: mode %o",
				     side_name[i], k ? "read-write" : "write-only",
				     st[i].st_mode & 07777);
		expect_all_str("suid", "x\nmore\n");
	}
	int fd = open(M("suid"), O_WRONLY | O_APPEND);
	cr_assert(fchmod(fd, 04755) == 0 && write(fd, "root\n", 5) == 5 && close(fd) == 0);
	lstat_all("suid", st, 1);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(st[i].st_mode & 07777, 04755, "%s: root's write: mode %o",
			     side_name[i], st[i].st_mode & 07777);
	finish();
}

/* ================================================================ 7b. a user's own mount */
/*
 * A mount started without allow_other lets only its owner in and is
 * mounted without default_permissions: each request is carried out with
 * the owner's credentials and the partners check it. What the owner may do
 * in the view must be exactly what they may do in the partners. The owner
 * here is root without the capabilities that override file permissions
 * (this machine's /dev/fuse may be closed to other users): the mount and
 * the caller both lack them, as for a user's own mount.
 */
static void setup_user_mount(void)
{
	setup_env();
	for (int i = 0; i < 2; i++) {
		const char *root = i ? env.tgt : env.src;
		tl_write(root, "theirs", "their file\n");
		cr_assert(chown(P(root, "theirs"), NOBODY, NOBODY) == 0);
		tl_write(root, "ro.txt", "read-only\n");
		cr_assert(chmod(P(root, "ro.txt"), 0444) == 0);
		/* in sync already: the reconcile must not need to set times */
		tl_set_mtime(root, "theirs", 1700000000);
		tl_set_mtime(root, "ro.txt", 1700000000);
	}
	env.no_file_caps = 1;
	tl_mount(&env, &mnt, NULL);
}

TestSuite(mount_user, .init = setup_user_mount, .fini = teardown, .timeout = 60);

static int owner_in_own_mount(const char *mntdir, char *msg, size_t len)
{
	char p[4096];
	int fd;
	struct stat st;

	snprintf(p, sizeof(p), "%s/theirs", mntdir);
	if (access(p, R_OK) < 0)
		return DENY("access(theirs, R_OK): %s", strerror(errno));
	REFUSED(access(p, W_OK), EACCES, "access(theirs, W_OK)");
	REFUSED(access(p, X_OK), EACCES, "access(theirs, X_OK)");
	fd = open(p, O_WRONLY);
	if (fd >= 0 || errno != EACCES)
		return DENY("open theirs for writing: %s", fd >= 0 ? "allowed" : strerror(errno));
	REFUSED(truncate(p, 0), EACCES, "truncate theirs");
	REFUSED(chmod(p, 0666), EPERM, "chmod theirs");
	REFUSED(chown(p, 0, 0), EPERM, "chown theirs");
	struct timespec ts[2] = { { 0, UTIME_OMIT }, { 1000, 0 } };
	REFUSED(utimensat(AT_FDCWD, p, ts, 0), EPERM, "set theirs' mtime");

	snprintf(p, sizeof(p), "%s/ro.txt", mntdir);
	REFUSED(access(p, W_OK), EACCES, "access(ro.txt, W_OK)");
	fd = open(p, O_WRONLY | O_APPEND);
	if (fd >= 0 || errno != EACCES)
		return DENY("open 0444 ro.txt for writing: %s", fd >= 0 ? "allowed" : strerror(errno));
	if (chmod(p, 0644) < 0)
		return DENY("chmod ro.txt as its owner: %s", strerror(errno));
	fd = open(p, O_WRONLY | O_APPEND);
	if (fd < 0 || write(fd, "more\n", 5) != 5 || close(fd) < 0)
		return DENY("append to ro.txt after chmod: %s", strerror(errno));

	snprintf(p, sizeof(p), "%s/closed/secret", mntdir);
	REFUSED(stat(p, &st), EACCES, "stat closed/secret");
	snprintf(p, sizeof(p), "%s/closed", mntdir);
	DIR *d = opendir(p);
	if (d || errno != EACCES)
		return DENY("opendir closed: %s", d ? "allowed" : strerror(errno));
	REFUSED(chdir(p), EACCES, "chdir closed");
	REFUSED(access(p, X_OK), EACCES, "access(closed, X_OK)");

	snprintf(p, sizeof(p), "%s/mine.txt", mntdir);
	fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, "mine\n", 5) != 5 || close(fd) < 0)
		return DENY("create mine.txt: %s", strerror(errno));
	if (access(p, R_OK | W_OK) < 0)
		return DENY("access(mine.txt, R_OK|W_OK): %s", strerror(errno));
	return 0;
}

Test(mount_user, the_owner_has_the_rights_they_have_in_the_partners)
{
	/* made outside the mount after it started: the owner could not read
	 * it to reconcile it */
	for (int i = 0; i < 2; i++) {
		const char *root = i ? env.tgt : env.src;
		tl_write(root, "closed/secret", "secret\n");
		cr_assert(chown(P(root, "closed"), NOBODY, NOBODY) == 0);
		cr_assert(chmod(P(root, "closed"), 0700) == 0);
	}
	char *msg = as_owner_without_file_caps(owner_in_own_mount, mnt.dir);
	cr_assert_str_empty(msg, "%s", msg);
	free(msg);

	struct stat st[3];
	expect_all_str("theirs", "their file\n");
	lstat_all("theirs", st, 0);
	for (int i = 0; i < 2; i++)
		cr_assert(st[i].st_uid == NOBODY && (st[i].st_mode & 07777) == 0644,
			  "%s: theirs is %u's, mode %o", side_name[i], st[i].st_uid, st[i].st_mode);
	expect_all_str("ro.txt", "read-only\nmore\n");
	lstat_all("ro.txt", st, 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(st[i].st_mode & 07777, 0644, "%s: ro.txt mode %o", side_name[i],
			     st[i].st_mode);
	expect_all_str("mine.txt", "mine\n");
	lstat_all("mine.txt", st, 0);
	for (int i = 0; i < 2; i++)
		cr_assert_eq(st[i].st_mode & 07777, 0600, "%s: mine.txt mode %o", side_name[i],
			     st[i].st_mode);
	tl_rm(env.src, "closed");
	tl_rm(env.tgt, "closed");
	finish();
}

/* ================================================================ 5. bad input */

static void teardown_input(void)
{
	/* should any of the refused mounts have happened after all */
	if (env.base) {
		for (int k = 0; k < 3 && tl_mounted_under(env.base); k++) {
			const char *dirs[] = { env.base, S("mnt"), T("mnt"), P(env.base, "mnt") };
			for (size_t i = 0; i < 4; i++) {
				if (!tl_mounted(dirs[i]))
					continue;
				struct tl_proc p;
				tl_spawn_ex(&p, NULL, "fusermount3", 0, OPTS("-u", "-z", dirs[i]));
				struct tl_run r = tl_proc_wait(&p, 0);
				tl_run_free(&r);
			}
		}
	}
	tl_env_fini(&env);
}

TestSuite(mount_input, .init = setup_env, .fini = teardown_input, .timeout = 60);

static void expect_refused(struct tl_run *r, const char *what, const char *mp)
{
	cr_assert_eq(r->status, 2, "%s: exit %d, 2 expected:\n%s%s", what, r->status, r->out, r->err);
	cr_assert(r->errlen > 0, "%s: no error message", what);
	cr_assert(!tl_mounted_under(env.base), "%s: something got mounted", what);
	if (mp)
		cr_assert(!tl_mounted(mp), "%s: %s got mounted", what, mp);
	tl_run_free(r);
}

Test(mount_input, mount_point_inside_a_partner)
{
	tl_write(env.src, "a.txt", "a\n");
	tl_mkdir(env.src, "mnt");
	tl_mkdir(env.tgt, "deeper/mnt");
	struct tl_run r = tl_mount_run(&env, S("mnt"), NULL);
	cr_assert(strstr(r.err, "must not contain"), "%s", r.err);
	expect_refused(&r, "mount point inside the source", S("mnt"));
	r = tl_mount_run(&env, T("deeper/mnt"), NULL);
	expect_refused(&r, "mount point inside the target", T("deeper/mnt"));
	/* the mount point given as the source itself */
	r = tl_mount_run(&env, env.src, NULL);
	expect_refused(&r, "mount point = the source", env.src);
	/* refused before the reconcile: nothing was copied */
	cr_assert(!tl_exists(env.tgt, "a.txt") && !tl_exists(env.tgt, "mnt"),
		  "a refused mount synchronised the partners");
	cr_assert(!tl_exists(env.src, "deeper"));
}

Test(mount_input, partner_inside_the_mount_point)
{
	tl_write(env.src, "a.txt", "a\n");
	struct tl_run r = tl_mount_run(&env, env.base, NULL);
	cr_assert(strstr(r.err, "must not contain"), "%s", r.err);
	expect_refused(&r, "mount point containing both partners", env.base);
	/* the root directory contains everything */
	r = tl_mount_run(&env, "/", NULL);
	expect_refused(&r, "mount point /", NULL);
	cr_assert(!tl_exists(env.tgt, "a.txt"), "a refused mount synchronised the partners");
}

Test(mount_input, missing_or_bad_arguments)
{
	tl_mkdir(env.base, "mnt");
	const char *mp = P(env.base, "mnt");
	char *missing = tl_join(env.base, "no-such-source");
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("mount", missing, env.tgt, mp));
	expect_refused(&r, "missing source", mp);
	r = tl_sbfs_run(&env, NULL, OPTS("mount", env.src, missing, mp));
	expect_refused(&r, "missing target", mp);
	r = tl_mount_run(&env, missing, NULL);
	expect_refused(&r, "missing mount point", NULL);
	tl_write(env.base, "a-file", "x");
	r = tl_mount_run(&env, P(env.base, "a-file"), NULL);
	expect_refused(&r, "mount point is a file", NULL);
	r = tl_sbfs_run(&env, NULL, OPTS("mount", env.src, env.tgt));
	expect_refused(&r, "two operands", NULL);
	r = tl_sbfs_run(&env, NULL, OPTS("mount", env.src, env.src, mp));
	expect_refused(&r, "source = target", mp);
	r = tl_mount_run(&env, mp, OPTS("-o", "no_such_fuse_option_xyz"));
	expect_refused(&r, "unknown mount option", mp);
	free(missing);
	/* nothing holds the partnership: a reconcile runs at once */
	tl_write(env.src, "after.txt", "after\n");
	r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	cr_assert(!strstr(r.err, "waiting"), "a refused mount left a process holding the lock");
	tl_run_free(&r);
}

/* ================================================================ 4b. a directory against a file */

#define X_TGT "the target's x, edited while the source made it a directory\n"
#define X_IN "inside the source's directory\n"
#define X_DEEP "deeper in the source's directory\n"

/*
 * x, a synced file, became a directory (with files in it) on the source
 * and was edited on the target: changed on both sides since the last sync,
 * a file against a directory, so the mount's reconcile leaves it a
 * conflict (README).
 */
static void setup_dir_file_conflict(void)
{
	setup_env();
	tl_write(env.src, "x", "x original\n");
	tl_write(env.src, "keep.txt", "unrelated\n");
	reconcile_ok();
	tl_rm(env.src, "x");
	tl_write(env.src, "x/inner.txt", X_IN);
	tl_write(env.src, "x/deeper/more.txt", X_DEEP);
	tl_write(env.tgt, "x", X_TGT);
	tl_mount(&env, &mnt, NULL);
	struct tl_run r = tl_cmd(&env, "conflicts", NULL);
	cr_assert_eq(r.status, 1, "the mount's reconcile should have left x in conflict:\n%s%s",
		     r.out, r.err);
	cr_assert(strstr(r.out, "x"), "%s", r.out);
	tl_run_free(&r);
}

TestSuite(mount_dirfile, .init = setup_dir_file_conflict, .fini = teardown, .timeout = 60);

static void expect_type(const char *root, const char *rel, mode_t type, const char *who)
{
	struct stat st;
	cr_assert(lstat(P(root, rel), &st) == 0, "%s: lstat %s: %s", who, rel, strerror(errno));
	cr_assert_eq(st.st_mode & S_IFMT, type, "%s: %s is of type %o, %o expected", who, rel,
		     st.st_mode & S_IFMT, type);
}

/* x is the source's directory, with its files, on both sides (and in the
 * view, while mounted). */
static void expect_x_is_the_directory(int with_mount)
{
	const char *roots[3] = { env.src, env.tgt, mnt.dir };
	for (int i = 0; i < 2 + !!with_mount; i++) {
		expect_type(roots[i], "x", S_IFDIR, side_name[i]);
		expect_names(P(roots[i], "x"), "deeper inner.txt");
		expect_names(P(roots[i], "x/deeper"), "more.txt");
	}
	expect_in(roots, 2 + !!with_mount, "x/inner.txt", X_IN, strlen(X_IN));
	expect_in(roots, 2 + !!with_mount, "x/deeper/more.txt", X_DEEP, strlen(X_DEEP));
}

/* x is the target's file on both sides (and in the view). */
static void expect_x_is_the_file(int with_mount)
{
	const char *roots[3] = { env.src, env.tgt, mnt.dir };
	for (int i = 0; i < 2 + !!with_mount; i++)
		expect_type(roots[i], "x", S_IFREG, side_name[i]);
	expect_in(roots, 2 + !!with_mount, "x", X_TGT, strlen(X_TGT));
}

/* The conflict is gone from the view and from the state; x is whole. */
static void expect_dirfile_resolved(int dir_won)
{
	expect_names(mnt.dir, "keep.txt x");
	if (dir_won)
		expect_x_is_the_directory(1);
	else
		expect_x_is_the_file(1);
	tl_umount(&env, &mnt);
	expect_no_conflicts();
	if (dir_won)
		expect_x_is_the_directory(0);
	else
		expect_x_is_the_file(0);
	cr_assert(!tl_exists(env.src, "x.conflict-source") && !tl_exists(env.tgt, "x.conflict-source") &&
		  !tl_exists(env.src, "x.conflict-target") && !tl_exists(env.tgt, "x.conflict-target"),
		  "a conflict entry's name reached a partner");
	expect_state_current();
}

Test(mount_dirfile, view_shows_the_directory_and_the_file)
{
	expect_names(mnt.dir, "keep.txt x.conflict-source x.conflict-target");
	struct stat st;
	cr_assert(lstat(M("x"), &st) < 0 && errno == ENOENT,
		  "the conflicted name itself should not show");
	/* each entry has its side's type */
	expect_type(mnt.dir, "x.conflict-source", S_IFDIR, "mount");
	expect_type(mnt.dir, "x.conflict-target", S_IFREG, "mount");
	/* the file entry reads as the target's file */
	cr_assert(stat(M("x.conflict-target"), &st) == 0, "%s", strerror(errno));
	cr_assert_eq(st.st_size, (off_t)strlen(X_TGT));
	char *t = tl_read(mnt.dir, "x.conflict-target");
	cr_assert(t, "cannot read x.conflict-target: %s", strerror(errno));
	cr_assert_str_eq(t, X_TGT);
	free(t);
	/* the directory entry lists the source's directory */
	expect_names(M("x.conflict-source"), "deeper inner.txt");
	expect_names(M("x.conflict-source/deeper"), "more.txt");
	char *s = tl_read(mnt.dir, "x.conflict-source/inner.txt");
	cr_assert(s, "cannot read x.conflict-source/inner.txt: %s", strerror(errno));
	cr_assert_str_eq(s, X_IN);
	free(s);
	s = tl_read(mnt.dir, "x.conflict-source/deeper/more.txt");
	cr_assert(s, "cannot read x.conflict-source/deeper/more.txt: %s", strerror(errno));
	cr_assert_str_eq(s, X_DEEP);
	free(s);
	cr_assert(lstat(M("x.conflict-source/nothing"), &st) < 0 && errno == ENOENT);
	cr_assert(lstat(M("x.conflict-target/inner.txt"), &st) < 0 && errno == ENOTDIR,
		  "under the file entry: %s", strerror(errno));
	/* the partners are untouched */
	expect_type(env.src, "x", S_IFDIR, "source");
	expect_type(env.tgt, "x", S_IFREG, "target");
	char *a = tl_read(env.src, "x/inner.txt"), *b = tl_read(env.tgt, "x");
	cr_assert(a && b);
	cr_assert_str_eq(a, X_IN);
	cr_assert_str_eq(b, X_TGT);
	free(a);
	free(b);
	tl_umount(&env, &mnt);
	struct tl_run r = tl_cmd(&env, "conflicts", NULL);
	cr_assert_eq(r.status, 1, "the conflict should still be recorded:\n%s%s", r.out, r.err);
	tl_run_free(&r);
}

/* rm -rf of the directory entry: the target (its file) wins. */
Test(mount_dirfile, rm_rf_directory_entry_target_wins)
{
	struct tl_proc p;
	tl_spawn_ex(&p, NULL, "rm", 0, OPTS("-rf", M("x.conflict-source")));
	struct tl_run r = tl_proc_wait(&p, 0);
	cr_assert_eq(r.status, 0, "rm -rf MNT/x.conflict-source: exit %d: %s", r.status, r.err);
	tl_run_free(&r);
	expect_dirfile_resolved(0);
}

/* unlink of the file entry: the source (its directory) wins. */
Test(mount_dirfile, unlink_file_entry_source_wins)
{
	cr_assert(unlink(M("x.conflict-target")) == 0, "%s", strerror(errno));
	expect_dirfile_resolved(1);
}

Test(mount_dirfile, rename_file_entry_to_name_target_wins)
{
	cr_assert(rename(M("x.conflict-target"), M("x")) == 0, "%s", strerror(errno));
	expect_dirfile_resolved(0);
}

Test(mount_dirfile, rename_directory_entry_to_name_source_wins)
{
	cr_assert(rename(M("x.conflict-source"), M("x")) == 0, "%s", strerror(errno));
	expect_dirfile_resolved(1);
}

/* ================================================================ 3b. reconcile with writes going on */

#define RW_FILES 200		/* at least this many files are written */
#define RW_MAXFILES 20000	/* and the writer stops here in any case */
#define RW_MAX 24000
#define RW_RUNS 4

/* File i's content (deterministic, 1000..RW_MAX-1 bytes); its length. */
static size_t rw_content(int i, unsigned char *buf)
{
	size_t len = 1000 + (size_t)i * 7919 % (RW_MAX - 1000);
	uint64_t x = 0x9E3779B97F4A7C15ULL * (uint64_t)(i + 7);
	for (size_t k = 0; k < len; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		buf[k] = (unsigned char)x;
	}
	return len;
}

static int rw_line(int i, char *line, size_t size)
{
	return snprintf(line, size, "file %05d written\n", i);
}

/*
 * The writer (a child process): writes rw/f00000... through the mount, each
 * in several requests, and appends a line for each to rw/log; reports each
 * number on fd once both are closed. Goes on until it has written
 * RW_FILES files and stop is closed, so that every reconcile the parent
 * runs meets writes in flight. Exits 0, or 1 with the failure on stderr.
 */
static void rw_writer(const char *dir, int fd, int stop)
{
	unsigned char *buf = malloc(RW_MAX);
	char path[4096], line[64];
	for (int i = 0; i < RW_MAXFILES; i++) {
		struct pollfd pf = { stop, POLLIN, 0 };
		if (i >= RW_FILES && poll(&pf, 1, 0) > 0)
			break;
		size_t len = rw_content(i, buf);
		snprintf(path, sizeof(path), "%s/rw/f%05d", dir, i);
		int f = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (f < 0)
			goto fail;
		for (size_t off = 0; off < len;) {
			size_t n = len - off < 4096 ? len - off : 4096;
			ssize_t w = write(f, buf + off, n);
			if (w <= 0)
				goto fail;
			off += w;
		}
		if (close(f) < 0)
			goto fail;
		snprintf(path, sizeof(path), "%s/rw/log", dir);
		f = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		int n = rw_line(i, line, sizeof(line));
		if (f < 0 || write(f, line, n) != n || close(f) < 0)
			goto fail;
		if (write(fd, &i, sizeof(i)) != sizeof(i))
			goto fail;
	}
	free(buf);
	_exit(0);
fail:
	fprintf(stderr, "the writer: %s: %s\n", path, strerror(errno));
	free(buf);
	_exit(1);
}

/* Reads the writer's reports so far (waiting up to ms for the first);
 * returns how many files it has closed, *eof once it is gone. */
static int rw_progress(int fd, int ms, int *done, int *eof)
{
	struct pollfd pf = { fd, POLLIN, 0 };
	int i;
	while (!*eof && poll(&pf, 1, ms) > 0) {
		ssize_t n = read(fd, &i, sizeof(i));
		if (n <= 0) {
			*eof = 1;
			break;
		}
		cr_assert_eq(n, (ssize_t)sizeof(i));
		cr_assert_eq(i, *done, "the writer reported file %d after %d files", i, *done);
		(*done)++;
		ms = 0;
	}
	return *done;
}

/*
 * README: `sbfs reconcile MOUNTPOINT` is carried out by the mount, with
 * mount traffic held off meanwhile. Here a writer keeps creating and
 * appending through the mount while reconciles run, each carrying changes
 * made on the target directly: nothing the writer wrote is lost or torn,
 * no conflict appears, and the state is current afterwards.
 */
Test(mount, reconcile_while_mounted_with_writes_going_on)
{
	cr_assert(mkdir(M("rw"), 0755) == 0, "%s", strerror(errno));
	int pfd[2], sfd[2];
	cr_assert(pipe(pfd) == 0 && pipe(sfd) == 0);
	fflush(NULL);
	pid_t w = fork();
	cr_assert(w >= 0);
	if (w == 0) {
		close(pfd[0]);
		close(sfd[1]);
		rw_writer(mnt.dir, pfd[1], sfd[0]);
	}
	close(pfd[1]);
	close(sfd[0]);
	int done = 0, eof = 0;
	/* under way first */
	while (!eof && done < 10)
		rw_progress(pfd[0], 10000, &done, &eof);
	cr_assert(!eof, "the writer stopped after %d files", done);

	int first = -1;
	for (int k = 0; k < RW_RUNS; k++) {
		char rel[64], want[128];
		snprintf(rel, sizeof(rel), "outside/o%d.txt", k);
		snprintf(want, sizeof(want), "made on the target directly before run %d\n", k);
		tl_write(env.tgt, rel, want);
		char edit[128];
		snprintf(edit, sizeof(edit), "edited on the target directly before run %d\n", k);
		tl_write(env.tgt, "dir/t.txt", edit);
		if (k == 1)
			tl_rm(env.tgt, "only-tgt.txt");
		int before = rw_progress(pfd[0], 0, &done, &eof);
		if (first < 0)
			first = before;
		struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("reconcile", mnt.dir));
		cr_assert_eq(r.status, 0, "sbfs reconcile MNT #%d, the writer at file %d: exit %d\n%s%s",
			     k, before, r.status, r.out, r.err);
		tl_run_free(&r);
		int after = rw_progress(pfd[0], 0, &done, &eof);
		/* it cannot have stopped: stop is still open */
		cr_assert(!eof, "the writer died during reconcile #%d (after %d files)", k, after);
		/* carried, and shown in the mount at once */
		expect_all_str(rel, want);
		expect_all_str("dir/t.txt", edit);
		if (k >= 1)
			expect_absent("only-tgt.txt", 1);
		/* the writer gets some time between runs */
		rw_progress(pfd[0], 50, &done, &eof);
	}
	/* the writes went on between and during the runs, not only after */
	cr_assert(done > first, "the writer made no progress during the reconciles (%d files)",
		  done);
	cr_log_info("the writer closed files %d to %d during %d reconciles", first, done - 1,
		    RW_RUNS);

	/* let it finish */
	close(sfd[1]);
	while (!eof)
		rw_progress(pfd[0], 30000, &done, &eof);
	close(pfd[0]);
	int st;
	cr_assert_eq(waitpid(w, &st, 0), w);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the writer failed (status %d) after %d files",
		  st, done);
	cr_assert(done >= RW_FILES, "the writer wrote only %d files", done);

	unsigned char *buf = malloc(RW_MAX);
	size_t cap = (size_t)done * 32 + 1, len = 0;
	char *log = malloc(cap);
	char rel[64];
	for (int i = 0; i < done; i++) {
		snprintf(rel, sizeof(rel), "rw/f%05d", i);
		size_t n = rw_content(i, buf);
		expect_all(rel, buf, n);
		len += rw_line(i, log + len, cap - len);
	}
	expect_all("rw/log", log, len);
	char *names_src = names(S("rw")), *names_tgt = names(T("rw"));
	cr_assert_str_eq(names_src, names_tgt);
	free(names_src);
	free(names_tgt);
	cr_assert_eq(tl_count(S("rw")), (size_t)done + 1, "rw holds %zu entries, %d files and log expected",
		     tl_count(S("rw")), done);

	tl_umount(&env, &mnt);
	expect_no_conflicts();
	for (int i = 0; i < done; i++) {
		snprintf(rel, sizeof(rel), "rw/f%05d", i);
		size_t n = rw_content(i, buf);
		const char *roots[2] = { env.src, env.tgt };
		expect_in(roots, 2, rel, buf, n);
	}
	const char *roots[2] = { env.src, env.tgt };
	expect_in(roots, 2, "rw/log", log, len);
	expect_sides_str("dir/t.txt", "edited on the target directly before run 3\n");
	free(buf);
	free(log);
	expect_state_current();
}

/* ================================================================ 2b. hard links seen from the other name */

static nlink_t nlink_of(const char *path)
{
	struct stat st;
	cr_assert(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
	return st.st_nlink;
}

/*
 * Each name of a hard-linked file is its own node to the kernel (libfuse's
 * path-based nodes), with its own cached attributes: a link or an unlink
 * through one name must still show the new count under the other at once,
 * not after the attribute timeout (fs/links.c).
 */
Test(mount, hard_link_count_seen_on_the_other_name)
{
	write_str(M("a"), "linked\n");
	/* cached: looked up and stat'ed before the link */
	cr_assert_eq(nlink_of(M("a")), 1);
	cr_assert_eq(nlink_of(M("a")), 1);
	cr_assert(link(M("a"), M("b")) == 0, "link: %s", strerror(errno));
	cr_assert_eq(nlink_of(S("a")), 2);
	cr_assert_eq(nlink_of(T("a")), 2);
	cr_assert_eq(nlink_of(M("b")), 2, "the new name's link count");
	nlink_t n = nlink_of(M("a"));
	cr_assert_eq(n, 2, "stat(a) right after link(a, b): st_nlink %lu, 2 expected",
		     (unsigned long)n);
	cr_assert(unlink(M("b")) == 0, "unlink: %s", strerror(errno));
	cr_assert_eq(nlink_of(S("a")), 1);
	cr_assert_eq(nlink_of(T("a")), 1);
	n = nlink_of(M("a"));
	cr_assert_eq(n, 1, "stat(a) right after unlink(b): st_nlink %lu, 1 expected",
		     (unsigned long)n);
	expect_all_str("a", "linked\n");
	expect_absent("b", 1);
	/* Not strict: unlinking b moved a's ctime, and the mount does not know
	 * a is b's other name, so a's record no longer vouches for it (never
	 * the other way round): the next reconcile hashes a once. */
	tl_umount(&env, &mnt);
	expect_state_ok(0);
}
