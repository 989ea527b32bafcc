/*
 * What apply.c and apply_copy.c share (engine-private): the state of one
 * run over a plan, and the operations that change a side.
 */
#ifndef SBFS_APPLY_INT_H
#define SBFS_APPLY_INT_H

#include <time.h>

#include "core.h"

#define COPY_BUF (1 << 20)

struct apply {
	struct sb_pship *p;
	const struct sb_hooks *h;
	struct sb_apply_result *res;
	struct sb_txn *txn;
	int full;
	/* the parent directory of the current item, cached between items */
	char *ppath;
	size_t plen, pcap;
	int pvalid;
	int pfd[2];
	int perr[2];		/* why pfd[side] is -1 */
	uint64_t pid;		/* its state id, 0 when not recorded */
	uint64_t batch;
	int64_t batch_start;
	char **follow;		/* paths to plan again once the plan is done */
	size_t nfollow;
	uint8_t *buf;
	struct sb_sha *sha;
	int dirty[2];		/* side written since the last commit */
	int no_tmpfile;		/* O_TMPFILE + linkat failed here once */
	int64_t scan_ns;	/* sb_plan_started(): the scan fingerprints' "before" */
	pid_t pid_self;
	uid_t euid;
	gid_t egid;
	uint64_t nonce, ntemp;
	/* An item whose directory is missing on a side (pgone) is reported
	 * once for that directory, with the real cause, not once per item. */
	int pgone;		/* 1 + the side lacking it */
	char *mkdir_failed;	/* a directory that could not be created, */
	int mkdir_err;		/* and why */
	char *gone;		/* the directory last reported as missing */
	/* A side whose root stopped answering (see gone_side in apply.c). */
	int side_gone;		/* 1 + that side, 0 while both answer */
	uint64_t batch_done;	/* res->done's part not yet committed, */
	uint64_t batch_conflicts;	/* and res->conflicts' */
	unsigned since_check;	/* items since the roots were last checked */
	struct sb_vrun *vers;	/* versions.c: what is replaced or deleted is kept */
	const char *cur;	/* the current item's path, for its version's name */
	size_t curlen;
	int retried;		/* the copy is already the one retry after ENOSPC */
};

static inline struct timespec ts_of(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
	if (ts.tv_nsec < 0) {
		ts.tv_nsec += 1000000000;
		ts.tv_sec--;
	}
	return ts;
}

static inline const uint8_t *known_sha(const struct sb_pitem *it)
{
	if (it->flags & SB_IF_HASH0)
		return it->sha[0];
	if (it->flags & SB_IF_HASH1)
		return it->sha[1];
	return (it->flags & SB_IF_REC) ? it->rec.sha : NULL;
}

/* apply_copy.c. 0 if side's entry is still what the scan saw, -EAGAIN if
 * it changed. */
int sb_ap_unchanged(int pfd, const char *name, const struct sb_scan *s);
/* Carry item it's entry, its metadata, or its deletion to side it->to;
 * *tofp gets the fingerprint a record may keep there (see apply_copy.c). */
int sb_ap_copy(struct apply *a, const struct sb_pitem *it, const char *name,
	       uint8_t sha[SB_SHA_LEN], struct sb_fp *tofp);
int sb_ap_meta(struct apply *a, const struct sb_pitem *it, const char *name,
	       struct sb_fp *tofp);
int sb_ap_delete(struct apply *a, const struct sb_pitem *it, const char *name);
/* For a RECORD: the xattrs of the side whose fingerprint alone moved onto
 * the other (1, with *from and *tofp for the record), or 0: nothing to do. */
int sb_ap_xattr_follow(struct apply *a, const struct sb_pitem *it, const char *name, int *from,
		       struct sb_fp *tofp);

#endif
