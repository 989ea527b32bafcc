#ifndef SBFS_VIEW_INT_H
#define SBFS_VIEW_INT_H

/*
 * What view.c (names, attributes, listings, the session) and view_file.c
 * (open files, extended attributes) share.
 */
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <stdint.h>

#include "cli.h"
#include "itab.h"

/*
 * How long the kernel may keep names and attributes. A reconcile and the
 * watcher have it drop what they change, so the caches may hold a while;
 * what neither sees shows within the short timeout, and while the watcher
 * covers every directory of two local partners (view_set_cover), within
 * the long one.
 */
#define TIMEOUT_SHORT 5.0
#define TIMEOUT_LONG 60.0

/* Set before the session serves and only read after, but for the table,
 * which has its own lock. */
struct view {
	struct fuse_session *se;
	struct sb_mirror *m;
	struct itab *t;
	int checks;		/* the kernel checks permissions */
	int (*covered)(void *arg);	/* see view_set_cover */
	void *cover_arg;
	int mounted, handlers;
};

static inline struct view *V(fuse_req_t req)
{
	return fuse_req_userdata(req);
}

static inline struct sb_file *fh(const struct fuse_file_info *fi)
{
	return (struct sb_file *)(uintptr_t)fi->fh;
}

/* ret: 0 or a negative errno. */
static inline void reply_err(fuse_req_t req, int ret)
{
	fuse_reply_err(req, -ret);
}

/* The cache timeout now, in seconds. */
double view_timeout(const struct view *v);
/* An entry for st, with the view's timeouts (node id left 0). */
void view_entry_param(const struct view *v, struct fuse_entry_param *e, const struct stat *st);
/* itab_enter for parent/name as st, with the check it may ask for. */
int view_enter(struct view *v, fuse_ino_t parent, const char *name, const struct stat *st,
	       uint64_t *id);
/* Before a create: the caller's umask is the thread's (see view.c). */
void view_umask(fuse_req_t req);
/* Fills in the operations view_file.c serves. */
void view_file_ops(struct fuse_lowlevel_ops *ops);

#endif
