/*
 * The conflicts database of the state (see state.c): key SHA-256 of the
 * relative path (paths may exceed LMDB's 511-byte key limit), value
 * encode_conflict(), then the path bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state_int.h"

#define CONFLICT_VERSION 1
#define SIDE_LEN (1 + 4 + 8 + 8)
#define CONFLICT_LEN (1 + 1 + 1 + 2 * SIDE_LEN)

static void encode_conflict(uint8_t *p, const struct sb_conflict *c)
{
	*p++ = CONFLICT_VERSION;
	*p++ = c->kind;
	*p++ = (uint8_t)c->suggest;
	for (int s = 0; s < 2; s++) {
		p[0] = c->side[s].type;
		put_u32(p + 1, c->side[s].mode);
		put_u64(p + 5, c->side[s].size);
		put_u64(p + 13, (uint64_t)c->side[s].mtime_ns);
		p += SIDE_LEN;
	}
}

/* Checks the header and points *path, *len at the stored path. */
static int decode_conflict(const MDB_val *v, struct sb_conflict *c,
			   const char **path, size_t *len)
{
	const uint8_t *p = v->mv_data;
	int ret = 0;

	if (v->mv_size < CONFLICT_LEN || p[0] != CONFLICT_VERSION) {
		ret = SB_E_STATE_CORRUPT;
		goto out;
	}
	memset(c, 0, sizeof(*c));
	c->kind = p[1];
	c->suggest = (int8_t)p[2];
	p += 3;
	for (int s = 0; s < 2; s++) {
		c->side[s].type = p[0];
		c->side[s].mode = get_u32(p + 1);
		c->side[s].size = get_u64(p + 5);
		c->side[s].mtime_ns = (int64_t)get_u64(p + 13);
		p += SIDE_LEN;
	}
	*path = (const char *)v->mv_data + CONFLICT_LEN;
	*len = v->mv_size - CONFLICT_LEN;
out:
	return ret;
}

static int conflict_key(uint8_t sha[SB_SHA_LEN], const char *rel, size_t len,
			MDB_val *k)
{
	int ret = sb_hash_buf(rel, len, sha);

	if (ret < 0)
		goto out;
	k->mv_data = sha;
	k->mv_size = SB_SHA_LEN;
out:
	return ret;
}

int sb_state_conflict_put(struct sb_txn *t, const char *rel, size_t len,
			  const struct sb_conflict *c)
{
	uint8_t sha[SB_SHA_LEN];
	uint8_t *buf = NULL;
	MDB_val k, v;
	int ret;

	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	if (len > SIZE_MAX - CONFLICT_LEN) {
		ret = -ENAMETOOLONG;
		goto out;
	}
	ret = conflict_key(sha, rel, len, &k);
	if (ret < 0)
		goto out;
	buf = malloc(CONFLICT_LEN + len);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	encode_conflict(buf, c);
	if (len)
		memcpy(buf + CONFLICT_LEN, rel, len);
	v.mv_data = buf;
	v.mv_size = CONFLICT_LEN + len;
	ret = sb_st_map_err(mdb_put(t->txn, t->st->conflicts, &k, &v, 0));
out:
	free(buf);
	return ret;
}

int sb_state_conflict_del(struct sb_txn *t, const char *rel, size_t len)
{
	uint8_t sha[SB_SHA_LEN];
	MDB_val k;
	int ret;

	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	ret = conflict_key(sha, rel, len, &k);
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_del(t->txn, t->st->conflicts, &k, NULL));
out:
	return ret;
}

int sb_state_conflict_get(struct sb_txn *t, const char *rel, size_t len,
			  struct sb_conflict *out)
{
	uint8_t sha[SB_SHA_LEN];
	struct sb_conflict c;
	const char *path;
	size_t plen;
	MDB_val k, v;
	int ret;

	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	ret = conflict_key(sha, rel, len, &k);
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_get(t->txn, t->st->conflicts, &k, &v));
	if (ret < 0)
		goto out;
	ret = decode_conflict(&v, &c, &path, &plen);
	if (ret < 0)
		goto out;
	/* The stored path is there anyway; comparing costs nothing and makes
	 * the answer independent of the hash. */
	if (plen != len || (len && memcmp(path, rel, len) != 0)) {
		ret = -ENOENT;
		goto out;
	}
	*out = c;
out:
	return ret;
}

int sb_state_conflict_clear(struct sb_txn *t)
{
	int ret;

	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	ret = sb_st_map_err(mdb_drop(t->txn, t->st->conflicts, 0));
out:
	return ret;
}

int sb_state_conflict_each(struct sb_txn *t,
			   int (*fn)(void *arg, const char *rel, size_t len,
				     const struct sb_conflict *c),
			   void *arg)
{
	MDB_cursor *cur = NULL;
	struct sb_conflict c;
	const char *path;
	char *buf = NULL;
	size_t plen, cap = 0;
	MDB_val k, v;
	MDB_cursor_op op = MDB_FIRST;
	int ret;

	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	ret = sb_st_map_err(mdb_cursor_open(t->txn, t->st->conflicts, &cur));
	if (ret < 0) {
		cur = NULL;
		goto out;
	}
	for (;; op = MDB_NEXT) {
		ret = sb_st_map_err(mdb_cursor_get(cur, &k, &v, op));
		if (ret == -ENOENT) {
			ret = 0;
			break;
		}
		if (ret < 0)
			goto out;
		ret = decode_conflict(&v, &c, &path, &plen);
		if (ret < 0)
			goto out;
		/* Copied: fn may write to this txn, which can move pages. */
		if (plen + 1 > cap) {
			char *nb = realloc(buf, plen + 1);

			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
			cap = plen + 1;
		}
		memcpy(buf, path, plen);
		buf[plen] = '\0';
		ret = fn(arg, buf, plen, &c);
		if (ret != 0)
			goto out;
	}
out:
	if (cur)
		mdb_cursor_close(cur);
	free(buf);
	return ret;
}
