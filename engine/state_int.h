/*
 * What state.c and state_conflict.c share: the handles and the
 * little-endian codec. Engine-private, for those two only.
 */
#ifndef SBFS_STATE_INT_H
#define SBFS_STATE_INT_H

#include <lmdb.h>

#include "internal.h"

#define PREFIX_LEN 8
#define NAME_MAX_LEN 255

struct sb_state {
	MDB_env *env;
	MDB_dbi entries, conflicts, meta;
	char *dir;
	int marked;		/* the "synced" marker is known to exist */
};

struct sb_txn {
	struct sb_state *st;
	MDB_txn *txn;
	int rdonly;
	/* Open cursors: LMDB frees write-txn cursors at txn end, so we close
	 * them ourselves first and leave the wrappers inert. */
	struct sb_cursor *cursors;
};

struct sb_cursor {
	struct sb_txn *t;	/* NULL once the txn has ended */
	MDB_cursor *cur;
	struct sb_cursor *prev, *next;
	uint8_t prefix[PREFIX_LEN];
	int started, done;
	char name[NAME_MAX_LEN + 1];
};

static inline int txn_is_live(const struct sb_txn *t)
{
	return t && t->txn;
}

/* An LMDB return code as 0, a negative errno or SB_E_STATE_CORRUPT. */
int sb_st_map_err(int rc);

#endif
