/*
 * statecheck.c: what a partnership's state directory must be before LMDB
 * and the engine trust it. Engine-private.
 */
#ifndef SBFS_STATECHECK_H
#define SBFS_STATECHECK_H

#include "internal.h"

#define SB_STATE_DATA "data.mdb"
/* Exists once the state has held a record: from then on a missing or
 * empty data.mdb is a lost state (SB_E_STATE_LOST), not a first sync. */
#define SB_STATE_MARKER "synced"

/*
 * Before mdb_env_open: data.mdb, lock.mdb and the marker are regular files
 * or absent (SB_E_STATE_SYMLINK, SB_E_STATE_CORRUPT), data.mdb passes a
 * bounds-checked walk of every live page (SB_E_STATE_CORRUPT), and a marked
 * state still has its data (SB_E_STATE_LOST). *file (may be NULL) names the
 * file concerned on error, NULL for the directory itself.
 */
int sb_state_check(const char *dir, const char **file);
/* Creates dir's marker (once; later calls find it there). */
int sb_state_mark(const char *dir);
/* dir is a directory, not a symlink, owned by the effective user and not
 * writable by group or others: SB_E_STATE_SYMLINK, -ENOTDIR,
 * SB_E_STATE_FOREIGN, SB_E_STATE_WRITABLE, -errno. */
int sb_state_dir_check(const char *dir);

#endif
