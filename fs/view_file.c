/*
 * sbfs mount: the FUSE layer's open files and extended attributes (see
 * view.h, view_int.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "view_int.h"

static int write_only(const struct fuse_file_info *fi)
{
	return (fi->flags & O_ACCMODE) == O_WRONLY;
}

/*
 * A file open only for writing has no use for the page cache (no reads,
 * no shared mmap), and bypassing it spares a round trip per write: the
 * kernel asks security.capability before each cached write. ll_write then
 * drops privileges as the kernel would.
 */
static void opened(struct view *v, fuse_ino_t ino, struct sb_file *f, struct fuse_file_info *fi)
{
	fi->fh = (uintptr_t)f;
	fi->direct_io = write_only(fi);
	if (itab_opened(v->t, ino, f) < 0) {
		/* only an fstat after the last name is unlinked fails */
	}
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	const struct fuse_ctx *cx = fuse_req_ctx(req);
	struct view *v = V(req);
	struct sb_file *f;
	char *p;

	int ret = itab_path(v->t, ino, NULL, &p);
	if (ret == 0)
		ret = sb_file_open(v->m, p, fi->flags, 0, 0, cx->uid, cx->gid, &f);
	free(p);
	/* The kernel held a name deleted in the partners since (see watch.h):
	 * ESTALE has it look the name up again and retry, so that `echo >`
	 * creates the file rather than fail. */
	if (ret == -ENOENT)
		ret = -ESTALE;
	if (ret < 0) {
		reply_err(req, ret);
		return;
	}
	opened(v, ino, f, fi);
	if (fuse_reply_open(req, fi) == -ENOENT) {
		itab_closed(v->t, ino, f);
		sb_file_release(f);
	}
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
		      struct fuse_file_info *fi)
{
	const struct fuse_ctx *cx = fuse_req_ctx(req);
	struct view *v = V(req);
	struct fuse_entry_param e;
	struct sb_file *f = NULL;
	struct stat st;
	char *p;

	view_umask(req);
	int ret = itab_path(v->t, parent, name, &p);
	if (ret == 0)
		ret = sb_file_open(v->m, p, fi->flags, 1, mode, cx->uid, cx->gid, &f);
	free(p);
	if (ret == 0)
		ret = sb_file_getattr(f, &st);
	if (ret == 0) {
		view_entry_param(v, &e, &st);
		ret = view_enter(v, parent, name, &st, &e.ino);
	}
	if (ret < 0) {
		if (f)
			sb_file_release(f);
		reply_err(req, ret);
		return;
	}
	opened(v, e.ino, f, fi);
	if (fuse_reply_create(req, &e, fi) == -ENOENT) {
		itab_closed(v->t, e.ino, f);
		sb_file_release(f);
		itab_forget(v->t, e.ino, 1);
	}
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)ino;
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	long n = sb_file_read(fh(fi), buf, size, off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
		     struct fuse_file_info *fi)
{
	(void)ino;
	long n = 0;
	if (write_only(fi))	/* CAP_FSETID, as the kernel checks it, is root's here */
		n = sb_file_drop_privs(fh(fi), fuse_req_ctx(req)->uid == 0);
	if (n == 0)
		n = sb_file_write(fh(fi), buf, size, off);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	reply_err(req, sb_file_flush(fh(fi)));
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	itab_closed(V(req)->t, ino, fh(fi));
	reply_err(req, sb_file_release(fh(fi)));
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	reply_err(req, sb_file_fsync(fh(fi), datasync));
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
			 struct fuse_file_info *fi)
{
	(void)ino;
	reply_err(req, sb_file_fallocate(fh(fi), mode, off, len));
}

static void ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in,
			       struct fuse_file_info *fi_in, fuse_ino_t ino_out, off_t off_out,
			       struct fuse_file_info *fi_out, size_t len, int flags)
{
	(void)ino_in;
	(void)ino_out;
	long n = flags ? -EINVAL : sb_file_copy_range(fh(fi_in), off_in, fh(fi_out), off_out, len);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else
		fuse_reply_write(req, (size_t)n);
}

/* ------------------------------------------------------------ attributes */

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
			size_t size, int flags)
{
	char *p;
	int ret = itab_path(V(req)->t, ino, NULL, &p);
	if (ret == 0)
		ret = sb_mirror_setxattr(V(req)->m, p, name, value, size, flags, 0);
	free(p);
	reply_err(req, ret);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	char *p;
	int ret = itab_path(V(req)->t, ino, NULL, &p);
	if (ret == 0)
		ret = sb_mirror_setxattr(V(req)->m, p, name, NULL, 0, 0, 1);
	free(p);
	reply_err(req, ret);
}

/* name NULL: the list of names. size 0 asks for the length only. */
static void xattr_get(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	char *p = NULL, *buf = NULL;
	long n = itab_path(V(req)->t, ino, NULL, &p);
	if (n == 0 && size && !(buf = malloc(size)))
		n = -ENOMEM;
	if (n == 0)
		n = sb_mirror_getxattr(V(req)->m, p, name, buf, size, !name);
	if (n < 0)
		fuse_reply_err(req, (int)-n);
	else if (!size)
		fuse_reply_xattr(req, (size_t)n);
	else
		fuse_reply_buf(req, buf, (size_t)n);
	free(buf);
	free(p);
}

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	xattr_get(req, ino, name, size);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	xattr_get(req, ino, NULL, size);
}

/*
 * lsattr and chattr: the kernel turns FS_IOC_GETFLAGS and SETFLAGS into
 * these (an int each way), and reads FS_IOC_FSGETXATTR (a struct fsxattr)
 * before a change, on a file's or a directory's handle; they are the
 * node's, so its path is used either way. Other ioctls are not passed on.
 */
static void ll_ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int cmd, void *arg,
		     struct fuse_file_info *fi, unsigned flags, const void *in_buf,
		     size_t in_bufsz, size_t out_bufsz)
{
	(void)arg;
	(void)fi;
	union {
		int flags;
		struct fsxattr fsx;
	} val = { 0 };
	int fsx = cmd == FS_IOC_FSGETXATTR || cmd == FS_IOC_FSSETXATTR;
	int set = cmd == FS_IOC_SETFLAGS || cmd == FS_IOC_FSSETXATTR, ret = -ENOTTY;
	size_t len = fsx ? sizeof(val.fsx) : sizeof(val.flags);
	char *p = NULL;

	if ((flags & FUSE_IOCTL_COMPAT) ||
	    (cmd != FS_IOC_GETFLAGS && cmd != FS_IOC_SETFLAGS && !fsx))
		goto out;
	ret = -EINVAL;
	if ((set && in_bufsz < len) || (!set && out_bufsz < len))
		goto out;
	if (set)
		memcpy(&val, in_buf, len);
	if ((ret = itab_path(V(req)->t, ino, NULL, &p)) == 0)
		ret = sb_mirror_fileattr(V(req)->m, p, fsx, set, &val);
out:
	free(p);
	if (ret < 0)
		reply_err(req, ret);
	else
		fuse_reply_ioctl(req, 0, set ? NULL : &val, set ? 0 : len);
}

void view_file_ops(struct fuse_lowlevel_ops *ops)
{
	ops->open = ll_open;
	ops->create = ll_create;
	ops->read = ll_read;
	ops->write = ll_write;
	ops->flush = ll_flush;
	ops->release = ll_release;
	ops->fsync = ll_fsync;
	ops->fallocate = ll_fallocate;
	ops->copy_file_range = ll_copy_file_range;
	ops->setxattr = ll_setxattr;
	ops->getxattr = ll_getxattr;
	ops->listxattr = ll_listxattr;
	ops->removexattr = ll_removexattr;
	ops->ioctl = ll_ioctl;
}
