/*
 * What state.c, state_cursor.c and state_conflict.c share: the handles and
 * the codec. Engine-private, for those three only.
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

/* Keys' directory ids: big-endian, so a directory's children sort together. */
static inline void sb_st_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* An entry's value as a record, or SB_E_STATE_CORRUPT. */
int sb_st_decode_rec(const MDB_val *v, struct sb_rec *r);

/* An LMDB return code as 0, a negative errno or SB_E_STATE_CORRUPT. */
int sb_st_map_err(int rc);

#endif
