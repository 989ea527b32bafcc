/* The JSON Lines operation log and the JSON string helpers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

struct fixture {
	char dir[64];
	char path[96];
};

static void fx_init(struct fixture *fx)
{
	strcpy(fx->dir, "/tmp/sbfs-test-log-XXXXXX");
	cr_assert_not_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/log.jsonl", fx->dir);
}

static void fx_fini(struct fixture *fx)
{
	unlink(fx->path);
	cr_assert_eq(rmdir(fx->dir), 0);
}

/* The whole file, NUL-terminated; *len without the NUL. */
static char *slurp(const char *path, size_t *len)
{
	struct stat st;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	buf = malloc((size_t)st.st_size + 1);
	cr_assert_not_null(buf);
	cr_assert_eq(read(fd, buf, (size_t)st.st_size), st.st_size);
	buf[st.st_size] = '\0';
	close(fd);
	if (len)
		*len = (size_t)st.st_size;
	return buf;
}

/* What a FILE-writing helper produced, NUL-terminated. */
#define CAPTURE(out, call)                                                   \
	do {                                                                 \
		size_t cap_len_ = 0;                                         \
		FILE *f = open_memstream(&(out), &cap_len_);                 \
		cr_assert_not_null(f);                                       \
		call;                                                        \
		cr_assert_eq(fclose(f), 0);                                  \
	} while (0)

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Strict standard base64 with padding; returns the decoded length. */
static size_t b64decode(const char *s, size_t n, unsigned char *out)
{
	size_t i, o = 0;

	cr_assert_eq(n % 4, 0, "base64 length %zu", n);
	for (i = 0; i < n; i += 4) {
		int a = b64val(s[i]), b = b64val(s[i + 1]);
		int c = s[i + 2] == '=' ? 0 : b64val(s[i + 2]);
		int d = s[i + 3] == '=' ? 0 : b64val(s[i + 3]);
		uint32_t v;

		cr_assert(a >= 0 && b >= 0 && c >= 0 && d >= 0);
		cr_assert(s[i + 2] != '=' || (s[i + 3] == '=' && i + 4 == n));
		cr_assert(s[i + 3] != '=' || i + 4 == n);
		v = (uint32_t)a << 18 | (uint32_t)b << 12 | (uint32_t)c << 6 |
		    (uint32_t)d;
		out[o++] = (unsigned char)(v >> 16);
		if (s[i + 2] != '=')
			out[o++] = (unsigned char)(v >> 8);
		if (s[i + 3] != '=')
			out[o++] = (unsigned char)v;
	}
	return o;
}

/* The raw text of string field key in a one-line JSON object. */
static char *field(const char *line, const char *key)
{
	char pat[64], *p, *e, *r;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	p = strstr(line, pat);
	if (!p)
		return NULL;
	p += strlen(pat);
	for (e = p; *e && *e != '"'; e++)
		if (*e == '\\')
			e++;
	cr_assert_eq(*e, '"');
	r = strndup(p, (size_t)(e - p));
	cr_assert_not_null(r);
	return r;
}

#define U(s) sb_utf8_valid(s, sizeof(s) - 1)

Test(json, utf8_valid)
{
	cr_assert_eq(U(""), 1);
	cr_assert_eq(U("plain ascii\n\x7f"), 1);
	cr_assert_eq(U("a\0b"), 1);
	cr_assert_eq(U("\xc3\xa9t\xc3\xa9"), 1);		/* été */
	cr_assert_eq(U("\xe2\x82\xac"), 1);			/* € */
	cr_assert_eq(U("\xed\x9f\xbf"), 1);			/* U+D7FF */
	cr_assert_eq(U("\xee\x80\x80"), 1);			/* U+E000 */
	cr_assert_eq(U("\xef\xbf\xbf"), 1);			/* U+FFFF */
	cr_assert_eq(U("\xf0\x9f\x98\x80"), 1);		/* U+1F600 */
	cr_assert_eq(U("\xf4\x8f\xbf\xbf"), 1);		/* U+10FFFF */

	cr_assert_eq(U("\x80"), 0);				/* lone continuation */
	cr_assert_eq(U("\xc3"), 0);				/* truncated */
	cr_assert_eq(U("\xe2\x82"), 0);
	cr_assert_eq(U("\xe2\x82x"), 0);
	cr_assert_eq(U("\xc0\xaf"), 0);			/* overlong '/' */
	cr_assert_eq(U("\xc1\xbf"), 0);
	cr_assert_eq(U("\xe0\x80\xaf"), 0);
	cr_assert_eq(U("\xe0\x9f\xbf"), 0);
	cr_assert_eq(U("\xf0\x8f\xbf\xbf"), 0);
	cr_assert_eq(U("\xed\xa0\x80"), 0);			/* U+D800 */
	cr_assert_eq(U("\xed\xbf\xbf"), 0);			/* U+DFFF */
	cr_assert_eq(U("\xf4\x90\x80\x80"), 0);		/* U+110000 */
	cr_assert_eq(U("\xf5\x80\x80\x80"), 0);
	cr_assert_eq(U("\xff"), 0);
	cr_assert_eq(U("\xfe"), 0);
	/* The length bounds the check, not a NUL. */
	cr_assert_eq(sb_utf8_valid("ok\xff", 2), 1);
	cr_assert_eq(sb_utf8_valid("\xc3\xa9", 1), 0);
}

Test(json, string_escapes)
{
	static const char in[] = "q\"b\\s/\n\t\r\b\f\x01\x1f\x7f\0z";
	char *out = NULL;

	CAPTURE(out, sb_json_string(f, in, sizeof(in) - 1));
	cr_assert_str_eq(out,
			 "\"q\\\"b\\\\s/\\n\\t\\r\\b\\f\\u0001\\u001f\x7f\\u0000z\"");
	free(out);

	CAPTURE(out, sb_json_string(f, "\xc3\xa9\xf0\x9f\x98\x80", 6));
	cr_assert_str_eq(out, "\"\xc3\xa9\xf0\x9f\x98\x80\"");
	free(out);

	/* Every invalid byte is one U+FFFD; valid neighbours survive. */
	CAPTURE(out, sb_json_string(f, "a\xff\xfe" "b\xe2\x82" "c\xed\xa0\x80", 10));
	cr_assert_str_eq(out, "\"a\xef\xbf\xbd\xef\xbf\xbd" "b"
			      "\xef\xbf\xbd\xef\xbf\xbd" "c"
			      "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
	free(out);

	CAPTURE(out, sb_json_string(f, NULL, 0));
	cr_assert_str_eq(out, "\"\"");
	free(out);
}

Test(json, path_b64)
{
	static const struct {
		const char *in;
		size_t len;
		const char *want;
	} cases[] = {
		{ "a/b", 3, "\"p\":\"a/b\"" },
		{ "\xff", 1, "\"p\":\"\xef\xbf\xbd\",\"p_b64\":\"/w==\"" },
		{ "a\xff", 2, "\"p\":\"a\xef\xbf\xbd\",\"p_b64\":\"Yf8=\"" },
		{ "ab\xff", 3, "\"p\":\"ab\xef\xbf\xbd\",\"p_b64\":\"YWL/\"" },
		/* + and / are the standard alphabet, not the URL-safe one. */
		{ "\xfb\xef\xbe", 3,
		  "\"p\":\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\",\"p_b64\":\"++++\"" },
		{ "", 0, "\"p\":\"\"" },
	};
	size_t i;
	char *out = NULL;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CAPTURE(out, sb_json_path(f, "p", cases[i].in, cases[i].len));
		cr_assert_str_eq(out, cases[i].want, "case %zu", i);
		free(out);
	}
}

Test(log, line_per_op)
{
	struct fixture fx;
	struct sb_log *l = NULL;
	uint8_t sha[SB_SHA_LEN];
	char *buf, *line, *save = NULL, hex[2 * SB_SHA_LEN + 1];
	struct stat st;
	int n = 0;

	fx_init(&fx);
	cr_assert_eq(sb_log_open(fx.path, &l), 0);
	cr_assert_eq(stat(fx.path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(sb_hash_buf("abc", 3, sha), 0);
	sb_sha_hex(sha, hex);

	cr_assert_eq(sb_log_op(l, "pid1", "copy-to-target", "a/b", 3, 123, sha,
			       0), 0);
	cr_assert_eq(sb_log_op(l, "pid1", "delete-on-source", "a/c", 3, 0, NULL,
			       0), 0);
	cr_assert_eq(sb_log_op(l, "pid1", "mkdir", "d", 1, 18446744073709551615ULL,
			       NULL, 0), 0);
	sb_log_close(l);
	sb_log_close(NULL);

	buf = slurp(fx.path, NULL);
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save), n++) {
		cr_assert_eq(line[0], '{');
		cr_assert_eq(line[strlen(line) - 1], '}');
		/* "time":"YYYY-MM-DDTHH:MM:SS.mmmZ" first. */
		cr_assert_eq(strncmp(line, "{\"time\":\"", 9), 0);
		{
			const char *t = line + 9;
			int k;

			cr_assert_eq(strlen(t) > 25, 1);
			for (k = 0; k < 24; k++) {
				const char *pat = "dddd-dd-ddTdd:dd:dd.dddZ";

				if (pat[k] == 'd')
					cr_assert(t[k] >= '0' && t[k] <= '9',
						  "%s", line);
				else
					cr_assert_eq(t[k], pat[k], "%s", line);
			}
			cr_assert_eq(t[24], '"');
		}
	}
	cr_assert_eq(n, 3);

	free(buf);
	buf = slurp(fx.path, NULL);
	{
		char *l1 = buf, *l2 = strchr(l1, '\n') + 1;
		char *l3 = strchr(l2, '\n') + 1;
		char want[512];

		snprintf(want, sizeof(want),
			 ",\"partnership\":\"pid1\",\"action\":\"copy-to-target\","
			 "\"path\":\"a/b\",\"size\":123,\"sha256\":\"%s\","
			 "\"result\":\"ok\"}\n", hex);
		cr_assert_eq(strncmp(l1 + 34, want, strlen(want)), 0, "%.*s",
			     (int)(l2 - l1), l1);
		cr_assert_eq(strncmp(l2 + 34,
				     ",\"partnership\":\"pid1\",\"action\":"
				     "\"delete-on-source\",\"path\":\"a/c\","
				     "\"size\":0,\"result\":\"ok\"}\n", 76), 0,
			     "%.*s", (int)(l3 - l2), l2);
		cr_assert_not_null(strstr(l3, "\"size\":18446744073709551615,"));
		cr_assert_null(strstr(l2, "sha256"));
		cr_assert_null(strstr(buf, "path_b64"));
	}
	free(buf);
	fx_fini(&fx);
}

Test(log, append_existing)
{
	struct fixture fx;
	struct sb_log *l = NULL;
	char *buf;
	int fd;

	fx_init(&fx);
	fd = open(fx.path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "old\n", 4), 4);
	close(fd);
	cr_assert_eq(sb_log_open(fx.path, &l), 0);
	cr_assert_eq(sb_log_op(l, "p", "x", "f", 1, 1, NULL, 0), 0);
	sb_log_close(l);
	buf = slurp(fx.path, NULL);
	cr_assert_eq(strncmp(buf, "old\n{\"time\":", 12), 0);
	free(buf);
	fx_fini(&fx);
}

Test(log, open_errors)
{
	struct sb_log *l = (struct sb_log *)1;

	cr_assert_eq(sb_log_open("/nonexistent-sbfs-dir/log", &l), -ENOENT);
	cr_assert_null(l);
}

Test(log, non_utf8_name)
{
	static const char name[] = "dir/a\xff\xfe" "b";
	struct fixture fx;
	struct sb_log *l = NULL;
	unsigned char dec[64];
	char *buf, *path, *b64;
	size_t n;

	fx_init(&fx);
	cr_assert_eq(sb_log_open(fx.path, &l), 0);
	cr_assert_eq(sb_log_op(l, "p", "copy-to-source", name, sizeof(name) - 1,
			       7, NULL, 0), 0);
	sb_log_close(l);

	buf = slurp(fx.path, NULL);
	path = field(buf, "path");
	b64 = field(buf, "path_b64");
	cr_assert_not_null(path);
	cr_assert_not_null(b64);
	cr_assert_str_eq(path, "dir/a\xef\xbf\xbd\xef\xbf\xbd" "b");
	/* path_b64 comes right after path. */
	cr_assert_not_null(strstr(buf, "b\",\"path_b64\":\""));
	n = b64decode(b64, strlen(b64), dec);
	cr_assert_eq(n, sizeof(name) - 1);
	cr_assert_arr_eq(dec, name, n);
	cr_assert(sb_utf8_valid(buf, strlen(buf)));
	free(path);
	free(b64);
	free(buf);
	fx_fini(&fx);
}

Test(log, escaped_name_and_error)
{
	static const char name[] = "we\"ird\nna\\me";
	struct fixture fx;
	struct sb_log *l = NULL;
	char *buf, *nl, want[128];
	size_t len;

	fx_init(&fx);
	cr_assert_eq(sb_log_open(fx.path, &l), 0);
	cr_assert_eq(sb_log_op(l, "p\"x", "copy-to-target", name,
			       sizeof(name) - 1, 5, NULL, -ENOSPC), 0);
	sb_log_close(l);

	buf = slurp(fx.path, &len);
	/* The embedded newline did not split the line. */
	nl = strchr(buf, '\n');
	cr_assert_eq(nl, buf + len - 1);
	cr_assert_not_null(strstr(buf, "\"partnership\":\"p\\\"x\""));
	cr_assert_not_null(strstr(buf, "\"path\":\"we\\\"ird\\nna\\\\me\""));
	cr_assert_null(strstr(buf, "path_b64"));
	snprintf(want, sizeof(want),
		 ",\"size\":5,\"result\":\"error\",\"error\":\"%s\",\"errno\":%d}\n",
		 strerror(ENOSPC), ENOSPC);
	cr_assert_not_null(strstr(buf, want), "%s", buf);
	free(buf);
	fx_fini(&fx);
}

#define PROCS 2
#define LINES 200

Test(log, concurrent_appends)
{
	struct fixture fx;
	struct sb_log *l = NULL;
	static char seen[PROCS][LINES];
	char *buf, *line, *save = NULL;
	pid_t pids[PROCS];
	int i, status, total = 0;

	fx_init(&fx);
	/* Each child opens its own description, as separate sbfs runs do. */
	for (i = 0; i < PROCS; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0) {
			char part[16], rel[64];
			int k, bad = 0;

			if (sb_log_open(fx.path, &l) < 0)
				_exit(2);
			snprintf(part, sizeof(part), "proc%d", i);
			for (k = 0; k < LINES; k++) {
				/* Long-ish lines make a torn write likelier
				 * to show. */
				int m = snprintf(rel, sizeof(rel),
						 "dir-%d/file-%03d-%040d", i, k, 0);

				if (sb_log_op(l, part, "copy-to-target", rel,
					      (size_t)m, (uint64_t)k, NULL,
					      k % 7 ? 0 : -EIO) < 0)
					bad = 1;
			}
			sb_log_close(l);
			_exit(bad);
		}
	}
	for (i = 0; i < PROCS; i++) {
		cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}

	buf = slurp(fx.path, NULL);
	for (line = strtok_r(buf, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save), total++) {
		int p, k;

		cr_assert_eq(strncmp(line, "{\"time\":\"", 9), 0, "%s", line);
		cr_assert_eq(line[strlen(line) - 1], '}', "%s", line);
		cr_assert_eq(sscanf(strstr(line, "\"path\":\""),
				    "\"path\":\"dir-%d/file-%d-", &p, &k), 2,
			     "%s", line);
		cr_assert(p >= 0 && p < PROCS && k >= 0 && k < LINES);
		cr_assert_eq(seen[p][k], 0, "duplicate %d/%d", p, k);
		seen[p][k] = 1;
		cr_assert_not_null(strstr(line, k % 7 ? "\"result\":\"ok\"}"
						      : "\"errno\":5}"), "%s", line);
	}
	cr_assert_eq(total, PROCS * LINES);
	free(buf);
	fx_fini(&fx);
}

/* Writes LINES lines as part; 0 if every sb_log_op succeeded. */
static int write_lines(const char *path, const char *part)
{
	struct sb_log *l = NULL;
	char rel[64];
	int bad = 0;

	if (sb_log_open(path, &l) < 0)
		return 2;
	for (int k = 0; k < LINES; k++) {
		int m = snprintf(rel, sizeof(rel), "file-%03d-%040d", k, 0);

		if (sb_log_op(l, part, "copy-to-target", rel, (size_t)m, (uint64_t)k, NULL, 0) < 0)
			bad = 1;
	}
	sb_log_close(l);
	return bad;
}

/* path.N: its lines, each a whole object, into seen; the count. */
static int rotated_lines(const struct fixture *fx, int n, char seen[PROCS][LINES], long cap)
{
	char name[128], *buf, *line, *save = NULL;
	struct stat st;
	int total = 0;

	if (n)
		snprintf(name, sizeof(name), "%s.%d", fx->path, n);
	else
		snprintf(name, sizeof(name), "%s", fx->path);
	if (stat(name, &st) < 0)
		return -1;
	cr_assert_leq(st.st_size, cap, "%s: %lld bytes, past the cap", name, (long long)st.st_size);
	buf = slurp(name, NULL);
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save), total++) {
		int p, k;

		cr_assert_eq(strncmp(line, "{\"time\":\"", 9), 0, "%s", line);
		cr_assert(strlen(line) > 14 && !strcmp(line + strlen(line) - 14, "\"result\":\"ok\"}"), "%s", line);
		cr_assert_eq(sscanf(strstr(line, "\"partnership\":\""), "\"partnership\":\"p%d", &p), 1);
		cr_assert_eq(sscanf(strstr(line, "\"path\":\""), "\"path\":\"file-%d-", &k), 1);
		cr_assert(p >= 0 && p < PROCS && k >= 0 && k < LINES);
		cr_assert_eq(seen[p][k], 0, "duplicate %d/%d", p, k);
		seen[p][k] = 1;
	}
	free(buf);
	cr_assert_eq(unlink(name), 0);
	return total;
}

/*
 * Two processes append past a small cap: the log is rotated to log.jsonl.1,
 * .2 ... (by one of them at a time), no file passes the cap, and with
 * enough kept every line of both is there exactly once.
 */
Test(log, rotation_under_concurrent_appends_loses_no_line)
{
	struct fixture fx;
	static char seen[PROCS][LINES];
	pid_t pids[PROCS];
	int status, total = 0, files = 0;

	fx_init(&fx);
	cr_assert_eq(setenv("SBFS_LOG_MAX_SIZE", "4K", 1), 0);
	cr_assert_eq(setenv("SBFS_LOG_KEEP", "60", 1), 0);
	for (int i = 0; i < PROCS; i++) {
		pids[i] = fork();
		cr_assert_geq(pids[i], 0);
		if (pids[i] == 0)
			_exit(write_lines(fx.path, i ? "p1" : "p0"));
	}
	for (int i = 0; i < PROCS; i++) {
		cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
		cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	for (int n = 0, got; n <= 60 && (got = rotated_lines(&fx, n, seen, 4096)) >= 0; n++) {
		total += got;
		files++;
	}
	cr_assert_eq(total, PROCS * LINES, "%d lines in %d files", total, files);
	cr_assert_geq(files, 10, "only %d files: no rotation?", files);
	fx_fini(&fx);
	unsetenv("SBFS_LOG_MAX_SIZE");
	unsetenv("SBFS_LOG_KEEP");
}

/* Only SBFS_LOG_KEEP old files stay; the newest lines are in log.jsonl. */
Test(log, rotation_keeps_so_many_files)
{
	struct fixture fx;
	static char seen[PROCS][LINES];
	char name[128];

	fx_init(&fx);
	cr_assert_eq(setenv("SBFS_LOG_MAX_SIZE", "2048", 1), 0);
	cr_assert_eq(setenv("SBFS_LOG_KEEP", "2", 1), 0);
	cr_assert_eq(write_lines(fx.path, "p0"), 0);
	snprintf(name, sizeof(name), "%s.3", fx.path);
	cr_assert(access(name, F_OK) < 0, "%s kept", name);
	int last = rotated_lines(&fx, 0, seen, 2048);
	cr_assert_gt(last, 0);
	cr_assert(seen[0][LINES - 1], "the last line is not in log.jsonl");
	cr_assert_gt(rotated_lines(&fx, 1, seen, 2048), 0);
	cr_assert_gt(rotated_lines(&fx, 2, seen, 2048), 0);
	fx_fini(&fx);
	unsetenv("SBFS_LOG_MAX_SIZE");
	unsetenv("SBFS_LOG_KEEP");
}
