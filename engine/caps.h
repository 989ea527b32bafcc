/*
 * What a partner's file system can hold (caps.c). Engine-private.
 */
#ifndef SBFS_CAPS_H
#define SBFS_CAPS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct sb_pship;

enum {
	SB_CAP_PROBED = 1 << 0,	/* written and read back; else guessed from the type */
	SB_CAP_FOLD = 1 << 1,	/* names that differ only in case are one name */
	SB_CAP_NORM = 1 << 2,	/* Unicode NFC and NFD spellings are one name */
	SB_CAP_SYMLINK = 1 << 3,
	SB_CAP_HARDLINK = 1 << 4,
	SB_CAP_MODE = 1 << 5,	/* permission bits stick */
	SB_CAP_OWNER = 1 << 6,	/* owners stick (as root: chown works) */
	SB_CAP_XATTR = 1 << 7,	/* user.* extended attributes */
	SB_CAP_INO = 1 << 8,	/* inode numbers survive a remount */
	SB_CAP_CTIME = 1 << 9,	/* ctime is a real change time, not the mtime */
	SB_CAP_TRAIL = 1 << 10,	/* refuses (or strips) a trailing dot or space */
	SB_CAP_DOSDEV = 1 << 11,/* refuses DOS device names: CON, NUL, COM1... */
	SB_CAP_ASCII = 1 << 12,	/* refuses names with bytes beyond ASCII (fusefat) */
	SB_CAP_MVTIME = 1 << 13,/* renaming an open file stamps its mtime (fusefat) */
};

struct sb_caps {
	uint32_t flags;		/* SB_CAP_* */
	uint32_t name_max;	/* longest name, in bytes */
	int64_t time_ns;	/* mtime granularity */
	uint64_t file_max;	/* largest file; UINT64_MAX when no limit is known */
	uint64_t dev;		/* the root's st_dev when this was found */
	char fstype[24];	/* "ext4", "exfat", "vfat", "ntfs", "sshfs"... */
	char refused[16];	/* characters refused in names */
};

/*
 * Side's capabilities: kept in the state, probed again when the root's
 * file system is not the one they describe (a disk replugged, a network
 * mount remade). Never fails: where the probe cannot write, the type's
 * known limits stand in (SB_CAP_PROBED clear).
 */
const struct sb_caps *sb_pship_caps(struct sb_pship *p, int side);

/* 1 if side `c` refuses no name a Linux file system takes (ext4, NTFS):
 * sb_caps_storable() can then only object to a kind or a size. */
int sb_caps_any_name(const struct sb_caps *c);
/*
 * 0 if side `c` can store an entry of this type and size under name
 * (one component); else -EINVAL, -ENAMETOOLONG, -EFBIG or -EOPNOTSUPP,
 * with *why (a static or buf-held text) saying what it cannot hold.
 */
int sb_caps_storable(const struct sb_caps *c, const char *name, size_t len,
		     int type, uint64_t size, char buf[64], const char **why);
/* Two mtimes are the same to a pair of sides if they agree at the coarser
 * of their granularities. */
int sb_caps_same_time(const struct sb_caps *a, const struct sb_caps *b,
		      int64_t x, int64_t y);
/* name as a case-insensitive side compares it (caps.c); malloc'd */
char *sb_caps_fold(const char *name, size_t len);
/* "exfat: case-insensitive, no modes, no symlinks, times 1 s" */
void sb_caps_describe(const struct sb_caps *c, char *buf, size_t n);
/* {"fs":"exfat","case_sensitive":false,...} */
void sb_caps_json(const struct sb_caps *c, FILE *f);

/*
 * clash.c. Of n distinct names in one directory (from either side or the
 * state), the ones a case-insensitive side holding `have` (sorted) cannot
 * take: *out (malloc'd, sorted, each malloc'd) gets every spelling of a
 * name that folds like another but the one kept (see clash.c).
 */
int sb_clash_find(const char *const *names, size_t n, const char *const *have, size_t nhave,
		  char ***out, size_t *nout);
/* 1 if, on a case-insensitive side, dfd has base only under another
 * spelling (the lookup finds it, the listing does not). */
int sb_fold_alias(int dfd, const char *base);
/* 1 if name is in the sorted list clash. */
int sb_clash_has(char *const *clash, size_t n, const char *name);

#endif
