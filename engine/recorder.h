/*
 * The mount's recorder: a queue of state updates, written by a thread of
 * its own in batches, each committed after syncfs of both partners. Only
 * the mirror (mirror*.c) uses it. Engine-private.
 */
#ifndef SBFS_RECORDER_H
#define SBFS_RECORDER_H

#include "core.h"

/* What a queued update asks of the state. */
enum {
	ROP_REFRESH,	/* the entry's content and metadata, as `known` says */
	ROP_META,	/* metadata only: the content did not change */
	ROP_DEL,
	ROP_MOVE,	/* path -> path2, with everything beneath */
	ROP_SWAP,	/* path <-> path2 */
};

/*
 * How much the mount knows of a file it changed, from stats taken where it
 * made the change (never later: see fp.c).
 */
enum {
	K_NONE = 0,	/* nothing: a file is left to the next reconcile */
	K_SHA,		/* both sides hold the bytes with hash sha, at fp[] */
	K_SAME,		/* the content the record describes at pre[] is now at fp[] */
	K_POST,		/* both sides held the same bytes at fp[]; hash the source
			 * then, if both sides still have exactly fp[] */
};

struct known {
	int how;			/* K_* */
	uint8_t sha[SB_SHA_LEN];	/* K_SHA */
	struct sb_fp pre[2];		/* K_SAME: before the change */
	struct sb_fp fp[2];		/* as stat() gave them, not settled */
	int64_t before_ns;		/* sb_wall_ns() before fp[] were taken */
	uint32_t mode;			/* the source's, at fp[0] */
	int64_t mtime_ns;
};

struct sb_recorder;

/* Starts the thread. Failures to write the state are logged in p's log. */
int sb_rec_open(struct sb_pship *p, struct sb_recorder **out);
/* Writes everything queued, stops the thread, frees. NULL-safe. */
void sb_rec_close(struct sb_recorder *r);
/* Returns once everything queued before the call is written (or failed). */
void sb_rec_flush(struct sb_recorder *r);
/* Queues one update (k may be NULL: K_NONE); 0 or -ENOMEM. */
int sb_rec_enqueue(struct sb_recorder *r, int kind, const char *path,
		   const char *path2, const struct known *k);
/* Failures since opened: batches not committed, records not written. */
uint64_t sb_rec_failures(struct sb_recorder *r);

#endif
