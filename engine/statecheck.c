/*
 * Checks a partnership's state before LMDB is let near it.
 *
 * LMDB maps data.mdb read-only and trusts every byte of it: a file shorter
 * than its meta page says makes the first access past the end SIGBUS, and a
 * damaged page header or node offset sends it reading or writing wherever
 * the garbage points (SIGSEGV, or silent damage). LMDB itself detects only
 * some of this (MDB_INVALID for a bad meta page, MDB_CORRUPTED and
 * MDB_PAGE_NOTFOUND for a few inconsistencies it trips over), so before
 * mdb_env_open we read the file with pread(), never through a map, and walk
 * every page the newest meta page reaches, with bounds checks on everything
 * LMDB will dereference. Any doubt is SB_E_STATE_CORRUPT: the caller then
 * refuses to run and says which file, instead of crashing.
 *
 * The walk reads each live page once; a state of 100k records is a few
 * thousand pages, a few milliseconds from the page cache.
 *
 * What it cannot see: bytes inside keys and values that keep the structure
 * intact (a changed digit in a recorded hash or name). Our own decoders
 * check the length and version of every record; past that such damage makes
 * a file look changed or unknown, which the three-way rules handle without
 * deleting anything a record does not vouch for.
 *
 * The layout below is LMDB 0.9's on-disk format (MDB_DATA_VERSION 1, 64-bit
 * page numbers), the only one Debian's liblmdb0 writes.
 *
 * The same module keeps the "synced" marker (see sb_state_mark) and checks
 * the ownership and mode of state directories.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statecheck.h"

#define MDB_MAGIC 0xBEEFC0DEu
#define MDB_DATA_VERSION 1
#define PAGEHDRSZ 16
#define NODESIZE 8
#define DB_LEN 48		/* struct MDB_db */
#define META_DBS 0x28		/* offset of mm_dbs[2] in a meta page */
#define META_LAST_PG (META_DBS + 2 * DB_LEN)
#define META_TXNID (META_LAST_PG + 8)
#define P_INVALID (~(uint64_t)0)
#define MAX_DEPTH 32		/* LMDB's CURSOR_STACK: deeper would overrun it */
#define MAX_KEY 511

enum { P_BRANCH = 0x01, P_LEAF = 0x02, P_OVERFLOW = 0x04, P_META = 0x08 };
/* Bits LMDB may leave set on a written page that say nothing of its kind. */
#define P_HARMLESS (0x10 | 0x4000 | 0x8000)	/* P_DIRTY, P_LOOSE, P_KEEP */
enum { F_BIGDATA = 0x01, F_SUBDATA = 0x02 };
enum tree { T_FREE, T_MAIN, T_SUB };

struct walk {
	int fd;
	uint32_t psize;
	uint64_t npages;	/* pages the meta page says exist */
	uint8_t *used;		/* bitmap: pages some tree reaches */
	uint8_t *freed;		/* bitmap: pages the free list names */
	int has_entries;	/* the "entries" database exists */
};

static uint16_t g16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t g32(const uint8_t *p) { return g16(p) | (uint32_t)g16(p + 2) << 16; }
static uint64_t g64(const uint8_t *p) { return g32(p) | (uint64_t)g32(p + 4) << 32; }

static int bit_test_set(uint8_t *map, uint64_t n)
{
	int was = map[n >> 3] >> (n & 7) & 1;
	map[n >> 3] |= (uint8_t)(1u << (n & 7));
	return was;
}

static int read_at(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done, (off_t)(off + done));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return SB_E_STATE_CORRUPT;	/* shorter than it says */
		done += (size_t)r;
	}
	return 0;
}

/* A page some tree points at: in range and reached only once (a second
 * reach is a cycle or two trees sharing a page, both damage). */
static int claim(struct walk *w, uint64_t pgno, uint64_t count)
{
	if (pgno < 2 || pgno >= w->npages || count > w->npages - pgno)
		return SB_E_STATE_CORRUPT;
	for (uint64_t i = 0; i < count; i++)
		if (bit_test_set(w->used, pgno + i))
			return SB_E_STATE_CORRUPT;
	return 0;
}

/* A free-list value: a count, then that many page numbers. */
static int check_idl(struct walk *w, const uint8_t *d, uint64_t size)
{
	if (size < 8)
		return SB_E_STATE_CORRUPT;
	uint64_t n = g64(d);
	if (n > (size - 8) / 8)
		return SB_E_STATE_CORRUPT;
	for (uint64_t i = 1; i <= n; i++) {
		uint64_t pg = g64(d + 8 * i);
		if (pg < 2 || pg >= w->npages)
			return SB_E_STATE_CORRUPT;
		bit_test_set(w->freed, pg);
	}
	return 0;
}

/* A value stored on overflow pages; free-list values are read and checked. */
static int walk_overflow(struct walk *w, uint64_t pgno, uint64_t dsize, enum tree t)
{
	uint8_t hdr[PAGEHDRSZ];
	uint8_t *buf = NULL;
	int ret = pgno < 2 || pgno >= w->npages ? SB_E_STATE_CORRUPT : 0;

	if (ret < 0 || (ret = read_at(w->fd, hdr, sizeof(hdr), pgno * w->psize)) < 0)
		goto out;
	uint32_t pages = g32(hdr + 12);
	if (g64(hdr) != pgno || (g16(hdr + 10) & ~P_HARMLESS) != P_OVERFLOW || pages == 0 ||
	    (uint64_t)pages * w->psize - PAGEHDRSZ < dsize) {
		ret = SB_E_STATE_CORRUPT;
		goto out;
	}
	if ((ret = claim(w, pgno, pages)) < 0 || t != T_FREE)
		goto out;
	if (!(buf = malloc(dsize ? dsize : 1))) {
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = read_at(w->fd, buf, dsize, pgno * w->psize + PAGEHDRSZ)) < 0)
		goto out;
	ret = check_idl(w, buf, dsize);
out:
	free(buf);
	return ret;
}

static int walk_tree(struct walk *w, const uint8_t *db, enum tree t);

/* One leaf node's value, at node offset off of page pg (psize bytes). */
static int walk_leaf_node(struct walk *w, const uint8_t *pg, uint32_t off, enum tree t)
{
	const uint8_t *node = pg + off;
	uint16_t flags = g16(node + 4), ksize = g16(node + 6);
	uint64_t dsize = g16(node) | (uint64_t)g16(node + 2) << 16;
	uint32_t data = off + NODESIZE + ksize;

	/* We never create DUPSORT databases: F_DUPDATA or anything else is damage. */
	if (flags & ~(F_BIGDATA | F_SUBDATA))
		return SB_E_STATE_CORRUPT;
	if (flags & F_BIGDATA) {
		if (data + 8 > w->psize || (flags & F_SUBDATA))
			return SB_E_STATE_CORRUPT;
		return walk_overflow(w, g64(pg + data), dsize, t);
	}
	if (data + dsize > w->psize)
		return SB_E_STATE_CORRUPT;
	if (flags & F_SUBDATA) {
		if (t != T_MAIN || dsize != DB_LEN)
			return SB_E_STATE_CORRUPT;
		if (ksize == 7 && !memcmp(node + NODESIZE, "entries", 7))
			w->has_entries = 1;
		return walk_tree(w, pg + data, T_SUB);
	}
	if (t == T_FREE)
		return ksize == 8 ? check_idl(w, pg + data, dsize) : SB_E_STATE_CORRUPT;
	return 0;
}

/* Page pgno and everything beneath it; level 1 is the leaves. The B-tree
 * is balanced, so a leaf above level 1 or a branch at it is damage. */
static int walk_page(struct walk *w, uint64_t pgno, unsigned level, enum tree t)
{
	uint8_t *pg = NULL;
	int ret = claim(w, pgno, 1);

	if (ret < 0)
		goto out;
	if (!(pg = malloc(w->psize))) {
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = read_at(w->fd, pg, w->psize, pgno * w->psize)) < 0)
		goto out;
	ret = SB_E_STATE_CORRUPT;
	uint16_t kind = g16(pg + 10) & ~P_HARMLESS, lower = g16(pg + 12), upper = g16(pg + 14);
	if (g64(pg) != pgno || kind != (level > 1 ? P_BRANCH : P_LEAF))
		goto out;
	if (lower < PAGEHDRSZ || (lower - PAGEHDRSZ) % 2 || lower > upper || upper > w->psize)
		goto out;
	unsigned n = (lower - PAGEHDRSZ) / 2;
	if (level > 1 && n == 0)
		goto out;
	for (unsigned i = 0; i < n; i++) {
		uint32_t off = g16(pg + PAGEHDRSZ + 2 * i);
		if (off < upper || off + NODESIZE > w->psize)
			goto out;
		const uint8_t *node = pg + off;
		uint16_t ksize = g16(node + 6);
		if (ksize > MAX_KEY || off + NODESIZE + ksize > w->psize)
			goto out;
		if (level > 1) {
			uint64_t child = g16(node) | (uint64_t)g16(node + 2) << 16 |
					 (uint64_t)g16(node + 4) << 32;
			ret = walk_page(w, child, level - 1, t);
		} else {
			ret = walk_leaf_node(w, pg, off, t);
		}
		if (ret < 0)
			goto out;
		ret = SB_E_STATE_CORRUPT;
	}
	ret = 0;
out:
	free(pg);
	return ret;
}

/* A database record (struct MDB_db): md_depth at 6, md_root at 40. */
static int walk_tree(struct walk *w, const uint8_t *db, enum tree t)
{
	uint16_t depth = g16(db + 6);
	uint64_t root = g64(db + 40);

	if (root == P_INVALID)
		return depth == 0 ? 0 : SB_E_STATE_CORRUPT;
	if (depth == 0 || depth > MAX_DEPTH)
		return SB_E_STATE_CORRUPT;
	return walk_page(w, root, depth, t);
}

/* Both meta pages must be sound, as mdb_env_open requires; the one with
 * the higher transaction id is the one LMDB will use. */
static int read_meta(int fd, uint64_t fsize, uint8_t meta[2][PAGEHDRSZ + 160],
		     uint32_t *psize, int *newest)
{
	int ret = 0;

	if (fsize < PAGEHDRSZ + 160)
		return SB_E_STATE_CORRUPT;
	if ((ret = read_at(fd, meta[0], sizeof(meta[0]), 0)) < 0)
		return ret;
	*psize = g32(meta[0] + META_DBS);	/* mm_psize is mm_dbs[0].md_pad */
	if (*psize < 512 || *psize > 65536 || (*psize & (*psize - 1)) || fsize < 2 * (uint64_t)*psize)
		return SB_E_STATE_CORRUPT;
	if ((ret = read_at(fd, meta[1], sizeof(meta[1]), *psize)) < 0)
		return ret;
	for (int i = 0; i < 2; i++) {
		if (!(g16(meta[i] + 10) & P_META) || g32(meta[i] + PAGEHDRSZ) != MDB_MAGIC ||
		    g32(meta[i] + PAGEHDRSZ + 4) != MDB_DATA_VERSION ||
		    g32(meta[i] + META_DBS) != *psize)
			return SB_E_STATE_CORRUPT;
	}
	*newest = g64(meta[0] + META_TXNID) < g64(meta[1] + META_TXNID);
	return 0;
}

/* The walk proper, over an open data.mdb of fsize bytes. */
static int verify(int fd, uint64_t fsize, int *has_entries)
{
	uint8_t meta[2][PAGEHDRSZ + 160];
	struct walk w = { .fd = fd };
	int newest, ret = read_meta(fd, fsize, meta, &w.psize, &newest);

	if (ret < 0)
		goto out;
	const uint8_t *m = meta[newest];
	uint64_t last = g64(m + META_LAST_PG);
	/* Truncated: the pages LMDB would map past the end would SIGBUS. */
	if (last < 1 || last >= fsize / w.psize) {
		ret = SB_E_STATE_CORRUPT;
		goto out;
	}
	w.npages = last + 1;
	w.used = calloc(w.npages / 8 + 1, 1);
	w.freed = calloc(w.npages / 8 + 1, 1);
	if (!w.used || !w.freed) {
		ret = -ENOMEM;
		goto out;
	}
	w.used[0] |= 3;	/* the meta pages */
	if ((ret = walk_tree(&w, m + META_DBS, T_FREE)) < 0 ||
	    (ret = walk_tree(&w, m + META_DBS + DB_LEN, T_MAIN)) < 0)
		goto out;
	/* A page both free and in use would be handed out while still live. */
	for (uint64_t i = 0; i < w.npages / 8 + 1; i++) {
		if (w.used[i] & w.freed[i]) {
			ret = SB_E_STATE_CORRUPT;
			goto out;
		}
	}
	*has_entries = w.has_entries;
out:
	free(w.used);
	free(w.freed);
	return ret;
}

/* lstat of dir/name: -ENOENT, SB_E_STATE_SYMLINK, SB_E_STATE_CORRUPT for
 * anything else that is not a regular file, or 0 with *st. */
static int stat_file(int dirfd, const char *name, struct stat *st)
{
	if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	if (S_ISLNK(st->st_mode))
		return SB_E_STATE_SYMLINK;
	return S_ISREG(st->st_mode) ? 0 : SB_E_STATE_CORRUPT;
}

/* The partnership's other files (pship, journal, the mount's control):
 * each is opened with O_NOFOLLOW, and refused here first so that a planted
 * symlink is reported by name instead of failing somewhere later. */
static const char *const other_files[] = { "lock", "roots", "journal", "journal.new",
					   "mount", "control.sock" };

int sb_state_check(const char *dir, const char **file)
{
	static const char *const names[] = { SB_STATE_DATA, "lock.mdb", SB_STATE_MARKER };
	struct stat st[3], ost;
	int present[3], fd = -1, has_entries = 0, ret;
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (file)
		*file = NULL;
	if (dfd < 0) {
		ret = errno == ELOOP ? SB_E_STATE_SYMLINK : -errno;
		goto out;
	}
	/* LMDB opens data.mdb and lock.mdb itself, without O_NOFOLLOW: refuse
	 * symlinks there before it does (the directory is ours alone, see
	 * sb_state_dir_check, so nobody else can put one there meanwhile). */
	for (size_t i = 0; i < sizeof(other_files) / sizeof(*other_files); i++) {
		if (fstatat(dfd, other_files[i], &ost, AT_SYMLINK_NOFOLLOW) == 0 &&
		    S_ISLNK(ost.st_mode)) {
			ret = SB_E_STATE_SYMLINK;
			if (file)
				*file = other_files[i];
			goto out;
		}
	}
	for (int i = 0; i < 3; i++) {
		ret = stat_file(dfd, names[i], &st[i]);
		present[i] = ret == 0;
		if (ret < 0 && ret != -ENOENT) {
			if (file)
				*file = names[i];
			goto out;
		}
	}
	if (file)
		*file = SB_STATE_DATA;
	ret = 0;
	if (!present[0] || st[0].st_size == 0) {
		/* A state that once held records and is now empty or gone:
		 * going on would be a first sync, which brings back every file
		 * deleted since the last sync. */
		if (present[2])
			ret = SB_E_STATE_LOST;
		goto out;
	}
	fd = openat(dfd, SB_STATE_DATA, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	if ((ret = verify(fd, (uint64_t)st[0].st_size, &has_entries)) < 0)
		goto out;
	/* A fresh environment in place of the old one is as lost as none. */
	if (present[2] && !has_entries)
		ret = SB_E_STATE_LOST;
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (ret == 0 && file)
		*file = NULL;
	return ret;
}

int sb_state_mark(const char *dir)
{
	static const char text[] =
		"This partnership's state has recorded a sync. While this file exists,\n"
		"sbfs refuses to treat a missing or empty data.mdb as a first sync.\n";
	char *path = NULL;
	int ret = 0;

	if (asprintf(&path, "%s/%s", dir, SB_STATE_MARKER) < 0) {
		path = NULL;
		ret = -ENOMEM;
		goto out;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = errno == EEXIST ? 0 : -errno;
		goto out;
	}
	if (write(fd, text, sizeof(text) - 1) != (ssize_t)sizeof(text) - 1)
		ret = -EIO;
	close(fd);
out:
	free(path);
	return ret;
}

int sb_state_dir_check(const char *dir)
{
	struct stat st;

	/* As ssh with ~/.ssh: a directory another user could write to lets
	 * them plant symlinks named like our files, which we (perhaps root)
	 * would then write through. */
	if (lstat(dir, &st) < 0)
		return -errno;
	if (S_ISLNK(st.st_mode))
		return SB_E_STATE_SYMLINK;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (st.st_uid != geteuid())
		return SB_E_STATE_FOREIGN;
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return SB_E_STATE_WRITABLE;
	return 0;
}
