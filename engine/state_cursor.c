/*
 * Cursors over a directory's records in the state (state.c): its
 * children are one contiguous key range beginning with the directory's id.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "state_int.h"

int sb_state_children(struct sb_txn *t, uint64_t dir_id, struct sb_cursor **out)
{
	struct sb_cursor *c = NULL;
	int ret = 0;

	*out = NULL;
	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		ret = -ENOMEM;
		goto out;
	}
	ret = sb_st_map_err(mdb_cursor_open(t->txn, t->st->entries, &c->cur));
	if (ret < 0)
		goto out;
	sb_st_put_be64(c->prefix, dir_id);
	c->t = t;
	c->next = t->cursors;
	if (t->cursors)
		t->cursors->prev = c;
	t->cursors = c;
	*out = c;
	c = NULL;
out:
	free(c);
	return ret;
}

int sb_cursor_next(struct sb_cursor *c, const char **name, size_t *nlen,
		   struct sb_rec *rec)
{
	MDB_val k, v;
	size_t len;
	int ret;

	if (!c->t) {
		ret = -EINVAL;	/* its transaction has ended */
		goto out;
	}
	if (c->done) {
		ret = 0;
		goto out;
	}
	if (!c->started) {
		k.mv_data = c->prefix;
		k.mv_size = PREFIX_LEN;
		ret = sb_st_map_err(mdb_cursor_get(c->cur, &k, &v, MDB_SET_RANGE));
		c->started = 1;
	} else {
		ret = sb_st_map_err(mdb_cursor_get(c->cur, &k, &v, MDB_NEXT));
	}
	if (ret == -ENOENT ||
	    (ret == 0 && (k.mv_size < PREFIX_LEN ||
			  memcmp(k.mv_data, c->prefix, PREFIX_LEN) != 0))) {
		c->done = 1;
		ret = 0;
		goto out;
	}
	if (ret < 0)
		goto out;
	len = k.mv_size - PREFIX_LEN;
	if (len == 0 || len > NAME_MAX_LEN) {
		ret = SB_E_STATE_CORRUPT;
		goto out;
	}
	ret = sb_st_decode_rec(&v, rec);
	if (ret < 0)
		goto out;
	/* A copy, NUL-terminated for convenience: a write txn may move the
	 * page under the caller's feet. */
	memcpy(c->name, (const char *)k.mv_data + PREFIX_LEN, len);
	c->name[len] = '\0';
	*name = c->name;
	*nlen = len;
	ret = 1;
out:
	return ret;
}

void sb_cursor_close(struct sb_cursor *c)
{
	if (!c)
		return;
	if (c->t) {
		if (c->prev)
			c->prev->next = c->next;
		else
			c->t->cursors = c->next;
		if (c->next)
			c->next->prev = c->prev;
		mdb_cursor_close(c->cur);
	}
	free(c);
}
