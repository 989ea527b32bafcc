/*
 * journal.c: the mount's record of files open for writing, in a real
 * partnership's state directory.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "core.h"

static char tmpdir[] = "/tmp/sbfs-journal-XXXXXX";
static struct sb_pship *p;
static int jfd = -1;

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void setup(void)
{
	char src[64], tgt[64], state[64];
	struct sb_error err = { 0 };

	cr_assert_not_null(mkdtemp(tmpdir));
	snprintf(src, sizeof(src), "%s/src", tmpdir);
	snprintf(tgt, sizeof(tgt), "%s/tgt", tmpdir);
	snprintf(state, sizeof(state), "%s/state", tmpdir);
	cr_assert_eq(mkdir(src, 0700), 0);
	cr_assert_eq(mkdir(tgt, 0700), 0);
	cr_assert_eq(sb_pship_open(src, tgt, state, NULL, &p, &err), 0);
	cr_assert_eq(sb_journal_open(p, &jfd), 0);
}

static void teardown(void)
{
	if (jfd >= 0)
		close(jfd);
	jfd = -1;
	sb_pship_close(p);
	p = NULL;
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(journal, .init = setup, .fini = teardown);

/* The dirty paths, sorted, joined with ' '. */
static char *dirty(void)
{
	char **v = NULL, *s = calloc(1, 1);
	size_t n = 0, len = 0;

	cr_assert_eq(sb_journal_dirty(p, &v, &n), 0);
	for (size_t k = 0; k < n; k++) {
		size_t l = strlen(v[k]);
		s = realloc(s, len + l + 2);
		if (len)
			s[len++] = ' ';
		memcpy(s + len, v[k], l + 1);
		len += l;
		free(v[k]);
	}
	free(v);
	return s;
}

static off_t journal_size(void)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "%s/journal", sb_pship_dir(p));
	cr_assert_eq(stat(path, &st), 0, "%s: %s", path, strerror(errno));
	return st.st_size;
}

Test(journal, open_files_are_dirty)
{
	char *s = dirty();
	cr_assert_str_empty(s);
	free(s);
	cr_assert_eq(sb_journal_note(jfd, 'W', "a"), 6);
	cr_assert_gt(sb_journal_note(jfd, 'W', "dir/b"), 0);
	cr_assert_gt(sb_journal_note(jfd, 'W', "a"), 0);	/* opened twice */
	cr_assert_gt(sb_journal_note(jfd, 'C', "a"), 0);
	cr_assert_gt(sb_journal_note(jfd, 'W', "c"), 0);
	cr_assert_gt(sb_journal_note(jfd, 'C', "c"), 0);
	s = dirty();
	cr_assert_str_eq(s, "a dir/b");
	free(s);
	cr_assert_gt(sb_journal_note(jfd, 'C', "a"), 0);
	s = dirty();
	cr_assert_str_eq(s, "dir/b");
	free(s);
	cr_assert_eq(sb_journal_clear(p), 0);
	s = dirty();
	cr_assert_str_empty(s);
	free(s);
}

/* A name that is a prefix of another is a different path. */
Test(journal, prefixes_are_other_paths)
{
	cr_assert_gt(sb_journal_note(jfd, 'W', "ab"), 0);
	cr_assert_gt(sb_journal_note(jfd, 'W', "a"), 0);
	cr_assert_gt(sb_journal_note(jfd, 'C', "ab"), 0);
	cr_assert_gt(sb_journal_note(jfd, 'W', "abc"), 0);
	char *s = dirty();
	cr_assert_str_eq(s, "a abc");
	free(s);
}

/* The last record cut short by a kill is ignored, the others count. */
Test(journal, torn_last_record)
{
	cr_assert_gt(sb_journal_note(jfd, 'W', "whole"), 0);
	const char torn[] = { 'W', 20, 0, 0, 0, 'p', 'a' };
	cr_assert_eq(write(jfd, torn, sizeof(torn)), (ssize_t)sizeof(torn));
	char *s = dirty();
	cr_assert_str_eq(s, "whole");
	free(s);
}

/* A rewrite keeps only the paths given; later records go to the new file. */
Test(journal, rewrite_keeps_the_open_ones)
{
	char name[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "f%04d", i);
		cr_assert_gt(sb_journal_note(jfd, 'W', name), 0);
	}
	off_t before = journal_size();
	const char *still[] = { "f0007", "f0500" };
	long size = sb_journal_rewrite(p, jfd, still, 2);
	cr_assert_eq(size, 2 * 10);
	cr_assert_eq(journal_size(), size);
	cr_assert_lt(journal_size(), before);
	cr_assert_gt(sb_journal_note(jfd, 'C', "f0007"), 0);
	cr_assert_gt(sb_journal_note(jfd, 'W', "new"), 0);
	cr_assert_eq(journal_size(), size + 10 + 8);
	char *s = dirty();
	cr_assert_str_eq(s, "f0500 new");
	free(s);
}

/*
 * Many distinct paths, as a mount left running for long writes: the
 * reading must not compare each with all the others (it did, and took
 * hours for a few million).
 */
Test(journal, many_paths, .timeout = 60)
{
	enum { N = 200000 };
	char name[32];
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "d%03d/f%07d", i % 977, i);
		cr_assert_gt(sb_journal_note(jfd, 'W', name), 0);
		if (i % 1000 != 999)
			cr_assert_gt(sb_journal_note(jfd, 'C', name), 0);
	}
	char **v = NULL;
	size_t n = 0;
	cr_assert_eq(sb_journal_dirty(p, &v, &n), 0);
	cr_assert_eq(n, N / 1000);
	for (size_t k = 0; k < n; k++) {
		int i = atoi(strrchr(v[k], 'f') + 1);
		cr_assert_eq(i % 1000, 999, "%s is not open", v[k]);
		free(v[k]);
	}
	free(v);
}
