/*
 * sbfs: the command line. Each command opens the partnership, asks the
 * engine, and reports; errors are reported here, once, with path and cause.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli.h"
#include "ignore.h"



/* ------------------------------------------------------------ hooks */

static void clear_progress(struct ctx *c)
{
	if (c->progress_shown) {
		fputs("\r\033[K", ERR);
		c->progress_shown = 0;
	}
}

static void hook_warn(void *arg, const char *rel, size_t len, int err, const char *what)
{
	struct ctx *c = arg;
	clear_progress(c);
	fputs("sbfs: warning: ", ERR);
	put_path(ERR, rel, len);
	fprintf(ERR, ": %s (%s)\n", what, sb_strerror(err));
}

static void hook_progress(void *arg, int applying, uint64_t done, uint64_t total)
{
	struct ctx *c = arg;
	if (!c->progress)
		return;
	if (applying)
		fprintf(ERR, "\r\033[KApplying: %llu/%llu", (unsigned long long)done,
			(unsigned long long)total);
	else
		fprintf(ERR, "\r\033[KScanning: %llu entries", (unsigned long long)done);
	c->progress_shown = 1;
}

static int choose_auto(void *arg, const struct sb_item *it)
{
	struct ctx *c = arg;
	const struct sb_sideinfo *s = &it->conflict.side[0], *t = &it->conflict.side[1];
	/* Written through a mount that was killed mid-write: the sides differ
	 * only by the write in flight, so the source's version is as good. */
	for (size_t i = 0; i < c->ndirty; i++)
		if (strlen(c->dirty[i]) == it->len && !memcmp(c->dirty[i], it->path, it->len))
			return SB_CHOOSE_SOURCE;
	switch (c->auto_policy) {
	case 1: return SB_CHOOSE_SOURCE;
	case 2: return SB_CHOOSE_TARGET;
	case 3:
		if (s->type == SB_NONE || t->type == SB_NONE || s->mtime_ns == t->mtime_ns)
			return SB_CHOOSE_SKIP;
		return s->mtime_ns > t->mtime_ns ? SB_CHOOSE_SOURCE : SB_CHOOSE_TARGET;
	case 4:
		if (it->conflict.suggest == SB_SUGGEST_SOURCE)
			return SB_CHOOSE_SOURCE;
		if (it->conflict.suggest == SB_SUGGEST_TARGET)
			return SB_CHOOSE_TARGET;
	}
	return SB_CHOOSE_SKIP;
}

static int choose_prompt(void *arg, const struct sb_item *it)
{
	struct ctx *c = arg;
	char line[64];
	int sug = it->conflict.suggest;

	if (c->policy)
		return c->policy;
	if (c->eof)
		return SB_CHOOSE_SKIP;
	clear_progress(c);
	print_conflict(OUT, ++c->prompted, it);
	for (;;) {
		fprintf(OUT, "   [s]ource wins, [t]arget wins, [k]eep both, skip%s%s%s: ",
		       sug != SB_SUGGEST_NONE ? " (Enter = " : "",
		       sug != SB_SUGGEST_NONE ? suggest_name(sug) : "",
		       sug != SB_SUGGEST_NONE ? ")" : "");
		fflush(OUT);
		if (!fgets(line, sizeof(line), c->prompt_in)) {
			c->eof = 1;
			fprintf(OUT, "\n   (no answer: skipped)\n");
			return SB_CHOOSE_SKIP;
		}
		line[strcspn(line, "\r\n")] = '\0';
		if (!isatty(fileno(c->prompt_in)))
			fprintf(OUT, "%s\n", line);
		if (!strcmp(line, "") && sug != SB_SUGGEST_NONE)
			return sug == SB_SUGGEST_SOURCE ? SB_CHOOSE_SOURCE : SB_CHOOSE_TARGET;
		if (!strcmp(line, "s") || !strcmp(line, "source"))
			return SB_CHOOSE_SOURCE;
		if (!strcmp(line, "t") || !strcmp(line, "target"))
			return SB_CHOOSE_TARGET;
		if (!strcmp(line, "k") || !strcmp(line, "keep") || !strcmp(line, "keep both"))
			return SB_CHOOSE_KEEP_BOTH;
		if (!strcmp(line, "skip"))
			return SB_CHOOSE_SKIP;
		fprintf(OUT, "   Please answer s, t, k or skip.\n");
	}
}

/* ------------------------------------------------------------ helpers */

/* A mount running this command refreshes what the kernel cached of these. */
static void tell_changed(struct ctx *c, struct sb_plan *plan)
{
	struct sb_item it;
	if (!c->changed)
		return;
	sb_plan_rewind(plan);
	while (sb_plan_next(plan, &it) > 0)
		if (it.op != SB_OP_SKIP)
			c->changed(c->changed_arg, it.path, it.len);
}

/* Whether the plan deletes anything on either side. */
static int plan_deletes(struct sb_plan *plan)
{
	const struct sb_plan_stats *st = sb_plan_stats(plan);
	return st->del[0] || st->del[1];
}

/* After the error line of a state that cannot be trusted: why nothing was
 * done and the way out. src, tgt as the user gave them. */
static void state_hint(int code, const char *src, const char *tgt)
{
	switch (code) {
	case SB_E_STATE_LOST:
		fprintf(ERR, "      Going on without it would bring back every file deleted since the last\n"
			"      sync, so nothing was changed: both sides are as they were.\n");
		break;
	case SB_E_STATE_CORRUPT:
		fprintf(ERR, "      Nothing was changed: both sides are as they were.\n");
		break;
	case SB_E_STATE_FOREIGN:
	case SB_E_STATE_WRITABLE:
	case SB_E_STATE_SYMLINK:
		fprintf(ERR, "      Nothing was changed. State directories must be real directories owned\n"
			"      by you and writable by you alone; state files must not be symlinks.\n");
		return;
	default:
		return;
	}
	fprintf(ERR, "      To start again from a first sync (it copies what one side lacks and\n"
		"      deletes nothing), move the state aside with:\n"
		"        sbfs forget %s %s\n", src, tgt);
}

static int open_pship(struct ctx *c, const char *src, const char *tgt, struct sb_pship **p)
{
	struct sb_error err = { 0 };
	int ret;
	if (c->shared) {
		/* The mount's partnership, logging where this client asked to
		 * (control.c puts the mount's log back afterwards). */
		if (c->log_file && (ret = sb_pship_set_log(c->shared, c->log_file)) < 0) {
			error("%s: %s", c->log_file, sb_strerror(ret));
			return EXIT_USAGE;
		}
		*p = c->shared;
		return 0;
	}
	ret = sb_pship_open(src, tgt, c->state_dir, c->log_file, p, &err);
	if (ret < 0) {
		error("%s: %s", err.path, sb_strerror(ret));
		state_hint(ret, src, tgt);
		return EXIT_USAGE;
	}
	return 0;
}

static int lock_pship(struct ctx *c, struct sb_pship *p)
{
	long holder = 0;
	if (c->shared)
		return 0;	/* the mount holds it */
	int ret = sb_pship_lock(p, 0, &holder);
	if (ret == -EWOULDBLOCK) {
		fprintf(ERR, "sbfs: another sbfs (pid %ld) is working on this partnership; waiting...\n",
			holder);
		ret = sb_pship_lock(p, 1, &holder);
	}
	if (ret < 0) {
		error("cannot lock the partnership's state: %s", sb_strerror(ret));
		return EXIT_FAILED;
	}
	return 0;
}

static int run_plan(struct ctx *c, struct sb_pship *p, const char *const *paths,
		    size_t n, struct sb_hooks *h, struct sb_plan **plan)
{
	int ret = sb_plan_build(p, paths, n, h, plan);
	clear_progress(c);
	if (ret == SB_E_STATE_CORRUPT) {
		error("%s/data.mdb: %s", sb_pship_dir(p), sb_strerror(ret));
		state_hint(ret, sb_pship_root(p, 0), sb_pship_root(p, 1));
		return EXIT_USAGE;
	}
	if (ret == SB_E_GONE) {
		int err, side = sb_pship_gone(p, &err) - 1;
		/* What it could not show is neither deleted nor there: no plan. */
		error("the %s %s went away during the scan (%s): nothing was changed; "
		      "run again once it is back", side ? "target" : "source",
		      sb_pship_root(p, side), sb_strerror(err));
		return EXIT_USAGE;
	}
	if (ret < 0) {
		error("scanning %s and %s failed: %s", sb_pship_root(p, 0),
		      sb_pship_root(p, 1), sb_strerror(ret));
		return ret == SB_E_BADPATH ? EXIT_USAGE : EXIT_FAILED;
	}
	return 0;
}

/* One message for a partner that went away during the run (not one per
 * path it left); EXIT_FAILED. */
static int report_gone(struct sb_pship *p, const struct sb_apply_result *res)
{
	fflush(OUT);
	error("the %s %s went away during the run (%s): %llu of %llu changes done, "
	      "the rest left for the next run; nothing was lost",
	      res->gone == 1 ? "source" : "target", sb_pship_root(p, res->gone - 1),
	      sb_strerror(res->gone_err), (unsigned long long)res->done,
	      (unsigned long long)(res->done + res->left + res->skipped + res->failed));
	return EXIT_FAILED;
}

static int parse_policy(const char *s)
{
	static const char *const names[] = { "source", "target", "newer", "suggested" };
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, names[i]))
			return i + 1;
	return 0;
}

static int set_opt(void *arg, int id, char *val)
{
	struct ctx *c = arg;
	switch (id) {
	case OPT_DRY_RUN: c->dry_run = 1; break;
	case OPT_QUIET: c->quiet = 1; break;
	case OPT_HELP: fputs(c->cmd->usage, OUT); return -2;
	case OPT_AUTO:
		if (!(c->auto_policy = parse_policy(val))) {
			error("--auto-resolve: unknown policy '%s' (source, target, newer, suggested)", val);
			return -3;
		}
		break;
	case OPT_MASS: c->allow_mass = 1; break;
	case OPT_LOG: c->log_file = val; break;
	case OPT_STATE: c->state_dir = val; break;
	case OPT_JSON: c->json = 1; break;
	case OPT_SRC: c->policy = SB_CHOOSE_SOURCE; break;
	case OPT_TGT: c->policy = SB_CHOOSE_TARGET; break;
	case OPT_KEEP: c->policy = SB_CHOOSE_KEEP_BOTH; break;
	case OPT_KEEP_VERSIONS: case OPT_KEEP_DAYS: {
		char *end;
		errno = 0;
		unsigned long n = strtoul(val, &end, 10);
		if (*end || errno || n > 1000000 || val[0] == '-') {
			error("%s '%s': not a number from 0 to 1000000", cli_opt_spelling(id), val);
			return -3;
		}
		c->keep_given |= id == OPT_KEEP_VERSIONS ? 1 : 2;
		*(id == OPT_KEEP_VERSIONS ? &c->keep_versions : &c->keep_days) = (unsigned)n;
		break;
	}
	case OPT_PRUNE: c->prune = 1; break;
	case OPT_IGNORE: case OPT_NO_DEF_IGN: case OPT_ADD: case OPT_REMOVE:
		return cli_ign_opt(&c->ign, id, val);
	}
	return 0;
}

int cli_parse(struct ctx *c, int argc, char **argv)
{
	int i = cli_options(c->cmd, argc, argv, 0, set_opt, c);
	if (i == -1)
		fputs(c->cmd->usage, ERR);
	return i;
}

int cli_parse_pair(struct ctx *c, int argc, char **argv, int *i)
{
	*i = cli_parse(c, argc, argv);
	if (*i < 0)
		return *i == -2 ? EXIT_SYNCED : EXIT_USAGE;
	if (argc - *i != 2) {
		fputs(c->cmd->usage, ERR);
		return EXIT_USAGE;
	}
	return -1;
}

/* A read-only mount writes neither partner (nor the state). */
static int refuse_readonly(const char *src, const char *tgt)
{
	error("%s and %s are mounted read-only: nothing may write them while so mounted "
	      "(unmount first; --dry-run and status work)", src, tgt);
	return EXIT_USAGE;
}

/* ------------------------------------------------------------ commands */

static int reconcile(struct ctx *c, int argc, char **argv, int status_only)
{
	struct sb_pship *p = NULL;
	struct sb_plan *plan = NULL;
	struct sb_hooks h = { .arg = c, .warn = hook_warn, .progress = hook_progress };
	struct sb_apply_result res;
	struct sb_ignore *ig = NULL;
	int ret, side;

	int i, done = cli_parse_pair(c, argc, argv, &i);
	if (done >= 0)
		return done;
	if (status_only)
		c->dry_run = 1;
	if (c->readonly && !c->dry_run)
		return refuse_readonly(argv[i], argv[i + 1]);
	if ((ret = open_pship(c, argv[i], argv[i + 1], &p)) ||
	    (ret = cli_ign_build(&c->ign, p, &ig)))
		goto out;
	h.ignore = ig;
	/* A mount that was killed may have left files half written. */
	if (!c->shared && sb_journal_dirty(p, &c->dirty, &c->ndirty) == 0 && c->ndirty && !c->json) {
		fprintf(OUT, "%zu file(s) were being written through a mount that stopped; "
			"their source version wins (the sides differ at most by the write in flight):\n",
			c->ndirty);
		for (size_t k = 0; k < c->ndirty; k++) {
			fputs("  ", OUT);
			put_path(OUT, c->dirty[k], strlen(c->dirty[k]));
			fputc('\n', OUT);
		}
	}
	if (c->auto_policy || c->ndirty)
		h.choose = choose_auto;
	if (!c->dry_run && (ret = lock_pship(c, p)))
		goto out;
	if (!c->json) {
		fprintf(OUT, "Scanning source directory...\nScanning target directory...\nAnalyzing differences...\n");
		fflush(OUT);
	}
	if ((ret = run_plan(c, p, c->paths, c->npaths, &h, &plan)))
		goto out;
	/* The mass-deletion guard weighs the whole tree against the state: a
	 * limited plan that deletes is made again whole, so a side emptied
	 * one event at a time is refused as a reconcile would refuse it. */
	if (c->paths && plan_deletes(plan)) {
		sb_plan_free(plan);
		plan = NULL;
		c->paths = NULL;
		c->npaths = 0;
		if ((ret = run_plan(c, p, NULL, 0, &h, &plan)))
			goto out;
	}
	const struct sb_plan_stats *st = sb_plan_stats(plan);
	int pending = sb_plan_changes(plan) || st->conflicts || st->skipped;
	if (c->json)
		print_plan_json(OUT, p, plan);
	else
		print_plan(OUT, p, plan, !c->quiet);
	if (sb_plan_check_mass(plan, &side) == SB_E_MASS && !c->allow_mass) {
		const char *name = side ? "target" : "source";
		fflush(OUT);
		if (st->unlisted[side])
			snprintf(c->why, sizeof(c->why), "the %s %s cannot be listed: %s", name,
				 sb_pship_root(p, side), sb_strerror(st->unlisted[side]));
		else if (st->seen[side] == 0)
			snprintf(c->why, sizeof(c->why),
				 "the %s %s is empty, but the last sync recorded %llu entries", name,
				 sb_pship_root(p, side), (unsigned long long)st->state_entries);
		else
			snprintf(c->why, sizeof(c->why),
				 "the %s %s has lost %llu of the %llu entries the last sync recorded",
				 name, sb_pship_root(p, side), (unsigned long long)st->missing[side],
				 (unsigned long long)st->state_entries);
		error("refusing to sync: %s.", c->why);
		fprintf(ERR, "      Is a disk unplugged or unmounted? Nothing was changed.\n"
			"      If the deletions are intended, run again with --allow-mass-delete.\n");
		ret = EXIT_USAGE;
		goto out;
	}
	if (c->dry_run) {
		if (!c->json && !pending)
			fprintf(OUT, "\nNothing to do: source and target are in sync.\n");
		ret = pending ? EXIT_PENDING : EXIT_SYNCED;
		goto out;
	}
	c->nothing = !pending;
	if (!pending && sb_plan_count(plan) == 0) {
		if (c->ndirty)
			sb_journal_clear(p);
		fprintf(OUT, "\nNothing to do: source and target are in sync.\n");
		ret = EXIT_SYNCED;
		goto out;
	}
	unsigned saved[2];
	versions_apply(c, p, saved);
	ret = sb_plan_apply(p, plan, &h, !c->paths, &res);
	versions_put_back(p, saved);
	clear_progress(c);
	tell_changed(c, plan);
	if (ret < 0) {
		error("sync of %s and %s stopped: %s", sb_pship_root(p, 0),
		      sb_pship_root(p, 1), sb_strerror(ret));
		ret = EXIT_FAILED;
		goto out;
	}
	if (c->ndirty && !res.failed)
		sb_journal_clear(p);
	fprintf(OUT, "\n=== RESULT ===\nDone: %llu, skipped: %llu, failed: %llu, conflicts left: %llu\n",
	       (unsigned long long)res.done, (unsigned long long)res.skipped,
	       (unsigned long long)res.failed, (unsigned long long)res.conflicts);
	if (res.conflicts)
		fprintf(OUT, "Resolve with: sbfs resolve %s %s\n", sb_pship_root(p, 0), sb_pship_root(p, 1));
	ret = res.failed ? EXIT_FAILED : res.conflicts || res.skipped ? EXIT_PENDING : EXIT_SYNCED;
	if (res.gone)
		ret = report_gone(p, &res);
out:
	for (size_t k = 0; k < c->ndirty; k++)
		free(c->dirty[k]);
	free(c->dirty);
	c->dirty = NULL;
	c->ndirty = 0;
	sb_plan_free(plan);
	sb_ignore_free(ig);
	if (!c->shared)
		sb_pship_close(p);
	return ret;
}

int cmd_reconcile(struct ctx *c, int argc, char **argv)
{
	return reconcile(c, argc, argv, 0);
}

int cmd_status(struct ctx *c, int argc, char **argv)
{
	return reconcile(c, argc, argv, 1);
}

int cmd_conflicts(struct ctx *c, int argc, char **argv)
{
	struct sb_pship *p = NULL;
	struct sb_conflict_list l = { 0 };
	int ret;

	int i, done = cli_parse_pair(c, argc, argv, &i);
	if (done >= 0)
		return done;
	if ((ret = open_pship(c, argv[i], argv[i + 1], &p)))
		goto out;
	if ((ret = sb_conflicts_list(p, &l)) < 0) {
		error("cannot read the state %s/data.mdb of %s and %s: %s", sb_pship_dir(p),
		      sb_pship_root(p, 0), sb_pship_root(p, 1), sb_strerror(ret));
		state_hint(ret, sb_pship_root(p, 0), sb_pship_root(p, 1));
		ret = ret == SB_E_STATE_CORRUPT ? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}
	if (c->json) {
		print_conflicts_json(OUT, p, &l);
	} else if (!l.n) {
		fprintf(OUT, "No conflicts.\n");
	} else {
		fprintf(OUT, "=== CONFLICTS (manual resolution required) ===\n");
		for (size_t k = 0; k < l.n; k++) {
			struct sb_item it = { .op = SB_OP_CONFLICT, .path = l.v[k].path,
					      .len = l.v[k].len, .conflict = l.v[k].c };
			print_conflict(OUT, k + 1, &it);
		}
	}
	ret = l.n ? EXIT_PENDING : EXIT_SYNCED;
out:
	sb_conflicts_free(&l);
	if (!c->shared)
		sb_pship_close(p);
	return ret;
}

/* A PATH operand: relative, or absolute inside one of the roots. */
char *rel_path(struct sb_pship *p, const char *arg)
{
	const char *r = arg;
	for (int s = 0; s < 2 && arg[0] == '/'; s++) {
		const char *root = sb_pship_root(p, s);
		size_t n = strlen(root);
		if (!strncmp(arg, root, n) && (arg[n] == '/' || !arg[n])) {
			r = arg + n;
			break;
		}
	}
	while (*r == '/')
		r++;
	char *res = strdup(r);
	if (!res)
		return NULL;
	size_t n = strlen(res);
	while (n && res[n - 1] == '/')
		res[--n] = '\0';
	while (!strncmp(res, "./", 2))
		memmove(res, res + 2, strlen(res + 2) + 1);
	return res;
}

int cmd_resolve(struct ctx *c, int argc, char **argv)
{
	struct sb_pship *p = NULL;
	struct sb_plan *plan = NULL;
	struct sb_conflict_list l = { 0 };
	struct sb_hooks h = { .arg = c, .warn = hook_warn, .progress = hook_progress,
			      .choose = choose_prompt };
	struct sb_apply_result res;
	char **paths = NULL;
	size_t n = 0;
	struct sb_ignore *ig = NULL;
	int ret;

	int i = cli_parse(c, argc, argv);
	if (i < 0)
		return i == -2 ? EXIT_SYNCED : EXIT_USAGE;
	if (argc - i < 2) {
		fputs(c->cmd->usage, ERR);
		return EXIT_USAGE;
	}
	if (c->readonly)
		return refuse_readonly(argv[i], argv[i + 1]);
	c->prompt_in = IN;
	if ((ret = open_pship(c, argv[i], argv[i + 1], &p)) ||
	    (ret = cli_ign_build(&c->ign, p, &ig)))
		goto out;
	h.ignore = ig;
	if ((ret = lock_pship(c, p)))
		goto out;
	if (argc - i > 2) {
		n = argc - i - 2;
		ret = EXIT_USAGE;
		if (!(paths = calloc(n, sizeof(*paths))))
			goto out;
		for (size_t k = 0; k < n; k++) {
			if (!(paths[k] = rel_path(p, argv[i + 2 + k])) || !*paths[k] ||
			    !sb_rel_valid(paths[k], strlen(paths[k]))) {
				error("%s: not a path inside the partners", argv[i + 2 + k]);
				goto out;
			}
		}
	} else {
		if ((ret = sb_conflicts_list(p, &l)) < 0) {
			error("cannot read the state %s/data.mdb: %s", sb_pship_dir(p), sb_strerror(ret));
			state_hint(ret, sb_pship_root(p, 0), sb_pship_root(p, 1));
			ret = ret == SB_E_STATE_CORRUPT ? EXIT_USAGE : EXIT_FAILED;
			goto out;
		}
		if (!l.n) {
			fprintf(OUT, "No conflicts recorded. Run sbfs reconcile to look for changes.\n");
			ret = EXIT_SYNCED;
			goto out;
		}
		ret = EXIT_FAILED;
		if (!(paths = calloc(l.n, sizeof(*paths))))
			goto out;
		for (n = 0; n < l.n; n++)
			paths[n] = l.v[n].path, l.v[n].path = NULL;
	}
	if ((ret = run_plan(c, p, (const char *const *)paths, n, &h, &plan)))
		goto out;
	struct sb_item it;
	size_t settled = 0;
	sb_plan_rewind(plan);
	while (sb_plan_next(plan, &it) > 0)
		settled += it.resolved;
	unsigned saved[2];
	versions_apply(c, p, saved);
	ret = sb_plan_apply(p, plan, &h, 0, &res);
	versions_put_back(p, saved);
	clear_progress(c);
	tell_changed(c, plan);
	if (ret < 0) {
		error("resolving stopped: %s", sb_strerror(ret));
		ret = EXIT_FAILED;
		goto out;
	}
	fprintf(OUT, "Resolved: %zu, actions done: %llu, skipped: %llu, failed: %llu, conflicts left: %llu\n",
	       settled, (unsigned long long)res.done, (unsigned long long)res.skipped,
	       (unsigned long long)res.failed, (unsigned long long)res.conflicts);
	ret = res.failed ? EXIT_FAILED : res.conflicts || res.skipped ? EXIT_PENDING : EXIT_SYNCED;
	if (res.gone)
		ret = report_gone(p, &res);
out:
	for (size_t k = 0; paths && k < n; k++)
		free(paths[k]);
	free(paths);
	sb_conflicts_free(&l);
	sb_plan_free(plan);
	sb_ignore_free(ig);
	if (!c->shared)
		sb_pship_close(p);
	return ret;
}

/* Works without opening the state, which may be the thing that is broken. */
int cmd_forget(struct ctx *c, int argc, char **argv)
{
	struct sb_error err = { 0 };
	char *moved = NULL;
	int ret;

	int i, done = cli_parse_pair(c, argc, argv, &i);
	if (done >= 0)
		return done;
	ret = sb_pship_forget(argv[i], argv[i + 1], c->state_dir, &moved, &err);
	if (ret == -EBUSY) {
		error("%s: a reconcile or mount is working on this partnership; try again once it is done",
		      err.path);
		ret = EXIT_USAGE;
	} else if (ret < 0) {
		error("%s: %s", err.path, sb_strerror(ret));
		ret = EXIT_USAGE;
	} else {
		if (moved)
			fprintf(OUT, "The state of %s and %s was moved aside to\n  %s\n", argv[i],
				argv[i + 1], moved);
		else
			fprintf(OUT, "No state is recorded for %s and %s.\n", argv[i], argv[i + 1]);
		fprintf(OUT, "The next reconcile is a first sync: it copies what one side lacks, records\n"
			"what is the same on both, shows the rest as conflicts, and deletes nothing.\n");
		ret = EXIT_SYNCED;
	}
	free(moved);
	return ret;
}

/* Deep trees hold a directory fd per level and side. */
static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int main(int argc, char **argv)
{
	struct ctx c = { 0 };
	const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];

	/* mount(8)'s helper: mount.fuse.sbfs, or what mount.fuse3 runs */
	if (!strcmp(prog, "mount.fuse.sbfs") || !strcmp(prog, "mount.sbfs") ||
	    (argc > 1 && !cli_cmd(argv[1]) && fstab_spec(argv[1]))) {
		raise_nofile();
		c.progress = isatty(fileno(ERR));
		int r = fstab_main(&c, argc, argv);
		cli_ign_free(&c.ign);
		return r;
	}
	if (argc < 2) {
		fputs(cli_usage_main, ERR);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		fputs(cli_usage_main, OUT);
		return EXIT_SYNCED;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		cli_version(OUT);
		return EXIT_SYNCED;
	}
	raise_nofile();
	if (!(c.cmd = cli_cmd(argv[1]))) {
		error("unknown command '%s' (see sbfs --help)", argv[1]);
		return EXIT_USAGE;
	}
	c.progress = isatty(fileno(ERR));
	argc--;
	argv++;
	if (c.cmd->forward) {
		int r = control_forward(c.cmd, argc, argv);
		if (r >= 0)
			return r;
	}
	int r = c.cmd->run(&c, argc, argv);
	cli_ign_free(&c.ign);
	return r;
}
