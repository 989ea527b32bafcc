/*
 * Safety of the sbfs command line: bad roots are refused before anything
 * is touched, unreadable or odd entries are skipped and never taken as
 * deleted, a side that looks emptied is not mirrored, every byte string a
 * name can be survives, trees deeper than PATH_MAX sync, symlinks are never
 * followed out of a partner, and a second run waits for the first.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "sbfs.h"
#include "testlib.h"

static struct tl_env env;

static void setup(void) { tl_env_init(&env); }
static void teardown(void) { tl_env_fini(&env); }

TestSuite(safety, .init = setup, .fini = teardown, .timeout = 120);

/* ------------------------------------------------------------ helpers */

#define ASSERT_EXIT(r, want)                                                  \
	cr_assert_eq((r).status, (want), "exit %d, expected %d\nstdout:\n%s\nstderr:\n%s", \
		     (r).status, (want), (r).out, (r).err)

#define ASSERT_ERR_HAS(r, needle)                                             \
	cr_assert(strstr((r).err, (needle)), "stderr lacks \"%s\":\n%s", (needle), (r).err)

static char *xstrdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xstrdup_printf(const char *fmt, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		cr_assert_fail("out of memory");
	va_end(ap);
	return s;
}

/* Appends to a growing string. */
struct sbuf {
	char *s;
	size_t len, cap;
};

static void sb_add(struct sbuf *b, const void *p, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s = realloc(b->s, b->cap);
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
	const unsigned char *c = p;
	for (size_t i = 0; i < n; i++)
		h = (h ^ c[i]) * 0x100000001b3ULL;
	return h;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in the directory open at fd (not "." or ".."). */
static char **names_at(int fd, size_t *n)
{
	DIR *d = fdopendir(dup(fd));
	struct dirent *de;
	char **v = NULL;
	*n = 0;
	cr_assert(d, "fdopendir: %s", strerror(errno));
	while ((de = readdir(d))) {
		/* the root's old versions are kept, not synced (engine/versions.c) */
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
		    !strcmp(de->d_name, ".sbfs-versions"))
			continue;
		v = realloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = strdup(de->d_name);
	}
	closedir(d);
	if (*n)
		qsort(v, *n, sizeof(*v), cmp_str);
	return v;
}

static void names_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* A line per entry: path, type, mode, size, mtime, content or link hash. */
static void sig_at(int fd, const char *rel, struct sbuf *b)
{
	size_t n;
	char **v = names_at(fd, &n);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		char line[256];
		uint64_t h = 0xcbf29ce484222325ULL;
		if (fstatat(fd, v[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
			cr_assert_fail("fstatat %s/%s: %s", rel, v[i], strerror(errno));
		if (S_ISREG(st.st_mode)) {
			int f = openat(fd, v[i], O_RDONLY | O_NOFOLLOW);
			char buf[65536];
			ssize_t k;
			cr_assert(f >= 0, "open %s/%s: %s", rel, v[i], strerror(errno));
			while ((k = read(f, buf, sizeof(buf))) > 0)
				h = fnv(h, buf, k);
			close(f);
		} else if (S_ISLNK(st.st_mode)) {
			char buf[PATH_MAX];
			ssize_t k = readlinkat(fd, v[i], buf, sizeof(buf));
			h = fnv(h, buf, k > 0 ? k : 0);
		}
		sb_add(b, rel, strlen(rel));
		sb_add(b, "/", 1);
		sb_add(b, v[i], strlen(v[i]));
		snprintf(line, sizeof(line), " %o %lld %lld.%09ld %016llx\n", st.st_mode,
			 (long long)st.st_size, (long long)st.st_mtim.tv_sec,
			 st.st_mtim.tv_nsec, (unsigned long long)h);
		sb_add(b, line, strlen(line));
		if (S_ISDIR(st.st_mode)) {
			int sub = openat(fd, v[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
			cr_assert(sub >= 0, "open %s/%s: %s", rel, v[i], strerror(errno));
			char *r2 = xstrdup_printf("%s/%s", rel, v[i]);
			sig_at(sub, r2, b);
			free(r2);
			close(sub);
		}
	}
	names_free(v, n);
}

/* Signature of a whole tree, the root's own mode and mtime included. */
static char *tree_sig(const char *dir)
{
	struct sbuf b = { 0 };
	struct stat st;
	char line[128];
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	cr_assert(fd >= 0, "open %s: %s", dir, strerror(errno));
	fstat(fd, &st);
	snprintf(line, sizeof(line), ". %o %lld.%09ld\n", st.st_mode,
		 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
	sb_add(&b, line, strlen(line));
	sig_at(fd, ".", &b);
	close(fd);
	return b.s;
}

#define ASSERT_UNCHANGED(before, dir)                                         \
	do {                                                                  \
		char *after_ = tree_sig(dir);                                 \
		cr_assert_str_eq(after_, (before), "%s changed", (dir));      \
		free(after_);                                                 \
	} while (0)

static void assert_synced(void)
{
	char *why = NULL;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "trees differ: %s", why);
	free(why);
}

static void reconcile_ok(void)
{
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	assert_synced();
}

static struct tl_run run2(const char *cmd, const char *a, const char *b)
{
	return tl_sbfs_run(&env, NULL, (const char *[]){ cmd, a, b, NULL });
}

static void assert_content(const char *dir, const char *rel, const char *want)
{
	char *got = tl_read(dir, rel);
	cr_assert(got, "%s/%s is missing", dir, rel);
	cr_assert_str_eq(got, want, "%s/%s", dir, rel);
	free(got);
}

/* ------------------------------------------------------------ bad roots */

/* Runs reconcile on (a, b), expects exit 2 with `path` and `why` on stderr,
 * and checks that neither partner (nor the state directory) changed. */
static void refused(const char *a, const char *b, const char *path, const char *why)
{
	tl_write(env.src, "keep.txt", "source file\n");
	tl_write(env.tgt, "sub/keep.txt", "target file\n");
	char *s0 = tree_sig(env.src), *t0 = tree_sig(env.tgt);
	const char *cmds[] = { "reconcile", "status", "conflicts" };
	for (size_t i = 0; i < 3; i++) {
		struct tl_run r = run2(cmds[i], a, b);
		cr_assert_eq(r.status, 2, "%s %s %s: exit %d\n%s%s", cmds[i], a, b,
			     r.status, r.out, r.err);
		ASSERT_ERR_HAS(r, path);
		ASSERT_ERR_HAS(r, why);
		tl_run_free(&r);
		ASSERT_UNCHANGED(s0, env.src);
		ASSERT_UNCHANGED(t0, env.tgt);
	}
	free(s0);
	free(t0);
}

Test(safety, source_missing)
{
	char *nope = tl_join(env.base, "nope");
	refused(nope, env.tgt, nope, "No such file or directory");
	cr_assert(!tl_exists(env.base, "nope"));
	free(nope);
}

Test(safety, target_missing)
{
	char *nope = tl_join(env.base, "nope");
	refused(env.src, nope, nope, "No such file or directory");
	cr_assert(!tl_exists(env.base, "nope"));
	free(nope);
}

Test(safety, source_is_a_file)
{
	tl_write(env.base, "plain", "just a file\n");
	char *f = tl_join(env.base, "plain");
	refused(f, env.tgt, f, "Not a directory");
	assert_content(env.base, "plain", "just a file\n");
	free(f);
}

Test(safety, target_is_a_file)
{
	tl_write(env.base, "plain", "just a file\n");
	char *f = tl_join(env.base, "plain");
	refused(env.src, f, f, "Not a directory");
	assert_content(env.base, "plain", "just a file\n");
	free(f);
}

Test(safety, same_directory)
{
	refused(env.src, env.src, env.src, "same directory");
}

Test(safety, same_directory_via_symlink)
{
	char *link = tl_join(env.base, "link-to-src");
	cr_assert(symlink(env.src, link) == 0);
	refused(env.src, link, link, "same directory");
	refused(link, env.src, env.src, "same directory");
	/* A trailing "/." is the same directory too. */
	char *dot = tl_join(env.src, ".");
	refused(env.src, dot, dot, "same directory");
	free(dot);
	free(link);
}

Test(safety, target_inside_source)
{
	tl_mkdir(env.src, "inner");
	char *inner = tl_join(env.src, "inner");
	refused(env.src, inner, inner, "inside");
	cr_assert_eq(tl_count(inner), 0);
	free(inner);
}

Test(safety, source_inside_target)
{
	tl_mkdir(env.tgt, "inner");
	char *inner = tl_join(env.tgt, "inner");
	refused(inner, env.tgt, inner, "inside");
	cr_assert_eq(tl_count(inner), 0);
	free(inner);
}

Test(safety, nested_via_symlink)
{
	tl_mkdir(env.src, "deep/inner");
	char *inner = tl_join(env.src, "deep/inner");
	char *link = tl_join(env.base, "sneaky");
	cr_assert(symlink(inner, link) == 0);
	refused(env.src, link, link, "inside");
	refused(link, env.src, link, "inside");
	free(inner);
	free(link);
}

/* The state directory given by --state-dir or $SBFS_STATE_DIR. */
static void state_refused(const char *state, int by_env)
{
	tl_write(env.src, "keep.txt", "source file\n");
	tl_write(env.tgt, "sub/keep.txt", "target file\n");
	char *s0 = tree_sig(env.src), *t0 = tree_sig(env.tgt);
	struct tl_env e2 = env;
	struct tl_run r;
	if (by_env) {
		e2.state = (char *)state;
		r = tl_sbfs_run(&e2, NULL, (const char *[]){ "reconcile", env.src, env.tgt, NULL });
	} else {
		r = tl_sbfs_run(&env, NULL, (const char *[]){ "reconcile", "--state-dir", state,
							       env.src, env.tgt, NULL });
	}
	ASSERT_EXIT(r, 2);
	ASSERT_ERR_HAS(r, state);
	ASSERT_ERR_HAS(r, "state directory lies inside a partner");
	tl_run_free(&r);
	ASSERT_UNCHANGED(s0, env.src);
	ASSERT_UNCHANGED(t0, env.tgt);
	free(s0);
	free(t0);
}

Test(safety, state_dir_inside_source)
{
	char *st = tl_join(env.src, ".sbfs-state");
	state_refused(st, 0);
	state_refused(st, 1);
	cr_assert(!tl_exists(env.src, ".sbfs-state"));
	free(st);
}

Test(safety, state_dir_inside_target)
{
	/* Not existing yet, several levels down: still inside. */
	char *st = tl_join(env.tgt, "a/b/state");
	state_refused(st, 0);
	state_refused(st, 1);
	cr_assert(!tl_exists(env.tgt, "a"));
	free(st);
	/* The partner root itself. */
	state_refused(env.tgt, 1);
}

Test(safety, state_dir_inside_via_symlink)
{
	char *link = tl_join(env.base, "statelink");
	cr_assert(symlink(env.src, link) == 0);
	char *st = tl_join(link, "state");
	state_refused(st, 1);
	cr_assert(!tl_exists(env.src, "state"));
	free(st);
	free(link);
}

/* ------------------------------------------------------------ permissions */

static void build_perm_tree(void)
{
	tl_write(env.src, "sub/f1", "one\n");
	tl_write(env.src, "sub/f2", "two\n");
	tl_write(env.src, "sub/deeper/f3", "three\n");
	tl_write(env.src, "d2/g1", "g one\n");
	tl_write(env.src, "d2/g2", "g two\n");
	tl_write(env.src, "top", "top\n");
	reconcile_ok();
}

static void assert_sub_intact(const char *root)
{
	assert_content(root, "sub/f1", "one\n");
	assert_content(root, "sub/f2", "two\n");
	assert_content(root, "sub/deeper/f3", "three\n");
}

/* side 0: source's sub is made unreadable; 1: target's. */
static void unreadable_subdir(int side)
{
	const char *bad = side ? env.tgt : env.src, *good = side ? env.src : env.tgt;
	build_perm_tree();

	/* Other changes on both sides, which must still sync. */
	tl_write(bad, "new-on-bad-side", "fresh\n");
	tl_write(good, "new-on-good-side", "fresh too\n");
	tl_write(bad, "d2/g1", "g one, changed\n");
	char *sub = tl_join(bad, "sub");
	cr_assert(chmod(sub, 0) == 0);
	tl_assert_nodac_denied(sub);

	struct tl_run r = tl_cmd_nodac(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 1);
	ASSERT_ERR_HAS(r, "warning: sub: ");
	ASSERT_ERR_HAS(r, "Permission denied");
	cr_assert(strstr(r.out, "Delete in target: 0 files") && strstr(r.out, "Delete in source: 0 files"),
		  "planned a deletion:\n%s", r.out);
	tl_run_free(&r);

	/* Never taken as deleted: the other side's copy survives whole. */
	assert_sub_intact(good);
	assert_content(good, "new-on-bad-side", "fresh\n");
	assert_content(bad, "new-on-good-side", "fresh too\n");
	assert_content(good, "d2/g1", "g one, changed\n");

	/* A second run is just as careful. */
	r = tl_cmd_nodac(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 1);
	ASSERT_ERR_HAS(r, "warning: sub: ");
	tl_run_free(&r);
	assert_sub_intact(good);

	/* Readable again: everything is there on both sides. */
	cr_assert(chmod(sub, 0755) == 0);
	assert_sub_intact(bad);
	r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	assert_synced();
	assert_sub_intact(env.src);
	assert_sub_intact(env.tgt);
	free(sub);
}

Test(safety, unreadable_subdir_in_source)
{
	unreadable_subdir(0);
}

Test(safety, unreadable_subdir_in_target)
{
	unreadable_subdir(1);
}

/*
 * "Skipped on both sides": the readable side's copy of the unreadable
 * directory is left exactly as it was, its permission bits included.
 */
Test(safety, unreadable_subdir_other_side_untouched)
{
	build_perm_tree();
	char *tsig = tree_sig(env.tgt);
	char *sub = tl_join(env.src, "sub");
	cr_assert(chmod(sub, 0) == 0);
	tl_assert_nodac_denied(sub);
	struct tl_run r = tl_cmd_nodac(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 1);
	ASSERT_ERR_HAS(r, "warning: sub: ");
	tl_run_free(&r);
	ASSERT_UNCHANGED(tsig, env.tgt);
	chmod(sub, 0755);
	free(sub);
	free(tsig);
}

static void unreadable_root(int side)
{
	const char *bad = side ? env.tgt : env.src, *good = side ? env.src : env.tgt;
	build_perm_tree();
	tl_write(good, "changed-meanwhile", "x\n");
	cr_assert(chmod(bad, 0) == 0);
	tl_assert_nodac_denied(bad);
	char *gsig = tree_sig(good);
	const char *cmds[] = { "reconcile", "status" };
	for (int i = 0; i < 2; i++) {
		struct tl_run r = tl_cmd_nodac(&env, cmds[i], NULL);
		ASSERT_EXIT(r, 2);
		ASSERT_ERR_HAS(r, bad);
		ASSERT_ERR_HAS(r, "Permission denied");
		tl_run_free(&r);
		ASSERT_UNCHANGED(gsig, good);
	}
	cr_assert(chmod(bad, 0755) == 0);
	assert_sub_intact(bad);
	cr_assert(!tl_exists(bad, "changed-meanwhile"));
	free(gsig);
}

Test(safety, unreadable_source_root)
{
	unreadable_root(0);
}

Test(safety, unreadable_target_root)
{
	unreadable_root(1);
}

/* ------------------------------------------------------------ mass deletion */

/* 22 entries: a/ and b/ with 9 files each, two files at the top. */
static void build_mass_tree(void)
{
	char rel[64];
	for (int d = 0; d < 2; d++)
		for (int i = 0; i < 9; i++) {
			snprintf(rel, sizeof(rel), "%c/f%d", 'a' + d, i);
			tl_write(env.src, rel, rel);
		}
	tl_write(env.src, "top1", "1");
	tl_write(env.src, "top2", "2");
	reconcile_ok();
	cr_assert_eq(tl_count(env.src), 22);
}

static void empty_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	size_t n;
	char **v = names_at(fd, &n);
	close(fd);
	for (size_t i = 0; i < n; i++)
		tl_rm(dir, v[i]);
	names_free(v, n);
	cr_assert_eq(tl_count(dir), 0);
}

Test(safety, mass_delete_emptied_target_refused)
{
	build_mass_tree();
	empty_dir(env.tgt);
	char *s0 = tree_sig(env.src), *t0 = tree_sig(env.tgt);
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 2);
	ASSERT_ERR_HAS(r, "--allow-mass-delete");
	ASSERT_ERR_HAS(r, env.tgt);
	ASSERT_ERR_HAS(r, "empty");
	ASSERT_ERR_HAS(r, "Nothing was changed");
	tl_run_free(&r);
	ASSERT_UNCHANGED(s0, env.src);
	ASSERT_UNCHANGED(t0, env.tgt);
	cr_assert_eq(tl_count(env.src), 22);

	/* Refused again: the refusal changed nothing and remembers nothing. */
	r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 2);
	tl_run_free(&r);
	ASSERT_UNCHANGED(s0, env.src);

	/* Allowed: the deletions are carried. */
	r = tl_cmd(&env, "reconcile", (const char *[]){ "--allow-mass-delete", NULL });
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	cr_assert_eq(tl_count(env.src), 0);
	cr_assert_eq(tl_count(env.tgt), 0);
	r = tl_cmd(&env, "status", NULL);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	free(s0);
	free(t0);
}

Test(safety, mass_delete_emptied_source_refused)
{
	build_mass_tree();
	empty_dir(env.src);
	char *t0 = tree_sig(env.tgt);
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 2);
	ASSERT_ERR_HAS(r, "--allow-mass-delete");
	ASSERT_ERR_HAS(r, env.src);
	tl_run_free(&r);
	ASSERT_UNCHANGED(t0, env.tgt);
	cr_assert_eq(tl_count(env.src), 0);
	free(t0);
}

Test(safety, mass_delete_more_than_half_refused)
{
	build_mass_tree();
	/* a/ (10 entries) and 3 files of b/: 13 of 22 gone from the source. */
	tl_rm(env.src, "a");
	tl_rm(env.src, "b/f0");
	tl_rm(env.src, "b/f1");
	tl_rm(env.src, "b/f2");
	/* An unrelated change on the target is not carried either. */
	tl_write(env.tgt, "top1", "changed on target");
	char *s0 = tree_sig(env.src), *t0 = tree_sig(env.tgt);
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 2);
	ASSERT_ERR_HAS(r, "--allow-mass-delete");
	ASSERT_ERR_HAS(r, env.src);
	ASSERT_ERR_HAS(r, "13");
	tl_run_free(&r);
	ASSERT_UNCHANGED(s0, env.src);
	ASSERT_UNCHANGED(t0, env.tgt);

	r = tl_cmd(&env, "reconcile", (const char *[]){ "--allow-mass-delete", NULL });
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	assert_synced();
	cr_assert_eq(tl_count(env.tgt), 22 - 13);
	cr_assert(!tl_exists(env.tgt, "a"));
	cr_assert(!tl_exists(env.tgt, "b/f2"));
	assert_content(env.src, "top1", "changed on target");
	free(s0);
	free(t0);
}

Test(safety, mass_delete_less_than_half_proceeds)
{
	build_mass_tree();
	/* a/: 10 of 22 entries, under half. */
	tl_rm(env.tgt, "a");
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 0);
	cr_assert(!strstr(r.err, "refusing"), "%s", r.err);
	tl_run_free(&r);
	assert_synced();
	cr_assert(!tl_exists(env.src, "a"));
	cr_assert_eq(tl_count(env.src), 12);
}

/* ------------------------------------------------------------ names */

static char name255[256];

static const char *odd_names[] = {
	"with spaces  and  more .txt",
	"new\nline",
	"quote\"and'apostrophe",
	"caf\xe9",
	"\xff\xfe",
	name255,
	"-rf",
	"--help",
	"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xc3\xbc\xc3\xb1\xc3\xaf \xf0\x9f\x8e\x89",
	"tab\there",
	"back\\slash",
	"\x1b[31mred",
	"dir \xff/caf\xe9",
	"dir \xff/-rf",
	"dir \xff/\xe2\x82\xac",
	NULL,
};

static int name_is_on_target(size_t i)
{
	return i % 3 == 1;	/* some names go the other way */
}

static int b64val(int c)
{
	if (c >= 'A' && c <= 'Z') return c - 'A';
	if (c >= 'a' && c <= 'z') return c - 'a' + 26;
	if (c >= '0' && c <= '9') return c - '0' + 52;
	if (c == '+') return 62;
	if (c == '/') return 63;
	return -1;
}

/* Decodes base64 up to a '"'; returns the malloc'd bytes, *n their count. */
static char *b64dec(const char *s, size_t *n)
{
	size_t len = strcspn(s, "\"");
	char *out = malloc(len + 1);
	uint32_t acc = 0;
	int bits = 0;
	*n = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '=')
			break;
		int v = b64val((unsigned char)s[i]);
		cr_assert(v >= 0, "bad base64 character '%c' in %.*s", s[i], (int)len, s);
		acc = acc << 6 | v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[(*n)++] = (char)(acc >> bits);
		}
	}
	out[*n] = '\0';
	return out;
}

Test(safety, odd_names_sync_byte_exact)
{
	memset(name255, 'n', 255);
	memcpy(name255, "long-", 5);
	name255[255] = '\0';
	for (size_t i = 0; odd_names[i]; i++) {
		const char *root = name_is_on_target(i) ? env.tgt : env.src;
		char *content = xstrdup_printf("content of name #%zu: [%s]\n", i, odd_names[i]);
		tl_write(root, odd_names[i], content);
		free(content);
	}
	/* A 255-byte name inside a directory with a non-UTF-8 name too. */
	char *deep = xstrdup_printf("dir \xff/%s", name255);
	tl_write(env.src, deep, "deep long\n");

	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 0);
	/* The output never carries raw control characters from names. */
	cr_assert(!strchr(r.out, '\x1b'), "raw ESC in the output:\n%s", r.out);
	tl_run_free(&r);
	assert_synced();

	for (size_t i = 0; odd_names[i]; i++) {
		char *content = xstrdup_printf("content of name #%zu: [%s]\n", i, odd_names[i]);
		assert_content(env.src, odd_names[i], content);
		assert_content(env.tgt, odd_names[i], content);
		free(content);
	}
	assert_content(env.tgt, deep, "deep long\n");

	/* Byte-exact listing of the target's top level. */
	int fd = open(env.tgt, O_RDONLY | O_DIRECTORY);
	size_t n;
	char **v = names_at(fd, &n);
	close(fd);
	size_t want = 0;
	for (size_t i = 0; odd_names[i]; i++)
		if (!strchr(odd_names[i], '/'))
			want++;
	cr_assert_eq(n, want + 1, "target holds %zu names, expected %zu", n, want + 1);
	for (size_t i = 0; odd_names[i]; i++) {
		if (strchr(odd_names[i], '/'))
			continue;
		int found = 0;
		for (size_t k = 0; k < n; k++)
			found |= !strcmp(v[k], odd_names[i]);
		cr_assert(found, "name #%zu missing from the target listing", i);
	}
	names_free(v, n);

	/* The log: non-UTF-8 paths carry path_b64 with the exact bytes. */
	char *log = tl_read(env.state, "log.jsonl");
	cr_assert(log, "no log at %s/log.jsonl", env.state);
	const char *must[] = { "caf\xe9", "\xff\xfe", "dir \xff/caf\xe9",
			       "dir \xff/-rf", "dir \xff/\xe2\x82\xac", deep, NULL };
	int seen[8] = { 0 };
	size_t lines = 0;
	for (char *line = log, *end; *line; line = end + 1) {
		end = strchr(line, '\n');
		cr_assert(end, "unterminated log line: %s", line);
		*end = '\0';
		lines++;
		char *b = strstr(line, "\"path_b64\":\"");
		char *p = strstr(line, "\"path\":\"");
		cr_assert(p, "log line without path: %s", line);
		if (!b)
			continue;
		size_t dn;
		char *dec = b64dec(b + strlen("\"path_b64\":\""), &dn);
		cr_assert(!sb_utf8_valid(dec, dn), "path_b64 on a UTF-8 path: %s", line);
		cr_assert_eq(strlen(dec), dn, "NUL in a decoded path: %s", line);
		for (int k = 0; must[k]; k++)
			if (!strcmp(dec, must[k]))
				seen[k] = 1;
		free(dec);
	}
	cr_assert(lines >= 16, "only %zu log lines", lines);
	for (int k = 0; must[k]; k++)
		cr_assert(seen[k], "no log line with path_b64 decoding to path #%d", k);
	free(log);

	/* Stable: nothing left to do, names included. */
	r = tl_cmd(&env, "status", NULL);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);

	/* And the names survive a change and a deletion coming back. */
	tl_write(env.tgt, "caf\xe9", "changed on target\n");
	tl_rm(env.tgt, "\xff\xfe");
	tl_rm(env.src, "new\nline");
	reconcile_ok();
	assert_content(env.src, "caf\xe9", "changed on target\n");
	cr_assert(!tl_exists(env.src, "\xff\xfe"));
	cr_assert(!tl_exists(env.tgt, "new\nline"));
	free(deep);
}

/* ------------------------------------------------------------ deep tree */

#define DEEP_LEVELS 30
#define DEEP_NAMELEN 200

static void deep_name(int level, char out[DEEP_NAMELEN + 1])
{
	snprintf(out, DEEP_NAMELEN + 1, "%02d", level);
	memset(out + 2, 'a' + level % 26, DEEP_NAMELEN - 2);
	out[DEEP_NAMELEN] = '\0';
}

static void write_at(int dfd, const char *name, const char *content)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(fd >= 0, "openat %s: %s", name, strerror(errno));
	cr_assert_eq(write(fd, content, strlen(content)), (ssize_t)strlen(content));
	close(fd);
}

static char *read_at(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW);
	if (fd < 0)
		return NULL;
	char *buf = calloc(1, 4096);
	ssize_t n = read(fd, buf, 4095);
	close(fd);
	if (n < 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* Builds DEEP_LEVELS nested directories of DEEP_NAMELEN-byte names under
 * root, a file at each level, with openat chains only. */
static void build_deep(const char *root)
{
	char name[DEEP_NAMELEN + 1], content[64];
	int fd = open(root, O_RDONLY | O_DIRECTORY);
	cr_assert(fd >= 0);
	for (int l = 0; l < DEEP_LEVELS; l++) {
		deep_name(l, name);
		snprintf(content, sizeof(content), "level %d\n", l);
		write_at(fd, "f", content);
		cr_assert(mkdirat(fd, name, 0755) == 0, "mkdirat level %d: %s", l, strerror(errno));
		int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		cr_assert(next >= 0, "openat level %d: %s", l, strerror(errno));
		close(fd);
		fd = next;
	}
	write_at(fd, "bottom", "the bottom\n");
	close(fd);
}

/* Walks the chain under root, checking every level; returns the depth reached. */
static int check_deep(const char *root, const char *bottom_content)
{
	char name[DEEP_NAMELEN + 1], want[64];
	int fd = open(root, O_RDONLY | O_DIRECTORY), l;
	cr_assert(fd >= 0);
	for (l = 0; l < DEEP_LEVELS; l++) {
		size_t n;
		char **v = names_at(fd, &n);
		deep_name(l, name);
		cr_assert_eq(n, 2, "level %d of %s holds %zu entries", l, root, n);
		cr_assert(!strcmp(v[0], name) && !strcmp(v[1], "f"),
			  "level %d of %s: unexpected names", l, root);
		names_free(v, n);
		char *c = read_at(fd, "f");
		snprintf(want, sizeof(want), "level %d\n", l);
		cr_assert(c && !strcmp(c, want), "level %d of %s: f is \"%s\"", l, root, c ? c : "(missing)");
		free(c);
		int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		cr_assert(next >= 0, "level %d of %s: %s", l, root, strerror(errno));
		close(fd);
		fd = next;
	}
	char *c = read_at(fd, "bottom");
	cr_assert(c && !strcmp(c, bottom_content), "bottom of %s is \"%s\"", root, c ? c : "(missing)");
	free(c);
	close(fd);
	return l;
}

/* Rewrites the bottom file on side root. */
static void deep_write_bottom(const char *root, const char *content)
{
	char name[DEEP_NAMELEN + 1];
	int fd = open(root, O_RDONLY | O_DIRECTORY);
	for (int l = 0; l < DEEP_LEVELS; l++) {
		deep_name(l, name);
		int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
		cr_assert(next >= 0);
		close(fd);
		fd = next;
	}
	/* A new inode and size: the change cannot hide behind timestamps. */
	write_at(fd, "bottom.new", content);
	cr_assert(renameat(fd, "bottom.new", fd, "bottom") == 0);
	close(fd);
}

Test(safety, tree_deeper_than_path_max)
{
	cr_assert_gt(DEEP_LEVELS * (DEEP_NAMELEN + 1), PATH_MAX);
	build_deep(env.src);
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	check_deep(env.tgt, "the bottom\n");
	assert_synced();
	r = tl_cmd(&env, "status", NULL);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);

	/* A change at the bottom travels back up from the target. */
	deep_write_bottom(env.tgt, "changed at the bottom of the target\n");
	reconcile_ok();
	check_deep(env.src, "changed at the bottom of the target\n");

	/* Deleting it all in the source deletes it all in the target. */
	char name[DEEP_NAMELEN + 1];
	deep_name(0, name);
	tl_rm(env.src, name);
	tl_rm(env.src, "f");
	cr_assert_eq(tl_count(env.src), 0);
	r = tl_cmd(&env, "reconcile", (const char *[]){ "--allow-mass-delete", NULL });
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	cr_assert_eq(tl_count(env.tgt), 0, "the deep tree was not deleted in the target");

	/* The test library's fd-based removal copes with it. */
	build_deep(env.tgt);
	char *base = strdup(env.base);
	tl_env_fini(&env);
	struct stat st;
	cr_assert(lstat(base, &st) < 0 && errno == ENOENT, "tl_env_fini left %s behind", base);
	free(base);
	tl_env_init(&env);
}

/* ------------------------------------------------------------ symlinks */

static char *make_outside(void)
{
	tl_write(env.base, "outside/secret.txt", "top secret\n");
	tl_write(env.base, "outside/file", "OUTSIDE ORIGINAL\n");
	tl_mkdir(env.base, "outside/nested");
	return tl_join(env.base, "outside");
}

static int tree_has_name(int fd, const char *name)
{
	size_t n;
	char **v = names_at(fd, &n);
	int found = 0;
	for (size_t i = 0; i < n && !found; i++) {
		struct stat st;
		if (!strcmp(v[i], name))
			found = 1;
		else if (fstatat(fd, v[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
			int sub = openat(fd, v[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
			found = tree_has_name(sub, name);
			close(sub);
		}
	}
	names_free(v, n);
	return found;
}

static void assert_link(const char *root, const char *rel, const char *target)
{
	char *p = tl_join(root, rel), buf[PATH_MAX];
	struct stat st;
	cr_assert(lstat(p, &st) == 0 && S_ISLNK(st.st_mode), "%s is not a symlink", p);
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	cr_assert(n >= 0);
	buf[n] = '\0';
	cr_assert_str_eq(buf, target, "%s", p);
	free(p);
}

Test(safety, symlink_out_of_source_copied_not_followed)
{
	char *outside = make_outside();
	char *osig = tree_sig(outside);
	char *lnk = tl_join(env.src, "link");
	cr_assert(symlink(outside, lnk) == 0);
	free(lnk);
	tl_mkdir(env.src, "sub");
	char *rel = tl_join(env.src, "sub/up");
	cr_assert(symlink("../../outside", rel) == 0);
	char *sec = tl_join(env.src, "secret-link");
	cr_assert(symlink("../outside/secret.txt", sec) == 0);
	tl_write(env.src, "plain", "plain\n");

	reconcile_ok();
	assert_link(env.tgt, "link", outside);
	assert_link(env.tgt, "sub/up", "../../outside");
	assert_link(env.tgt, "secret-link", "../outside/secret.txt");
	cr_assert_eq(tl_count(env.tgt), tl_count(env.src));
	int fd = open(env.tgt, O_RDONLY | O_DIRECTORY);
	cr_assert(!tree_has_name(fd, "secret.txt"), "the secret was copied into the target");
	cr_assert(!tree_has_name(fd, "nested"), "the outside tree was copied into the target");
	close(fd);
	ASSERT_UNCHANGED(osig, outside);

	/* What the links point to is not the partners' business. */
	tl_write(env.base, "outside/secret.txt", "a new secret, longer\n");
	struct tl_run r = tl_cmd(&env, "status", NULL);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	free(osig);
	free(outside);
	free(rel);
	free(sec);
}

/*
 * The target's directory is swapped for a symlink out of it between syncs.
 * Whatever the outcome, nothing may be written (or removed) through the
 * link, and the source's changes under the directory must survive.
 * strict: also expect the clean outcome (exit 1 with the changes left as
 * conflicts, or exit 0 with the symlink carried to the source).
 */
static void swapped_dir(int modify_source, int strict)
{
	char *outside = make_outside();
	tl_write(env.src, "dir/file", "inside original\n");
	tl_write(env.src, "dir/other", "other\n");
	tl_write(env.src, "dir/sub/deep", "deep\n");
	/* Enough elsewhere that losing dir/ is not a mass deletion. */
	for (int i = 0; i < 10; i++) {
		char rel[16];
		snprintf(rel, sizeof(rel), "pad%d", i);
		tl_write(env.src, rel, rel);
	}
	reconcile_ok();

	tl_rm(env.tgt, "dir");
	char *link = tl_join(env.tgt, "dir");
	cr_assert(symlink(outside, link) == 0);
	if (modify_source) {
		tl_write(env.src, "dir/file", "modified in source, must not leak out\n");
		tl_write(env.src, "dir/new", "new in source\n");
		tl_write(env.src, "dir/sub/deep", "deep, modified\n");
		tl_write(env.src, "dir/sub/new", "new deep\n");
	}
	char *osig = tree_sig(outside);
	for (int i = 0; i < 2; i++) {
		struct tl_run r = tl_cmd(&env, "reconcile", NULL);
		cr_assert(r.status != 2 && r.status < 128, "exit %d\n%s%s", r.status, r.out, r.err);
		if (strict)
			ASSERT_EXIT(r, modify_source ? 1 : 0);
		tl_run_free(&r);
		ASSERT_UNCHANGED(osig, outside);
		assert_content(env.base, "outside/file", "OUTSIDE ORIGINAL\n");
		assert_content(env.base, "outside/secret.txt", "top secret\n");
		cr_assert(!tl_exists(env.base, "outside/new"));
		cr_assert(!tl_exists(env.base, "outside/other"));
		cr_assert(!tl_exists(env.base, "outside/sub"));
		assert_link(env.tgt, "dir", outside);
	}
	if (modify_source) {
		/* The source's changes are kept, not lost to the swap. */
		assert_content(env.src, "dir/file", "modified in source, must not leak out\n");
		assert_content(env.src, "dir/new", "new in source\n");
		assert_content(env.src, "dir/sub/new", "new deep\n");
		assert_content(env.src, "dir/sub/deep", "deep, modified\n");
	} else if (strict) {
		/* The swap itself is a change of the target's, carried over. */
		assert_link(env.src, "dir", outside);
		assert_synced();
	}
	free(link);
	free(osig);
	free(outside);
}

Test(safety, target_dir_swapped_for_outside_symlink)
{
	swapped_dir(1, 0);
}

Test(safety, target_dir_swapped_for_outside_symlink_unmodified)
{
	swapped_dir(0, 0);
}

/*
 * A target directory replaced by a symlink is a directory deleted there and
 * a symlink created: the partnership settles (modified files under the
 * source's directory stay as conflicts, exit 1; unmodified: exit 0, the
 * symlink carried to the source).
 */
Test(safety, target_dir_swapped_for_symlink_settles)
{
	swapped_dir(1, 1);
}

/* As above, with the source's directory unmodified. */
Test(safety, target_dir_swapped_for_symlink_settles_unmodified)
{
	swapped_dir(0, 1);
}

/* A copy into dir is under way: a named temporary there, or an unnamed
 * (O_TMPFILE) one that the process holds open. */
static int temp_in(const char *dir, pid_t pid)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int found = 0;
	while (d && !found && (de = readdir(d)))
		found = !strncmp(de->d_name, ".sbfs-tmp.", 10);
	if (d)
		closedir(d);
	char fds[64], link[4096], path[4200];
	snprintf(fds, sizeof(fds), "/proc/%d/fd", (int)pid);
	snprintf(path, sizeof(path), "%s/#", dir);
	d = opendir(fds);
	while (d && !found && (de = readdir(d))) {
		char fp[512];
		snprintf(fp, sizeof(fp), "%s/%s", fds, de->d_name);
		ssize_t n = readlink(fp, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = '\0';
			found = !strncmp(link, path, strlen(path));
		}
	}
	if (d)
		closedir(d);
	return found;
}

/*
 * The race: while reconcile copies a big file into tgt/d1, tgt/d2 (which
 * has new files coming) is moved away and replaced by a symlink out of the
 * target. Nothing may land in the outside directory.
 */
Test(safety, target_dir_swapped_during_apply)
{
	char *outside = make_outside();
	tl_write(env.src, "d1/keep", "d1\n");
	tl_write(env.src, "d2/keep", "d2\n");
	for (int i = 0; i < 10; i++) {
		char rel[16];
		snprintf(rel, sizeof(rel), "pad%d", i);
		tl_write(env.src, rel, rel);
	}
	reconcile_ok();

	size_t big = 64u << 20;
	char *buf = malloc(big);
	memset(buf, 'B', big);
	tl_write_n(env.src, "d1/big", buf, big);
	free(buf);
	for (int i = 0; i < 5; i++) {
		char rel[16];
		snprintf(rel, sizeof(rel), "d2/new%d", i);
		tl_write(env.src, rel, rel);
	}
	char *osig = tree_sig(outside);
	char *d1 = tl_join(env.tgt, "d1"), *d2 = tl_join(env.tgt, "d2");
	char *aside = tl_join(env.base, "d2-aside");

	struct tl_proc p;
	tl_spawn_cmd(&p, &env, "reconcile", NULL);
	int swapped = 0;
	for (int i = 0; i < 200000 && !tl_proc_done(&p); i++) {
		if (temp_in(d1, p.pid)) {
			cr_assert(rename(d2, aside) == 0 && symlink(outside, d2) == 0);
			swapped = 1;
			break;
		}
		struct timespec ts = { 0, 100000 };
		nanosleep(&ts, NULL);
	}
	struct tl_run r = tl_proc_wait(&p, 0);
	cr_assert(r.status < 128, "exit %d\n%s%s", r.status, r.out, r.err);
	cr_log_info("swapped during the copy: %d; exit %d", swapped, r.status);
	tl_run_free(&r);
	if (!swapped) {
		/* Too fast to catch: swap now, the next run meets it at the scan
		 * (after a finished sync that is the target deleting d2). */
		cr_assert(rename(d2, aside) == 0 && symlink(outside, d2) == 0);
	}
	r = tl_cmd(&env, "reconcile", NULL);
	cr_assert(r.status < 128, "exit %d\n%s%s", r.status, r.out, r.err);
	tl_run_free(&r);
	ASSERT_UNCHANGED(osig, outside);
	/* Swapped before they were copied: the new files were never synced,
	 * so nothing may have taken them from the source. */
	for (int i = 0; swapped && i < 5; i++) {
		char rel[16];
		snprintf(rel, sizeof(rel), "d2/new%d", i);
		assert_content(env.src, rel, rel);
	}
	free(osig);
	free(d1);
	free(d2);
	free(aside);
	free(outside);
}

/* ------------------------------------------------------------ special files */

static void make_socket(const char *root, const char *rel)
{
	char *p = tl_join(root, rel);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	cr_assert(strlen(p) < sizeof(a.sun_path), "socket path too long: %s", p);
	strcpy(a.sun_path, p);
	cr_assert(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0, "bind %s: %s", p, strerror(errno));
	close(s);
	free(p);
}

static void make_node(const char *root, const char *rel, mode_t mode, dev_t dev)
{
	char *p = tl_join(root, rel);
	cr_assert(mknod(p, mode, dev) == 0, "mknod %s: %s", p, strerror(errno));
	free(p);
}

static mode_t type_of(const char *root, const char *rel)
{
	struct stat st;
	char *p = tl_join(root, rel);
	int r = lstat(p, &st);
	free(p);
	return r < 0 ? 0 : st.st_mode & S_IFMT;
}

/* FIFOs and device nodes are carried both ways (rsync's -D), a type change
 * by the rules; a socket stays where it is, no warning. */
Test(safety, special_files_carried, .timeout = 60)
{
	tl_write(env.src, "a", "regular\n");
	tl_write(env.src, "was-a-file", "recorded regular\n");
	tl_write(env.src, "sub/b", "regular in sub\n");
	reconcile_ok();

	make_node(env.src, "fifo", S_IFIFO | 0644, 0);
	make_node(env.src, "sub/fifo2", S_IFIFO | 0600, 0);
	make_socket(env.src, "sock");
	make_node(env.src, "chardev", S_IFCHR | 0600, makedev(1, 3));
	make_node(env.tgt, "blockdev", S_IFBLK | 0600, makedev(7, 0));
	make_node(env.tgt, "tfifo", S_IFIFO | 0644, 0);
	/* A recorded file replaced by a FIFO on the target. */
	tl_rm(env.tgt, "was-a-file");
	make_node(env.tgt, "was-a-file", S_IFIFO | 0644, 0);
	/* Ordinary changes alongside. */
	tl_write(env.src, "new-file", "new\n");
	tl_write(env.tgt, "sub/b", "changed on target\n");

	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	assert_content(env.tgt, "new-file", "new\n");
	assert_content(env.src, "sub/b", "changed on target\n");
	const char *both[] = { "fifo", "sub/fifo2", "tfifo", "was-a-file", NULL };
	for (int i = 0; both[i]; i++) {
		cr_assert_eq(type_of(env.src, both[i]), S_IFIFO, "%s", both[i]);
		cr_assert_eq(type_of(env.tgt, both[i]), S_IFIFO, "%s", both[i]);
	}
	cr_assert_eq(type_of(env.tgt, "chardev"), S_IFCHR);
	cr_assert_eq(type_of(env.src, "blockdev"), S_IFBLK);
	cr_assert_eq(type_of(env.src, "sock"), S_IFSOCK);
	cr_assert(!tl_exists(env.tgt, "sock"), "the socket was copied");

	/* Again: nothing to do, nothing disturbed. */
	char *s0 = tree_sig(env.src), *t0 = tree_sig(env.tgt);
	r = tl_cmd(&env, "reconcile", NULL);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	ASSERT_UNCHANGED(s0, env.src);
	ASSERT_UNCHANGED(t0, env.tgt);
	free(s0);
	free(t0);
}

/* ------------------------------------------------------------ the lock */

/* $SBFS_STATE_DIR/<id>/lock: the only subdirectory holding a lock file. */
static char *find_lock(void)
{
	int fd = open(env.state, O_RDONLY | O_DIRECTORY);
	cr_assert(fd >= 0, "no state directory %s", env.state);
	size_t n;
	char **v = names_at(fd, &n);
	char *found = NULL;
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		char *l = xstrdup_printf("%s/%s/lock", env.state, v[i]);
		if (stat(l, &st) == 0 && S_ISREG(st.st_mode)) {
			cr_assert(!found, "two lock files: %s and %s", found, l);
			found = l;
		} else {
			free(l);
		}
	}
	names_free(v, n);
	close(fd);
	cr_assert(found, "no <id>/lock under %s", env.state);
	return found;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

Test(safety, second_reconcile_waits_for_the_lock, .timeout = 60)
{
	tl_write(env.src, "first", "1\n");
	reconcile_ok();
	char *lock = find_lock();
	int fd = open(lock, O_RDWR | O_CLOEXEC);
	cr_assert(fd >= 0, "open %s: %s", lock, strerror(errno));
	cr_assert(flock(fd, LOCK_EX | LOCK_NB) == 0, "lock %s: %s", lock, strerror(errno));
	char pid[32];
	int pl = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	cr_assert(ftruncate(fd, 0) == 0 && pwrite(fd, pid, pl, 0) == pl);

	tl_write(env.src, "while-locked", "2\n");
	struct tl_proc p;
	tl_spawn_cmd(&p, &env, "reconcile", NULL);
	char *err = NULL;
	for (int i = 0; i < 1000; i++) {
		free(err);
		err = tl_proc_err(&p);
		if (strstr(err, "waiting") || tl_proc_done(&p))
			break;
		sleep_ms(10);
	}
	cr_assert(strstr(err, "waiting"), "no waiting message:\n%s", err);
	char *who = xstrdup_printf("pid %ld", (long)getpid());
	cr_assert(strstr(err, who), "the message does not name the holder (%s):\n%s", who, err);
	free(who);
	/* It really waits. */
	sleep_ms(300);
	cr_assert(!tl_proc_done(&p), "the second reconcile did not wait for the lock");
	cr_assert(!tl_exists(env.tgt, "while-locked"), "changed the target while another held the lock");

	cr_assert(flock(fd, LOCK_UN) == 0);
	close(fd);
	struct tl_run r = tl_proc_wait(&p, 0);
	ASSERT_EXIT(r, 0);
	tl_run_free(&r);
	assert_content(env.tgt, "while-locked", "2\n");
	assert_synced();
	free(err);
	free(lock);
}
