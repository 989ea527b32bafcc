#ifndef SBFS_WATCH_H
#define SBFS_WATCH_H

/*
 * Edits made directly in a partner while it is mounted: the kernel keeps
 * names and attributes of the view for the cache timeouts, so a file
 * appended to outside would be served at its old size (a read stops there)
 * until they run out. A thread of its own watches every directory of both
 * partners with inotify and has the kernel drop what it cached of each
 * path an event names, at once.
 *
 * The mount's own write-through makes events too; they are taken like any
 * other (an invalidation is never wrong), coalesced: each wake-up drains
 * both queues, and a path named several times is invalidated once.
 *
 * Where inotify runs out of watches (fs.inotify.max_user_watches) the rest
 * is left unwatched, said once on stderr: edits there show after the cache
 * timeouts, as without the watcher. A queue overflow walks the tree of
 * that partner again: watches re-added, every path in it invalidated.
 */
struct autosync;
struct sb_ignore;
struct view;
struct watch;

/*
 * Watches the directories of roots[0] (source) and roots[1] (target) and
 * starts the thread that has v's kernel caches dropped. ig (may be NULL): the view hides the
 * target's ignored paths, so those are not watched. The initial walk is
 * done before it returns, so an edit after that is seen. as (may be NULL,
 * else it outlives the watcher): each path an event names is noted there
 * too, for the automatic reconciles of --watch (autosync.h). 0 or -errno (said
 * on stderr); running out of watches is not an error.
 */
int watch_start(struct view *v, const char *const roots[2], const struct sb_ignore *ig,
		struct autosync *as, struct watch **out);
/*
 * Stops the thread and frees everything; before v is freed. NULL-safe.
 * An invalidation waits for what the kernel holds (a directory's lock, a
 * page being read): should the loop have stopped on a signal with requests
 * still queued and unanswered, one in progress, and so this, would wait
 * until the session closes, which comes after. Not seen in the tests.
 */
void watch_stop(struct watch *w);
/* 1 while every directory met is watched (none was left for want of a
 * watch); 0 for NULL. From any thread. */
int watch_complete(const struct watch *w);

#endif
