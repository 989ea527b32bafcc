/*
 * What the partnership, plan and apply modules share. Engine-private.
 */
#ifndef SBFS_CORE_H
#define SBFS_CORE_H

#include <string.h>

#include "internal.h"
#include "caps.h"

struct sb_pship {
	char *root[2];		/* canonical paths */
	int rootfd[2];
	char id[33];		/* hex prefix of SHA-256(source NUL target) */
	char *dir;		/* this partnership's state directory */
	struct sb_state *state;
	struct sb_log *log;
	int lockfd;
	int same_fs;		/* both roots on one file system: sync it once */
	int8_t fine[2];		/* fp.c: changes stamped finely there; -1 not probed */
	int8_t have_caps[2];	/* caps.c: caps[side] is known */
	struct sb_caps caps[2];
	int gone, gone_err;	/* see sb_pship_gone; reset by each scan and apply */
	unsigned keep_versions, keep_days;	/* versions.c */
};

/*
 * A root whose file system went away and came back (a USB disk replugged,
 * sshfs remounted) leaves its descriptor on the dead one: calls fail with
 * ENOTCONN, ESTALE or EIO, or see the empty mount point beneath. Reopens
 * the root by its path when the descriptor no longer names what the path
 * does, in place (dup3), so that every holder of the number sees the new
 * one; with recaps (only where no other thread reads them) what the side
 * can hold is probed again. 1 if reopened, 0 if not needed, or -errno.
 */
int sb_pship_refresh_root(struct sb_pship *p, int side, int recaps);

/*
 * Whether side's root still answers as the directory the run opened: 0, or
 * why not (the descriptor's fstat or openat fails: ENOTCONN when a FUSE
 * server died, EIO when the disk went, ESTALE, ENODEV; SB_E_ROOT_MOVED when
 * the path names another directory, as after umount -l, where the old
 * descriptor still works on a file system nobody can see any more). The
 * first side found gone is recorded for sb_pship_gone. With deep (after a
 * write there failed with EIO) a directory is made and removed in the root
 * too: a disk that failed under a mounted file system, or one shut down,
 * still answers fstat and open from the cache, and fails writes with EIO
 * or EROFS.
 */
int sb_pship_root_alive(struct sb_pship *p, int side, int deep);

/* Temporary files are created under this prefix in the destination
 * directory; scans never show them and the next run removes stale ones. */
#define SB_TMP_PREFIX ".sbfs-tmp."

/* Old versions live here at each root (versions.c); never scanned,
 * synced or shown by the mount. */
#define SB_VERSIONS_DIR SB_VERSIONS_NAME
static inline int sb_versions_reserved(const char *rel, size_t len)
{
	size_t n = sizeof(SB_VERSIONS_DIR) - 1;
	return len >= n && !memcmp(rel, SB_VERSIONS_DIR, n) && (len == n || rel[n] == '/');
}

/* Internal plan ops, beyond enum sb_op; sb_plan_next() never shows them. */
enum { SB_OP_CLEANUP = 100 };

/* Plan item flags */
enum {
	SB_IF_REC = 1,		/* rec holds the state's record */
	SB_IF_HASH0 = 2,	/* sha[0] is the source's content hash */
	SB_IF_HASH1 = 4,	/* sha[1] is the target's */
	SB_IF_RMTREE = 8,	/* the user chose: the loser's tree may go whole */
};

/* What one side held at scan time. */
struct sb_scan {
	struct sb_sideinfo info;	/* info.mode: see plan.c's as_held() */
	uint32_t rawmode;		/* st_mode & 07777 as the stat gave it */
	struct sb_fp fp;
	int64_t atime_ns;
	uint32_t uid, gid;
};

/* A plan item as stored: this header, then len path bytes. */
struct sb_pitem {
	uint8_t op, to, resolved, flags;
	int32_t err;
	uint32_t len;
	uint32_t whylen;	/* SB_OP_SKIP: a reason's bytes follow the path's */
	struct sb_scan s[2];
	struct sb_rec rec;
	uint8_t sha[2][SB_SHA_LEN];
	struct sb_conflict conflict;
};

void sb_fp_from_stat(struct sb_fp *fp, const struct stat *st);
void sb_scan_from_stat(struct sb_scan *s, const struct stat *st);
int sb_fp_equal(const struct sb_fp *a, const struct sb_fp *b);
int sb_type_of_mode(mode_t m);
mode_t sb_mode_of_type(int type);	/* a special type's S_IF* bits, for mknod */
/* st_size, or a device node's rdev: what sb_sideinfo.size and records hold. */
uint64_t sb_size_of_stat(const struct stat *st);

/* fp.c: see there for when a stat may vouch for content */
#define SB_RACY_NS 2000000000LL	/* coarse stamps: FAT's 2 s covers the rest */
#define SB_FP_UNSURE INT64_MIN	/* a spoiled ctime: no stat ever gives it */
int64_t sb_wall_ns(void);	/* CLOCK_REALTIME, the clock files are stamped by */
/* Whether side's file system stamps changes finely (probed once, writing
 * an unnamed or temporary file in its root: call it where sbfs writes). */
int sb_pship_fine(struct sb_pship *p, int side);
/* Spoils fp's ctime unless a change after the stat is sure to move it;
 * before_ns: sb_wall_ns() read before the stat. */
void sb_fp_settle(struct sb_fp *fp, int fine, int64_t before_ns);
/* Hashes fd (from its offset) if its fingerprint is *want before and
 * after: the hash is then that of bytes *want describes. -EAGAIN if not. */
int sb_hash_stable(int fd, const struct sb_fp *want, uint8_t sha[SB_SHA_LEN]);

/* apply.c: syncs each file system written (dirty[side]), once, so a
 * commit that follows never vouches for data a crash could lose. */
int sb_sync_written(struct sb_pship *p, const int dirty[2]);

/* journal.c: the mount's record of files open for writing */
int sb_journal_open(struct sb_pship *p, int *fd);
/* Appends a 'W' or 'C' record; its size in bytes, or -errno. */
long sb_journal_note(int fd, char what, const char *rel);
/* Replaces the journal with 'W' records of the n paths still open, fd then
 * writing to the new one; the new size, or -errno (the old one is kept). */
long sb_journal_rewrite(struct sb_pship *p, int fd, const char *const *paths, size_t n);

/* listing.c, for plan.c: one directory's names on a side, and its records */
struct sb_names {
	char **v;
	size_t n, cap;
};
void sb_names_free(struct sb_names *l);
/* Sorted, without . and ..; stale temporaries (SB_TMP_PREFIX) go to tmp
 * instead, in listing order, even when the listing fails part way. */
int sb_list_dir(int fd, struct sb_names *out, struct sb_names *tmp);
struct sb_recs {
	char **names;
	struct sb_rec *v;
	size_t n, cap;
};
void sb_recs_free(struct sb_recs *r);
int sb_load_recs(struct sb_txn *txn, uint64_t dir_id, struct sb_recs *out);
/* Per case-insensitive side, the names of the directory it cannot hold. */
int sb_find_clashes(const struct sb_caps *const caps[2], const struct sb_names l[2],
		    const struct sb_recs *r, char **clash[2], size_t nclash[2]);

/* compare.c, for plan.c */
/* What one side's change since the record amounts to; without a record,
 * only whether the side has the entry. plan.c's rules table reads it. */
enum {
	CH_SAME, CH_FP, CH_META, CH_CONTENT, CH_DELETED,	/* with a record */
	CH_NEW, CH_ABSENT,					/* without */
	N_CH
};

/* One entry being decided. */
struct sb_ent {
	int pfd[2];		/* parent directories, -1 where absent */
	const char *name;
	struct sb_scan s[2];
	const struct sb_rec *rec;
	uint8_t sha[2][SB_SHA_LEN];
	uint8_t flags;
	int under_deleted;	/* side that deleted an enclosing directory, or -1 */
	int cfd[2];		/* the entry's own directory on each side, or -1 */
	uint64_t *hashed;	/* the plan's count of files read */
};
/* Same kind and content; hashes what sizes do not tell apart. */
int sb_same_content(struct sb_ent *e, int *same);
/* How side i changed since the record (which must exist): a CH_ class. */
int sb_classify(const struct sb_caps *const caps[2], struct sb_ent *e, int i, int *ch);
void sb_as_held(const struct sb_caps *const caps[2], struct sb_ent *e);

/* plan.c builds it, planfile.c reads it back */
struct sb_plan {
	FILE *f;
	uint64_t count;
	int full;
	int64_t started_ns;	/* wall clock before the first stat of the scan */
	struct sb_plan_stats st;
	char *path;		/* iteration buffer */
	size_t cap;
	char *why;		/* iteration buffer for reasons */
	size_t whycap;
};
/* An item as the hooks and sb_plan_next() show it. */
void sb_item_view(struct sb_item *it, const struct sb_pitem *pi, const char *path);

/* planfile.c, for apply.c */
int sb_plan_next_raw(struct sb_plan *plan, struct sb_pitem *it, const char **path);
/* sb_wall_ns() before the scan's first stat: every scan fingerprint's "before" */
int64_t sb_plan_started(const struct sb_plan *plan);

#endif
