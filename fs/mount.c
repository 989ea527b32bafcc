/*
 * sbfs mount: the FUSE layer. Each operation maps one request to one
 * engine call (sb_mirror_*, sb_file_*) and returns its -errno.
 */
#define FUSE_USE_VERSION 35
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "ignore.h"
#include "links.h"
#include "mountinfo.h"
#include "watch.h"

static struct sb_mirror *mirror(void)
{
	return fuse_get_context()->private_data;
}

/* FUSE paths start with '/'; the engine's are relative to the roots. */
static const char *rel(const char *path)
{
	while (*path == '/')
		path++;
	return path;
}

static struct sb_file *fh(const struct fuse_file_info *fi)
{
	return (struct sb_file *)(uintptr_t)fi->fh;
}

/* Whether mount_args turned on default_permissions: the kernel checks. */
static int kernel_checks;

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
	/*
	 * When the kernel checks permissions it must see the POSIX ACLs, or
	 * a user an ACL lets in is refused by the mode bits alone. The
	 * capability turns on default_permissions by itself, so it goes only
	 * with it: without, the partners check each request against their
	 * own ACLs, and the kernel passes the ACLs' xattrs through to us
	 * (in the initial user namespace) to set on both and read back.
	 */
	if (kernel_checks && (conn->capable & FUSE_CAP_POSIX_ACL))
		conn->want |= FUSE_CAP_POSIX_ACL;
	/* Large requests: throughput collapses with small ones. */
	conn->max_write = 1 << 20;
	conn->max_readahead = 4 << 20;	/* see set_readahead */
	/* Deleting an open file must delete it on both sides, not hide it. */
	cfg->hard_remove = 1;
	/* The partners' own inode numbers (see SB_VIEW_INO): stable. */
	cfg->use_ino = 1;
	cfg->readdir_ino = 1;
	/* A reconcile invalidates what it changes, so the caches may hold a
	 * while; edits made outside without one show within 5 s. */
	cfg->entry_timeout = 5.0;
	cfg->attr_timeout = 5.0;
	cfg->negative_timeout = 0;
	return fuse_get_context()->private_data;
}

/* Names of multiply linked files (see links.h); set while serving. */
static struct links *links;

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	int ret;
	if (fi)	/* no path walk for an open file (fstat, and after a create) */
		ret = sb_file_getattr(fh(fi), st);
	else
		ret = sb_mirror_getattr(mirror(), rel(path), st);
	if (ret == 0 && path)
		links_seen(links, path, st);
	return ret;
}

static int op_readlink(const char *path, char *buf, size_t size)
{
	return sb_mirror_readlink(mirror(), rel(path), buf, size);
}

static int op_access(const char *path, int mask)
{
	return sb_mirror_access(mirror(), rel(path), mask);
}

static struct sb_dir *dh(const struct fuse_file_info *fi)
{
	return (struct sb_dir *)(uintptr_t)fi->fh;
}

static int op_opendir(const char *path, struct fuse_file_info *fi)
{
	struct sb_dir *d;
	int ret = sb_dir_open(mirror(), rel(path), &d);
	if (ret == 0)
		fi->fh = (uintptr_t)d;
	return ret;
}

struct fill_ctx {
	void *buf;
	fuse_fill_dir_t filler;
	char *path;	/* for READDIRPLUS: the directory's path, then room for a name */
	size_t plen;
};

/* Offsets: 1 after ".", 2 after "..", 2 + n after the engine's position n.
 * With offsets, libfuse puts each name straight into the reply. */
static int fill_one(void *arg, const char *name, unsigned char type, uint64_t ino,
		    uint64_t next)
{
	struct fill_ctx *c = arg;
	struct stat st = { .st_mode = (mode_t)DTTOIF(type), .st_ino = ino };
	enum fuse_fill_dir_flags ff = 0;
	/* With the attributes, the kernel knows the entry without a LOOKUP
	 * each: `rm -rf`, `ls -l` and `find` take one round trip less per
	 * name. An entry that cannot be stat()ed now goes without them. */
	if (c->path) {
		struct stat a;
		memcpy(c->path + c->plen, name, strlen(name) + 1);
		if (op_getattr(c->path, &a, NULL) == 0) {
			st = a;
			ff = FUSE_FILL_DIR_PLUS;
		}
	}
	return c->filler(c->buf, name, &st, (off_t)(next + 2), ff);
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler,
		      off_t off, struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct fill_ctx c = { buf, filler, NULL, 0 };
	int ret;
	if (off < 1 && filler(buf, ".", NULL, 1, 0))
		return 0;
	if (off < 2 && filler(buf, "..", NULL, 2, 0))
		return 0;
	/* The kernel asks for attributes with the first part of a listing,
	 * and with later parts only when lookups of its names came between
	 * (readdirplus_auto): a plain listing stats few of its entries. */
	if ((flags & FUSE_READDIR_PLUS) && path) {
		c.plen = strlen(path);
		if ((c.path = malloc(c.plen + NAME_MAX + 2))) {
			memcpy(c.path, path, c.plen);
			if (c.plen > 1)
				c.path[c.plen++] = '/';
		}
	}
	ret = sb_dir_read(dh(fi), off > 2 ? (uint64_t)off - 2 : 0, fill_one, &c);
	free(c.path);
	return ret;
}

static int op_releasedir(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	sb_dir_close(dh(fi));
	return 0;
}

static int op_mkdir(const char *path, mode_t mode)
{
	struct fuse_context *cx = fuse_get_context();
	return sb_mirror_mkdir(mirror(), rel(path), mode & ~cx->umask, cx->uid, cx->gid);
}

static int op_symlink(const char *target, const char *path)
{
	struct fuse_context *cx = fuse_get_context();
	return sb_mirror_symlink(mirror(), target, rel(path), cx->uid, cx->gid);
}

static int op_unlink(const char *path)
{
	uint64_t ino = links_ino(links, path);
	int ret = sb_mirror_unlink(mirror(), rel(path));
	if (ret == 0)
		links_changed(links, ino, path, 1);
	return ret;
}

static int op_rmdir(const char *path)
{
	return sb_mirror_rmdir(mirror(), rel(path));
}

static int op_rename(const char *from, const char *to, unsigned int flags)
{
	return sb_mirror_rename(mirror(), rel(from), rel(to), flags);
}

static int op_link(const char *from, const char *to)
{
	int ret = sb_mirror_link(mirror(), rel(from), rel(to));
	struct stat st;
	if (ret == 0 && sb_mirror_getattr(mirror(), rel(from), &st) == 0) {
		links_seen(links, from, &st);
		links_changed(links, st.st_ino, to, 0);
	}
	return ret;
}

static int op_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	(void)fi;
	return sb_mirror_chmod(mirror(), rel(path), mode);
}

static int op_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)fi;
	return sb_mirror_chown(mirror(), rel(path), uid, gid);
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	if (fi)
		return sb_file_truncate(fh(fi), size);
	return sb_mirror_truncate(mirror(), rel(path), size);
}

static int op_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	(void)fi;
	return sb_mirror_utimens(mirror(), rel(path), tv);
}

static int write_only(const struct fuse_file_info *fi)
{
	return (fi->flags & O_ACCMODE) == O_WRONLY;
}

static int open_common(const char *path, struct fuse_file_info *fi, int create, mode_t mode)
{
	struct fuse_context *cx = fuse_get_context();
	struct sb_file *f;
	int ret = sb_file_open(mirror(), rel(path), fi->flags, create,
			       create ? mode & ~cx->umask : 0, cx->uid, cx->gid, &f);
	/* The kernel held a name deleted in the partners since (see watch.h):
	 * ESTALE has it look the name up again and retry, so that `echo >`
	 * creates the file rather than fail. */
	if (ret == -ENOENT && !create)
		return -ESTALE;
	if (ret < 0)
		return ret;
	fi->fh = (uintptr_t)f;
	/* A file open only for writing has no use for the page cache (no
	 * reads, no shared mmap), and bypassing it spares a round trip per
	 * write: the kernel asks security.capability before each cached
	 * write. op_write then drops privileges as the kernel would. */
	fi->direct_io = write_only(fi);
	return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi)
{
	return open_common(path, fi, 0, 0);
}

static int op_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	return open_common(path, fi, 1, mode);
}

static int op_read(const char *path, char *buf, size_t size, off_t off,
		   struct fuse_file_info *fi)
{
	(void)path;
	return (int)sb_file_read(fh(fi), buf, size, off);
}

static int op_write(const char *path, const char *buf, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)path;
	if (write_only(fi)) {
		/* CAP_FSETID, as the kernel checks it, is root's here */
		int ret = sb_file_drop_privs(fh(fi), fuse_get_context()->uid == 0);
		if (ret < 0)
			return ret;
	}
	return (int)sb_file_write(fh(fi), buf, size, off);
}

static int op_statfs(const char *path, struct statvfs *st)
{
	(void)path;
	return sb_mirror_statfs(mirror(), st);
}

static int op_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	return sb_file_release(fh(fi));
}

static int op_flush(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	return sb_file_flush(fh(fi));
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi)
{
	(void)path;
	return sb_file_fsync(fh(fi), datasync);
}

static ssize_t op_copy_file_range(const char *path_in, struct fuse_file_info *fi_in,
				  off_t off_in, const char *path_out,
				  struct fuse_file_info *fi_out, off_t off_out, size_t len,
				  int flags)
{
	(void)path_in;
	(void)path_out;
	if (flags)
		return -EINVAL;
	return sb_file_copy_range(fh(fi_in), off_in, fh(fi_out), off_out, len);
}

static int op_fallocate(const char *path, int mode, off_t off, off_t len,
			struct fuse_file_info *fi)
{
	(void)path;
	return sb_file_fallocate(fh(fi), mode, off, len);
}

static int op_setxattr(const char *path, const char *name, const char *val,
		       size_t size, int flags)
{
	return sb_mirror_setxattr(mirror(), rel(path), name, val, size, flags, 0);
}

static int op_getxattr(const char *path, const char *name, char *val, size_t size)
{
	return (int)sb_mirror_getxattr(mirror(), rel(path), name, val, size, 0);
}

static int op_listxattr(const char *path, char *list, size_t size)
{
	return (int)sb_mirror_getxattr(mirror(), rel(path), NULL, list, size, 1);
}

static int op_removexattr(const char *path, const char *name)
{
	return sb_mirror_setxattr(mirror(), rel(path), name, NULL, 0, 0, 1);
}

static const struct fuse_operations ops = {
	.init = op_init,
	.getattr = op_getattr,
	.readlink = op_readlink,
	.access = op_access,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.releasedir = op_releasedir,
	.mkdir = op_mkdir,
	.symlink = op_symlink,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.rename = op_rename,
	.link = op_link,
	.chmod = op_chmod,
	.chown = op_chown,
	.truncate = op_truncate,
	.utimens = op_utimens,
	.open = op_open,
	.create = op_create,
	.read = op_read,
	.write = op_write,
	.statfs = op_statfs,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.fallocate = op_fallocate,
	.copy_file_range = op_copy_file_range,
	.setxattr = op_setxattr,
	.getxattr = op_getxattr,
	.listxattr = op_listxattr,
	.removexattr = op_removexattr,
};

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

/* A reconcile run by the mount changed path: drop what the kernel cached. */
static void invalidate(void *arg, const char *path, size_t len)
{
	char *p = malloc(len + 2);
	if (!p)
		return;
	p[0] = '/';
	memcpy(p + 1, path, len);
	p[len + 1] = '\0';
	fuse_invalidate_path(arg, p);
	char *slash = strrchr(p, '/');
	if (slash == p)
		slash[1] = '\0';
	else
		*slash = '\0';
	fuse_invalidate_path(arg, p);
	free(p);
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
	int fg;
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
	case OPT_FUSE:
		if (asprintf(&n, "%s%s%s", mo->fuse ? mo->fuse : "", mo->fuse ? "," : "", val) < 0)
			return -4;
		free(mo->fuse);
		mo->fuse = n;
		break;
	}
	return 0;
}

/* The arguments of fuse_new for the -o options mopts; 0 or -ENOMEM. */
static int mount_args(struct fuse_args *args, const char *mopts, const char *root)
{
	char *fsname = NULL;
	int ret = -ENOMEM;

	if (asprintf(&fsname, "fsname=sbfs:%s", root) < 0)
		return ret;
	if (fuse_opt_add_arg(args, "sbfs") < 0)
		goto out;
	/*
	 * Other users come in: the kernel checks their permissions against
	 * the view's modes and ACLs (see op_init). Without them it lets in only the user running
	 * the mount, whose every change the partners check themselves; the
	 * kernel's check would cost a GETATTR of the directory after each
	 * change.
	 */
	kernel_checks = opt_given(mopts, "allow_other") || opt_given(mopts, "allow_root") ||
			opt_given(mopts, "default_permissions");
	if (kernel_checks &&
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
	struct fuse *f = NULL;
	int ret = mount_args(&args, mopts, root);
	if (ret == 0 && !(f = fuse_new(&args, &ops, sizeof(ops), NULL))) {
		error("-o %s: bad mount options (libfuse said why above); nothing was changed", mopts);
		ret = -EINVAL;
	}
	if (f)
		fuse_destroy(f);
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
	struct fuse *fuse = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
	struct control *ctl = NULL;
	struct sb_ignore *ig = NULL;
	struct watch *wt = NULL;
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
	if (mount_args(&args, mopts, sb_pship_root(p, 0)) < 0)
		goto out;
	if (!(fuse = fuse_new(&args, &ops, sizeof(ops), m))) {
		error("-o %s: bad mount options", mopts ? mopts : "");
		goto out;
	}
	if (fuse_mount(fuse, mnt) < 0) {
		error("%s: cannot mount", mnt);
		goto out;
	}
	set_readahead(mnt);
	if (fuse_set_signal_handlers(fuse_get_session(fuse)) < 0)
		goto out_unmount;
	/* Before stderr goes: running out of watches is said there. Without
	 * the watcher (SBFS_TEST_NO_WATCH, for the tests that show it is
	 * needed) or when it cannot start, the mount runs on. */
	const char *nw = getenv("SBFS_TEST_NO_WATCH");
	if (!nw || !*nw)
		watch_start(fuse, mnt, (const char *const[]){ sb_pship_root(p, 0), sb_pship_root(p, 1) },
			    ig, &wt);
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
	} else {
		printf("Mounted %s at %s%s (Ctrl-C or sbfs umount to stop)\n", sb_pship_root(p, 0),
		       mnt, ro ? ", read-only" : "");
		fflush(stdout);
	}
	if (control_start(p, m, mnt, ro, &mo.ign, invalidate, fuse, &ctl) < 0) {
		error("cannot start the control socket in %s", sb_pship_dir(p));
		goto out_unmount;
	}
	report(pipefd[1], EXIT_SYNCED);
	pipefd[1] = -1;
	struct fuse_loop_config lc = { .clone_fd = 0, .max_idle_threads = 10 };
	if (links_new(fuse, &links) < 0)
		links = NULL;	/* only the other names' link counts lag */
	ret = fuse_loop_mt(fuse, &lc) == 0 ? EXIT_SYNCED : EXIT_FAILED;
	links_free(links);
	links = NULL;
	fuse_remove_signal_handlers(fuse_get_session(fuse));
	/* Unmounted (by sbfs umount, fusermount3 -u or umount, which return at
	 * once): the last records are written while the control socket still
	 * answers, so a command sent meanwhile is run after them, by us, and
	 * one that finds the socket gone finds them written. */
	sb_mirror_flush(m);
out_unmount:
	watch_stop(wt);	/* invalidates through the session fuse_destroy ends */
	control_stop(ctl);
	ctl = NULL;
	fuse_unmount(fuse);
out:
	report(pipefd[1], ret);
	if (fuse)
		fuse_destroy(fuse);
	fuse_opt_free_args(&args);
	sb_mirror_close(m);
	sb_pship_close(p);
	sb_ignore_free(ig);
	cli_ign_free(&mo.ign);
	free(rargv);
	free(mopts);
	free(mnt);
	return ret;
}

int cmd_umount(struct ctx *c, int argc, char **argv)
{
	if (argc != 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(c->cmd->usage, argc == 2 ? stdout : stderr);
		return argc == 2 ? EXIT_SYNCED : EXIT_USAGE;
	}
	/* Bad input is told apart from a failed unmount (a busy mount). */
	char *mnt = realpath(argv[1], NULL);
	unsigned maj, min;
	int sbfs = 0, found = mnt && mounted_at(mnt, &maj, &min, &sbfs);
	free(mnt);
	if (!found || !sbfs) {
		if (!mnt)
			error("%s: %s", argv[1], strerror(errno));
		else
			error("%s: %s", argv[1], found ? "not an sbfs mount" : "not a mount point");
		return EXIT_USAGE;
	}
	pid_t pid = fork();
	if (pid == 0) {
		execlp("fusermount3", "fusermount3", "-u", argv[1], (char *)NULL);
		_exit(127);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return EXIT_FAILED;
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		error("%s: not unmounted", argv[1]);
		return EXIT_FAILED;
	}
	return EXIT_SYNCED;
}
