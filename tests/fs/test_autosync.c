/*
 * `sbfs mount --watch` (fs/autosync.c): edits made directly in a partner
 * are reconciled by the mount itself, through the rules a reconcile uses.
 * Each wait polls with a deadline (DEADLINE_MS) far above the 500 ms quiet
 * period and the run that follows it; only `without_watch_nothing_is_carried`
 * waits a fixed time, for something that must not happen.
 *
 * Without --watch support these fail: the mount refuses the option (and
 * libfuse an `-o watch`); with the option ignored, no edit is carried.
 *
 * Every test that mounts is unmounted in .fini (lazily, even after a
 * failure); the watchdog of testlib covers a crash.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

#define DEADLINE_MS 10000

static struct tl_env env;
static struct tl_mount mnt;
static pid_t writer;

#define S(rel) tl_at(env.src, rel)
#define T(rel) tl_at(env.tgt, rel)
#define M(rel) tl_at(mnt.dir, rel)

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* 1 when dir/rel holds want. */
static int holds(const char *dir, const char *rel, const char *want)
{
	char *got = tl_read(dir, rel);
	int ok = got && !strcmp(got, want);
	free(got);
	return ok;
}

static void wait_holds(const char *dir, const char *rel, const char *want)
{
	long end = now_ms() + DEADLINE_MS;
	while (!holds(dir, rel, want)) {
		cr_assert(now_ms() <= end, "%s/%s: not \"%s\" after %d ms", dir, rel, want,
			  DEADLINE_MS);
		usleep(20000);
	}
}

/* How many lines of the log hold all of a and b. */
static int log_lines(const char *a, const char *b)
{
	char *log = tl_read(env.state, "log.jsonl");
	int n = 0;
	for (char *l = log; l && *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = '\0';
		n += strstr(l, a) && strstr(l, b);
		l = nl ? nl + 1 : l + strlen(l);
	}
	free(log);
	return n;
}

static void wait_log(const char *a, const char *b)
{
	long end = now_ms() + DEADLINE_MS;
	while (!log_lines(a, b)) {
		cr_assert(now_ms() <= end, "no line with %s and %s in the log after %d ms", a, b,
			  DEADLINE_MS);
		usleep(20000);
	}
}

static void setup(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	for (int i = 0; i < 6; i++) {
		char name[8], body[16];
		snprintf(name, sizeof(name), "f%d", i);
		snprintf(body, sizeof(body), "file %d\n", i);
		tl_write(env.src, name, body);
	}
	tl_write(env.src, "c", "common\n");
}

static void teardown(void)
{
	if (writer > 0) {
		kill(writer, SIGKILL);
		waitpid(writer, NULL, 0);
	}
	tl_mount_cleanup(&mnt);
	tl_env_fini(&env);
}

TestSuite(autosync, .init = setup, .fini = teardown, .timeout = 120);

Test(autosync, target_edit_reaches_the_source)
{
	tl_mount(&env, &mnt, (const char *[]){ "--watch", NULL });
	tl_write(env.tgt, "new", "made in the target\n");
	tl_write(env.tgt, "c", "changed in the target\n");
	wait_holds(env.src, "new", "made in the target\n");
	wait_holds(env.src, "c", "changed in the target\n");
	cr_assert(holds(mnt.dir, "c", "changed in the target\n"));
	wait_log("\"auto-reconcile\"", "\"result\":\"ok\"");
	cr_assert(log_lines("\"copy-to-source\"", "\"path\":\"new\"") == 1);
	/* the mount's own writes are in sync already: no run is logged */
	int runs = log_lines("\"auto-reconcile\"", "");
	tl_write(mnt.dir, "through", "written through the mount\n");
	tl_write(env.src, "marker", "a later edit outside\n");
	wait_holds(env.tgt, "marker", "a later edit outside\n");
	/* a run's line follows its operations' */
	long end = now_ms() + DEADLINE_MS;
	while (log_lines("\"auto-reconcile\"", "") < runs + 1)
		cr_assert(now_ms() <= end, "the run that carried marker was not logged");
	cr_assert_eq(log_lines("\"path\":\"through\"", ""), 0, "the mount's own write was reconciled");
	cr_assert_eq(log_lines("\"auto-reconcile\"", ""), runs + 1);
	struct tl_run r = tl_sbfs_run(&env, NULL, (const char *[]){ "status", mnt.dir, NULL });
	cr_assert_eq(r.status, 0, "status through the mount: %d\n%s%s", r.status, r.out, r.err);
	tl_run_free(&r);
}

Test(autosync, dash_o_watch)
{
	tl_mount(&env, &mnt, (const char *[]){ "-o", "noatime,watch", NULL });
	tl_write(env.src, "new", "made in the source\n");
	wait_holds(env.tgt, "new", "made in the source\n");
}

Test(autosync, an_edit_on_both_sides_is_a_conflict_in_the_view)
{
	tl_mount(&env, &mnt, (const char *[]){ "--watch", NULL });
	tl_write(env.src, "c", "the source's edit\n");
	tl_write(env.tgt, "c", "the target's edit, longer\n");
	wait_holds(mnt.dir, "c.conflict-target", "the target's edit, longer\n");
	cr_assert(holds(mnt.dir, "c.conflict-source", "the source's edit\n"));
	cr_assert(!tl_exists(mnt.dir, "c"), "c is still shown beside its conflict entries");
	/* both versions untouched */
	cr_assert(holds(env.src, "c", "the source's edit\n"));
	cr_assert(holds(env.tgt, "c", "the target's edit, longer\n"));
	cr_assert(log_lines("\"conflict\"", "\"path\":\"c\"") >= 1);
}

Test(autosync, a_file_being_written_waits_for_its_close)
{
	tl_mount(&env, &mnt, (const char *[]){ "--watch", NULL });
	int fd = open(T("w"), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	cr_assert(fd >= 0, "open: %s", strerror(errno));
	cr_assert_eq(write(fd, "part one, ", 10), 10);
	/* a later edit's run comes after w had its quiet period */
	tl_write(env.tgt, "marker", "after w\n");
	wait_holds(env.src, "marker", "after w\n");
	cr_assert(!tl_exists(env.src, "w"), "w was carried while still open for writing");
	cr_assert_eq(write(fd, "part two\n", 9), 9);
	cr_assert_eq(close(fd), 0);
	wait_holds(env.src, "w", "part one, part two\n");
}

Test(autosync, deleting_most_files_outside_is_refused)
{
	tl_mount(&env, &mnt, (const char *[]){ "--watch", NULL });
	for (int i = 0; i < 5; i++) {
		char name[8];
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert_eq(unlink(T(name)), 0);
	}
	wait_log("\"result\":\"refused\"", "has lost 5 of the");
	for (int i = 0; i < 6; i++) {
		char name[8];
		snprintf(name, sizeof(name), "f%d", i);
		cr_assert(tl_exists(env.src, name), "%s deleted in the source", name);
		cr_assert(tl_exists(mnt.dir, name), "%s gone from the mount", name);
	}
	/* not retried in a loop: a later edit runs alone */
	tl_write(env.tgt, "later", "a later file\n");
	wait_holds(env.src, "later", "a later file\n");
	cr_assert_eq(log_lines("\"result\":\"refused\"", ""), 1);
	cr_assert(tl_exists(env.src, "f0"));
}

Test(autosync, without_watch_nothing_is_carried)
{
	tl_mount(&env, &mnt, NULL);
	tl_write(env.tgt, "new", "made in the target\n");
	tl_write(env.src, "c", "changed in the source\n");
	/* four times the quiet period and the run that would follow it */
	usleep(2000 * 1000);
	cr_assert(!tl_exists(env.src, "new"));
	cr_assert(holds(env.tgt, "c", "common\n"));
	cr_assert_eq(log_lines("\"auto-reconcile\"", ""), 0);
}

Test(autosync, unmount_right_after_an_outside_edit)
{
	tl_mount(&env, &mnt, (const char *[]){ "--watch", NULL });
	tl_write(env.tgt, "new", "made in the target\n");
	/* A writer that never lets its file be quiet: an unmount that waited
	 * for a quiet period would wait for it until the deadline. */
	fflush(NULL);
	writer = fork();
	cr_assert(writer >= 0);
	if (writer == 0) {
		int fd = open(T("busy"), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		for (;;) {
			if (fd < 0 || write(fd, "x", 1) != 1)
				_exit(1);
			usleep(50000);
		}
	}
	struct stat st;
	long end = now_ms() + DEADLINE_MS;
	while (stat(T("busy"), &st) < 0 || st.st_size == 0)
		cr_assert(now_ms() <= end, "the writer did not start");
	/* sbfs umount returns at once; the daemon ends after. Half the
	 * 60 s a file open for writing is held: an unmount that drained what
	 * waits, rather than cancel it, would still be waiting. */
	struct tl_run u = tl_sbfs_run(&env, NULL, (const char *[]){ "umount", mnt.dir, NULL });
	cr_assert_eq(u.status, 0, "sbfs umount: %s", u.err);
	tl_run_free(&u);
	end = now_ms() + 30000;
	while (!tl_mount_daemon_gone(&mnt)) {
		cr_assert(now_ms() <= end, "the daemon still runs 30 s after the unmount");
		usleep(20000);
	}
	tl_umount_wait(&mnt);
	kill(writer, SIGKILL);
	waitpid(writer, NULL, 0);
	writer = 0;
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert(r.status == 0, "reconcile after the unmount exited %d:\n%s%s", r.status, r.out,
		  r.err);
	tl_run_free(&r);
	char *why = NULL;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "%s", why);
	cr_assert(holds(env.src, "new", "made in the target\n"));
}
