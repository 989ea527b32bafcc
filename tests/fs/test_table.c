/*
 * The rules table of engine/plan.c, cell by cell, end to end: for each
 * cell a synced entry `e` (a file, a directory, or nothing ever synced),
 * a change on each side, one reconcile, and what both sides then hold, the
 * exit status, the conflicts recorded and the log's action for `e`. Every
 * cell also runs as its mirror image (sides swapped) unless the rule favours
 * a side; then the mirror image is a cell of its own. Each conflict cell is
 * then settled by --auto-resolve, for each side.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

static struct tl_env env;

static void setup(void) { tl_env_init(&env); }
static void teardown(void) { tl_env_fini(&env); }

/* What `e` is when synced. */
enum kind { K_FILE, K_DIR, K_NEW };

/* A change made to one side's `e` after the sync. */
enum change {
	X_NONE,
	X_FP,		/* the same content rewritten, mtime put back: a fingerprint moves */
	X_MODE_A,	/* chmod: 0600 for a file, 0700 for a directory */
	X_MODE_B,	/* chmod: 0640, 0750 */
	X_FILE_S,	/* becomes the file "src" (an edit, or a directory replaced),
			 * mtime T0 on the source, T0 + 100 on the target */
	X_FILE_T,	/* becomes the file "tgt" */
	X_FILE_SAME,	/* becomes the file "same" */
	X_DIR,		/* becomes a directory holding n ("n") */
	X_RM,		/* deleted, with whatever it holds */
	X_SUB_EDIT,	/* a directory's a becomes "a2" */
	X_SUB_NEW,	/* a directory gets n ("n") */
};

/*
 * want[]: `e` on each side afterwards: "-" absent, a file's content, a
 * directory as [name=what,...]; "@mode" follows where it is not 0644 (0755).
 * conflicts: "path:kind;..." in path order, "" for none. action: the log's
 * one action for `e`; "-": none at all (what is only recorded is not logged);
 * "": not checked. Inline arrays, no pointers: the
 * parameters are copied into criterion's shared memory (cr_malloc).
 */
struct cell {
	char name[48];
	int kind, change[2], status;
	char want[2][24];
	char conflicts[64];
	char action[24];
	int favours;		/* the rule favours a side: no automatic mirror image */
};

/* A test's parameter: a cell, or its mirror image. */
struct param {
	struct cell c;
	int mirrored;
};

#define N_ "-"

/* A fixed point in time (2023-11-14 22:13:20 UTC) for explicit mtimes. */
#define T0 1700000000L

static const struct cell cells[] = {
	/* A file synced as "base". */
	{ "file SAME/SAME", K_FILE, { X_NONE, X_NONE }, 0, { "base", "base" }, "", "-", 1 },
	{ "file SAME/FP", K_FILE, { X_NONE, X_FP }, 0, { "base", "base" }, "", "-", 0 },
	{ "file FP/FP", K_FILE, { X_FP, X_FP }, 0, { "base", "base" }, "", "-", 1 },
	{ "file SAME/META", K_FILE, { X_NONE, X_MODE_A }, 0, { "base@600", "base@600" }, "",
	  "metadata-to-source", 0 },
	{ "file FP/META", K_FILE, { X_FP, X_MODE_A }, 0, { "base@600", "base@600" }, "",
	  "metadata-to-source", 0 },
	{ "file SAME/CONTENT", K_FILE, { X_NONE, X_FILE_T }, 0, { "tgt", "tgt" }, "",
	  "update-source", 0 },
	{ "file FP/CONTENT", K_FILE, { X_FP, X_FILE_T }, 0, { "tgt", "tgt" }, "",
	  "update-source", 0 },
	{ "file SAME/CONTENT to a directory", K_FILE, { X_NONE, X_DIR }, 0, { "[n=n]", "[n=n]" }, "",
	  "update-source", 0 },
	{ "file SAME/DELETED", K_FILE, { X_NONE, X_RM }, 0, { N_, N_ }, "", "delete-in-source", 0 },
	{ "file FP/DELETED", K_FILE, { X_FP, X_RM }, 0, { N_, N_ }, "", "delete-in-source", 0 },
	{ "file META/META alike", K_FILE, { X_MODE_A, X_MODE_A }, 0, { "base@600", "base@600" }, "",
	  "-", 1 },
	/* Same mtime: the source's metadata wins. */
	{ "file META/META", K_FILE, { X_MODE_A, X_MODE_B }, 0, { "base@600", "base@600" }, "",
	  "metadata-to-target", 1 },
	{ "file META/META sides swapped", K_FILE, { X_MODE_B, X_MODE_A }, 0, { "base@640", "base@640" }, "",
	  "metadata-to-target", 1 },
	{ "file META/CONTENT", K_FILE, { X_MODE_A, X_FILE_T }, 1, { "base@600", "tgt" }, "e:content",
	  "", 0 },
	{ "file META/CONTENT to a directory", K_FILE, { X_MODE_A, X_DIR }, 1, { "base@600", "[n=n]" },
	  "e:type", "conflict", 0 },
	{ "file META/DELETED", K_FILE, { X_MODE_A, X_RM }, 1, { "base@600", N_ },
	  "e:modified-deleted", "conflict", 0 },
	{ "file CONTENT/CONTENT alike", K_FILE, { X_FILE_SAME, X_FILE_SAME }, 0, { "same", "same" },
	  "", "metadata-to-source", 1 },
	{ "file CONTENT/CONTENT", K_FILE, { X_FILE_S, X_FILE_T }, 1, { "src", "tgt" }, "e:content",
	  "", 0 },
	{ "file CONTENT/CONTENT kinds", K_FILE, { X_FILE_S, X_DIR }, 1, { "src", "[n=n]" }, "e:type",
	  "", 0 },
	{ "file CONTENT/CONTENT directories", K_FILE, { X_DIR, X_DIR }, 0, { "[n=n]", "[n=n]" }, "",
	  "-", 1 },
	{ "file CONTENT/DELETED", K_FILE, { X_FILE_S, X_RM }, 1, { "src", N_ },
	  "e:modified-deleted", "conflict", 0 },
	{ "file DELETED/DELETED", K_FILE, { X_RM, X_RM }, 0, { N_, N_ }, "", "-", 1 },

	/* A directory synced holding a ("a") and b ("b"); a directory has no FP. */
	{ "dir SAME/SAME", K_DIR, { X_NONE, X_NONE }, 0, { "[a=a,b=b]", "[a=a,b=b]" }, "", "-", 1 },
	{ "dir SAME/SAME, an entry changed", K_DIR, { X_SUB_EDIT, X_NONE }, 0,
	  { "[a=a2,b=b]", "[a=a2,b=b]" }, "", "-", 0 },
	{ "dir SAME/META", K_DIR, { X_NONE, X_MODE_A }, 0, { "[a=a,b=b]@700", "[a=a,b=b]@700" }, "",
	  "metadata-to-source", 0 },
	{ "dir META/META alike", K_DIR, { X_MODE_A, X_MODE_A }, 0,
	  { "[a=a,b=b]@700", "[a=a,b=b]@700" }, "", "-", 1 },
	/* The source's mode wins. */
	{ "dir META/META", K_DIR, { X_MODE_A, X_MODE_B }, 0, { "[a=a,b=b]@700", "[a=a,b=b]@700" }, "",
	  "metadata-to-target", 1 },
	{ "dir META/META sides swapped", K_DIR, { X_MODE_B, X_MODE_A }, 0,
	  { "[a=a,b=b]@750", "[a=a,b=b]@750" }, "", "metadata-to-target", 1 },
	{ "dir SAME/CONTENT", K_DIR, { X_NONE, X_FILE_T }, 0, { "tgt", "tgt" }, "", "update-source", 0 },
	/* What changed beneath stays, and the directory against the file is a conflict. */
	{ "dir SAME/CONTENT, an entry changed", K_DIR, { X_SUB_EDIT, X_FILE_T }, 1, { "[a=a2]", "tgt" },
	  "e:type;e/a:under-deleted-directory", "conflict", 0 },
	{ "dir SAME/DELETED", K_DIR, { X_NONE, X_RM }, 0, { N_, N_ }, "", "delete-in-source", 0 },
	{ "dir SAME/DELETED, an entry changed", K_DIR, { X_SUB_EDIT, X_RM }, 1, { "[a=a2]", N_ },
	  "e/a:under-deleted-directory", "-", 0 },
	{ "dir SAME/DELETED, an entry created", K_DIR, { X_SUB_NEW, X_RM }, 1, { "[n=n]", N_ },
	  "e/n:under-deleted-directory", "-", 0 },
	{ "dir META/CONTENT", K_DIR, { X_MODE_A, X_FILE_T }, 1, { "[a=a,b=b]@700", "tgt" }, "e:type",
	  "", 0 },
	{ "dir META/DELETED", K_DIR, { X_MODE_A, X_RM }, 0, { N_, N_ }, "", "delete-in-source", 0 },
	{ "dir CONTENT/CONTENT alike", K_DIR, { X_FILE_SAME, X_FILE_SAME }, 0, { "same", "same" }, "",
	  "metadata-to-source", 1 },
	{ "dir CONTENT/CONTENT", K_DIR, { X_FILE_S, X_FILE_T }, 1, { "src", "tgt" }, "e:content", "conflict", 0 },
	{ "dir CONTENT/DELETED", K_DIR, { X_FILE_S, X_RM }, 1, { "src", N_ }, "e:modified-deleted",
	  "", 0 },
	{ "dir DELETED/DELETED", K_DIR, { X_RM, X_RM }, 0, { N_, N_ }, "", "-", 1 },

	/* Never synced: no record. */
	{ "new NEW/NEW alike", K_NEW, { X_FILE_SAME, X_FILE_SAME }, 0, { "same", "same" }, "",
	  "metadata-to-source", 1 },
	{ "new NEW/NEW", K_NEW, { X_FILE_S, X_FILE_T }, 1, { "src", "tgt" }, "e:content", "conflict", 0 },
	{ "new NEW/NEW kinds", K_NEW, { X_FILE_S, X_DIR }, 1, { "src", "[n=n]" }, "e:type", "conflict", 0 },
	{ "new NEW/NEW directories", K_NEW, { X_DIR, X_DIR }, 0, { "[n=n]", "[n=n]" }, "", "-", 1 },
	{ "new NEW/ABSENT", K_NEW, { X_FILE_S, X_NONE }, 0, { "src", "src" }, "", "copy-to-target", 0 },
	{ "new NEW/ABSENT directory", K_NEW, { X_DIR, X_NONE }, 0, { "[n=n]", "[n=n]" }, "",
	  "copy-to-target", 0 },
	{ "new ABSENT/ABSENT", K_NEW, { X_NONE, X_NONE }, 0, { N_, N_ }, "", "-", 1 },
};

#define NCELLS (sizeof(cells) / sizeof(cells[0]))

static void free_params(struct criterion_test_params *p)
{
	cr_free(p->params);
}

/*
 * Every cell and, unless it favours a side, its mirror image; with
 * conflicts_only, the cells that end in one conflict. Not those with a
 * conflict beneath another (a directory replaced by a file, an entry in it
 * changed): --auto-resolve plans the entry's copy before the replacement of
 * what holds it, and that run ends in skips (exit 1), left for the next.
 */
static int one_conflict(const struct cell *c)
{
	return c->conflicts[0] && !strchr(c->conflicts, ';');
}

static struct param *make_params(int conflicts_only, size_t *count)
{
	size_t n = 0;
	for (size_t i = 0; i < NCELLS; i++)
		if (!conflicts_only || one_conflict(&cells[i]))
			n += cells[i].favours ? 1 : 2;
	struct param *v = cr_malloc(n * sizeof(*v));
	size_t k = 0;
	for (size_t i = 0; i < NCELLS; i++) {
		if (conflicts_only && !one_conflict(&cells[i]))
			continue;
		v[k++] = (struct param){ cells[i], 0 };
		if (cells[i].favours)
			continue;
		v[k] = (struct param){ cells[i], 1 };
		struct cell *m = &v[k++].c;
		m->change[0] = cells[i].change[1];
		m->change[1] = cells[i].change[0];
		memcpy(m->want[0], cells[i].want[1], sizeof(m->want[0]));
		memcpy(m->want[1], cells[i].want[0], sizeof(m->want[1]));
		strncat(m->name, " mirrored", sizeof(m->name) - strlen(m->name) - 1);
		char *side = strstr(m->action, "source");
		if (side)
			memcpy(side, "target", 6);
		else if ((side = strstr(m->action, "target")))
			memcpy(side, "source", 6);
	}
	*count = n;
	return v;
}

ParameterizedTestParameters(table, cell)
{
	size_t n;
	struct param *v = make_params(0, &n);
	return cr_make_param_array(struct param, v, n, free_params);
}

ParameterizedTestParameters(table, source_wins)
{
	size_t n;
	struct param *v = make_params(1, &n);
	return cr_make_param_array(struct param, v, n, free_params);
}

ParameterizedTestParameters(table, target_wins)
{
	size_t n;
	struct param *v = make_params(1, &n);
	return cr_make_param_array(struct param, v, n, free_params);
}

/* ---------------------------------------------------------------- trees */

static const char *root(int side)
{
	return side ? env.tgt : env.src;
}

/* Twelve files under keep/, half on each side: no deletion here is a mass one. */
static void filler(void)
{
	char name[32];
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof(name), "keep/f%02d.txt", i);
		tl_write(i < 6 ? env.src : env.tgt, name, "filler\n");
	}
}

static void chmod_at(const char *dir, const char *rel, mode_t mode)
{
	char *p = tl_join(dir, rel);
	cr_assert_eq(chmod(p, mode), 0, "chmod %s: %s", p, strerror(errno));
	free(p);
}

static void change(const struct cell *c, int side)
{
	const char *d = root(side);
	int isdir = c->kind == K_DIR;
	struct stat st;
	char *p = tl_join(d, "e");

	switch (c->change[side]) {
	case X_NONE:
		break;
	case X_FP:
		cr_assert_eq(lstat(p, &st), 0, "%s", p);
		tl_write(d, "e", "base");
		struct timespec t[2] = { st.st_atim, st.st_mtim };
		cr_assert_eq(utimensat(AT_FDCWD, p, t, 0), 0, "utimensat %s", p);
		break;
	case X_MODE_A:
		chmod_at(d, "e", isdir ? 0700 : 0600);
		break;
	case X_MODE_B:
		chmod_at(d, "e", isdir ? 0750 : 0640);
		break;
	case X_FILE_S:
	case X_FILE_T:
	case X_FILE_SAME:
		tl_rm(d, "e");
		tl_write(d, "e", c->change[side] == X_FILE_S ? "src"
			 : c->change[side] == X_FILE_T ? "tgt" : "same");
		/* The target's the newer: which metadata wins is then known. */
		struct timespec m[2] = { { T0 + 100 * side, 0 }, { T0 + 100 * side, 0 } };
		cr_assert_eq(utimensat(AT_FDCWD, p, m, 0), 0, "utimensat %s", p);
		break;
	case X_DIR:
		tl_rm(d, "e");
		tl_write(d, "e/n", "n");
		break;
	case X_RM:
		tl_rm(d, "e");
		break;
	case X_SUB_EDIT:
		tl_write(d, "e/a", "a2");
		break;
	case X_SUB_NEW:
		tl_write(d, "e/n", "n");
		break;
	}
	free(p);
}

/* `e` beneath dir as the cells write it. */
static void describe_at(FILE *f, const char *dir, const char *rel)
{
	struct stat st;
	char *p = tl_join(dir, rel);

	if (lstat(p, &st) < 0) {
		fputs(N_, f);
	} else if (S_ISDIR(st.st_mode)) {
		struct dirent **list = NULL;
		int n = scandir(p, &list, NULL, alphasort), first = 1;
		cr_assert(n >= 0, "scandir %s: %s", p, strerror(errno));
		fputc('[', f);
		for (int i = 0; i < n; i++) {
			const char *name = list[i]->d_name;
			if (strcmp(name, ".") && strcmp(name, "..")) {
				char *sub = tl_join(rel, name);
				fprintf(f, "%s%s=", first ? "" : ",", name);
				describe_at(f, dir, sub);
				free(sub);
				first = 0;
			}
			free(list[i]);
		}
		free(list);
		fputc(']', f);
		if ((st.st_mode & 07777) != 0755)
			fprintf(f, "@%o", (unsigned)(st.st_mode & 07777));
	} else {
		char *s = tl_read(dir, rel);
		fputs(s ? s : "?", f);
		free(s);
		if ((st.st_mode & 07777) != 0644)
			fprintf(f, "@%o", (unsigned)(st.st_mode & 07777));
	}
	free(p);
}

static char *describe(int side)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	describe_at(f, root(side), "e");
	fclose(f);
	return buf;
}

/* ---------------------------------------------------------------- sbfs */

static struct tl_run run(const struct cell *c, int want, const char *cmd, const char *const *opts)
{
	struct tl_run r = tl_cmd(&env, cmd, opts);
	cr_assert_eq(r.status, want, "%s: sbfs %s: exit %d, expected %d\n--- stdout\n%s--- stderr\n%s",
		     c->name, cmd, r.status, want, r.out, r.err);
	return r;
}

/* "path:kind;..." of `sbfs conflicts --json`, in its order (by path). */
static char *conflicts(const struct cell *c)
{
	static const char *const opts[] = { "--json", NULL };
	struct tl_run r = run(c, c->conflicts[0] ? 1 : 0, "conflicts", opts);
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	const char *p = r.out, *key = "{\"path\":\"";
	int first = 1;

	while ((p = strstr(p, key))) {
		p += strlen(key);
		const char *e = strchr(p, '"');
		cr_assert(e && !strncmp(e, "\",\"kind\":\"", 10), "%s", r.out);
		const char *k = e + 10, *ke = strchr(k, '"');
		cr_assert(ke, "%s", r.out);
		fprintf(f, "%s%.*s:%.*s", first ? "" : ";", (int)(e - p), p, (int)(ke - k), k);
		first = 0;
		p = ke;
	}
	fclose(f);
	tl_run_free(&r);
	return buf;
}

/* Lines of the operation log for path `e` with action ("-": any). */
static size_t log_count(const char *action)
{
	char want[64], line[4096];
	size_t n = 0;
	FILE *f = fopen(env.log, "r");
	if (!f)
		return 0;
	snprintf(want, sizeof(want), "\"action\":\"%s\"", action);
	while (fgets(line, sizeof(line), f))
		n += (!strcmp(action, "-") || strstr(line, want)) && strstr(line, "\"path\":\"e\"");
	fclose(f);
	return n;
}

static void assert_sides(const struct cell *c, const char *when)
{
	for (int s = 0; s < 2; s++) {
		char *got = describe(s);
		cr_assert_str_eq(got, c->want[s], "%s, %s: %s holds e as \"%s\", expected \"%s\"",
				 c->name, when,
				 s ? "target" : "source", got, c->want[s]);
		free(got);
	}
}

/* The cell's entry synced, then changed on each side; the log's count of
 * the cell's action so far. */
static size_t prepare(const struct cell *c)
{
	filler();
	if (c->kind == K_FILE) {
		tl_write(env.src, "e", "base");
	} else if (c->kind == K_DIR) {
		tl_write(env.src, "e/a", "a");
		tl_write(env.src, "e/b", "b");
	}
	struct tl_run r = run(c, 0, "reconcile", NULL);
	tl_run_free(&r);
	size_t before = c->action[0] ? log_count(c->action) : 0;
	change(c, 0);
	change(c, 1);
	return before;
}

TestSuite(table, .init = setup, .fini = teardown, .timeout = 30);

ParameterizedTest(struct param *p, table, cell)
{
	const struct cell *c = &p->c;

	size_t before = prepare(c);
	struct tl_run r = run(c, c->status, "reconcile", NULL);
	tl_run_free(&r);
	assert_sides(c, "after the reconcile");
	char *got = conflicts(c);
	cr_assert_str_eq(got, c->conflicts, "%s: conflicts \"%s\", expected \"%s\"",
			 c->name, got, c->conflicts);
	free(got);
	if (c->action[0]) {
		size_t want = strcmp(c->action, "-") ? 1 : 0, got = log_count(c->action) - before;
		cr_assert_eq(got, want, "%s: %zu lines \"%s\" for e in the log, expected %zu",
			     c->name, got, c->action, want);
	}

	/* Settled: a second reconcile changes nothing, whatever it leaves. */
	r = run(c, c->status, "reconcile", NULL);
	if (c->status == 0)
		cr_assert(strstr(r.out, "Nothing to do"), "%s: %s", c->name, r.out);
	tl_run_free(&r);
	assert_sides(c, "after a second reconcile");
	if (c->status == 0) {
		char *why = NULL;
		cr_assert(tl_trees_equal(env.src, env.tgt, &why), "%s: trees differ: %s", c->name,
			  why ? why : "?");
		free(why);
	}
}

/* A conflict cell settled by --auto-resolve (the choose hook): both sides
 * then hold what side `win` held, and nothing is left to do. */
static void settled(const struct cell *c, int win)
{
	static const char *const opts[2][3] = { { "--auto-resolve", "source", NULL },
						{ "--auto-resolve", "target", NULL } };
	prepare(c);
	struct tl_run r = run(c, 0, "reconcile", opts[win]);
	tl_run_free(&r);
	for (int s = 0; s < 2; s++) {
		char *got = describe(s);
		cr_assert_str_eq(got, c->want[win], "%s, %s wins: %s holds e as \"%s\", expected \"%s\"",
				 c->name, win ? "target" : "source", s ? "target" : "source", got,
				 c->want[win]);
		free(got);
	}
	r = run(c, 0, "reconcile", NULL);
	cr_assert(strstr(r.out, "Nothing to do"), "%s: %s", c->name, r.out);
	tl_run_free(&r);
	r = run(c, 0, "conflicts", NULL);
	tl_run_free(&r);
}

ParameterizedTest(struct param *p, table, source_wins)
{
	settled(&p->c, 0);
}

ParameterizedTest(struct param *p, table, target_wins)
{
	settled(&p->c, 1);
}
