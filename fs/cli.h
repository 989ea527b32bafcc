/* The sbfs command: shared between its files. */
#ifndef SBFS_CLI_H
#define SBFS_CLI_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>

#include "sbfs.h"

/* Exit statuses, as documented in the README. */
enum {
	EXIT_SYNCED = 0,	/* in sync (status: nothing pending) */
	EXIT_PENDING = 1,	/* conflicts or skipped paths remain (status: changes pending) */
	EXIT_USAGE = 2,		/* bad usage or input, or a refusal: nothing changed */
	EXIT_FAILED = 3,	/* a failure during the run */
};

/*
 * Where a command talks to its user: the process's own streams, or, when a
 * mount runs the command for a client, that client's (see control.c).
 */
extern __thread FILE *cli_out, *cli_err, *cli_in;
#define OUT (cli_out ? cli_out : stdout)
#define ERR (cli_err ? cli_err : stderr)
#define IN (cli_in ? cli_in : stdin)

/* report.c */
void put_path(FILE *f, const char *s, size_t len);	/* printable, escaped */
void put_time(FILE *f, int64_t ns);
const char *op_label(int op, int to);
void print_plan(FILE *f, struct sb_pship *p, struct sb_plan *plan, int list_actions);
void print_conflict(FILE *f, size_t n, const struct sb_item *it);
void print_plan_json(FILE *f, struct sb_pship *p, struct sb_plan *plan);
void print_conflicts_json(FILE *f, struct sb_pship *p, const struct sb_conflict_list *l);
const char *suggest_name(int s);

/* commands.c: the one table of commands and their options */
enum cli_opt_id {
	OPT_DRY_RUN, OPT_QUIET, OPT_HELP, OPT_AUTO, OPT_MASS, OPT_LOG, OPT_STATE,
	OPT_JSON, OPT_SRC, OPT_TGT, OPT_KEEP, OPT_FG, OPT_FUSE, OPT_IGNORE, OPT_NO_DEF_IGN,
	OPT_ADD, OPT_REMOVE, OPT_WATCH, OPT_LAZY, OPT_KEEP_VERSIONS, OPT_KEEP_DAYS, OPT_PRUNE,
	CLI_NOPTS
};
struct ctx;
struct cli_cmd {
	const char *name;
	const char *usage;
	int (*run)(struct ctx *c, int argc, char **argv);
	int forward;		/* a mount runs it for a client (control.c) */
	unsigned opts;		/* 1 << enum cli_opt_id for each option it takes */
};
extern const char cli_usage_main[];
const struct cli_cmd *cli_cmd(const char *name);	/* NULL if unknown */
const char *cli_opt_spelling(int id);	/* "--long-name", or "-x" */
/*
 * Parses argv (argv[0] the command's name) with getopt_long against cmd's
 * options, calling fn with each option's id and value; stops at a negative
 * return of fn and returns it. Otherwise returns the index of the first
 * operand (argv is permuted: operands last), or -1 for an unknown option or
 * a missing value (said on stderr unless quiet), or -3 for an empty value
 * (said; -1 when quiet).
 */
int cli_options(const struct cli_cmd *cmd, int argc, char **argv, int quiet,
		int (*fn)(void *arg, int id, char *val), void *arg);

/* ignore.c: the ignore options of a command that scans */
struct sb_ignore;
struct cli_ign {
	const char **pat;	/* --ignore, in order */
	size_t n;
	int no_defaults;	/* --no-default-ignores */
	struct { int add; const char *pat; } *edit;	/* sbfs ignore --add, --remove */
	size_t nedit;
};
/* Takes OPT_IGNORE, OPT_NO_DEF_IGN, OPT_ADD, OPT_REMOVE; -3 once a bad
 * pattern is said, -4 out of memory. */
int cli_ign_opt(struct cli_ign *g, int id, const char *val);
/* The effective set for p: defaults, p's ignore file, then --ignore. 0, or
 * an exit status once the error is said. */
int cli_ign_build(const struct cli_ign *g, struct sb_pship *p, struct sb_ignore **out);
/* The options again, for a reconcile run on the command's behalf. */
int cli_ign_args(const struct cli_ign *g, char **av);
void cli_ign_free(struct cli_ign *g);
/* dst (empty) gets src's --ignore patterns and --no-default-ignores. */
int cli_ign_copy(struct cli_ign *dst, const struct cli_ign *src);

struct ctx {
	const struct cli_cmd *cmd;
	struct cli_ign ign;
	int dry_run, json, quiet, allow_mass;
	int keep_given;		/* 1: --keep-versions, 2: --keep-days given */
	unsigned keep_versions, keep_days, prune;
	int policy;		/* SB_CHOOSE_* for resolve flags; see auto_policy */
	int auto_policy;	/* 0 none, 1 source, 2 target, 3 newer, 4 suggested */
	const char *log_file, *state_dir;
	int progress;		/* ERR is a terminal */
	int progress_shown;
	FILE *prompt_in;
	size_t prompted;
	int eof;
	char **dirty;		/* half written by a killed mount: source wins */
	size_t ndirty;
	/* set when a mount runs the command for a client (control.c) */
	struct sb_pship *shared;
	int readonly;		/* the mount is: run nothing that writes */
	void (*changed)(void *arg, const char *path, size_t len);
	void *changed_arg;
	/* set by the mount's automatic reconcile (autosync.c) */
	const char *const *paths;	/* the plan limited to these; NULL: the whole tree */
	size_t npaths;
	int nothing;		/* out: nothing pending was found */
	char why[512];		/* out: why the run was refused, or "" */
};

/* main.c: the commands a mount can also run for a client */
int cmd_reconcile(struct ctx *c, int argc, char **argv);
int cmd_status(struct ctx *c, int argc, char **argv);
int cmd_conflicts(struct ctx *c, int argc, char **argv);
int cmd_resolve(struct ctx *c, int argc, char **argv);

/* control.c: a mount's control socket, and the client side */
struct sb_mirror;
struct control;
int control_start(struct sb_pship *p, struct sb_mirror *m, const char *mountpoint,
		  int readonly, const struct cli_ign *ign,
		  void (*changed)(void *arg, const char *path, size_t len), void *arg,
		  struct control **out);
void control_stop(struct control *c);
/*
 * Runs a command (cx->cmd, argv) in the mount as for a client, in the
 * streams cli_in, cli_out and cli_err give: one at a time, with the mirror
 * held exclusively, and what it changed invalidated afterwards. Before
 * control_stop. The command's exit status.
 */
int control_run(struct control *c, struct ctx *cx, int argc, char **argv);
/* Logs a line about an automatic reconcile (sb_pship_log_note), said on
 * stderr should the log refuse it. */
void control_note(struct control *c, uint64_t paths, const char *result, const char *reason);
/* Runs argv in the mount that owns its partnership, if one does; returns the
 * exit status, or -1 when no mount owns it (run it here then). */
int control_forward(const struct cli_cmd *cmd, int argc, char **argv);
/* The mount point of a live mount of the partnership in dir, or NULL. */
char *control_mounted(const char *dir);

/* mount.c */
int cmd_mount(struct ctx *c, int argc, char **argv);
int cmd_umount(struct ctx *c, int argc, char **argv);
int cmd_forget(struct ctx *c, int argc, char **argv);	/* main.c */
int cmd_ignore(struct ctx *c, int argc, char **argv);	/* ignore.c */
/* main.c: a PATH operand, relative or absolute inside a root (malloc'd). */
char *rel_path(struct sb_pship *p, const char *arg);
int cmd_versions(struct ctx *c, int argc, char **argv);	/* versions.c */
int cmd_restore(struct ctx *c, int argc, char **argv);
/* --keep-versions and --keep-days onto p for this command; the limits p
 * had, for versions_put_back(). */
void versions_apply(const struct ctx *c, struct sb_pship *p, unsigned saved[2]);
void versions_put_back(struct sb_pship *p, const unsigned saved[2]);

/* busy.c: the processes using what is under mnt, as "  PID COMMAND"
 * lines to f after a heading; their count, and in *hidden that of the
 * processes we may not look at (another user's). */
int busy_holders(FILE *f, const char *mnt, int *hidden);

/* version.c: sbfs --version, with the libraries' versions */
void cli_version(FILE *f);

/* fstab.c: sbfs as mount(8)'s helper */
/* Whether arg is SOURCE:TARGET: it holds a ':' not written as "\:". */
int fstab_spec(const char *arg);
/* `sbfs SOURCE:TARGET MOUNTPOINT [-o OPTS]` (argv[0] the program) run as
 * `sbfs mount`; returns the exit status. */
int fstab_main(struct ctx *c, int argc, char **argv);
/* *out: in without the options that are mount(8)'s, not the file system's
 * (defaults, noauto, nofail, _netdev, x-*, ...), NULL if none is left;
 * 0 or -ENOMEM. */
int fstab_filter_opts(const char *in, char **out);
/* main.c: parses a command's options into c; the index of the first
 * operand, -2 after --help, or another negative value once said. */
int cli_parse(struct ctx *c, int argc, char **argv);
/* cli_parse() for a command of exactly SOURCE TARGET: -1 with *i at
 * SOURCE, else the exit status to return (0 after --help, 2 bad usage). */
int cli_parse_pair(struct ctx *c, int argc, char **argv, int *i);

/* syslog.c: a background mount's messages, to syslog (SBFS_TEST_SYSLOG=FILE:
 * to FILE, for the tests), each naming the partnership */
#define DLOG_BURST 5	/* the same text said at most so many times ... */
#define DLOG_WINDOW 60	/* ... in so many seconds; then counted, the count said once */
int dlog_open(const char *src, const char *tgt);	/* 0 or -errno */
int dlog_on(void);	/* between dlog_open and dlog_close */
void dlog_say(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void dlog_vsay(int prio, const char *fmt, va_list ap);
/* dlog_say of text at now (seconds, any origin): for the tests */
void dlog_at(int prio, const char *text, int64_t now);
void dlog_close(void);	/* says what repeats were held back */

/* error() returns -1, so callers can write `return error(...)`. */
int error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
