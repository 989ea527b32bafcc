/*
 * The one table of sbfs's commands and their options. The command line
 * parses with it, and the client of a mount's control socket uses it to
 * tell an option's value from an operand, so a new option is known to both
 * at once.
 */
#include <getopt.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* The ignore options, as every command that scans takes them. */
/* The retention options of a command that may keep old versions. */
#define KEEP_HELP \
"      --keep-versions N    old versions kept per path in .sbfs-versions (default 5;\n" \
"                           0: no limit)\n" \
"      --keep-days D        and for how many days (default 30; 0: no limit);\n" \
"                           both 0: nothing is kept\n"

#define IGNORE_HELP \
"      --ignore PATTERN     leave paths matching PATTERN alone (gitignore syntax;\n" \
"                           repeatable; see sbfs ignore)\n" \
"      --no-default-ignores  do not ignore .DS_Store, Thumbs.db, .Trash-*, ...\n"

static const char usage_reconcile[] =
"Usage: sbfs reconcile [OPTIONS] SOURCE TARGET\n"
"Carries changes made on either side since the last sync to the other side.\n"
"A change on both sides is a conflict: both versions stay untouched.\n"
"\n"
"  -n, --dry-run            show the plan only; change nothing\n"
"      --auto-resolve POLICY  settle conflicts: source, target, newer (the later\n"
"                           mtime wins; equal mtimes stay conflicts), suggested\n"
"      --allow-mass-delete  go on even if a side looks emptied\n"
"      --log-file FILE      append the JSON Lines operation log to FILE\n"
"      --state-dir DIR      state directory (default $SBFS_STATE_DIR, else\n"
"                           ${XDG_STATE_HOME:-$HOME/.local/state}/sbfs)\n"
IGNORE_HELP
KEEP_HELP
"  -q, --quiet              do not list each planned action\n"
"      --json               print the plan as JSON (see sbfs status --json)\n"
"  -h, --help\n";

static const char usage_status[] =
"Usage: sbfs status [--json] [-q] [--ignore PATTERN]... [--no-default-ignores]\n"
"                   [--state-dir DIR] SOURCE TARGET\n"
"Shows pending changes and conflicts; changes nothing.\n"
"Exit 0 when nothing is pending, 1 when changes or conflicts are.\n";

static const char usage_conflicts[] =
"Usage: sbfs conflicts [--json] [--state-dir DIR] SOURCE TARGET\n"
"Lists the conflicts recorded by the last reconcile, with each side's\n"
"modification time and size and the suggested choice.\n";

static const char usage_resolve[] =
"Usage: sbfs resolve [--source|--target|--keep-both] SOURCE TARGET [PATH...]\n"
"Settles conflicts (all recorded ones, or the PATHs given). Without a flag it\n"
"asks for each: s = source wins, t = target wins, k = keep both (the target's\n"
"version is kept as NAME.target-YYYYMMDD-HHMMSS.EXT on both sides), skip;\n"
"Enter takes the suggestion. Answers are read from standard input.\n"
"  --source, --target, --keep-both   apply that choice to every PATH\n"
"  --log-file FILE, --state-dir DIR, --ignore PATTERN, --no-default-ignores,\n"
"  --keep-versions N, --keep-days D  as for reconcile\n";

static const char usage_versions[] =
"Usage: sbfs versions [--json] [--prune] [--keep-versions N] [--keep-days D]\n"
"                     [--state-dir DIR] SOURCE TARGET [PATH]\n"
"Lists the old versions reconcile, resolve and restore kept (of PATH and what is\n"
"beneath it, or all): side, path, version, when it was kept, size. They live\n"
"in ROOT/.sbfs-versions/PATH~YYYYMMDD-HHMMSS on the side they were kept on.\n"
"      --json               one JSON document\n"
"      --prune              first apply the retention limits to every version\n"
KEEP_HELP;

static const char usage_restore[] =
"Usage: sbfs restore [--keep-versions N] [--keep-days D] [--state-dir DIR]\n"
"                    SOURCE TARGET PATH [VERSION]\n"
"Copies a kept version of PATH (VERSION as sbfs versions lists it,\n"
"YYYYMMDD-HHMMSS[-NN]; default the newest) over PATH on the side it was kept\n"
"on, the current file kept as a version in turn. The next reconcile carries it.\n"
KEEP_HELP;

static const char usage_mount[] =
"Usage: sbfs mount [-f] [--watch] [-o OPTIONS] [--auto-resolve POLICY] SOURCE TARGET\n"
"                  MOUNTPOINT\n"
"Shows the union of SOURCE and TARGET at MOUNTPOINT; every change made there\n"
"is written to both. A reconcile runs first. Returns once the mount is ready\n"
"and serves in the background (-f: in the foreground).\n"
"  -o OPTIONS   FUSE mount options (allow_other, ...); with ro the view is\n"
"               read-only and neither partner nor the state is written\n"
"               (no reconcile runs); -o watch is --watch\n"
"  --watch      reconcile edits made directly in SOURCE or TARGET by itself,\n"
"               0.5 s after the last event on them (logged as reconciles are)\n"
"  --auto-resolve POLICY, --state-dir DIR   as for reconcile\n"
"  --ignore PATTERN, --no-default-ignores   as for reconcile; an ignored path\n"
"               is shown from the source and written to the source only\n"
"Unmount with: sbfs umount MOUNTPOINT (or fusermount3 -u, umount).\n";

static const char usage_forget[] =
"Usage: sbfs forget [--state-dir DIR] SOURCE TARGET\n"
"Moves the partnership's state aside (renamed with the date, not deleted), so\n"
"that the next reconcile is a first sync: it copies what one side lacks and\n"
"records what is the same on both, and deletes nothing. The way out of a\n"
"state that is damaged or was lost.\n";

static const char usage_ignore[] =
"Usage: sbfs ignore [--add PATTERN]... [--remove PATTERN]... [--ignore PATTERN]...\n"
"                   [--no-default-ignores] [--state-dir DIR] SOURCE TARGET\n"
"Prints the ignore patterns a reconcile of SOURCE and TARGET uses (with the\n"
"--ignore options given here): the defaults, then those of the partnership's\n"
"file STATEDIR/ID/ignore (one per line, gitignore syntax; a line #no-defaults\n"
"turns the defaults off), then --ignore. The last pattern that matches decides.\n"
"  --add PATTERN     append PATTERN to the file\n"
"  --remove PATTERN  remove the lines equal to PATTERN from the file\n";

static const char usage_umount[] =
"Usage: sbfs umount [-z] MOUNTPOINT\n"
"Unmounts an sbfs mount once every queued record is written. A busy mount\n"
"(a process works in it) is left mounted, and the processes using it named.\n"
"  -z, --lazy   detach it now even if busy; it goes once nothing uses it\n";

const char cli_usage_main[] =
"Usage: sbfs COMMAND [OPTIONS] ...\n"
"Keeps two directories, SOURCE and TARGET, identical (three-way sync).\n"
"\n"
"Commands:\n"
"  reconcile SOURCE TARGET   sync both ways against the last synchronised state\n"
"  status SOURCE TARGET      show what a reconcile would do (exit 1 if anything)\n"
"  conflicts SOURCE TARGET   list the conflicts the last reconcile left\n"
"  resolve SOURCE TARGET [PATH...]  settle conflicts, interactively or by flag\n"
"  mount SOURCE TARGET MOUNTPOINT  the union of both, written through to both\n"
"  umount MOUNTPOINT         unmount cleanly\n"
"  forget SOURCE TARGET      move the partnership's state aside: the next\n"
"                            reconcile is a first sync, which never deletes\n"
"  ignore SOURCE TARGET      show or edit the paths left alone\n"
"  versions SOURCE TARGET [PATH]  list the old versions kept in .sbfs-versions\n"
"  restore SOURCE TARGET PATH [VERSION]  bring a kept version back\n"
"\n"
"  sbfs COMMAND --help   options of a command\n"
"  sbfs --version\n"
"\n"
"Exit status: 0 in sync; 1 conflicts or skipped paths remain (status, --dry-run:\n"
"changes pending); 2 bad usage or input, or a refusal (nothing changed);\n"
"3 a failure during the run.\n";

struct cli_opt {
	const char *spelled;	/* "--long-name", or "-x" for a short one only */
	char letter;		/* short name, or 0 */
	int has_arg;
};

static const struct cli_opt opts[CLI_NOPTS] = {
	[OPT_DRY_RUN] = { "--dry-run", 'n', 0 },
	[OPT_QUIET] = { "--quiet", 'q', 0 },
	[OPT_HELP] = { "--help", 'h', 0 },
	[OPT_AUTO] = { "--auto-resolve", 0, 1 },
	[OPT_MASS] = { "--allow-mass-delete", 0, 0 },
	[OPT_LOG] = { "--log-file", 0, 1 },
	[OPT_STATE] = { "--state-dir", 0, 1 },
	[OPT_JSON] = { "--json", 0, 0 },
	[OPT_SRC] = { "--source", 0, 0 },
	[OPT_TGT] = { "--target", 0, 0 },
	[OPT_KEEP] = { "--keep-both", 0, 0 },
	[OPT_FG] = { "-f", 'f', 0 },
	[OPT_FUSE] = { "-o", 'o', 1 },
	[OPT_IGNORE] = { "--ignore", 0, 1 },
	[OPT_NO_DEF_IGN] = { "--no-default-ignores", 0, 0 },
	[OPT_ADD] = { "--add", 0, 1 },
	[OPT_REMOVE] = { "--remove", 0, 1 },
	[OPT_WATCH] = { "--watch", 0, 0 },
	[OPT_LAZY] = { "--lazy", 'z', 0 },
	[OPT_KEEP_VERSIONS] = { "--keep-versions", 0, 1 },
	[OPT_KEEP_DAYS] = { "--keep-days", 0, 1 },
	[OPT_PRUNE] = { "--prune", 0, 0 },
};

#define O(x) (1u << (x))
#define COMMON (O(OPT_HELP) | O(OPT_STATE))
#define SCANS (O(OPT_IGNORE) | O(OPT_NO_DEF_IGN))	/* what scans takes the ignore options */
#define KEEPS (O(OPT_KEEP_VERSIONS) | O(OPT_KEEP_DAYS))	/* what may keep old versions */

static const struct cli_cmd cmds[] = {
	{ "reconcile", usage_reconcile, cmd_reconcile, 1,
	  COMMON | SCANS | O(OPT_DRY_RUN) | O(OPT_QUIET) | O(OPT_AUTO) | O(OPT_MASS) |
	  O(OPT_LOG) | O(OPT_JSON) | KEEPS },
	{ "status", usage_status, cmd_status, 1, COMMON | SCANS | O(OPT_JSON) | O(OPT_QUIET) },
	{ "conflicts", usage_conflicts, cmd_conflicts, 1, COMMON | O(OPT_JSON) },
	{ "resolve", usage_resolve, cmd_resolve, 1,
	  COMMON | SCANS | KEEPS | O(OPT_SRC) | O(OPT_TGT) | O(OPT_KEEP) | O(OPT_LOG) },
	{ "versions", usage_versions, cmd_versions, 0, COMMON | KEEPS | O(OPT_JSON) | O(OPT_PRUNE) },
	{ "restore", usage_restore, cmd_restore, 0, COMMON | KEEPS },
	{ "mount", usage_mount, cmd_mount, 0,
	  COMMON | SCANS | O(OPT_FG) | O(OPT_FUSE) | O(OPT_AUTO) | O(OPT_WATCH) },
	{ "forget", usage_forget, cmd_forget, 0, COMMON },
	{ "ignore", usage_ignore, cmd_ignore, 0, COMMON | SCANS | O(OPT_ADD) | O(OPT_REMOVE) },
	{ "umount", usage_umount, cmd_umount, 0, O(OPT_HELP) | O(OPT_LAZY) },
	{ "unmount", usage_umount, cmd_umount, 0, O(OPT_HELP) | O(OPT_LAZY) },
};

const struct cli_cmd *cli_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

const char *cli_opt_spelling(int id)
{
	return opts[id].spelled;
}

int cli_options(const struct cli_cmd *cmd, int argc, char **argv, int quiet,
		int (*fn)(void *arg, int id, char *val), void *arg)
{
	struct option lo[CLI_NOPTS + 1];
	char shorts[2 * CLI_NOPTS + 2];
	size_t nl = 0, ns = 0;
	int o, ret = 0;

	/* Operands may come first: GNU getopt moves them behind the options. */
	for (int id = 0; id < CLI_NOPTS; id++) {
		if (!(cmd->opts & O(id)))
			continue;
		if (opts[id].spelled[1] == '-')
			lo[nl++] = (struct option){ opts[id].spelled + 2, opts[id].has_arg, NULL,
						    256 + id };
		if (opts[id].letter) {
			shorts[ns++] = opts[id].letter;
			if (opts[id].has_arg)
				shorts[ns++] = ':';
		}
	}
	lo[nl] = (struct option){ 0 };
	shorts[ns] = '\0';
	int saved = opterr;
	opterr = !quiet;
	/* 0, not 1: a full re-initialisation. With 1 glibc keeps its pointer
	 * into the previous argv's short-option cluster, which in a mount is
	 * the freed buffer of the previous client's request. */
	optind = 0;
	while ((o = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
		int id = -1;
		if (o >= 256)
			id = o - 256;
		for (int k = 0; k < CLI_NOPTS && id < 0 && o != '?'; k++)
			if (opts[k].letter == o && (cmd->opts & O(k)))
				id = k;
		if (id < 0) {
			ret = -1;
			break;
		}
		/* "" is no path, policy or option list; said here, or the
		 * engine would be left to fail on it without a name to give. */
		if (opts[id].has_arg && !*optarg) {
			if (!quiet)
				error("%s '': an empty value", opts[id].spelled);
			ret = quiet ? -1 : -3;
			break;
		}
		if ((ret = fn(arg, id, optarg)) < 0)
			break;
	}
	opterr = saved;
	return ret < 0 ? ret : optind;
}
