/* What a partner can hold (caps.c) and case clashes (clash.c). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static char base[] = "/tmp/sbfs-caps.XXXXXX";
static char src[64], tgt[64], state[64];

static void setup(void)
{
	cr_assert(mkdtemp(base));
	snprintf(src, sizeof(src), "%s/src", base);
	snprintf(tgt, sizeof(tgt), "%s/tgt", base);
	snprintf(state, sizeof(state), "%s/state", base);
	cr_assert(mkdir(src, 0755) == 0 && mkdir(tgt, 0755) == 0);
}

static void teardown(void)
{
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	cr_assert(system(cmd) == 0);
}

TestSuite(caps, .init = setup, .fini = teardown);

static size_t entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t n = 0;
	cr_assert(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

Test(caps, a_linux_directory_holds_everything_and_the_probe_leaves_nothing)
{
	struct sb_pship *p;
	struct sb_error err;
	cr_assert(sb_pship_open(src, tgt, state, NULL, &p, &err) == 0);
	const struct sb_caps *c = sb_pship_caps(p, 1);
	uint32_t want = SB_CAP_PROBED | SB_CAP_SYMLINK | SB_CAP_HARDLINK | SB_CAP_MODE;
	cr_assert_eq(c->flags & want, want, "flags %#x", c->flags);
	cr_assert_eq(c->flags & (SB_CAP_FOLD | SB_CAP_ASCII | SB_CAP_MVTIME | SB_CAP_TRAIL), 0u);
	cr_assert_str_eq(c->refused, "");
	cr_assert(c->time_ns < 1000000, "granularity %lld", (long long)c->time_ns);
	cr_assert_eq(entries(tgt), 0u, "the probe left something in the target");
	char what[256];
	sb_pship_describe(p, 1, what, sizeof(what));
	cr_assert(strstr(what, "times"), "%s", what);
	sb_pship_close(p);

	/* Kept in the state, with the device it describes. */
	cr_assert(sb_pship_open(src, tgt, state, NULL, &p, &err) == 0);
	struct sb_txn *t;
	uint8_t buf[256];
	size_t len = sizeof(buf);
	cr_assert(sb_state_begin(p->state, 1, &t) == 0);
	cr_assert(sb_state_meta_get(t, "caps.1", buf, &len) == 0);
	sb_txn_abort(t);
	cr_assert(sb_pship_caps(p, 1)->flags & SB_CAP_PROBED);
	sb_pship_close(p);
}

Test(caps, what_a_side_cannot_store_is_named)
{
	struct sb_caps c = { .flags = SB_CAP_FOLD | SB_CAP_TRAIL | SB_CAP_DOSDEV | SB_CAP_ASCII,
			     .name_max = 20, .time_ns = 2000000000,
			     .file_max = ((uint64_t)4 << 30) - 1, .fstype = "vfat",
			     .refused = ":*?\"<>|\\" };
	static const struct {
		const char *name;
		int type;
		uint64_t size;
		int err;
		const char *why;
	} cases[] = {
		{ "plain.txt", SB_FILE, 10, 0, NULL },
		{ "a:b", SB_FILE, 1, -EINVAL, "':'" },
		{ "what?", SB_FILE, 1, -EINVAL, "'?'" },
		{ "dot.", SB_FILE, 1, -EINVAL, "dot" },
		{ "space ", SB_DIR, 0, -EINVAL, "space" },
		{ "CON", SB_FILE, 1, -EINVAL, "reserved" },
		{ "nul.txt", SB_FILE, 1, -EINVAL, "reserved" },
		{ "com1", SB_FILE, 1, -EINVAL, "reserved" },
		{ "console", SB_FILE, 1, 0, NULL },
		{ "caf\xc3\xa9", SB_FILE, 1, -EINVAL, "ASCII" },
		{ "a-name-longer-than-twenty", SB_FILE, 1, -ENAMETOOLONG, "too long" },
		{ "link", SB_LINK, 4, -EOPNOTSUPP, "symbolic" },
		{ "big", SB_FILE, (uint64_t)5 << 30, -EFBIG, "too large" },
		{ "fits", SB_FILE, ((uint64_t)4 << 30) - 1, 0, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char buf[64];
		const char *why = NULL;
		int r = sb_caps_storable(&c, cases[i].name, strlen(cases[i].name), cases[i].type,
					 cases[i].size, buf, &why);
		cr_assert_eq(r, cases[i].err, "%s: %d", cases[i].name, r);
		if (cases[i].why)
			cr_assert(why && strstr(why, cases[i].why), "%s: %s", cases[i].name,
				  why ? why : "(none)");
	}
}

Test(caps, times_agree_at_the_coarser_granularity)
{
	struct sb_caps fine = { .time_ns = 1 }, fat = { .time_ns = 2000000000 };
	cr_assert(sb_caps_same_time(&fine, &fat, 5555555555LL, 4000000000LL));
	cr_assert(!sb_caps_same_time(&fine, &fat, 7000000000LL, 4000000000LL));
	cr_assert(!sb_caps_same_time(&fine, &fine, 5555555555LL, 5555555554LL));
}

Test(caps, folding_follows_unicode_case)
{
	static const char *const same[][2] = {
		{ "readme.txt", "README.TXT" },
		{ "caf\xc3\xa9", "CAF\xc3\x89" },		/* e acute */
		{ "\xce\xb1\xce\xb2", "\xce\x91\xce\x92" },	/* Greek alpha beta */
		{ "\xd0\xb4", "\xd0\x94" },			/* Cyrillic de */
	};
	for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		char *a = sb_caps_fold(same[i][0], strlen(same[i][0]));
		char *b = sb_caps_fold(same[i][1], strlen(same[i][1]));
		cr_assert_str_eq(a, b, "pair %zu", i);
		free(a);
		free(b);
	}
	char *a = sb_caps_fold("a\xff" "b", 3), *b = sb_caps_fold("A\xff" "B", 3);
	cr_assert_str_eq(a, b, "bytes that are not UTF-8 are kept");
	cr_assert_neq(strcmp(a, "A\xfe" "B"), 0);
	free(a);
	free(b);
}

Test(caps, in_each_group_the_spelling_held_stays_and_the_rest_clash)
{
	const char *names[] = { "CASE.TXT", "Other", "README.txt", "Readme.TXT", "case.txt",
				"readme.txt" };
	const char *have[] = { "Readme.TXT" };
	char **out;
	size_t n;
	cr_assert(sb_clash_find(names, 6, have, 1, &out, &n) == 0);
	/* The folding side holds Readme.TXT: its two other spellings clash;
	 * of case.txt and CASE.TXT, held by neither, the first stays. */
	cr_assert_eq(n, 3u);
	cr_assert_str_eq(out[0], "README.txt");
	cr_assert_str_eq(out[1], "case.txt");
	cr_assert_str_eq(out[2], "readme.txt");
	cr_assert(sb_clash_has(out, n, "case.txt"));
	cr_assert(!sb_clash_has(out, n, "CASE.TXT"));
	for (size_t i = 0; i < n; i++)
		free(out[i]);
	free(out);
	cr_assert(sb_clash_find(names + 1, 1, NULL, 0, &out, &n) == 0 && n == 0);
}
