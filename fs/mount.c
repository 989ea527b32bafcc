/*
 * sbfs mount and umount: the reconcile that opens a mount, the daemon, and
 * the session (view.c) with its watcher and control socket.
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>

#include "autosync.h"
#include "cli.h"
#include "ignore.h"
#include "mountinfo.h"
#include "view.h"
#include "watch.h"

/* ------------------------------------------------------------ commands */

/* Whether the comma-separated opts hold the option name (NULL-safe). */
static int opt_given(const char *opts, const char *name)
{
	size_t n = strlen(name);
	for (const char *o = opts; o && *o; o = strchr(o, ',') ? strchr(o, ',') + 1 : NULL)
		if (!strncmp(o, name, n) && (o[n] == ',' || o[n] == '\0' || o[n] == '='))
			return 1;
	return 0;
}

static int within(const char *in, const char *dir)
{
	size_t n = strlen(dir);
	if (n == 1)
		return 1;
	return !strncmp(in, dir, n) && (in[n] == '/' || in[n] == '\0');
}

/* A reconcile run by the mount changed path: drop what the kernel cached
 * of it and of its directory's listing. */
static void invalidate(void *arg, const char *path, size_t len)
{
	char *p = strndup(path, len);
	if (!p)
		return;
	view_invalidate(arg, p, 0);
	char *slash = strrchr(p, '/');
	if (slash)
		*slash = '\0';
	else
		*p = '\0';
	view_invalidate(arg, p, 0);
	free(p);
}

static int covered(void *wt)
{
	return watch_complete(wt);
}

/* Tells the waiting parent how the start went. */
static void report(int fd, int code)
{
	unsigned char c = (unsigned char)code;
	if (fd >= 0) {
		if (write(fd, &c, 1) < 0) {
			/* the parent is gone; nothing to tell */
		}
		close(fd);
	}
}

struct mount_opts {
	int fg, watch;
	char *fuse;	/* the -o options, joined by commas */
	const char *auto_resolve, *state_dir;
	struct cli_ign ign;
};

static int mount_opt(void *arg, int id, char *val)
{
	struct mount_opts *mo = arg;
	char *n = NULL;
	switch (id) {
	case OPT_FG: mo->fg = 1; break;
	case OPT_AUTO: mo->auto_resolve = val; break;
	case OPT_STATE: mo->state_dir = val; break;
	case OPT_HELP: return -2;
	case OPT_IGNORE: case OPT_NO_DEF_IGN: return cli_ign_opt(&mo->ign, id, val);
	case OPT_WATCH: mo->watch = 1; break;
	case OPT_FUSE: {
		/* noauto, nofail, x-systemd.* ... of an fstab line are mount(8)'s,
		 * and libfuse would refuse them as unknown; watch is ours */
		char *kept;
		if (fstab_filter_opts(val, &kept) < 0)
			return -4;
		for (char *sv, *o = kept ? strtok_r(kept, ",", &sv) : NULL; o;
		     o = strtok_r(NULL, ",", &sv)) {
			if (!strcmp(o, "watch")) {
				mo->watch = 1;
				continue;
			}
			if (asprintf(&n, "%s%s%s", mo->fuse ? mo->fuse : "", mo->fuse ? "," : "", o) < 0) {
				free(kept);
				return -4;
			}
			free(mo->fuse);
			mo->fuse = n;
		}
		free(kept);
		break;
	}
	}
	return 0;
}

/* The arguments of fuse_session_new for the -o options mopts, and in
 * *checks whether the kernel checks permissions; 0 or -ENOMEM. */
static int mount_args(struct fuse_args *args, const char *mopts, const char *root, int *checks)
{
	char *fsname = NULL;
	int ret = -ENOMEM;

	/* The type shows as fuse.sbfs (mount -t fuse.sbfs, df -t, umount -t). */
	if (asprintf(&fsname, "fsname=sbfs:%s,subtype=sbfs", root) < 0)
		return ret;
	if (fuse_opt_add_arg(args, "sbfs") < 0)
		goto out;
	/*
	 * Other users come in: the kernel checks their permissions against
	 * the view's modes and ACLs (see view.c's ll_init). Without them it
	 * lets in only the user running the mount, whose every change the
	 * partners check themselves; the kernel's check would cost a GETATTR
	 * of the directory after each change.
	 */
	*checks = opt_given(mopts, "allow_other") || opt_given(mopts, "allow_root") ||
		  opt_given(mopts, "default_permissions");
	if (*checks &&
	    (fuse_opt_add_arg(args, "-o") < 0 || fuse_opt_add_arg(args, "default_permissions") < 0))
		goto out;
	if (fuse_opt_add_arg(args, "-o") < 0 || fuse_opt_add_arg(args, fsname) < 0)
		goto out;
	if (mopts && (fuse_opt_add_arg(args, "-o") < 0 || fuse_opt_add_arg(args, mopts) < 0))
		goto out;
	ret = 0;
out:
	free(fsname);
	return ret;
}

/* Whether libfuse takes the -o options; before anything is changed, as the
 * reconcile that precedes the mount would change both partners. */
static int mount_opts_ok(const char *mopts, const char *root)
{
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct view *v = NULL;
	int checks;
	int ret = mount_args(&args, mopts, root, &checks);
	if (ret == 0 && (ret = view_new(NULL, &args, checks, &v)) == -EINVAL)
		error("-o %s: bad mount options (libfuse said why above); nothing was changed", mopts);
	view_free(v);
	fuse_opt_free_args(&args);
	return ret;
}

int cmd_mount(struct ctx *c, int argc, char **argv)
{
	struct mount_opts mo = { 0 };
	int ret = EXIT_USAGE, pipefd[2] = { -1, -1 };
	char *mnt = NULL, *mopts = NULL;
	struct sb_pship *p = NULL;
	struct sb_mirror *m = NULL;
	struct view *v = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct control *ctl = NULL;
	struct sb_ignore *ig = NULL;
	struct watch *wt = NULL;
	struct autosync *as = NULL;
	char **rargv = NULL;

	int op = cli_options(c->cmd, argc, argv, 0, mount_opt, &mo);
	mopts = mo.fuse;
	if (op == -2) {
		fputs(c->cmd->usage, stdout);
		ret = EXIT_SYNCED;
		goto out;
	}
	if (op == -4) {
		ret = EXIT_FAILED;
		goto out;
	}
	if (op == -3)	/* said why */
		goto out;
	if (op < 0 || argc - op != 3) {
		fputs(c->cmd->usage, stderr);
		goto out;
	}
	const char *auto_resolve = mo.auto_resolve, *state_dir = mo.state_dir;
	int fg = mo.fg;
	const char *src = argv[op], *tgt = argv[op + 1];
	if (!(mnt = realpath(argv[op + 2], NULL))) {
		error("%s: %s", argv[op + 2], strerror(errno));
		goto out;
	}
	struct stat st;
	if (stat(mnt, &st) < 0 || !S_ISDIR(st.st_mode)) {
		error("%s: not a directory", argv[op + 2]);
		goto out;
	}
	int r = mount_opts_ok(mopts, src);
	if (r < 0) {
		ret = r == -ENOMEM ? EXIT_FAILED : EXIT_USAGE;
		goto out;
	}
	/* Read-only: neither partner nor the state is written, so no
	 * reconcile, and the control socket runs none that writes. */
	int ro = opt_given(mopts, "ro");
	{
		struct sb_error err = { 0 };
		r = sb_pship_open(src, tgt, state_dir, NULL, &p, &err);
		if (r < 0) {
			error("%s: %s", err.path, sb_strerror(r));
			goto out;
		}
	}
	for (int i = 0; i < 2; i++) {
		const char *root = sb_pship_root(p, i);
		if (within(mnt, root) || within(root, mnt)) {
			error("%s: the mount point and the %s %s must not contain each other",
			      argv[op + 2], i ? "target" : "source", root);
			goto out;
		}
	}
	char *other = control_mounted(sb_pship_dir(p));
	if (other) {
		error("%s and %s are already mounted at %s", sb_pship_root(p, 0),
		      sb_pship_root(p, 1), other);
		free(other);
		goto out;
	}
	/* The view's patterns are those of the reconcile below, which drops
	 * their records, so none can make the mount's source-only changes a
	 * deletion later. */
	if ((r = cli_ign_build(&mo.ign, p, &ig))) {
		ret = r;
		goto out;
	}
	sb_pship_close(p);
	p = NULL;

	/* The reconcile that opens the mount: the same as `sbfs reconcile`. */
	if (!ro) {
		int n = 0;
		if (!(rargv = calloc(9 + 2 * mo.ign.n, sizeof(*rargv)))) {
			ret = EXIT_FAILED;
			goto out;
		}
		rargv[n++] = "reconcile";
		rargv[n++] = "--quiet";
		n += cli_ign_args(&mo.ign, rargv + n);
		if (auto_resolve) {
			rargv[n++] = "--auto-resolve";
			rargv[n++] = (char *)auto_resolve;
		}
		if (state_dir) {
			rargv[n++] = "--state-dir";
			rargv[n++] = (char *)state_dir;
		}
		rargv[n++] = (char *)src;
		rargv[n++] = (char *)tgt;
		struct ctx rc = { .cmd = cli_cmd("reconcile"), .progress = c->progress };
		r = cmd_reconcile(&rc, n, rargv);
		cli_ign_free(&rc.ign);
		if (r == EXIT_USAGE || r == EXIT_FAILED) {
			ret = r;
			goto out;
		}
		fflush(stdout);
	}

	if (!fg) {
		/* Daemonize before any thread or LMDB handle exists; the parent
		 * returns once the child says the mount is ready. */
		if (pipe(pipefd) < 0) {
			ret = EXIT_FAILED;
			goto out;
		}
		pid_t pid = fork();
		if (pid < 0) {
			ret = EXIT_FAILED;
			goto out;
		}
		if (pid > 0) {
			unsigned char c = EXIT_FAILED;
			close(pipefd[1]);
			if (read(pipefd[0], &c, 1) != 1)
				c = EXIT_FAILED;
			close(pipefd[0]);
			free(mopts);
			free(mnt);
			free(rargv);
			sb_ignore_free(ig);
			cli_ign_free(&mo.ign);
			return c;
		}
		close(pipefd[0]);
		pipefd[0] = -1;
		setsid();
	}
	ret = EXIT_FAILED;
	{
		struct sb_error err = { 0 };
		long holder;
		if (sb_pship_open(src, tgt, state_dir, NULL, &p, &err) < 0 ||
		    sb_pship_lock(p, 1, &holder) < 0) {
			error("%s: cannot open the partnership", src);
			goto out;
		}
	}
	if (sb_mirror_open(p, &m) < 0) {
		error("cannot start the mirror");
		goto out;
	}
	sb_mirror_set_ignore(m, ig);
	int checks;
	if (mount_args(&args, mopts, sb_pship_root(p, 0), &checks) < 0)
		goto out;
	if (view_new(m, &args, checks, &v) < 0) {
		error("-o %s: bad mount options", mopts ? mopts : "");
		goto out;
	}
	if (view_mount(v, mnt) < 0) {
		error("%s: cannot mount", mnt);
		goto out;
	}
	set_readahead(mnt);
	/* Before the watcher: --watch's reconciles run through it. */
	if (control_start(p, m, mnt, ro, &mo.ign, invalidate, v, &ctl) < 0) {
		error("cannot start the control socket in %s", sb_pship_dir(p));
		goto out_stop;
	}
	const char *const roots[2] = { sb_pship_root(p, 0), sb_pship_root(p, 1) };
	/* A read-only mount writes nothing, so reconciles nothing either. */
	if (mo.watch && ro)
		warning("--watch on a read-only mount: edits made outside are not reconciled");
	else if (mo.watch && autosync_start(ctl, roots, &as) < 0)
		goto out_stop;
	/* Before stderr goes: running out of watches is said there. Without
	 * the watcher (SBFS_TEST_NO_WATCH, for the tests that show it is
	 * needed) or when it cannot start, the mount runs on. */
	const char *nw = getenv("SBFS_TEST_NO_WATCH");
	if (!nw || !*nw)
		watch_start(v, roots, ig, as, &wt);
	if (wt && sb_pship_local(p, 0) && sb_pship_local(p, 1))
		view_set_cover(v, covered, wt);
	if (!fg) {
		int nul = open("/dev/null", O_RDWR);
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
			if (nul > 2)
				close(nul);
		}
		if (chdir("/") < 0) {
			/* harmless: every path in use is absolute */
		}
		/* No terminal from here on: what would go to stderr goes to
		 * syslog; without it the mount still serves, unheard. */
		if (dlog_open(sb_pship_root(p, 0), sb_pship_root(p, 1)) == 0)
			dlog_say(LOG_INFO, "mounted at %s%s", mnt, ro ? ", read-only" : "");
	} else {
		printf("Mounted %s at %s%s%s (Ctrl-C or sbfs umount to stop)\n", sb_pship_root(p, 0),
		       mnt, ro ? ", read-only" : "", as ? ", reconciling edits made outside" : "");
		fflush(stdout);
	}
	report(pipefd[1], EXIT_SYNCED);
	pipefd[1] = -1;
	ret = view_run(v) == 0 ? EXIT_SYNCED : EXIT_FAILED;
	/* Unmounted (by sbfs umount, fusermount3 -u or umount, which return at
	 * once): the last records are written while the control socket still
	 * answers, so a command sent meanwhile is run after them, by us, and
	 * one that finds the socket gone finds them written. */
	sb_mirror_flush(m);
	if (dlog_on())
		dlog_say(LOG_INFO, "unmounted from %s%s", mnt, ret ? " (the session failed)" : "");
out_stop:
	watch_stop(wt);	/* invalidates through the session view_free ends */
	/* No note comes now: what waits is cancelled, a run going on ends
	 * first (it needs the control socket's turn). */
	autosync_stop(as);
	control_stop(ctl);
	ctl = NULL;
out:
	report(pipefd[1], ret);
	view_free(v);
	fuse_opt_free_args(&args);
	sb_mirror_close(m);
	sb_pship_close(p);
	sb_ignore_free(ig);
	cli_ign_free(&mo.ign);
	free(rargv);
	free(mopts);
	free(mnt);
	dlog_close();
	return ret;
}

static int umount_opt(void *arg, int id, char *val)
{
	(void)val;
	if (id == OPT_HELP)
		return -2;
	*(int *)arg = 1;	/* OPT_LAZY */
	return 0;
}

/* fusermount3 -u [-z] mnt; 0, or -1 with its complaint in why. */
static int fusermount_u(const char *mnt, int lazy, char *why, size_t len)
{
	int fds[2];
	*why = '\0';
	if (pipe2(fds, O_CLOEXEC) < 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fds[1], 2);
		if (lazy)
			execlp("fusermount3", "fusermount3", "-u", "-z", mnt, (char *)NULL);
		else
			execlp("fusermount3", "fusermount3", "-u", mnt, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	size_t n = 0;
	for (ssize_t r; pid > 0 && n + 1 < len && (r = read(fds[0], why + n, len - 1 - n)) > 0;)
		n += (size_t)r;
	why[n] = '\0';
	why[strcspn(why, "\n")] = '\0';
	close(fds[0]);
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) && !WEXITSTATUS(st) ? 0 : -1;
}

int cmd_umount(struct ctx *c, int argc, char **argv)
{
	int lazy = 0, op = cli_options(c->cmd, argc, argv, 0, umount_opt, &lazy);
	if (op == -2 || op < 0 || argc - op != 1) {
		fputs(c->cmd->usage, op == -2 ? stdout : stderr);
		return op == -2 ? EXIT_SYNCED : EXIT_USAGE;
	}
	const char *arg = argv[op];
	/* Bad input is told apart from a failed unmount (a busy mount). */
	char *mnt = realpath(arg, NULL);
	int err = errno;
	unsigned maj, min;
	int sbfs = 0, found = mnt && mounted_at(mnt, &maj, &min, &sbfs);
	if (!found || !sbfs) {
		if (!mnt)
			error("%s: %s", arg, strerror(err));
		else
			error("%s: %s", arg, found ? "not an sbfs mount" : "not a mount point");
		free(mnt);
		return EXIT_USAGE;
	}
	char why[512];
	int ret = EXIT_SYNCED;
	if (fusermount_u(arg, lazy, why, sizeof(why)) < 0) {
		ret = EXIT_FAILED;
		error("%s: not unmounted%s%s", arg, *why ? ": " : "", why);
		int hidden;
		if (busy_holders(stderr, mnt, &hidden) || hidden)
			fprintf(stderr, "%s%s: to detach it now and let it go once unused: "
				"sbfs umount -z %s (or fusermount3 -u -z %s)\n",
				hidden ? "(processes of other users were not looked at)\n" : "",
				arg, arg, arg);
	}
	free(mnt);
	return ret;
}
