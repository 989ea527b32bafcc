/*
 * What the mirror's modules share (engine-private): the mirror and its open
 * files, and the few helpers more than one module calls. The modules:
 *   mirror.c        open and close, sb_mirror_exclusive and resolving,
 *                   getattr, access, readlink, statfs;
 *                   for now, the rest too;
 *   mirror_conf.c   the conflict view: names in both directions (the
 *                   conflict and case-clash lists, the suffixes);
 *   mirror_list.c   directory listings and the cache that keeps them.
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

#endif
