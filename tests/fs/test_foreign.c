/*
 * Foreign partners (issue 11): the TARGET most people pair with is a USB
 * disk formatted exFAT, FAT32 or NTFS, or a network mount. Each suite here
 * mounts one of them at env.tgt (a loop image under Debian's FUSE driver,
 * or sshfs against a private sshd) and checks what a careful user expects:
 * a first sync that a second run finds nothing to do after; the source's
 * modes and times never overwritten by what the partner can store; names
 * the partner cannot hold skipped (exit 1) without loss; case clashes on
 * case-insensitive partners reported; a replugged disk or a remounted
 * share not read again in full.
 *
 * The harness tests (images, sshd, the watchdogs) check the fixtures
 * themselves.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsimg.h"
#include "testlib.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })

enum partner { P_EXFAT = TL_EXFAT, P_FAT32 = TL_FAT32, P_NTFS = TL_NTFS, P_SSHFS };

static struct tl_env env;
static struct tl_fsimg img;
static struct tl_sshd sshd;
static struct tl_sshfs sfs;
static struct tl_mount mnt;
static enum partner partner;

#define S(rel) tl_at(env.src, rel)
#define T(rel) tl_at(env.tgt, rel)
#define M(rel) tl_at(mnt.dir, rel)

static const char *partner_name(void)
{
	return partner == P_SSHFS ? "sshfs" : tl_fstype_name((enum tl_fstype)partner);
}

/* ================================================================ set-up */

static void setup(enum partner p)
{
	partner = p;
	tl_env_init(&env);
	if (p == P_SSHFS) {
		tl_sshd_start(&sshd, env.base);
		tl_mkdir(env.base, "served");
		tl_sshfs_mount(&sfs, &sshd, tl_at(env.base, "served"), env.tgt);
	} else {
		/* FAT32 wants 65525 clusters: 64 MiB of 512-byte ones. */
		tl_fsimg_make(&img, (enum tl_fstype)p, env.base, env.tgt, p == P_FAT32 ? 64 : 32);
	}
}

static void teardown(void)
{
	tl_mount_cleanup(&mnt);	/* first: it holds the target open */
	tl_sshfs_cleanup(&sfs);
	tl_sshd_cleanup(&sshd);
	tl_fsimg_cleanup(&img);
	tl_env_fini(&env);
}

static void setup_exfat(void) { setup(P_EXFAT); }
static void setup_fat32(void) { setup(P_FAT32); }
static void setup_ntfs(void) { setup(P_NTFS); }
static void setup_sshfs(void) { setup(P_SSHFS); }

TestSuite(exfat, .init = setup_exfat, .fini = teardown, .timeout = 60);
TestSuite(fat32, .init = setup_fat32, .fini = teardown, .timeout = 60);
TestSuite(ntfs, .init = setup_ntfs, .fini = teardown, .timeout = 60);
TestSuite(sshfs, .init = setup_sshfs, .fini = teardown, .timeout = 60);

/* The user unplugs the disk and plugs it in again (or remounts the share). */
static void replug(void)
{
	if (partner == P_SSHFS)
		tl_sshfs_remount(&sfs);
	else
		tl_fsimg_remount(&img);
}

/* ================================================================ helpers */

static struct tl_run run_want(int want, const char *cmd, const char *const *opts)
{
	struct tl_run r = tl_cmd(&env, cmd, opts);
	cr_assert_eq(r.status, want, "[%s] sbfs %s: exit %d, want %d:\n%s%s", partner_name(), cmd,
		     r.status, want, r.out, r.err);
	return r;
}

/* The number after "key": in a JSON document, -1 if absent. */
static long json_num(const char *json, const char *key)
{
	char pat[64];
	snprintf(pat, sizeof(pat), "\"%s\":", key);
	const char *p = strstr(json, pat);
	return p ? strtol(p + strlen(pat), NULL, 10) : -1;
}

/* The "error" of path's entry in the "skipped" array (malloc'd), NULL if
 * path is not there. */
static char *skip_reason(const char *json, const char *path)
{
	const char *sk = strstr(json, "\"skipped\":[");
	char pat[512];
	snprintf(pat, sizeof(pat), "{\"path\":\"%s\"", path);
	const char *p = sk ? strstr(sk, pat) : NULL;
	if (!p)
		return NULL;
	/* the reason in words where there is one, else the errno's text */
	const char *end = strchr(p, '}'), *e = strstr(p, "\"reason\":\"");
	size_t skip = 10;
	if (!e || (end && e > end)) {
		e = strstr(p, "\"error\":\"");
		skip = 9;
	}
	if (!e || (end && e > end))
		return strdup("");
	e += skip;
	return strndup(e, strcspn(e, "\""));
}

static void expect_content(const char *dir, const char *rel, const char *want, const char *side)
{
	char *got = tl_read(dir, rel);
	cr_assert(got && !strcmp(got, want), "[%s] %s %s holds %s%s%s, want \"%s\"", partner_name(),
		  side, rel, got ? "\"" : "", got ? got : "nothing (absent)", got ? "\"" : "", want);
	free(got);
}

static void set_mtime_ns(const char *path, long sec, long nsec)
{
	struct timespec t[2] = { { sec, nsec }, { sec, nsec } };
	cr_assert(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW) == 0, "utimensat %s: %s", path,
		  strerror(errno));
}

/* A small tree: files in subdirectories, modes 600 and 755, sub-second mtimes. */
static const struct file {
	const char *rel, *content;
	mode_t mode;
	long sec, nsec;
} tree[] = {
	{ "top.txt", "top\n", 0644, 1700000000, 123456789 },
	{ "docs/a.txt", "alpha\n", 0644, 1700000100, 1 },
	{ "docs/deep/private.txt", "secret\n", 0600, 1700000200, 987654321 },
	{ "bin/run.sh", "#!/bin/sh\necho hi\n", 0755, 1700000300, 500000000 },
};
#define NTREE (sizeof(tree) / sizeof(tree[0]))

static void make_tree(void)
{
	for (size_t i = 0; i < NTREE; i++) {
		tl_write(env.src, tree[i].rel, tree[i].content);
		cr_assert(chmod(S(tree[i].rel), tree[i].mode) == 0);
		set_mtime_ns(S(tree[i].rel), tree[i].sec, tree[i].nsec);
	}
}

static void expect_tree(const char *dir, const char *side)
{
	for (size_t i = 0; i < NTREE; i++)
		expect_content(dir, tree[i].rel, tree[i].content, side);
}

/* The source's files keep their own mode and nanosecond mtime. */
static void expect_source_metadata(const char *when)
{
	for (size_t i = 0; i < NTREE; i++) {
		struct stat st;
		cr_assert(stat(S(tree[i].rel), &st) == 0, "stat %s: %s", tree[i].rel, strerror(errno));
		cr_assert_eq(st.st_mode & 07777, tree[i].mode,
			     "[%s] %s: the source's %s is now mode %04o, was %04o: the partner's "
			     "mode was carried back", partner_name(), when, tree[i].rel,
			     st.st_mode & 07777, tree[i].mode);
		cr_assert(st.st_mtim.tv_sec == tree[i].sec && st.st_mtim.tv_nsec == tree[i].nsec,
			  "[%s] %s: the source's %s mtime is now %ld.%09ld, was %ld.%09ld: the "
			  "partner's coarser time was carried back", partner_name(), when,
			  tree[i].rel, (long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec, tree[i].sec,
			  tree[i].nsec);
	}
}

/* ================================================================ behaviours */

/* First sync, then a second run that has nothing to do. */
static void t_first_sync(void)
{
	make_tree();
	struct tl_run r = run_want(0, "reconcile", OPTS("-q"));
	tl_run_free(&r);
	expect_tree(env.tgt, "target");
	r = run_want(0, "status", OPTS("--json"));
	cr_assert(strstr(r.out, "\"in_sync\":true") && json_num(r.out, "total_changes") == 0,
		  "[%s] status after a first sync shows work pending:\n%s", partner_name(), r.out);
	tl_run_free(&r);
	r = run_want(0, "reconcile", OPTS("--json"));
	cr_assert_eq(json_num(r.out, "total_changes"), 0,
		     "[%s] the second reconcile found things to do:\n%s", partner_name(), r.out);
	tl_run_free(&r);
}

/* Modes and times the partner cannot store are never carried back. */
static void t_source_metadata_kept(void)
{
	make_tree();
	struct tl_run r = run_want(0, "reconcile", OPTS("-q"));
	tl_run_free(&r);
	r = run_want(0, "reconcile", OPTS("--json"));
	cr_assert(!strstr(r.out, "metadata-to-source") && !strstr(r.out, "update-source"),
		  "[%s] the second run updates the source:\n%s", partner_name(), r.out);
	tl_run_free(&r);
	expect_source_metadata("after two reconciles");
	char *log = tl_read("/", env.log + 1);
	cr_assert(!log || !strstr(log, "\"metadata-to-source\""),
		  "[%s] the log shows a mode/time update of the source:\n%s", partner_name(), log);
	free(log);
}

/* Names differing only in case on a case-insensitive partner: a case-clash
 * conflict, both kept in the source, at most one on the target. */
static void t_case_clash(void)
{
	tl_write(env.src, "Readme.TXT", "one\n");
	tl_write(env.src, "README.txt", "two\n");
	for (int run = 1; run <= 2; run++) {
		struct tl_run r = run_want(1, "reconcile", OPTS("-q"));
		tl_run_free(&r);
		expect_content(env.src, "Readme.TXT", "one\n", "source");
		expect_content(env.src, "README.txt", "two\n", "source");
		/* The target's listing holds at most one of them, with one's content. */
		size_t n = 0;
		DIR *d = opendir(env.tgt);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (strcasecmp(de->d_name, "readme.txt"))
				continue;
			n++;
			char *got = tl_read(env.tgt, de->d_name);
			cr_assert(got && (!strcmp(got, "one\n") || !strcmp(got, "two\n")),
				  "[%s] the target's %s holds \"%s\"", partner_name(), de->d_name, got);
			free(got);
		}
		if (d)
			closedir(d);
		cr_assert(n <= 1, "[%s] run %d: the target lists %zu README names", partner_name(),
			  run, n);
	}
	struct tl_run r = run_want(1, "conflicts", OPTS("--json"));
	cr_assert(strstr(r.out, "\"kind\":\"case-clash\""),
		  "[%s] no case-clash conflict listed:\n%s", partner_name(), r.out);
	tl_run_free(&r);
}

/* Through the mount, a create that clashes in case with an existing name
 * fails and changes neither side. */
static void t_case_clash_mount(void)
{
	tl_mount(&env, &mnt, NULL);
	tl_write(mnt.dir, "case.txt", "lower\n");
	int fd = open(M("CASE.TXT"), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int failed = fd < 0;
	if (fd >= 0) {
		failed |= write(fd, "UPPER\n", 6) != 6;
		failed |= close(fd) != 0;
	}
	/* what was lost first, then how the caller was told */
	expect_content(env.src, "case.txt", "lower\n", "source");
	expect_content(env.tgt, "case.txt", "lower\n", "target");
	cr_assert(!tl_exists(env.src, "CASE.TXT"), "[%s] the source got a CASE.TXT",
		  partner_name());
	cr_assert(failed, "[%s] creating CASE.TXT beside case.txt through the mount succeeded",
		  partner_name());
	tl_umount(&env, &mnt);
}

static const char *const odd_names[] = { "a:b", "link", "dot." };

static void make_odd_names(void)
{
	tl_write(env.src, "ok.txt", "ok\n");
	tl_write(env.src, "a:b", "colon\n");
	tl_write(env.src, "dot.", "dot\n");
	cr_assert(symlink("ok.txt", S("link")) == 0, "symlink: %s", strerror(errno));
}

static void expect_odd_source(void)
{
	expect_content(env.src, "a:b", "colon\n", "source");
	expect_content(env.src, "dot.", "dot\n", "source");
	char buf[64];
	ssize_t n = readlink(S("link"), buf, sizeof(buf) - 1);
	cr_assert(n == 6 && !memcmp(buf, "ok.txt", 6), "[%s] the source's symlink is gone or "
		  "changed", partner_name());
}

/* Names and symlinks the partner cannot store: skipped (exit 1, not 3)
 * with a reason naming the target; the source keeps them; the mount still
 * mounts and shows them. */
static void t_unstorable(void)
{
	make_odd_names();
	struct tl_run r = run_want(1, "reconcile", OPTS("--json"));
	for (size_t i = 0; i < sizeof(odd_names) / sizeof(odd_names[0]); i++) {
		const char *n = odd_names[i];
		char *why = skip_reason(r.out, n);
		/* "a:b" and the symlink are refused by both; "dot." may be stored */
		int must = strcmp(n, "dot.") != 0;
		if (!why && !must) {
			expect_content(env.tgt, n, "dot\n", "target");
			continue;
		}
		cr_assert(why, "[%s] %s is not among the skipped:\n%s", partner_name(), n, r.out);
		cr_assert(strstr(why, "target"), "[%s] %s skipped for \"%s\", which does not name "
			  "the target", partner_name(), n, why);
		free(why);
	}
	tl_run_free(&r);
	expect_odd_source();
	expect_content(env.tgt, "ok.txt", "ok\n", "target");
	tl_mount(&env, &mnt, NULL);
	expect_content(mnt.dir, "a:b", "colon\n", "mount");
	expect_content(mnt.dir, "link", "ok\n", "mount");
	tl_umount(&env, &mnt);
	expect_odd_source();
}

/* The same names on a partner that can store them: carried over, exit 0. */
static void t_storable(void)
{
	make_odd_names();
	struct tl_run r = run_want(0, "reconcile", OPTS("-q"));
	tl_run_free(&r);
	expect_content(env.tgt, "a:b", "colon\n", "target");
	expect_content(env.tgt, "dot.", "dot\n", "target");
	char buf[64];
	ssize_t n = readlink(T("link"), buf, sizeof(buf) - 1);
	cr_assert(n == 6 && !memcmp(buf, "ok.txt", 6), "[%s] the target has no symlink",
		  partner_name());
	r = run_want(0, "status", OPTS("--json"));
	tl_run_free(&r);
	expect_odd_source();
}

/* More than FAT's 4 GiB: skipped at once as too large, never copied. */
static void t_too_large(void)
{
	tl_write(env.src, "small.txt", "small\n");
	int fd = open(S("big.img"), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	cr_assert(fd >= 0 && ftruncate(fd, 5LL << 30) == 0 && close(fd) == 0, "%s",
		  strerror(errno));
	struct tl_run r = run_want(1, "reconcile", OPTS("--json"));
	char *why = skip_reason(r.out, "big.img");
	cr_assert(why && strstr(why, "too large"), "[%s] big.img not skipped as too large:\n%s",
		  partner_name(), r.out);
	free(why);
	tl_run_free(&r);
	expect_content(env.tgt, "small.txt", "small\n", "target");
	cr_assert(!tl_exists(env.tgt, "big.img"), "[%s] big.img is on the target", partner_name());
	struct stat st;
	cr_assert(stat(S("big.img"), &st) == 0 && st.st_size == 5LL << 30);
}

/* Ignore patterns: an ignored name is never copied by reconcile (the
 * defaults' .DS_Store neither), and written through the mount it goes to
 * the source alone, shown from there. */
static void t_ignore(void)
{
	tl_write(env.src, "keep.txt", "keep\n");
	tl_write(env.src, "build.log", "log\n");
	tl_write(env.src, ".DS_Store", "finder\n");
	struct tl_run r = run_want(0, "reconcile", OPTS("-q", "--ignore", "*.log"));
	tl_run_free(&r);
	expect_content(env.tgt, "keep.txt", "keep\n", "target");
	cr_assert(!tl_exists(env.tgt, "build.log") && !tl_exists(env.tgt, ".DS_Store"),
		  "[%s] an ignored file was copied", partner_name());
	tl_mount(&env, &mnt, OPTS("--ignore", "*.log"));
	tl_write(mnt.dir, "more.log", "more\n");
	tl_write(mnt.dir, "new.txt", "new\n");
	expect_content(mnt.dir, "more.log", "more\n", "mount");
	tl_umount(&env, &mnt);
	expect_content(env.src, "more.log", "more\n", "source");
	expect_content(env.tgt, "new.txt", "new\n", "target");
	cr_assert(!tl_exists(env.tgt, "more.log"), "[%s] the mount wrote an ignored file to the "
		  "target", partner_name());
	expect_content(env.src, "build.log", "log\n", "source");
}

/* A replugged disk (a remounted share): nothing to do, and no file read
 * again: the issue says a no-change reconcile after a remount must not
 * hash every file again (sshfs and the FUSE drivers renumber inodes). */
static void t_replug(void)
{
	make_tree();
	struct tl_run r = run_want(0, "reconcile", OPTS("-q"));
	tl_run_free(&r);
	replug();
	expect_tree(env.tgt, "replugged target");
	r = run_want(0, "reconcile", OPTS("--json"));
	expect_source_metadata("after the replug");
	cr_assert_eq(json_num(r.out, "total_changes"), 0, "[%s] after the replug:\n%s",
		     partner_name(), r.out);
	cr_assert_eq(json_num(r.out, "hashed"), 0, "[%s] after the replug the reconcile read "
		     "files again:\n%s", partner_name(), r.out);
	tl_run_free(&r);
	r = run_want(0, "status", OPTS("--json"));
	tl_run_free(&r);
}

/* The harness's own replug: the data survive unmount, driver exit and a
 * fresh loop device (this checks the helpers, not sbfs). */
static void t_replug_keeps_data(void)
{
	tl_write(env.tgt, "d/kept.txt", "kept\n");
	replug();
	expect_content(env.tgt, "d/kept.txt", "kept\n", "replugged target");
}


/* Through an sbfs mount over sshfs, the share drops and is mounted again:
 * a reconcile through the mount still works and never takes the source
 * for empty. */
static void t_reconnect_while_mounted(void)
{
	make_tree();
	tl_mount(&env, &mnt, NULL);
	tl_write(mnt.dir, "before.txt", "before\n");
	tl_sshfs_reconnect(&sfs);
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("reconcile", mnt.dir));
	cr_assert(!strstr(r.out, "empty") && !strstr(r.err, "empty"),
		  "[sshfs] after the reconnect the reconcile speaks of an empty side:\n%s%s", r.out,
		  r.err);
	cr_assert_eq(r.status, 0, "[sshfs] reconcile through the mount after the reconnect: "
		     "exit %d:\n%s%s", r.status, r.out, r.err);
	tl_run_free(&r);
	expect_tree(env.src, "source");
	expect_content(env.src, "before.txt", "before\n", "source");
	expect_tree(env.tgt, "reconnected target");
	tl_write(mnt.dir, "after.txt", "after\n");
	expect_content(env.tgt, "after.txt", "after\n", "reconnected target");
	tl_umount(&env, &mnt);
}

/* ================================================================ the cases */

/*
 * Each failed before caps.c and clash.c (issue 11): exFAT and NTFS had
 * their 0777 and cut mtimes carried back to the source, FAT32 failed every
 * copy (fusefat refuses ftruncate to any size but 0, and chmod), case
 * clashes were content conflicts or overwrites, unstorable names exit 3,
 * sshfs rehashed every file after a remount and lost its root under a
 * mount when remounted.
 */

/* exFAT: case-insensitive, mode 777, 1 s mtimes, no symlinks, no ':'. */
Test(exfat, first_sync) { t_first_sync(); }
Test(exfat, ignore_patterns) { t_ignore(); }
Test(exfat, source_metadata_kept) { t_source_metadata_kept(); }
Test(exfat, case_clash) { t_case_clash(); }
Test(exfat, case_clash_mount) { t_case_clash_mount(); }
Test(exfat, unstorable_names) { t_unstorable(); }
Test(exfat, replug) { t_replug(); }
Test(exfat, harness_replug_keeps_data) { t_replug_keeps_data(); }

/* FAT32: case-insensitive, no chmod, 2 s mtimes, no symlinks, 4 GiB limit. */
Test(fat32, first_sync) { t_first_sync(); }
Test(fat32, ignore_patterns) { t_ignore(); }
Test(fat32, source_metadata_kept) { t_source_metadata_kept(); }
Test(fat32, case_clash) { t_case_clash(); }
Test(fat32, case_clash_mount) { t_case_clash_mount(); }
Test(fat32, unstorable_names) { t_unstorable(); }
Test(fat32, too_large) { t_too_large(); }
Test(fat32, replug) { t_replug(); }
Test(fat32, harness_replug_keeps_data) { t_replug_keeps_data(); }

/* NTFS (ntfs-3g): case-sensitive, 100 ns times, mode 777, symlinks work. */
Test(ntfs, first_sync) { t_first_sync(); }
Test(ntfs, ignore_patterns) { t_ignore(); }
Test(ntfs, source_metadata_kept) { t_source_metadata_kept(); }
Test(ntfs, storable_names) { t_storable(); }
Test(ntfs, replug) { t_replug(); }
Test(ntfs, harness_replug_keeps_data) { t_replug_keeps_data(); }

/* sshfs over ext4: whole-second times (SFTP v3), new inode numbers per mount. */
Test(sshfs, first_sync) { t_first_sync(); }
Test(sshfs, ignore_patterns) { t_ignore(); }
Test(sshfs, source_metadata_kept) { t_source_metadata_kept(); }
Test(sshfs, storable_names) { t_storable(); }
Test(sshfs, replug) { t_replug(); }
Test(sshfs, reconnect_while_mounted) { t_reconnect_while_mounted(); }
Test(sshfs, harness_remount_keeps_data) { t_replug_keeps_data(); }

/* ================================================================ the harness */

static void setup_harness(void)
{
	tl_env_init(&env);
}

TestSuite(harness, .init = setup_harness, .fini = teardown, .timeout = 60);

/* The mount point's file system type in /proc/self/mountinfo ("" if none). */
static char *mount_type(const char *dir)
{
	char *real = realpath(dir, NULL), *line = NULL, *type = strdup("");
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "r");
	while (real && f && getline(&line, &cap, f) > 0) {
		char mp[4096], fstype[64];
		/* id parent maj:min root mountpoint opts... - type source */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1 || strcmp(mp, real))
			continue;
		char *dash = strstr(line, " - ");
		if (dash && sscanf(dash + 3, "%63s", fstype) == 1) {
			free(type);
			type = strdup(fstype);
		}
	}
	free(line);
	free(real);
	if (f)
		fclose(f);
	return type;
}

/* Made, mounted by its driver, written, replugged, unmounted, detached. */
static void image_lifecycle(enum tl_fstype t, const char *want_type)
{
	tl_fsimg_make(&img, t, env.base, env.tgt, t == TL_FAT32 ? 64 : 16);
	char *type = mount_type(env.tgt);
	cr_assert_str_eq(type, want_type, "%s mounted as %s", tl_fstype_name(t), type);
	free(type);
	cr_assert(tl_loop_is(img.loop, img.img), "%s does not serve %s", img.loop, img.img);
	pid_t first = img.driver;
	tl_write(env.tgt, "d/x.txt", "x\n");
	tl_fsimg_remount(&img);
	cr_assert(img.driver != first && img.driver > 0);
	expect_content(env.tgt, "d/x.txt", "x\n", "replugged image");
	char loop[32];
	snprintf(loop, sizeof(loop), "%s", img.loop);
	pid_t driver = img.driver;
	tl_fsimg_umount(&img);
	cr_assert(!tl_mounted(env.tgt) && !tl_loop_any(img.img), "still mounted or attached");
	cr_assert(kill(driver, 0) < 0 && errno == ESRCH, "the driver %d was not reaped",
		  (int)driver);
	char *keep = strdup(img.img);
	tl_fsimg_cleanup(&img);
	tl_fsimg_cleanup(&img);	/* idempotent */
	cr_assert(!tl_loop_is(loop, keep));
	free(keep);
}

Test(harness, exfat_image) { image_lifecycle(TL_EXFAT, "fuseblk"); }
Test(harness, fat32_image) { image_lifecycle(TL_FAT32, "fuse.fusefat"); }
Test(harness, ntfs_image) { image_lifecycle(TL_NTFS, "fuseblk"); }

struct victim {
	pid_t driver, guard;
	char loop[32];
};

/* Waits up to 15 s for cond() to hold; its last value. */
static int eventually(int (*cond)(const struct victim *), const struct victim *v)
{
	for (int i = 0; i < 1500; i++) {
		if (cond(v))
			return 1;
		usleep(10000);
	}
	return cond(v);
}

static int gone(pid_t pid)
{
	/* As subreaper we inherit the orphans: reap them, or see them gone. */
	return waitpid(pid, NULL, WNOHANG) == pid || (kill(pid, 0) < 0 && errno == ESRCH);
}

static int image_undone(const struct victim *v)
{
	return !tl_mounted(env.tgt) && !tl_loop_any(tl_at(env.base, "exfat.img")) &&
	       gone(v->driver) && gone(v->guard);
}

/* Fork, set up what make() does in the child, report it, get killed. */
static pid_t victim_run(void (*make)(struct victim *), struct victim *v)
{
	int p[2];
	cr_assert(pipe(p) == 0);
	cr_assert(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0);
	fflush(NULL);
	pid_t c = fork();
	cr_assert(c >= 0);
	if (c == 0) {
		close(p[0]);
		make(v);
		if (write(p[1], v, sizeof(*v)) != sizeof(*v))
			_exit(1);
		for (;;)
			pause();
	}
	close(p[1]);
	ssize_t n = read(p[0], v, sizeof(*v));
	close(p[0]);
	kill(c, SIGKILL);
	waitpid(c, NULL, 0);
	cr_assert_eq(n, (ssize_t)sizeof(*v), "the child could not set up (see above)");
	return c;
}

static void make_image(struct victim *v)
{
	tl_fsimg_make(&img, TL_EXFAT, env.base, env.tgt, 16);
	v->driver = img.driver;
	v->guard = img.guard.pid;
	snprintf(v->loop, sizeof(v->loop), "%s", img.loop);
}

/* A test process killed with its image mounted: the watchdog unmounts,
 * the driver exits, the loop device goes. */
Test(harness, image_watchdog)
{
	struct victim v;
	victim_run(make_image, &v);
	cr_assert(eventually(image_undone, &v), "after the test process died: mounted %d, loop "
		  "%s attached %d, driver alive %d, watchdog alive %d", tl_mounted(env.tgt), v.loop,
		  tl_loop_any(tl_at(env.base, "exfat.img")), !gone(v.driver), !gone(v.guard));
	memset(&img, 0, sizeof(img));	/* the child's, not ours */
	img.guard.fd = img.loop_fd = -1;
}

/* sshd, sshfs, a reconnect, an sshd restart, a remount, and the ends. */
Test(harness, sshfs_lifecycle)
{
	tl_sshd_start(&sshd, env.base);
	tl_write(env.base, "served/x.txt", "x\n");
	tl_sshfs_mount(&sfs, &sshd, tl_at(env.base, "served"), env.tgt);
	char *type = mount_type(env.tgt);
	cr_assert_str_eq(type, "fuse.sshfs");
	free(type);
	expect_content(env.tgt, "x.txt", "x\n", "sshfs");
	tl_write(env.tgt, "y.txt", "y\n");
	expect_content(env.base, "served/y.txt", "y\n", "served");
	pid_t first = sfs.pid;
	tl_sshfs_reconnect(&sfs);
	cr_assert(sfs.pid != first && tl_mounted(env.tgt));
	expect_content(env.tgt, "y.txt", "y\n", "reconnected sshfs");
	tl_sshd_restart(&sshd);
	tl_sshfs_remount(&sfs);
	expect_content(env.tgt, "x.txt", "x\n", "remounted sshfs");
	pid_t daemon = sshd.pid;
	int port = sshd.port;
	tl_sshfs_umount(&sfs);
	cr_assert(!tl_mounted(env.tgt));
	tl_sshd_stop(&sshd);
	cr_assert(gone(daemon), "sshd %d still runs", (int)daemon);
	(void)port;
	tl_sshfs_cleanup(&sfs);
	tl_sshd_cleanup(&sshd);
	tl_sshd_cleanup(&sshd);
}

static void make_share(struct victim *v)
{
	tl_sshd_start(&sshd, env.base);
	tl_mkdir(env.base, "served");
	tl_sshfs_mount(&sfs, &sshd, tl_at(env.base, "served"), env.tgt);
	v->driver = sfs.pid;
	v->guard = sshd.pid;
	snprintf(v->loop, sizeof(v->loop), "%d", sfs.guard.pid);
}

static int share_undone(const struct victim *v)
{
	return !tl_mounted(env.tgt) && gone(v->driver) && gone(v->guard) &&
	       gone((pid_t)atoi(v->loop));
}

/* A test process killed with sshd and sshfs running: both stopped. */
Test(harness, sshfs_watchdog)
{
	struct victim v;
	victim_run(make_share, &v);
	cr_assert(eventually(share_undone, &v), "after the test process died: mounted %d, sshfs "
		  "alive %d, sshd alive %d", tl_mounted(env.tgt), !gone(v.driver), !gone(v.guard));
	memset(&sfs, 0, sizeof(sfs));
	memset(&sshd, 0, sizeof(sshd));
	sfs.guard.fd = sshd.guard.fd = -1;
}
