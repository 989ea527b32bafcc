/*
 * sbfs mount: the FUSE layer (see view.h). One short function per request:
 * the node's view path from the inode table, one engine call, the answer.
 */
#include "view.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "view_int.h"

static struct sb_dir *dh(const struct fuse_file_info *fi)
{
	return (struct sb_dir *)(uintptr_t)fi->fh;
}

double view_timeout(const struct view *v)
{
	return v->covered && v->covered(v->cover_arg) ? TIMEOUT_LONG : TIMEOUT_SHORT;
}

static void reply_attr(fuse_req_t req, int ret, const struct stat *st)
{
	if (ret < 0)
		reply_err(req, ret);
	else
		fuse_reply_attr(req, st, view_timeout(V(req)));
}

void view_entry_param(const struct view *v, struct fuse_entry_param *e, const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->attr = *st;
	e->attr_timeout = e->entry_timeout = view_timeout(v);
}

/* itab_enter, with the check it asks for: a hard-linked file's node is the
 * one known under another of its names, if that name still leads to it. */
int view_enter(struct view *v, fuse_ino_t parent, const char *name, const struct stat *st,
	       uint64_t *id)
{
	int how = !S_ISDIR(st->st_mode) && st->st_nlink > 1 ? ITAB_ASK : ITAB_NEW;
	char *other = NULL;
	struct stat o;

	int ret = itab_enter(v->t, parent, name, st->st_ino, st->st_mode, how, id, &other);
	if (ret == 1) {
		how = sb_mirror_getattr(v->m, other, &o) == 0 && o.st_ino == st->st_ino ? ITAB_LINK
											 : ITAB_NEW;
		free(other);
		ret = itab_enter(v->t, parent, name, st->st_ino, st->st_mode, how, id, NULL);
	}
	return ret;
}

/* Tells the kernel parent/name is the file st describes (ret: how getting
 * st went). A reply the kernel no longer waits for counts no lookup. */
static void reply_entry(fuse_req_t req, fuse_ino_t parent, const char *name, int ret,
			const struct stat *st)
{
	struct fuse_entry_param e;
	struct view *v = V(req);

	if (ret == 0) {
		view_entry_param(v, &e, st);
		ret = view_enter(v, parent, name, st, &e.ino);
	}
	if (ret < 0)
		reply_err(req, ret);
	else if (fuse_reply_entry(req, &e) == -ENOENT)
		itab_forget(v->t, e.ino, 1);
}

/*
 * The mount creates as the caller would natively: the partner applies the
 * caller's umask, unless the directory has a default ACL, which replaces
 * it. So the kernel leaves the mode unmasked (FUSE_CAP_DONT_MASK) and the
 * creating thread takes the caller's umask; the daemon's own must never
 * apply. umask is a process's, so each worker thread unshares its file
 * system attributes once to have one of its own.
 */
void view_umask(fuse_req_t req)
{
	static __thread int own;
	if (!own)
		own = unshare(CLONE_FS) == 0 ? 1 : -1;
	if (own > 0)
		umask(fuse_req_ctx(req)->umask);
}

/* ------------------------------------------------------------ names */

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct stat st;
	char *p;
	int ret = itab_path(V(req)->t, parent, name, &p);
	if (ret == 0)
		ret = sb_mirror_getattr(V(req)->m, p, &st);
	free(p);
	/* A missing name is remembered by the kernel while the watcher would
	 * tell it otherwise (view_invalidate drops it once made). */
	if (ret == -ENOENT && V(req)->covered && V(req)->covered(V(req)->cover_arg)) {
		struct fuse_entry_param e = { .entry_timeout = TIMEOUT_LONG };
		fuse_reply_entry(req, &e);
		return;
	}
	reply_entry(req, parent, name, ret, &st);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n)
{
	itab_forget(V(req)->t, ino, n);
	fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *fd)
{
	for (size_t i = 0; i < count; i++)
		itab_forget(V(req)->t, fd[i].ino, fd[i].nlookup);
	fuse_reply_none(req);
}

static int file_attr(struct sb_file *f, void *st)
{
	return sb_file_getattr(f, st);
}

/* A node whose name is gone (unlinked while open, or removed outside) is
 * answered for by one of its open handles. */
static int attr_of(struct view *v, fuse_ino_t ino, struct stat *st)
{
	char *p;
	int ret = itab_path(v->t, ino, NULL, &p);
	if (ret == 0)
		ret = sb_mirror_getattr(v->m, p, st);
	free(p);
	if (ret == -ENOENT && itab_with_file(v->t, ino, file_attr, st) == 0)
		ret = 0;
	return ret;
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int ret = fi ? sb_file_getattr(fh(fi), &st) : attr_of(V(req), ino, &st);
	reply_attr(req, ret, &st);
}

struct change {
	const struct stat *attr;
	int to_set;
	struct timespec tv[2];
};

/* setattr on an open handle of a node without a name. */
static int orphan_set(struct sb_file *f, void *arg)
{
	const struct change *c = arg;
	const struct stat *a = c->attr;
	int ret = 0, s = c->to_set;

	if (s & FUSE_SET_ATTR_MODE)
		ret = sb_file_chmod(f, a->st_mode & 07777);
	if (ret == 0 && (s & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		ret = sb_file_chown(f, s & FUSE_SET_ATTR_UID ? a->st_uid : (uid_t)-1,
				    s & FUSE_SET_ATTR_GID ? a->st_gid : (gid_t)-1);
	if (ret == 0 && (s & FUSE_SET_ATTR_SIZE))
		ret = sb_file_truncate(f, a->st_size);
	if (ret == 0 && (s & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)))
		ret = sb_file_utimens(f, c->tv);
	return ret;
}

/* In libfuse's high-level order: mode, owner, size, times. */
static int named_set(struct view *v, const char *p, struct change *c, struct fuse_file_info *fi)
{
	const struct stat *a = c->attr;
	int ret = 0, s = c->to_set;

	if (s & FUSE_SET_ATTR_MODE)
		ret = sb_mirror_chmod(v->m, p, a->st_mode & 07777);
	if (ret == 0 && (s & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		ret = sb_mirror_chown(v->m, p, s & FUSE_SET_ATTR_UID ? a->st_uid : (uid_t)-1,
				      s & FUSE_SET_ATTR_GID ? a->st_gid : (gid_t)-1);
	if (ret == 0 && (s & FUSE_SET_ATTR_SIZE))
		ret = fi ? sb_file_truncate(fh(fi), a->st_size)
			 : sb_mirror_truncate(v->m, p, a->st_size);
	if (ret == 0 && (s & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME)))
		ret = sb_mirror_utimens(v->m, p, c->tv);
	return ret;
}

static void time_of(struct timespec *tv, int to_set, int now, int set, const struct timespec *t)
{
	tv->tv_sec = 0;
	tv->tv_nsec = UTIME_OMIT;
	if (to_set & now)
		tv->tv_nsec = UTIME_NOW;
	else if (to_set & set)
		*tv = *t;
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
		       struct fuse_file_info *fi)
{
	struct view *v = V(req);
	struct change c = { attr, to_set, { { 0 } } };
	struct stat st;
	char *p;

	time_of(&c.tv[0], to_set, FUSE_SET_ATTR_ATIME_NOW, FUSE_SET_ATTR_ATIME, &attr->st_atim);
	time_of(&c.tv[1], to_set, FUSE_SET_ATTR_MTIME_NOW, FUSE_SET_ATTR_MTIME, &attr->st_mtim);
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		c.to_set |= FUSE_SET_ATTR_ATIME;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		c.to_set |= FUSE_SET_ATTR_MTIME;
	int ret = itab_path(v->t, ino, NULL, &p);
	if (ret == 0)
		ret = named_set(v, p, &c, fi);
	free(p);
	if (ret == -ENOENT)
		ret = itab_with_file(v->t, ino, orphan_set, &c);
	if (ret == 0)
		ret = fi ? sb_file_getattr(fh(fi), &st) : attr_of(v, ino, &st);
	reply_attr(req, ret, &st);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino)
{
	char buf[PATH_MAX + 1], *p;
	int ret = itab_path(V(req)->t, ino, NULL, &p);
	if (ret == 0)
		ret = sb_mirror_readlink(V(req)->m, p, buf, sizeof(buf));
	free(p);
	if (ret < 0)
		reply_err(req, ret);
	else
		fuse_reply_readlink(req, buf);
}

/* What ll_mkdir, ll_symlink and ll_mknod make: S_IFDIR, S_IFLNK (to target)
 * or another type (mode's); then the entry, as a lookup would give it. */
static void make_entry(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		       dev_t rdev, const char *target)
{
	const struct fuse_ctx *cx = fuse_req_ctx(req);
	struct view *v = V(req);
	struct stat st;
	char *p;

	if (!target)
		view_umask(req);
	int ret = itab_path(v->t, parent, name, &p);
	if (ret == 0)
		ret = target ? sb_mirror_symlink(v->m, target, p, cx->uid, cx->gid)
		      : S_ISDIR(mode) ? sb_mirror_mkdir(v->m, p, mode & 07777, cx->uid, cx->gid)
				      : sb_mirror_mknod(v->m, p, mode, rdev, cx->uid, cx->gid);
	if (ret == 0)
		ret = sb_mirror_getattr(v->m, p, &st);
	free(p);
	reply_entry(req, parent, name, ret, &st);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	make_entry(req, parent, name, S_IFDIR | mode, 0, NULL);
}

static void ll_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	make_entry(req, parent, name, S_IFLNK, 0, target);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		     dev_t rdev)
{
	make_entry(req, parent, name, mode, rdev, NULL);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t parent, const char *name)
{
	struct view *v = V(req);
	struct stat st;
	char *from = NULL, *to = NULL;

	int ret = itab_path(v->t, ino, NULL, &from);
	if (ret == 0)
		ret = itab_path(v->t, parent, name, &to);
	if (ret == 0)
		ret = sb_mirror_link(v->m, from, to);
	if (ret == 0)
		ret = sb_mirror_getattr(v->m, to, &st);
	free(from);
	free(to);
	reply_entry(req, parent, name, ret, &st);
}

static void remove_common(fuse_req_t req, fuse_ino_t parent, const char *name, int dir)
{
	struct view *v = V(req);
	char *p;
	int ret = itab_path(v->t, parent, name, &p);
	if (ret == 0)
		ret = dir ? sb_mirror_rmdir(v->m, p) : sb_mirror_unlink(v->m, p);
	free(p);
	if (ret == 0)
		itab_unlink(v->t, parent, name);
	reply_err(req, ret);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_common(req, parent, name, 0);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	remove_common(req, parent, name, 1);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
		      const char *newname, unsigned int flags)
{
	struct view *v = V(req);
	char *from = NULL, *to = NULL;

	int ret = itab_path(v->t, parent, name, &from);
	if (ret == 0)
		ret = itab_path(v->t, newparent, newname, &to);
	if (ret == 0)
		ret = sb_mirror_rename(v->m, from, to, flags);
	free(from);
	free(to);
	if (ret == 0)
		itab_rename(v->t, parent, name, newparent, newname, !!(flags & RENAME_EXCHANGE));
	reply_err(req, ret);
}

/* ------------------------------------------------------------ listings */

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct sb_dir *d;
	char *p;
	int ret = itab_path(V(req)->t, ino, NULL, &p);
	if (ret == 0)
		ret = sb_dir_open(V(req)->m, p, &d);
	free(p);
	if (ret < 0) {
		reply_err(req, ret);
		return;
	}
	fi->fh = (uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		sb_dir_close(d);
}

struct fill {
	fuse_req_t req;
	struct view *v;
	fuse_ino_t dir;
	int plus;	/* READDIRPLUS: entries with their attributes */
	char *buf;
	size_t size, used;
	char *path;	/* with plus: the directory's path, then room for a name */
	size_t plen;
};

/* What glibc's readdir takes for a deleted entry is 0: the dots get this. */
#define DOT_INO 0xffffffffu

/* 1 when e does not fit any longer. */
static int add(struct fill *c, const char *name, const struct fuse_entry_param *e, off_t off)
{
	size_t room = c->size - c->used, n;
	if (c->plus)
		n = fuse_add_direntry_plus(c->req, c->buf + c->used, room, name, e, off);
	else
		n = fuse_add_direntry(c->req, c->buf + c->used, room, name, &e->attr, off);
	if (n > room)
		return 1;
	c->used += n;
	return 0;
}

/*
 * Offsets: 1 after ".", 2 after "..", 2 + n after the engine's position n.
 * With the attributes, the kernel knows each entry without a LOOKUP:
 * `rm -rf`, `ls -l` and `find` take one round trip less per name. An
 * entry that cannot be stat()ed now goes without them (node 0, which the
 * kernel skips).
 */
static int fill_one(void *arg, const char *name, unsigned char type, uint64_t ino,
		    uint64_t next)
{
	struct fill *c = arg;
	struct fuse_entry_param e = { .attr = { .st_mode = (mode_t)DTTOIF(type), .st_ino = ino } };
	struct stat st;
	size_t len = strlen(name);

	if (c->plus && len <= NAME_MAX) {
		memcpy(c->path + c->plen, name, len + 1);
		if (sb_mirror_getattr(c->v->m, c->path, &st) == 0) {
			view_entry_param(c->v, &e, &st);
			if (view_enter(c->v, c->dir, name, &st, &e.ino) < 0)
				e.ino = 0;
		}
	}
	if (!add(c, name, &e, (off_t)(next + 2)))
		return 0;
	if (e.ino)
		itab_forget(c->v->t, e.ino, 1);	/* not sent */
	return 1;
}

static void readdir_common(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi, int plus)
{
	struct fill c = { req, V(req), ino, plus, malloc(size), size, 0, NULL, 0 };
	struct fuse_entry_param dot = { .attr = { .st_mode = S_IFDIR, .st_ino = DOT_INO } };
	char *p = NULL;
	int ret = c.buf ? 0 : -ENOMEM;

	if (ret == 0 && plus && (ret = itab_path(c.v->t, ino, NULL, &p)) == 0) {
		c.plen = strlen(p);
		if (!(c.path = malloc(c.plen + NAME_MAX + 2)))
			ret = -ENOMEM;
		else if (memcpy(c.path, p, c.plen), c.plen)
			c.path[c.plen++] = '/';
	}
	if (ret == 0 && ((off < 1 && add(&c, ".", &dot, 1)) || (off < 2 && add(&c, "..", &dot, 2))))
		goto out;
	if (ret == 0)
		ret = sb_dir_read(dh(fi), off > 2 ? (uint64_t)off - 2 : 0, fill_one, &c);
out:
	if (ret < 0)
		reply_err(req, ret);
	else
		fuse_reply_buf(req, c.buf, c.used);
	free(p);
	free(c.path);
	free(c.buf);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, 0);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	readdir_common(req, ino, size, off, fi, 1);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	sb_dir_close(dh(fi));
	fuse_reply_err(req, 0);
}

/* ------------------------------------------------------------ the rest */

static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	struct statvfs st;
	int ret = sb_mirror_statfs(V(req)->m, &st);
	if (ret < 0)
		reply_err(req, ret);
	else
		fuse_reply_statfs(req, &st);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	char *p;
	int ret = itab_path(V(req)->t, ino, NULL, &p);
	if (ret == 0)
		ret = sb_mirror_access(V(req)->m, p, mask);
	free(p);
	reply_err(req, ret);
}

static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
	struct view *v = userdata;
	/* Large requests: throughput collapses with small ones. */
	conn->max_write = 1 << 20;
	conn->max_readahead = 4 << 20;	/* see set_readahead */
	/* The mode as the caller gave it: see view_umask. */
	if (conn->capable & FUSE_CAP_DONT_MASK)
		conn->want |= FUSE_CAP_DONT_MASK;
	/* Lookups and creates in one directory may run at once: every engine
	 * call may run beside any other (sbfs.h). */
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	/* A symlink's target is read once; the watcher and a reconcile drop
	 * it with the inode's pages when it changes. */
	if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
		conn->want |= FUSE_CAP_CACHE_SYMLINKS;
	/*
	 * When the kernel checks permissions it must see the POSIX ACLs, or
	 * a user an ACL lets in is refused by the mode bits alone. The
	 * capability turns on default_permissions by itself, so it goes only
	 * with it: without, the partners check each request against their
	 * own ACLs, and the kernel passes the ACLs' xattrs through to us to
	 * set on both and read back.
	 */
	if (v->checks && (conn->capable & FUSE_CAP_POSIX_ACL))
		conn->want |= FUSE_CAP_POSIX_ACL;
}

static struct fuse_lowlevel_ops ops = {
	.init = ll_init,
	.lookup = ll_lookup,
	.forget = ll_forget,
	.forget_multi = ll_forget_multi,
	.getattr = ll_getattr,
	.setattr = ll_setattr,
	.readlink = ll_readlink,
	.mkdir = ll_mkdir,
	.symlink = ll_symlink,
	.mknod = ll_mknod,
	.link = ll_link,
	.unlink = ll_unlink,
	.rmdir = ll_rmdir,
	.rename = ll_rename,
	.opendir = ll_opendir,
	.readdir = ll_readdir,
	.readdirplus = ll_readdirplus,
	.releasedir = ll_releasedir,
	.statfs = ll_statfs,
	.access = ll_access,
};

/* ------------------------------------------------------------ session */

int view_new(struct sb_mirror *m, struct fuse_args *args, int checks, struct view **out)
{
	struct view *v = calloc(1, sizeof(*v));
	int ret = -ENOMEM;

	*out = NULL;
	if (!v || itab_new(&v->t) < 0)
		goto out;
	v->m = m;
	v->checks = checks;
	view_file_ops(&ops);
	if (!(v->se = fuse_session_new(args, &ops, sizeof(ops), v))) {
		ret = -EINVAL;
		goto out;
	}
	*out = v;
	v = NULL;
	ret = 0;
out:
	view_free(v);
	return ret;
}

void view_set_cover(struct view *v, int (*covered)(void *arg), void *arg)
{
	v->covered = covered;
	v->cover_arg = arg;
}

int view_mount(struct view *v, const char *mnt)
{
	if (fuse_session_mount(v->se, mnt) < 0)
		return -EIO;
	v->mounted = 1;
	if (fuse_set_signal_handlers(v->se) < 0)
		return -EIO;
	v->handlers = 1;
	return 0;
}

int view_run(struct view *v)
{
	struct fuse_loop_config lc = { .clone_fd = 0, .max_idle_threads = 10 };
	return fuse_session_loop_mt(v->se, &lc);
}

void view_free(struct view *v)
{
	if (!v)
		return;
	if (v->handlers)
		fuse_remove_signal_handlers(v->se);
	if (v->mounted)
		fuse_session_unmount(v->se);
	if (v->se)
		fuse_session_destroy(v->se);
	itab_free(v->t);
	free(v);
}

static void drop_one(struct view *v, const char *path, int gone)
{
	uint64_t parent, id;
	itab_find(v->t, path, &parent, &id);
	if (id)
		fuse_lowlevel_notify_inval_inode(v->se, id, 0, 0);
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	/* A name the kernel holds no node of may be one it remembers as
	 * missing (ll_lookup does so while covered): that goes too. */
	if ((gone || (!id && v->covered && v->covered(v->cover_arg))) && parent && *base)
		fuse_lowlevel_notify_inval_entry(v->se, parent, base, strlen(base));
}

/* With path go the names of its conflict entries, which a reconcile or an
 * edit outside makes appear or go with it. */
void view_invalidate(struct view *v, const char *path, int gone)
{
	const char *const *suf;
	size_t n = sb_conflict_suffixes(&suf), len = strlen(path);
	char *buf;

	drop_one(v, path, gone);
	if (!len || !(buf = malloc(len + 32)))
		return;
	for (size_t k = 0; k < n; k++) {
		snprintf(buf, len + 32, "%s%s", path, suf[k]);
		drop_one(v, buf, gone);
	}
	free(buf);
}
