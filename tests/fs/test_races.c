/*
 * Timing windows: a helper thread polls for the moment sbfs finishes a
 * change (a copy put in place, a file closed in the mount) and writes into
 * the partner right then. Whenever the write lands, the state must not
 * vouch for it: the next run sees the edit and carries it over, so no
 * version is lost. Each test loops many trials, bounded in time; none
 * asserts anything about timing.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

static struct tl_env env;
static struct tl_mount mnt;
static char *tiny;	/* a small file system mounted for a test */

static void setup(void) { tl_env_init(&env); }
static void teardown(void)
{
	tl_mount_cleanup(&mnt);
	if (tiny) {
		umount2(tiny, MNT_DETACH);	/* state_full_is_logged's */
		free(tiny);
		tiny = NULL;
	}
	tl_env_fini(&env);
}

TestSuite(races, .init = setup, .fini = teardown, .timeout = 300);

#define ASSERT_EXIT(r, want)                                                  \
	cr_assert_eq((r).status, (want), "exit %d, expected %d\nstdout:\n%s\nstderr:\n%s", \
		     (r).status, (want), (r).out, (r).err)

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void run_ok(const char *cmd, int want)
{
	static const char *const quiet[] = { "-q", NULL };
	struct tl_run r = tl_cmd(&env, cmd, strcmp(cmd, "reconcile") ? NULL : quiet);
	ASSERT_EXIT(r, want);
	tl_run_free(&r);
}

/* A file of n bytes, each the byte c, at dir/rel. */
static void fill(const char *dir, const char *rel, size_t n, int c)
{
	char *buf = malloc(n);
	cr_assert(buf);
	memset(buf, c, n);
	tl_write_n(dir, rel, buf, n);
	free(buf);
}

/* ------------------------------------------------------------ the helper */

/* Waits until path's inode is no longer `ino` (or a deadline), then writes
 * "EDITED" at offset 0 of whatever is there now. */
struct poller {
	char *path;
	ino_t ino;
	int wrote;
	pthread_t thr;
};

static void *poll_and_write(void *arg)
{
	struct poller *p = arg;
	struct stat st;
	int64_t end = mono_ms() + 20000;
	while (mono_ms() < end) {
		if (stat(p->path, &st) == 0 && st.st_ino != p->ino) {
			int fd = open(p->path, O_WRONLY);
			if (fd >= 0) {
				p->wrote = pwrite(fd, "EDITED", 6, 0) == 6;
				close(fd);
			}
			break;
		}
	}
	return NULL;
}

/*
 * Item 1: reconcile installs a new version of big in B; the helper writes
 * into B/big the moment the new inode shows. The edit must survive: the
 * next reconcile carries it to A (A did not change since), and in between
 * status never says "in sync" while the sides differ.
 */
Test(races, edit_right_after_a_copy_is_installed_is_never_absorbed)
{
	static const size_t sizes[] = { 64 << 10, 1 << 20, 4 << 20 };
	int64_t end = mono_ms() + 60000;
	int trials = 0, hit = 0;

	fill(env.src, "big", sizes[0], 'a');
	run_ok("reconcile", 0);
	for (int t = 0; t < 30 && mono_ms() < end; t++, trials++) {
		size_t n = sizes[t % 3];
		struct poller p = { .path = tl_join(env.tgt, "big") };
		struct stat st;
		cr_assert(stat(p.path, &st) == 0);
		p.ino = st.st_ino;
		fill(env.src, "big", n, 'b' + t % 20);
		cr_assert(pthread_create(&p.thr, NULL, poll_and_write, &p) == 0);
		run_ok("reconcile", 0);
		pthread_join(p.thr, NULL);
		hit += p.wrote;
		char *a = tl_read(env.src, "big"), *b = tl_read(env.tgt, "big");
		cr_assert(a && b);
		if (p.wrote) {
			cr_assert(!memcmp(b, "EDITED", 6), "trial %d: B's edit is not in B", t);
			/* The sides differ: status must say so, never "in sync". */
			struct tl_run r = tl_cmd(&env, "status", NULL);
			cr_assert_eq(r.status, 1, "trial %d: status exit %d with the sides "
				     "different (B edited during the copy)\n%s%s", t, r.status,
				     r.out, r.err);
			tl_run_free(&r);
			run_ok("reconcile", 0);
			free(a);
			a = tl_read(env.src, "big");
			cr_assert(a && !memcmp(a, "EDITED", 6),
				  "trial %d: B's edit was not carried to A: lost", t);
		}
		free(a);
		free(b);
		free(p.path);
		run_ok("status", 0);
	}
	cr_log_info("install window: %d trials, %d writes landed", trials, hit);
	cr_assert(hit > 0, "the helper never wrote: the test tested nothing");
}

/* ------------------------------------------------------------ the mount */

static char *mp(const char *rel) { return tl_join(mnt.dir, rel); }

static void put(const char *path, const char *s, size_t n, int flags)
{
	int fd = open(path, O_WRONLY | O_CREAT | flags, 0644);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	cr_assert(write(fd, s, n) == (ssize_t)n, "write %s: %s", path, strerror(errno));
	cr_assert(close(fd) == 0, "close %s: %s", path, strerror(errno));
}

static void pwrite_at0(const char *path, const char *s, size_t n)
{
	int fd = open(path, O_WRONLY);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	cr_assert(pwrite(fd, s, n, 0) == (ssize_t)n);
	close(fd);
}

/* The sides differ at some path: status must not say "in sync", and a
 * reconcile must carry `winner`'s version to the other side, no conflict. */
static void expect_carried(const char *rel, int winner, const char *want)
{
	char *a = tl_read(env.src, rel), *b = tl_read(env.tgt, rel);
	cr_assert(a && b);
	cr_assert_str_eq(winner ? b : a, want, "%s: the edit is gone from its side", rel);
	free(a);
	free(b);
}

/*
 * Item 2: write and close M/fN, then at once (or after a short pause)
 * write bytes of the same length straight into B/fN. However soon it
 * lands, the mount must not record B as holding what it wrote: after the
 * unmount status says B changed, and a reconcile carries B's bytes to A.
 */
Test(races, edit_right_after_a_close_in_the_mount_is_never_absorbed)
{
	enum { N = 60 };
	char rel[32], v[32];
	tl_fuse_required();
	tl_mount(&env, &mnt, NULL);
	for (int i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "f%02d", i);
		snprintf(v, sizeof(v), "mount %02d\n", i);
		char *m = mp(rel), *b = tl_join(env.tgt, rel);
		put(m, v, strlen(v), O_TRUNC);
		if (i % 10 == 9)
			usleep(1000 * (i % 7) * 50);	/* 0 to 300 ms */
		pwrite_at0(b, "target!!!\n", 10);
		free(m);
		free(b);
	}
	tl_umount(&env, &mnt);
	struct tl_run r = tl_cmd(&env, "status", NULL);
	cr_assert_eq(r.status, 1, "status after B was edited behind the mount: exit %d\n%s%s",
		     r.status, r.out, r.err);
	cr_assert(!strstr(r.out, "changed on both sides"), "a false conflict:\n%s", r.out);
	tl_run_free(&r);
	run_ok("reconcile", 0);
	for (int i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "f%02d", i);
		expect_carried(rel, 0, "target!!!\n");
		expect_carried(rel, 1, "target!!!\n");
	}
	run_ok("status", 0);
}

/*
 * Item 3: the same window seen from the other side: write M/p/fN, then at
 * once the source directly. Only the source changed since: no conflict.
 */
Test(races, edit_of_the_source_right_after_a_close_is_no_conflict)
{
	enum { N = 60 };
	char rel[32];
	tl_fuse_required();
	tl_mkdir(env.src, "p");
	tl_mount(&env, &mnt, NULL);
	for (int i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "p/f%02d", i);
		char *m = mp(rel), *a = tl_join(env.src, rel);
		put(m, "v1\n", 3, O_TRUNC);
		put(a, "v2\n", 3, O_TRUNC);
		free(m);
		free(a);
	}
	tl_umount(&env, &mnt);
	struct tl_run r = tl_cmd(&env, "status", NULL);
	cr_assert_eq(r.status, 1, "%s%s", r.out, r.err);
	cr_assert(!strstr(r.out, "changed on both sides"), "a false conflict:\n%s", r.out);
	tl_run_free(&r);
	run_ok("reconcile", 0);
	for (int i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "p/f%02d", i);
		expect_carried(rel, 0, "v2\n");
		expect_carried(rel, 1, "v2\n");
	}
}

/*
 * Item 4: write, close, then set the mtime through the mount at once: both
 * sides end with the mtime set, never the write's, and the state agrees.
 */
Test(races, utime_right_after_a_close_reaches_both_sides)
{
	enum { N = 400 };
	char rel[32];
	tl_fuse_required();
	tl_mount(&env, &mnt, NULL);
	for (int i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "u%03d", i);
		char *m = mp(rel);
		put(m, "content\n", 8, O_TRUNC);
		struct timespec t[2] = { { 1000000000 + i, 0 }, { 1000000000 + i, 0 } };
		cr_assert(utimensat(AT_FDCWD, m, t, 0) == 0, "utimensat: %s", strerror(errno));
		free(m);
	}
	tl_umount(&env, &mnt);
	for (int i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "u%03d", i);
		for (int s = 0; s < 2; s++) {
			char *p = tl_join(s ? env.tgt : env.src, rel);
			struct stat st;
			cr_assert(stat(p, &st) == 0);
			cr_assert_eq(st.st_mtim.tv_sec, 1000000000 + i,
				     "%s: mtime %ld, not the one set through the mount", p,
				     (long)st.st_mtim.tv_sec);
			free(p);
		}
	}
	char *why;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "%s", why);
	run_ok("status", 0);
}

/* ------------------------------------------------------------ failures */

/*
 * Item 5: the state's file system fills up while the mount records. The
 * records that cannot be written are said in the operation log, with the
 * cause, and the state vouches for nothing it did not write: once there is
 * room again, everything is found in sync, by hashing where it must.
 */
Test(races, state_full_is_logged)
{
	enum { N = 3000 };
	char rel[64];
	tl_fuse_required();
	/* The partnership's directory on a small file system of its own; the
	 * operation log stays outside it, in the state root. */
	run_ok("reconcile", 0);
	char *pdir = NULL, *aside = tl_join(env.base, "aside");
	DIR *d = opendir(env.state);
	cr_assert(d);
	for (struct dirent *de; (de = readdir(d));)
		if (de->d_name[0] != '.' && de->d_type == DT_DIR)
			pdir = tl_join(env.state, de->d_name);
	closedir(d);
	cr_assert(pdir, "no partnership directory in %s", env.state);
	cr_assert(rename(pdir, aside) == 0 && mkdir(pdir, 0700) == 0);
	cr_assert(mount("sbfs-test", pdir, "tmpfs", 0, "size=2m,mode=0700") == 0,
		  "mount tmpfs on %s: %s", pdir, strerror(errno));
	tiny = pdir;
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "cp -a %s/. %s/", aside, pdir) > 0 && system(cmd) == 0);
	free(cmd);
	free(aside);
	tl_mount(&env, &mnt, NULL);
	/* Leave a little room: for the journal's lines, not for the records. */
	char *filler = tl_join(pdir, "filler");
	int fd = open(filler, O_WRONLY | O_CREAT, 0600);
	cr_assert(fd >= 0);
	static char block[4096];
	while (write(fd, block, sizeof(block)) == sizeof(block))
		;
	close(fd);
	struct stat st;
	cr_assert(stat(filler, &st) == 0);
	cr_assert(truncate(filler, st.st_size - (64 << 10)) == 0);
	for (int i = 0; i < N; i++) {
		snprintf(rel, sizeof(rel), "r%04d-with-a-longer-name-to-fill-pages", i);
		char *m = mp(rel);
		put(m, "x\n", 2, O_TRUNC);
		free(m);
	}
	tl_umount(&env, &mnt);
	char *log = tl_read(env.state, "log.jsonl");
	cr_assert(log, "no operation log");
	cr_assert(strstr(log, "\"action\":\"record\"") && strstr(log, "\"errno\":28"),
		  "the failed records are not in the log:\n%.2000s", log);
	free(log);
	cr_assert(unlink(filler) == 0);
	free(filler);
	char *why;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "%s", why);
	run_ok("status", 0);
	run_ok("reconcile", 0);
	run_ok("status", 0);
}

/*
 * Item 6: thousands of changes, then an unmount by each of the three ways,
 * then at once a status: everything the mount did is in the state, so the
 * status reads no file ("hashed":0) and finds nothing pending.
 */
Test(races, unmount_any_way_leaves_the_state_complete)
{
	enum { N = 600 };
	static const char *const how[] = { "sbfs umount", "fusermount3 -u", "umount" };
	char rel[64], rel2[64];
	tl_fuse_required();
	for (int w = 0; w < 3; w++) {
		tl_mount(&env, &mnt, NULL);
		for (int i = 0; i < N; i++) {
			snprintf(rel, sizeof(rel), "w%d-%04d", w, i);
			snprintf(rel2, sizeof(rel2), "w%d-%04d.moved", w, i);
			char *m = mp(rel), *m2 = mp(rel2);
			put(m, "some content\n", 13, O_TRUNC);
			cr_assert(chmod(m, 0600) == 0);
			if (i % 2)
				cr_assert(rename(m, m2) == 0, "rename: %s", strerror(errno));
			free(m);
			free(m2);
		}
		char *cmd = NULL;
		cr_assert(asprintf(&cmd, "%s %s", w == 0 ? tl_sbfs() : how[w], mnt.dir) > 0);
		if (w == 0) {
			free(cmd);
			cr_assert(asprintf(&cmd, "%s umount %s", tl_sbfs(), mnt.dir) > 0);
		}
		cr_assert(system(cmd) == 0, "%s failed", cmd);
		struct tl_run r = tl_cmd(&env, "status", (const char *const[]){ "--json", NULL });
		cr_assert_eq(r.status, 0, "status right after %s: exit %d\n%s%s", how[w], r.status,
			     r.out, r.err);
		cr_assert(strstr(r.out, "\"hashed\":0"), "status right after %s read files: the "
			  "state was not complete\n%s\n%s", how[w], r.out, r.err);
		tl_run_free(&r);
		free(cmd);
		tl_umount_wait(&mnt);
		tl_mount_cleanup(&mnt);
	}
}
