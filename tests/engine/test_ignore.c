/* The ignore matcher: a table of patterns against paths, and the file. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sbfs.h"
#include "ignore.h"

struct row {
	const char *pats[4];	/* in order, the last match wins */
	const char *path;
	int dir;
	int want;
};

static const struct row rows[] = {
	/* a name at any depth */
	{ { "*.o" }, "a.o", 0, 1 },
	{ { "*.o" }, "src/lib/a.o", 0, 1 },
	{ { "*.o" }, "a.c", 0, 0 },
	{ { "*.o" }, "a.o/x", 0, 1 },		/* beneath an ignored directory */
	{ { "foo" }, "x/foo", 1, 1 },
	{ { "foo" }, "x/foobar", 0, 0 },
	{ { "?.txt" }, "a.txt", 0, 1 },
	{ { "?.txt" }, "ab.txt", 0, 0 },
	{ { "*" }, "anything/at/all", 0, 1 },
	/* '*' and '?' never cross a '/' */
	{ { "a*b" }, "a/b", 0, 0 },
	{ { "doc/*.txt" }, "doc/x.txt", 0, 1 },
	{ { "doc/*.txt" }, "doc/sub/x.txt", 0, 0 },
	{ { "doc/?" }, "doc/x", 0, 1 },
	/* anchoring */
	{ { "/build" }, "build", 1, 1 },
	{ { "/build" }, "src/build", 1, 0 },
	{ { "build" }, "src/build", 1, 1 },
	{ { "a/b" }, "x/a/b", 0, 0 },		/* a middle '/' anchors too */
	{ { "a/b" }, "a/b", 0, 1 },
	/* directories only */
	{ { "cache/" }, "cache", 1, 1 },
	{ { "cache/" }, "cache", 0, 0 },
	{ { "cache/" }, "x/cache/y", 0, 1 },
	{ { "/cache/" }, "x/cache", 1, 0 },
	/* "**" */
	{ { "**/foo" }, "foo", 0, 1 },
	{ { "**/foo" }, "a/b/foo", 0, 1 },
	{ { "**/foo/bar" }, "x/foo/bar", 0, 1 },
	{ { "a/**/b" }, "a/b", 0, 1 },
	{ { "a/**/b" }, "a/x/y/b", 0, 1 },
	{ { "a/**/b" }, "x/a/b", 0, 0 },
	{ { "a/**" }, "a/x/y", 0, 1 },
	{ { "a/**" }, "a", 1, 0 },
	{ { "**" }, "x/y", 0, 1 },
	{ { "a**b" }, "axxb", 0, 1 },		/* not a whole segment: as '*' */
	{ { "a**b" }, "ax/b", 0, 0 },
	{ { "**/*.log" }, "logs/today.log", 0, 1 },
	/* brackets */
	{ { "[abc].txt" }, "b.txt", 0, 1 },
	{ { "[abc].txt" }, "d.txt", 0, 0 },
	{ { "[!abc].txt" }, "d.txt", 0, 1 },
	{ { "[^abc].txt" }, "a.txt", 0, 0 },
	{ { "[a-c]x" }, "bx", 0, 1 },
	{ { "[]]x" }, "]x", 0, 1 },
	{ { "[[:digit:]]*" }, "7up", 0, 1 },
	{ { "[[:digit:]]*" }, "up", 0, 0 },
	{ { "a[/]b" }, "a/b", 0, 0 },
	/* negation: the last match wins */
	{ { "*.log", "!keep.log" }, "keep.log", 0, 0 },
	{ { "*.log", "!keep.log" }, "drop.log", 0, 1 },
	{ { "!keep.log", "*.log" }, "keep.log", 0, 1 },
	{ { "logs/", "!logs/keep" }, "logs/keep", 0, 1 },	/* the directory is ignored */
	{ { "logs/*", "!logs/keep" }, "logs/keep", 0, 0 },
	/* escapes, comments, blanks */
	{ { "\\#x" }, "#x", 0, 1 },
	{ { "#x" }, "#x", 0, 0 },
	{ { "\\!x" }, "!x", 0, 1 },
	{ { "\\*" }, "*", 0, 1 },
	{ { "\\*" }, "a", 0, 0 },
	{ { "a\\ " }, "a ", 0, 1 },
	{ { "a  " }, "a", 0, 1 },		/* trailing blanks dropped */
	{ { "" }, "a", 0, 0 },
	/* names need not be UTF-8 */
	{ { "\xff*" }, "d/\xff\xfe", 0, 1 },
	{ { "?" }, "\x80", 0, 1 },
	/* the defaults */
	{ { NULL }, ".DS_Store", 0, 1 },
	{ { NULL }, "a/Thumbs.db", 0, 1 },
	{ { NULL }, ".Trash-1000", 1, 1 },
	{ { NULL }, "System Volume Information", 1, 1 },
	{ { NULL }, "$RECYCLE.BIN", 1, 1 },
	{ { NULL }, ".sbfs-tmpfoo", 0, 1 },
	{ { NULL }, "DS_Store", 0, 0 },
	{ { "!.DS_Store" }, ".DS_Store", 0, 0 },
};

Test(ignore, table)
{
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		struct sb_ignore *ig;
		cr_assert_eq(sb_ignore_new(&ig), 0);
		for (int k = 0; k < 4 && rows[r].pats[k]; k++)
			cr_assert_eq(sb_ignore_add(ig, rows[r].pats[k], strlen(rows[r].pats[k]),
						   SB_IGN_CLI), 0, "row %zu: %s", r, rows[r].pats[k]);
		int got = sb_ignore_path(ig, rows[r].path, strlen(rows[r].path), rows[r].dir);
		cr_expect_eq(got, rows[r].want, "row %zu: '%s' %s '%s' (%s): got %d", r,
			     rows[r].pats[0] ? rows[r].pats[0] : "(defaults)",
			     rows[r].pats[1] ? "..." : "", rows[r].path,
			     rows[r].dir ? "dir" : "file", got);
		sb_ignore_free(ig);
	}
}

Test(ignore, bad_patterns)
{
	static const char *const bad[] = { "[abc", "a\\", "!", "/", "!/", "[[:nope:]]", "a\nb" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *why = NULL;
		cr_expect_eq(sb_ignore_check(bad[i], strlen(bad[i]), &why), SB_E_BADPATTERN,
			     "'%s' taken", bad[i]);
		cr_expect_not_null(why);
	}
	cr_expect_eq(sb_ignore_check("ok*", 3, NULL), 0);
	cr_expect_eq(sb_ignore_check("# comment", 9, NULL), 0);
}

Test(ignore, defaults_off)
{
	struct sb_ignore *ig;
	cr_assert_eq(sb_ignore_new(&ig), 0);
	cr_expect_eq(sb_ignore_path(ig, ".DS_Store", 9, 0), 1);
	sb_ignore_no_defaults(ig);
	cr_expect_eq(sb_ignore_path(ig, ".DS_Store", 9, 0), 0);
	sb_ignore_free(ig);

	cr_assert_eq(sb_ignore_new(&ig), 0);
	cr_assert_eq(sb_ignore_add(ig, SB_IGNORE_NO_DEFAULTS, strlen(SB_IGNORE_NO_DEFAULTS),
				   SB_IGN_FILE), 0);
	cr_expect_eq(sb_ignore_defaults_off(ig), 1);
	cr_expect_eq(sb_ignore_path(ig, "Thumbs.db", 9, 0), 0);
	sb_ignore_free(ig);
}

Test(ignore, kinds)
{
	struct sb_ignore *ig;
	cr_assert_eq(sb_ignore_new(&ig), 0);
	cr_assert_eq(sb_ignore_add(ig, "out/", 4, SB_IGN_CLI), 0);
	cr_expect_eq(sb_ignore_kinds(ig, "out", 3), 2);
	cr_expect_eq(sb_ignore_kinds(ig, "out/a", 5), 3);
	cr_expect_eq(sb_ignore_kinds(ig, "in", 2), 0);
	sb_ignore_free(ig);
}

static char *mkdtemp_dir(void)
{
	char *d = strdup("/tmp/sbfs-ignore.XXXXXX");
	cr_assert_not_null(mkdtemp(d));
	return d;
}

static char *slurp(const char *dir)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/%s", dir, SB_IGNORE_FILE);
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = calloc(1, 4096);
	size_t n = fread(buf, 1, 4095, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

Test(ignore, file_edit_and_load)
{
	char *d = mkdtemp_dir(), path[256], *s;
	struct sb_ignore *ig;
	struct sb_ignore_bad bad;

	cr_assert_eq(sb_ignore_edit(d, "*.o", 1), 0);
	cr_assert_eq(sb_ignore_edit(d, "build/", 1), 0);
	cr_expect_eq(sb_ignore_edit(d, "*.o", 1), 1, "added twice");
	s = slurp(d);
	cr_expect_str_eq(s, "*.o\nbuild/\n");
	free(s);
	snprintf(path, sizeof(path), "%s/%s", d, SB_IGNORE_FILE);
	struct stat st;
	cr_assert_eq(lstat(path, &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0600);

	cr_assert_eq(sb_ignore_new(&ig), 0);
	cr_assert_eq(sb_ignore_load(ig, d, &bad), 0);
	cr_expect_eq(sb_ignore_path(ig, "x/y.o", 5, 0), 1);
	cr_expect_eq(sb_ignore_path(ig, "build", 5, 1), 1);
	sb_ignore_free(ig);

	cr_assert_eq(sb_ignore_edit(d, "*.o", 0), 0);
	cr_expect_eq(sb_ignore_edit(d, "*.o", 0), 1, "removed twice");
	s = slurp(d);
	cr_expect_str_eq(s, "build/\n");
	free(s);
	cr_expect_eq(sb_ignore_edit(d, "[x", 1), SB_E_BADPATTERN);

	/* A bad line in the file is named by its number. */
	FILE *f = fopen(path, "w");
	fputs("# comment\r\nok\n[bad\n", f);
	fclose(f);
	cr_assert_eq(sb_ignore_new(&ig), 0);
	cr_expect_eq(sb_ignore_load(ig, d, &bad), SB_E_BADPATTERN);
	cr_expect_eq(bad.line, 3);
	cr_expect_str_eq(bad.text, "[bad");
	cr_expect_not_null(bad.why);
	sb_ignore_free(ig);

	/* Never through a symlink. */
	unlink(path);
	cr_assert_eq(symlink("/etc/passwd", path), 0);
	cr_assert_eq(sb_ignore_new(&ig), 0);
	cr_expect_eq(sb_ignore_load(ig, d, &bad), SB_E_STATE_SYMLINK);
	sb_ignore_free(ig);
	cr_expect_eq(sb_ignore_edit(d, "x", 1), SB_E_STATE_SYMLINK);
	unlink(path);
	rmdir(d);
	free(d);
}
