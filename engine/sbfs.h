/*
 * sbfs engine: the public interface.
 *
 * A partnership is a pair of directory roots, SOURCE and TARGET, with a
 * state (the last synchronised state, in LMDB) and an operation log. A
 * reconcile is two steps: sb_plan_build() scans both roots against the
 * state and decides, without changing anything; sb_plan_apply() carries the
 * plan out. Nothing here prints: failures come back as a negative errno or
 * an SB_E_* code, warnings and progress through the hooks.
 */
#ifndef SBFS_H
#define SBFS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SBFS_VERSION "0.1.0"

/* Engine-specific error codes, beside negative errnos. */
enum {
	SB_E_SAME = -10001,	 /* source and target are the same directory */
	SB_E_NESTED = -10002,	 /* one root lies inside the other */
	SB_E_STATE_INSIDE = -10003, /* the state directory lies inside a root */
	SB_E_MASS = -10004,	 /* a side looks emptied: refused */
	SB_E_BADPATH = -10005,	 /* a path argument is not inside the roots */
	SB_E_STATE_CORRUPT = -10006, /* the state file (data.mdb) is damaged */
	SB_E_STATE_LOST = -10007, /* a state that recorded a sync is missing or empty */
	SB_E_STATE_FOREIGN = -10008, /* a state directory is owned by another user */
	SB_E_STATE_WRITABLE = -10009, /* a state directory is writable by group or others */
	SB_E_STATE_SYMLINK = -10010, /* a state directory or file is a symbolic link */
	SB_E_BADPATTERN = -10011, /* an ignore pattern that cannot be used (ignore.h) */
	SB_E_ROOT_MOVED = -10012, /* a root's path now names another directory */
	SB_E_GONE = -10013,	 /* a side went away during the scan (sb_pship_gone) */
};

/* Text for an errno or SB_E_* code (never NULL). */
const char *sb_strerror(int code);

/* Special files: FIFOs and device nodes are carried (a device's rdev in
 * the size fields, as its st_size is 0); a socket belongs to the process
 * that bound it and is never copied (plan.c). SB_OTHER: none of these. */
enum sb_type { SB_NONE = 0, SB_FILE = 1, SB_DIR = 2, SB_LINK = 3, SB_OTHER = 4,
	       SB_FIFO = 5, SB_CHR = 6, SB_BLK = 7, SB_SOCK = 8 };
const char *sb_type_name(int type);
static inline int sb_type_special(int type)
{
	return type >= SB_FIFO && type <= SB_SOCK;
}

/* 1 if rel is a well-formed path relative to the roots (no "..", ".", "//"). */
int sb_rel_valid(const char *rel, size_t len);

/* The state of one side's copy of a path, as the scan saw it. */
struct sb_sideinfo {
	uint8_t type;		/* enum sb_type; SB_NONE when absent */
	uint32_t mode;		/* permission bits */
	uint64_t size;
	int64_t mtime_ns;
};

enum sb_conflict_kind {
	SB_CK_NONE = 0,
	SB_CK_CONTENT,		/* both sides have different content */
	SB_CK_MODIFIED_DELETED,	/* changed on one side, deleted on the other */
	SB_CK_TYPE,		/* e.g. a file on one side, a directory on the other */
	SB_CK_UNDER_DELETED,	/* created or changed under a directory the other side deleted */
	SB_CK_CASE,		/* a case-insensitive side cannot hold it beside a name
				 * differing only in case: rename one */
};
const char *sb_conflict_kind_name(int kind);

#define SB_SUGGEST_NONE (-1)
#define SB_SUGGEST_SOURCE 0
#define SB_SUGGEST_TARGET 1
/* Two mtimes at most this far apart are "about the same time" for a suggestion. */
#define SB_SUGGEST_TOLERANCE_NS 2000000000LL

struct sb_conflict {
	uint8_t kind;		/* enum sb_conflict_kind */
	int8_t suggest;		/* SB_SUGGEST_* */
	struct sb_sideinfo side[2];
};

/* Sync Butler's SuggestAction for two sides' versions; SB_SUGGEST_*. */
int sb_suggest(const struct sb_sideinfo *src, const struct sb_sideinfo *tgt);

/* ---------------------------------------------------------- partnership */

struct sb_pship;

struct sb_error {
	int code;		/* negative errno or SB_E_* */
	char path[1024];	/* the path concerned, may be truncated */
};

/*
 * Validates both roots (existing, readable directories, distinct, not
 * nested), opens them and the partnership's state under state_root (NULL:
 * $SBFS_STATE_DIR, else ${XDG_STATE_HOME:-$HOME/.local/state}/sbfs), and the
 * log at log_path (NULL: state_root/log.jsonl). On error *err says which
 * path and why, and nothing has been created but the state root.
 */
int sb_pship_open(const char *source, const char *target,
		  const char *state_root, const char *log_path,
		  struct sb_pship **out, struct sb_error *err);
void sb_pship_close(struct sb_pship *p);	/* NULL-safe; releases the lock */
const char *sb_pship_root(const struct sb_pship *p, int side); /* canonical */
const char *sb_pship_id(const struct sb_pship *p);
/*
 * 1 + the side whose root stopped answering during the last scan or apply
 * (0 if none), *err why: a negative errno, or SB_E_ROOT_MOVED when the
 * root's path now names another directory (unmounted, even lazily).
 */
int sb_pship_gone(const struct sb_pship *p, int *err);
/* This partnership's state directory (holds "roots", and "mount" while mounted). */
const char *sb_pship_dir(const struct sb_pship *p);
/*
 * From now on appends the operation log to log_path (NULL: the state root's
 * log.jsonl, as sb_pship_open). On error the log stays where it was.
 */
int sb_pship_set_log(struct sb_pship *p, const char *log_path);
/*
 * Appends a line about a whole run (the mount's automatic reconciles) to
 * the operation log: {"action":ACTION,"paths":N,"result":RESULT,"reason":…};
 * reason may be NULL.
 */
int sb_pship_log_note(struct sb_pship *p, const char *action, uint64_t paths,
		      const char *result, const char *reason);
/*
 * What side's file system can hold, probed once per file system (caps.c):
 * in words ("exfat: case-insensitive, no modes, no symlinks, times 1 s"),
 * or as a JSON object.
 */
void sb_pship_describe(struct sb_pship *p, int side, char *buf, size_t n);
void sb_pship_caps_json(struct sb_pship *p, int side, FILE *f);
/* 1 if every change to side's file system is made on this machine, where
 * inotify sees it: not a network file system, whose server and other
 * clients change it unseen (nor a FUSE type the probe could not name). */
int sb_pship_local(struct sb_pship *p, int side);
/* The state root for `given` (NULL: the default); malloc'd. */
char *sb_state_root(const char *given);
/*
 * Takes the partnership's exclusive lock. With wait == 0 returns
 * -EWOULDBLOCK when another process holds it, and *holder gets its pid
 * (0 if unknown). Released by sb_pship_close().
 */
int sb_pship_lock(struct sb_pship *p, int wait, long *holder);

/*
 * Old versions kept (versions.c): what a reconcile or resolve replaces or
 * deletes on a side is kept in ROOT/.sbfs-versions/PATH~YYYYMMDD-HHMMSS
 * there. keep: versions kept per path and side (0: no limit), days: how
 * long (0: no limit); both 0: versions off, nothing kept. Defaults below.
 */
#define SB_VERSIONS_NAME ".sbfs-versions"
#define SB_KEEP_VERSIONS 5
#define SB_KEEP_DAYS 30
void sb_pship_set_versions(struct sb_pship *p, unsigned keep, unsigned days);
void sb_pship_get_versions(const struct sb_pship *p, unsigned *keep, unsigned *days);

struct sb_version {
	int side;		/* the side it was kept on */
	char *path;		/* the path it was a version of */
	size_t len;
	char *vname;		/* its name in the folder: NAME~STAMP */
	char stamp[24];		/* YYYYMMDD-HHMMSS[-NN], what restore takes */
	int64_t time;		/* when it was kept (s, UTC) */
	uint8_t type;		/* enum sb_type (a deleted directory: SB_DIR) */
	uint32_t mode;
	uint64_t size;
	int64_t mtime_ns;	/* the version's own mtime */
};
struct sb_version_list {
	size_t n;
	struct sb_version *v;	/* by path, side, newest first */
};
/* The versions kept of rel and what is beneath it (NULL or "": all). */
int sb_versions_list(struct sb_pship *p, const char *rel, struct sb_version_list *out);
void sb_versions_free(struct sb_version_list *l);
/* Retention over every kept version; *removed counts what went. */
int sb_versions_prune(struct sb_pship *p, uint64_t *removed);
/*
 * Copies version ver over its path on the side it was kept on (the parent
 * directories made again), the current entry kept as a version in turn:
 * a change on that side the next reconcile carries. Files and symlinks;
 * -EISDIR for a directory. The caller holds the lock.
 */
int sb_version_restore(struct sb_pship *p, const struct sb_version *ver);

/*
 * Moves the partnership's state directory aside (renamed
 * DIR.forgotten-YYYYMMDD-HHMMSS, never deleted), so that the next
 * reconcile is a first sync, which copies and records but never deletes.
 * Works on a damaged or lost state, which sb_pship_open refuses. *moved
 * (malloc'd) gets the new name, NULL when there was no state. -EBUSY while
 * a reconcile or mount holds the partnership.
 */
int sb_pship_forget(const char *source, const char *target, const char *state_root,
		    char **moved, struct sb_error *err);

/*
 * Files a mount had open for writing when it stopped without closing them
 * (killed): their sides may differ by the write in flight. *paths
 * (malloc'd, each malloc'd) lists them; none when no mount left any.
 */
int sb_journal_dirty(struct sb_pship *p, char ***paths, size_t *n);
/* Forgets them, once a reconcile has settled them. */
int sb_journal_clear(struct sb_pship *p);

/* ---------------------------------------------------------- plan */

enum sb_op {
	SB_OP_COPY = 1,		/* new on side `to`: copy there */
	SB_OP_UPDATE,		/* replace side `to`'s version */
	SB_OP_META,		/* same content: carry mode and mtime to `to` */
	SB_OP_DELETE,		/* delete on side `to` */
	SB_OP_RECORD,		/* both sides agree: only the state learns it */
	SB_OP_FORGET,		/* gone on both sides: the state forgets it */
	SB_OP_KEEP_BOTH,	/* rename target's version aside, then sync both names */
	SB_OP_CONFLICT,		/* left for the user */
	SB_OP_SKIP,		/* could not be examined (err says why) */
};

enum sb_choice {
	SB_CHOOSE_SKIP = 0,
	SB_CHOOSE_SOURCE,
	SB_CHOOSE_TARGET,
	SB_CHOOSE_KEEP_BOTH,
};

struct sb_item {
	int op;			/* enum sb_op */
	int to;			/* side that changes: 0 source, 1 target */
	int resolved;		/* 1: a conflict settled by a choice */
	int err;		/* SB_OP_SKIP: the cause */
	const char *why;	/* SB_OP_SKIP: the reason in words, or NULL */
	const char *path;	/* relative to the roots, not NUL-safe: use len */
	size_t len;
	struct sb_sideinfo side[2];
	struct sb_conflict conflict;	/* SB_OP_CONFLICT, or resolved */
};

struct sb_ignore;

struct sb_hooks {
	void *arg;
	/* A path skipped, with the cause; the path is left for the next run. */
	void (*warn)(void *arg, const char *rel, size_t len, int err,
		     const char *what);
	/* Called now and then while scanning (done = entries seen) and
	 * applying (done of total). May be NULL. */
	void (*progress)(void *arg, int applying, uint64_t done, uint64_t total);
	/* Decides a conflict while planning; NULL leaves every conflict. */
	int (*choose)(void *arg, const struct sb_item *conflict);
	/* Paths the plan leaves alone (ignore.h); NULL: none. */
	const struct sb_ignore *ignore;
};

struct sb_plan_stats {
	uint64_t copy[2], update[2], del[2];	/* indexed by the side that changes */
	uint64_t conflicts, skipped, recorded, keep_both;
	uint64_t state_entries;		/* records in the state before the run */
	uint64_t missing[2];		/* recorded entries absent on that side */
	uint64_t seen[2];		/* entries present on that side */
	uint64_t hashed[2];		/* files read to tell an edit from a touch */
	int unlisted[2];		/* the root's listing failed: its -errno */
	uint64_t ignored;		/* entries left alone (a directory counts once) */
};

struct sb_plan;

/*
 * Scans and decides. paths (npaths of them, relative, NULL for the whole
 * tree) limits the plan to those paths and what is beneath them. Changes
 * nothing on disk or in the state.
 */
int sb_plan_build(struct sb_pship *p, const char *const *paths, size_t npaths,
		  const struct sb_hooks *hooks, struct sb_plan **out);
void sb_plan_free(struct sb_plan *plan);	/* NULL-safe */
const struct sb_plan_stats *sb_plan_stats(const struct sb_plan *plan);
/* Total changes to files on disk (copies, updates, deletes, keep-both). */
uint64_t sb_plan_changes(const struct sb_plan *plan);
/* Number of items, state-only ones included. */
uint64_t sb_plan_count(const struct sb_plan *plan);
/* Iteration in plan order: 1 and *it filled (valid until the next call), 0 at the end. */
int sb_plan_rewind(struct sb_plan *plan);
int sb_plan_next(struct sb_plan *plan, struct sb_item *it);
/*
 * SB_E_MASS when a side's root could not be listed (stats' unlisted), or is
 * empty, or has lost more than half of the entries the state records, while
 * the state has records; *side says which.
 */
int sb_plan_check_mass(const struct sb_plan *plan, int *side);

struct sb_apply_result {
	uint64_t done, skipped, failed, conflicts;
	/* A side went away (1 + the side, 0 if none; gone_err why, as for
	 * sb_pship_gone): left counts what was not done, or done but not
	 * verified, and is left for the next run. */
	uint64_t left;
	int gone, gone_err;
};

/*
 * Carries the plan out and records the outcome in the state and the log.
 * Paths that changed since the scan are skipped with a warning. full says
 * the plan covered the whole tree (its conflicts then replace the state's
 * list). Returns 0 when the run finished (look at *res), a negative code
 * when it could not go on.
 */
int sb_plan_apply(struct sb_pship *p, struct sb_plan *plan,
		  const struct sb_hooks *hooks, int full,
		  struct sb_apply_result *res);

/* ---------------------------------------------------------- conflicts */

/* Conflicts recorded by the last reconcile, sorted by path. */
struct sb_conflict_list {
	size_t n;
	struct sb_conflict_entry {
		char *path;
		size_t len;
		struct sb_conflict c;
	} *v;
};
int sb_conflicts_list(struct sb_pship *p, struct sb_conflict_list *out);
void sb_conflicts_free(struct sb_conflict_list *l);

/* ---------------------------------------------------------- mirror */

/*
 * The mount's operations on a partnership (whose lock the caller holds):
 * a union view of both roots, every change made on both sides before the
 * call returns. Paths are relative to the roots ("" is the root), as the
 * view shows them: a conflicted NAME appears as NAME.conflict-source and
 * NAME.conflict-target, each one side's version; deleting one resolves the
 * conflict for the other side, renaming one to NAME makes that side win,
 * renaming it elsewhere keeps both. Each call returns 0 (or a count) or a
 * negative errno; a change that failed on one side is not recorded, so the
 * next reconcile takes it up.
 *
 * Threads: FUSE makes these calls from its worker threads at once, and any
 * call may run while any other does, on the same path or not, but:
 * - sb_mirror_open and sb_mirror_set_ignore come before every other call,
 *   sb_mirror_close after every other has returned;
 * - sb_mirror_exclusive is not re-entrant: begin and end come in pairs on
 *   one thread, which makes no other mirror call between them (it would
 *   wait for itself). Other threads' calls wait meanwhile, but for
 *   sb_mirror_flush, sb_mirror_statfs, sb_mirror_reload_conflicts,
 *   sb_dir_close, sb_file_fsync, sb_file_release (and sb_file_drop_privs
 *   with nothing to drop). An unlink, rmdir or rename of a conflict entry
 *   takes it itself, as a resolution;
 * - an sb_dir is read by one call at a time and closed after its last;
 * - calls on one sb_file may overlap (its changes take turns), but
 *   sb_file_release comes after every other call on it has returned.
 * The locks and their order: engine/mirror_int.h.
 */
struct sb_mirror;
struct sb_file;

/* What a conflicted NAME's entries add to it (".conflict-source", ...): the
 * names the view may show for NAME; *out gets the table, the count is
 * returned. */
size_t sb_conflict_suffixes(const char *const **out);
struct stat;
struct statvfs;
struct timespec;

int sb_mirror_open(struct sb_pship *p, struct sb_mirror **out);
/* Writes every queued state update, then frees. NULL-safe. */
void sb_mirror_close(struct sb_mirror *m);
/* Returns once every change made so far is in the state. */
int sb_mirror_flush(struct sb_mirror *m);
/* Re-reads the conflict list (after a reconcile). */
int sb_mirror_reload_conflicts(struct sb_mirror *m);
/*
 * begin != 0: waits for every operation in progress, holds off new ones and
 * writes all queued state updates, so a reconcile can run on the partners;
 * begin == 0: lets operations go on, with the conflict list re-read.
 */
int sb_mirror_exclusive(struct sb_mirror *m, int begin);

int sb_mirror_getattr(struct sb_mirror *m, const char *path, struct stat *st);
int sb_mirror_readlink(struct sb_mirror *m, const char *path, char *buf, size_t size);
/* access(2) with the effective ids of the caller, who must be the one
 * running the mirror: the shown side decides (F_OK, R_OK, W_OK, X_OK). */
int sb_mirror_access(struct sb_mirror *m, const char *path, int mask);
/*
 * A directory of the view, open for reading: its listing is taken when it
 * is opened, and again when it is read from position 0 after a first read
 * (rewinddir).
 */
struct sb_dir;
int sb_dir_open(struct sb_mirror *m, const char *path, struct sb_dir **out);
/* Calls fill for each name from position pos (0, or a next given before)
 * with its d_type, the view's inode number (the one getattr gives) and the
 * position after it; a non-zero return stops (and is not an error). */
int sb_dir_read(struct sb_dir *d, uint64_t pos,
		int (*fill)(void *arg, const char *name, unsigned char type, uint64_t ino,
			    uint64_t next),
		void *arg);
/* NULL-safe. */
void sb_dir_close(struct sb_dir *d);
int sb_mirror_mkdir(struct sb_mirror *m, const char *path, unsigned mode,
		    unsigned uid, unsigned gid);
int sb_mirror_symlink(struct sb_mirror *m, const char *target, const char *path,
		      unsigned uid, unsigned gid);
/* A FIFO, socket or device node (mode holds its S_IF* type), as mknod(2). */
int sb_mirror_mknod(struct sb_mirror *m, const char *path, unsigned mode, uint64_t rdev,
		    unsigned uid, unsigned gid);
int sb_mirror_unlink(struct sb_mirror *m, const char *path);
int sb_mirror_rmdir(struct sb_mirror *m, const char *path);
int sb_mirror_rename(struct sb_mirror *m, const char *from, const char *to,
		     unsigned int flags);
int sb_mirror_link(struct sb_mirror *m, const char *from, const char *to);
int sb_mirror_chmod(struct sb_mirror *m, const char *path, unsigned mode);
int sb_mirror_chown(struct sb_mirror *m, const char *path, unsigned uid, unsigned gid);
int sb_mirror_utimens(struct sb_mirror *m, const char *path, const struct timespec tv[2]);
int sb_mirror_truncate(struct sb_mirror *m, const char *path, int64_t size);
int sb_mirror_statfs(struct sb_mirror *m, struct statvfs *out);
/* user.* attributes only; remove != 0 removes name. */
int sb_mirror_setxattr(struct sb_mirror *m, const char *path, const char *name,
		       const void *val, size_t size, int flags, int remove);
/*
 * The inode flags of lsattr and chattr: with fsx 0 an int as FS_IOC_GETFLAGS
 * and SETFLAGS take, with fsx 1 a struct fsxattr as FS_IOC_FSGETXATTR and
 * FSSETXATTR do; of a regular file or a directory. Read from the side the
 * view shows (set == 0), or set on both sides (the first put back when the
 * second refuses). A side whose file system has none is left out; -ENOTTY
 * when neither has them, as natively. Not in the state: reconcile does not
 * compare or carry them.
 */
int sb_mirror_fileattr(struct sb_mirror *m, const char *path, int fsx, int set, void *val);
/* list != 0 lists names instead of reading one value. */
long sb_mirror_getxattr(struct sb_mirror *m, const char *path, const char *name,
			void *val, size_t size, int list);

/* An open file: both sides' descriptors. */
int sb_file_open(struct sb_mirror *m, const char *path, int flags, int create,
		 unsigned mode, unsigned uid, unsigned gid, struct sb_file **out);
long sb_file_read(struct sb_file *f, void *buf, size_t size, int64_t off);
long sb_file_write(struct sb_file *f, const void *buf, size_t size, int64_t off);
/*
 * Drops, on both sides, what a write must drop: set-user-ID, and
 * set-group-ID on a group-executable file, unless the writer is privileged;
 * file capabilities (security.capability) always. The kernel does this
 * itself before writes it caches; for uncached (direct) writes it is the
 * file system's job.
 */
int sb_file_drop_privs(struct sb_file *f, int privileged);
int sb_file_truncate(struct sb_file *f, int64_t size);
int sb_file_fallocate(struct sb_file *f, int mode, int64_t off, int64_t len);
/* Each close(2) of a handle: both sides get the source's mtime, and the
 * fingerprints the state will keep are taken (see mirror_file.c). */
int sb_file_flush(struct sb_file *f);
int sb_file_fsync(struct sb_file *f, int datasync);
int sb_file_getattr(struct sb_file *f, struct stat *st);
/*
 * chmod, chown (-1: unchanged) and utimens (UTIME_NOW, UTIME_OMIT) of the
 * handle's file on both sides, not recorded: for a file whose last name
 * was unlinked while open, which the view no longer shows.
 */
int sb_file_chmod(struct sb_file *f, unsigned mode);
int sb_file_chown(struct sb_file *f, unsigned uid, unsigned gid);
int sb_file_utimens(struct sb_file *f, const struct timespec tv[2]);
/* copy_file_range(2) from in's side into both of out's; the count copied. */
long sb_file_copy_range(struct sb_file *in, int64_t off_in, struct sb_file *out,
			int64_t off_out, size_t len);
/* Closes both sides and queues the state update (hash and the
 * fingerprints of the last flush). */
int sb_file_release(struct sb_file *f);

/* ---------------------------------------------------------- JSON */

/* Writes s as a JSON string; invalid UTF-8 bytes become U+FFFD. */
void sb_json_string(FILE *f, const char *s, size_t len);
/* Writes "key":"..." and, when s is not valid UTF-8, ,"key_b64":"<base64 of the raw bytes>". */
void sb_json_path(FILE *f, const char *key, const char *s, size_t len);
int sb_utf8_valid(const char *s, size_t len);

#endif
