/*
 * Edits made directly in a partner while it is mounted show in the mount at
 * once (fs/watch.c): never served stale, never cut at an old size. The
 * kernel keeps the view's names and attributes for 5 s; each check here
 * polls the mount with a deadline well below that, so a pass means the
 * watcher dropped them, not that they ran out. A pass must not depend on
 * the machine's speed: the deadline only bounds a wait that normally ends
 * in a millisecond.
 *
 * Without the watcher these tests fail (checked by hand):
 *   SBFS_TEST_NO_WATCH=1 build/tests/fs/test_watch
 * (the variable turns the watcher off and is read by nothing else).
 *
 * Every test mounts in its .init and is unmounted in its .fini (lazily,
 * even after a failure); the watchdog of testlib covers a crash.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

/* Below the mount's 5 s cache timeouts, far above the watcher's delay. */
#define DEADLINE_MS 3000

static struct tl_env env;
static struct tl_mount mnt;

#define S(rel) tl_at(env.src, rel)
#define T(rel) tl_at(env.tgt, rel)
#define M(rel) tl_at(mnt.dir, rel)

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* The whole file (malloc'd), or NULL with errno set. */
static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	for (;;) {
		if (n == cap)
			buf = realloc(buf, (cap *= 2) + 1);
		ssize_t r = read(fd, buf + n, cap - n);
		if (r <= 0) {
			int e = errno;
			close(fd);
			if (r < 0) {
				free(buf);
				errno = e;
				return NULL;
			}
			break;
		}
		n += r;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

static void put(const char *path, const void *buf, size_t n, int flags)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | flags, 0644);
	cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
	cr_assert_eq(write(fd, buf, n), (ssize_t)n, "write %s: %s", path, strerror(errno));
	cr_assert_eq(close(fd), 0, "close %s: %s", path, strerror(errno));
}

/*
 * Until the mount shows rel as want (len bytes): its size by stat, then its
 * whole content. Returns how many looks it took (1: at once).
 */
static int wait_content(const char *rel, const char *want, size_t len)
{
	long end = now_ms() + DEADLINE_MS;
	int looks = 0;
	for (;;) {
		struct stat st;
		size_t n = 0;
		char *got = NULL;
		looks++;
		int sok = stat(M(rel), &st) == 0 && (size_t)st.st_size == len;
		if (sok && (got = slurp(M(rel), &n)) && n == len && !memcmp(got, want, len)) {
			free(got);
			/* A read has the kernel ask the attributes again (the
			 * atime changed); a stat now leaves them cached, fresh,
			 * as a look at the file with `stat` or `ls -l` would. */
			cr_assert(stat(M(rel), &st) == 0 && (size_t)st.st_size == len);
			return looks;
		}
		if (now_ms() > end)
			cr_assert_fail("%s: after %d ms the mount still shows %s%jd bytes by stat, "
				       "%zd read%s (%zu expected, as the partner holds)",
				       rel, DEADLINE_MS, sok ? "" : "stale ",
				       stat(M(rel), &st) == 0 ? (intmax_t)st.st_size : (intmax_t)-1,
				       got ? (ssize_t)n : (ssize_t)-1,
				       got && n == len ? " but different" : "", len);
		free(got);
		usleep(1000);
	}
}

static void wait_content_str(const char *rel, const char *want)
{
	wait_content(rel, want, strlen(want));
}

/* Until rel is gone from the mount. */
static void wait_gone(const char *rel)
{
	long end = now_ms() + DEADLINE_MS;
	struct stat st;
	while (lstat(M(rel), &st) == 0) {
		cr_assert(now_ms() <= end, "%s: deleted in both partners %d ms ago, still in the mount",
			  rel, DEADLINE_MS);
		usleep(1000);
	}
	cr_assert_eq(errno, ENOENT, "%s: %s", rel, strerror(errno));
}

/* Until rel shows as a directory. */
static void wait_dir(const char *rel)
{
	long end = now_ms() + DEADLINE_MS;
	struct stat st;
	while (stat(M(rel), &st) < 0 || !S_ISDIR(st.st_mode)) {
		cr_assert(now_ms() <= end, "%s: made in a partner %d ms ago, not in the mount", rel,
			  DEADLINE_MS);
		usleep(1000);
	}
}

static void setup(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	tl_write(env.src, "t", "in the source\n");
	tl_mount(&env, &mnt, NULL);
}

static void teardown(void)
{
	tl_mount_cleanup(&mnt);
	tl_env_fini(&env);
}

TestSuite(watch, .init = setup, .fini = teardown, .timeout = 120);

/*
 * The reported case: `echo short > m/t`, a look at m/t, then an append to
 * the source's t; stat and read through the mount at once. Some hundreds
 * of times, growing, shrinking (rewritten shorter: the old size would
 * show a tail that is gone) and in place, and on a file only the target
 * has.
 */
Test(watch, edits_show_at_once)
{
	static char want[2][64 * 1024];
	size_t len[2] = { 6, 13 };
	const char *rel[2] = { "t", "only-tgt" };
	int waited = 0;

	put(M("t"), "short\n", 6, O_TRUNC);
	memcpy(want[0], "short\n", 6);
	wait_content("t", want[0], len[0]);
	/* made after the mount's reconcile, which would copy it */
	memcpy(want[1], "the target's\n", 13);
	put(T("only-tgt"), want[1], len[1], O_EXCL);
	wait_content("only-tgt", want[1], len[1]);
	for (int i = 0; i < 300; i++) {
		int k = i % 4 == 3;	/* every fourth: the target's own file */
		const char *path = k ? T(rel[k]) : S(rel[k]);
		size_t add = 1 + (size_t)(i * 7919) % 3000;
		if (i % 5 == 4 || len[k] + add > sizeof(want[k])) {	/* rewritten shorter */
			len[k] = add / 3 + 1;
			for (size_t j = 0; j < len[k]; j++)
				want[k][j] = (char)('a' + (i + j) % 26);
			put(path, want[k], len[k], O_TRUNC);
		} else if (i % 7 == 6) {	/* the same size, other bytes */
			for (size_t j = 0; j < len[k]; j++)
				want[k][j] = (char)('A' + (i + j) % 26);
			put(path, want[k], len[k], 0);
		} else {
			for (size_t j = 0; j < add; j++)
				want[k][len[k] + j] = (char)('0' + (i + j) % 10);
			put(path, want[k] + len[k], add, O_APPEND);
			len[k] += add;
		}
		waited += wait_content(rel[k], want[k], len[k]) > 1;
	}
	cr_log_info("%d of 300 edits needed more than one look", waited);
}

/* Deleted in both partners: gone from the view, and the name free to make
 * again through it (a name the kernel kept would be opened, not made). */
Test(watch, deletions_show_at_once)
{
	put(M("x"), "x\n", 2, O_TRUNC);
	wait_content_str("x", "x\n");
	cr_assert_eq(unlink(S("x")), 0);
	cr_assert_eq(unlink(T("x")), 0);
	wait_gone("x");
	put(M("x"), "made again\n", 11, O_TRUNC);
	wait_content_str("x", "made again\n");
	char *c = tl_read(env.tgt, "x");
	cr_expect_str_eq(c, "made again\n");
	free(c);

	/* Gone from the source only: the target's version shows. */
	put(M("y"), "both\n", 5, O_TRUNC);
	put(T("y"), "the target's own\n", 17, O_TRUNC);
	wait_content_str("y", "both\n");
	cr_assert_eq(unlink(S("y")), 0);
	wait_content_str("y", "the target's own\n");

	/* A directory with what it holds. */
	cr_assert_eq(mkdir(M("dd"), 0755), 0);
	cr_assert_eq(mkdir(M("dd/sub"), 0755), 0);
	put(M("dd/sub/f"), "f\n", 2, O_TRUNC);
	wait_content_str("dd/sub/f", "f\n");
	tl_rm(env.src, "dd");
	tl_rm(env.tgt, "dd");
	wait_gone("dd/sub/f");
	wait_gone("dd");
	/* stat can tell ENOENT (the attributes are asked again) a moment
	 * before the watcher has the kernel drop the name: until then mkdir
	 * finds it and says EEXIST. */
	long end = now_ms() + DEADLINE_MS;
	int r;
	while ((r = mkdir(M("dd"), 0755)) < 0 && errno == EEXIST && now_ms() <= end)
		usleep(1000);
	cr_assert_eq(r, 0, "mkdir through the mount: %s", strerror(errno));
	cr_assert(tl_exists(env.src, "dd") && tl_exists(env.tgt, "dd"));

	/* The same below the root (the name's parent is found otherwise). */
	put(M("dd/n"), "n\n", 2, O_TRUNC);
	wait_content_str("dd/n", "n\n");
	cr_assert_eq(unlink(S("dd/n")), 0);
	cr_assert_eq(unlink(T("dd/n")), 0);
	wait_gone("dd/n");
	end = now_ms() + DEADLINE_MS;
	while ((r = mkdir(M("dd/n"), 0755)) < 0 && errno == EEXIST && now_ms() <= end)
		usleep(1000);
	cr_assert_eq(r, 0, "mkdir dd/n through the mount: %s", strerror(errno));
}

/* Directories made directly show, and are watched in turn: also those made
 * below a new one before its watch could be added. */
Test(watch, new_directories_show_and_are_watched)
{
	struct stat st;
	cr_assert(stat(M("nd"), &st) < 0);
	tl_mkdir(env.src, "nd");
	wait_dir("nd");
	tl_write(env.src, "nd/f", "one\n");
	wait_content_str("nd/f", "one\n");
	put(S("nd/f"), "two\n", 4, O_APPEND);
	wait_content_str("nd/f", "one\ntwo\n");

	tl_write(env.src, "nd/a/b/c/g", "deep\n");	/* mkdir -p, then the file */
	wait_content_str("nd/a/b/c/g", "deep\n");
	put(S("nd/a/b/c/g"), "er\n", 3, O_APPEND);
	wait_content_str("nd/a/b/c/g", "deep\ner\n");

	/* Moved: seen under its new name, and still watched there. */
	cr_assert_eq(rename(S("nd"), S("moved")), 0);
	wait_gone("nd");
	wait_content_str("moved/a/b/c/g", "deep\ner\n");
	put(S("moved/a/b/c/g"), "!\n", 2, O_APPEND);
	wait_content_str("moved/a/b/c/g", "deep\ner\n!\n");

	/* On the target too. */
	tl_write(env.tgt, "td/h", "target\n");
	wait_content_str("td/h", "target\n");
	put(T("td/h"), "more\n", 5, O_APPEND);
	wait_content_str("td/h", "target\nmore\n");
}

/* ------------------------------------------------------------ conflicts */

#define V_SRC "the source's version\n"
#define V_TGT "the target's version, a longer one\n"

static void setup_conflict(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	tl_write(env.src, "doc.txt", "original\n");
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	tl_write(env.src, "doc.txt", V_SRC);
	tl_write(env.tgt, "doc.txt", V_TGT);
	tl_mount(&env, &mnt, NULL);
}

TestSuite(watch_conflict, .init = setup_conflict, .fini = teardown, .timeout = 60);

/* A conflicted NAME shows as NAME.conflict-source and -target: an edit of
 * NAME in a partner shows under those names. */
Test(watch_conflict, conflict_entries_show_edits)
{
	wait_content_str("doc.txt.conflict-source", V_SRC);
	wait_content_str("doc.txt.conflict-target", V_TGT);
	put(S("doc.txt"), "more\n", 5, O_APPEND);
	put(T("doc.txt"), "x", 1, O_TRUNC);
	wait_content_str("doc.txt.conflict-source", V_SRC "more\n");
	wait_content_str("doc.txt.conflict-target", "x");
}

/* ------------------------------------------------------------ overflow */

/*
 * inotify's queue holds fs.inotify.max_queued_events, as it was when the
 * queue was made: lowered for the mount's start only, so that a burst of
 * edits overflows it. What others make meanwhile gets the short queue
 * too, and only loses events it must handle anyway.
 */
#define QUEUED "/proc/sys/fs/inotify/max_queued_events"
static char queued_was[32];

static void restore_queued(void)
{
	if (!queued_was[0])
		return;
	FILE *f = fopen(QUEUED, "we");
	if (f) {
		fputs(queued_was, f);
		fclose(f);
	}
	queued_was[0] = '\0';
}

#define NFILES 300

static void setup_overflow(void)
{
	tl_fuse_required();
	tl_env_init(&env);
	for (int i = 0; i < NFILES; i++) {
		char rel[32];
		snprintf(rel, sizeof(rel), "d/f%03d", i);
		tl_write(env.src, rel, "0123456789\n");
	}
	FILE *f = fopen(QUEUED, "re");
	if (!f || !fgets(queued_was, sizeof(queued_was), f)) {
		if (f)
			fclose(f);
		queued_was[0] = '\0';
		cr_skip_test("%s cannot be read", QUEUED);
	}
	fclose(f);
	if (!(f = fopen(QUEUED, "we")) || fputs("16\n", f) < 0 || fclose(f) != 0) {
		queued_was[0] = '\0';
		cr_skip_test("%s cannot be written (not root?)", QUEUED);
	}
	tl_mount(&env, &mnt, NULL);
	restore_queued();
}

static void teardown_overflow(void)
{
	restore_queued();
	teardown();
}

TestSuite(watch_overflow, .init = setup_overflow, .fini = teardown_overflow, .timeout = 60);

/* A burst of edits beyond the queue: every path is invalidated, and the
 * watches are taken again (a later edit shows too). */
Test(watch_overflow, lost_events_invalidate_everything)
{
	char rel[32];
	for (int i = 0; i < NFILES; i++) {
		snprintf(rel, sizeof(rel), "d/f%03d", i);
		wait_content_str(rel, "0123456789\n");
	}
	for (int i = 0; i < NFILES; i++) {
		snprintf(rel, sizeof(rel), "d/f%03d", i);
		put(S(rel), "more\n", 5, O_APPEND);
	}
	for (int i = 0; i < NFILES; i++) {
		snprintf(rel, sizeof(rel), "d/f%03d", i);
		wait_content_str(rel, "0123456789\nmore\n");
	}
	put(S("d/f000"), "again\n", 6, O_APPEND);
	wait_content_str("d/f000", "0123456789\nmore\nagain\n");
}
