/*
 * Ignore patterns on the command line: the --ignore and
 * --no-default-ignores options of every command that scans, the set they
 * make with the partnership's file, and `sbfs ignore`, which shows the set
 * and edits the file.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "ignore.h"

int cli_ign_opt(struct cli_ign *g, int id, const char *val)
{
	const char *why;

	if (id == OPT_NO_DEF_IGN) {
		g->no_defaults = 1;
		return 0;
	}
	/* Said now, before anything is opened, let alone changed. */
	if (sb_ignore_check(val, strlen(val), &why) < 0) {
		error("%s '%s': %s (%s)", cli_opt_spelling(id), val, sb_strerror(SB_E_BADPATTERN),
		      why);
		return -3;
	}
	if (id == OPT_IGNORE) {
		const char **v = realloc(g->pat, (g->n + 1) * sizeof(*v));
		if (!v)
			return -4;
		g->pat = v;
		g->pat[g->n++] = val;
		return 0;
	}
	void *e = realloc(g->edit, (g->nedit + 1) * sizeof(*g->edit));
	if (!e)
		return -4;
	g->edit = e;
	g->edit[g->nedit].add = id == OPT_ADD;
	g->edit[g->nedit++].pat = val;
	return 0;
}

void cli_ign_free(struct cli_ign *g)
{
	free(g->pat);
	free(g->edit);
	memset(g, 0, sizeof(*g));
}

int cli_ign_copy(struct cli_ign *dst, const struct cli_ign *src)
{
	dst->no_defaults = src->no_defaults;
	if (!src->n)
		return 0;
	if (!(dst->pat = malloc(src->n * sizeof(*dst->pat))))
		return -ENOMEM;
	memcpy(dst->pat, src->pat, src->n * sizeof(*dst->pat));
	dst->n = src->n;
	return 0;
}

int cli_ign_args(const struct cli_ign *g, char **av)
{
	int n = 0;
	for (size_t i = 0; i < g->n; i++) {
		av[n++] = (char *)cli_opt_spelling(OPT_IGNORE);
		av[n++] = (char *)g->pat[i];
	}
	if (g->no_defaults)
		av[n++] = (char *)cli_opt_spelling(OPT_NO_DEF_IGN);
	return n;
}

int cli_ign_build(const struct cli_ign *g, struct sb_pship *p, struct sb_ignore **out)
{
	struct sb_ignore *ig = NULL;
	struct sb_ignore_bad bad;
	int ret;

	*out = NULL;
	if ((ret = sb_ignore_new(&ig)) < 0)
		goto fail;
	if (g->no_defaults)
		sb_ignore_no_defaults(ig);
	if ((ret = sb_ignore_load(ig, sb_pship_dir(p), &bad)) == SB_E_BADPATTERN) {
		error("%s/%s, line %zu: '%s': %s (%s); nothing was changed", sb_pship_dir(p),
		      SB_IGNORE_FILE, bad.line, bad.text, sb_strerror(ret), bad.why);
		sb_ignore_free(ig);
		return EXIT_USAGE;
	}
	if (ret < 0) {
		error("%s/%s: %s", sb_pship_dir(p), SB_IGNORE_FILE, sb_strerror(ret));
		sb_ignore_free(ig);
		return EXIT_USAGE;
	}
	for (size_t i = 0; i < g->n; i++)
		if ((ret = sb_ignore_add(ig, g->pat[i], strlen(g->pat[i]), SB_IGN_CLI)) < 0)
			goto fail;
	*out = ig;
	return 0;
fail:
	error("cannot build the ignore patterns: %s", sb_strerror(ret));
	sb_ignore_free(ig);
	return EXIT_FAILED;
}

static void show(struct sb_pship *p, const struct sb_ignore *ig, int no_def_opt)
{
	size_t n = sb_ignore_count(ig);
	int off = sb_ignore_defaults_off(ig);

	fprintf(OUT, "Ignore patterns of %s and %s\n(file: %s/%s; the last pattern that matches decides)\n",
		sb_pship_root(p, 0), sb_pship_root(p, 1), sb_pship_dir(p), SB_IGNORE_FILE);
	for (size_t i = 0; i < n; i++) {
		int origin;
		const char *line = sb_ignore_line(ig, i, &origin);
		int plain = 1;
		for (const char *q = line; *q && plain; q++)
			plain = (unsigned char)*q >= 0x20 && *q != 0x7f;
		fputs("  ", OUT);
		if (plain)
			fputs(line, OUT);	/* a '\\' in a pattern is the user's own */
		else
			put_path(OUT, line, strlen(line));
		if (origin == SB_IGN_DEFAULT)
			fprintf(OUT, "    (default%s)", !off ? "" : no_def_opt ? ", off: --no-default-ignores"
				: ", off: " SB_IGNORE_NO_DEFAULTS " in the file");
		else if (origin == SB_IGN_CLI)
			fputs("    (--ignore)", OUT);
		fputc('\n', OUT);
	}
}

static int is_default(const char *pat)
{
	struct sb_ignore *d;
	int found = 0;
	if (sb_ignore_new(&d) < 0)
		return 0;
	for (size_t i = 0; i < sb_ignore_count(d) && !found; i++) {
		int origin;
		found = !strcmp(sb_ignore_line(d, i, &origin), pat);
	}
	sb_ignore_free(d);
	return found;
}

int cmd_ignore(struct ctx *c, int argc, char **argv)
{
	struct sb_pship *p = NULL;
	struct sb_ignore *ig = NULL;
	struct sb_error err = { 0 };
	int ret;

	int i, done = cli_parse_pair(c, argc, argv, &i);
	if (done >= 0)
		return done;
	if ((ret = sb_pship_open(argv[i], argv[i + 1], c->state_dir, NULL, &p, &err)) < 0) {
		error("%s: %s", err.path, sb_strerror(ret));
		return EXIT_USAGE;
	}
	for (size_t k = 0; k < c->ign.nedit; k++) {
		const char *pat = c->ign.edit[k].pat;
		int add = c->ign.edit[k].add;
		ret = sb_ignore_edit(sb_pship_dir(p), pat, add);
		if (ret < 0) {
			error("%s/%s: %s", sb_pship_dir(p), SB_IGNORE_FILE, sb_strerror(ret));
			ret = EXIT_FAILED;
			goto out;
		}
		if (ret == 1 && !add) {
			error("'%s' is not a line of %s/%s%s", pat, sb_pship_dir(p), SB_IGNORE_FILE,
			      is_default(pat) ? " (it is a default: --add '!PATTERN' re-includes what it"
			      " matches, --add '" SB_IGNORE_NO_DEFAULTS "' turns all defaults off)" : "");
			ret = EXIT_USAGE;
			goto out;
		}
		fprintf(OUT, ret == 1 ? "Already in the file: %s\n" : add ? "Added: %s\n"
			: "Removed: %s\n", pat);
	}
	if ((ret = cli_ign_build(&c->ign, p, &ig)))
		goto out;
	show(p, ig, c->ign.no_defaults);
	ret = EXIT_SYNCED;
out:
	sb_ignore_free(ig);
	sb_pship_close(p);
	return ret;
}
