/*
 * sbfs as mount(8)'s helper, so that an fstab line or `mount -t fuse.sbfs`
 * works: mount.fuse3 runs `sbfs SOURCE:TARGET MOUNTPOINT -o OPTS` for type
 * fuse.sbfs, and mount(8) runs `mount.fuse.sbfs SOURCE:TARGET MOUNTPOINT
 * [-sfnv] [-o OPTS] [-t TYPE]` when that link exists. Both become
 * `sbfs mount [OPTIONS] SOURCE TARGET MOUNTPOINT`.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/*
 * Options that mean something to mount(8), systemd or fstab's reader, not
 * to the file system: mount.fuse3 drops some of them, mount(8) calling
 * mount.fuse.sbfs directly none, and libfuse refuses them all as unknown.
 */
static int generic_opt(const char *o, size_t n)
{
	static const char *const names[] = { "defaults", "auto", "noauto", "user", "users",
					     "nouser", "owner", "group", "nofail", "_netdev" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && !strncmp(o, names[i], n))
			return 1;
	/* x-systemd.automount, x-mount.mkdir, ...; comment=systemd.*, and
	 * user=NAME, which mount(8) adds for a mount a user may make */
	return !strncmp(o, "x-", 2) || !strncmp(o, "comment=", 8) || !strncmp(o, "user=", 5);
}

int fstab_filter_opts(const char *in, char **out)
{
	size_t len = in ? strlen(in) : 0;
	char *res = malloc(len + 1), *w = res;
	if (!res)
		return -ENOMEM;
	for (const char *o = in; o && *o;) {
		size_t n = strcspn(o, ",");
		if (n && !generic_opt(o, n)) {
			if (w != res)
				*w++ = ',';
			memcpy(w, o, n);
			w += n;
		}
		o += n + (o[n] == ',');
	}
	*w = '\0';
	if (!*res) {
		free(res);
		res = NULL;
	}
	*out = res;
	return 0;
}

int fstab_spec(const char *arg)
{
	for (const char *s = arg; *s; s++) {
		if (*s == '\\' && s[1])
			s++;
		else if (*s == ':')
			return 1;
	}
	return 0;
}

/*
 * SOURCE:TARGET into its two paths: the first ':' not written as "\:"
 * parts them, "\:" stands for ':' and "\\" for '\' (so no path needs
 * another escape). A second bare ':', a trailing '\' or an empty side is
 * an error, said here.
 */
static int split_spec(const char *spec, char **src, char **tgt)
{
	size_t len = strlen(spec);
	char *buf = malloc(2 * len + 2), *side[2] = { buf, buf + len + 1 }, *w = buf;
	int k = 0;
	if (!buf)
		return -ENOMEM;
	for (const char *s = spec; *s; s++) {
		if (*s == '\\') {
			if (!*++s) {
				free(buf);
				return error("%s: a trailing '\\' (write '\\\\' for a '\\')", spec);
			}
			*w++ = *s;
		} else if (*s == ':') {
			if (k) {
				free(buf);
				return error("%s: more than one ':' between SOURCE and TARGET "
					     "(write a ':' inside a path as '\\:')", spec);
			}
			*w = '\0';
			w = side[k = 1];
		} else {
			*w++ = *s;
		}
	}
	*w = '\0';
	if (!k || !*side[0] || !*side[1]) {
		free(buf);
		return error("%s: not SOURCE:TARGET (write a ':' inside a path as '\\:')", spec);
	}
	*src = side[0];
	*tgt = side[1];
	return 0;
}

/* Adds `sbfs mount`'s own option for an sbfs one given with -o (state_dir=,
 * auto_resolve=, ignore=, no_default_ignores); 0 if o is not one. */
static int sbfs_opt(const char *o, size_t n, char **av, int *ac)
{
	static const struct { const char *name, *opt; } map[] = {
		{ "state_dir=", "--state-dir" },
		{ "auto_resolve=", "--auto-resolve" },
		{ "ignore=", "--ignore" },
		{ "no_default_ignores", "--no-default-ignores" },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		size_t k = strlen(map[i].name);
		int has_val = map[i].name[k - 1] == '=';
		if (has_val ? n < k || strncmp(o, map[i].name, k) :
			      n != k || strncmp(o, map[i].name, k))
			continue;
		av[(*ac)++] = (char *)map[i].opt;
		if (has_val)
			av[(*ac)++] = strndup(o + k, n - k);
		return has_val && !av[*ac - 1] ? -ENOMEM : 1;
	}
	return 0;
}

int fstab_main(struct ctx *c, int argc, char **argv)
{
	char *src = NULL, *tgt = NULL, *fuse = NULL, *rest = NULL, *joined = NULL;
	const char *spec = NULL, *mnt = NULL;
	int ret = EXIT_USAGE, ac = 0, nops = 0, r;
	char **av = NULL, **owned = NULL;
	size_t nowned = 0;

	c->cmd = cli_cmd("mount");
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strncmp(a, "-o", 2)) {
			const char *v = a[2] ? a + 2 : i + 1 < argc ? argv[++i] : NULL;
			if (!v) {
				error("-o: a value is missing");
				goto out;
			}
			char *n = NULL;
			if (asprintf(&n, "%s%s%s", fuse ? fuse : "", fuse ? "," : "", v) < 0) {
				ret = EXIT_FAILED;
				goto out;
			}
			free(fuse);
			fuse = n;
		} else if (!strcmp(a, "-t")) {
			i++;	/* fuse.sbfs: what we are */
		} else if (!strcmp(a, "-f")) {
			/* mount(8)'s "fake": do everything but mount */
			ret = EXIT_SYNCED;
			goto out;
		} else if (!strcmp(a, "-n") || !strcmp(a, "-s") || !strcmp(a, "-v")) {
			/* no mtab, sloppy, verbose: nothing for sbfs to do */
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			fputs(c->cmd->usage, OUT);
			ret = EXIT_SYNCED;
			goto out;
		} else if (a[0] == '-' && a[1]) {
			error("%s: not an option of mount(8)'s helper (see man sbfs)", a);
			goto out;
		} else if (nops++ == 0) {
			spec = a;
		} else {
			mnt = a;
		}
	}
	if (nops != 2) {
		error("usage: sbfs SOURCE:TARGET MOUNTPOINT [-o OPTIONS] (see man sbfs)");
		goto out;
	}
	if ((r = split_spec(spec, &src, &tgt)) < 0) {
		ret = r == -ENOMEM ? EXIT_FAILED : EXIT_USAGE;
		goto out;
	}
	if (fstab_filter_opts(fuse, &rest) < 0) {
		ret = EXIT_FAILED;
		goto out;
	}
	/* The sbfs options out of the rest; what is left goes to libfuse. The
	 * kernel then shows the type as fuse.sbfs, as fstab names it. Each
	 * item becomes at most two arguments. */
	size_t len = rest ? strlen(rest) : 0, items = 1;
	for (size_t k = 0; k < len; k++)
		items += rest[k] == ',';
	av = calloc(2 * items + 8, sizeof(*av));
	owned = calloc(items, sizeof(*owned));
	if (!av || !owned || !(joined = malloc(len + sizeof(",subtype=sbfs")))) {
		ret = EXIT_FAILED;
		goto out;
	}
	av[ac++] = "mount";
	char *w = joined;
	for (const char *o = rest; o && *o;) {
		size_t n = strcspn(o, ",");
		int before = ac;
		if ((r = sbfs_opt(o, n, av, &ac)) < 0) {
			ret = EXIT_FAILED;
			goto out;
		}
		if (r && ac - before == 2)
			owned[nowned++] = av[ac - 1];
		if (!r) {
			memcpy(w, o, n);
			w += n;
			*w++ = ',';
		}
		o += n + (o[n] == ',');
	}
	strcpy(w, "subtype=sbfs");
	av[ac++] = "-o";
	av[ac++] = joined;
	av[ac++] = "--";
	av[ac++] = src;
	av[ac++] = tgt;
	av[ac++] = (char *)mnt;
	ret = cmd_mount(c, ac, av);
out:
	for (size_t k = 0; k < nowned; k++)
		free(owned[k]);
	free(owned);
	free(av);
	free(src);	/* tgt lies in the same buffer */
	free(fuse);
	free(rest);
	free(joined);
	return ret;
}
