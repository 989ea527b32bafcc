/*
 * The mount as a real file system, for what ext4 holds beside the bytes: a
 * symlink's own extended attributes, POSIX ACLs (access and default) and
 * every fallocate mode the kernel passes to FUSE. Each answer through the
 * mount is compared with the same call on a native file of the same file
 * system (the test tree's own, ext4 under /tmp), and both partners must
 * end as that native file. Runs as root: trusted.* stands for the
 * attributes a user cannot set on a symlink.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "testlib.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define NOBODY 65534
#define ACL_ACCESS "system.posix_acl_access"
#define ACL_DEFAULT "system.posix_acl_default"

static struct tl_env env;
static struct tl_mount mnt;

#define S(rel) tl_at(env.src, rel)
#define T(rel) tl_at(env.tgt, rel)
#define M(rel) tl_at(mnt.dir, rel)
#define N(rel) tl_at(env.base, rel)	/* native: beside the partners */

/* Paths a test made immutable, cleared before the tree is removed. */
static char *immutable[2];

/* FS_IMMUTABLE_FL on or off; 0 or -errno, for teardown too. */
static int chattr_i(const char *path, int on)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC), flags = 0, ret = 0;
	if (fd < 0)
		return -errno;
	if (ioctl(fd, FS_IOC_GETFLAGS, &flags) < 0)
		ret = -errno;
	flags = on ? flags | FS_IMMUTABLE_FL : flags & ~FS_IMMUTABLE_FL;
	if (ret == 0 && ioctl(fd, FS_IOC_SETFLAGS, &flags) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static void set_immutable(const char *path, int on)
{
	int r = chattr_i(path, on);
	cr_assert_eq(r, 0, "chattr %ci %s: %s", on ? '+' : '-', path, strerror(-r));
	for (int i = 0; on && i < 2; i++)
		if (!immutable[i]) {
			immutable[i] = strdup(path);
			break;
		}
}

static void setup(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	tl_write(env.src, "seed.txt", "a file to start from\n");
	tl_mount(&env, &mnt, NULL);
}

static void setup_allow_other(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	cr_assert(chmod(env.base, 0755) == 0);	/* the way in, for nobody */
	tl_mount(&env, &mnt, OPTS("-o", "allow_other"));
}

static void teardown(void)
{
	for (int i = 0; i < 2; i++) {
		if (immutable[i])
			chattr_i(immutable[i], 0);
		free(immutable[i]);
		immutable[i] = NULL;
	}
	tl_mount_cleanup(&mnt);
	tl_env_fini(&env);
}

TestSuite(xattr, .init = setup, .fini = teardown, .timeout = 60);
TestSuite(xattr_other, .init = setup_allow_other, .fini = teardown, .timeout = 60);

/* ------------------------------------------------------------ helpers */

/* lgetxattr's answer: the size, or -errno. */
static ssize_t lget(const char *path, const char *name, char *buf, size_t size)
{
	ssize_t n = lgetxattr(path, name, buf, size);
	return n < 0 ? -errno : n;
}

static ssize_t get(const char *path, const char *name, char *buf, size_t size)
{
	ssize_t n = getxattr(path, name, buf, size);
	return n < 0 ? -errno : n;
}

/* The same value of name at path on both partners as at want (native). */
static void expect_same_xattr(const char *rel, const char *name, const char *want_path)
{
	char want[256], got[256];
	ssize_t wn = lget(want_path, name, want, sizeof(want));
	const char *paths[3] = { S(rel), T(rel), M(rel) };
	for (int i = 0; i < 3; i++) {
		ssize_t n = lget(paths[i], name, got, sizeof(got));
		cr_assert(n == wn && (n < 0 || !memcmp(got, want, (size_t)n)),
			  "%s %s: %zd, native %zd (%s)", paths[i], name, n, wn,
			  n < 0 ? strerror((int)-n) : "value differs");
	}
}

struct acl_ent {
	uint16_t tag, perm;
	uint32_t id;
};
#define A_USER_OBJ 0x01
#define A_USER 0x02
#define A_GROUP_OBJ 0x04
#define A_MASK 0x10
#define A_OTHER 0x20
#define A_ANY 0xffffffffu

/* The kernel's xattr form of an ACL (what setfacl writes): version 2, then
 * the entries in the order the kernel keeps them. */
static size_t acl_blob(char *buf, const struct acl_ent *e, size_t n)
{
	uint32_t v = 2;
	memcpy(buf, &v, 4);
	memcpy(buf + 4, e, n * sizeof(*e));
	return 4 + n * sizeof(*e);
}

/* user::rw- user:nobody:UPERM group::r-- mask::r-- other::OPERM */
static size_t nobody_reads(char *buf, uint16_t uperm, uint16_t operm)
{
	const struct acl_ent e[] = {
		{ A_USER_OBJ, 6, A_ANY }, { A_USER, uperm, NOBODY }, { A_GROUP_OBJ, 4, A_ANY },
		{ A_MASK, 4, A_ANY }, { A_OTHER, operm, A_ANY },
	};
	return acl_blob(buf, e, 5);
}

static void expect_mode(const char *rel, const char *native)
{
	struct stat want, st;
	cr_assert(lstat(native, &want) == 0, "%s: %s", native, strerror(errno));
	const char *paths[3] = { S(rel), T(rel), M(rel) };
	for (int i = 0; i < 3; i++) {
		cr_assert(lstat(paths[i], &st) == 0, "%s: %s", paths[i], strerror(errno));
		cr_assert_eq(st.st_mode, want.st_mode, "%s: mode %o, native %o", paths[i],
			     st.st_mode, want.st_mode);
	}
}

static void expect_clean(void)
{
	if (tl_status_wait_clean(&env, 10000) == 0)
		return;
	struct tl_run r = tl_cmd(&env, "status", NULL);
	cr_assert_fail("sbfs status is not clean:\n%s", r.out);
}

/*
 * After a refusal on one side the path is left to the next reconcile: it
 * must find the same bytes on both sides (at most their times differ, the
 * refusing side's ctime having moved), never a conflict, and settle it.
 */
static void expect_reconciled_as_same(const char *rel)
{
	char c1[256], c2[256];
	snprintf(c1, sizeof(c1), "Update target: %s", rel);
	snprintf(c2, sizeof(c2), "Update source: %s", rel);
	struct tl_run r = tl_cmd(&env, "status", NULL);
	cr_assert(!strstr(r.out, c1) && !strstr(r.out, c2) && strstr(r.out, "Conflicts: 0"),
		  "%s differs between the sides:\n%s", rel, r.out);
	tl_run_free(&r);
	r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "reconcile: %s%s", r.out, r.err);
	tl_run_free(&r);
	expect_clean();
}

/* ------------------------------------------------------------ symlinks */

/* What `ls -l`, `getfattr -h` and `rsync -aX` ask of a symlink. */
Test(xattr, symlink_own_attributes)
{
	char a[256], b[256];
	cr_assert(symlink("seed.txt", M("ln")) == 0, "%s", strerror(errno));
	cr_assert(symlink("seed.txt", N("ln")) == 0, "%s", strerror(errno));
	ssize_t n = llistxattr(M("ln"), a, sizeof(a)), w = llistxattr(N("ln"), b, sizeof(b));
	cr_assert(n >= 0, "llistxattr in the mount: %s", strerror(errno));
	cr_assert(n == w && !memcmp(a, b, (size_t)n), "llistxattr: %zd names, native %zd", n, w);
	cr_assert_eq(lget(M("ln"), "security.selinux", a, sizeof(a)),
		     lget(N("ln"), "security.selinux", b, sizeof(b)), "lgetxattr security.selinux");
	cr_assert_eq(lget(M("ln"), "trusted.none", a, sizeof(a)), -ENODATA);
	cr_assert_eq(lget(M("ln"), "user.none", a, sizeof(a)), -ENODATA);
	errno = 0;
	cr_assert(lsetxattr(M("ln"), "user.k", "v", 1, 0) < 0 && errno == EPERM,
		  "lsetxattr user.* on a symlink: %s (native: EPERM)", strerror(errno));

	/* The link's own attribute, never its target's. */
	cr_assert(setxattr(M("seed.txt"), "trusted.of-file", "f", 1, 0) == 0, "%s", strerror(errno));
	cr_assert(lsetxattr(M("ln"), "trusted.of-link", "l", 1, 0) == 0, "%s", strerror(errno));
	cr_assert(lsetxattr(N("ln"), "trusted.of-link", "l", 1, 0) == 0, "%s", strerror(errno));
	expect_same_xattr("ln", "trusted.of-link", N("ln"));
	expect_same_xattr("ln", "trusted.of-file", N("ln"));	/* ENODATA */
	cr_assert_eq(get(M("ln"), "trusted.of-file", a, sizeof(a)), 1, "getxattr follows the link");
	n = llistxattr(M("ln"), a, sizeof(a));
	w = llistxattr(N("ln"), b, sizeof(b));
	cr_assert(n == w && n > 0 && !memcmp(a, b, (size_t)n), "llistxattr after a set");
	cr_assert(lremovexattr(M("ln"), "trusted.of-link") == 0, "%s", strerror(errno));
	cr_assert(lremovexattr(N("ln"), "trusted.of-link") == 0, "%s", strerror(errno));
	expect_same_xattr("ln", "trusted.of-link", N("ln"));
	/* a dangling one too */
	cr_assert(symlink("nowhere", M("dangling")) == 0);
	cr_assert(llistxattr(M("dangling"), a, sizeof(a)) >= 0, "%s", strerror(errno));
	tl_umount(&env, &mnt);
	expect_clean();
}

/* ------------------------------------------------------------ ACLs */

Test(xattr, acl_access_on_both)
{
	char blob[64], got[64];
	size_t n = nobody_reads(blob, 4, 0);
	tl_write(mnt.dir, "f", "acl\n");
	tl_write(env.base, "f", "acl\n");
	cr_assert(setxattr(M("f"), ACL_ACCESS, blob, n, 0) == 0, "setxattr %s: %s", ACL_ACCESS,
		  strerror(errno));
	cr_assert(setxattr(N("f"), ACL_ACCESS, blob, n, 0) == 0, "%s", strerror(errno));
	expect_same_xattr("f", ACL_ACCESS, N("f"));
	expect_mode("f", N("f"));	/* the group bits show the mask */
	cr_assert_eq(get(M("f"), ACL_ACCESS, got, sizeof(got)), (ssize_t)n);
	/* a chmod changes the mask: on both sides, as natively */
	cr_assert(chmod(M("f"), 0600) == 0 && chmod(N("f"), 0600) == 0);
	expect_same_xattr("f", ACL_ACCESS, N("f"));
	expect_mode("f", N("f"));
	cr_assert(removexattr(M("f"), ACL_ACCESS) == 0, "%s", strerror(errno));
	cr_assert(removexattr(N("f"), ACL_ACCESS) == 0, "%s", strerror(errno));
	expect_same_xattr("f", ACL_ACCESS, N("f"));
	tl_umount(&env, &mnt);
	expect_clean();
}

Test(xattr, acl_default_on_a_directory)
{
	char blob[64];
	const struct acl_ent e[] = {
		{ A_USER_OBJ, 7, A_ANY }, { A_USER, 5, NOBODY }, { A_GROUP_OBJ, 5, A_ANY },
		{ A_MASK, 7, A_ANY }, { A_OTHER, 0, A_ANY },
	};
	size_t n = acl_blob(blob, e, 5);
	cr_assert(mkdir(M("d"), 0755) == 0 && mkdir(N("d"), 0755) == 0);
	cr_assert(setxattr(M("d"), ACL_DEFAULT, blob, n, 0) == 0, "setxattr %s: %s", ACL_DEFAULT,
		  strerror(errno));
	cr_assert(setxattr(N("d"), ACL_DEFAULT, blob, n, 0) == 0, "%s", strerror(errno));
	expect_same_xattr("d", ACL_DEFAULT, N("d"));
	/* What is made beneath inherits it, on each side; with a default ACL
	 * the umask does not apply, natively nor through the mount. */
	mode_t um = umask(022);
	tl_write(mnt.dir, "d/new", "inherits\n");
	tl_write(env.base, "d/new", "inherits\n");
	int made = mkdir(M("d/sub"), 0777) == 0 && mkdir(N("d/sub"), 0777) == 0;
	umask(um);
	cr_assert(made, "mkdir: %s", strerror(errno));
	expect_same_xattr("d/new", ACL_ACCESS, N("d/new"));
	expect_mode("d/new", N("d/new"));
	expect_same_xattr("d/sub", ACL_DEFAULT, N("d/sub"));
	expect_same_xattr("d/sub", ACL_ACCESS, N("d/sub"));
	expect_mode("d/sub", N("d/sub"));
	tl_umount(&env, &mnt);
	expect_clean();
}

/* A side that refuses (here: immutable) after the other took the change:
 * the first is put back, old value or none. */
Test(xattr, one_sided_refusal_undone)
{
	char got[16], blob[64];
	tl_write(mnt.dir, "u", "u\n");
	cr_assert(setxattr(M("u"), "user.k", "old", 3, 0) == 0, "%s", strerror(errno));
	set_immutable(T("u"), 1);
	errno = 0;
	cr_assert(setxattr(M("u"), "user.k", "new", 3, 0) < 0 && errno == EPERM, "%s",
		  strerror(errno));
	cr_assert(setxattr(M("u"), "user.more", "m", 1, 0) < 0 && errno == EPERM);
	cr_assert(removexattr(M("u"), "user.k") < 0 && errno == EPERM);
	size_t n = nobody_reads(blob, 4, 0);
	cr_assert(setxattr(M("u"), ACL_ACCESS, blob, n, 0) < 0 && errno == EPERM);
	for (int i = 0; i < 2; i++) {
		const char *p = i ? T("u") : S("u");
		cr_assert(get(p, "user.k", got, sizeof(got)) == 3 && !memcmp(got, "old", 3),
			  "%s: user.k is not the old value", p);
		cr_assert_eq(get(p, "user.more", got, sizeof(got)), -ENODATA, "%s: user.more", p);
		cr_assert_eq(get(p, ACL_ACCESS, got, sizeof(got)), -ENODATA, "%s: an ACL", p);
	}
	set_immutable(T("u"), 0);
	tl_umount(&env, &mnt);
	expect_reconciled_as_same("u");
}

/* With allow_other the kernel checks permissions: it must see the ACLs. */
static int nobody_reads_it(const char *path)
{
	if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
		return 2;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == EACCES ? 1 : 3;
	close(fd);
	return 0;
}

static int as_nobody_reads(const char *path)
{
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0)
		_exit(nobody_reads_it(path));
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) < 2, "%s: the child failed: %d", path, st);
	return WEXITSTATUS(st) == 0;
}

Test(xattr_other, acl_grants_in_the_kernels_check)
{
	char blob[64];
	tl_write(mnt.dir, "secret", "for nobody's eyes\n");
	tl_write(env.base, "secret", "for nobody's eyes\n");
	cr_assert(chmod(M("secret"), 0600) == 0 && chmod(N("secret"), 0600) == 0);
	cr_assert(!as_nobody_reads(N("secret")), "natively nobody reads a 0600 file");
	cr_assert(!as_nobody_reads(M("secret")), "through the mount nobody reads a 0600 file");
	size_t n = nobody_reads(blob, 4, 0);
	cr_assert(setxattr(M("secret"), ACL_ACCESS, blob, n, 0) == 0, "%s", strerror(errno));
	cr_assert(setxattr(N("secret"), ACL_ACCESS, blob, n, 0) == 0, "%s", strerror(errno));
	cr_assert(as_nobody_reads(N("secret")), "natively the ACL lets nobody read");
	cr_assert(as_nobody_reads(M("secret")), "through the mount the ACL does not let nobody read");
	/* and takes back what the mode bits alone would give (other::r--) */
	n = nobody_reads(blob, 0, 4);
	cr_assert(chmod(M("secret"), 0644) == 0 && chmod(N("secret"), 0644) == 0);
	cr_assert(setxattr(M("secret"), ACL_ACCESS, blob, n, 0) == 0, "%s", strerror(errno));
	cr_assert(setxattr(N("secret"), ACL_ACCESS, blob, n, 0) == 0, "%s", strerror(errno));
	cr_assert(!as_nobody_reads(N("secret")), "natively user:nobody:--- lets nobody read");
	cr_assert(!as_nobody_reads(M("secret")), "through the mount user:nobody:--- lets nobody read");
	expect_same_xattr("secret", ACL_ACCESS, N("secret"));
	tl_umount(&env, &mnt);
	expect_clean();
}

/* ------------------------------------------------------------ fallocate */

#define BLK 4096
#define FSIZE (16 * BLK)

static void pattern(char *buf, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)('a' + (i * 7 + i / BLK) % 26);
}

/* mode on the mount's fd and the native one: the same answer. */
static void both_fallocate(int mfd, int nfd, int mode, off_t off, off_t len, const char *what)
{
	int r = fallocate(mfd, mode, off, len) < 0 ? -errno : 0;
	int w = fallocate(nfd, mode, off, len) < 0 ? -errno : 0;
	cr_assert_eq(w, 0, "native %s: %s", what, strerror(-w));
	cr_assert_eq(r, 0, "%s through the mount: %s", what, strerror(-r));
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert(fd >= 0, "%s: %s", path, strerror(errno));
	struct stat st;
	cr_assert(fstat(fd, &st) == 0);
	char *buf = malloc((size_t)st.st_size + 1);
	cr_assert(buf);
	cr_assert_eq(pread(fd, buf, (size_t)st.st_size, 0), st.st_size, "%s: short read", path);
	close(fd);
	*len = (size_t)st.st_size;
	return buf;
}

/* rel on both partners and in the mount holds what native does. */
static void expect_bytes(const char *rel, const char *native)
{
	size_t wn, n;
	char *want = slurp(native, &wn);
	const char *paths[3] = { S(rel), T(rel), M(rel) };
	for (int i = 0; i < 3; i++) {
		char *got = slurp(paths[i], &n);
		size_t at = 0;
		while (at < n && at < wn && got[at] == want[at])
			at++;
		cr_assert(n == wn && at == n, "%s: %zu bytes, native %zu, first difference at %zu",
			  paths[i], n, wn, at);
		free(got);
	}
	free(want);
}

static int open_pair(const char *rel, int fds[2])
{
	char buf[FSIZE];
	pattern(buf, sizeof(buf));
	tl_write_n(mnt.dir, rel, buf, sizeof(buf));
	tl_write_n(env.base, rel, buf, sizeof(buf));
	fds[0] = open(M(rel), O_RDWR | O_CLOEXEC);
	fds[1] = open(N(rel), O_RDWR | O_CLOEXEC);
	cr_assert(fds[0] >= 0 && fds[1] >= 0, "open %s: %s", rel, strerror(errno));
	return 0;
}

Test(xattr, fallocate_modes)
{
	int fd[2];
	open_pair("f", fd);
	both_fallocate(fd[0], fd[1], FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, BLK, 2 * BLK,
		       "PUNCH_HOLE");
	both_fallocate(fd[0], fd[1], FALLOC_FL_ZERO_RANGE, 5 * BLK + 100, BLK + 7, "ZERO_RANGE");
	both_fallocate(fd[0], fd[1], FALLOC_FL_KEEP_SIZE, FSIZE, 4 * BLK, "KEEP_SIZE");
	both_fallocate(fd[0], fd[1], FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, FSIZE - 10, 50,
		       "ZERO_RANGE|KEEP_SIZE past the end");
	both_fallocate(fd[0], fd[1], 0, FSIZE + 2 * BLK, BLK, "an allocation that grows it");
	both_fallocate(fd[0], fd[1], FALLOC_FL_ZERO_RANGE, FSIZE + 4 * BLK, 10, "ZERO_RANGE growing");
	/*
	 * INSERT_RANGE and COLLAPSE_RANGE never reach a FUSE file system: the
	 * kernel's FUSE module refuses every mode but KEEP_SIZE, PUNCH_HOLE
	 * and ZERO_RANGE itself (fs/fuse/file.c, fuse_file_fallocate). The
	 * engine would pass them on (and undo a one-sided one exactly); the
	 * mount can only answer as the kernel does, changing nothing.
	 */
	int r = fallocate(fd[0], FALLOC_FL_INSERT_RANGE, 2 * BLK, BLK);
	cr_assert(r == 0 || errno == EOPNOTSUPP, "INSERT_RANGE: %s", strerror(errno));
	if (r == 0)
		cr_assert(fallocate(fd[1], FALLOC_FL_INSERT_RANGE, 2 * BLK, BLK) == 0);
	r = fallocate(fd[0], FALLOC_FL_COLLAPSE_RANGE, 3 * BLK, 2 * BLK);
	cr_assert(r == 0 || errno == EOPNOTSUPP, "COLLAPSE_RANGE: %s", strerror(errno));
	if (r == 0)
		cr_assert(fallocate(fd[1], FALLOC_FL_COLLAPSE_RANGE, 3 * BLK, 2 * BLK) == 0);
	cr_assert(close(fd[0]) == 0 && close(fd[1]) == 0);
	expect_bytes("f", N("f"));
	tl_umount(&env, &mnt);
	expect_clean();
	/* The state vouches only for what it hashed: after a touch of the
	 * source (same bytes), a reconcile finds no content change. */
	tl_set_mtime(env.src, "f", 1700000000L);
	struct tl_run st = tl_cmd(&env, "status", NULL);
	cr_assert(!strstr(st.out, "Update target: f"),
		  "the state's hash of f is not its content:\n%s", st.out);
	tl_run_free(&st);
}

/* One side refuses (immutable) when the other would take it: the target
 * goes first, and a source that refuses after has the target put back. */
static void refused_on(int side)
{
	int fd[2];
	open_pair("g", fd);
	cr_assert(close(fd[1]) == 0);
	set_immutable(side ? T("g") : S("g"), 1);
	const struct { int mode; off_t off, len; const char *what; } op[] = {
		{ FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, BLK, 3 * BLK, "PUNCH_HOLE" },
		{ FALLOC_FL_ZERO_RANGE, 2 * BLK + 5, 2 * BLK, "ZERO_RANGE" },
		{ FALLOC_FL_ZERO_RANGE, FSIZE - BLK, 3 * BLK, "ZERO_RANGE growing" },
		{ 0, FSIZE, 2 * BLK, "an allocation that grows it" },
	};
	for (size_t i = 0; i < sizeof(op) / sizeof(op[0]); i++) {
		errno = 0;
		cr_assert(fallocate(fd[0], op[i].mode, op[i].off, op[i].len) < 0 && errno == EPERM,
			  "%s with the %s immutable: %s", op[i].what, side ? "target" : "source",
			  strerror(errno));
		expect_bytes("g", N("g"));
	}
	set_immutable(side ? T("g") : S("g"), 0);
	cr_assert(close(fd[0]) == 0);
	tl_umount(&env, &mnt);
	expect_reconciled_as_same("g");
}

Test(xattr, fallocate_refused_by_the_target) { refused_on(1); }
Test(xattr, fallocate_refused_by_the_source_undone) { refused_on(0); }
