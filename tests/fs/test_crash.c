/*
 * Crash safety of reconcile: killed with SIGKILL at many moments of a run
 * carrying changes both ways (small files, large files, deletions), it
 * never leaves a partial file under a real name, and the next run finishes
 * the job with nothing lost. And a file that changes while it is copied is
 * never recorded with content it does not have.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

static struct tl_env env;

static void setup(void) { tl_env_init(&env); }
static void teardown(void) { tl_env_fini(&env); }

TestSuite(crash, .init = setup, .fini = teardown, .timeout = 300);

#define TMP_PREFIX ".sbfs-tmp."

#define ASSERT_EXIT(r, want, ctx)                                             \
	cr_assert_eq((r).status, (want), "%s: exit %d, expected %d\nstdout:\n%s\nstderr:\n%s", \
		     (ctx), (r).status, (want), (r).out, (r).err)

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(long us)
{
	struct timespec ts = { us / 1000000, (us % 1000000) * 1000L };
	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------ content */

/* A version of a file: its content is a pure function of (seed, size). */
struct ver {
	uint32_t seed;		/* 0: absent */
	uint32_t size;
};

static int ver_eq(struct ver a, struct ver b)
{
	return a.seed == b.seed && a.size == b.size;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* Bytes [off, off+n) of version seed's content; off a multiple of 8. */
static void gen(uint32_t seed, uint64_t off, uint8_t *buf, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = mix(((uint64_t)seed << 40) ^ ((off + i) >> 3));
		memcpy(buf + i, &v, n - i < 8 ? n - i : 8);
	}
}

#define CHUNK (1 << 20)
static uint8_t *gbuf, *fbuf;

static void bufs(void)
{
	if (!gbuf) {
		gbuf = malloc(CHUNK);
		fbuf = malloc(CHUNK);
	}
}

static void free_bufs(void)
{
	free(gbuf);
	free(fbuf);
	gbuf = fbuf = NULL;
}

/* Writes version v of root/rel as a new inode renamed into place, so that
 * the change shows in the fingerprint whatever the clock granularity. */
static void write_ver(const char *root, const char *rel, struct ver v)
{
	char *p = tl_join(root, rel), *tmp = NULL;
	cr_assert(asprintf(&tmp, "%s.writing", p) > 0);
	tl_mkparents(p);
	bufs();
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0, "open %s: %s", tmp, strerror(errno));
	for (uint64_t off = 0; off < v.size; off += CHUNK) {
		size_t n = v.size - off < CHUNK ? v.size - off : CHUNK;
		gen(v.seed, off, gbuf, n);
		cr_assert_eq(write(fd, gbuf, n), (ssize_t)n, "write %s: %s", tmp, strerror(errno));
	}
	close(fd);
	cr_assert(rename(tmp, p) == 0, "rename %s: %s", tmp, strerror(errno));
	free(tmp);
	free(p);
}

/* -1: absent; 1: a regular file holding version v; 0: anything else. */
static int has_ver(const char *root, const char *rel, struct ver v)
{
	char *p = tl_join(root, rel);
	int fd = open(p, O_RDONLY | O_NOFOLLOW);
	free(p);
	if (fd < 0) {
		cr_assert(errno == ENOENT, "open %s/%s: %s", root, rel, strerror(errno));
		return -1;
	}
	struct stat st;
	int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && v.seed &&
		 (uint64_t)st.st_size == v.size;
	bufs();
	for (uint64_t off = 0; ok && off < v.size; off += CHUNK) {
		size_t n = v.size - off < CHUNK ? v.size - off : CHUNK;
		gen(v.seed, off, gbuf, n);
		ok = read(fd, fbuf, n) == (ssize_t)n && !memcmp(fbuf, gbuf, n);
	}
	close(fd);
	return ok;
}

/* 1 if root/rel is version a or version b (absent counting as a version). */
static int is_one_of(const char *root, const char *rel, struct ver a, struct ver b)
{
	char *p = tl_join(root, rel);
	struct stat st;
	int absent = lstat(p, &st) < 0;
	cr_assert(!absent || errno == ENOENT, "lstat %s: %s", p, strerror(errno));
	free(p);
	if (absent)
		return !a.seed || !b.seed;
	if (a.seed && has_ver(root, rel, a) == 1)
		return 1;
	return b.seed && !ver_eq(a, b) && has_ver(root, rel, b) == 1;
}

static char *describe(const char *root, const char *rel)
{
	char *p = tl_join(root, rel), *s = NULL;
	struct stat st;
	if (lstat(p, &st) < 0)
		cr_assert(asprintf(&s, "absent") > 0);
	else
		cr_assert(asprintf(&s, "mode %o, %lld bytes", st.st_mode, (long long)st.st_size) > 0);
	free(p);
	return s;
}

/* ------------------------------------------------------------ the model */

struct ent {
	char path[40];
	struct ver cur;		/* as last synchronised */
	struct ver s, t;	/* each side before the run */
	struct ver fin;		/* both sides once synchronised */
};

static struct ent *ents;
static size_t nents, capents;
static uint32_t next_seed = 1;

static struct ver new_ver(uint32_t size)
{
	return (struct ver){ next_seed++, size };
}

static struct ent *add_ent(const char *path)
{
	if (nents == capents) {
		capents = capents ? 2 * capents : 4096;
		ents = realloc(ents, capents * sizeof(*ents));
	}
	struct ent *e = &ents[nents++];
	memset(e, 0, sizeof(*e));
	snprintf(e->path, sizeof(e->path), "%s", path);
	return e;
}

static int cmp_ent(const void *a, const void *b)
{
	return strcmp(((const struct ent *)a)->path, ((const struct ent *)b)->path);
}

static void sort_ents(void)
{
	qsort(ents, nents, sizeof(*ents), cmp_ent);
}

static struct ent *find_ent(const char *path)
{
	struct ent key;
	snprintf(key.path, sizeof(key.path), "%s", path);
	return bsearch(&key, ents, nents, sizeof(*ents), cmp_ent);
}

/* ------------------------------------------------------------ walking */

struct walkres {
	size_t files, temps;
	char *first_temp, *first_bad;
};

/* Every entry beneath root: regular files must be known to the model
 * (present in one of the versions `which` selects), temporaries counted. */
static void walk_at(int fd, const char *rel, int which, struct walkres *w)
{
	DIR *d = fdopendir(dup(fd));
	struct dirent *de;
	cr_assert(d);
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		/* the root's old versions are kept, not synced (engine/versions.c) */
		if (!strcmp(n, ".") || !strcmp(n, "..") || (!*rel && !strcmp(n, ".sbfs-versions")))
			continue;
		char *sub = NULL;
		cr_assert(asprintf(&sub, "%s%s%s", rel, *rel ? "/" : "", n) > 0);
		struct stat st;
		cr_assert(fstatat(fd, n, &st, AT_SYMLINK_NOFOLLOW) == 0);
		if (!strncmp(n, TMP_PREFIX, strlen(TMP_PREFIX))) {
			if (!w->temps++)
				w->first_temp = strdup(sub);
		} else if (S_ISDIR(st.st_mode)) {
			int c = openat(fd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
			cr_assert(c >= 0);
			walk_at(c, sub, which, w);
			close(c);
		} else {
			struct ent *e = S_ISREG(st.st_mode) ? find_ent(sub) : NULL;
			int known = e && (which ? e->fin.seed != 0 : (e->s.seed || e->t.seed));
			w->files++;
			if (!known && !w->first_bad)
				w->first_bad = strdup(sub);
		}
		free(sub);
	}
	closedir(d);
}

static struct walkres walk(const char *root, int which)
{
	struct walkres w = { 0 };
	int fd = open(root, O_RDONLY | O_DIRECTORY);
	cr_assert(fd >= 0);
	walk_at(fd, "", which, &w);
	close(fd);
	return w;
}

static void walkres_free(struct walkres *w)
{
	free(w->first_temp);
	free(w->first_bad);
}

/* ------------------------------------------------------------ rounds */

#define NDIRS 20
#define PER_DIR 100
#define BIG_SIZE (30u << 20)
#define NBIG 3
#define NEW_PER_SIDE 40

static uint32_t small_size(uint32_t h)
{
	return 64 + h % 4000;
}

/*
 * Changes both sides for round `round`, never the same path on both:
 * random small edits and deletions on each side, new files on each side,
 * the source deletes the directory the target created last round, and
 * the source creates or rewrites big files.
 */
static void make_changes(int round, char *gone_dir, size_t gone_len)
{
	char rel[40];
	size_t n0 = nents;

	snprintf(gone_dir, gone_len, "n%02dt", round - 1);
	size_t glen = strlen(gone_dir);
	for (size_t i = 0; i < n0; i++) {
		struct ent *e = &ents[i];
		e->s = e->t = e->cur;
		if (!strncmp(e->path, "big", 3))
			continue;
		if (round > 1 && !strncmp(e->path, gone_dir, glen) && e->path[glen] == '/') {
			e->s = (struct ver){ 0, 0 };
			continue;
		}
		uint64_t h = mix((uint64_t)round << 32 | i);
		switch (h % 100) {
		case 0: case 1: case 2:
			e->s = new_ver(small_size(h >> 20));
			break;
		case 3: case 4: case 5:
			e->t = new_ver(small_size(h >> 20));
			break;
		case 6: case 7:
			e->s = (struct ver){ 0, 0 };
			break;
		case 8: case 9:
			e->t = (struct ver){ 0, 0 };
			break;
		}
	}
	for (int side = 0; side < 2; side++)
		for (int k = 0; k < NEW_PER_SIDE; k++) {
			snprintf(rel, sizeof(rel), "n%02d%c/%03d", round, side ? 't' : 's', k);
			struct ent *e = add_ent(rel);
			struct ver v = new_ver(small_size(mix(next_seed)));
			if (side)
				e->t = v;
			else
				e->s = v;
		}
	sort_ents();
	/* The big files: created where missing, and one of them rewritten
	 * (all three in the first round). */
	for (int b = 0; b < NBIG; b++) {
		snprintf(rel, sizeof(rel), "big%d", b);
		struct ent *e = find_ent(rel);
		if (!e) {
			e = add_ent(rel);
			e->s = e->t = e->cur;
		} else if (b != (round - 1) % NBIG) {
			continue;
		}
		e->s = new_ver(BIG_SIZE + 8 * round + b);
	}
	sort_ents();

	/* On disk. */
	for (size_t i = 0; i < nents; i++) {
		struct ent *e = &ents[i];
		e->fin = !ver_eq(e->s, e->cur) ? e->s : e->t;
		for (int side = 0; side < 2; side++) {
			struct ver v = side ? e->t : e->s;
			const char *root = side ? env.tgt : env.src;
			if (ver_eq(v, e->cur))
				continue;
			if (v.seed) {
				write_ver(root, e->path, v);
			} else {
				char *p = tl_join(root, e->path);
				cr_assert(unlink(p) == 0, "unlink %s: %s", p, strerror(errno));
				free(p);
			}
		}
	}
	if (round > 1) {
		char *p = tl_join(env.src, gone_dir);
		cr_assert(rmdir(p) == 0, "rmdir %s: %s", p, strerror(errno));
		free(p);
	}
}

/* After the kill: every file under its real name is a whole version. */
static void check_after_kill(const char *what)
{
	for (size_t i = 0; i < nents; i++) {
		struct ent *e = &ents[i];
		if (!is_one_of(env.tgt, e->path, e->t, e->s)) {
			char *d = describe(env.tgt, e->path);
			cr_assert_fail("%s: target's %s is neither its own version (%u bytes) "
				       "nor the source's (%u bytes): %s", what, e->path,
				       e->t.size, e->s.size, d);
		}
		if (!is_one_of(env.src, e->path, e->s, e->t)) {
			char *d = describe(env.src, e->path);
			cr_assert_fail("%s: source's %s is neither its own version (%u bytes) "
				       "nor the target's (%u bytes): %s", what, e->path,
				       e->s.size, e->t.size, d);
		}
	}
	for (int side = 0; side < 2; side++) {
		struct walkres w = walk(side ? env.tgt : env.src, 0);
		cr_assert(!w.first_bad, "%s: unexpected file %s in the %s", what, w.first_bad,
			  side ? "target" : "source");
		cr_log_info("%s: %s holds %zu temporaries", what, side ? "target" : "source", w.temps);
		walkres_free(&w);
	}
}

/* After the recovery run: both sides hold the final versions, nothing else. */
static void check_recovered(const char *what, const char *gone_dir)
{
	/* The source against the model; the target against the source below. */
	for (size_t i = 0; i < nents; i++) {
		struct ent *e = &ents[i];
		for (int side = 0; side < 2; side++) {
			const char *root = side ? env.tgt : env.src;
			int ok = e->fin.seed ? side || has_ver(root, e->path, e->fin) == 1
					     : !tl_exists(root, e->path);
			if (!ok) {
				char *d = describe(root, e->path);
				cr_assert_fail("%s: %s's %s should %s (%u bytes): %s", what,
					       side ? "target" : "source", e->path,
					       e->fin.seed ? "hold the latest version" : "be deleted",
					       e->fin.size, d);
			}
		}
	}
	for (int side = 0; side < 2; side++) {
		const char *root = side ? env.tgt : env.src;
		struct walkres w = walk(root, 1);
		cr_assert(!w.first_bad, "%s: unexpected file %s in the %s", what, w.first_bad,
			  side ? "target" : "source");
		cr_assert_eq(w.temps, 0, "%s: temporary %s left in the %s", what, w.first_temp,
			     side ? "target" : "source");
		walkres_free(&w);
		if (*gone_dir)
			cr_assert(!tl_exists(root, gone_dir), "%s: %s/%s was not deleted", what,
				  root, gone_dir);
	}
	char *why = NULL;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "%s: trees differ: %s", what, why);
	struct tl_run r = tl_cmd(&env, "conflicts", NULL);
	ASSERT_EXIT(r, 0, what);
	cr_assert(strstr(r.out, "No conflicts"), "%s: %s", what, r.out);
	tl_run_free(&r);
	r = tl_cmd(&env, "status", NULL);
	ASSERT_EXIT(r, 0, what);
	tl_run_free(&r);
}

/* The synchronised versions become the baseline of the next round. */
static void settle(void)
{
	size_t k = 0;
	for (size_t i = 0; i < nents; i++) {
		if (!ents[i].fin.seed)
			continue;
		ents[k] = ents[i];
		ents[k].cur = ents[k].s = ents[k].t = ents[k].fin;
		k++;
	}
	nents = k;
}

/* Kill triggers beside a fixed delay. */
enum { AT_DELAY, AT_TEMP_IN_TARGET, AT_FIRST_LOG_LINE, AT_NEW_DIR_FILLING };

static int temp_in(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int found = 0;
	while (d && !found && (de = readdir(d)))
		found = !strncmp(de->d_name, TMP_PREFIX, strlen(TMP_PREFIX));
	if (d)
		closedir(d);
	return found;
}

static off_t size_of(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 ? st.st_size : 0;
}

/*
 * Runs reconcile and SIGKILLs it at `how` (after delay_us, or once the
 * trigger is seen; AT_NEW_DIR_FILLING watches for watch_n entries in
 * watch_dir), then checks that no file is partial.
 */
static void run_and_kill(const char *what, int how, long delay_us,
			 const char *watch_dir, size_t watch_n)
{
	off_t log0 = size_of(env.log);
	struct tl_proc p;
	int64_t t0 = now_us();
	tl_spawn_cmd(&p, &env, "reconcile", (const char *[]){ "-q", NULL });
	int fired = 0;
	if (how == AT_DELAY) {
		sleep_us(delay_us);
		fired = 1;
	} else {
		while (!tl_proc_done(&p) && now_us() - t0 < 60000000) {
			if (how == AT_TEMP_IN_TARGET)
				fired = temp_in(env.tgt);
			else if (how == AT_FIRST_LOG_LINE)
				fired = size_of(env.log) > log0;
			else
				fired = tl_count(watch_dir) >= watch_n;
			if (fired)
				break;
			sleep_us(200);
		}
	}
	struct tl_run r = tl_proc_wait(&p, SIGKILL);
	int64_t t1 = now_us();
	cr_assert(r.status == 0 || r.status == 128 + SIGKILL, "%s: exit %d\n%s%s", what,
		  r.status, r.out, r.err);
	cr_log_info("%s: %s after %lld us%s", what, r.status ? "killed" : "finished first",
		    (long long)(t1 - t0), how == AT_DELAY ? "" : fired ? ", trigger seen"
		    : ", trigger never seen");
	tl_run_free(&r);
	check_after_kill(what);
}

/* The recovery run: must finish with everything in place. */
static void recover(const char *what, const char *gone)
{
	struct tl_run r = tl_cmd(&env, "reconcile", (const char *[]){ "-q", NULL });
	ASSERT_EXIT(r, 0, what);
	tl_run_free(&r);
	check_recovered(what, gone);
	settle();
}

/*
 * One round: changes, a reconcile killed at `how`/`delay_us`, checks,
 * then recovery (itself killed once after second_kill_us when not 0).
 */
static void crash_round(int round, int how, long delay_us, long second_kill_us)
{
	char gone[16], what[128], newdir[16];
	make_changes(round, gone, sizeof(gone));
	if (round <= 1)
		gone[0] = '\0';
	snprintf(what, sizeof(what), "round %d (kill %s %ld us)", round,
		 how == AT_DELAY ? "after" : how == AT_TEMP_IN_TARGET ? "at a temporary in the target"
		 : how == AT_FIRST_LOG_LINE ? "at the first log line" : "while a new dir fills",
		 delay_us);
	snprintf(newdir, sizeof(newdir), "n%02ds", round);
	char *watch = tl_join(env.tgt, newdir);
	run_and_kill(what, how, delay_us, watch, 10);
	free(watch);
	if (second_kill_us) {
		size_t l = strlen(what);
		snprintf(what + l, sizeof(what) - l, ", recovery killed after %ld us", second_kill_us);
		run_and_kill(what, AT_DELAY, second_kill_us, NULL, 0);
	}
	recover(what, gone);
}

/* The first tree, 2000 small files and one big one, synchronised by a
 * first run that is killed while it fills the target, and a second one. */
static void build_initial(void)
{
	char rel[40];
	for (int d = 0; d < NDIRS; d++)
		for (int f = 0; f < PER_DIR; f++) {
			snprintf(rel, sizeof(rel), "d%02d/f%03d", d, f);
			struct ent *e = add_ent(rel);
			e->s = e->fin = new_ver(small_size(mix(next_seed)));
			write_ver(env.src, rel, e->s);
		}
	struct ent *e = add_ent("big0");
	e->s = e->fin = new_ver(BIG_SIZE);
	write_ver(env.src, "big0", e->s);
	sort_ents();
	char *watch = tl_join(env.tgt, "d05");
	run_and_kill("first sync", AT_NEW_DIR_FILLING, 0, watch, 1);
	free(watch);
	recover("first sync", "");
}

static void reset_model(void)
{
	free(ents);
	ents = NULL;
	nents = capents = 0;
	next_seed = 1;
}

/*
 * One tree, its first sync killed halfway, then eleven rounds of changes,
 * each run killed at another moment: after fixed delays from 1 ms to 1 s
 * (one recovery run killed too), then at moments seen from outside (a
 * temporary appears in the target, the log gets its first line, a new
 * directory fills up in the target).
 */
Test(crash, killed_at_many_moments)
{
	static const long delays_us[] = { 1000, 3000, 10000, 25000, 60000, 150000, 400000, 1000000 };
	static const int triggers[] = { AT_TEMP_IN_TARGET, AT_FIRST_LOG_LINE, AT_NEW_DIR_FILLING };
	const int nd = sizeof(delays_us) / sizeof(*delays_us);
	reset_model();
	build_initial();
	for (int i = 0; i < nd; i++)
		crash_round(i + 1, AT_DELAY, delays_us[i], i == 5 ? 30000 : 0);
	for (int i = 0; i < 3; i++)
		crash_round(nd + i + 1, triggers[i], 0, 0);
	reset_model();
	free_bufs();
}

/* ------------------------------------------------------------ changing while copied */

#define HUGE_SIZE (200u << 20)

struct writer_plan {
	long start_us;		/* after reconcile was launched */
	long duration_us;
	long interval_us;	/* between 1 MiB writes */
	int in_place;		/* rewrite inside the file instead of appending */
};

static pid_t start_writer(const char *path, const struct writer_plan *wp, uint32_t seed)
{
	fflush(NULL);
	pid_t pid = fork();
	cr_assert(pid >= 0);
	if (pid)
		return pid;
	sleep_us(wp->start_us);
	int fd = open(path, O_WRONLY | (wp->in_place ? 0 : O_APPEND));
	if (fd < 0)
		_exit(1);
	uint8_t *buf = malloc(CHUNK);
	int64_t end = now_us() + wp->duration_us;
	for (uint32_t k = 0; now_us() < end; k++) {
		gen(seed + k, 0, buf, CHUNK);
		ssize_t w = wp->in_place ? pwrite(fd, buf, CHUNK, (uint64_t)(k * 7 % 190) << 20)
					 : write(fd, buf, CHUNK);
		if (w != CHUNK)
			_exit(2);
		sleep_us(wp->interval_us);
	}
	free(buf);
	close(fd);
	_exit(0);
}

Test(crash, file_modified_while_copied)
{
	/* Appending for a second, past the end of the copy; rewriting in
	 * place, then appending, each stopping while the copy likely goes on
	 * (what a run that recorded the source as it was after the copy,
	 * rather than as scanned, would get wrong). */
	static const struct writer_plan plans[] = {
		{ .start_us = 0, .duration_us = 1000000, .interval_us = 10000 },
		{ .start_us = 20000, .duration_us = 120000, .interval_us = 2000, .in_place = 1 },
		{ .start_us = 40000, .duration_us = 80000, .interval_us = 5000 },
	};
	char *path = tl_join(env.src, "huge");
	for (int rep = 0; rep < 3; rep++) {
		const struct writer_plan *wp = &plans[rep];
		char what[64];
		snprintf(what, sizeof(what), "repetition %d", rep);
		/* A new file, then new versions of it: always a copy to make. */
		write_ver(env.src, "huge", (struct ver){ 1000 + rep, HUGE_SIZE + 8 * rep });

		struct tl_proc p;
		tl_spawn_cmd(&p, &env, "reconcile", (const char *[]){ "-q", NULL });
		pid_t w = start_writer(path, wp, 5000 + 1000 * rep);
		int st;
		cr_assert_eq(waitpid(w, &st, 0), w);
		cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: the writer failed (%d)", what, st);
		struct tl_run r = tl_proc_wait(&p, 0);
		cr_assert(r.status == 0 || r.status == 1, "%s: exit %d\n%s%s", what, r.status,
			  r.out, r.err);
		cr_log_info("%s: first reconcile exit %d: %s", what, r.status, r.err);
		tl_run_free(&r);

		/* The writer has stopped: the next run must bring the final content. */
		r = tl_cmd(&env, "reconcile", (const char *[]){ "-q", NULL });
		ASSERT_EXIT(r, 0, what);
		tl_run_free(&r);
		char *why = NULL;
		cr_assert(tl_trees_equal(env.src, env.tgt, &why), "%s: %s", what, why);
		cr_assert(!temp_in(env.tgt) && !temp_in(env.src), "%s: a temporary was left", what);
		r = tl_cmd(&env, "status", NULL);
		ASSERT_EXIT(r, 0, what);
		tl_run_free(&r);
	}
	free(path);
	free_bufs();
}
