#ifndef SBFS_VIEW_H
#define SBFS_VIEW_H

/*
 * The mount's FUSE layer on libfuse's low-level API: each request is
 * turned into one engine call (sb_mirror_*, sb_file_*) on the view path
 * the inode table (itab.h) gives its node, and answered with its result.
 */
struct fuse_args;
struct sb_mirror;
struct view;

/*
 * A session serving m with the options args (libfuse's low-level and mount
 * options), not yet mounted; checks: they hold default_permissions, so the
 * kernel checks permissions. 0, -EINVAL for options libfuse refuses (it
 * said why on stderr), -ENOMEM. With m NULL, only the options are checked.
 */
int view_new(struct sb_mirror *m, struct fuse_args *args, int checks, struct view **out);
/*
 * The kernel may keep names and attributes for the long timeout (60 s, not
 * 5) while covered(arg) says every directory of both partners is watched
 * (see watch.h); called on each reply, from any thread. Before view_run.
 */
void view_set_cover(struct view *v, int (*covered)(void *arg), void *arg);
/* Mounts at mnt and installs the signal handlers that end view_run. */
int view_mount(struct view *v, const char *mnt);
/* Serves requests until unmounted or signalled: 0 when unmounted, else
 * libfuse's fuse_session_loop_mt result. */
int view_run(struct view *v);
/* Unmounts (if mounted) and frees. NULL-safe. */
void view_free(struct view *v);

/*
 * Has the kernel drop what it cached of view path (relative to the roots,
 * "" the root): attributes and pages, and with gone its name too. For the
 * watcher's and the control socket's threads, never from a request: the
 * kernel may wait for that request's answer before it can drop anything.
 */
void view_invalidate(struct view *v, const char *path, int gone);

#endif
