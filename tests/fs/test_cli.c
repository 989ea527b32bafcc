/*
 * The command line: help, version, a first sync; commands forwarded to a
 * running mount through its control socket; error messages that name the
 * path and the real cause; mount options checked before anything changes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static struct tl_env env;
static struct tl_mount mnt;

static void setup(void) { tl_env_init(&env); }
static void teardown(void) { tl_env_fini(&env); }

TestSuite(cli, .init = setup, .fini = teardown);

Test(cli, version_and_help)
{
	struct tl_run r = tl_sbfs_run(&env, NULL, (const char *[]){ "--version", NULL });
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "sbfs "));
	tl_run_free(&r);
	r = tl_sbfs_run(&env, NULL, (const char *[]){ "reconcile", "--help", NULL });
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "--dry-run"));
	tl_run_free(&r);
	r = tl_sbfs_run(&env, NULL, (const char *[]){ "frobnicate", NULL });
	cr_assert_eq(r.status, 2);
	tl_run_free(&r);
}

Test(cli, first_sync_then_in_sync)
{
	tl_write(env.src, "a.txt", "from source\n");
	tl_write(env.tgt, "dir/b.txt", "from target\n");
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	char *why;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "%s", why);
	r = tl_cmd(&env, "status", NULL);
	cr_assert_eq(r.status, 0, "%s", r.out);
	tl_run_free(&r);
}

/* ================================================================ messages */

/* A refusal: exit 2, an error naming what and why, and nothing changed:
 * the target still empty, the state directory as it was. */
static void expect_refused(const char *const *argv, const char *has, const char *has2,
			   size_t state_entries)
{
	struct tl_run r = tl_sbfs_run(&env, NULL, argv);
	cr_assert_eq(r.status, 2, "sbfs %s: exit %d, 2 expected:\n%s%s", argv[0], r.status, r.out,
		     r.err);
	cr_assert(strstr(r.err, has) && (!has2 || strstr(r.err, has2)),
		  "sbfs %s: the error does not say '%s' / '%s':\n%s", argv[0], has,
		  has2 ? has2 : "", r.err);
	cr_assert(!strstr(r.err, "Cannot allocate memory"), "%s", r.err);
	cr_assert_eq(tl_count(env.tgt), 0, "a refused run changed the target");
	cr_assert_eq(tl_count(env.state), state_entries, "a refused run changed the state");
	tl_run_free(&r);
}

Test(cli, empty_or_bad_paths_in_options)
{
	tl_write(env.src, "a.txt", "a\n");
	tl_write(env.base, "a-file", "x\n");
	char *under_file = tl_join(env.base, "a-file/state");
	size_t n = tl_count(env.state);
	expect_refused(OPTS("reconcile", "--state-dir", "", env.src, env.tgt), "--state-dir ''",
		       "empty", n);
	expect_refused(OPTS("reconcile", "--state-dir=", env.src, env.tgt), "--state-dir ''",
		       "empty", n);
	expect_refused(OPTS("status", "--state-dir", under_file, env.src, env.tgt), under_file,
		       "Not a directory", n);
	expect_refused(OPTS("reconcile", "--log-file", "", env.src, env.tgt), "--log-file ''",
		       "empty", n);
	expect_refused(OPTS("reconcile", "--auto-resolve", "", env.src, env.tgt),
		       "--auto-resolve ''", "empty", n);
	free(under_file);
}

Test(cli, umount_of_what_is_not_a_mount)
{
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("umount", env.src));
	cr_assert_eq(r.status, 2, "sbfs umount of a plain directory: exit %d\n%s", r.status, r.err);
	cr_assert(strstr(r.err, env.src) && strstr(r.err, "not a mount point"), "%s", r.err);
	tl_run_free(&r);
	char *missing = tl_join(env.base, "no-such-dir");
	r = tl_sbfs_run(&env, NULL, OPTS("umount", missing));
	cr_assert_eq(r.status, 2, "sbfs umount of a missing path: exit %d\n%s", r.status, r.err);
	cr_assert(strstr(r.err, missing) && strstr(r.err, "No such file"), "%s", r.err);
	tl_run_free(&r);
	r = tl_sbfs_run(&env, NULL, OPTS("umount", "/proc"));
	cr_assert_eq(r.status, 2, "sbfs umount of /proc: exit %d\n%s", r.status, r.err);
	cr_assert(strstr(r.err, "not an sbfs mount"), "%s", r.err);
	tl_run_free(&r);
	free(missing);
}

/*
 * A directory that could not be created (a full file system) is reported
 * with the real cause; what was to go in it is not "changed since the scan".
 * The target is a tmpfs with no free inode.
 */
static void teardown_full(void)
{
	if (env.tgt)
		umount2(env.tgt, MNT_DETACH);
	tl_env_fini(&env);
}

TestSuite(cli_full, .init = setup, .fini = teardown_full, .timeout = 60);

Test(cli_full, no_space_for_a_directory)
{
	cr_assert(mount("sbfs-test", env.tgt, "tmpfs", 0, "nr_inodes=2") == 0,
		  "mount tmpfs on %s: %s", env.tgt, strerror(errno));
	tl_write(env.tgt, "filler", "takes the last inode\n");
	for (int i = 0; i < 20; i++) {
		char name[32];
		snprintf(name, sizeof(name), "d/f%02d", i);
		tl_write(env.src, name, "in d\n");
	}
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 3, "exit %d:\n%s%s", r.status, r.out, r.err);
	cr_assert(strstr(r.err, "d: ") && strstr(r.err, "No space left on device"),
		  "the error does not name d and the full disk:\n%s", r.err);
	cr_assert(!strstr(r.err, "changed since the scan") &&
		  !strstr(r.err, "Resource temporarily unavailable"), "%s", r.err);
	cr_assert(!strstr(r.err, "d/f01"), "one report per item of d:\n%s", r.err);
	tl_run_free(&r);
}

/*
 * Between the scan and the apply (here: while resolve waits for an
 * answer), the source's directory d became a symlink: one warning naming
 * d and why, not one "Bad file descriptor" per file in it, and nothing
 * read through the symlink.
 */
Test(cli, directory_swapped_for_a_symlink)
{
	tl_write(env.src, "zz.txt", "source\n");
	tl_write(env.tgt, "zz.txt", "target, longer\n");
	tl_write(env.src, "d/synced.txt", "on both sides\n");
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 1, "%s%s", r.out, r.err);
	tl_run_free(&r);
	for (int i = 0; i < 20; i++) {
		char name[32];
		snprintf(name, sizeof(name), "d/f%02d", i);
		tl_write(env.src, name, "in d\n");
	}
	tl_write(env.base, "elsewhere/f00", "not to be read\n");
	char *d = tl_join(env.src, "d"), *elsewhere = tl_join(env.base, "elsewhere");

	int in[2];
	char outp[] = "/tmp/sbfs-out.XXXXXX";
	int of = mkstemp(outp);
	cr_assert(of >= 0 && pipe(in) == 0);
	unlink(outp);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(in[0], 0);
		dup2(of, 1);
		dup2(of, 2);
		close(in[1]);
		setenv("SBFS_STATE_DIR", env.state, 1);
		execl(tl_sbfs(), "sbfs", "resolve", env.src, env.tgt, "d", "zz.txt", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	/* the prompt comes once the plan is made */
	char buf[8192];
	ssize_t n = 0;
	for (int k = 0; k < 6000; k++) {
		n = pread(of, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		if (strstr(buf, "[s]ource wins"))
			break;
		usleep(10000);
	}
	cr_assert(strstr(buf, "[s]ource wins"), "resolve did not ask:\n%s", buf);
	tl_rm(env.src, "d");
	cr_assert(symlink(elsewhere, d) == 0);
	cr_assert(write(in[1], "s\n", 2) == 2);
	close(in[1]);
	int st;
	cr_assert(waitpid(pid, &st, 0) == pid);
	n = pread(of, buf, sizeof(buf) - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	close(of);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "exit %d:\n%s", WEXITSTATUS(st), buf);
	cr_assert(!strstr(buf, "Bad file descriptor"), "%s", buf);
	cr_assert(strstr(buf, "d: changed in the source since the scan"), "%s", buf);
	cr_assert(!strstr(buf, "d/f0"), "a warning per file in d:\n%s", buf);
	cr_assert(!tl_exists(env.tgt, "d/f00"), "copied through the symlink");
	cr_assert(tl_exists(env.tgt, "d/synced.txt"));
	free(d);
	free(elsewhere);
}

/* ================================================================ forwarded */

/* Every test that mounts is unmounted (lazily) in .fini, whatever failed;
 * the watchdog started by tl_mount does it should the test process die. */
static void setup_mounted(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	tl_write(env.src, "a.txt", "a\n");
	tl_write(env.tgt, "b.txt", "b\n");
	tl_mount(&env, &mnt, NULL);
}

static void teardown_mounted(void)
{
	tl_mount_cleanup(&mnt);
	tl_env_fini(&env);
}

TestSuite(forward, .init = setup_mounted, .fini = teardown_mounted, .timeout = 120);

static void expect_run(const char *const *argv, int status, const char *out_has)
{
	struct tl_run r = tl_sbfs_run(&env, NULL, argv);
	char cmd[512] = "";
	for (size_t i = 0; argv[i]; i++)
		snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), " %s", argv[i]);
	cr_assert_eq(r.status, status, "sbfs%s: exit %d, %d expected:\n%s%s", cmd, r.status,
		     status, r.out, r.err);
	if (out_has)
		cr_assert(strstr(r.out, out_has), "sbfs%s: no '%s' in:\n%s%s", cmd, out_has, r.out,
			  r.err);
	tl_run_free(&r);
}

/*
 * A short option in one forwarded command must not break the ones after:
 * the mount parses each client's arguments afresh (getopt's state, reset
 * fully, keeps no pointer into the previous request's buffer).
 */
Test(forward, short_and_long_options_in_a_row)
{
	tl_write(env.src, "c.txt", "made outside\n");
	expect_run(OPTS("reconcile", "-n", mnt.dir), 1, "c.txt");
	expect_run(OPTS("reconcile", "-q", mnt.dir), 0, "Done: 1");
	expect_run(OPTS("status", mnt.dir), 0, "Nothing to do");
	tl_write(env.tgt, "d.txt", "made outside\n");
	expect_run(OPTS("reconcile", "--dry-run", "--quiet", mnt.dir), 1, "Copy to source: 1");
	expect_run(OPTS("status", "--json", mnt.dir), 1, "\"d.txt\"");
	expect_run(OPTS("reconcile", "-nq", mnt.dir), 1, "Copy to source: 1");
	expect_run(OPTS("reconcile", "-q", "--auto-resolve", "newer", env.src, env.tgt), 0,
		   "Done: 1");
	expect_run(OPTS("conflicts", mnt.dir), 0, "No conflicts");
	expect_run(OPTS("reconcile", "-n", "-q", mnt.dir), 0, "Nothing to do");
	expect_run(OPTS("status", mnt.dir), 0, NULL);
	cr_assert(tl_exists(env.src, "d.txt") && tl_exists(env.tgt, "c.txt"));
	tl_umount(&env, &mnt);
}

/*
 * The client tells an option's value from an operand with the same table
 * the command line parses with: abbreviations, --opt=value, and options
 * after the operands reach the mount as they would a command run here.
 */
Test(forward, options_as_the_command_line_takes_them)
{
	tl_write(env.src, "c.txt", "made outside\n");
	expect_run(OPTS("status", "--state", env.state, mnt.dir), 1, "c.txt");
	expect_run(OPTS("status", mnt.dir, "--state-dir", env.state, "-q"), 1, "Copy to target: 1");
	expect_run(OPTS("reconcile", "--auto", "newer", mnt.dir), 0, "Done: 1");
	tl_write(env.tgt, "d.txt", "made outside\n");
	expect_run(OPTS("reconcile", mnt.dir, "--auto-resolve=source", "--quiet"), 0, "Done: 1");
	expect_run(OPTS("conflicts", "--json", mnt.dir), 0, "\"conflicts\":[]");
	/* an option the command does not take is refused, not forwarded */
	expect_run(OPTS("conflicts", "--dry-run", mnt.dir), 2, NULL);
	cr_assert(tl_exists(env.src, "d.txt") && tl_exists(env.tgt, "c.txt"));
	tl_umount(&env, &mnt);
}

/* The mount runs the command, with the client's --log-file: a relative
 * one is the client's, whatever the mount's working directory is. */
Test(forward, log_file_of_the_client)
{
	char *deflog = tl_join(env.state, "log.jsonl");
	cr_assert(chdir(env.base) == 0);
	tl_write(env.src, "c.txt", "made outside\n");
	expect_run(OPTS("reconcile", "--log-file", "client.jsonl", mnt.dir), 0, "Done: 1");
	char *log = tl_read(env.base, "client.jsonl");
	cr_assert(log && strstr(log, "\"c.txt\"") && strstr(log, "copy-to-target"),
		  "the client's --log-file holds: %s", log ? log : "(no such file)");
	free(log);
	log = tl_read(env.state, "log.jsonl");
	cr_assert(!log || !strstr(log, "\"c.txt\""), "logged in %s too:\n%s", deflog, log);
	free(log);
	/* the next command without one logs where the mount does */
	tl_write(env.tgt, "d.txt", "made outside\n");
	expect_run(OPTS("reconcile", "-q", mnt.dir), 0, "Done: 1");
	log = tl_read(env.state, "log.jsonl");
	cr_assert(log && strstr(log, "\"d.txt\""), "%s holds: %s", deflog, log ? log : "(none)");
	free(log);
	log = tl_read(env.base, "client.jsonl");
	cr_assert(!strstr(log, "\"d.txt\""), "logged in the last client's log: %s", log);
	free(log);
	free(deflog);
	tl_umount(&env, &mnt);
}
