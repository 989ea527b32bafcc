/*
 * A state that cannot lie: a damaged data.mdb (truncated, pages overwritten)
 * is refused with a message naming it, exit 2, never a crash; a state that
 * had recorded a sync and was emptied or removed is refused instead of
 * becoming a first sync that brings deleted files back; `sbfs forget` is the
 * way out; a state directory another user could write to, or symlinks among
 * the state files, are refused before anything is opened through them.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static struct tl_env env;

static void setup(void) { tl_env_init(&env); }
static void teardown(void) { tl_env_fini(&env); }

TestSuite(statetrust, .init = setup, .fini = teardown, .timeout = 240);

/* Runs a shell command line (paths here are short: under the test's base). */
static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
	char cmd[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	cr_assert(n > 0 && (size_t)n < sizeof(cmd), "command too long");
	cr_assert_eq(system(cmd), 0, "%s failed", cmd);
}

/* Exited by itself, never by a signal (tl_sbfs_run: 128+signal). */
#define ASSERT_NO_CRASH(r, what)                                              \
	cr_assert((r).status < 128, "%s: killed by signal %d\nstderr:\n%s", (what), \
		  (r).status - 128, (r).err)

#define ASSERT_REFUSED(r, what, needle)                                       \
	do {                                                                  \
		ASSERT_NO_CRASH(r, what);                                     \
		cr_assert_eq((r).status, 2, "%s: exit %d, expected 2\nstdout:\n%s\nstderr:\n%s", \
			     (what), (r).status, (r).out, (r).err);           \
		cr_assert(strstr((r).err, (needle)), "%s: stderr lacks \"%s\":\n%s", \
			  (what), (needle), (r).err);                         \
	} while (0)

/* A few hundred entries in a few directories: a state of some dozen pages. */
static void populate(void)
{
	char rel[64], body[64];
	for (int d = 0; d < 8; d++) {
		for (int f = 0; f < 40; f++) {
			snprintf(rel, sizeof(rel), "dir%d/a-file-with-a-long-name-%03d.txt", d, f);
			snprintf(body, sizeof(body), "content %d %d\n", d, f);
			tl_write(env.src, rel, body);
		}
	}
	tl_write(env.tgt, "only-in-target.txt", "target\n");
}

static void reconcile_ok(void)
{
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "reconcile: exit %d\n%s%s", r.status, r.out, r.err);
	tl_run_free(&r);
}

/* The partnership's directory under the state root (malloc'd). */
static char *pship_dir(void)
{
	DIR *d = opendir(env.state);
	struct dirent *de;
	char *res = NULL;
	cr_assert(d, "no state directory %s", env.state);
	while ((de = readdir(d)))
		if (strlen(de->d_name) == 32 && !res)
			res = tl_join(env.state, de->d_name);
	closedir(d);
	cr_assert(res, "no partnership directory in %s", env.state);
	return res;
}

/* Copies of both trees, to show later that nothing changed. */
static void snapshot(void)
{
	sh("cp -a '%s' '%s/snap-src' && cp -a '%s' '%s/snap-tgt'", env.src, env.base,
	   env.tgt, env.base);
}

static void assert_unchanged(const char *what)
{
	char *s = tl_join(env.base, "snap-src"), *t = tl_join(env.base, "snap-tgt"), *why = NULL;
	cr_assert(tl_trees_equal(s, env.src, &why), "%s: source changed: %s", what, why);
	cr_assert(tl_trees_equal(t, env.tgt, &why), "%s: target changed: %s", what, why);
	free(s);
	free(t);
}

/* Every command that opens the state refuses, naming `needle`. */
static void assert_all_refuse(const char *needle)
{
	static const char *const cmds[] = { "reconcile", "status", "conflicts", "resolve" };
	for (size_t i = 0; i < sizeof(cmds) / sizeof(*cmds); i++) {
		struct tl_run r = tl_cmd(&env, cmds[i], NULL);
		ASSERT_REFUSED(r, cmds[i], needle);
		tl_run_free(&r);
		assert_unchanged(cmds[i]);
	}
}

static void truncate_to(const char *path, off_t size)
{
	cr_assert_eq(truncate(path, size), 0, "truncate %s", path);
}

static off_t size_of(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0, "stat %s", path);
	return st.st_size;
}

/* ------------------------------------------------------------ item 10 */

Test(statetrust, truncated_to_half_is_refused_naming_the_file)
{
	populate();
	reconcile_ok();
	char *dir = pship_dir(), *data = tl_join(dir, "data.mdb");
	truncate_to(data, size_of(data) / 2);
	snapshot();
	assert_all_refuse(data);
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert(strstr(r.err, "damaged") && strstr(r.err, "sbfs forget"), "%s", r.err);
	tl_run_free(&r);
	free(data);
	free(dir);
}

Test(statetrust, truncated_below_the_meta_pages_is_refused)
{
	populate();
	reconcile_ok();
	char *dir = pship_dir(), *data = tl_join(dir, "data.mdb");
	truncate_to(data, 100);
	snapshot();
	assert_all_refuse(data);
	free(data);
	free(dir);
}

/* xorshift64*: the same damage on every run. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 2685821657736338717ULL;
}

/* Damages 1 to 3 pages of the file: overwritten with random bytes, zeroed,
 * or a few random bytes changed in the page header or anywhere. */
static void damage(const char *path, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ULL + 1;
	off_t size = size_of(path);
	size_t npages = (size_t)size / 4096;
	unsigned char page[4096];
	int fd = open(path, O_RDWR);
	cr_assert(fd >= 0 && npages > 2);
	int n = 1 + (int)(rnd(&s) % 3), mode = (int)(seed % 4);
	for (int k = 0; k < n; k++) {
		off_t off = (off_t)(rnd(&s) % npages) * 4096;
		cr_assert_eq(pread(fd, page, sizeof(page), off), (ssize_t)sizeof(page));
		if (mode == 0)
			for (size_t i = 0; i < sizeof(page); i++)
				page[i] = (unsigned char)rnd(&s);
		else if (mode == 1)
			memset(page, 0, sizeof(page));
		else
			for (int i = 0; i < 6; i++)
				page[rnd(&s) % (mode == 2 ? 64 : sizeof(page))] = (unsigned char)rnd(&s);
		cr_assert_eq(pwrite(fd, page, sizeof(page), off), (ssize_t)sizeof(page));
	}
	close(fd);
}

Test(statetrust, damaged_pages_never_crash)
{
	populate();
	reconcile_ok();
	char *dir = pship_dir(), *data = tl_join(dir, "data.mdb");
	char *good = tl_join(env.base, "good.mdb");
	sh("cp '%s' '%s'", data, good);
	snapshot();
	int refused = 0;
	for (uint64_t seed = 1; seed <= 24; seed++) {
		sh("cp '%s' '%s'", good, data);
		damage(data, seed);
		static const char *const cmds[] = { "status", "reconcile" };
		for (int c = 0; c < 2; c++) {
			struct tl_run r = tl_cmd(&env, cmds[c], NULL);
			char what[64];
			snprintf(what, sizeof(what), "seed %llu, %s", (unsigned long long)seed, cmds[c]);
			ASSERT_NO_CRASH(r, what);
			/* Damage the walk finds is refused and named. Damage it
			 * cannot see (bytes inside a record that keep the page
			 * sound) may make a file look changed; the trees are in
			 * sync, so whatever runs leaves their contents as they are. */
			cr_assert(r.status <= 2, "%s: exit %d\n%s", what, r.status, r.err);
			if (r.status == 2) {
				cr_assert(strstr(r.err, data), "%s: stderr does not name %s:\n%s",
					  what, data, r.err);
				refused++;
			}
			assert_unchanged(what);
			tl_run_free(&r);
		}
	}
	/* Most seeds overwrite structure: if none were refused, the check is gone. */
	cr_assert_gt(refused, 24, "only %d of 48 runs refused", refused);
	free(good);
	free(data);
	free(dir);
}

/* ------------------------------------------------------------ item 11 */

/* After a sync, deleted.txt is deleted on the source: a reconcile with
 * the state would delete it in the target too; without it, it would be
 * copied back. */
static char *lost_setup(void)
{
	populate();
	tl_write(env.src, "deleted.txt", "going\n");
	reconcile_ok();
	tl_rm(env.src, "deleted.txt");
	return pship_dir();
}

Test(statetrust, emptied_state_is_refused_not_a_first_sync)
{
	char *dir = lost_setup(), *data = tl_join(dir, "data.mdb");
	truncate_to(data, 0);
	snapshot();
	assert_all_refuse(data);
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert(strstr(r.err, "lost") && strstr(r.err, "sbfs forget"), "%s", r.err);
	tl_run_free(&r);
	cr_assert(!tl_exists(env.src, "deleted.txt"), "the deleted file came back");
	free(data);
	free(dir);
}

Test(statetrust, removed_state_is_refused)
{
	char *dir = lost_setup(), *data = tl_join(dir, "data.mdb"), *lock = tl_join(dir, "lock.mdb");
	cr_assert_eq(unlink(data), 0);
	cr_assert_eq(unlink(lock), 0);
	snapshot();
	assert_all_refuse(data);
	cr_assert(!tl_exists(env.src, "deleted.txt"), "the deleted file came back");
	free(lock);
	free(data);
	free(dir);
}

Test(statetrust, forget_moves_the_state_aside_and_the_next_run_is_a_first_sync)
{
	char *dir = lost_setup(), *data = tl_join(dir, "data.mdb");
	truncate_to(data, 0);
	struct tl_run r = tl_cmd(&env, "forget", NULL);
	cr_assert_eq(r.status, 0, "forget: exit %d\n%s%s", r.status, r.out, r.err);
	cr_assert(strstr(r.out, ".forgotten-"), "%s", r.out);
	tl_run_free(&r);
	cr_assert(!tl_exists(dir, ""), "%s is still there", dir);
	/* Moved, not deleted. */
	DIR *d = opendir(env.state);
	struct dirent *de;
	int aside = 0;
	while ((de = readdir(d)))
		aside += !strncmp(de->d_name, dir + strlen(env.state) + 1, 32) &&
			 strstr(de->d_name, ".forgotten-") != NULL;
	closedir(d);
	cr_assert_eq(aside, 1);
	/* A first sync: copies, never deletes. */
	r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "reconcile: exit %d\n%s%s", r.status, r.out, r.err);
	tl_run_free(&r);
	cr_assert(tl_exists(env.src, "deleted.txt") && tl_exists(env.tgt, "deleted.txt"));
	char *why;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "%s", why);
	/* Nothing left to forget, which is no error. */
	free(data);
	cr_assert_eq(rename(dir, data = tl_join(env.base, "moved")), 0);
	r = tl_cmd(&env, "forget", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	cr_assert(strstr(r.out, "No state"), "%s", r.out);
	tl_run_free(&r);
	free(data);
	free(dir);
}

Test(statetrust, forget_refuses_while_the_partnership_is_locked)
{
	populate();
	reconcile_ok();
	char *dir = pship_dir(), *lock = tl_join(dir, "lock");
	/* Held here as a running reconcile or mount would hold it. */
	int fd = open(lock, O_RDWR);
	cr_assert(fd >= 0 && flock(fd, LOCK_EX) == 0);
	struct tl_run r = tl_cmd(&env, "forget", NULL);
	ASSERT_REFUSED(r, "forget", "working on this partnership");
	cr_assert(tl_exists(dir, "data.mdb"));
	tl_run_free(&r);
	close(fd);
	free(lock);
	free(dir);
}

/* ------------------------------------------------------------ item 12 */

static void assert_dir_refused(const char *dir, const char *why)
{
	snapshot();
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_REFUSED(r, "reconcile", dir);
	cr_assert(strstr(r.err, why), "stderr lacks \"%s\":\n%s", why, r.err);
	tl_run_free(&r);
	assert_unchanged("reconcile");
}

Test(statetrust, group_writable_partnership_directory_is_refused)
{
	populate();
	reconcile_ok();
	char *dir = pship_dir();
	cr_assert_eq(chmod(dir, 0770), 0);
	tl_write(env.src, "new.txt", "new\n");
	assert_dir_refused(dir, "writable by group or others");
	free(dir);
}

Test(statetrust, world_writable_state_root_is_refused)
{
	populate();
	cr_assert_eq(mkdir(env.state, 0700), 0);
	cr_assert_eq(chmod(env.state, 01777), 0);
	assert_dir_refused(env.state, "writable by group or others");
	cr_assert(!tl_exists(env.tgt, "dir0"), "synced through an unsafe state root");
}

Test(statetrust, foreign_partnership_directory_is_refused)
{
	populate();
	reconcile_ok();
	char *dir = pship_dir();
	/* As root: the directory another user pre-created. */
	cr_assert_eq(chown(dir, 65534, 65534), 0);
	assert_dir_refused(dir, "owned by another user");
	free(dir);
}

Test(statetrust, symlinked_partnership_directory_is_refused)
{
	populate();
	reconcile_ok();
	char *dir = pship_dir(), *elsewhere = tl_join(env.base, "elsewhere");
	cr_assert_eq(rename(dir, elsewhere), 0);
	cr_assert_eq(symlink(elsewhere, dir), 0);
	assert_dir_refused(dir, "symbolic link");
	free(elsewhere);
	free(dir);
}

/* Each state file replaced by a symlink to a file of someone else's
 * choosing: refused by name, and the file it points to is left alone. */
Test(statetrust, symlinked_state_files_are_refused_and_never_written)
{
	static const char *const names[] = { "data.mdb", "lock.mdb", "lock", "roots",
					     "journal", "mount", "synced" };
	populate();
	reconcile_ok();
	char *dir = pship_dir();
	tl_write(env.base, "victim", "precious\n");
	char *victim = tl_join(env.base, "victim");
	tl_write(env.src, "new.txt", "new\n");
	for (size_t i = 0; i < sizeof(names) / sizeof(*names); i++) {
		char *f = tl_join(dir, names[i]), *saved = tl_join(env.base, "saved");
		int had = tl_exists(dir, names[i]);
		if (had)
			cr_assert_eq(rename(f, saved), 0);
		cr_assert_eq(symlink(victim, f), 0);
		snapshot();
		struct tl_run r = tl_cmd(&env, "reconcile", NULL);
		ASSERT_REFUSED(r, names[i], f);
		cr_assert(strstr(r.err, "symbolic link"), "%s: %s", names[i], r.err);
		tl_run_free(&r);
		assert_unchanged(names[i]);
		char *v = tl_read(env.base, "victim");
		cr_assert_str_eq(v, "precious\n", "%s: the symlink's target was written", names[i]);
		free(v);
		cr_assert_eq(unlink(f), 0);
		if (had)
			cr_assert_eq(rename(saved, f), 0);
		sh("rm -rf '%s/snap-src' '%s/snap-tgt'", env.base, env.base);
		free(saved);
		free(f);
	}
	/* All back in place: it syncs again. */
	reconcile_ok();
	cr_assert(tl_exists(env.tgt, "new.txt"));
	free(victim);
	free(dir);
}
