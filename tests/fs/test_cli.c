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
#include <sys/stat.h>
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
