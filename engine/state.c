/*
 * The synchronised state of a partnership, in one LMDB environment.
 *
 * Three named databases:
 *   entries    key: 8-byte big-endian parent directory id, then the name.
 *              Big-endian ids make a directory's children one contiguous
 *              key range, sorted by name under LMDB's default memcmp order.
 *              value: encode_rec() below.
 *   conflicts  (state_conflict.c) key: SHA-256 of the relative path (paths may exceed LMDB's
 *              511-byte key limit). value: encode_conflict(), then the
 *              path bytes.
 *   meta       "next_dir_id": u64 little-endian; "caps.0", "caps.1": what
 *              each side's file system can hold (caps.c's encoding).
 *
 * Values are explicit little-endian encodings with a leading version byte,
 * never raw structs: padding and layout must not leak into the file, and
 * LMDB gives no alignment guarantee for values.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <lmdb.h>

#include "state_int.h"
#include "statecheck.h"

#define REC_VERSION 1
#define REC_LEN (1 + 1 + 4 + 8 + 8 + 8 + SB_SHA_LEN + 2 * 5 * 8)
#define KEY_MAX_LEN (PREFIX_LEN + NAME_MAX_LEN)
#define FIRST_DIR_ID 2

static const char next_dir_id_key[] = "next_dir_id";

/* Only address space: LMDB grows the file as pages are used. */
#if SIZE_MAX > 0xffffffffu
#define MAP_SIZE ((size_t)64 << 30)
#else
#define MAP_SIZE ((size_t)1 << 30)
#endif

int sb_st_map_err(int rc)
{
	if (rc == MDB_SUCCESS)
		return 0;
	if (rc > 0)
		return -rc;
	switch (rc) {
	case MDB_NOTFOUND:
		return -ENOENT;
	case MDB_MAP_FULL:
		return -ENOSPC;
	case MDB_KEYEXIST:
		return -EEXIST;
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		return SB_E_STATE_CORRUPT;
	default:
		return -EIO;
	}
}

static void encode_rec(uint8_t *p, const struct sb_rec *r)
{
	*p++ = REC_VERSION;
	*p++ = r->type;
	put_u32(p, r->mode);
	p += 4;
	put_u64(p, r->size);
	p += 8;
	put_u64(p, (uint64_t)r->mtime_ns);
	p += 8;
	put_u64(p, r->dir_id);
	p += 8;
	memcpy(p, r->sha, SB_SHA_LEN);
	p += SB_SHA_LEN;
	for (int s = 0; s < 2; s++) {
		put_u64(p, r->fp[s].dev);
		put_u64(p + 8, r->fp[s].ino);
		put_u64(p + 16, r->fp[s].size);
		put_u64(p + 24, (uint64_t)r->fp[s].mtime_ns);
		put_u64(p + 32, (uint64_t)r->fp[s].ctime_ns);
		p += 40;
	}
}

int sb_st_decode_rec(const MDB_val *v, struct sb_rec *r)
{
	const uint8_t *p = v->mv_data;
	int ret = 0;

	if (v->mv_size != REC_LEN || p[0] != REC_VERSION) {
		ret = SB_E_STATE_CORRUPT;
		goto out;
	}
	memset(r, 0, sizeof(*r));
	p++;
	r->type = *p++;
	r->mode = get_u32(p);
	p += 4;
	r->size = get_u64(p);
	p += 8;
	r->mtime_ns = (int64_t)get_u64(p);
	p += 8;
	r->dir_id = get_u64(p);
	p += 8;
	memcpy(r->sha, p, SB_SHA_LEN);
	p += SB_SHA_LEN;
	for (int s = 0; s < 2; s++) {
		r->fp[s].dev = get_u64(p);
		r->fp[s].ino = get_u64(p + 8);
		r->fp[s].size = get_u64(p + 16);
		r->fp[s].mtime_ns = (int64_t)get_u64(p + 24);
		r->fp[s].ctime_ns = (int64_t)get_u64(p + 32);
		p += 40;
	}
out:
	return ret;
}

/* Names are single path components; anything else would corrupt the
 * parent/name structure that sb_state_dir_id walks. */
static int check_name(const char *name, size_t nlen)
{
	if (nlen == 0 || memchr(name, '/', nlen) || memchr(name, '\0', nlen))
		return -EINVAL;
	if (nlen > NAME_MAX_LEN)
		return -ENAMETOOLONG;
	return 0;
}

static int make_key(uint8_t key[KEY_MAX_LEN], uint64_t parent,
		    const char *name, size_t nlen, MDB_val *k)
{
	int ret = check_name(name, nlen);

	if (ret < 0)
		goto out;
	sb_st_put_be64(key, parent);
	memcpy(key + PREFIX_LEN, name, nlen);
	k->mv_data = key;
	k->mv_size = PREFIX_LEN + nlen;
out:
	return ret;
}

/* mkdir -p with mode 0700; an existing directory anywhere is fine. */
static int mkdirs(const char *dir)
{
	struct stat sb;
	char *p = NULL;
	size_t len = strlen(dir);
	int ret = 0;

	if (len == 0) {
		ret = -ENOENT;
		goto out;
	}
	p = strdup(dir);
	if (!p) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 1; i <= len; i++) {
		if (p[i] != '/' && p[i] != '\0')
			continue;
		if (p[i - 1] == '/')
			continue;	/* "//" or trailing '/' */
		p[i] = '\0';
		/* mkdir may report EACCES or EROFS for a directory that
		 * exists, so judge by what is there rather than by errno. */
		if (mkdir(p, 0700) < 0) {
			int err = errno;

			if (stat(p, &sb) < 0) {
				ret = -err;
				goto out;
			}
			if (!S_ISDIR(sb.st_mode)) {
				ret = -ENOTDIR;
				goto out;
			}
		}
		if (i < len)
			p[i] = '/';
	}
out:
	free(p);
	return ret;
}

/* Closes every cursor of t; LMDB requires it before a read txn ends and
 * frees write-txn cursors behind our back otherwise. */
static void detach_cursors(struct sb_txn *t)
{
	struct sb_cursor *c = t->cursors;

	while (c) {
		struct sb_cursor *next = c->next;

		mdb_cursor_close(c->cur);
		c->cur = NULL;
		c->t = NULL;
		c->prev = c->next = NULL;
		c = next;
	}
	t->cursors = NULL;
}

/* ------------------------------------------------------------ env, txn */

int sb_state_open(const char *dir, struct sb_state **out)
{
	return sb_state_open_ex(dir, out, NULL);
}

int sb_state_open_ex(const char *dir, struct sb_state **out, const char **file)
{
	struct sb_state *st = NULL;
	MDB_txn *txn = NULL;
	int dead;
	int ret;

	*out = NULL;
	if (file)
		*file = NULL;
	ret = mkdirs(dir);
	if (ret < 0)
		goto out;
	/* LMDB would crash on what these refuse; see statecheck.c. */
	if ((ret = sb_state_dir_check(dir)) < 0 || (ret = sb_state_check(dir, file)) < 0)
		goto out;
	st = calloc(1, sizeof(*st));
	if (!st || !(st->dir = strdup(dir))) {
		ret = -ENOMEM;
		goto out;
	}
	ret = sb_st_map_err(mdb_env_create(&st->env));
	if (ret < 0) {
		st->env = NULL;
		goto out;
	}
	ret = sb_st_map_err(mdb_env_set_maxdbs(st->env, 4));
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_env_set_mapsize(st->env, MAP_SIZE));
	if (ret < 0)
		goto out;
	/* MDB_NOTLS: the daemon hands read txns between threads and may hold
	 * several in one thread. */
	/* NOMETASYNC: one flush per commit instead of two. A crash may then
	 * undo the last commit (never corrupt): an older state only makes the
	 * next run look again or record again, it never loses a version. */
	ret = sb_st_map_err(mdb_env_open(st->env, dir, MDB_NOTLS | MDB_NOMETASYNC, 0600));
	if (ret < 0)
		goto out;
	/* A crashed process leaves its reader slots pinning old pages. */
	ret = sb_st_map_err(mdb_reader_check(st->env, &dead));
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_txn_begin(st->env, NULL, 0, &txn));
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_dbi_open(txn, "entries", MDB_CREATE, &st->entries));
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_dbi_open(txn, "conflicts", MDB_CREATE,
				   &st->conflicts));
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_dbi_open(txn, "meta", MDB_CREATE, &st->meta));
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_txn_commit(txn));
	txn = NULL;
	if (ret < 0)
		goto out;
	*out = st;
	st = NULL;
out:
	if (txn)
		mdb_txn_abort(txn);
	sb_state_close(st);
	return ret;
}

void sb_state_close(struct sb_state *st)
{
	if (!st)
		return;
	if (st->env)
		mdb_env_close(st->env);
	free(st->dir);
	free(st);
}

int sb_state_begin(struct sb_state *st, int rdonly, struct sb_txn **out)
{
	struct sb_txn *t = NULL;
	int ret = 0;

	*out = NULL;
	t = calloc(1, sizeof(*t));
	if (!t) {
		ret = -ENOMEM;
		goto out;
	}
	t->st = st;
	t->rdonly = rdonly;
	ret = sb_st_map_err(mdb_txn_begin(st->env, NULL, rdonly ? MDB_RDONLY : 0,
				    &t->txn));
	if (ret < 0) {
		t->txn = NULL;
		goto out;
	}
	*out = t;
	t = NULL;
out:
	free(t);
	return ret;
}

/*
 * LMDB answers a short write with EIO ("filesystem full?" in its source):
 * a commit whose pages only partly fit. The cause worth reporting is then
 * the full file system, which is what the state directory shows.
 */
static int state_fs_full(struct sb_state *st)
{
	struct statvfs v;
	mdb_filehandle_t fd;
	return mdb_env_get_fd(st->env, &fd) == 0 && fstatvfs(fd, &v) == 0 &&
	       (uint64_t)v.f_bavail * v.f_frsize < (1u << 20);
}

int sb_txn_commit(struct sb_txn *t)
{
	int ret = 0;

	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	detach_cursors(t);
	/* The first commit that leaves records marks the state (statecheck.c),
	 * so that losing it later is noticed instead of taken as a first sync. */
	int mark = 0;
	MDB_stat ms;
	if (!t->rdonly && !t->st->marked)
		mark = mdb_stat(t->txn, t->st->entries, &ms) == 0 && ms.ms_entries > 0;
	ret = sb_st_map_err(mdb_txn_commit(t->txn));
	if (ret == -EIO && state_fs_full(t->st))
		ret = -ENOSPC;
	if (ret == 0 && mark && sb_state_mark(t->st->dir) == 0)
		t->st->marked = 1;
out:
	free(t);
	return ret;
}

void sb_txn_abort(struct sb_txn *t)
{
	if (!t)
		return;
	detach_cursors(t);
	if (t->txn)
		mdb_txn_abort(t->txn);
	free(t);
}

/* ------------------------------------------------------------ entries */

static int alloc_dir_id(struct sb_txn *t, uint64_t *id)
{
	MDB_val k = { sizeof(next_dir_id_key) - 1, (void *)next_dir_id_key };
	MDB_val v;
	uint8_t buf[8];
	uint64_t next = FIRST_DIR_ID;
	int ret;

	ret = sb_st_map_err(mdb_get(t->txn, t->st->meta, &k, &v));
	if (ret == 0) {
		if (v.mv_size != 8) {
			ret = SB_E_STATE_CORRUPT;
			goto out;
		}
		next = get_u64(v.mv_data);
	} else if (ret != -ENOENT) {
		goto out;
	}
	if (next < FIRST_DIR_ID || next == UINT64_MAX) {
		ret = -EOVERFLOW;
		goto out;
	}
	put_u64(buf, next + 1);
	v.mv_data = buf;
	v.mv_size = sizeof(buf);
	ret = sb_st_map_err(mdb_put(t->txn, t->st->meta, &k, &v, 0));
	if (ret < 0)
		goto out;
	*id = next;
out:
	return ret;
}

int sb_state_meta_get(struct sb_txn *t, const char *key, void *buf, size_t *len)
{
	MDB_val k = { strlen(key), (void *)key }, v;
	int ret = sb_st_map_err(mdb_get(t->txn, t->st->meta, &k, &v));

	if (ret == 0) {
		memcpy(buf, v.mv_data, v.mv_size < *len ? v.mv_size : *len);
		*len = v.mv_size;
	}
	return ret;
}

int sb_state_meta_put(struct sb_txn *t, const char *key, const void *buf, size_t len)
{
	MDB_val k = { strlen(key), (void *)key }, v = { len, (void *)buf };
	return sb_st_map_err(mdb_put(t->txn, t->st->meta, &k, &v, 0));
}

static int push_id(uint64_t **stack, size_t *n, size_t *cap, uint64_t id)
{
	int ret = 0;

	if (*n == *cap) {
		size_t ncap = *cap ? 2 * *cap : 16;
		uint64_t *s = realloc(*stack, ncap * sizeof(*s));

		if (!s) {
			ret = -ENOMEM;
			goto out;
		}
		*stack = s;
		*cap = ncap;
	}
	(*stack)[(*n)++] = id;
out:
	return ret;
}

/*
 * Deletes every entry beneath directory id. Iterative with an explicit
 * stack, since record depth follows the depth of real trees. Each step
 * deletes one entry, so even a corrupt id cycle terminates.
 */
static int del_subtree(struct sb_txn *t, uint64_t id)
{
	MDB_cursor *cur = NULL;
	uint64_t *stack = NULL;
	size_t n = 0, cap = 0;
	uint8_t prefix[PREFIX_LEN];
	struct sb_rec rec;
	MDB_val k, v;
	int ret;

	ret = push_id(&stack, &n, &cap, id);
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_cursor_open(t->txn, t->st->entries, &cur));
	if (ret < 0) {
		cur = NULL;
		goto out;
	}
	while (n > 0) {
		sb_st_put_be64(prefix, stack[--n]);
		for (;;) {
			/* Re-seek after each delete rather than trusting
			 * cursor position after mdb_cursor_del. */
			k.mv_data = prefix;
			k.mv_size = PREFIX_LEN;
			ret = sb_st_map_err(mdb_cursor_get(cur, &k, &v,
						     MDB_SET_RANGE));
			if (ret == -ENOENT) {
				ret = 0;
				break;
			}
			if (ret < 0)
				goto out;
			if (k.mv_size < PREFIX_LEN ||
			    memcmp(k.mv_data, prefix, PREFIX_LEN) != 0)
				break;
			ret = sb_st_decode_rec(&v, &rec);
			if (ret < 0)
				goto out;
			if (rec.type == SB_DIR && rec.dir_id != 0) {
				ret = push_id(&stack, &n, &cap, rec.dir_id);
				if (ret < 0)
					goto out;
			}
			ret = sb_st_map_err(mdb_cursor_del(cur, 0));
			if (ret < 0)
				goto out;
		}
	}
out:
	if (cur)
		mdb_cursor_close(cur);
	free(stack);
	return ret;
}

/* The stored record of (parent, name), decoded; k is left as its key
 * (built in key) for a change that follows. */
static int get_rec(struct sb_txn *t, uint64_t parent, const char *name, size_t nlen,
		   uint8_t *key, MDB_val *k, struct sb_rec *out)
{
	MDB_val v;
	int ret;

	if (!txn_is_live(t))
		return -EINVAL;
	ret = make_key(key, parent, name, nlen, k);
	if (ret < 0)
		return ret;
	ret = sb_st_map_err(mdb_get(t->txn, t->st->entries, k, &v));
	if (ret < 0)
		return ret;
	/* decoded at once: v points into a page a later change may free */
	return sb_st_decode_rec(&v, out);
}

int sb_state_get(struct sb_txn *t, uint64_t parent, const char *name,
		 size_t nlen, struct sb_rec *out)
{
	uint8_t key[KEY_MAX_LEN];
	MDB_val k;
	return get_rec(t, parent, name, nlen, key, &k, out);
}

int sb_state_put(struct sb_txn *t, uint64_t parent, const char *name,
		 size_t nlen, struct sb_rec *rec)
{
	uint8_t key[KEY_MAX_LEN], val[REC_LEN];
	struct sb_rec r = *rec, old;
	uint64_t stale = 0;
	MDB_val k, v;
	int ret;

	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	ret = make_key(key, parent, name, nlen, &k);
	if (ret < 0)
		goto out;
	if (r.type == SB_DIR && r.dir_id == SB_ROOT_ID) {
		ret = -EINVAL;
		goto out;
	}
	/* A directory replaced by anything but itself (same id) would leave
	 * its children unreachable yet counted; remember them for deletion.
	 * An undecodable old value is simply overwritten, so put can repair. */
	ret = sb_st_map_err(mdb_get(t->txn, t->st->entries, &k, &v));
	if (ret == 0) {
		if (sb_st_decode_rec(&v, &old) == 0 && old.type == SB_DIR &&
		    old.dir_id != 0 &&
		    (r.type != SB_DIR || r.dir_id != old.dir_id))
			stale = old.dir_id;
	} else if (ret != -ENOENT) {
		goto out;
	}
	if (r.type == SB_DIR && r.dir_id == 0) {
		ret = alloc_dir_id(t, &r.dir_id);
		if (ret < 0)
			goto out;
	}
	encode_rec(val, &r);
	v.mv_data = val;
	v.mv_size = sizeof(val);
	ret = sb_st_map_err(mdb_put(t->txn, t->st->entries, &k, &v, 0));
	if (ret < 0)
		goto out;
	if (stale) {
		ret = del_subtree(t, stale);
		if (ret < 0)
			goto out;
	}
	rec->dir_id = r.dir_id;
out:
	return ret;
}

int sb_state_del(struct sb_txn *t, uint64_t parent, const char *name,
		 size_t nlen)
{
	uint8_t key[KEY_MAX_LEN];
	struct sb_rec rec;
	MDB_val k;
	int ret;

	ret = get_rec(t, parent, name, nlen, key, &k, &rec);
	if (ret < 0)
		goto out;
	ret = sb_st_map_err(mdb_del(t->txn, t->st->entries, &k, NULL));
	if (ret < 0)
		goto out;
	if (rec.type == SB_DIR && rec.dir_id != 0)
		ret = del_subtree(t, rec.dir_id);
out:
	return ret;
}

int sb_state_dir_id(struct sb_txn *t, const char *rel, size_t len,
		    uint64_t *id)
{
	uint64_t cur = SB_ROOT_ID;
	struct sb_rec rec;
	size_t i = 0;
	int ret = 0;

	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	while (i < len) {
		const char *slash = memchr(rel + i, '/', len - i);
		size_t end = slash ? (size_t)(slash - rel) : len;

		if (end == i || (slash && end + 1 == len)) {
			ret = -EINVAL;	/* empty component */
			goto out;
		}
		ret = sb_state_get(t, cur, rel + i, end - i, &rec);
		if (ret == -ENAMETOOLONG)
			ret = -ENOENT;	/* could never have been recorded */
		if (ret < 0)
			goto out;
		if (rec.type != SB_DIR) {
			ret = -ENOENT;
			goto out;
		}
		if (rec.dir_id == 0 || rec.dir_id == SB_ROOT_ID) {
			ret = SB_E_STATE_CORRUPT;
			goto out;
		}
		cur = rec.dir_id;
		i = end + 1;
	}
	*id = cur;
out:
	return ret;
}

int sb_state_count(struct sb_txn *t, uint64_t *n)
{
	MDB_stat ms;
	int ret;

	if (!txn_is_live(t)) {
		ret = -EINVAL;
		goto out;
	}
	ret = sb_st_map_err(mdb_stat(t->txn, t->st->entries, &ms));
	if (ret < 0)
		goto out;
	*n = ms.ms_entries;
out:
	return ret;
}

/* ------------------------------------------------------------ conflicts */

int sb_state_move(struct sb_txn *t, uint64_t oparent, const char *oname,
		  size_t olen, uint64_t nparent, const char *nname, size_t nlen)
{
	uint8_t key[KEY_MAX_LEN];
	struct sb_rec rec;
	MDB_val k;
	int ret;

	if ((ret = sb_state_get(t, oparent, oname, olen, &rec)) < 0)
		return ret;
	if (oparent == nparent && olen == nlen && !memcmp(oname, nname, nlen))
		return 0;
	/* The directory keeps its id, so its children move with it. */
	if ((ret = sb_state_put(t, nparent, nname, nlen, &rec)) < 0)
		return ret;
	if ((ret = make_key(key, oparent, oname, olen, &k)) < 0)
		return ret;
	return sb_st_map_err(mdb_del(t->txn, t->st->entries, &k, NULL));
}

int sb_state_swap(struct sb_txn *t, uint64_t pa, const char *na, size_t la,
		  uint64_t pb, const char *nb, size_t lb)
{
	uint8_t ka[KEY_MAX_LEN], kb[KEY_MAX_LEN];
	struct sb_rec ra, rb;
	MDB_val k;
	int ret, ha, hb;

	ret = sb_state_get(t, pa, na, la, &ra);
	if (ret < 0 && ret != -ENOENT)
		return ret;
	ha = ret == 0;
	ret = sb_state_get(t, pb, nb, lb, &rb);
	if (ret < 0 && ret != -ENOENT)
		return ret;
	hb = ret == 0;
	/* Remove both keys alone (no subtree goes), then put each at the
	 * other's: directories keep their ids, so their children follow. */
	if ((ret = make_key(ka, pa, na, la, &k)) < 0)
		return ret;
	if (ha && (ret = sb_st_map_err(mdb_del(t->txn, t->st->entries, &k, NULL))) < 0)
		return ret;
	if ((ret = make_key(kb, pb, nb, lb, &k)) < 0)
		return ret;
	if (hb && (ret = sb_st_map_err(mdb_del(t->txn, t->st->entries, &k, NULL))) < 0)
		return ret;
	if (ha && (ret = sb_state_put(t, pb, nb, lb, &ra)) < 0)
		return ret;
	if (hb && (ret = sb_state_put(t, pa, na, la, &rb)) < 0)
		return ret;
	return 0;
}
