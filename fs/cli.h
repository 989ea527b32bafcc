/* The sbfs command: shared between its files. */
#ifndef SBFS_CLI_H
#define SBFS_CLI_H

#include <stdio.h>

#include "sbfs.h"

/* Exit statuses, as documented in the README. */
enum {
	EXIT_SYNCED = 0,	/* in sync (status: nothing pending) */
	EXIT_PENDING = 1,	/* conflicts or skipped paths remain (status: changes pending) */
	EXIT_USAGE = 2,		/* bad usage or input, or a refusal: nothing changed */
	EXIT_FAILED = 3,	/* a failure during the run */
};

/* report.c */
void put_path(FILE *f, const char *s, size_t len);	/* printable, escaped */
void put_time(FILE *f, int64_t ns);
const char *op_label(int op, int to);
void print_plan(FILE *f, struct sb_plan *plan, int list_actions);
void print_conflict(FILE *f, size_t n, const struct sb_item *it);
void print_plan_json(FILE *f, struct sb_pship *p, struct sb_plan *plan);
void print_conflicts_json(FILE *f, struct sb_pship *p, const struct sb_conflict_list *l);
const char *suggest_name(int s);

/* mount.c */
int cmd_mount(int argc, char **argv, int (*reconcile)(int, char **));
int cmd_umount(int argc, char **argv);

/* error() returns -1, so callers can write `return error(...)`. */
int error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warning(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
