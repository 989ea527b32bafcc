/*
 * What the mirror's modules share (engine-private): the mirror and its open
 * files, and the few helpers more than one module calls. The modules:
 *   mirror.c        open and close, sb_mirror_exclusive and resolving,
 *                   getattr, access, readlink, statfs;
 *   mirror_conf.c   the conflict view: names in both directions (the
 *                   conflict and case-clash lists, the suffixes);
 *   mirror_list.c   directory listings and the cache that keeps them;
 *   mirror_ns.c     namespace changes: create, remove, rename, link, and
 *                   mode, owner, times and size;
 *   mirror_xattr.c  extended attributes;
 *   mirror_file.c   open files, the writer threads, the journal, and what
 *                   the mount saw (the knowledge records are made of).
 *
 * Locks. Every mirror call may come from any of FUSE's worker threads at
 * once, and sb_mirror_exclusive from the control socket's thread; there are
 * these locks, and no others:
 *   oplock     (rwlock) held shared by each operation for as long as it runs
 *              (SHARED); held alone from sb_mirror_exclusive(m, 1) to
 *              sb_mirror_exclusive(m, 0), by a reconcile or a resolution
 *              (sb_mi_resolve_paths), so that no operation runs meanwhile. A
 *              thread holding it shared must let go before it resolves
 *              (remove_entry, sb_mirror_rename do): taking it alone then
 *              would wait for itself. sb_file_release, sb_file_fsync,
 *              sb_mirror_statfs, sb_mirror_flush, sb_mirror_reload_conflicts
 *              and sb_dir_close do not take it, nor sb_file_drop_privs when
 *              it has nothing to drop.
 *   clock      (rwlock) the conflict view: conf, nconf, fold, nfold,
 *              fold_side. Read by sb_mi_map* and build_listing, written by
 *              sb_mirror_reload_conflicts.
 *   files_mu   the open-file list (m->files, each file's next and pprev),
 *              each open file's rel (a rename rewrites it) and jrel, and the
 *              journal (writes to m->journal, m->jbytes).
 *   f->lock    one open file's running hash (sha, hoff, seq) and what it
 *              knows of its sides (last, changed, foreign, failed, seen).
 *              Its fd, m, plain and plain_gen are set by sb_file_open and
 *              only read after.
 *   wmu        the writer threads' queue (whead, wtail, wstop) and each
 *              job's ret and done; wcv and wdone are its conditions.
 *   lmu        the kept listings (listings, lbytes) and every blob's refs.
 *   the recorder's mu (recorder.c): its queue; taken in sb_mi_enqueue and
 *              sb_mirror_flush, and by the recorder's thread, which takes
 *              no lock of the mirror's.
 * Order: oplock first; then files_mu, then f->lock, then wmu (a write holds
 * its file's lock while the writer threads run its target half). Two files'
 * locks are taken by address (sb_file_copy_range), never under files_mu,
 * which takes one file's lock at a time. clock, lmu and the recorder's mu
 * are leaves: nothing is taken while one is held, so sb_mi_enqueue is never
 * called with files_mu or a file's lock held (file_record lets go first).
 * Without a lock: mode_gen and view_gen (atomics); p, rec, ig, nwthr and
 * wthr, set before the first request and only read after.
 */
#ifndef SBFS_MIRROR_INT_H
#define SBFS_MIRROR_INT_H

#include <pthread.h>
#include <time.h>

#include "recorder.h"

/* The view's inode numbers: the source's own, or the target's with the top
 * bit set where only the target has the entry; stable across renames and
 * remounts, distinct between the sides. */
#define SB_VIEW_INO(ino, side) ((side) == SB_TGT ? (ino) | (1ULL << 63) : (ino))

#define SUF_SRC ".conflict-source"
#define SUF_TGT ".conflict-target"

struct sb_mirror {
	struct sb_pship *p;
	/* Moves on each chmod and reconcile: see sb_file.plain_gen. */
	unsigned long mode_gen;
	pthread_rwlock_t clock;		/* guards the conflict list */
	char **conf;			/* sorted paths in conflict */
	size_t nconf;
	char **fold;			/* sorted case clashes (clash.c), */
	size_t nfold;
	int fold_side;			/* all held by this side alone */
	struct sb_recorder *rec;	/* the state's updates: recorder.c */
	const struct sb_ignore *ig;	/* shown from and written to the source only */
	/* Every operation holds it shared; a reconcile or a resolution holds
	 * it alone, so mount traffic and reconcile never race. */
	pthread_rwlock_t oplock;
	pthread_mutex_t files_mu;	/* guards the open-file list */
	struct sb_file *files;
	int journal;			/* see journal.c; -1 if none */
	long jbytes;			/* written to it since opened or rewritten */
	/* writers of the target's half of large writes (see sb_file_write) */
	pthread_mutex_t wmu;
	pthread_cond_t wcv, wdone;
	struct wjob *whead, **wtail;
	pthread_t wthr[2];
	int nwthr, wstop;
	/* kept listings: see get_listing */
	uint64_t view_gen;		/* bumped when the conflict list may change */
	pthread_mutex_t lmu;		/* guards listings, lbytes, blob refs */
	struct listing *listings;	/* LISTINGS slots, by hash of the path */
	size_t lbytes;
};

struct sb_file {
	struct sb_file *next, **pprev;	/* in m->files */
	struct sb_mirror *m;
	int fd[2];
	char *rel;
	pthread_mutex_t lock;
	struct sb_sha *sha;
	uint64_t hoff;			/* bytes hashed so far, in order */
	int seq, failed;
	char *jrel;			/* the name its 'W' journal record gave */
	/* Fingerprints after this handle's last change to each side, and
	 * those of the last flush (see file_settle): a change that is not
	 * this handle's, found at a flush, makes `foreign` (for good). */
	struct sb_fp last[2];
	int changed, foreign;
	struct known seen;		/* K_POST once settled, else K_NONE */
	/* Made by this open without set-ID bits or file capabilities: while
	 * m->mode_gen still equals plain_gen, a write has nothing to drop. */
	int plain;
	unsigned long plain_gen;
};

#define SHARED(m) pthread_rwlock_rdlock(&(m)->oplock)
#define UNSHARED(m) pthread_rwlock_unlock(&(m)->oplock)

/* mirror.c */
/* Queues one state update for the recorder (sb_rec_enqueue). */
int sb_mi_enqueue(struct sb_mirror *m, int kind, const char *path,
		  const char *path2, const struct known *k);
/* Parent directory of rel on side i; with create, missing ones are made. */
int sb_mi_side_parent(struct sb_mirror *m, int i, const char *rel, int create,
		      int *dfd, const char **base);
/* Settles paths as `sbfs resolve` would; takes the oplock alone. */
int sb_mi_resolve_paths(struct sb_mirror *m, const char *const *paths, size_t n,
			int choice);

/*
 * A change the view asked of both sides that one side refused while the
 * other took it (undone there where it can be): said once in the log as
 * "WHAT refused by the source|target", with the path and the error, so
 * that a full or read-only partner leaves a trace (mirror.c).
 */
void sb_mi_log_oneside(struct sb_mirror *m, const char *what, const char *rel, int side,
		       int err);

/* mirror_conf.c */
/* Whether rel[0..len) is in conflict; called with clock held. */
int sb_mi_in_conflict(struct sb_mirror *m, const char *rel, size_t len);
/* View path -> real path (malloc'd) and the side it is limited to (-1: both). */
int sb_mi_map(struct sb_mirror *m, const char *path, char **out, int *side);
/* sb_mi_map, and an ignored path the source's only (*ign set). */
int sb_mi_map_ign(struct sb_mirror *m, const char *path, char **out, int *side, int hint,
		  int *ign);

/* mirror_list.c */
/* The listing cache's slots, all empty; NULL when out of memory. */
struct listing *sb_mi_listings_new(void);
/* Frees the slots and the listings they keep. */
void sb_mi_listings_free(struct listing *ls);

/* mirror_ns.c */
/* -EEXIST (logged) when base in dfd would clash in case on a folding side i. */
int sb_mi_fold_clash(struct sb_mirror *m, int i, int dfd, const char *base, const char *rel);

struct creds {
	uid_t uid;
	gid_t gid;
	mode_t mode;
	const char *target;
	dev_t rdev;		/* sb_mirror_mknod */
};
/* Gives a new entry to the caller c (when running as root). */
void sb_mi_own(int dfd, const char *base, const struct creds *c);

/* mirror_file.c */
/* A writer thread's loop (arg: the mirror). */
void *sb_mi_writer(void *arg);
/* Both sides' stats of rel; 0 only when both are regular files. */
int sb_mi_stat_files(struct sb_mirror *m, const char *rel, struct stat st[2]);
/* What the state may learn after a change of metadata only (see there). */
void sb_mi_seen_meta(struct sb_mirror *m, const char *rel, const struct stat pre[2],
		     const struct timespec *mt, struct known *k);
/* Open files on rel take the mount's own change of metadata as theirs. */
void sb_mi_files_follow(struct sb_mirror *m, const char *rel, const struct known *k);
/* Open files follow a rename of from (or of a directory above) to to. */
void sb_mi_files_renamed(struct sb_mirror *m, const char *from, const char *to);

/* A timespec in nanoseconds. */
static inline int64_t sb_mi_ts_ns(const struct timespec *t)
{
	return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec;
}

#endif
