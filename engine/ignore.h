/*
 * Ignore patterns (Syncthing's .stignore, Unison's ignore), in gitignore's
 * syntax. A path that is ignored is left alone: never copied, deleted or
 * conflicted by a reconcile, never descended into, and written to the
 * source only by a mount. Part of the engine's public interface.
 */
#ifndef SBFS_IGNORE_H
#define SBFS_IGNORE_H

#include <stddef.h>

struct sb_ignore;
struct sb_mirror;

/* Where a pattern came from; later ones take precedence (the last match wins). */
enum { SB_IGN_DEFAULT = 0, SB_IGN_FILE = 1, SB_IGN_CLI = 2 };

/* The per-partnership file, in sb_pship_dir(): one pattern per line. */
#define SB_IGNORE_FILE "ignore"
/* A line of the file that turns the default list off for the partnership. */
#define SB_IGNORE_NO_DEFAULTS "#no-defaults"

/* A set holding the default list (on). */
int sb_ignore_new(struct sb_ignore **out);
void sb_ignore_free(struct sb_ignore *ig);	/* NULL-safe */
/* Turns the default list off (--no-default-ignores). */
void sb_ignore_no_defaults(struct sb_ignore *ig);
int sb_ignore_defaults_off(const struct sb_ignore *ig);

/*
 * 0 when line is a pattern, a comment, a blank line or the no-defaults
 * line; SB_E_BADPATTERN otherwise, *why (may be NULL) saying why.
 */
int sb_ignore_check(const char *line, size_t len, const char **why);
/* Appends one line (see sb_ignore_check); comments and blanks add nothing. */
int sb_ignore_add(struct sb_ignore *ig, const char *line, size_t len, int origin);
/* A line of the file that is not a pattern. */
struct sb_ignore_bad {
	size_t line;		/* from 1 */
	const char *why;
	char text[256];		/* the line, may be cut short */
};
/*
 * Appends the lines of dir/ignore (none if it does not exist). A bad
 * pattern: SB_E_BADPATTERN, *bad says which; the set then holds the lines
 * before it. The file is never followed if it is a symlink.
 */
int sb_ignore_load(struct sb_ignore *ig, const char *dir, struct sb_ignore_bad *bad);
/*
 * Adds line to dir/ignore (add != 0) or removes every line equal to it.
 * Written to a new file renamed over the old one. 0 when the file
 * changed, 1 when there was nothing to do (already there, not there).
 */
int sb_ignore_edit(const char *dir, const char *line, int add);

/* Whether rel (len bytes, any bytes but NUL) is ignored as a directory
 * (is_dir) or as anything else, ignored directories above it included. */
int sb_ignore_path(const struct sb_ignore *ig, const char *rel, size_t len, int is_dir);
/* The same for rel alone, its parents known not to be ignored. */
int sb_ignore_match(const struct sb_ignore *ig, const char *rel, size_t len, int is_dir);
/* 1: rel is ignored as a non-directory, 2: as a directory; ORed. */
int sb_ignore_kinds(const struct sb_ignore *ig, const char *rel, size_t len);

/* The lines of the set in order (defaults first), for showing. */
size_t sb_ignore_count(const struct sb_ignore *ig);
const char *sb_ignore_line(const struct sb_ignore *ig, size_t i, int *origin);

/*
 * The mount shows ignored paths from the source and writes them there
 * only. ig must outlive m; set before the mount serves.
 */
void sb_mirror_set_ignore(struct sb_mirror *m, const struct sb_ignore *ig);

#endif
