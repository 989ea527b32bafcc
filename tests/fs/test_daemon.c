/*
 * A background mount as a Linux daemon: what it says goes to syslog, each
 * line naming the partnership, a message repeated past the burst limit
 * counted and the count said once (fs/syslog.c, linked in; the tests read
 * its lines from SBFS_TEST_SYSLOG's file, never the system's /dev/log).
 * sbfs umount of a busy mount names who holds it; -z detaches it.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "testlib.h"
#include "../../fs/cli.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static struct tl_env env;
static struct tl_mount mnt;

static struct tl_proc holder;	/* a process working in the mount */

static void setup(void) { tl_env_init(&env); }
static void teardown(void)
{
	if (holder.pid && !holder.reaped) {
		struct tl_run r = tl_proc_wait(&holder, SIGKILL);
		tl_run_free(&r);
	}
	memset(&holder, 0, sizeof(holder));
	tl_mount_cleanup(&mnt);
	free(mnt.dir);
	free(mnt.sanlog);
	memset(&mnt, 0, sizeof(mnt));
	unsetenv("SBFS_TEST_SYSLOG");
	tl_env_fini(&env);
}

TestSuite(daemon, .init = setup, .fini = teardown, .timeout = 120);

static size_t count(const char *hay, const char *needle)
{
	size_t n = 0;
	for (const char *s = hay; (s = strstr(s, needle)); s += strlen(needle))
		n++;
	return n;
}

Test(daemon, start_and_stop_lines_name_the_partnership)
{
	tl_fuse_required();
	char *log = tl_join(env.base, "syslog");
	cr_assert(setenv("SBFS_TEST_SYSLOG", log, 1) == 0);
	tl_mount(&env, &mnt, NULL);
	tl_umount(&env, &mnt);
	char *got = tl_read("/", log + 1);
	cr_assert(got, "the daemon wrote no log line");
	char *want = NULL;
	cr_assert(asprintf(&want, "info: %s <-> %s: mounted at %s\n", env.src, env.tgt, mnt.dir) > 0);
	cr_assert(strstr(got, want), "no start line in:\n%s", got);
	free(want);
	cr_assert(asprintf(&want, "info: %s <-> %s: unmounted from %s\n", env.src, env.tgt, mnt.dir) > 0);
	cr_assert(strstr(got, want), "no stop line in:\n%s", got);
	cr_assert(strstr(got, "mounted at") < strstr(got, "unmounted from"), "%s", got);
	free(want);
	free(got);
	free(log);
}

/* In the foreground nothing goes to syslog: the lines stay on the
 * terminal (or the journal of the service running it). */
Test(daemon, foreground_says_it_on_its_own_streams)
{
	tl_fuse_required();
	char *log = tl_join(env.base, "syslog"), *dir = tl_join(env.base, "mnt");
	cr_assert(setenv("SBFS_TEST_SYSLOG", log, 1) == 0);
	tl_mkdir(env.base, "mnt");
	struct tl_proc p;
	tl_spawn_ex(&p, &env, NULL, 0, OPTS("mount", "-f", env.src, env.tgt, dir));
	int up = 0;
	for (int i = 0; i < 600 && !up && !tl_proc_done(&p); i++) {
		up = tl_mounted(dir);
		if (!up)
			usleep(50000);
	}
	struct tl_proc u;
	tl_spawn_ex(&u, &env, NULL, 0, OPTS("umount", dir));
	struct tl_run ur = tl_proc_wait(&u, 0);
	struct tl_run r = tl_proc_wait(&p, up ? 0 : SIGKILL);
	cr_assert(up, "sbfs mount -f never mounted: %s", r.err);
	cr_assert_eq(ur.status, 0, "%s", ur.err);
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "Mounted "), "%s", r.out);
	cr_assert(!tl_exists("/", log + 1), "the foreground mount wrote to syslog");
	tl_run_free(&r);
	tl_run_free(&ur);
	free(dir);
	free(log);
}

Test(daemon, repeats_are_counted_and_said_once)
{
	char *log = tl_join(env.base, "syslog");
	cr_assert(setenv("SBFS_TEST_SYSLOG", log, 1) == 0);
	cr_assert(dlog_open("/a", "/b") == 0);
	for (int i = 0; i < 20; i++)
		dlog_at(LOG_WARNING, "disk full", 1000);
	dlog_at(LOG_ERR, "another", 1001);
	/* the window over: the count comes first, then the message anew */
	dlog_at(LOG_WARNING, "disk full", 1000 + DLOG_WINDOW);
	for (int i = 0; i < 3; i++)
		dlog_at(LOG_WARNING, "held at close", 1000 + DLOG_WINDOW);
	for (int i = 0; i < DLOG_BURST + 2; i++)
		dlog_at(LOG_WARNING, "held at close", 1000 + DLOG_WINDOW);
	dlog_close();
	char *got = tl_read("/", log + 1);
	cr_assert(got);
	cr_assert_eq(count(got, "warning: /a <-> /b: disk full\n"), DLOG_BURST + 1, "%s", got);
	char *want = NULL;
	cr_assert(asprintf(&want, "notice: /a <-> /b: the message \"disk full\" repeated %d more times\n",
			   20 - DLOG_BURST) > 0);
	cr_assert_eq(count(got, want), 1, "%s", got);
	/* said before the message's next window opens */
	cr_assert(strstr(got, want) < strstr(strstr(got, "another"), "disk full"), "%s", got);
	free(want);
	cr_assert_eq(count(got, "err: /a <-> /b: another\n"), 1, "%s", got);
	cr_assert_eq(count(got, "held at close\n"), DLOG_BURST, "%s", got);
	cr_assert(strstr(got, "\"held at close\" repeated 5 more times\n"), "%s", got);
	free(got);
	free(log);
}

Test(daemon, umount_of_a_busy_mount_names_the_holder)
{
	tl_fuse_required();
	tl_mount(&env, &mnt, NULL);
	tl_mkdir(mnt.dir, "work");
	char *in = tl_join(mnt.dir, "work");
	tl_spawn_ex(&holder, NULL, "sh", 0, OPTS("-c", "cd \"$1\" && exec sleep 600", "sh", in));
	char link[64], cwd[4096] = "";
	snprintf(link, sizeof(link), "/proc/%d/cwd", (int)holder.pid);
	for (int i = 0; i < 600 && strcmp(cwd, in) && !tl_proc_done(&holder); i++) {
		ssize_t n = readlink(link, cwd, sizeof(cwd) - 1);
		cwd[n > 0 ? n : 0] = '\0';
		if (strcmp(cwd, in))
			usleep(20000);
	}
	cr_assert_str_eq(cwd, in, "the holder never went into the mount");
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("umount", mnt.dir));
	cr_assert_eq(r.status, 3, "umount of a busy mount: exit %d\n%s", r.status, r.err);
	char want[64];
	snprintf(want, sizeof(want), "  %d sleep\n", (int)holder.pid);
	cr_assert(strstr(r.err, mnt.dir) && strstr(r.err, "busy") && strstr(r.err, "PID COMMAND\n") &&
		  strstr(r.err, want) && strstr(r.err, "sbfs umount -z"), "%s", r.err);
	cr_assert(tl_mounted(mnt.dir), "the busy mount went");
	tl_run_free(&r);
	r = tl_sbfs_run(&env, NULL, OPTS("umount", "--lazy", mnt.dir));
	cr_assert_eq(r.status, 0, "umount --lazy: exit %d\n%s", r.status, r.err);
	cr_assert(!tl_mounted(mnt.dir), "still mounted after umount -z");
	tl_run_free(&r);
	r = tl_proc_wait(&holder, SIGKILL);	/* the last user gone, the daemon ends */
	tl_run_free(&r);
	tl_umount_wait(&mnt);
	free(in);
}

/*
 * A reconcile sent to the mount shows its progress line as it moves, as a
 * local one does: on a terminal (script(1) gives it one), the scan's line
 * comes before the analysis, not all of it after the result.
 */
Test(daemon, forwarded_progress_shows_in_its_place)
{
	tl_fuse_required();
	tl_mount(&env, &mnt, NULL);
	for (int i = 0; i < 2100; i++) {
		char rel[32];
		snprintf(rel, sizeof(rel), "f%04d", i);
		tl_write(env.tgt, rel, "made on the target\n");
	}
	char *cmd = NULL;
	cr_assert(asprintf(&cmd, "exec '%s' reconcile '%s'", getenv("SBFS_BIN"), mnt.dir) > 0);
	tl_spawn_ex(&holder, &env, "script", 0, OPTS("-qefc", cmd, "/dev/null"));
	struct tl_run r = tl_proc_wait(&holder, 0);
	free(cmd);
	cr_assert_eq(r.status, 0, "exit %d\n%s%s", r.status, r.out, r.err);
	const char *scan = strstr(r.out, "Scanning: 1024 entries");
	const char *analysis = strstr(r.out, "=== SYNC ANALYSIS ===");
	cr_assert(scan && analysis, "%s", r.out);
	cr_assert(scan < analysis, "the progress came after the analysis:\n%s", r.out);
	cr_assert(strstr(r.out, "\r\033[KScanning: 2048 entries\r"), "a progress line was cut");
	tl_run_free(&r);
	tl_umount(&env, &mnt);
}
