/*
 * Ignore patterns end to end: ignored paths are never copied, deleted or
 * conflicted; changing the patterns never deletes (an un-ignored path is
 * taken as new); the per-partnership file and `sbfs ignore`; the default
 * list on and off; a bad pattern refused before anything changes; and in
 * the mount, ignored paths written to the source only and shown from it.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
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

TestSuite(ignore, .init = setup, .fini = teardown, .timeout = 30);

static struct tl_run run_ok(const char *cmd, const char *const *opts, int want)
{
	struct tl_run r = tl_cmd(&env, cmd, opts);
	cr_assert_eq(r.status, want, "sbfs %s: exit %d, not %d:\n%s%s", cmd, r.status, want,
		     r.out, r.err);
	return r;
}

static void reconcile(const char *const *opts)
{
	struct tl_run r = run_ok("reconcile", opts, 0);
	tl_run_free(&r);
}

/* The partnership's ignore file (there is one partnership per env). */
static char *ignore_file(void)
{
	glob_t g;
	char *pat = tl_join(env.state, "*/ignore");
	cr_assert_eq(glob(pat, 0, NULL, &g), 0, "no %s", pat);
	cr_assert_eq(g.gl_pathc, 1);
	char *res = strdup(g.gl_pathv[0]);
	globfree(&g);
	free(pat);
	return res;
}

Test(ignore, never_copied)
{
	tl_write(env.src, "keep.c", "c\n");
	tl_write(env.src, "a.o", "o\n");
	tl_write(env.src, "lib/b.o", "o\n");
	tl_write(env.src, "cache/x", "x\n");
	tl_write(env.tgt, "cache", "a file: not ignored by cache/\n");
	tl_write(env.src, ".DS_Store", "finder\n");
	const char *const *ign = OPTS("--ignore", "*.o", "--ignore", "cache/");

	struct tl_run r = run_ok("status", OPTS("--json", "--ignore", "*.o", "--ignore", "cache/"), 1);
	cr_expect(strstr(r.out, "\"ignored\":4"), "%s", r.out);	/* a.o lib/b.o cache .DS_Store */
	tl_run_free(&r);
	reconcile(ign);
	cr_expect(tl_exists(env.tgt, "keep.c"));
	cr_expect(tl_exists(env.tgt, "lib"));
	cr_expect(!tl_exists(env.tgt, "a.o"));
	cr_expect(!tl_exists(env.tgt, "lib/b.o"));
	cr_expect(!tl_exists(env.tgt, ".DS_Store"));
	cr_expect(!tl_exists(env.tgt, "cache/x"), "an ignored directory is not descended into");
	cr_expect(tl_exists(env.src, "a.o"));
	char *c = tl_read(env.tgt, "cache");
	cr_expect_str_eq(c, "a file: not ignored by cache/\n", "the target's file is left alone");
	free(c);
	r = run_ok("status", OPTS("--ignore", "*.o", "--ignore", "cache/"), 0);
	cr_expect(strstr(r.out, "Ignored: 4"), "%s", r.out);
	tl_run_free(&r);
}

Test(ignore, never_deleted_nor_conflicted)
{
	tl_write(env.src, "gone.txt", "1\n");
	tl_write(env.src, "both.txt", "1\n");
	tl_write(env.src, "d/inner", "1\n");
	reconcile(NULL);
	tl_rm(env.src, "gone.txt");
	tl_write(env.src, "both.txt", "source edit\n");
	tl_write(env.tgt, "both.txt", "target edit, longer\n");
	tl_rm(env.src, "d");
	const char *const *ign = OPTS("--ignore", "gone.txt", "--ignore", "both.txt",
				      "--ignore", "/d");
	reconcile(ign);
	cr_expect(tl_exists(env.tgt, "gone.txt"));
	cr_expect(tl_exists(env.tgt, "d/inner"));
	char *t = tl_read(env.tgt, "both.txt"), *s = tl_read(env.src, "both.txt");
	cr_expect_str_eq(t, "target edit, longer\n");
	cr_expect_str_eq(s, "source edit\n");
	free(t);
	free(s);
	struct tl_run r = run_ok("conflicts", NULL, 0);
	tl_run_free(&r);
}

/* A file in an ignored directory keeps the directory on the other side. */
Test(ignore, keeps_its_directory)
{
	tl_write(env.src, "photos/a.jpg", "jpg\n");
	tl_write(env.src, "o1", "o\n");	/* so that this is no mass deletion */
	tl_write(env.src, "o2", "o\n");
	tl_write(env.src, "o3", "o\n");
	reconcile(NULL);
	tl_write(env.tgt, "photos/Thumbs.db", "thumbs\n");
	tl_rm(env.src, "photos");
	reconcile(NULL);
	cr_expect(!tl_exists(env.tgt, "photos/a.jpg"), "the deletion is carried");
	cr_expect(tl_exists(env.tgt, "photos/Thumbs.db"), "the ignored file is not");
}

/* Un-ignoring makes a first-sync decision: copies, never deletes. */
Test(ignore, unignore_never_deletes)
{
	tl_write(env.src, "x.txt", "x\n");
	tl_write(env.src, "d/y.txt", "y\n");
	tl_write(env.src, "same.txt", "same\n");
	reconcile(NULL);
	reconcile(OPTS("--ignore", "x.txt", "--ignore", "d", "--ignore", "same.txt"));
	tl_rm(env.src, "x.txt");
	tl_rm(env.src, "d");
	reconcile(NULL);
	cr_expect(tl_exists(env.tgt, "x.txt"), "deleted on un-ignoring");
	cr_expect(tl_exists(env.src, "x.txt"), "taken as new: copied back");
	cr_expect(tl_exists(env.tgt, "d/y.txt"));
	cr_expect(tl_exists(env.src, "d/y.txt"));
	cr_expect(tl_trees_equal(env.src, env.tgt, NULL));
	struct tl_run r = run_ok("status", NULL, 0);
	tl_run_free(&r);
}

Test(ignore, file_and_command)
{
	struct tl_run r = run_ok("ignore", OPTS("--add", "*.tmp"), 0);
	cr_expect(strstr(r.out, "Added: *.tmp"), "%s", r.out);
	cr_expect(strstr(r.out, ".DS_Store    (default)"), "%s", r.out);
	tl_run_free(&r);
	r = run_ok("ignore", OPTS("--add", "build/", "--add", "*.tmp"), 0);
	cr_expect(strstr(r.out, "Already in the file: *.tmp"), "%s", r.out);
	tl_run_free(&r);
	char *f = ignore_file();
	struct stat st;
	cr_assert_eq(lstat(f, &st), 0);
	cr_expect_eq(st.st_mode & 07777, 0600);
	char *dir = strdup(f);
	*strrchr(dir, '/') = '\0';
	char *c = tl_read(dir, "ignore");
	cr_expect_str_eq(c, "*.tmp\nbuild/\n");
	free(c);

	r = run_ok("ignore", OPTS("--ignore", "extra"), 0);
	cr_expect(strstr(r.out, "  *.tmp\n"), "%s", r.out);
	cr_expect(strstr(r.out, "  extra    (--ignore)\n"), "%s", r.out);
	cr_expect(strstr(r.out, f), "names the file: %s", r.out);
	tl_run_free(&r);

	tl_write(env.src, "a.tmp", "t\n");
	tl_write(env.src, "build/o", "o\n");
	reconcile(NULL);
	cr_expect(!tl_exists(env.tgt, "a.tmp"));
	cr_expect(!tl_exists(env.tgt, "build"));

	r = run_ok("ignore", OPTS("--remove", "*.tmp"), 0);
	cr_expect(strstr(r.out, "Removed: *.tmp"), "%s", r.out);
	tl_run_free(&r);
	c = tl_read(dir, "ignore");
	cr_expect_str_eq(c, "build/\n");
	free(c);
	reconcile(NULL);
	cr_expect(tl_exists(env.tgt, "a.tmp"));

	r = run_ok("ignore", OPTS("--remove", "nothere"), 2);
	cr_expect(strstr(r.err, "nothere"), "%s", r.err);
	tl_run_free(&r);
	r = run_ok("ignore", OPTS("--remove", ".DS_Store"), 2);
	cr_expect(strstr(r.err, "a default"), "%s", r.err);
	tl_run_free(&r);
	r = run_ok("ignore", OPTS("--add", "[oops"), 2);
	cr_expect(strstr(r.err, "[oops"), "%s", r.err);
	tl_run_free(&r);
	c = tl_read(dir, "ignore");
	cr_expect_str_eq(c, "build/\n", "a bad pattern changed the file");
	free(c);
	free(dir);
	free(f);
}

static const char *const dflt[] = { ".DS_Store", "sub/Thumbs.db", ".Trash-1000/f",
				    "System Volume Information/x", "$RECYCLE.BIN/y",
				    ".sbfs-tmpfoo" };

static void write_defaults(void)
{
	for (size_t i = 0; i < sizeof(dflt) / sizeof(dflt[0]); i++)
		tl_write(env.src, dflt[i], "junk\n");
	tl_write(env.src, "real", "real\n");
}

Test(ignore, defaults_on)
{
	write_defaults();
	reconcile(NULL);
	cr_expect(tl_exists(env.tgt, "real"));
	for (size_t i = 0; i < sizeof(dflt) / sizeof(dflt[0]); i++)
		cr_expect(!tl_exists(env.tgt, dflt[i]), "%s copied", dflt[i]);
	/* one re-included by a '!' */
	reconcile(OPTS("--ignore", "!.DS_Store"));
	cr_expect(tl_exists(env.tgt, ".DS_Store"));
}

Test(ignore, defaults_off_option)
{
	write_defaults();
	reconcile(OPTS("--no-default-ignores"));
	for (size_t i = 0; i < sizeof(dflt) / sizeof(dflt[0]); i++)
		cr_expect(tl_exists(env.tgt, dflt[i]), "%s not copied", dflt[i]);
}

Test(ignore, defaults_off_file)
{
	write_defaults();
	struct tl_run r = run_ok("ignore", OPTS("--add", "#no-defaults"), 0);
	cr_expect(strstr(r.out, "(default, off: #no-defaults in the file)"), "%s", r.out);
	tl_run_free(&r);
	reconcile(NULL);
	for (size_t i = 0; i < sizeof(dflt) / sizeof(dflt[0]); i++)
		cr_expect(tl_exists(env.tgt, dflt[i]), "%s not copied", dflt[i]);
}

Test(ignore, bad_pattern)
{
	tl_write(env.src, "a", "a\n");
	struct tl_run r = run_ok("reconcile", OPTS("--ignore", "ok", "--ignore", "[abc"), 2);
	cr_expect(strstr(r.err, "'[abc'"), "%s", r.err);
	cr_expect(strstr(r.err, "not closed"), "%s", r.err);
	tl_run_free(&r);
	cr_expect_eq(tl_count(env.tgt), 0, "something was copied");

	/* in the file: named with its line */
	r = run_ok("ignore", OPTS("--add", "fine"), 0);
	tl_run_free(&r);
	char *f = ignore_file();
	FILE *fp = fopen(f, "w");
	fputs("fine\nbad\\\n", fp);
	fclose(fp);
	r = run_ok("reconcile", NULL, 2);
	cr_expect(strstr(r.err, "ignore, line 2: 'bad\\'"), "%s", r.err);
	cr_expect(strstr(r.err, f), "%s", r.err);
	tl_run_free(&r);
	r = run_ok("status", NULL, 2);
	tl_run_free(&r);
	cr_expect_eq(tl_count(env.tgt), 0, "something was copied");
	free(f);
}

/* ================================================================ mount */

static void setup_mount(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	tl_write(env.src, "shared.txt", "both\n");
	tl_write(env.tgt, "hidden.log", "the target's own\n");
	tl_mount(&env, &mnt, OPTS("--ignore", "*.log", "--ignore", "cache/"));
}

static void teardown_mount(void)
{
	tl_mount_cleanup(&mnt);
	tl_env_fini(&env);
}

TestSuite(ignore_mount, .init = setup_mount, .fini = teardown_mount, .timeout = 60);

static int listed(const char *dir, const char *name)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int found = 0;
	cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d)))
		found |= !strcmp(de->d_name, name);
	closedir(d);
	return found;
}

Test(ignore_mount, source_only)
{
	const char *m = mnt.dir;
	cr_expect(tl_exists(env.tgt, "shared.txt"), "the mount's reconcile ran");
	cr_expect(!tl_exists(env.src, "hidden.log"), "the mount's reconcile copied an ignored file");
	cr_expect(!tl_exists(m, "hidden.log"), "the target's ignored file is shown");
	cr_expect(!listed(m, "hidden.log"));

	tl_write(m, "new.log", "written through the mount\n");
	cr_expect(tl_exists(env.src, "new.log"));
	cr_expect(!tl_exists(env.tgt, "new.log"), "an ignored file reached the target");
	char *c = tl_read(m, "new.log");
	cr_expect_str_eq(c, "written through the mount\n");
	free(c);
	cr_expect(listed(m, "new.log"));

	cr_assert_eq(mkdir(tl_at(m, "cache"), 0755), 0, "%s", strerror(errno));
	tl_write(m, "cache/blob", "cached\n");
	cr_expect(tl_exists(env.src, "cache/blob"));
	cr_expect(!tl_exists(env.tgt, "cache"));

	/* renamed within ignored names: the source only */
	cr_expect_eq(rename(tl_at(m, "new.log"), tl_at(m, "old.log")), 0, "%s", strerror(errno));
	cr_expect(tl_exists(env.src, "old.log") && !tl_exists(env.src, "new.log"));
	cr_expect(!tl_exists(env.tgt, "old.log"));
	/* between ignored and not: EXDEV, so that mv copies */
	cr_expect_eq(rename(tl_at(m, "shared.txt"), tl_at(m, "shared.log")), -1);
	cr_expect_eq(errno, EXDEV);
	cr_expect_eq(rename(tl_at(m, "old.log"), tl_at(m, "plain.txt")), -1);
	cr_expect_eq(errno, EXDEV);
	/* not ignored: both sides, as ever */
	tl_write(m, "plain.txt", "plain\n");
	cr_expect(tl_exists(env.tgt, "plain.txt"));

	cr_expect_eq(unlink(tl_at(m, "old.log")), 0, "%s", strerror(errno));
	cr_expect(!tl_exists(env.src, "old.log"));
	cr_expect(tl_exists(env.tgt, "hidden.log"), "the target's ignored file was touched");

	/* a command sent to the mount takes the mount's patterns too */
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("status", mnt.dir));
	cr_expect_eq(r.status, 0, "sbfs status MNT: exit %d\n%s%s", r.status, r.out, r.err);
	cr_expect(strstr(r.out, "Ignored: "), "%s", r.out);
	tl_run_free(&r);

	tl_umount(&env, &mnt);
	r = run_ok("status", OPTS("--ignore", "*.log", "--ignore", "cache/"), 0);
	tl_run_free(&r);
	cr_expect(tl_exists(env.src, "cache/blob") && !tl_exists(env.tgt, "cache"));
	c = tl_read(env.tgt, "hidden.log");
	cr_expect_str_eq(c, "the target's own\n");
	free(c);
}
