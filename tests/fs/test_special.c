/*
 * Special files: FIFOs, device nodes and sockets. Through the mount,
 * mkfifo, mknod and bind() make the entry on both partners and unlink
 * removes both; a reconcile carries FIFOs and device nodes (type, mode,
 * rdev) like rsync's -D, never copies a socket (and exits 0 for it), and
 * follows the deletion of a carried FIFO. The tests run as root, as a
 * device node needs.
 *
 * The mounting suite mounts in its .init and is unmounted in its .fini;
 * testlib's watchdog does the same should the test process die.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "testlib.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static struct tl_env env;
static struct tl_mount mnt;

static struct stat lst(const char *dir, const char *rel)
{
	struct stat st;
	cr_assert_eq(lstat(tl_at(dir, rel), &st), 0, "%s/%s: %s", dir, rel, strerror(errno));
	return st;
}

/* Asserts both partners hold rel as the given type, mode and rdev. */
static void assert_node(const char *rel, mode_t type, mode_t mode, dev_t rdev)
{
	const char *dirs[2] = { env.src, env.tgt };
	for (int i = 0; i < 2; i++) {
		struct stat st = lst(dirs[i], rel);
		cr_assert_eq(st.st_mode & S_IFMT, type, "%s/%s: type %o", dirs[i], rel,
			     st.st_mode & S_IFMT);
		cr_assert_eq(st.st_mode & 07777, mode, "%s/%s: mode %o", dirs[i], rel,
			     st.st_mode & 07777);
		if (S_ISCHR(type) || S_ISBLK(type))
			cr_assert_eq(st.st_rdev, rdev, "%s/%s: rdev %lx", dirs[i], rel,
				     (unsigned long)st.st_rdev);
	}
}

static void assert_gone(const char *rel)
{
	cr_assert(!tl_exists(env.src, rel), "%s still in the source", rel);
	cr_assert(!tl_exists(env.tgt, rel), "%s still in the target", rel);
}

/* An AF_UNIX socket bound at path (the descriptor closed: the node stays). */
static void bind_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert(fd >= 0);
	cr_assert(strlen(path) < sizeof(sa.sun_path), "socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	int ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	int err = errno;
	close(fd);
	cr_assert_eq(ret, 0, "bind %s: %s", path, strerror(err));
}

static struct tl_run run(int want, const char *cmd, const char *const *opts)
{
	struct tl_run r = tl_cmd(&env, cmd, opts);
	cr_assert_eq(r.status, want, "sbfs %s: exit %d, expected %d\n--- stdout\n%s--- stderr\n%s",
		     cmd, r.status, want, r.out, r.err);
	return r;
}

/* A reconcile that exits 0 and finds nothing to do. */
static void reconcile_nothing(void)
{
	struct tl_run r = run(0, "reconcile", NULL);
	cr_assert(strstr(r.out, "Total changes: 0 files"), "not nothing to do:\n%s", r.out);
	tl_run_free(&r);
}

/* ================================================================ mount */

static void setup_mounted(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	tl_mount(&env, &mnt, NULL);
}

static void teardown_mounted(void)
{
	tl_mount_cleanup(&mnt);
	tl_env_fini(&env);
}

TestSuite(special_mount, .init = setup_mounted, .fini = teardown_mounted, .timeout = 60);

Test(special_mount, mkfifo_on_both_and_unlink_removes_both)
{
	umask(022);
	cr_assert_eq(mkfifo(tl_at(mnt.dir, "pipe"), 0640), 0, "mkfifo: %s", strerror(errno));
	assert_node("pipe", S_IFIFO, 0640, 0);
	cr_assert_eq(lst(mnt.dir, "pipe").st_mode & S_IFMT, S_IFIFO);
	cr_assert_eq(unlink(tl_at(mnt.dir, "pipe")), 0, "unlink: %s", strerror(errno));
	assert_gone("pipe");
}

Test(special_mount, mknod_char_device_on_both_and_unlink_removes_both)
{
	dev_t dev = makedev(1, 3);	/* /dev/null's */
	umask(022);
	cr_assert_eq(mknod(tl_at(mnt.dir, "null"), S_IFCHR | 0666, dev), 0, "mknod: %s",
		     strerror(errno));
	assert_node("null", S_IFCHR, 0644, dev);
	cr_assert_eq(lst(mnt.dir, "null").st_rdev, dev);
	cr_assert_eq(unlink(tl_at(mnt.dir, "null")), 0, "unlink: %s", strerror(errno));
	assert_gone("null");
}

Test(special_mount, bind_socket_on_both_and_unlink_removes_both)
{
	umask(022);
	bind_socket(tl_at(mnt.dir, "sock"));
	assert_node("sock", S_IFSOCK, 0755, 0);
	cr_assert_eq(unlink(tl_at(mnt.dir, "sock")), 0, "unlink: %s", strerror(errno));
	assert_gone("sock");
}

/* ================================================================ reconcile */

static void setup(void) { tl_env_init(&env); }
static void teardown(void) { tl_env_fini(&env); }

TestSuite(special, .init = setup, .fini = teardown, .timeout = 60);

Test(special, fifo_and_device_carried_then_nothing_to_do)
{
	dev_t dev = makedev(1, 5);	/* /dev/zero's */
	cr_assert_eq(mkfifo(tl_at(env.src, "pipe"), 0600), 0);
	cr_assert_eq(chmod(tl_at(env.src, "pipe"), 0640), 0);
	cr_assert_eq(mknod(tl_at(env.src, "zero"), S_IFCHR | 0600, dev), 0, "mknod: %s",
		     strerror(errno));
	cr_assert_eq(chmod(tl_at(env.src, "zero"), 0604), 0);
	struct tl_run r = run(0, "reconcile", NULL);
	tl_run_free(&r);
	assert_node("pipe", S_IFIFO, 0640, 0);
	assert_node("zero", S_IFCHR, 0604, dev);
	cr_assert_eq(lst(env.tgt, "pipe").st_mtim.tv_sec, lst(env.src, "pipe").st_mtim.tv_sec);
	reconcile_nothing();
}

Test(special, socket_not_copied_and_exit_0)
{
	tl_write(env.src, "f.txt", "a file\n");
	bind_socket(tl_at(env.src, "sock"));
	struct tl_run r = run(0, "reconcile", NULL);
	tl_run_free(&r);
	cr_assert(!tl_exists(env.tgt, "sock"), "a socket was copied");
	cr_assert(tl_exists(env.tgt, "f.txt"));
	cr_assert_eq(lst(env.src, "sock").st_mode & S_IFMT, S_IFSOCK, "the source's socket went");
	reconcile_nothing();
}

Test(special, deleted_fifo_deleted_on_the_other_side)
{
	tl_write(env.src, "keep.txt", "so the target is not emptied\n");
	cr_assert_eq(mkfifo(tl_at(env.src, "pipe"), 0644), 0);
	struct tl_run r = run(0, "reconcile", NULL);
	tl_run_free(&r);
	assert_node("pipe", S_IFIFO, 0644, 0);
	cr_assert_eq(unlink(tl_at(env.tgt, "pipe")), 0);
	r = run(0, "reconcile", NULL);
	tl_run_free(&r);
	assert_gone("pipe");
	reconcile_nothing();
}
