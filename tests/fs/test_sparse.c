/*
 * Sparse files stay sparse (README, Safety: "holes are kept"): a file with
 * a few data blocks and large holes, copied by reconcile or through the
 * mount, takes about as much space on the other side as on its own, reads
 * the same, and the state records it in sync (`sbfs status` exits 0, also
 * once the fingerprints moved and the files are hashed again).
 *
 * Apparent sizes are a few hundred MiB (holes cost neither space nor much
 * time); a dense copy would allocate all of it, which is what fails here.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define MIB (1024 * 1024)
#define SIZE (256LL * MIB)
#define BLOCK (64 * 1024)
/* More than the data written and what a file system may round it up to,
 * far less than a dense copy. */
#define MAX_ALLOC (4LL * MIB)

static struct tl_env env;
static struct tl_mount mnt;

#define S(rel) tl_at(env.src, rel)
#define T(rel) tl_at(env.tgt, rel)
#define M(rel) tl_at(mnt.dir, rel)

/* A BLOCK of bytes that depend on seed and offset, never all zero. */
static void pattern(unsigned char *b, unsigned seed, long long off)
{
	for (int i = 0; i < BLOCK; i++)
		b[i] = (unsigned char)(seed * 131 + (off >> 16) * 7 + i * 13 + 1) | 1;
}

static void pwrite_block(int fd, unsigned seed, long long off)
{
	unsigned char b[BLOCK];
	pattern(b, seed, off);
	cr_assert_eq(pwrite(fd, b, BLOCK, off), BLOCK, "pwrite at %lld: %s", off, strerror(errno));
}

/*
 * path becomes SIZE bytes: data at the start, in the middle and 2 MiB
 * before the end (so the file ends in a hole), and, allocated but all
 * zeros, a block after the first.
 */
static void make_sparse(const char *path, unsigned seed)
{
	static const unsigned char zeros[BLOCK];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	pwrite_block(fd, seed, 0);
	cr_assert_eq(pwrite(fd, zeros, BLOCK, 4 * BLOCK), BLOCK);
	pwrite_block(fd, seed, SIZE / 2 + 12345);
	pwrite_block(fd, seed, SIZE - 2 * MIB);
	cr_assert(ftruncate(fd, SIZE) == 0, "ftruncate %s: %s", path, strerror(errno));
	cr_assert(close(fd) == 0);
}

static long long allocated(const char *path)
{
	struct stat st;
	cr_assert(stat(path, &st) == 0, "stat %s: %s", path, strerror(errno));
	return (long long)st.st_blocks * 512;
}

/* copy has orig's size and content, and few more blocks than it. */
static void expect_sparse_copy(const char *orig, const char *copy)
{
	struct stat so, sc;
	cr_assert(stat(orig, &so) == 0 && stat(copy, &sc) == 0, "stat %s, %s: %s", orig, copy,
		  strerror(errno));
	cr_assert_eq(sc.st_size, so.st_size, "%s: %lld bytes, %s has %lld", copy,
		     (long long)sc.st_size, orig, (long long)so.st_size);
	long long a = allocated(copy);
	cr_assert(a <= MAX_ALLOC, "%s is dense: %lld bytes allocated for %lld (%s: %lld)", copy, a,
		  (long long)sc.st_size, orig, allocated(orig));
	int fo = open(orig, O_RDONLY | O_CLOEXEC), fc = open(copy, O_RDONLY | O_CLOEXEC);
	cr_assert(fo >= 0 && fc >= 0, "open: %s", strerror(errno));
	char *bo = malloc(MIB), *bc = malloc(MIB);
	for (off_t off = 0;; off += MIB) {
		ssize_t no = pread(fo, bo, MIB, off), nc = pread(fc, bc, MIB, off);
		cr_assert(no == nc && no >= 0 && !memcmp(bo, bc, no),
			  "%s and %s differ in the MiB at %lld", orig, copy, (long long)off);
		if (no == 0)
			break;
	}
	free(bo);
	free(bc);
	close(fo);
	close(fc);
}

static void expect_status_clean(const char *when)
{
	struct tl_run r = tl_cmd(&env, "status", NULL);
	cr_assert_eq(r.status, 0, "sbfs status %s: exit %d:\n%s%s", when, r.status, r.out, r.err);
	tl_run_free(&r);
}

/* In sync, also once every file's ctime moved on the target, so that its
 * files are hashed again (holes and all) and compared with the record. */
static void expect_in_sync(void)
{
	char *why;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "the partners differ: %s", why);
	expect_status_clean("after the copy");
	const char *names[] = { "a.img", "b.img", "c.img", "d.img", "e.img", "f.img" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct stat st;
		if (stat(T(names[i]), &st) != 0)
			continue;
		struct timespec t[2] = { st.st_atim, { 0, UTIME_OMIT } };
		cr_assert(utimensat(AT_FDCWD, T(names[i]), t, 0) == 0, "%s", strerror(errno));
	}
	expect_status_clean("after moving the target's ctimes (a wrong recorded hash?)");
}

static void reconcile_ok(void)
{
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "sbfs reconcile: exit %d:\n%s%s", r.status, r.out, r.err);
	tl_run_free(&r);
}

/* ================================================================ reconcile */

static void setup_env(void)
{
	tl_env_init(&env);
}

static void teardown_env(void)
{
	tl_env_fini(&env);
}

TestSuite(sparse, .init = setup_env, .fini = teardown_env, .timeout = 60);

/* Copies both ways, a file that is one hole, then an update in place. */
Test(sparse, reconcile_keeps_holes)
{
	make_sparse(S("a.img"), 1);
	make_sparse(T("b.img"), 2);
	int fd = open(S("c.img"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	cr_assert(fd >= 0 && ftruncate(fd, SIZE) == 0 && close(fd) == 0, "%s", strerror(errno));
	reconcile_ok();
	expect_sparse_copy(S("a.img"), T("a.img"));
	expect_sparse_copy(T("b.img"), S("b.img"));
	expect_sparse_copy(S("c.img"), T("c.img"));
	expect_in_sync();

	/* Same size, one more block in a hole: the target's version is replaced. */
	fd = open(S("a.img"), O_WRONLY | O_CLOEXEC);
	cr_assert(fd >= 0, "%s", strerror(errno));
	pwrite_block(fd, 3, SIZE / 4);
	cr_assert(close(fd) == 0);
	reconcile_ok();
	expect_sparse_copy(S("a.img"), T("a.img"));
	expect_in_sync();
}

/* ================================================================ the mount */

static void setup_mounted(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	make_sparse(S("a.img"), 1);
	tl_mount(&env, &mnt, NULL);
}

static void teardown_mounted(void)
{
	tl_mount_cleanup(&mnt);
	tl_env_fini(&env);
}

static void finish(void)
{
	tl_umount(&env, &mnt);
	expect_in_sync();
}

TestSuite(sparse_mount, .init = setup_mounted, .fini = teardown_mounted, .timeout = 60);

Test(sparse_mount, initial_reconcile_keeps_holes)
{
	expect_sparse_copy(S("a.img"), T("a.img"));
	finish();
}

static void copy_range(const char *from, const char *to, int oflags, loff_t off_in,
		       loff_t off_out, size_t len)
{
	int in = open(from, O_RDONLY | O_CLOEXEC), out = open(to, O_WRONLY | O_CLOEXEC | oflags, 0644);
	cr_assert(in >= 0 && out >= 0, "open %s, %s: %s", from, to, strerror(errno));
	size_t done = 0;
	while (done < len) {
		ssize_t n = copy_file_range(in, &off_in, out, &off_out, len - done, 0);
		cr_assert(n > 0, "copy_file_range after %zu bytes: %s", done,
			  n < 0 ? strerror(errno) : "end of file");
		done += n;
	}
	cr_assert(close(out) == 0 && close(in) == 0);
}

/* What cp does between two files of the mount: the daemon copies on each
 * side in the kernel, which on ext4 writes every hole out as zeros. */
Test(sparse_mount, copy_file_range_keeps_holes)
{
	copy_range(M("a.img"), M("b.img"), O_CREAT | O_EXCL, 0, 0, SIZE);
	expect_sparse_copy(S("a.img"), S("b.img"));
	expect_sparse_copy(S("a.img"), T("b.img"));

	/* A range that is mostly hole, copied over data: it reads as zeros. */
	make_sparse(M("c.img"), 4);
	copy_range(M("c.img"), M("d.img"), O_CREAT | O_EXCL, 0, 0, SIZE);
	int fd = open(M("d.img"), O_WRONLY | O_CLOEXEC);
	cr_assert(fd >= 0, "%s", strerror(errno));
	for (long long off = BLOCK; off < 8 * MIB; off += BLOCK)
		pwrite_block(fd, 5, off);
	cr_assert(close(fd) == 0);
	copy_range(M("c.img"), M("d.img"), 0, BLOCK / 2, BLOCK / 2, 8 * MIB);
	expect_sparse_copy(S("c.img"), S("d.img"));
	expect_sparse_copy(S("c.img"), T("d.img"));
	finish();
}

/* cp --sparse=always writes the data only and truncates to the size. */
Test(sparse_mount, cp_sparse_into_the_mount)
{
	make_sparse(tl_at(env.base, "outside.img"), 6);
	struct tl_proc p;
	tl_spawn_ex(&p, NULL, "cp", 0,
		    OPTS("--sparse=always", tl_at(env.base, "outside.img"), M("e.img")));
	struct tl_run r = tl_proc_wait(&p, 0);
	cr_assert_eq(r.status, 0, "cp: exit %d: %s", r.status, r.err);
	tl_run_free(&r);
	expect_sparse_copy(tl_at(env.base, "outside.img"), S("e.img"));
	expect_sparse_copy(tl_at(env.base, "outside.img"), T("e.img"));
	finish();
}
