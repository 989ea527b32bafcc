/*
 * The synchronisation rules, end to end: the sbfs binary on real temporary
 * trees. First sync (no record), changes with a record, conflicts and their
 * suggestions, every way of resolving them, dry runs, the human and JSON
 * output, the operation log, and preserved timestamps and modes.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testlib.h"

static struct tl_env env;

static void setup(void) { tl_env_init(&env); }
static void teardown(void) { tl_env_fini(&env); }

TestSuite(rules, .init = setup, .fini = teardown, .timeout = 30);

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* A fixed point in time (2023-11-14 22:13:20 UTC) for explicit mtimes. */
#define T0 1700000000L

/* sha256 of "hello\n" and of "hello world\n". */
#define SHA_HELLO "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
#define SHA_HELLO_WORLD "a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"

/* ================================================================ JSON */

/* A small strict JSON parser, enough to check sbfs's documents. */
enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };

struct jv {
	int t;
	int b;			/* J_BOOL */
	long long i;		/* J_NUM, when integral */
	int integral;
	char *s;		/* J_STR, decoded, NUL-terminated */
	size_t n;		/* J_ARR, J_OBJ: number of items */
	struct jv *v;		/* items */
	char **k;		/* J_OBJ: keys */
};

static void jv_clear(struct jv *j)
{
	free(j->s);
	for (size_t i = 0; i < j->n; i++) {
		jv_clear(&j->v[i]);
		if (j->k)
			free(j->k[i]);
	}
	free(j->v);
	free(j->k);
	memset(j, 0, sizeof(*j));
}

static void jv_free(struct jv *j)
{
	if (j) {
		jv_clear(j);
		free(j);
	}
}

static const char *j_ws(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static const char *j_hex4(const char *p, unsigned *u)
{
	*u = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(p[i]);
		if (h < 0)
			return NULL;
		*u = *u * 16 + h;
	}
	return p + 4;
}

static void put_utf8(FILE *f, unsigned u)
{
	if (u < 0x80) {
		fputc(u, f);
	} else if (u < 0x800) {
		fputc(0xc0 | (u >> 6), f);
		fputc(0x80 | (u & 0x3f), f);
	} else if (u < 0x10000) {
		fputc(0xe0 | (u >> 12), f);
		fputc(0x80 | ((u >> 6) & 0x3f), f);
		fputc(0x80 | (u & 0x3f), f);
	} else {
		fputc(0xf0 | (u >> 18), f);
		fputc(0x80 | ((u >> 12) & 0x3f), f);
		fputc(0x80 | ((u >> 6) & 0x3f), f);
		fputc(0x80 | (u & 0x3f), f);
	}
}

static const char *j_string(const char *p, char **out)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (*p++ != '"')
		goto bad;
	for (;;) {
		unsigned char c = *p;
		if (c == '"') {
			p++;
			break;
		}
		if (c < 0x20)
			goto bad;
		if (c != '\\') {
			fputc(c, f);
			p++;
			continue;
		}
		p++;
		switch (*p++) {
		case '"': fputc('"', f); break;
		case '\\': fputc('\\', f); break;
		case '/': fputc('/', f); break;
		case 'b': fputc('\b', f); break;
		case 'f': fputc('\f', f); break;
		case 'n': fputc('\n', f); break;
		case 'r': fputc('\r', f); break;
		case 't': fputc('\t', f); break;
		case 'u': {
			unsigned u, lo;
			if (!(p = j_hex4(p, &u)))
				goto bad;
			if (u >= 0xd800 && u < 0xdc00) {
				if (p[0] != '\\' || p[1] != 'u' || !(p = j_hex4(p + 2, &lo)) ||
				    lo < 0xdc00 || lo >= 0xe000)
					goto bad;
				u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
			} else if (u >= 0xdc00 && u < 0xe000) {
				goto bad;
			}
			put_utf8(f, u);
			break;
		}
		default:
			goto bad;
		}
	}
	fclose(f);
	*out = buf;
	return p;
bad:
	fclose(f);
	free(buf);
	return NULL;
}

static const char *j_value(const char *p, struct jv *j, int depth);

static const char *j_number(const char *p, struct jv *j)
{
	const char *s = p;
	int integral = 1;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return NULL;
	if (*p == '.') {
		integral = 0;
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		integral = 0;
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return NULL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	j->t = J_NUM;
	j->integral = integral;
	j->i = integral ? strtoll(s, NULL, 10) : (long long)strtod(s, NULL);
	return p;
}

static const char *j_items(const char *p, struct jv *j, int obj, int depth)
{
	size_t cap = 0;
	j->t = obj ? J_OBJ : J_ARR;
	p = j_ws(p + 1);
	if (*p == (obj ? '}' : ']'))
		return p + 1;
	for (;;) {
		if (j->n == cap) {
			cap = cap ? 2 * cap : 8;
			j->v = realloc(j->v, cap * sizeof(*j->v));
			if (obj)
				j->k = realloc(j->k, cap * sizeof(*j->k));
		}
		memset(&j->v[j->n], 0, sizeof(*j->v));
		if (obj) {
			j->k[j->n] = NULL;
			if (!(p = j_string(p, &j->k[j->n]))) {
				j->n++;
				return NULL;
			}
			p = j_ws(p);
			if (*p++ != ':') {
				j->n++;
				return NULL;
			}
		}
		p = j_value(p, &j->v[j->n++], depth + 1);
		if (!p)
			return NULL;
		p = j_ws(p);
		if (*p == ',') {
			p = j_ws(p + 1);
			continue;
		}
		if (*p == (obj ? '}' : ']'))
			return p + 1;
		return NULL;
	}
}

static const char *j_value(const char *p, struct jv *j, int depth)
{
	if (depth > 64)
		return NULL;
	p = j_ws(p);
	switch (*p) {
	case '{': return j_items(p, j, 1, depth);
	case '[': return j_items(p, j, 0, depth);
	case '"': j->t = J_STR; return j_string(p, &j->s);
	case 't': j->t = J_BOOL; j->b = 1; return strncmp(p, "true", 4) ? NULL : p + 4;
	case 'f': j->t = J_BOOL; return strncmp(p, "false", 5) ? NULL : p + 5;
	case 'n': j->t = J_NULL; return strncmp(p, "null", 4) ? NULL : p + 4;
	}
	return j_number(p, j);
}

/* Parses exactly one JSON document (surrounding whitespace allowed); NULL if not. */
static struct jv *jv_parse(const char *text)
{
	struct jv *j = calloc(1, sizeof(*j));
	const char *p = j_value(text, j, 0);
	if (!p || *j_ws(p)) {
		jv_free(j);
		return NULL;
	}
	return j;
}

static const struct jv *jv_get(const struct jv *o, const char *key)
{
	if (!o || o->t != J_OBJ)
		return NULL;
	for (size_t i = 0; i < o->n; i++)
		if (!strcmp(o->k[i], key))
			return &o->v[i];
	return NULL;
}

static const char *jv_str(const struct jv *o, const char *key)
{
	const struct jv *v = jv_get(o, key);
	return v && v->t == J_STR ? v->s : NULL;
}

static long long jv_int(const struct jv *o, const char *key)
{
	const struct jv *v = jv_get(o, key);
	cr_assert(v && v->t == J_NUM && v->integral, "no integer \"%s\"", key);
	return v->i;
}

/* Asserts that text is one JSON document; returns it (jv_free it). */
static struct jv *parse_doc(const char *text)
{
	struct jv *j = jv_parse(text);
	cr_assert(j, "not one JSON document:\n%s", text);
	return j;
}

/* ================================================================ running */

/* Runs `sbfs CMD OPTS... SRC TGT` and asserts its exit status. */
static struct tl_run run(int want, const char *cmd, const char *const *opts)
{
	struct tl_run r = tl_cmd(&env, cmd, opts);
	cr_assert_eq(r.status, want, "sbfs %s: exit %d, expected %d\n--- stdout\n%s--- stderr\n%s",
		     cmd, r.status, want, r.out, r.err);
	return r;
}

static void run_check(int want, const char *cmd, const char *const *opts)
{
	struct tl_run r = run(want, cmd, opts);
	tl_run_free(&r);
}

/* Runs sbfs with a full argv and stdin `input`, asserting its exit status. */
static struct tl_run run_argv(int want, const char *input, const char *const *argv)
{
	struct tl_run r = tl_sbfs_run(&env, input, argv);
	cr_assert_eq(r.status, want, "sbfs %s: exit %d, expected %d\n--- stdout\n%s--- stderr\n%s",
		     argv[0], r.status, want, r.out, r.err);
	return r;
}

/* `sbfs resolve SRC TGT` answering from `input`. */
static void resolve_interactive(int want, const char *input)
{
	struct tl_run r = run_argv(want, input, OPTS("resolve", env.src, env.tgt));
	tl_run_free(&r);
}

static void assert_trees_equal(void)
{
	char *why = NULL;
	int eq = tl_trees_equal(env.src, env.tgt, &why);
	cr_assert(eq, "trees differ: %s", why ? why : "?");
	free(why);
}

/* A reconcile that must end in sync, trees equal, status clean. */
static void sync_ok(void)
{
	run_check(0, "reconcile", NULL);
	assert_trees_equal();
}

static size_t log_lines(const char *file);

/*
 * Status clean, no conflict recorded, trees equal; and a reconcile finds
 * nothing at all to do (no state-only updates either) and logs nothing.
 */
static void assert_clean(void)
{
	struct tl_run r = run(0, "status", NULL);
	cr_assert(strstr(r.out, "Nothing to do"), "%s", r.out);
	tl_run_free(&r);
	size_t lines = log_lines(env.log);
	r = run(0, "reconcile", NULL);
	cr_assert(strstr(r.out, "Nothing to do"), "%s", r.out);
	tl_run_free(&r);
	cr_assert_eq(log_lines(env.log), lines, "a reconcile with nothing to do wrote to the log");
	r = run(0, "conflicts", NULL);
	cr_assert(strstr(r.out, "No conflicts."), "%s", r.out);
	tl_run_free(&r);
	assert_trees_equal();
}

/* ================================================================ files */

static void assert_content(const char *dir, const char *rel, const char *want)
{
	char *got = tl_read(dir, rel);
	cr_assert(got, "%s/%s: missing (expected \"%s\")", dir, rel, want);
	cr_assert_str_eq(got, want, "%s/%s: \"%s\", expected \"%s\"", dir, rel, got, want);
	free(got);
}

static void assert_absent(const char *dir, const char *rel)
{
	cr_assert(!tl_exists(dir, rel), "%s/%s exists, expected absent", dir, rel);
}

static struct stat lstat_of(const char *dir, const char *rel)
{
	struct stat st;
	char *p = tl_join(dir, rel);
	int r = lstat(p, &st);
	cr_assert_eq(r, 0, "lstat %s: %s", p, strerror(errno));
	free(p);
	return st;
}

static void set_mtime_ns(const char *dir, const char *rel, long sec, long nsec)
{
	char *p = tl_join(dir, rel);
	struct timespec t[2] = { { sec, nsec }, { sec, nsec } };
	cr_assert_eq(utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW), 0, "utimensat %s", p);
	free(p);
}

static void chmod_at(const char *dir, const char *rel, mode_t mode)
{
	char *p = tl_join(dir, rel);
	cr_assert_eq(chmod(p, mode), 0, "chmod %s: %s", p, strerror(errno));
	free(p);
}

static void symlink_at(const char *dir, const char *rel, const char *target)
{
	char *p = tl_join(dir, rel);
	cr_assert_eq(symlink(target, p), 0, "symlink %s: %s", p, strerror(errno));
	free(p);
}

static void assert_link(const char *dir, const char *rel, const char *target)
{
	char buf[4096], *p = tl_join(dir, rel);
	struct stat st;
	cr_assert_eq(lstat(p, &st), 0, "%s missing", p);
	cr_assert(S_ISLNK(st.st_mode), "%s is not a symlink", p);
	ssize_t n = readlink(p, buf, sizeof(buf) - 1);
	cr_assert(n >= 0);
	buf[n] = '\0';
	cr_assert_str_eq(buf, target, "%s -> %s, expected %s", p, buf, target);
	free(p);
}

static void assert_empty_dir(const char *dir, const char *rel)
{
	struct stat st = lstat_of(dir, rel);
	cr_assert(S_ISDIR(st.st_mode), "%s/%s is not a directory", dir, rel);
	char *p = tl_join(dir, rel);
	cr_assert_eq(tl_count(p), 0, "%s is not empty", p);
	free(p);
}

/*
 * Twelve files under keep/, so that deleting a few entries is no "mass
 * deletion"; half on each side, so that neither root is empty (see BUG in
 * empty_directories).
 */
static void filler(void)
{
	char name[32];
	for (int i = 0; i < 12; i++) {
		snprintf(name, sizeof(name), "keep/f%02d.txt", i);
		tl_write(i < 6 ? env.src : env.tgt, name, "filler\n");
	}
}

/*
 * A description of everything under dir: names, types, modes, sizes, mtimes
 * (ns), file contents and link targets. Malloc'd.
 */
static void snap_at(FILE *f, const char *dir, const char *rel)
{
	char *p = rel[0] ? tl_join(dir, rel) : strdup(dir);
	struct dirent **list = NULL;
	int n = scandir(p, &list, NULL, alphasort);
	cr_assert(n >= 0, "scandir %s: %s", p, strerror(errno));
	for (int i = 0; i < n; i++) {
		const char *name = list[i]->d_name;
		if (strcmp(name, ".") && strcmp(name, "..")) {
			char *sub = rel[0] ? tl_join(rel, name) : strdup(name);
			struct stat st = lstat_of(dir, sub);
			fprintf(f, "%s %o %lld %lld.%09ld", sub, (unsigned)st.st_mode,
				(long long)st.st_size, (long long)st.st_mtim.tv_sec,
				(long)st.st_mtim.tv_nsec);
			if (S_ISREG(st.st_mode)) {
				char *c = tl_read(dir, sub);
				fprintf(f, " [%s]", c ? c : "?");
				free(c);
			} else if (S_ISLNK(st.st_mode)) {
				char buf[4096], *lp = tl_join(dir, sub);
				ssize_t k = readlink(lp, buf, sizeof(buf) - 1);
				buf[k < 0 ? 0 : k] = '\0';
				fprintf(f, " -> %s", buf);
				free(lp);
			}
			fputc('\n', f);
			if (S_ISDIR(st.st_mode))
				snap_at(f, dir, sub);
			free(sub);
		}
		free(list[i]);
	}
	free(list);
	free(p);
}

static char *snapshot(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	fprintf(f, "count %zu %zu\n--- source\n", tl_count(env.src), tl_count(env.tgt));
	snap_at(f, env.src, "");
	fputs("--- target\n", f);
	snap_at(f, env.tgt, "");
	fclose(f);
	return buf;
}

/* ================================================================ log */

/* Lines of a log file (0 if it does not exist). */
static size_t log_lines(const char *file)
{
	FILE *f = fopen(file, "r");
	size_t n = 0;
	int c;
	if (!f)
		return 0;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/*
 * Parses every line of the log (each must be one JSON object ending in a
 * newline) and returns how many have `action` (NULL: any; a string ending
 * in '*' matches a prefix) and `path`. *last gets a copy of the last match
 * when last is not NULL (NULL if none).
 */
static size_t log_find(const char *file, const char *action, const char *path, struct jv **last)
{
	size_t n = 0;
	FILE *f = fopen(file, "r");
	if (last)
		*last = NULL;
	if (!f)
		return 0;
	char *line = NULL;
	size_t cap = 0;
	ssize_t got;
	while ((got = getline(&line, &cap, f)) > 0) {
		cr_assert_eq(line[got - 1], '\n', "log line without newline: %s", line);
		struct jv *j = jv_parse(line);
		cr_assert(j && j->t == J_OBJ, "log line is not a JSON object: %s", line);
		const char *a = jv_str(j, "action"), *p = jv_str(j, "path");
		int match = p && !strcmp(p, path) && a;
		if (match && action) {
			size_t al = strlen(action);
			match = action[al - 1] == '*' ? !strncmp(a, action, al - 1) : !strcmp(a, action);
		}
		if (match) {
			n++;
			if (last) {
				jv_free(*last);
				*last = j;
				j = NULL;
			}
		}
		jv_free(j);
	}
	free(line);
	fclose(f);
	return n;
}

/* The single log line for action and path, asserting the common fields. */
static struct jv *log_entry(const char *file, const char *action, const char *path)
{
	struct jv *j;
	size_t n = log_find(file, action, path, &j);
	cr_assert_eq(n, 1, "%zu log lines with action %s for %s in %s", n, action, path, file);
	cr_assert_str_eq(jv_str(j, "result"), "ok");
	cr_assert(jv_get(j, "size"), "log line for %s has no size", path);
	return j;
}

/* ================================================================ conflicts */

/* Parsed `sbfs conflicts --json`, asserting its exit status. */
static struct jv *conflicts_json(int want)
{
	struct tl_run r = run(want, "conflicts", OPTS("--json"));
	struct jv *j = parse_doc(r.out);
	cr_assert(strstr(r.out, "\"conflicts\""));
	const struct jv *l = jv_get(j, "conflicts");
	cr_assert(l && l->t == J_ARR, "no conflicts array: %s", r.out);
	cr_assert_eq(l->n == 0, want == 0, "%s", r.out);
	for (size_t i = 0; i < l->n; i++)
		cr_assert(jv_get(&l->v[i], "suggestion"), "no suggestion key: %s", r.out);
	tl_run_free(&r);
	return j;
}

static size_t conflict_count(const struct jv *doc)
{
	return jv_get(doc, "conflicts")->n;
}

static const struct jv *find_conflict(const struct jv *doc, const char *path)
{
	const struct jv *l = jv_get(doc, "conflicts");
	for (size_t i = 0; l && i < l->n; i++)
		if (jv_str(&l->v[i], "path") && !strcmp(jv_str(&l->v[i], "path"), path))
			return &l->v[i];
	cr_assert_fail("no conflict for %s", path);
	return NULL;
}

static const struct jv *find_conflict_any(const struct jv *doc, const char *p1, const char *p2)
{
	const struct jv *l = jv_get(doc, "conflicts");
	for (size_t i = 0; l && i < l->n; i++) {
		const char *p = jv_str(&l->v[i], "path");
		if (p && (!strcmp(p, p1) || !strcmp(p, p2)))
			return &l->v[i];
	}
	cr_assert_fail("no conflict for %s or %s", p1, p2);
	return NULL;
}

/* Asserts the suggestion of a conflict: "source", "target", or NULL (JSON null). */
static void assert_suggestion(const struct jv *c, const char *want)
{
	const struct jv *s = jv_get(c, "suggestion");
	cr_assert(s, "no suggestion key");
	if (!want) {
		cr_assert_eq(s->t, J_NULL, "suggestion %s, expected null", s->s ? s->s : "?");
	} else {
		cr_assert_eq(s->t, J_STR, "suggestion is not a string");
		cr_assert_str_eq(s->s, want);
	}
}

/*
 * A recorded file `rel` ("base\n" on both sides), then changed on both sides:
 * source gets src_text with mtime src_t, target tgt_text with tgt_t; a
 * reconcile leaves the conflict (exit 1).
 */
static void diverge(const char *rel, const char *src_text, long src_t,
		    const char *tgt_text, long tgt_t)
{
	tl_write(env.src, rel, src_text);
	tl_write(env.tgt, rel, tgt_text);
	set_mtime_ns(env.src, rel, src_t, 0);
	set_mtime_ns(env.tgt, rel, tgt_t, 0);
}

static void make_conflict(const char *rel, const char *src_text, long src_t,
			  const char *tgt_text, long tgt_t)
{
	filler();
	tl_write(env.src, rel, "base\n");
	set_mtime_ns(env.src, rel, T0 - 1000, 0);
	sync_ok();
	diverge(rel, src_text, src_t, tgt_text, tgt_t);
	run_check(1, "reconcile", NULL);
	assert_content(env.src, rel, src_text);
	assert_content(env.tgt, rel, tgt_text);
}

/* ================================================================ first sync */

/* Files, nested directories and symlinks (empty directories: see empty_directories). */
Test(rules, first_sync_one_side_copied)
{
	tl_write(env.src, "a.txt", "A\n");
	tl_write(env.src, "d1/d2/d3/deep.txt", "deep\n");
	symlink_at(env.src, "ln_rel", "a.txt");
	symlink_at(env.src, "ln_dangling", "no/such/target");
	tl_write(env.tgt, "b.txt", "B\n");
	tl_write(env.tgt, "t1/t2/t.txt", "t\n");
	symlink_at(env.tgt, "t1/ln_abs", "/nonexistent/abs/path");

	sync_ok();
	for (int s = 0; s < 2; s++) {
		const char *d = s ? env.tgt : env.src;
		assert_content(d, "a.txt", "A\n");
		assert_content(d, "d1/d2/d3/deep.txt", "deep\n");
		assert_content(d, "b.txt", "B\n");
		assert_content(d, "t1/t2/t.txt", "t\n");
		cr_assert(S_ISDIR(lstat_of(d, "d1/d2").st_mode));
		assert_link(d, "ln_rel", "a.txt");
		assert_link(d, "ln_dangling", "no/such/target");
		assert_link(d, "t1/ln_abs", "/nonexistent/abs/path");
	}
	cr_assert_eq(tl_count(env.src), 12);
	cr_assert_eq(log_find(env.log, "delete*", "a.txt", NULL), 0);
	assert_clean();
}

Test(rules, first_sync_never_infers_deletion)
{
	/* No record: what one side lacks is copied to it, never deleted from the other
	 * (a wholly empty side: see empty_directories). */
	tl_write(env.src, "one.txt", "1\n");
	tl_write(env.src, "dir/two.txt", "2\n");
	tl_write(env.src, "dir/sub/three.txt", "3\n");
	tl_write(env.tgt, "unrelated.txt", "u\n");
	sync_ok();
	assert_content(env.tgt, "one.txt", "1\n");
	assert_content(env.tgt, "dir/two.txt", "2\n");
	assert_content(env.tgt, "dir/sub/three.txt", "3\n");
	assert_content(env.src, "one.txt", "1\n");
	assert_content(env.src, "unrelated.txt", "u\n");
	cr_assert_eq(log_find(env.log, "delete*", "one.txt", NULL), 0);
	cr_assert_eq(log_find(env.log, "delete*", "dir/two.txt", NULL), 0);
	cr_assert_eq(log_find(env.log, "delete*", "unrelated.txt", NULL), 0);
	cr_assert_eq(log_find(env.log, "copy-to-target", "one.txt", NULL), 1);
	cr_assert_eq(log_find(env.log, "copy-to-source", "unrelated.txt", NULL), 1);
	assert_clean();
}

Test(rules, first_sync_identical_not_copied)
{
	tl_write(env.src, "same.txt", "same content\n");
	tl_write(env.tgt, "same.txt", "same content\n");
	set_mtime_ns(env.src, "same.txt", T0, 0);
	set_mtime_ns(env.tgt, "same.txt", T0, 0);
	/* Same content, different mtimes: still nothing to copy. */
	tl_write(env.src, "dir/same2.txt", "also same\n");
	tl_write(env.tgt, "dir/same2.txt", "also same\n");
	set_mtime_ns(env.src, "dir/same2.txt", T0, 0);
	set_mtime_ns(env.tgt, "dir/same2.txt", T0 + 100, 0);
	tl_write(env.src, "new.txt", "new\n");
	struct stat before = lstat_of(env.tgt, "same.txt");

	sync_ok();
	cr_assert_eq(log_find(env.log, "copy-to-target", "new.txt", NULL), 1);
	cr_assert_eq(log_find(env.log, "copy*", "same.txt", NULL), 0);
	cr_assert_eq(log_find(env.log, "update*", "same.txt", NULL), 0);
	cr_assert_eq(log_find(env.log, "copy*", "dir/same2.txt", NULL), 0);
	cr_assert_eq(log_find(env.log, "update*", "dir/same2.txt", NULL), 0);
	struct stat after = lstat_of(env.tgt, "same.txt");
	cr_assert_eq(before.st_ino, after.st_ino, "same.txt was replaced");
	assert_content(env.src, "same.txt", "same content\n");
	assert_content(env.tgt, "same.txt", "same content\n");
	assert_clean();
}

Test(rules, first_sync_different_is_conflict)
{
	tl_write(env.src, "c.txt", "source version\n");
	tl_write(env.tgt, "c.txt", "target\n");
	set_mtime_ns(env.src, "c.txt", T0 + 100, 0);
	set_mtime_ns(env.tgt, "c.txt", T0, 0);
	tl_write(env.src, "ok.txt", "fine\n");

	struct tl_run r = run(1, "reconcile", NULL);
	tl_run_free(&r);
	assert_content(env.src, "c.txt", "source version\n");
	assert_content(env.tgt, "c.txt", "target\n");
	cr_assert_eq(lstat_of(env.src, "c.txt").st_mtim.tv_sec, T0 + 100);
	cr_assert_eq(lstat_of(env.tgt, "c.txt").st_mtim.tv_sec, T0);
	assert_content(env.tgt, "ok.txt", "fine\n");

	r = run(1, "conflicts", NULL);
	cr_assert(strstr(r.out, "c.txt"), "%s", r.out);
	cr_assert(strstr(r.out, "Suggested: source"), "%s", r.out);
	tl_run_free(&r);

	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	const struct jv *c = find_conflict(j, "c.txt");
	cr_assert_str_eq(jv_str(c, "kind"), "content");
	assert_suggestion(c, "source");
	cr_assert_eq(jv_int(jv_get(c, "source"), "size"), 15);
	cr_assert_eq(jv_int(jv_get(c, "target"), "size"), 7);
	cr_assert_str_eq(jv_str(jv_get(c, "source"), "type"), "file");
	cr_assert_eq(jv_int(jv_get(c, "target"), "mtime_ns"), T0 * 1000000000LL);
	jv_free(j);

	run_check(1, "status", NULL);
	/* Still a conflict on the next run; nothing touched. */
	run_check(1, "reconcile", NULL);
	assert_content(env.src, "c.txt", "source version\n");
	assert_content(env.tgt, "c.txt", "target\n");
}

/* ================================================================ with a record */

/* A synced tree: filler, doc.txt and other.txt on both sides. */
static void base_tree(void)
{
	filler();
	tl_write(env.src, "doc.txt", "version 1\n");
	tl_write(env.src, "other.txt", "other\n");
	set_mtime_ns(env.src, "doc.txt", T0, 0);
	set_mtime_ns(env.src, "other.txt", T0, 0);
	sync_ok();
}

Test(rules, modified_on_source_carried)
{
	base_tree();
	tl_write(env.src, "doc.txt", "version 2 longer\n");
	sync_ok();
	assert_content(env.tgt, "doc.txt", "version 2 longer\n");
	assert_content(env.tgt, "other.txt", "other\n");
	struct jv *l = log_entry(env.log, "update-target", "doc.txt");
	jv_free(l);
	assert_clean();
}

Test(rules, modified_on_target_carried)
{
	base_tree();
	/* Same size as before: the content must be compared, not only the size. */
	tl_write(env.tgt, "doc.txt", "version 2\n");
	sync_ok();
	assert_content(env.src, "doc.txt", "version 2\n");
	struct jv *l = log_entry(env.log, "update-source", "doc.txt");
	jv_free(l);
	assert_clean();
}

Test(rules, created_on_source_carried)
{
	base_tree();
	tl_write(env.src, "new/deeper/n.txt", "n\n");
	symlink_at(env.src, "new/link", "deeper/n.txt");
	sync_ok();
	assert_content(env.tgt, "new/deeper/n.txt", "n\n");
	assert_link(env.tgt, "new/link", "deeper/n.txt");
	assert_clean();
}

Test(rules, created_on_target_carried)
{
	base_tree();
	tl_write(env.tgt, "tnew/n.txt", "tn\n");
	symlink_at(env.tgt, "tnew/ln", "/abs/target");
	sync_ok();
	assert_content(env.src, "tnew/n.txt", "tn\n");
	assert_link(env.src, "tnew/ln", "/abs/target");
	assert_clean();
}

Test(rules, deleted_on_source_carried)
{
	base_tree();
	tl_rm(env.src, "doc.txt");
	sync_ok();
	assert_absent(env.tgt, "doc.txt");
	assert_absent(env.src, "doc.txt");
	assert_content(env.tgt, "other.txt", "other\n");
	struct jv *l = log_entry(env.log, "delete-in-target", "doc.txt");
	jv_free(l);
	assert_clean();
}

Test(rules, deleted_on_target_carried)
{
	base_tree();
	tl_rm(env.tgt, "doc.txt");
	sync_ok();
	assert_absent(env.src, "doc.txt");
	assert_content(env.src, "other.txt", "other\n");
	struct jv *l = log_entry(env.log, "delete-in-source", "doc.txt");
	jv_free(l);
	assert_clean();
}

Test(rules, mode_change_carried)
{
	base_tree();
	tl_write(env.src, "d/f.txt", "f\n");
	sync_ok();
	chmod_at(env.src, "doc.txt", 0600);
	chmod_at(env.tgt, "other.txt", 0755);
	chmod_at(env.src, "d", 0700);
	sync_ok();
	cr_assert_eq(lstat_of(env.tgt, "doc.txt").st_mode & 07777, 0600);
	cr_assert_eq(lstat_of(env.src, "other.txt").st_mode & 07777, 0755);
	cr_assert_eq(lstat_of(env.tgt, "d").st_mode & 07777, 0700);
	assert_content(env.tgt, "doc.txt", "version 1\n");
	assert_content(env.src, "other.txt", "other\n");
	cr_assert_eq(lstat_of(env.tgt, "doc.txt").st_mtim.tv_sec, T0);
	assert_clean();
}

Test(rules, mtime_only_change_carried)
{
	base_tree();
	ino_t ino_t_doc = lstat_of(env.tgt, "doc.txt").st_ino;
	ino_t ino_s_other = lstat_of(env.src, "other.txt").st_ino;
	/* touch -d: same content, new mtime, on each side. */
	set_mtime_ns(env.src, "doc.txt", T0 - 86400, 250000000);
	set_mtime_ns(env.tgt, "other.txt", T0 + 86400, 0);
	sync_ok();
	struct stat st = lstat_of(env.tgt, "doc.txt");
	cr_assert_eq(st.st_mtim.tv_sec, T0 - 86400);
	cr_assert_eq(st.st_mtim.tv_nsec, 250000000);
	cr_assert_eq(lstat_of(env.src, "other.txt").st_mtim.tv_sec, T0 + 86400);
	assert_content(env.tgt, "doc.txt", "version 1\n");
	assert_content(env.src, "other.txt", "other\n");
	/* Carried as metadata, not as a copy of the content. */
	cr_assert_eq(log_find(env.log, "update*", "doc.txt", NULL), 0);
	cr_assert_eq(log_find(env.log, "update*", "other.txt", NULL), 0);
	cr_assert_eq(log_find(env.log, "metadata-to-target", "doc.txt", NULL), 1);
	cr_assert_eq(log_find(env.log, "metadata-to-source", "other.txt", NULL), 1);
	cr_assert_eq(st.st_ino, ino_t_doc, "doc.txt was rewritten in the target");
	cr_assert_eq(lstat_of(env.src, "other.txt").st_ino, ino_s_other);
	assert_clean();
}

Test(rules, changed_both_same_content_no_conflict)
{
	base_tree();
	tl_write(env.src, "doc.txt", "converged\n");
	tl_write(env.tgt, "doc.txt", "converged\n");
	set_mtime_ns(env.src, "doc.txt", T0 + 100, 0);
	set_mtime_ns(env.tgt, "doc.txt", T0 + 500, 0);
	sync_ok();
	assert_content(env.src, "doc.txt", "converged\n");
	assert_content(env.tgt, "doc.txt", "converged\n");
	/* The newer mtime wins for metadata. */
	cr_assert_eq(lstat_of(env.src, "doc.txt").st_mtim.tv_sec, T0 + 500);
	cr_assert_eq(lstat_of(env.tgt, "doc.txt").st_mtim.tv_sec, T0 + 500);
	cr_assert_eq(log_find(env.log, "update*", "doc.txt", NULL), 0);
	cr_assert_eq(log_find(env.log, "conflict", "doc.txt", NULL), 0);
	assert_clean();
}

Test(rules, deleted_both_no_conflict)
{
	base_tree();
	tl_rm(env.src, "doc.txt");
	tl_rm(env.tgt, "doc.txt");
	sync_ok();
	assert_absent(env.src, "doc.txt");
	assert_absent(env.tgt, "doc.txt");
	assert_clean();
	/* Forgotten: recreating it on one side is a plain copy. */
	tl_write(env.tgt, "doc.txt", "again\n");
	sync_ok();
	assert_content(env.src, "doc.txt", "again\n");
}

Test(rules, changed_both_differently_conflict)
{
	make_conflict("doc.txt", "source edit\n", T0 + 10, "target edit, longer\n", T0 + 20);
	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	const struct jv *c = find_conflict(j, "doc.txt");
	cr_assert_str_eq(jv_str(c, "kind"), "content");
	assert_suggestion(c, "target");
	jv_free(j);
	run_check(1, "status", NULL);
	cr_assert_eq(log_find(env.log, "update*", "doc.txt", NULL), 0);
}

Test(rules, modified_deleted_conflict)
{
	filler();
	tl_write(env.src, "m1.txt", "m1\n");
	tl_write(env.src, "m2.txt", "m2\n");
	sync_ok();
	tl_write(env.src, "m1.txt", "m1 modified\n");
	tl_rm(env.tgt, "m1.txt");
	tl_write(env.tgt, "m2.txt", "m2 modified\n");
	tl_rm(env.src, "m2.txt");

	run_check(1, "reconcile", NULL);
	assert_content(env.src, "m1.txt", "m1 modified\n");
	assert_absent(env.tgt, "m1.txt");
	assert_content(env.tgt, "m2.txt", "m2 modified\n");
	assert_absent(env.src, "m2.txt");

	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 2);
	const struct jv *c = find_conflict(j, "m1.txt");
	cr_assert_str_eq(jv_str(c, "kind"), "modified-deleted");
	assert_suggestion(c, "source");
	cr_assert_eq(jv_get(c, "target")->t, J_NULL);
	cr_assert_eq(jv_get(c, "source")->t, J_OBJ);
	c = find_conflict(j, "m2.txt");
	cr_assert_str_eq(jv_str(c, "kind"), "modified-deleted");
	assert_suggestion(c, "target");
	cr_assert_eq(jv_get(c, "source")->t, J_NULL);
	jv_free(j);
	run_check(1, "status", NULL);
}

Test(rules, file_against_directory_type_conflict)
{
	base_tree();
	tl_write(env.src, "doc.txt", "source changed the file\n");
	tl_rm(env.tgt, "doc.txt");
	tl_write(env.tgt, "doc.txt/inner.txt", "inner\n");

	run_check(1, "reconcile", NULL);
	cr_assert(S_ISREG(lstat_of(env.src, "doc.txt").st_mode));
	assert_content(env.src, "doc.txt", "source changed the file\n");
	cr_assert(S_ISDIR(lstat_of(env.tgt, "doc.txt").st_mode));
	assert_content(env.tgt, "doc.txt/inner.txt", "inner\n");
	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	const struct jv *c = find_conflict(j, "doc.txt");
	cr_assert_str_eq(jv_str(c, "kind"), "type");
	cr_assert_str_eq(jv_str(jv_get(c, "source"), "type"), "file");
	cr_assert_str_eq(jv_str(jv_get(c, "target"), "type"), "directory");
	jv_free(j);
}

Test(rules, file_against_directory_first_sync)
{
	tl_write(env.src, "y", "a file\n");
	tl_write(env.tgt, "y/child.txt", "child\n");
	run_check(1, "reconcile", NULL);
	assert_content(env.src, "y", "a file\n");
	assert_content(env.tgt, "y/child.txt", "child\n");
	struct jv *j = conflicts_json(1);
	cr_assert_str_eq(jv_str(find_conflict(j, "y"), "kind"), "type");
	jv_free(j);
}

/* A recorded directory d with unchanged content, for the deleted-directory rule. */
static void dir_tree(void)
{
	filler();
	tl_write(env.src, "d/a.txt", "a\n");
	tl_write(env.src, "d/b.txt", "b\n");
	tl_write(env.src, "d/sub/c.txt", "c\n");
	tl_write(env.src, "d/sub2/e.txt", "e\n");
	sync_ok();
}

Test(rules, directory_deleted_on_source)
{
	dir_tree();
	tl_rm(env.src, "d");
	tl_write(env.tgt, "d/sub/c.txt", "c modified on target\n");
	tl_write(env.tgt, "d/new/n.txt", "created on target\n");

	run_check(1, "reconcile", NULL);
	/* Unchanged entries go; the changed and created ones stay, with their parents. */
	assert_absent(env.tgt, "d/a.txt");
	assert_absent(env.tgt, "d/b.txt");
	assert_absent(env.tgt, "d/sub2");
	assert_content(env.tgt, "d/sub/c.txt", "c modified on target\n");
	assert_content(env.tgt, "d/new/n.txt", "created on target\n");
	assert_absent(env.src, "d");
	assert_content(env.tgt, "keep/f00.txt", "filler\n");

	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 2);
	const struct jv *c = find_conflict(j, "d/sub/c.txt");
	const char *k = jv_str(c, "kind");
	cr_assert(!strcmp(k, "under-deleted-directory") || !strcmp(k, "modified-deleted"), "%s", k);
	assert_suggestion(c, "target");
	/* The created subtree is one conflict, at its top or at the file. */
	c = find_conflict_any(j, "d/new", "d/new/n.txt");
	cr_assert_str_eq(jv_str(c, "kind"), "under-deleted-directory");
	assert_suggestion(c, "target");
	jv_free(j);
	run_check(1, "status", NULL);
}

Test(rules, directory_deleted_on_target)
{
	dir_tree();
	tl_rm(env.tgt, "d");
	tl_write(env.src, "d/sub2/e.txt", "e modified on source\n");

	run_check(1, "reconcile", NULL);
	assert_absent(env.src, "d/a.txt");
	assert_absent(env.src, "d/b.txt");
	assert_absent(env.src, "d/sub");
	assert_content(env.src, "d/sub2/e.txt", "e modified on source\n");
	assert_absent(env.tgt, "d");
	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	assert_suggestion(find_conflict(j, "d/sub2/e.txt"), "source");
	jv_free(j);
}

Test(rules, directory_deleted_all_unchanged)
{
	dir_tree();
	tl_rm(env.src, "d");
	sync_ok();
	assert_absent(env.tgt, "d");
	assert_clean();
}

/* ================================================================ suggestions */

/* A conflict between src_text at src_t and tgt_text at tgt_t; checks the suggestion. */
static void suggestion_case(const char *src_text, long src_t, const char *tgt_text,
			    long tgt_t, const char *want)
{
	make_conflict("s.txt", src_text, src_t, tgt_text, tgt_t);
	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	assert_suggestion(find_conflict(j, "s.txt"), want);
	jv_free(j);
	struct tl_run r = run(1, "conflicts", NULL);
	char line[64];
	snprintf(line, sizeof(line), "Suggested: %s", want ? want : "none");
	cr_assert(strstr(r.out, line), "expected \"%s\" in:\n%s", line, r.out);
	tl_run_free(&r);
}

Test(rules, suggest_later_and_larger)
{
	suggestion_case("src\n", T0, "target is later and larger\n", T0 + 3600, "target");
}

Test(rules, suggest_later_and_smaller)
{
	suggestion_case("sm\n", T0 + 3600, "target is earlier and larger\n", T0, "source");
}

Test(rules, suggest_same_time_larger)
{
	/* One second apart is "the same time": the larger (source) wins, not the later. */
	suggestion_case("source is the larger one\n", T0, "tgt\n", T0 + 1, "source");
}

Test(rules, suggest_same_time_same_size_none)
{
	suggestion_case("aaaa\n", T0 + 1, "bbbb\n", T0, NULL);
}

/* ================================================================ resolutions */

/* After a resolution: nothing recorded, nothing pending, trees equal. */
static void assert_resolved(void)
{
	struct jv *j = conflicts_json(0);
	jv_free(j);
	assert_clean();
}

Test(rules, auto_resolve_source)
{
	/* Target is newer and larger (suggested), yet source wins. */
	make_conflict("c.txt", "src\n", T0, "target version\n", T0 + 100);
	run_check(0, "reconcile", OPTS("--auto-resolve", "source"));
	assert_content(env.src, "c.txt", "src\n");
	assert_content(env.tgt, "c.txt", "src\n");
	cr_assert_eq(lstat_of(env.tgt, "c.txt").st_mtim.tv_sec, T0);
	assert_resolved();
}

Test(rules, auto_resolve_target)
{
	make_conflict("c.txt", "source version\n", T0 + 100, "tgt\n", T0);
	run_check(0, "reconcile", OPTS("--auto-resolve", "target"));
	assert_content(env.src, "c.txt", "tgt\n");
	assert_content(env.tgt, "c.txt", "tgt\n");
	cr_assert_eq(lstat_of(env.src, "c.txt").st_mtim.tv_sec, T0);
	assert_resolved();
}

Test(rules, auto_resolve_newer)
{
	filler();
	tl_write(env.src, "a.txt", "a\n");
	tl_write(env.src, "b.txt", "b\n");
	tl_write(env.src, "e.txt", "e\n");
	sync_ok();
	/* a: source newer (smaller); b: target newer (smaller); e: same mtime. */
	tl_write(env.src, "a.txt", "a src\n");
	tl_write(env.tgt, "a.txt", "a target longer\n");
	set_mtime_ns(env.src, "a.txt", T0 + 1, 0);
	set_mtime_ns(env.tgt, "a.txt", T0, 0);
	tl_write(env.src, "b.txt", "b source longer\n");
	tl_write(env.tgt, "b.txt", "b tgt\n");
	set_mtime_ns(env.src, "b.txt", T0, 0);
	set_mtime_ns(env.tgt, "b.txt", T0 + 1, 0);
	tl_write(env.src, "e.txt", "e src\n");
	tl_write(env.tgt, "e.txt", "e tgt\n");
	set_mtime_ns(env.src, "e.txt", T0, 0);
	set_mtime_ns(env.tgt, "e.txt", T0, 0);

	run_check(1, "reconcile", OPTS("--auto-resolve", "newer"));
	assert_content(env.tgt, "a.txt", "a src\n");
	assert_content(env.src, "a.txt", "a src\n");
	assert_content(env.src, "b.txt", "b tgt\n");
	assert_content(env.tgt, "b.txt", "b tgt\n");
	assert_content(env.src, "e.txt", "e src\n");
	assert_content(env.tgt, "e.txt", "e tgt\n");
	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	find_conflict(j, "e.txt");
	jv_free(j);
	run_check(1, "status", NULL);
}

Test(rules, auto_resolve_suggested)
{
	filler();
	tl_write(env.src, "a.txt", "a\n");
	tl_write(env.src, "b.txt", "b\n");
	tl_write(env.src, "e.txt", "e\n");
	sync_ok();
	/* a: source later (suggested); b: same time, target larger; e: no suggestion. */
	tl_write(env.src, "a.txt", "a src\n");
	tl_write(env.tgt, "a.txt", "a target longer\n");
	set_mtime_ns(env.src, "a.txt", T0 + 60, 0);
	set_mtime_ns(env.tgt, "a.txt", T0, 0);
	tl_write(env.src, "b.txt", "b src\n");
	tl_write(env.tgt, "b.txt", "b target longer\n");
	set_mtime_ns(env.src, "b.txt", T0 + 1, 0);
	set_mtime_ns(env.tgt, "b.txt", T0, 0);
	tl_write(env.src, "e.txt", "e src\n");
	tl_write(env.tgt, "e.txt", "e tgt\n");
	set_mtime_ns(env.src, "e.txt", T0, 0);
	set_mtime_ns(env.tgt, "e.txt", T0, 0);

	run_check(1, "reconcile", OPTS("--auto-resolve", "suggested"));
	assert_content(env.tgt, "a.txt", "a src\n");
	assert_content(env.src, "b.txt", "b target longer\n");
	assert_content(env.tgt, "b.txt", "b target longer\n");
	assert_content(env.src, "e.txt", "e src\n");
	assert_content(env.tgt, "e.txt", "e tgt\n");
	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	find_conflict(j, "e.txt");
	jv_free(j);
}


/* `sbfs resolve FLAG SRC TGT PATH...` */
static void resolve_paths(int want, const char *flag, const char *path)
{
	struct tl_run r = run_argv(want, NULL, OPTS("resolve", flag, env.src, env.tgt, path));
	tl_run_free(&r);
}

Test(rules, resolve_path_source)
{
	filler();
	tl_write(env.src, "c.txt", "base\n");
	tl_write(env.src, "other.txt", "base\n");
	sync_ok();
	diverge("c.txt", "src\n", T0, "target version\n", T0 + 100);
	diverge("other.txt", "o src\n", T0, "o tgt\n", T0);
	run_check(1, "reconcile", NULL);
	/* other.txt is left; whether that makes the exit 0 or 1 is not specified. */
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("resolve", "--source", env.src, env.tgt, "c.txt"));
	cr_assert(r.status == 0 || r.status == 1, "exit %d\n%s%s", r.status, r.out, r.err);
	tl_run_free(&r);
	assert_content(env.src, "c.txt", "src\n");
	assert_content(env.tgt, "c.txt", "src\n");
	assert_content(env.src, "other.txt", "o src\n");
	assert_content(env.tgt, "other.txt", "o tgt\n");
	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	find_conflict(j, "other.txt");
	jv_free(j);
	resolve_paths(0, "--source", "other.txt");
	assert_content(env.tgt, "other.txt", "o src\n");
	assert_resolved();
}

Test(rules, resolve_path_target)
{
	make_conflict("dir/c.txt", "source version\n", T0 + 100, "tgt\n", T0);
	/* An absolute path inside the source root names the same entry. */
	char *abs = tl_join(env.src, "dir/c.txt");
	resolve_paths(0, "--target", abs);
	free(abs);
	assert_content(env.src, "dir/c.txt", "tgt\n");
	assert_content(env.tgt, "dir/c.txt", "tgt\n");
	assert_resolved();
}

/*
 * The one NAME.target-YYYYMMDD-HHMMSS.EXT beside `name` in root/dir, its
 * stamp being the target version's mtime t (local time or UTC). Malloc'd.
 */
static char *kept_name(const char *root, const char *dir, const char *stem,
		       const char *ext, long t)
{
	char pat[256], *p = tl_join(root, dir), *found = NULL;
	regex_t re;
	regmatch_t m[2];
	struct dirent **list = NULL;
	snprintf(pat, sizeof(pat), "^%s\\.target-([0-9]{8}-[0-9]{6})\\.%s$", stem, ext);
	cr_assert_eq(regcomp(&re, pat, REG_EXTENDED), 0);
	int n = scandir(p, &list, NULL, alphasort);
	cr_assert(n >= 0, "scandir %s", p);
	size_t hits = 0;
	for (int i = 0; i < n; i++) {
		if (regexec(&re, list[i]->d_name, 2, m, 0) == 0) {
			hits++;
			free(found);
			found = strdup(list[i]->d_name);
			char stamp[32], loc[32], utc[32];
			struct tm tm;
			time_t tt = t;
			snprintf(stamp, sizeof(stamp), "%.*s", (int)(m[1].rm_eo - m[1].rm_so),
				 list[i]->d_name + m[1].rm_so);
			strftime(loc, sizeof(loc), "%Y%m%d-%H%M%S", localtime_r(&tt, &tm));
			strftime(utc, sizeof(utc), "%Y%m%d-%H%M%S", gmtime_r(&tt, &tm));
			cr_assert(!strcmp(stamp, loc) || !strcmp(stamp, utc),
				  "%s: stamp %s, expected %s or %s", list[i]->d_name, stamp, loc, utc);
		}
		free(list[i]);
	}
	free(list);
	regfree(&re);
	cr_assert_eq(hits, 1, "%zu names matching %s in %s", hits, pat, p);
	free(p);
	return found;
}

/* After keep-both of dir/report.txt: both versions on both sides. */
static void assert_kept_both(const char *src_text, const char *tgt_text, long tgt_t)
{
	char *ns = kept_name(env.src, "notes", "report", "txt", tgt_t);
	char *nt = kept_name(env.tgt, "notes", "report", "txt", tgt_t);
	cr_assert_str_eq(ns, nt);
	char *rel = tl_join("notes", ns);
	assert_content(env.src, rel, tgt_text);
	assert_content(env.tgt, rel, tgt_text);
	assert_content(env.src, "notes/report.txt", src_text);
	assert_content(env.tgt, "notes/report.txt", src_text);
	char *d = tl_join(env.src, "notes");
	cr_assert_eq(tl_count(d), 2);
	free(d);
	free(rel);
	free(ns);
	free(nt);
	assert_resolved();
}

Test(rules, resolve_path_keep_both)
{
	make_conflict("notes/report.txt", "source report\n", T0 + 100, "target report\n", T0);
	resolve_paths(0, "--keep-both", "notes/report.txt");
	assert_kept_both("source report\n", "target report\n", T0);
}

/* The flag may follow the operands, as in `sbfs resolve SRC TGT PATH --source`. */
Test(rules, resolve_flag_after_paths)
{
	make_conflict("c.txt", "src\n", T0, "target version\n", T0 + 100);
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("resolve", env.src, env.tgt, "c.txt", "--source"));
	cr_assert(r.status == 0 || r.status == 2, "exit %d\n%s%s", r.status, r.out, r.err);
	int st = r.status;
	tl_run_free(&r);
	if (st == 2)
		return;
	assert_content(env.tgt, "c.txt", "src\n");
	assert_resolved();
}

Test(rules, resolve_interactive_source)
{
	/* The suggestion is target: "s" must override it. */
	make_conflict("c.txt", "src\n", T0, "target version\n", T0 + 100);
	resolve_interactive(0, "s\n");
	assert_content(env.src, "c.txt", "src\n");
	assert_content(env.tgt, "c.txt", "src\n");
	assert_resolved();
}

Test(rules, resolve_interactive_target)
{
	make_conflict("c.txt", "source version\n", T0 + 100, "tgt\n", T0);
	struct tl_run r = run_argv(0, "t\n", OPTS("resolve", env.src, env.tgt));
	cr_assert(strstr(r.out, "c.txt"), "%s", r.out);
	cr_assert(strstr(r.out, "[s]ource wins"), "%s", r.out);
	cr_assert(strstr(r.out, "Enter = source"), "%s", r.out);
	tl_run_free(&r);
	assert_content(env.src, "c.txt", "tgt\n");
	assert_content(env.tgt, "c.txt", "tgt\n");
	assert_resolved();
}

Test(rules, resolve_interactive_keep_both)
{
	make_conflict("notes/report.txt", "source report\n", T0, "target report, longer\n", T0 + 7);
	resolve_interactive(0, "k\n");
	assert_kept_both("source report\n", "target report, longer\n", T0 + 7);
}

Test(rules, resolve_interactive_skip)
{
	make_conflict("c.txt", "src\n", T0, "target version\n", T0 + 100);
	resolve_interactive(1, "skip\n");
	assert_content(env.src, "c.txt", "src\n");
	assert_content(env.tgt, "c.txt", "target version\n");
	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	find_conflict(j, "c.txt");
	jv_free(j);
	run_check(1, "status", NULL);
	/* Still resolvable afterwards. */
	resolve_interactive(0, "s\n");
	assert_resolved();
}

Test(rules, resolve_interactive_enter_takes_suggestion)
{
	/* Suggested: target (later and larger). */
	make_conflict("c.txt", "src\n", T0, "target version\n", T0 + 100);
	resolve_interactive(0, "\n");
	assert_content(env.src, "c.txt", "target version\n");
	assert_content(env.tgt, "c.txt", "target version\n");
	assert_resolved();
}

/* ================================================================ dry run */

/* Runs a read-only command and asserts it changed nothing on disk or in the log. */
static void assert_read_only(int want, const char *cmd, const char *const *opts)
{
	char *before = snapshot();
	size_t lines = log_lines(env.log);
	run_check(want, cmd, opts);
	char *after = snapshot();
	cr_assert_str_eq(after, before, "%s changed the trees", cmd);
	cr_assert_eq(log_lines(env.log), lines, "%s wrote to the log", cmd);
	free(before);
	free(after);
}

Test(rules, dry_run_first_sync_changes_nothing)
{
	tl_write(env.src, "s.txt", "s\n");
	tl_write(env.src, "sd/deep.txt", "deep\n");
	tl_write(env.tgt, "t.txt", "t\n");
	tl_write(env.src, "c.txt", "source\n");
	tl_write(env.tgt, "c.txt", "target\n");
	assert_read_only(1, "reconcile", OPTS("-n"));
	assert_read_only(1, "reconcile", OPTS("--dry-run"));
	assert_read_only(1, "status", NULL);
	cr_assert_eq(tl_count(env.tgt), 2);
	/* No conflict was recorded either. */
	struct jv *j = conflicts_json(0);
	jv_free(j);

	/* The real run still does all of it. */
	run_check(1, "reconcile", NULL);
	assert_content(env.tgt, "s.txt", "s\n");
	assert_content(env.tgt, "sd/deep.txt", "deep\n");
	assert_content(env.src, "t.txt", "t\n");
	cr_assert_eq(log_find(env.log, "copy-to-target", "s.txt", NULL), 1);
	cr_assert_eq(log_find(env.log, "copy-to-source", "t.txt", NULL), 1);
	j = conflicts_json(1);
	find_conflict(j, "c.txt");
	jv_free(j);
}

Test(rules, dry_run_with_record_changes_nothing)
{
	base_tree();
	tl_write(env.src, "new.txt", "new\n");
	tl_write(env.tgt, "doc.txt", "target edit\n");
	tl_rm(env.src, "other.txt");
	chmod_at(env.src, "keep/f01.txt", 0600);
	set_mtime_ns(env.tgt, "keep/f02.txt", T0 + 5, 0);
	tl_write(env.src, "keep/f03.txt", "source edit\n");
	tl_write(env.tgt, "keep/f03.txt", "target edit!\n");

	for (int round = 0; round < 2; round++) {
		assert_read_only(1, "reconcile", OPTS("-n"));
		assert_read_only(1, "status", NULL);
		assert_read_only(1, "status", OPTS("--json"));
		assert_read_only(1, "reconcile", OPTS("--dry-run", "--json"));
	}
	struct jv *j = conflicts_json(0);
	jv_free(j);

	run_check(1, "reconcile", NULL);
	assert_content(env.tgt, "new.txt", "new\n");
	assert_content(env.src, "doc.txt", "target edit\n");
	assert_absent(env.tgt, "other.txt");
	cr_assert_eq(lstat_of(env.tgt, "keep/f01.txt").st_mode & 07777, 0600);
	cr_assert_eq(lstat_of(env.src, "keep/f02.txt").st_mtim.tv_sec, T0 + 5);
	cr_assert_eq(log_find(env.log, "copy-to-target", "new.txt", NULL), 1);
	cr_assert_eq(log_find(env.log, "update-source", "doc.txt", NULL), 1);
	cr_assert_eq(log_find(env.log, "delete-in-target", "other.txt", NULL), 1);
	j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	find_conflict(j, "keep/f03.txt");
	jv_free(j);
}

Test(rules, dry_run_in_sync_exit_0)
{
	base_tree();
	struct tl_run r = run(0, "reconcile", OPTS("-n"));
	cr_assert(strstr(r.out, "Nothing to do"), "%s", r.out);
	tl_run_free(&r);
	assert_read_only(0, "reconcile", OPTS("--dry-run"));
	assert_read_only(0, "status", NULL);
}

Test(rules, status_json)
{
	filler();
	tl_write(env.src, "y.txt", "y\n");
	sync_ok();
	tl_write(env.src, "x.txt", "hello\n");
	tl_write(env.src, "y.txt", "y source\n");
	tl_write(env.tgt, "y.txt", "y target, longer\n");
	set_mtime_ns(env.src, "y.txt", T0, 0);
	set_mtime_ns(env.tgt, "y.txt", T0 + 100, 0);

	struct tl_run r = run(1, "status", OPTS("--json"));
	cr_assert(!strstr(r.out, "Scanning"), "human text in JSON output:\n%s", r.out);
	struct jv *j = parse_doc(r.out);
	tl_run_free(&r);
	cr_assert_eq(j->t, J_OBJ);
	const struct jv *v = jv_get(j, "in_sync");
	cr_assert(v && v->t == J_BOOL && !v->b);
	const struct jv *sum = jv_get(j, "summary");
	cr_assert(sum && sum->t == J_OBJ);
	cr_assert_eq(jv_int(sum, "copy_to_target"), 1);
	cr_assert_eq(jv_int(sum, "copy_to_source"), 0);
	cr_assert_eq(jv_int(sum, "conflicts"), 1);
	cr_assert_eq(jv_int(sum, "total_changes"), 1);
	const struct jv *acts = jv_get(j, "actions");
	cr_assert(acts && acts->t == J_ARR && acts->n == 1);
	cr_assert_str_eq(jv_str(&acts->v[0], "action"), "copy-to-target");
	cr_assert_str_eq(jv_str(&acts->v[0], "path"), "x.txt");
	cr_assert_str_eq(jv_str(&acts->v[0], "type"), "file");
	cr_assert_eq(jv_int(&acts->v[0], "size"), 6);
	const struct jv *cs = jv_get(j, "conflicts");
	cr_assert(cs && cs->t == J_ARR && cs->n == 1);
	cr_assert_str_eq(jv_str(&cs->v[0], "path"), "y.txt");
	cr_assert_str_eq(jv_str(&cs->v[0], "kind"), "content");
	assert_suggestion(&cs->v[0], "target");
	cr_assert_str_eq(jv_str(j, "source"), env.src);
	cr_assert_str_eq(jv_str(j, "target"), env.tgt);
	jv_free(j);

	/* The same document from a dry run. */
	r = run(1, "reconcile", OPTS("-n", "--json"));
	j = parse_doc(r.out);
	cr_assert(jv_get(j, "in_sync") && jv_get(j, "actions"));
	jv_free(j);
	tl_run_free(&r);

	/* In sync: true, empty lists, exit 0. */
	run_check(0, "reconcile", OPTS("--auto-resolve", "suggested"));
	r = run(0, "status", OPTS("--json"));
	j = parse_doc(r.out);
	tl_run_free(&r);
	v = jv_get(j, "in_sync");
	cr_assert(v && v->t == J_BOOL && v->b);
	cr_assert_eq(jv_get(j, "actions")->n, 0);
	cr_assert_eq(jv_get(j, "conflicts")->n, 0);
	cr_assert_eq(jv_int(jv_get(j, "summary"), "total_changes"), 0);
	jv_free(j);
}

/* ================================================================ output */

static void assert_has(const char *out, const char *s)
{
	cr_assert(strstr(out, s), "expected \"%s\" in:\n%s", s, out);
}

Test(rules, human_output_format)
{
	tl_write(env.src, "name_s.txt", "from source\n");
	tl_write(env.tgt, "name_t.txt", "from target\n");
	tl_write(env.src, "clash.txt", "source side\n");
	tl_write(env.tgt, "clash.txt", "target side\n");

	for (int real = 0; real < 2; real++) {
		struct tl_run r = run(1, real ? "reconcile" : "status", NULL);
		assert_has(r.out, "Scanning source directory...");
		assert_has(r.out, "Scanning target directory...");
		assert_has(r.out, "=== SYNC ANALYSIS ===");
		assert_has(r.out, "Copy to target: 1 files");
		assert_has(r.out, "Copy to source: 1 files");
		assert_has(r.out, "Conflicts: 1 files");
		assert_has(r.out, "=== PLANNED ACTIONS ===");
		assert_has(r.out, "→ Copy to target: name_s.txt");
		assert_has(r.out, "← Copy to source: name_t.txt");
		assert_has(r.out, "=== CONFLICTS");
		assert_has(r.out, "clash.txt (");
		/* The analysis comes before the actions, the actions before the conflicts. */
		const char *a = strstr(r.out, "=== SYNC ANALYSIS ===");
		const char *p = strstr(r.out, "=== PLANNED ACTIONS ===");
		const char *c = strstr(r.out, "=== CONFLICTS");
		cr_assert(a < p && p < c, "%s", r.out);
		tl_run_free(&r);
	}
	struct tl_run r = run(0, "reconcile", OPTS("-q", "--auto-resolve", "source"));
	cr_assert(!strstr(r.out, "=== PLANNED ACTIONS ==="), "-q listed actions:\n%s", r.out);
	tl_run_free(&r);
}

/* ================================================================ log */

Test(rules, log_lines_for_copies_and_deletes)
{
	tl_write(env.src, "hello.txt", "hello\n");
	tl_write(env.tgt, "t.txt", "t\n");
	sync_ok();
	cr_assert_eq(log_lines(env.log), 2);
	struct jv *l = log_entry(env.log, "copy-to-target", "hello.txt");
	cr_assert_eq(jv_int(l, "size"), 6);
	cr_assert_str_eq(jv_str(l, "sha256"), SHA_HELLO);
	cr_assert(jv_str(l, "time") && jv_str(l, "partnership"));
	jv_free(l);

	tl_write(env.tgt, "hello.txt", "hello world\n");
	tl_write(env.tgt, "back.txt", "hello\n");
	sync_ok();
	l = log_entry(env.log, "update-source", "hello.txt");
	cr_assert_eq(jv_int(l, "size"), 12);
	cr_assert_str_eq(jv_str(l, "sha256"), SHA_HELLO_WORLD);
	jv_free(l);
	l = log_entry(env.log, "copy-to-source", "back.txt");
	cr_assert_str_eq(jv_str(l, "sha256"), SHA_HELLO);
	jv_free(l);

	tl_rm(env.src, "hello.txt");
	sync_ok();
	l = log_entry(env.log, "delete-in-target", "hello.txt");
	jv_free(l);
	cr_assert_eq(log_lines(env.log), 5);
}

Test(rules, log_file_option)
{
	char *custom = tl_join(env.base, "custom.jsonl");
	filler();
	tl_write(env.src, "hello.txt", "hello\n");
	run_check(0, "reconcile", OPTS("--log-file", custom));
	struct jv *l = log_entry(custom, "copy-to-target", "hello.txt");
	cr_assert_str_eq(jv_str(l, "sha256"), SHA_HELLO);
	jv_free(l);
	cr_assert_eq(log_lines(env.log), 0, "the default log was written too");
	/* Appended, not replaced. */
	tl_rm(env.src, "hello.txt");
	run_check(0, "reconcile", OPTS("--log-file", custom));
	l = log_entry(custom, "delete-in-target", "hello.txt");
	jv_free(l);
	cr_assert_eq(log_find(custom, "copy-to-target", "hello.txt", NULL), 1);
	cr_assert_eq(log_lines(env.log), 0);
	free(custom);
}

/* ================================================================ metadata */

static void assert_same_meta(const char *rel, mode_t mode, long sec, long nsec)
{
	for (int s = 0; s < 2; s++) {
		struct stat st = lstat_of(s ? env.tgt : env.src, rel);
		cr_assert_eq(st.st_mode & 07777, mode, "%s on %s: mode %o, expected %o", rel,
			     s ? "target" : "source", (unsigned)(st.st_mode & 07777), (unsigned)mode);
		if (sec >= 0) {
			cr_assert_eq(st.st_mtim.tv_sec, sec, "%s: mtime", rel);
			cr_assert_eq(st.st_mtim.tv_nsec, nsec, "%s: mtime ns %ld, expected %ld",
				     rel, (long)st.st_mtim.tv_nsec, nsec);
		}
	}
}

Test(rules, timestamps_and_modes_preserved)
{
	tl_write(env.src, "m640.txt", "private\n");
	chmod_at(env.src, "m640.txt", 0640);
	set_mtime_ns(env.src, "m640.txt", T0, 123456789);
	tl_write(env.src, "bin/run.sh", "#!/bin/sh\n");
	chmod_at(env.src, "bin/run.sh", 0755);
	set_mtime_ns(env.src, "bin/run.sh", T0 - 5000, 1);
	tl_write(env.tgt, "t600.txt", "secret\n");
	chmod_at(env.tgt, "t600.txt", 0600);
	set_mtime_ns(env.tgt, "t600.txt", T0 + 5000, 999999999);
	tl_write(env.src, "privdir/secret", "s\n");
	chmod_at(env.src, "privdir", 0750);
	chmod_at(env.src, "bin", 0700);

	sync_ok();
	assert_same_meta("m640.txt", 0640, T0, 123456789);
	assert_same_meta("bin/run.sh", 0755, T0 - 5000, 1);
	assert_same_meta("t600.txt", 0600, T0 + 5000, 999999999);
	assert_same_meta("privdir", 0750, -1, 0);
	assert_same_meta("bin", 0700, -1, 0);

	/* An update keeps them too. */
	tl_write(env.src, "m640.txt", "private, edited\n");
	set_mtime_ns(env.src, "m640.txt", T0 + 1, 5);
	sync_ok();
	assert_same_meta("m640.txt", 0640, T0 + 1, 5);
	assert_clean();
}

Test(rules, second_reconcile_reads_nothing)
{
	filler();
	tl_write(env.src, "a.txt", "a\n");
	tl_write(env.tgt, "b/b.txt", "b\n");
	symlink_at(env.src, "ln", "a.txt");
	sync_ok();
	size_t lines = log_lines(env.log);
	cr_assert(lines > 0);
	char *before = snapshot();
	struct tl_run r = run(0, "reconcile", NULL);
	assert_has(r.out, "Nothing to do");
	tl_run_free(&r);
	r = run(0, "reconcile", NULL);
	assert_has(r.out, "Nothing to do");
	tl_run_free(&r);
	cr_assert_eq(log_lines(env.log), lines, "a reconcile with nothing to do wrote to the log");
	char *after = snapshot();
	cr_assert_str_eq(after, before);
	free(before);
	free(after);
}

/* ================================================================ more resolutions */

/* dir_tree, then d deleted on source while the target changed and created beneath it. */
static void under_deleted_conflicts(void)
{
	dir_tree();
	tl_rm(env.src, "d");
	tl_write(env.tgt, "d/sub/c.txt", "c modified on target\n");
	tl_write(env.tgt, "d/new/n.txt", "created on target\n");
	run_check(1, "reconcile", NULL);
}

Test(rules, resolve_under_deleted_keep_changes)
{
	under_deleted_conflicts();
	resolve_interactive(0, "t\nt\n");
	/* The target's versions come back to the source, with their parents. */
	assert_content(env.src, "d/sub/c.txt", "c modified on target\n");
	assert_content(env.src, "d/new/n.txt", "created on target\n");
	assert_absent(env.src, "d/a.txt");
	assert_resolved();
}

/*
 * Resolving under-deleted-directory conflicts in favour of the side that
 * deleted the directory removes the kept files and then their emptied
 * parent directories: status is clean at once.
 */
Test(rules, resolve_under_deleted_deletion_wins)
{
	under_deleted_conflicts();
	struct tl_run r = run_argv(0, NULL, OPTS("resolve", "--source", env.src, env.tgt,
						 "d/sub/c.txt", "d/new"));
	tl_run_free(&r);
	assert_absent(env.tgt, "d/sub/c.txt");
	assert_absent(env.tgt, "d/new");
	assert_absent(env.tgt, "d");
	assert_resolved();
}

Test(rules, resolve_type_conflict)
{
	/* doc.txt: a changed file on the source, a directory on the target. */
	base_tree();
	tl_write(env.src, "doc.txt", "source changed the file\n");
	tl_rm(env.tgt, "doc.txt");
	tl_write(env.tgt, "doc.txt/sub/inner.txt", "inner\n");
	run_check(1, "reconcile", NULL);

	/* The directory wins: the source's file becomes the tree. */
	resolve_paths(0, "--target", "doc.txt");
	cr_assert(S_ISDIR(lstat_of(env.src, "doc.txt").st_mode));
	assert_content(env.src, "doc.txt/sub/inner.txt", "inner\n");
	assert_resolved();

	/* And the other way: a file replacing a changed directory. */
	tl_rm(env.src, "doc.txt");
	tl_write(env.src, "doc.txt", "a file again\n");
	tl_write(env.tgt, "doc.txt/sub/inner.txt", "inner changed\n");
	run_check(1, "reconcile", NULL);
	struct jv *j = conflicts_json(1);
	cr_assert_str_eq(jv_str(find_conflict(j, "doc.txt"), "kind"), "type");
	jv_free(j);
	resolve_paths(0, "--source", "doc.txt");
	assert_content(env.tgt, "doc.txt", "a file again\n");
	assert_resolved();
}

Test(rules, resolve_keep_both_type_conflict)
{
	filler();
	tl_write(env.src, "notes/report.txt", "base\n");
	sync_ok();
	tl_write(env.src, "notes/report.txt", "source report\n");
	tl_rm(env.tgt, "notes/report.txt");
	tl_write(env.tgt, "notes/report.txt/inner.txt", "inner\n");
	set_mtime_ns(env.tgt, "notes/report.txt", T0, 0);
	run_check(1, "reconcile", NULL);
	resolve_paths(0, "--keep-both", "notes/report.txt");
	char *name = kept_name(env.tgt, "notes", "report", "txt", T0);
	char *rel = tl_join("notes", name);
	char *inner = tl_join(rel, "inner.txt");
	assert_content(env.src, inner, "inner\n");
	assert_content(env.tgt, inner, "inner\n");
	assert_content(env.src, "notes/report.txt", "source report\n");
	assert_content(env.tgt, "notes/report.txt", "source report\n");
	free(inner);
	free(rel);
	free(name);
	assert_resolved();
}

Test(rules, resolve_modified_deleted)
{
	filler();
	tl_write(env.src, "m1.txt", "m1\n");
	tl_write(env.src, "m2.txt", "m2\n");
	sync_ok();
	tl_write(env.src, "m1.txt", "m1 modified\n");
	tl_rm(env.tgt, "m1.txt");
	tl_write(env.src, "m2.txt", "m2 modified\n");
	tl_rm(env.tgt, "m2.txt");
	run_check(1, "reconcile", NULL);
	/* m1: the deletion wins; m2: Enter takes the suggestion, the modified version. */
	resolve_interactive(0, "t\n\n");
	assert_absent(env.src, "m1.txt");
	assert_content(env.tgt, "m2.txt", "m2 modified\n");
	assert_resolved();
}

Test(rules, resolve_interactive_several)
{
	filler();
	tl_write(env.src, "a.txt", "a\n");
	tl_write(env.src, "b.txt", "b\n");
	tl_write(env.src, "c.txt", "c\n");
	sync_ok();
	diverge("a.txt", "a src\n", T0, "a tgt\n", T0);
	diverge("b.txt", "b src\n", T0, "b tgt\n", T0);
	diverge("c.txt", "c src\n", T0, "c tgt\n", T0);
	run_check(1, "reconcile", NULL);
	/* Sorted by path; a bad answer and an Enter without suggestion ask again;
	 * the end of input skips the rest. */
	struct tl_run r = run_argv(1, "maybe\ns\n\nt\n", OPTS("resolve", env.src, env.tgt));
	cr_assert(strstr(r.out, "Please answer"), "%s", r.out);
	tl_run_free(&r);
	assert_content(env.tgt, "a.txt", "a src\n");
	assert_content(env.src, "b.txt", "b tgt\n");
	assert_content(env.src, "c.txt", "c src\n");
	assert_content(env.tgt, "c.txt", "c tgt\n");
	struct jv *j = conflicts_json(1);
	cr_assert_eq(conflict_count(j), 1);
	find_conflict(j, "c.txt");
	jv_free(j);
}

Test(rules, dry_run_keeps_recorded_conflicts)
{
	make_conflict("c.txt", "src\n", T0, "target version\n", T0 + 100);
	assert_read_only(1, "reconcile", OPTS("-n", "--auto-resolve", "source"));
	assert_read_only(1, "status", NULL);
	struct jv *j = conflicts_json(1);
	find_conflict(j, "c.txt");
	jv_free(j);
}

Test(rules, conflict_cleared_when_sides_agree)
{
	make_conflict("c.txt", "src\n", T0, "target version\n", T0 + 100);
	/* The user settles it by hand: the next reconcile forgets the conflict. */
	tl_write(env.tgt, "c.txt", "src\n");
	set_mtime_ns(env.tgt, "c.txt", T0, 0);
	sync_ok();
	assert_resolved();
}

Test(rules, symlink_changes_carried)
{
	base_tree();
	symlink_at(env.src, "ln", "doc.txt");
	symlink_at(env.src, "ln2", "other.txt");
	sync_ok();
	assert_link(env.tgt, "ln", "doc.txt");
	tl_rm(env.tgt, "ln");
	symlink_at(env.tgt, "ln", "other.txt");
	tl_rm(env.src, "ln2");
	sync_ok();
	assert_link(env.src, "ln", "other.txt");
	assert_absent(env.tgt, "ln2");
	/* A symlink is never followed: doc.txt itself is untouched. */
	assert_content(env.src, "doc.txt", "version 1\n");
	assert_clean();
}

Test(rules, modified_same_size_same_mtime_detected)
{
	base_tree();
	/* An edit that keeps the size and restores the mtime is still an edit. */
	tl_write(env.src, "doc.txt", "VERSION 1\n");
	set_mtime_ns(env.src, "doc.txt", T0, 0);
	sync_ok();
	assert_content(env.tgt, "doc.txt", "VERSION 1\n");
	assert_clean();
}

Test(rules, keep_both_never_overwrites)
{
	filler();
	/* A file already holding the name keep-both would pick, and one without extension. */
	struct tm tm;
	time_t t = T0;
	char stamp[32], taken[96];
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", localtime_r(&t, &tm));
	snprintf(taken, sizeof(taken), "report.target-%s.txt", stamp);
	tl_write(env.src, taken, "precious\n");
	tl_write(env.src, "report.txt", "base\n");
	tl_write(env.src, "Makefile", "base\n");
	sync_ok();
	diverge("report.txt", "source report\n", T0 + 50, "target report\n", T0);
	diverge("Makefile", "all: src\n", T0 + 50, "all: tgt\n", T0);
	run_check(1, "reconcile", NULL);
	resolve_interactive(0, "k\nk\n");

	assert_content(env.src, taken, "precious\n");
	assert_content(env.tgt, taken, "precious\n");
	assert_content(env.tgt, "report.txt", "source report\n");
	assert_content(env.tgt, "Makefile", "all: src\n");
	/* Exactly one other file per side holds each target version. */
	for (int s = 0; s < 2; s++) {
		const char *root = s ? env.tgt : env.src;
		struct dirent **list = NULL;
		int n = scandir(root, &list, NULL, alphasort), rep = 0, mk = 0;
		for (int i = 0; i < n; i++) {
			const char *nm = list[i]->d_name;
			char *c = NULL;
			if (strcmp(nm, taken) && !strncmp(nm, "report.target-", 14)) {
				cr_assert(strlen(nm) > 4 && !strcmp(nm + strlen(nm) - 4, ".txt"), "%s", nm);
				c = tl_read(root, nm);
				cr_assert_str_eq(c, "target report\n");
				rep++;
			} else if (!strncmp(nm, "Makefile.target-", 16)) {
				c = tl_read(root, nm);
				cr_assert_str_eq(c, "all: tgt\n");
				mk++;
			}
			free(c);
			free(list[i]);
		}
		free(list);
		cr_assert_eq(rep, 1);
		cr_assert_eq(mk, 1);
	}
	assert_resolved();
}

Test(rules, odd_names_in_json)
{
	const char *name = "we\"ird\\ na\xc3\xafve\tname.txt";
	tl_write(env.src, name, "source\n");
	tl_write(env.tgt, name, "target!\n");
	tl_write(env.src, "ok \"quoted\".txt", "hello\n");
	run_check(1, "reconcile", NULL);
	struct jv *j = conflicts_json(1);
	find_conflict(j, name);
	jv_free(j);
	struct jv *l = log_entry(env.log, "copy-to-target", "ok \"quoted\".txt");
	cr_assert_str_eq(jv_str(l, "sha256"), SHA_HELLO);
	jv_free(l);
	struct tl_run r = run(1, "status", OPTS("--json"));
	j = parse_doc(r.out);
	tl_run_free(&r);
	cr_assert_str_eq(jv_str(&jv_get(j, "conflicts")->v[0], "path"), name);
	jv_free(j);
}

/* ================================================================ empty directories */

/* Empty directories, an empty root included, are scanned and copied. */
Test(rules, empty_directories)
{
	/* First sync: empty directories on either side are created on the other. */
	tl_write(env.src, "a.txt", "a\n");
	tl_mkdir(env.src, "empty_s");
	tl_mkdir(env.src, "d1/empty_nested");
	tl_mkdir(env.tgt, "empty_t");
	sync_ok();
	for (int s = 0; s < 2; s++) {
		const char *d = s ? env.tgt : env.src;
		assert_empty_dir(d, "empty_s");
		assert_empty_dir(d, "d1/empty_nested");
		assert_empty_dir(d, "empty_t");
	}
	assert_clean();
	/* With a record: created, mode changed, deleted. */
	tl_mkdir(env.tgt, "later/empty");
	sync_ok();
	assert_empty_dir(env.src, "later/empty");
	chmod_at(env.src, "later/empty", 0700);
	sync_ok();
	cr_assert_eq(lstat_of(env.tgt, "later/empty").st_mode & 07777, 0700);
	tl_rm(env.tgt, "empty_s");
	sync_ok();
	assert_absent(env.src, "empty_s");
	assert_clean();

	/* A new partnership with an empty source: copied back, nothing deleted. */
	struct tl_env e2;
	tl_env_init(&e2);
	tl_write(e2.tgt, "t.txt", "t\n");
	struct tl_run r = tl_cmd(&e2, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	assert_content(e2.src, "t.txt", "t\n");
	assert_content(e2.tgt, "t.txt", "t\n");
	tl_env_fini(&e2);
}
