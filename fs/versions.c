/*
 * sbfs versions and sbfs restore: the old versions reconcile and resolve
 * kept in each side's .sbfs-versions (engine/versions.c), listed and
 * brought back; and the retention options the commands that keep them take.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

void versions_apply(const struct ctx *c, struct sb_pship *p, unsigned saved[2])
{
	sb_pship_get_versions(p, &saved[0], &saved[1]);
	sb_pship_set_versions(p, c->keep_given & 1 ? c->keep_versions : saved[0],
			      c->keep_given & 2 ? c->keep_days : saved[1]);
}

/* A mount's partnership outlives the client's command: its limits stay its own. */
void versions_put_back(struct sb_pship *p, const unsigned saved[2])
{
	sb_pship_set_versions(p, saved[0], saved[1]);
}

static const char *side_name(int side)
{
	return side ? "target" : "source";
}

static int open_operands(struct ctx *c, int argc, char **argv, int min, int max,
			 int *i, struct sb_pship **p)
{
	struct sb_error err = { 0 };
	int ret;

	*i = cli_parse(c, argc, argv);
	if (*i < 0)
		return *i == -2 ? EXIT_SYNCED : EXIT_USAGE;
	if (argc - *i < min || argc - *i > max) {
		fputs(c->cmd->usage, ERR);
		return EXIT_USAGE;
	}
	if ((ret = sb_pship_open(argv[*i], argv[*i + 1], c->state_dir, NULL, p, &err)) < 0) {
		error("%s: %s", err.path, sb_strerror(ret));
		return EXIT_USAGE;
	}
	return -1;
}

/* The PATH operand as the engine takes it, or NULL once said why not. */
static char *path_operand(struct sb_pship *p, const char *arg)
{
	char *rel = rel_path(p, arg);
	if (!rel)
		error("%s: %s", arg, sb_strerror(-ENOMEM));
	else if (*rel && !sb_rel_valid(rel, strlen(rel))) {
		error("%s: not a path inside the partners", arg);
		free(rel);
		rel = NULL;
	}
	return rel;
}

static void put_kept(FILE *f, int64_t t, int iso)
{
	struct tm tm;
	time_t tt = (time_t)t;
	char buf[40];
	if (iso) {
		gmtime_r(&tt, &tm);
		strftime(buf, sizeof(buf), "\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
	} else {
		localtime_r(&tt, &tm);
		strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
	}
	fputs(buf, f);
}

static void print_json(FILE *f, struct sb_pship *p, const struct sb_version_list *l)
{
	fputs("{", f);
	sb_json_path(f, "source", sb_pship_root(p, 0), strlen(sb_pship_root(p, 0)));
	fputc(',', f);
	sb_json_path(f, "target", sb_pship_root(p, 1), strlen(sb_pship_root(p, 1)));
	fputs(",\"versions\":[", f);
	for (size_t k = 0; k < l->n; k++) {
		const struct sb_version *v = &l->v[k];
		fprintf(f, "%s{\"side\":\"%s\",", k ? "," : "", side_name(v->side));
		sb_json_path(f, "path", v->path, v->len);
		fprintf(f, ",\"version\":\"%s\",\"kept\":", v->stamp);
		put_kept(f, v->time, 1);
		fprintf(f, ",\"type\":\"%s\",\"size\":%llu,\"mode\":\"%04o\",\"mtime_ns\":%lld}",
			sb_type_name(v->type), (unsigned long long)v->size, (unsigned)v->mode,
			(long long)v->mtime_ns);
	}
	fputs("]}\n", f);
}

/* What both commands hold at their end. */
static void finish(struct sb_pship *p, const unsigned saved[2], struct sb_version_list *l,
		   char *rel)
{
	versions_put_back(p, saved);
	sb_versions_free(l);
	free(rel);
	sb_pship_close(p);
}

int cmd_versions(struct ctx *c, int argc, char **argv)
{
	struct sb_pship *p = NULL;
	struct sb_version_list l = { 0 };
	char *rel = NULL;
	unsigned saved[2];
	int i, ret = open_operands(c, argc, argv, 2, 3, &i, &p);

	if (ret >= 0)
		return ret;
	versions_apply(c, p, saved);
	ret = EXIT_USAGE;
	if (argc - i == 3 && !(rel = path_operand(p, argv[i + 2])))
		goto out;
	if (c->prune) {
		uint64_t removed = 0;
		if ((ret = sb_pship_lock(p, 1, NULL)) < 0 ||
		    (ret = sb_versions_prune(p, &removed)) < 0) {
			error("%s/%s, %s/%s: cannot apply the retention limits: %s", sb_pship_root(p, 0),
			      SB_VERSIONS_NAME, sb_pship_root(p, 1), SB_VERSIONS_NAME, sb_strerror(ret));
			ret = EXIT_FAILED;
			goto out;
		}
		if (!c->json)
			fprintf(OUT, "Old versions removed by the retention limits: %llu\n",
				(unsigned long long)removed);
	}
	if ((ret = sb_versions_list(p, rel, &l)) < 0) {
		error("%s/%s, %s/%s: %s", sb_pship_root(p, 0), SB_VERSIONS_NAME, sb_pship_root(p, 1),
		      SB_VERSIONS_NAME, sb_strerror(ret));
		ret = EXIT_FAILED;
		goto out;
	}
	if (c->json) {
		print_json(OUT, p, &l);
	} else if (!l.n) {
		fprintf(OUT, "No old versions kept%s.\n", rel && *rel ? " of that path" : "");
	} else {
		fprintf(OUT, "%-7s %-18s %-19s %12s  %s\n", "SIDE", "VERSION", "KEPT", "SIZE", "PATH");
		for (size_t k = 0; k < l.n; k++) {
			const struct sb_version *v = &l.v[k];
			fprintf(OUT, "%-7s %-18s ", side_name(v->side), v->stamp);
			put_kept(OUT, v->time, 0);
			fprintf(OUT, " %12llu  ", (unsigned long long)v->size);
			put_path(OUT, v->path, v->len);
			fputs(v->type == SB_DIR ? "/\n" : "\n", OUT);
		}
	}
	ret = EXIT_SYNCED;
out:
	finish(p, saved, &l, rel);
	return ret;
}

int cmd_restore(struct ctx *c, int argc, char **argv)
{
	struct sb_pship *p = NULL;
	struct sb_version_list l = { 0 };
	const struct sb_version *pick = NULL;
	char *rel = NULL;
	unsigned saved[2];
	long holder = 0;
	int i, ret = open_operands(c, argc, argv, 3, 4, &i, &p);

	if (ret >= 0)
		return ret;
	versions_apply(c, p, saved);
	const char *want = argc - i == 4 ? argv[i + 3] : NULL;
	ret = EXIT_USAGE;
	if (!(rel = path_operand(p, argv[i + 2])))
		goto out;
	if (!*rel) {
		error("%s: the root itself has no versions; name a path inside it", argv[i + 2]);
		goto out;
	}
	/* Writing a side under a mount or a reconcile would race them. */
	if ((ret = sb_pship_lock(p, 0, &holder)) < 0) {
		if (ret == -EWOULDBLOCK)
			error("another sbfs (pid %ld) is working on %s and %s (a mount?): nothing was "
			      "restored; try again once it is done", holder, sb_pship_root(p, 0),
			      sb_pship_root(p, 1));
		else
			error("cannot lock the partnership's state: %s", sb_strerror(ret));
		ret = ret == -EWOULDBLOCK ? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}
	if ((ret = sb_versions_list(p, rel, &l)) < 0) {
		error("%s/%s: %s", sb_pship_root(p, 0), SB_VERSIONS_NAME, sb_strerror(ret));
		ret = EXIT_FAILED;
		goto out;
	}
	for (size_t k = 0; k < l.n; k++) {
		const struct sb_version *v = &l.v[k];
		if (strcmp(v->path, rel) || (want && strcmp(v->stamp, want)))
			continue;
		if (!pick || strcmp(v->stamp, pick->stamp) > 0)
			pick = v;
	}
	ret = EXIT_USAGE;
	if (!pick) {
		error("%s: no kept version%s%s (see sbfs versions)", rel, want ? " " : "",
		      want ? want : "");
		goto out;
	}
	if (pick->type == SB_DIR) {
		error("%s: version %s is a whole directory, which restore does not bring back: "
		      "copy what you need from %s/%s by hand", rel, pick->stamp,
		      sb_pship_root(p, pick->side), SB_VERSIONS_NAME);
		goto out;
	}
	if ((ret = sb_version_restore(p, pick)) < 0) {
		error("%s/%s: cannot restore version %s: %s", sb_pship_root(p, pick->side), rel,
		      pick->stamp, sb_strerror(ret));
		ret = ret == -EISDIR ? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}
	fprintf(OUT, "Restored %s in the %s from version %s (the file it replaced is kept as a "
		"version); the next reconcile carries it to the %s.\n", rel, side_name(pick->side),
		pick->stamp, side_name(!pick->side));
	ret = EXIT_SYNCED;
out:
	finish(p, saved, &l, rel);
	return ret;
}
