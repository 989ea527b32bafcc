#ifndef SBFS_AUTOSYNC_H
#define SBFS_AUTOSYNC_H

/*
 * `sbfs mount --watch`: edits made directly in a partner are reconciled by
 * the mount itself. The watcher (watch.c) names each path an event touches;
 * once none of the paths waiting has had an event for AUTOSYNC_QUIET_MS (a
 * file still open for writing, as far as inotify tells: modified and not
 * yet closed, waits for its close apart), they run as `sbfs reconcile
 * MOUNTPOINT` would, limited to them, in a thread of their own through the control socket's runner (control_run),
 * so they take turns with the commands clients send.
 *
 * The mount's own write-through makes events too: a run over those paths
 * finds them in sync and is dropped without a word or a log line. Runs are
 * at least AUTOSYNC_QUIET_MS apart, so heavy traffic through the mount
 * costs at most two short exclusive holds a second.
 */
#include <stddef.h>

struct control;
struct autosync;

#define AUTOSYNC_QUIET_MS 500
/* Paths waiting this long run even though events keep coming on others. */
#define AUTOSYNC_MAX_MS 5000
/* A file modified and not closed (a writer that keeps it open, pausing)
 * is taken after this long without an event: copied while open it could
 * be caught between two writes that belong together. */
#define AUTOSYNC_OPEN_MS 60000

enum autosync_how {
	AS_CHANGED,	/* created, deleted, moved, attributes */
	AS_WRITING,	/* written: wait for its close */
	AS_CLOSED,	/* closed after writing */
	AS_ALL,		/* events were lost: the whole tree */
};

/* Starts the thread; runs go through ctl, which outlives it, on the
 * partnership of roots (source, target; they outlive it too). 0 or -errno,
 * said on stderr. */
int autosync_start(struct control *ctl, const char *const roots[2], struct autosync **out);
/* From the watcher's thread: rel (relative to the roots, len bytes) had an
 * event of that kind. Never blocks for long; a path it cannot keep (out of
 * memory) makes the next run a whole one. */
void autosync_note(struct autosync *a, const char *rel, size_t len, enum autosync_how how);
/*
 * Lets a run in progress finish, cancels what is pending (the next
 * reconcile, the remount's own, takes it up) and frees. Never waits for a
 * quiet period. NULL-safe.
 */
void autosync_stop(struct autosync *a);

#endif
