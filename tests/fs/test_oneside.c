/*
 * A change through the mount that one side refuses (a read-only partner, a
 * full disk): the call fails, and both sides are left as the caller was
 * told, so the next reconcile loses nothing. The target is made read-only
 * by a read-only bind mount of itself, or small by a tmpfs, before the
 * mount starts (the mount holds its partners open).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static struct tl_env env;
static struct tl_mount mnt;
static int tgt_mounted;

static void setup(void)
{
	tl_fuse_required();
	tl_env_init(&env);
}

static void teardown(void)
{
	tl_mount_cleanup(&mnt);
	if (tgt_mounted)
		umount2(env.tgt, MNT_DETACH);
	tgt_mounted = 0;
	tl_env_fini(&env);
}

TestSuite(oneside, .init = setup, .fini = teardown, .timeout = 120);

#define ASSERT_EXIT(r, want)                                                  \
	cr_assert_eq((r).status, (want), "exit %d, expected %d\nstdout:\n%s\nstderr:\n%s", \
		     (r).status, (want), (r).out, (r).err)

static void run_ok(const char *cmd, int want)
{
	struct tl_run r = tl_cmd(&env, cmd, NULL);
	ASSERT_EXIT(r, want);
	tl_run_free(&r);
}

static char *mp(const char *rel) { return tl_join(mnt.dir, rel); }

/* The target, as it is, made read-only for the mount to come. */
static void target_read_only(void)
{
	cr_assert(mount(env.tgt, env.tgt, NULL, MS_BIND, NULL) == 0, "bind: %s", strerror(errno));
	tgt_mounted = 1;
	cr_assert(mount(NULL, env.tgt, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) == 0,
		  "remount ro: %s", strerror(errno));
}

static void target_writable_again(void)
{
	cr_assert(umount2(env.tgt, 0) == 0, "umount %s: %s", env.tgt, strerror(errno));
	tgt_mounted = 0;
}

/* Both sides hold doc.txt and dir/, synced. */
static void synced_pair(void)
{
	tl_write(env.src, "doc.txt", "precious v1\n");
	tl_mkdir(env.src, "dir");
	run_ok("reconcile", 0);
}

Test(oneside, rm_refused_by_the_target_keeps_both)
{
	synced_pair();
	target_read_only();
	tl_mount(&env, &mnt, NULL);
	char *m = mp("doc.txt"), *d = mp("dir");
	cr_assert(unlink(m) < 0 && errno == EROFS, "unlink: %s", strerror(errno));
	cr_assert(rmdir(d) < 0 && errno == EROFS, "rmdir: %s", strerror(errno));
	free(m);
	free(d);
	char *a = tl_read(env.src, "doc.txt");
	cr_assert(a && !strcmp(a, "precious v1\n"), "the source's copy is gone");
	free(a);
	cr_assert(tl_exists(env.src, "dir"), "the source's directory is gone");
	tl_umount(&env, &mnt);
	target_writable_again();
	run_ok("reconcile", 0);
	cr_assert(tl_exists(env.src, "doc.txt") && tl_exists(env.tgt, "doc.txt"),
		  "a reconcile after the refused rm deleted doc.txt");
	cr_assert(tl_exists(env.src, "dir") && tl_exists(env.tgt, "dir"));
}

Test(oneside, overwrite_refused_by_the_target_empties_nothing)
{
	synced_pair();
	target_read_only();
	tl_mount(&env, &mnt, NULL);
	char *m = mp("doc.txt");
	int fd = open(m, O_WRONLY | O_TRUNC);
	cr_assert(fd < 0 && errno == EROFS, "open O_TRUNC: fd %d, %s", fd, strerror(errno));
	free(m);
	char *a = tl_read(env.src, "doc.txt");
	cr_assert(a && !strcmp(a, "precious v1\n"), "the source's copy was emptied: \"%s\"", a);
	free(a);
	tl_umount(&env, &mnt);
	target_writable_again();
	run_ok("status", 0);
}

/* dd onto a target with too little room: the source holds exactly the
 * bytes of the writes that were reported done, as does the target. */
Test(oneside, full_target_leaves_both_at_what_the_writer_was_told)
{
	cr_assert(mount("sbfs-test", env.tgt, "tmpfs", 0, "size=1m") == 0, "tmpfs: %s",
		  strerror(errno));
	tgt_mounted = 1;
	tl_mount(&env, &mnt, NULL);
	char *m = mp("big");
	int fd = open(m, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0, "%s", strerror(errno));
	static char block[64 << 10];
	memset(block, 'z', sizeof(block));
	off_t done = 0;
	int err = 0;
	for (int i = 0; i < 64; i++) {
		ssize_t n = write(fd, block, sizeof(block));
		if (n < 0) {
			err = errno;
			break;
		}
		done += n;
	}
	close(fd);
	free(m);
	cr_assert_eq(err, ENOSPC, "the writes did not fail with ENOSPC: %s", strerror(err));
	for (int s = 0; s < 2; s++) {
		char *p = tl_join(s ? env.tgt : env.src, "big");
		struct stat st;
		cr_assert(stat(p, &st) == 0);
		cr_assert_eq(st.st_size, done, "%s holds %lld bytes, the writer was told %lld", p,
			     (long long)st.st_size, (long long)done);
		free(p);
	}
	tl_umount(&env, &mnt);
	/* and the log says so, once, naming the file and the side */
	char *log = tl_read(env.state, "log.jsonl");
	cr_assert(log, "no log at %s", env.log);
	const char *l = strstr(log, "\"action\":\"write refused by the target\"");
	cr_assert(l && strstr(l, "\"path\":\"big\"") && strstr(l, "No space left"), "%s", log);
	cr_assert(!strstr(strchr(l, '\n'), "write refused by the target"), "said more than once:\n%s",
		  log);
	free(log);
}
