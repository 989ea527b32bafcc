/*
 * Old versions kept (engine/versions.c): what reconcile replaces or deletes
 * on a side goes to that side's .sbfs-versions, never synced nor shown by
 * the mount; retention, restore, versions off, and a full disk whose oldest
 * versions make room for a copy.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define VD ".sbfs-versions"

static struct tl_env env;
static struct tl_mount mnt;
static char *tmpfs_dir;

static void setup(void) { tl_env_init(&env); }
static void teardown(void)
{
	tl_mount_cleanup(&mnt);
	if (tmpfs_dir) {
		umount2(tmpfs_dir, MNT_DETACH);
		free(tmpfs_dir);
		tmpfs_dir = NULL;
	}
	tl_env_fini(&env);
}

TestSuite(versions, .init = setup, .fini = teardown, .timeout = 60);

static int run(const char *cmd, const char *const *opts)
{
	struct tl_run r = tl_cmd(&env, cmd, opts);
	int st = r.status;
	if (st > 1)
		cr_log_warn("sbfs %s: %d\n%s%s", cmd, st, r.out, r.err);
	tl_run_free(&r);
	return st;
}

/* The names in root/.sbfs-versions/dir starting with prefix. */
static int count_versions(const char *root, const char *dir, const char *prefix, char *first)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/" VD "%s%s", root, *dir ? "/" : "", dir);
	DIR *d = opendir(path);
	int n = 0;
	struct dirent *de;
	if (!d)
		return 0;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix))) {
			if (first && !n)
				snprintf(first, 256, "%s", de->d_name);
			n++;
		}
	closedir(d);
	return n;
}

/* rel under root holds exactly want. */
static void expect(const char *root, const char *rel, const char *want)
{
	char *got = tl_read(root, rel);
	cr_assert(got && !strcmp(got, want), "%s/%s: %s, not %s", root, rel, got ? got : "(absent)",
		  want);
	free(got);
}

static char *version_content(const char *root, const char *name)
{
	char rel[512];
	snprintf(rel, sizeof(rel), VD "/%s", name);
	return tl_read(root, rel);
}

Test(versions, update_keeps_the_old_version)
{
	char name[256];
	tl_write(env.src, "notes/a.txt", "old\n");
	cr_assert_eq(run("reconcile", NULL), 0);
	tl_write(env.src, "notes/a.txt", "new content\n");
	cr_assert_eq(run("reconcile", NULL), 0);
	expect(env.tgt, "notes/a.txt", "new content\n");
	cr_assert_eq(count_versions(env.tgt, "notes", "a.txt~", name), 1);
	/* PATH~YYYYMMDD-HHMMSS */
	cr_assert_eq(strlen(name), strlen("a.txt~20260101-120000"), "%s", name);
	char *v = version_content(env.tgt, tl_at("notes", name));
	cr_assert_str_eq(v, "old\n");
	free(v);
	cr_assert_eq(count_versions(env.src, "notes", "a.txt~", NULL), 0);
}

Test(versions, deletion_keeps_the_file_and_the_files_of_a_directory)
{
	tl_write(env.src, "gone.txt", "keep me\n");
	tl_write(env.src, "dir/sub/f", "f\n");
	tl_write(env.src, "stay", "s\n");
	tl_write(env.src, "stay2", "s\n");
	tl_write(env.src, "stay3", "s\n");
	cr_assert_eq(run("reconcile", NULL), 0);
	tl_rm(env.src, "gone.txt");
	tl_rm(env.src, "dir");
	cr_assert_eq(run("reconcile", OPTS("--allow-mass-delete")), 0);
	cr_assert(!tl_exists(env.tgt, "gone.txt"));
	cr_assert(!tl_exists(env.tgt, "dir"));
	cr_assert_eq(count_versions(env.tgt, "", "gone.txt~", NULL), 1);
	cr_assert_eq(count_versions(env.tgt, "dir/sub", "f~", NULL), 1);
}

Test(versions, the_folder_is_neither_synced_nor_deleted)
{
	tl_write(env.src, "a", "1\n");
	tl_write(env.tgt, VD "/own~20200101-000000", "the target's own\n");
	tl_write(env.src, VD "/x", "the source's own\n");
	cr_assert_eq(run("reconcile", NULL), 0);
	cr_assert(!tl_exists(env.src, VD "/own~20200101-000000"));
	cr_assert(!tl_exists(env.tgt, VD "/x"));
	tl_rm(env.src, VD);
	cr_assert_eq(run("reconcile", NULL), 0);
	cr_assert(tl_exists(env.tgt, VD "/own~20200101-000000"));
	cr_assert_eq(run("status", NULL), 0);
	/* A path-limited run does not reach it either. */
	tl_write(env.src, VD "/y", "y\n");
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("resolve", "--source", env.src, env.tgt,
						       VD "/y"));
	tl_run_free(&r);
	cr_assert(!tl_exists(env.tgt, VD "/y"));
}

Test(versions, the_mount_does_not_show_it)
{
	tl_fuse_required();
	tl_write(env.src, "a", "1\n");
	tl_write(env.src, VD "/a~20200101-000000", "old\n");
	tl_write(env.tgt, VD "/a~20200101-000001", "old\n");
	tl_mount(&env, &mnt, NULL);
	DIR *d = opendir(mnt.dir);
	cr_assert_not_null(d);
	struct dirent *de;
	int seen = 0, a = 0;
	while ((de = readdir(d))) {
		seen |= !strcmp(de->d_name, VD);
		a |= !strcmp(de->d_name, "a");
	}
	closedir(d);
	cr_assert(a);
	cr_assert(!seen, "the mount lists " VD);
	struct stat st;
	cr_assert(lstat(tl_at(mnt.dir, VD), &st) < 0 && errno == ENOENT);
	tl_umount(&env, &mnt);
	cr_assert(!tl_exists(env.tgt, VD "/a~20200101-000000"));
}

Test(versions, retention_by_count)
{
	char buf[32];
	tl_write(env.src, "f", "0\n");
	cr_assert_eq(run("reconcile", NULL), 0);
	for (int i = 1; i <= 4; i++) {
		snprintf(buf, sizeof(buf), "%d %d\n", i, i);
		tl_write(env.src, "f", buf);
		cr_assert_eq(run("reconcile", OPTS("--keep-versions", "2")), 0);
	}
	cr_assert_eq(count_versions(env.tgt, "", "f~", NULL), 2);
	/* Same second: a counter keeps the names apart and in order; the
	 * newest two are those kept. */
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("versions", env.src, env.tgt, "f"));
	cr_assert_eq(r.status, 0, "%s", r.err);
	cr_assert(strstr(r.out, "target"), "%s", r.out);
	tl_run_free(&r);
	r = tl_sbfs_run(&env, NULL, OPTS("versions", "--json", env.src, env.tgt));
	cr_assert(strstr(r.out, "\"path\":\"f\""), "%s", r.out);
	cr_assert(strstr(r.out, "\"size\":4"), "%s", r.out);
	tl_run_free(&r);
	/* A whole pass with a tighter limit. */
	r = tl_sbfs_run(&env, NULL, OPTS("versions", "--prune", "--keep-versions", "1",
					  env.src, env.tgt));
	cr_assert_eq(r.status, 0, "%s", r.err);
	tl_run_free(&r);
	cr_assert_eq(count_versions(env.tgt, "", "f~", NULL), 1);
}

Test(versions, restore_brings_it_back_and_reconcile_carries_it)
{
	tl_write(env.src, "doc", "first\n");
	cr_assert_eq(run("reconcile", NULL), 0);
	tl_write(env.src, "doc", "second\n");
	cr_assert_eq(run("reconcile", NULL), 0);
	expect(env.tgt, "doc", "second\n");
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("restore", env.src, env.tgt, "doc"));
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	expect(env.tgt, "doc", "first\n");
	/* what it replaced is a version in turn */
	cr_assert_eq(count_versions(env.tgt, "", "doc~", NULL), 2);
	cr_assert_eq(run("reconcile", NULL), 0);
	expect(env.src, "doc", "first\n");
	r = tl_sbfs_run(&env, NULL, OPTS("restore", env.src, env.tgt, "nothing"));
	cr_assert_eq(r.status, 2, "%s", r.err);
	tl_run_free(&r);
}

Test(versions, off_keeps_nothing)
{
	tl_write(env.src, "f", "1\n");
	tl_write(env.src, "g", "1\n");
	tl_write(env.src, "h", "1\n");
	cr_assert_eq(run("reconcile", NULL), 0);
	tl_write(env.src, "f", "2\n");
	tl_rm(env.src, "g");
	cr_assert_eq(run("reconcile", OPTS("--keep-versions", "0", "--keep-days", "0")), 0);
	cr_assert(!tl_exists(env.tgt, VD));
	cr_assert(!tl_exists(env.tgt, "g"));
	expect(env.tgt, "f", "2\n");
}

Test(versions, a_version_that_cannot_be_kept_leaves_the_item)
{
	tl_write(env.src, "f", "1\n");
	cr_assert_eq(run("reconcile", NULL), 0);
	tl_write(env.tgt, VD, "not a directory\n");	/* no folder can be made */
	tl_write(env.src, "f", "2\n");
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 1, "%s%s", r.out, r.err);
	cr_assert(strstr(r.err, "could not be kept"), "%s", r.err);
	tl_run_free(&r);
	expect(env.tgt, "f", "1\n");
}

static void fill(const char *root, const char *rel, char c, size_t n)
{
	char *buf = malloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(c + (i % 7));
	tl_write_n(root, rel, buf, n);
	free(buf);
}

/* A 2 MiB tmpfs as the target: the third 800 KiB version of a file only
 * fits once the oldest version is gone. */
Test(versions, a_full_disk_removes_the_oldest_versions_first)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to mount a small tmpfs");
	tmpfs_dir = strdup(env.tgt);
	cr_assert(mount("tmpfs", env.tgt, "tmpfs", 0, "size=2m,mode=0755") == 0, "%s",
		  strerror(errno));
	fill(env.src, "big", 'A', 800 << 10);
	cr_assert_eq(run("reconcile", NULL), 0);
	fill(env.src, "big", 'B', 800 << 10);
	cr_assert_eq(run("reconcile", NULL), 0);
	cr_assert_eq(count_versions(env.tgt, "", "big~", NULL), 1);
	fill(env.src, "big", 'C', 800 << 10);
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	cr_assert(strstr(r.err, "removed to make room"), "%s", r.err);
	tl_run_free(&r);
	char *got = tl_read(env.tgt, "big");
	cr_assert(got && got[0] == 'C');
	free(got);
	char *log = tl_read(env.state, "log.jsonl");
	cr_assert(log && strstr(log, "version-removed-target"), "%s", log);
	free(log);
}
