/*
 * state.c against a real LMDB environment in a fresh directory per test.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "internal.h"

static char tmpdir[] = "/tmp/sbfs-state-XXXXXX";
static char statedir[4096];
static struct sb_state *st;

static int rm_one(const char *path, const struct stat *sb, int flag,
		  struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void setup(void)
{
	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(statedir, sizeof(statedir), "%s/x/y/state", tmpdir);
	cr_assert_eq(sb_state_open(statedir, &st), 0);
}

static void teardown(void)
{
	sb_state_close(st);
	st = NULL;
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(state, .init = setup, .fini = teardown);

static struct sb_txn *begin(int rdonly)
{
	struct sb_txn *t = NULL;

	cr_assert_eq(sb_state_begin(st, rdonly, &t), 0);
	return t;
}

static struct sb_rec file_rec(uint64_t size)
{
	struct sb_rec r;

	memset(&r, 0, sizeof(r));
	r.type = SB_FILE;
	r.mode = 0644;
	r.size = size;
	return r;
}

static struct sb_rec dir_rec(void)
{
	struct sb_rec r;

	memset(&r, 0, sizeof(r));
	r.type = SB_DIR;
	r.mode = 0755;
	return r;
}

static void put(struct sb_txn *t, uint64_t parent, const char *name,
		struct sb_rec *r)
{
	cr_assert_eq(sb_state_put(t, parent, name, strlen(name), r), 0,
		     "put %s", name);
}

/* Puts a directory and returns its fresh id. */
static uint64_t mkd(struct sb_txn *t, uint64_t parent, const char *name)
{
	struct sb_rec r = dir_rec();

	put(t, parent, name, &r);
	cr_assert_geq(r.dir_id, 2);
	return r.dir_id;
}

static void mkf(struct sb_txn *t, uint64_t parent, const char *name)
{
	struct sb_rec r = file_rec(1);

	put(t, parent, name, &r);
}

static int exists(struct sb_txn *t, uint64_t parent, const char *name)
{
	struct sb_rec r;
	int rc = sb_state_get(t, parent, name, strlen(name), &r);

	cr_assert(rc == 0 || rc == -ENOENT, "get %s: %d", name, rc);
	return rc == 0;
}

static uint64_t count(struct sb_txn *t)
{
	uint64_t n = 0;

	cr_assert_eq(sb_state_count(t, &n), 0);
	return n;
}

/* Lists dir_id's children into names (joined by '|'). */
static void list(struct sb_txn *t, uint64_t dir_id, char *out, size_t cap)
{
	struct sb_cursor *c = NULL;
	const char *name;
	size_t nlen, used = 0;
	struct sb_rec r;
	int rc;

	out[0] = '\0';
	cr_assert_eq(sb_state_children(t, dir_id, &c), 0);
	while ((rc = sb_cursor_next(c, &name, &nlen, &r)) == 1) {
		cr_assert_lt(used + nlen + 2, cap);
		if (used)
			out[used++] = '|';
		memcpy(out + used, name, nlen);
		used += nlen;
		out[used] = '\0';
	}
	cr_assert_eq(rc, 0);
	/* stays at the end */
	cr_assert_eq(sb_cursor_next(c, &name, &nlen, &r), 0);
	sb_cursor_close(c);
}

Test(state, open_creates_private_dir)
{
	struct sb_state *again = NULL;
	char path[4200];
	struct stat sb;
	FILE *f;

	cr_assert_eq(stat(statedir, &sb), 0);
	cr_assert(S_ISDIR(sb.st_mode));
	cr_assert_eq(sb.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/x", tmpdir);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/data.mdb", statedir);
	cr_assert_eq(stat(path, &sb), 0);
	cr_assert_eq(sb.st_mode & 0777, 0600);

	/* Trailing and doubled slashes are harmless. */
	snprintf(path, sizeof(path), "%s//other/", tmpdir);
	cr_assert_eq(sb_state_open(path, &again), 0);
	sb_state_close(again);

	snprintf(path, sizeof(path), "%s/file", tmpdir);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fclose(f);
	cr_assert_eq(sb_state_open(path, &again), -ENOTDIR);
	cr_assert_null(again);
	snprintf(path, sizeof(path), "%s/file/sub", tmpdir);
	cr_assert_eq(sb_state_open(path, &again), -ENOTDIR);
	cr_assert_null(again);
}

Test(state, put_get_round_trip)
{
	struct sb_txn *t = begin(0);
	struct sb_rec r, g;

	memset(&r, 0, sizeof(r));
	r.type = SB_LINK;
	r.mode = 07755;
	r.size = 0x0102030405060708ULL;
	r.mtime_ns = -1234567890123LL;
	r.dir_id = 0xfedcba9876543210ULL;
	for (int i = 0; i < SB_SHA_LEN; i++)
		r.sha[i] = (uint8_t)(0xa0 + i);
	r.fp[SB_SRC] = (struct sb_fp){ 1, 2, 3, -4, 5 };
	r.fp[SB_TGT] = (struct sb_fp){ UINT64_MAX, 1ULL << 63, 42,
				       INT64_MIN, INT64_MAX };
	cr_assert_eq(sb_state_put(t, SB_ROOT_ID, "link", 4, &r), 0);
	cr_assert_eq(r.dir_id, 0xfedcba9876543210ULL, "non-dirs keep dir_id");
	cr_assert_eq(sb_txn_commit(t), 0);

	t = begin(1);
	memset(&g, 0x55, sizeof(g));
	cr_assert_eq(sb_state_get(t, SB_ROOT_ID, "link", 4, &g), 0);
	cr_assert_eq(g.type, r.type);
	cr_assert_eq(g.mode, r.mode);
	cr_assert_eq(g.size, r.size);
	cr_assert_eq(g.mtime_ns, r.mtime_ns);
	cr_assert_eq(g.dir_id, r.dir_id);
	cr_assert_arr_eq(g.sha, r.sha, SB_SHA_LEN);
	for (int s = 0; s < 2; s++) {
		cr_assert_eq(g.fp[s].dev, r.fp[s].dev);
		cr_assert_eq(g.fp[s].ino, r.fp[s].ino);
		cr_assert_eq(g.fp[s].size, r.fp[s].size);
		cr_assert_eq(g.fp[s].mtime_ns, r.fp[s].mtime_ns);
		cr_assert_eq(g.fp[s].ctime_ns, r.fp[s].ctime_ns);
	}
	cr_assert_eq(sb_state_get(t, SB_ROOT_ID, "lin", 3, &g), -ENOENT);
	cr_assert_eq(sb_state_get(t, 2, "link", 4, &g), -ENOENT);
	/* A read-only txn refuses writes. */
	cr_assert_lt(sb_state_put(t, SB_ROOT_ID, "x", 1, &r), 0);
	sb_txn_abort(t);
}

Test(state, overwrite_replaces)
{
	struct sb_txn *t = begin(0);
	struct sb_rec r = file_rec(1), g;

	put(t, SB_ROOT_ID, "f", &r);
	r.size = 2;
	put(t, SB_ROOT_ID, "f", &r);
	cr_assert_eq(sb_state_get(t, SB_ROOT_ID, "f", 1, &g), 0);
	cr_assert_eq(g.size, 2);
	cr_assert_eq(count(t), 1);
	sb_txn_abort(t);
}

Test(state, name_validation)
{
	struct sb_txn *t = begin(0);
	struct sb_rec r = file_rec(0);
	char name[256];

	cr_assert_eq(sb_state_put(t, SB_ROOT_ID, "", 0, &r), -EINVAL);
	cr_assert_eq(sb_state_put(t, SB_ROOT_ID, "a/b", 3, &r), -EINVAL);
	cr_assert_eq(sb_state_put(t, SB_ROOT_ID, "a\0b", 3, &r), -EINVAL);
	memset(name, 'n', sizeof(name));
	cr_assert_eq(sb_state_put(t, SB_ROOT_ID, name, 256, &r), -ENAMETOOLONG);
	cr_assert_eq(sb_state_put(t, SB_ROOT_ID, name, 255, &r), 0);
	cr_assert_eq(sb_state_get(t, SB_ROOT_ID, name, 255, &r), 0);
	r = dir_rec();
	r.dir_id = SB_ROOT_ID;
	cr_assert_eq(sb_state_put(t, SB_ROOT_ID, "d", 1, &r), -EINVAL);
	cr_assert_eq(count(t), 1);
	sb_txn_abort(t);
}

Test(state, children_in_name_order)
{
	struct sb_txn *t = begin(0);
	/* deliberately out of order */
	const char *names[] = { "b", "\xff", "ab", "a.txt", "\x80z", "a",
				"Z", "\x80" };
	char buf[512];
	uint64_t d, e;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		mkf(t, SB_ROOT_ID, names[i]);
	d = mkd(t, SB_ROOT_ID, "d");
	e = mkd(t, SB_ROOT_ID, "e");
	mkf(t, d, "grandchild");
	mkf(t, d, "0");
	mkf(t, e, "other");
	list(t, SB_ROOT_ID, buf, sizeof(buf));
	cr_assert_str_eq(buf, "Z|a|a.txt|ab|b|d|e|\x80|\x80z|\xff");
	list(t, d, buf, sizeof(buf));
	cr_assert_str_eq(buf, "0|grandchild");
	list(t, e, buf, sizeof(buf));
	cr_assert_str_eq(buf, "other");
	list(t, 999, buf, sizeof(buf));
	cr_assert_str_eq(buf, "");
	cr_assert_eq(sb_txn_commit(t), 0);

	/* and in a read-only txn */
	t = begin(1);
	list(t, d, buf, sizeof(buf));
	cr_assert_str_eq(buf, "0|grandchild");
	sb_txn_abort(t);
}

Test(state, cursor_outliving_its_txn)
{
	struct sb_txn *t = begin(0);
	struct sb_cursor *c1 = NULL, *c2 = NULL, *c3 = NULL;
	const char *name;
	size_t nlen;
	struct sb_rec r;

	mkf(t, SB_ROOT_ID, "a");
	cr_assert_eq(sb_state_children(t, SB_ROOT_ID, &c1), 0);
	cr_assert_eq(sb_state_children(t, SB_ROOT_ID, &c2), 0);
	cr_assert_eq(sb_state_children(t, SB_ROOT_ID, &c3), 0);
	sb_cursor_close(c2);	/* middle of the list */
	cr_assert_eq(sb_cursor_next(c1, &name, &nlen, &r), 1);
	cr_assert_eq(nlen, 1);
	cr_assert_eq(sb_txn_commit(t), 0);
	/* Closing after commit must not touch freed LMDB cursors. */
	cr_assert_eq(sb_cursor_next(c3, &name, &nlen, &r), -EINVAL);
	sb_cursor_close(c1);
	sb_cursor_close(c3);
	sb_cursor_close(NULL);

	t = begin(1);
	cr_assert_eq(sb_state_children(t, SB_ROOT_ID, &c1), 0);
	sb_txn_abort(t);
	sb_cursor_close(c1);
}

Test(state, dir_ids_and_lookup)
{
	struct sb_txn *t = begin(0);
	uint64_t a, b, c, id = 0;
	struct sb_rec r;

	cr_assert_eq(sb_state_dir_id(t, "", 0, &id), 0);
	cr_assert_eq(id, SB_ROOT_ID);
	a = mkd(t, SB_ROOT_ID, "a");
	b = mkd(t, a, "b");
	c = mkd(t, b, "c");
	cr_assert_eq(a, 2);
	cr_assert_eq(b, 3);
	cr_assert_eq(c, 4);
	mkf(t, a, "f");
	cr_assert_eq(sb_state_get(t, a, "b", 1, &r), 0);
	cr_assert_eq(r.dir_id, b);

	cr_assert_eq(sb_state_dir_id(t, "a", 1, &id), 0);
	cr_assert_eq(id, a);
	/* rel is not NUL-terminated: the trailing junk must be ignored */
	cr_assert_eq(sb_state_dir_id(t, "a/b/cXYZ", 5, &id), 0);
	cr_assert_eq(id, c);
	cr_assert_eq(sb_state_dir_id(t, "a/f", 3, &id), -ENOENT);
	cr_assert_eq(sb_state_dir_id(t, "a/f/x", 5, &id), -ENOENT);
	cr_assert_eq(sb_state_dir_id(t, "a/nope", 6, &id), -ENOENT);
	cr_assert_eq(sb_state_dir_id(t, "nope/b", 6, &id), -ENOENT);
	cr_assert_eq(sb_state_dir_id(t, "a//b", 4, &id), -EINVAL);
	cr_assert_eq(sb_state_dir_id(t, "a/", 2, &id), -EINVAL);
	cr_assert_eq(id, c, "untouched on error");
	cr_assert_eq(sb_txn_commit(t), 0);

	/* Ids are never reused, even after deletion and reopen. */
	t = begin(0);
	cr_assert_eq(sb_state_del(t, SB_ROOT_ID, "a", 1), 0);
	cr_assert_eq(sb_txn_commit(t), 0);
	sb_state_close(st);
	st = NULL;
	cr_assert_eq(sb_state_open(statedir, &st), 0);
	t = begin(0);
	cr_assert_eq(mkd(t, SB_ROOT_ID, "a"), 5);
	/* A directory put with a known id keeps it. */
	r = dir_rec();
	r.dir_id = 77;
	put(t, SB_ROOT_ID, "fixed", &r);
	cr_assert_eq(r.dir_id, 77);
	sb_txn_abort(t);
}

Test(state, long_rel_in_dir_id)
{
	struct sb_txn *t = begin(0);
	size_t depth = 2100, len = 0;
	char *rel = malloc(depth * 2);
	uint64_t parent = SB_ROOT_ID, id = 0;

	cr_assert_not_null(rel);
	for (size_t i = 0; i < depth; i++) {
		parent = mkd(t, parent, "d");
		if (len)
			rel[len++] = '/';
		rel[len++] = 'd';
	}
	cr_assert_gt(len, 4096);
	cr_assert_eq(sb_state_dir_id(t, rel, len, &id), 0);
	cr_assert_eq(id, parent);
	/* deleting the top removes the whole deep chain */
	cr_assert_eq(sb_state_del(t, SB_ROOT_ID, "d", 1), 0);
	cr_assert_eq(count(t), 0);
	sb_txn_abort(t);
	free(rel);
}

Test(state, recursive_delete)
{
	struct sb_txn *t = begin(0);
	uint64_t a, b, c, a2, id;
	char buf[256];

	a = mkd(t, SB_ROOT_ID, "a");
	mkf(t, a, "x");
	b = mkd(t, a, "b");
	mkf(t, b, "y");
	c = mkd(t, b, "c");
	mkf(t, c, "z1");
	mkf(t, c, "z2");
	mkd(t, c, "empty");
	a2 = mkd(t, SB_ROOT_ID, "a2");	/* sibling with the next ids */
	mkf(t, a2, "keep");
	mkf(t, SB_ROOT_ID, "b");
	mkf(t, SB_ROOT_ID, "a.txt");
	cr_assert_eq(count(t), 12);
	cr_assert_eq(sb_txn_commit(t), 0);

	t = begin(0);
	cr_assert_eq(sb_state_del(t, SB_ROOT_ID, "a", 1), 0);
	cr_assert_eq(count(t), 4);
	cr_assert(!exists(t, SB_ROOT_ID, "a"));
	list(t, a, buf, sizeof(buf));
	cr_assert_str_eq(buf, "");
	list(t, b, buf, sizeof(buf));
	cr_assert_str_eq(buf, "");
	list(t, c, buf, sizeof(buf));
	cr_assert_str_eq(buf, "");
	list(t, SB_ROOT_ID, buf, sizeof(buf));
	cr_assert_str_eq(buf, "a.txt|a2|b");
	list(t, a2, buf, sizeof(buf));
	cr_assert_str_eq(buf, "keep");
	cr_assert_eq(sb_state_dir_id(t, "a/b", 3, &id), -ENOENT);
	cr_assert_eq(sb_state_del(t, SB_ROOT_ID, "a", 1), -ENOENT);
	/* a file goes alone */
	cr_assert_eq(sb_state_del(t, a2, "keep", 4), 0);
	cr_assert_eq(count(t), 3);
	cr_assert_eq(sb_txn_commit(t), 0);
}

Test(state, replacing_a_dir_drops_its_subtree)
{
	struct sb_txn *t = begin(0);
	struct sb_rec r;
	uint64_t d, sub, same;
	char buf[64];

	d = mkd(t, SB_ROOT_ID, "d");
	sub = mkd(t, d, "sub");
	mkf(t, sub, "f");
	mkf(t, d, "g");
	cr_assert_eq(count(t), 4);

	/* Re-putting with the same id (e.g. a mode change) keeps children. */
	cr_assert_eq(sb_state_get(t, SB_ROOT_ID, "d", 1, &r), 0);
	r.mode = 0700;
	put(t, SB_ROOT_ID, "d", &r);
	cr_assert_eq(r.dir_id, d);
	cr_assert_eq(count(t), 4);
	cr_assert_eq(sb_state_dir_id(t, "d/sub", 5, &same), 0);
	cr_assert_eq(same, sub);

	/* A file in its place: the children would be orphans, so they go. */
	r = file_rec(3);
	put(t, SB_ROOT_ID, "d", &r);
	cr_assert_eq(count(t), 1);
	list(t, d, buf, sizeof(buf));
	cr_assert_str_eq(buf, "");
	list(t, sub, buf, sizeof(buf));
	cr_assert_str_eq(buf, "");
	sb_txn_abort(t);
}

Test(state, count_tracks_puts_and_dels)
{
	struct sb_txn *t = begin(0);
	char name[16];

	cr_assert_eq(count(t), 0);
	for (int i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		mkf(t, SB_ROOT_ID, name);
	}
	cr_assert_eq(count(t), 50);
	mkf(t, SB_ROOT_ID, "f7");	/* overwrite */
	cr_assert_eq(count(t), 50);
	cr_assert_eq(sb_state_del(t, SB_ROOT_ID, "f7", 2), 0);
	cr_assert_eq(count(t), 49);
	cr_assert_eq(sb_txn_commit(t), 0);
	t = begin(1);
	cr_assert_eq(count(t), 49);
	sb_txn_abort(t);
}

/* ------------------------------------------------------------ conflicts */

struct seen {
	int n, long_ok, bin_ok, short_ok;
	const char *longp;
	size_t longlen;
};

static struct sb_conflict mkconflict(int kind, int suggest, uint64_t size)
{
	struct sb_conflict c;

	memset(&c, 0, sizeof(c));
	c.kind = (uint8_t)kind;
	c.suggest = (int8_t)suggest;
	c.side[0] = (struct sb_sideinfo){ SB_FILE, 0644, size, -5 };
	c.side[1] = (struct sb_sideinfo){ SB_DIR, 0755, 0, INT64_MAX };
	return c;
}

static void assert_conflict_eq(const struct sb_conflict *a,
			       const struct sb_conflict *b)
{
	cr_assert_eq(a->kind, b->kind);
	cr_assert_eq(a->suggest, b->suggest);
	for (int s = 0; s < 2; s++) {
		cr_assert_eq(a->side[s].type, b->side[s].type);
		cr_assert_eq(a->side[s].mode, b->side[s].mode);
		cr_assert_eq(a->side[s].size, b->side[s].size);
		cr_assert_eq(a->side[s].mtime_ns, b->side[s].mtime_ns);
	}
}

static int collect(void *arg, const char *rel, size_t len,
		   const struct sb_conflict *c)
{
	struct seen *s = arg;

	s->n++;
	if (len == s->longlen && memcmp(rel, s->longp, len) == 0 &&
	    c->kind == SB_CK_CONTENT && c->side[0].size == 1)
		s->long_ok++;
	else if (len == 5 && memcmp(rel, "\xff\xfe/\x80x", 5) == 0 &&
		 c->kind == SB_CK_TYPE && c->suggest == SB_SUGGEST_NONE)
		s->bin_ok++;
	else if (len == 3 && memcmp(rel, "a/b", 3) == 0 &&
		 c->kind == SB_CK_MODIFIED_DELETED)
		s->short_ok++;
	return 0;
}

static int stop_at_first(void *arg, const char *rel, size_t len,
			 const struct sb_conflict *c)
{
	(void)rel;
	(void)len;
	(void)c;
	++*(int *)arg;
	return 42;
}

Test(state, conflicts)
{
	struct sb_txn *t = begin(0);
	size_t longlen = 5000;
	char *longp = malloc(longlen);
	struct sb_conflict c1 = mkconflict(SB_CK_CONTENT, SB_SUGGEST_SOURCE, 1);
	struct sb_conflict c2 = mkconflict(SB_CK_TYPE, SB_SUGGEST_NONE, 2);
	struct sb_conflict c3 = mkconflict(SB_CK_MODIFIED_DELETED,
					   SB_SUGGEST_TARGET, 3);
	struct sb_conflict g;
	struct seen s = { 0 };
	int calls = 0;

	cr_assert_not_null(longp);
	for (size_t i = 0; i < longlen; i++)
		longp[i] = (i % 10 == 9) ? '/' : (char)('a' + i % 26);
	s.longp = longp;
	s.longlen = longlen;

	cr_assert_eq(sb_state_conflict_put(t, longp, longlen, &c1), 0);
	cr_assert_eq(sb_state_conflict_put(t, "\xff\xfe/\x80x", 5, &c2), 0);
	cr_assert_eq(sb_state_conflict_put(t, "a/b", 3, &c1), 0);
	cr_assert_eq(sb_state_conflict_put(t, "a/b", 3, &c3), 0); /* replaces */
	cr_assert_eq(sb_txn_commit(t), 0);

	t = begin(1);
	cr_assert_eq(sb_state_conflict_get(t, longp, longlen, &g), 0);
	assert_conflict_eq(&g, &c1);
	cr_assert_eq(sb_state_conflict_get(t, "\xff\xfe/\x80x", 5, &g), 0);
	assert_conflict_eq(&g, &c2);
	cr_assert_eq(sb_state_conflict_get(t, "a/bc", 3, &g), 0);
	assert_conflict_eq(&g, &c3);
	cr_assert_eq(sb_state_conflict_get(t, "a/bc", 4, &g), -ENOENT);
	cr_assert_eq(sb_state_conflict_get(t, longp, longlen - 1, &g), -ENOENT);
	cr_assert_eq(sb_state_conflict_each(t, collect, &s), 0);
	cr_assert_eq(s.n, 3);
	cr_assert_eq(s.long_ok, 1);
	cr_assert_eq(s.bin_ok, 1);
	cr_assert_eq(s.short_ok, 1);
	cr_assert_eq(sb_state_conflict_each(t, stop_at_first, &calls), 42);
	cr_assert_eq(calls, 1);
	sb_txn_abort(t);

	t = begin(0);
	cr_assert_eq(sb_state_conflict_del(t, longp, longlen), 0);
	cr_assert_eq(sb_state_conflict_del(t, longp, longlen), -ENOENT);
	cr_assert_eq(sb_state_conflict_get(t, longp, longlen, &g), -ENOENT);
	memset(&s, 0, sizeof(s));
	s.longp = longp;
	s.longlen = longlen;
	cr_assert_eq(sb_state_conflict_each(t, collect, &s), 0);
	cr_assert_eq(s.n, 2);
	cr_assert_eq(s.long_ok, 0);
	cr_assert_eq(sb_state_conflict_clear(t), 0);
	memset(&s, 0, sizeof(s));
	cr_assert_eq(sb_state_conflict_each(t, collect, &s), 0);
	cr_assert_eq(s.n, 0);
	cr_assert_eq(sb_txn_commit(t), 0);

	/* usable again after clear, and entries are untouched by it */
	t = begin(0);
	cr_assert_eq(sb_state_conflict_get(t, "a/b", 3, &g), -ENOENT);
	cr_assert_eq(sb_state_conflict_put(t, "a/b", 3, &c3), 0);
	cr_assert_eq(sb_state_conflict_get(t, "a/b", 3, &g), 0);
	cr_assert_eq(sb_txn_commit(t), 0);
	free(longp);
}

Test(state, abort_discards)
{
	struct sb_txn *t = begin(0);
	struct sb_conflict c = mkconflict(SB_CK_CONTENT, SB_SUGGEST_NONE, 0);
	struct sb_conflict g;

	mkd(t, SB_ROOT_ID, "d");
	mkf(t, SB_ROOT_ID, "f");
	cr_assert_eq(sb_state_conflict_put(t, "f", 1, &c), 0);
	sb_txn_abort(t);
	sb_txn_abort(NULL);

	t = begin(0);
	cr_assert(!exists(t, SB_ROOT_ID, "d"));
	cr_assert(!exists(t, SB_ROOT_ID, "f"));
	cr_assert_eq(count(t), 0);
	cr_assert_eq(sb_state_conflict_get(t, "f", 1, &g), -ENOENT);
	/* the id allocation was rolled back too */
	cr_assert_eq(mkd(t, SB_ROOT_ID, "d"), 2);
	sb_txn_abort(t);
}

Test(state, reopen_sees_committed)
{
	struct sb_txn *t = begin(0);
	struct sb_conflict c = mkconflict(SB_CK_CONTENT, SB_SUGGEST_NONE, 9);
	struct sb_conflict g;
	uint64_t d, id;
	char buf[64];

	d = mkd(t, SB_ROOT_ID, "d");
	mkf(t, d, "f");
	cr_assert_eq(sb_state_conflict_put(t, "d/f", 3, &c), 0);
	cr_assert_eq(sb_txn_commit(t), 0);
	t = begin(0);
	mkf(t, d, "uncommitted");
	sb_txn_abort(t);

	sb_state_close(st);
	st = NULL;
	cr_assert_eq(sb_state_open(statedir, &st), 0);
	t = begin(1);
	cr_assert_eq(count(t), 2);
	cr_assert_eq(sb_state_dir_id(t, "d", 1, &id), 0);
	cr_assert_eq(id, d);
	list(t, d, buf, sizeof(buf));
	cr_assert_str_eq(buf, "f");
	cr_assert_eq(sb_state_conflict_get(t, "d/f", 3, &g), 0);
	assert_conflict_eq(&g, &c);
	sb_txn_abort(t);
}

/* MDB_NOTLS: several read txns at once in one thread must work. */
Test(state, concurrent_readers_in_one_thread)
{
	struct sb_txn *w = begin(0), *r1, *r2;

	mkf(w, SB_ROOT_ID, "f");
	cr_assert_eq(sb_txn_commit(w), 0);
	r1 = begin(1);
	r2 = begin(1);
	cr_assert(exists(r1, SB_ROOT_ID, "f"));
	cr_assert(exists(r2, SB_ROOT_ID, "f"));
	/* a writer meanwhile does not disturb the readers' snapshot */
	w = begin(0);
	cr_assert_eq(sb_state_del(w, SB_ROOT_ID, "f", 1), 0);
	cr_assert_eq(sb_txn_commit(w), 0);
	cr_assert(exists(r1, SB_ROOT_ID, "f"));
	sb_txn_abort(r1);
	cr_assert_eq(sb_txn_commit(r2), 0);
	r1 = begin(1);
	cr_assert(!exists(r1, SB_ROOT_ID, "f"));
	sb_txn_abort(r1);
}

Test(state, many_puts_in_one_txn)
{
	struct sb_txn *t = begin(0);
	const int ndirs = 100, per = 1000;
	uint64_t dirs[100], n;
	struct sb_rec r = file_rec(0);
	char name[32];
	char buf[64];

	for (int d = 0; d < ndirs; d++) {
		snprintf(name, sizeof(name), "dir%03d", d);
		dirs[d] = mkd(t, SB_ROOT_ID, name);
	}
	for (int i = 0; i < ndirs * per; i++) {
		int len = snprintf(name, sizeof(name), "file-%07d", i);

		r.size = (uint64_t)i;
		cr_assert_eq(sb_state_put(t, dirs[i % ndirs], name,
					  (size_t)len, &r), 0);
	}
	cr_assert_eq(sb_txn_commit(t), 0);

	t = begin(1);
	cr_assert_eq(sb_state_count(t, &n), 0);
	cr_assert_eq(n, (uint64_t)(ndirs + ndirs * per));
	cr_assert_eq(sb_state_get(t, dirs[7], "file-0012307", 12, &r), 0);
	cr_assert_eq(r.size, 12307);
	sb_txn_abort(t);

	/* and deleting one big directory removes exactly its children */
	t = begin(0);
	cr_assert_eq(sb_state_del(t, SB_ROOT_ID, "dir050", 6), 0);
	cr_assert_eq(count(t), (uint64_t)(ndirs - 1 + (ndirs - 1) * per));
	list(t, dirs[50], buf, sizeof(buf));
	cr_assert_str_eq(buf, "");
	cr_assert_eq(sb_txn_commit(t), 0);
}
