/*
 * Old versions kept (versions.c, engine-private): before a reconcile or
 * resolve replaces or deletes a side's file, that version is moved (or
 * hard-linked) into ROOT/.sbfs-versions/PATH~YYYYMMDD-HHMMSS on the same
 * side, so a sync never loses what it overwrites. One sb_vrun per run of a
 * plan: it remembers the paths that got a version and trims them once the
 * run is done (--keep-versions, --keep-days).
 */
#ifndef SBFS_VERSIONS_H
#define SBFS_VERSIONS_H

#include "core.h"

struct sb_vrun;

/* *out is never NULL on success, even with versions off: the oldest
 * versions may still have to go to make room (sb_vrun_make_room). */
int sb_vrun_new(struct sb_pship *p, const struct sb_hooks *h, struct sb_vrun **out);
/* Trims the paths that got a version, then frees. NULL-safe. */
void sb_vrun_finish(struct sb_vrun *v);

enum {
	SB_VK_LINK,	/* about to be renamed over: a hard link keeps it */
	SB_VK_MOVE,	/* about to be deleted: the entry itself moves */
};
/*
 * Keeps side's entry name (in directory dfd, rel of len bytes from the
 * root) as a version. 1: it was moved away (its name is free now; with
 * SB_VK_LINK where the file system has no hard links); 0: a link holds it
 * (the name still there), or versions are off and nothing was kept: the
 * caller goes on as without versions. Negative: it could not be kept, and
 * the caller must leave the item as it is (sb_vrun_failed says so).
 */
int sb_vrun_keep(struct sb_vrun *v, int side, int dfd, const char *name,
		 const char *rel, size_t len, int how);
/* The cause of the last keep that failed (and forgets it), or 0. */
int sb_vrun_failed(struct sb_vrun *v);
/* After ENOSPC on side: removes its oldest versions until need bytes are
 * free (or none is left); how many went (each logged and warned). */
int sb_vrun_make_room(struct sb_vrun *v, int side, uint64_t need);

/* Removes a tree beneath dirfd without following symlinks. */
int sb_rmtree(int dirfd, const char *name);

#endif
