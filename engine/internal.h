/*
 * Internal interfaces shared by the engine's modules. Not installed, not
 * used by fs/ (which sees only sbfs.h). Every function returns 0 or a
 * negative errno unless documented otherwise; none prints.
 */
#ifndef SBFS_INTERNAL_H
#define SBFS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "sbfs.h"

/* Little-endian fields of the state's stored values (state.c, caps.c):
 * explicit bytes, never raw structs. */
static inline void put_u32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint32_t get_u32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---------------------------------------------------------------- hash.c */

#define SB_SHA_LEN 32

struct sb_sha;	/* incremental SHA-256 through OpenSSL EVP */

int sb_sha_new(struct sb_sha **out);
void sb_sha_free(struct sb_sha *h);		/* NULL-safe */
int sb_sha_reset(struct sb_sha *h);
int sb_sha_update(struct sb_sha *h, const void *buf, size_t len);
int sb_sha_final(struct sb_sha *h, uint8_t out[SB_SHA_LEN]);
/* The digest of what was hashed so far; the hash goes on. */
int sb_sha_peek(struct sb_sha *h, uint8_t out[SB_SHA_LEN]);
/* Hash everything readable from fd's current offset to EOF. *nbytes may be NULL. */
int sb_hash_fd(int fd, uint8_t out[SB_SHA_LEN], uint64_t *nbytes);
int sb_hash_buf(const void *buf, size_t len, uint8_t out[SB_SHA_LEN]);
/* out gets 64 lowercase hex digits and a NUL. */
void sb_sha_hex(const uint8_t sha[SB_SHA_LEN], char out[2 * SB_SHA_LEN + 1]);

/* ---------------------------------------------------------------- sparse.c */

/*
 * The next data region of fd at or after pos and before end: [*data,
 * *hole), *data == end when only a hole is left. Where the file system
 * cannot tell (no SEEK_DATA), or fd cannot seek, all of [pos, end) is data.
 * Moves fd's file offset.
 */
void sb_next_data(int fd, off_t pos, off_t end, off_t *data, off_t *hole);
/* Feeds n zero bytes to h. */
int sb_sha_zeros(struct sb_sha *h, uint64_t n);
int sb_pwrite_all(int fd, const void *buf, size_t n, off_t off);
/*
 * Feeds h in's bytes [from, to), holes as zeros without reading them,
 * through buf. With out >= 0, also writes them to out at the same offsets,
 * but for holes and all-zero blocks, so out must read as zeros there (a new,
 * empty file), and truncates out to where it stopped. *done is the count
 * covered: less than to - from only where in ended first.
 */
int sb_sparse_copy(int in, int out, off_t from, off_t to, struct sb_sha *h,
		   uint8_t *buf, size_t bufsz, uint64_t *done);
/* [off, off + len) of fd reads as zeros afterwards: a punched hole where
 * fd has data (written zeros where it cannot punch), past its end an
 * extension. */
int sb_zero_range(int fd, off_t off, off_t len);
/*
 * Copies len bytes of in from off_in to out at off_out (fewer only where in
 * ends first), in the kernel where it can (copy_file_range), else through a
 * buffer, region by region: copy_file_range writes a hole out as zeros on
 * most file systems, so holes in in are made holes in out. The count
 * copied, or -errno.
 */
long sb_copy_range_holes(int in, int64_t off_in, int out, int64_t off_out, size_t len);

/* ---------------------------------------------------------------- path.c */

/*
 * Relative paths inside a partner are byte strings with a length (they may
 * be longer than PATH_MAX), components separated by single '/', no leading
 * or trailing '/', no "." or ".." components, no NUL. The empty path is the
 * root itself.
 *
 * Opens the directory that contains rel (O_RDONLY|O_DIRECTORY|O_CLOEXEC)
 * beneath rootfd without ever following a symlink (openat2 with
 * RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS where the kernel
 * has it, a component-by-component O_NOFOLLOW walk otherwise or when the
 * path is too long for one call). *base points into rel at the last
 * component. If mkdir_mode is not 0, missing intermediate directories are
 * created with that mode. Errors: -ENOENT, -ENOTDIR, -ELOOP (a symlink on
 * the way), -EINVAL (rel is malformed or empty), others from the syscalls.
 */
int sb_open_parent(int rootfd, const char *rel, size_t len, mode_t mkdir_mode,
		   int *dirfd, const char **base);
/* Opens the directory rel itself (the root when len == 0), same rules. */
int sb_open_dir(int rootfd, const char *rel, size_t len, int *dirfd);
/* lstat of rel (not empty) beneath rootfd, same rules: a symlink on the
 * way is -ELOOP, a last component that is a symlink is reported itself. */
int sb_stat_beneath(int rootfd, const char *rel, size_t len, struct stat *st);
/* 1 if rel is well formed as above, 0 if not. */
int sb_path_valid(const char *rel, size_t len);

/* ---------------------------------------------------------------- ignore.c */

struct sb_ignore;
/*
 * Whether the path rel (NUL-terminated, not empty) is ignored, its kind
 * taken from the side that has it (source first) where a pattern for
 * directories only makes it matter; from hint (1 directory, else not) when
 * neither has it.
 */
int sb_ignore_view(const struct sb_ignore *ig, const int rootfd[2], const char *rel,
		   int hint);
/*
 * Whether the scan leaves rel alone, its directories known not to be
 * ignored: t0, t1 are the sides' kinds (enum sb_type), trec the record's.
 * Ignored as either side's kind is ignored: nothing may replace what is
 * left alone on one side.
 */
int sb_ignore_entry(const struct sb_ignore *ig, const char *rel, size_t len, int t0, int t1,
		    int trec);

/* ---------------------------------------------------------------- state.c */

enum sb_side { SB_SRC = 0, SB_TGT = 1 };

/* stat fingerprint of one side's copy: unchanged fingerprint => unchanged file */
struct sb_fp {
	uint64_t dev, ino, size;
	int64_t mtime_ns, ctime_ns;
};

/* What the state knows of one synced path. */
struct sb_rec {
	uint8_t type;		/* enum sb_type */
	uint32_t mode;		/* st_mode & 07777 */
	uint64_t size;		/* content size (symlink: target length) */
	int64_t mtime_ns;
	uint64_t dir_id;	/* directories: key prefix of their children */
	uint8_t sha[SB_SHA_LEN];/* files: content; symlinks: target string */
	struct sb_fp fp[2];	/* indexed by enum sb_side */
};

#define SB_ROOT_ID 1ULL

struct sb_state;	/* one LMDB environment: a partnership's state */
struct sb_txn;
struct sb_cursor;

/* Creates dir (mode 0700, parents too) if needed and opens the env in it. */
int sb_state_open(const char *dir, struct sb_state **out);
/* The same; on an SB_E_STATE_* error *file (may be NULL) names the state
 * file concerned, NULL when it is the directory itself. */
int sb_state_open_ex(const char *dir, struct sb_state **out, const char **file);
void sb_state_close(struct sb_state *st);	/* NULL-safe */
int sb_state_begin(struct sb_state *st, int rdonly, struct sb_txn **out);
int sb_txn_commit(struct sb_txn *t);		/* frees t, even on error */
void sb_txn_abort(struct sb_txn *t);		/* frees t, NULL-safe */

/* Entries are keyed by (parent directory id, name). -ENOENT if absent. */
int sb_state_get(struct sb_txn *t, uint64_t parent, const char *name,
		 size_t nlen, struct sb_rec *out);
/* A directory record whose dir_id is 0 gets a fresh id, written back to *rec. */
int sb_state_put(struct sb_txn *t, uint64_t parent, const char *name,
		 size_t nlen, struct sb_rec *rec);
/* Removes the entry; for a directory also every entry beneath it. */
int sb_state_del(struct sb_txn *t, uint64_t parent, const char *name,
		 size_t nlen);
/* Moves one entry to a new key; a directory keeps its id and so its children. */
int sb_state_move(struct sb_txn *t, uint64_t oparent, const char *oname,
		  size_t olen, uint64_t nparent, const char *nname, size_t nlen);
/* Exchanges two entries' records (either may be absent), ids kept. */
int sb_state_swap(struct sb_txn *t, uint64_t pa, const char *na, size_t la,
		  uint64_t pb, const char *nb, size_t lb);
/* Id of directory rel (SB_ROOT_ID for ""), -ENOENT if not recorded as a dir. */
int sb_state_dir_id(struct sb_txn *t, const char *rel, size_t len,
		    uint64_t *id);
/* The state's own small values ("caps.0"...): get copies at most *len
 * bytes into buf and sets *len to the value's size; -ENOENT if absent. */
int sb_state_meta_get(struct sb_txn *t, const char *key, void *buf, size_t *len);
int sb_state_meta_put(struct sb_txn *t, const char *key, const void *buf, size_t len);
/* Number of entry records. */
int sb_state_count(struct sb_txn *t, uint64_t *n);

/* Children of a directory in name order (memcmp, shorter first). */
int sb_state_children(struct sb_txn *t, uint64_t dir_id, struct sb_cursor **out);
/* 1 and fills *name (valid until the next call), *nlen, *rec; 0 at end. */
int sb_cursor_next(struct sb_cursor *c, const char **name, size_t *nlen,
		   struct sb_rec *rec);
void sb_cursor_close(struct sb_cursor *c);	/* NULL-safe */

/* Conflicts left by the last reconcile, keyed by full relative path. */
int sb_state_conflict_put(struct sb_txn *t, const char *rel, size_t len,
			  const struct sb_conflict *c);
int sb_state_conflict_del(struct sb_txn *t, const char *rel, size_t len);
int sb_state_conflict_get(struct sb_txn *t, const char *rel, size_t len,
			  struct sb_conflict *out);
int sb_state_conflict_clear(struct sb_txn *t);
/* Calls fn for each conflict (any order); a non-zero return stops and is returned. */
int sb_state_conflict_each(struct sb_txn *t,
			   int (*fn)(void *arg, const char *rel, size_t len,
				     const struct sb_conflict *c),
			   void *arg);

/* ---------------------------------------------------------------- log.c */

struct sb_log;	/* JSON Lines operation log, opened O_APPEND */

int sb_log_open(const char *path, struct sb_log **out);
void sb_log_close(struct sb_log *l);		/* NULL-safe */
/*
 * Appends one line:
 * {"time":"2026-11-21T18:30:00.123Z","partnership":"<id>","action":"copy-to-target",
 *  "path":"a/b","size":123,"sha256":"<hex>","result":"ok"}
 * with "result":"error","error":"<strerror>","errno":N when err < 0, and
 * "path_b64" beside "path" when the path is not valid UTF-8. sha may be NULL.
 * One write(2) per line so concurrent appenders never interleave.
 */
int sb_log_op(struct sb_log *l, const char *partnership, const char *action,
	      const char *rel, size_t len, uint64_t size, const uint8_t *sha,
	      int err);
/*
 * A line about a run rather than an operation:
 * {"time":…,"partnership":…,"action":ACTION,"paths":N,"result":RESULT,"reason":…}
 * (reason only when not NULL), as one write(2) too.
 */
int sb_log_note(struct sb_log *l, const char *partnership, const char *action,
		uint64_t paths, const char *result, const char *reason);

#endif
