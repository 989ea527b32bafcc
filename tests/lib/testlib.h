/*
 * Helpers for tests that drive the sbfs binary on real temporary trees.
 * Each fails the current criterion test (cr_assert_fail) on an unexpected error.
 */
#ifndef SBFS_TESTLIB_H
#define SBFS_TESTLIB_H

#include <stddef.h>
#include <sys/types.h>

struct tl_run {
	int status;		/* exit status, or 128+signal */
	char *out, *err;	/* NUL-terminated captured stdout and stderr */
	size_t outlen, errlen;
};

/* A fresh directory under /tmp holding src/, tgt/ and state/. */
struct tl_env {
	char *base, *src, *tgt, *state, *log;
};

void tl_env_init(struct tl_env *e);
void tl_env_fini(struct tl_env *e);	/* removes everything */

/* Path of the sbfs binary under test ($SBFS_BIN, else build/sbfs). */
const char *tl_sbfs(void);

/*
 * Runs sbfs with argv (NULL-terminated, without "sbfs"), the env's state
 * directory in SBFS_STATE_DIR, stdin from `input` (NULL: /dev/null).
 */
struct tl_run tl_sbfs_run(const struct tl_env *e, const char *input, const char *const *argv);
/* Shorthands: `sbfs CMD [OPTS...] SRC TGT`; opts NULL-terminated, may be NULL. */
struct tl_run tl_cmd(const struct tl_env *e, const char *cmd, const char *const *opts);
void tl_run_free(struct tl_run *r);

/* Files under a root, relative path joined with "/" (mkdir -p for parents). */
char *tl_join(const char *dir, const char *rel);	/* malloc'd */
void tl_write(const char *dir, const char *rel, const char *content);
void tl_write_n(const char *dir, const char *rel, const void *buf, size_t n);
char *tl_read(const char *dir, const char *rel);	/* malloc'd, NULL if absent */
int tl_exists(const char *dir, const char *rel);	/* lstat succeeds */
void tl_mkdir(const char *dir, const char *rel);
void tl_rm(const char *dir, const char *rel);		/* rm -rf */
/* Sets mtime of rel to `sec` seconds since the epoch. */
void tl_set_mtime(const char *dir, const char *rel, long sec);
/*
 * 1 if both trees hold the same names, types, file contents, symlink
 * targets and permission bits (and file mtimes); otherwise 0, with the
 * first difference described in *why (malloc'd) when why is not NULL.
 */
int tl_trees_equal(const char *a, const char *b, char **why);
/* Count of entries beneath dir (not counting dir itself). */
size_t tl_count(const char *dir);

#endif
