/*
 * The command line: help, version, a first sync; commands forwarded to a
 * running mount through its control socket; error messages that name the
 * path and the real cause; mount options checked before anything changes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
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

/* ================================================================ mount options */

static void setup_fuse(void)
{
	tl_fuse_required();
	tl_env_init(&env);
}

static void teardown_opts(void)
{
	tl_mount_cleanup(&mnt);
	/* should a refused mount have happened after all */
	char *mp = env.base ? tl_join(env.base, "mnt") : NULL;
	if (mp && tl_mounted(mp)) {
		struct tl_proc p;
		tl_spawn_ex(&p, NULL, "fusermount3", 0, OPTS("-u", "-z", mp));
		struct tl_run r = tl_proc_wait(&p, 0);
		tl_run_free(&r);
	}
	free(mp);
	tl_env_fini(&env);
}

TestSuite(mount_opts, .init = setup_fuse, .fini = teardown_opts, .timeout = 120);

/* Bad -o options are found before the reconcile could change anything. */
Test(mount_opts, bad_option_changes_nothing)
{
	tl_write(env.src, "a.txt", "a\n");
	tl_write(env.tgt, "b.txt", "b\n");
	char *mp = tl_join(env.base, "mnt");
	cr_assert(mkdir(mp, 0755) == 0);
	struct tl_run r = tl_mount_run(&env, mp, OPTS("-o", "bogusopt"));
	cr_assert_eq(r.status, 2, "exit %d:\n%s%s", r.status, r.out, r.err);
	cr_assert(strstr(r.err, "bogusopt"), "the error does not name the option:\n%s", r.err);
	cr_assert(!tl_mounted(mp), "mounted all the same");
	tl_run_free(&r);
	cr_assert(!tl_exists(env.tgt, "a.txt") && !tl_exists(env.src, "b.txt"),
		  "a refused mount synchronised the partners");
	cr_assert_eq(tl_count(env.src), 1);
	cr_assert_eq(tl_count(env.tgt), 1);
	cr_assert_eq(tl_count(env.state), 0, "a refused mount wrote the state directory");
	free(mp);
}

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	*len = 0;
	if (f) {
		fseek(f, 0, SEEK_END);
		long n = ftell(f);
		rewind(f);
		buf = malloc(n > 0 ? (size_t)n : 1);
		*len = fread(buf, 1, n > 0 ? (size_t)n : 0, f);
		fclose(f);
	}
	return buf;
}

/* The partnership's LMDB data file (the one partnership there). */
static char *data_mdb(void)
{
	struct tl_proc p;
	tl_spawn_ex(&p, NULL, "sh", 0,
		    OPTS("-c", "ls -d \"$0\"/*/data.mdb", env.state));
	struct tl_run r = tl_proc_wait(&p, 0);
	cr_assert_eq(r.status, 0, "no data.mdb in %s: %s", env.state, r.err);
	r.out[strcspn(r.out, "\n")] = '\0';
	char *res = strdup(r.out);
	tl_run_free(&r);
	return res;
}

static void copy_tree(const char *from, const char *to)
{
	struct tl_proc p;
	tl_spawn_ex(&p, NULL, "cp", 0, OPTS("-a", from, to));
	struct tl_run r = tl_proc_wait(&p, 0);
	cr_assert_eq(r.status, 0, "cp -a %s %s: %s", from, to, r.err);
	tl_run_free(&r);
}

#define EROFS_EXPECTED(call, what)                                                          \
	do {                                                                                \
		errno = 0;                                                                  \
		int rc_ = (call);                                                           \
		cr_assert(rc_ < 0 && errno == EROFS, "%s through a read-only mount: %s", what, \
			  rc_ >= 0 ? "allowed" : strerror(errno));                            \
	} while (0)

/* -o ro: the view is read-only, every write refused with EROFS; neither
 * partner nor the state is written, by the mount or a forwarded command. */
Test(mount_opts, read_only_writes_neither_partner_nor_the_state)
{
	tl_write(env.src, "synced.txt", "on both\n");
	expect_run(OPTS("reconcile", env.src, env.tgt), 0, NULL);
	tl_write(env.src, "a.txt", "only in the source\n");
	tl_write(env.tgt, "b.txt", "only in the target\n");
	tl_mkdir(env.src, "dir");
	char *snap_src = tl_join(env.base, "snap-src"), *snap_tgt = tl_join(env.base, "snap-tgt");
	copy_tree(env.src, snap_src);
	copy_tree(env.tgt, snap_tgt);
	char *mdb = data_mdb(), *logp = tl_join(env.state, "log.jsonl");
	size_t mdb_len, log_len;
	char *mdb0 = slurp(mdb, &mdb_len), *log0 = slurp(logp, &log_len);

	tl_mount(&env, &mnt, OPTS("-o", "ro"));
	char *a = tl_read(mnt.dir, "a.txt"), *b = tl_read(mnt.dir, "b.txt");
	cr_assert(a && !strcmp(a, "only in the source\n") && b && !strcmp(b, "only in the target\n"),
		  "the read-only view is not the union");
	free(a);
	free(b);
	char *p_new = tl_join(mnt.dir, "new.txt"), *p_a = tl_join(mnt.dir, "a.txt");
	char *p_dir = tl_join(mnt.dir, "dir"), *p_sub = tl_join(mnt.dir, "sub");
	EROFS_EXPECTED(open(p_new, O_WRONLY | O_CREAT, 0644), "create");
	EROFS_EXPECTED(open(p_a, O_WRONLY), "open for writing");
	EROFS_EXPECTED(truncate(p_a, 0), "truncate");
	EROFS_EXPECTED(unlink(p_a), "unlink");
	EROFS_EXPECTED(rename(p_a, p_new), "rename");
	EROFS_EXPECTED(chmod(p_a, 0600), "chmod");
	EROFS_EXPECTED(utimensat(AT_FDCWD, p_a, NULL, 0), "utimensat");
	EROFS_EXPECTED(mkdir(p_sub, 0755), "mkdir");
	EROFS_EXPECTED(rmdir(p_dir), "rmdir");
	EROFS_EXPECTED(symlink("a.txt", p_new), "symlink");
	EROFS_EXPECTED(link(p_a, p_new), "link");
	EROFS_EXPECTED(setxattr(p_a, "user.x", "1", 1, 0), "setxattr");
	free(p_new);
	free(p_a);
	free(p_dir);
	free(p_sub);

	/* commands that would write are refused; those that only read run */
	expect_run(OPTS("reconcile", mnt.dir), 2, NULL);
	expect_run(OPTS("resolve", "--source", mnt.dir, "a.txt"), 2, NULL);
	expect_run(OPTS("reconcile", "-n", mnt.dir), 1, "a.txt");
	expect_run(OPTS("status", mnt.dir), 1, NULL);
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("reconcile", mnt.dir));
	cr_assert(strstr(r.err, "read-only") && strstr(r.err, env.src), "%s", r.err);
	tl_run_free(&r);
	tl_umount(&env, &mnt);

	char *why = NULL;
	cr_assert(tl_trees_equal(env.src, snap_src, &why), "the source was written: %s", why);
	cr_assert(tl_trees_equal(env.tgt, snap_tgt, &why), "the target was written: %s", why);
	size_t n1, n2;
	char *mdb1 = slurp(mdb, &n1), *log1 = slurp(logp, &n2);
	cr_assert(n1 == mdb_len && !memcmp(mdb0, mdb1, n1), "the state (%s) was written", mdb);
	cr_assert(n2 == log_len && (!n2 || !memcmp(log0, log1, n2)), "the log was written");
	free(mdb0);
	free(mdb1);
	free(log0);
	free(log1);
	free(mdb);
	free(logp);
	free(snap_src);
	free(snap_tgt);
}
