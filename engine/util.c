/* Small shared helpers: names, error text, the suggestion rule. */
#include <string.h>

#include "core.h"

const char *sb_strerror(int code)
{
	switch (code) {
	case SB_E_SAME: return "source and target are the same directory";
	case SB_E_NESTED: return "one partner lies inside the other";
	case SB_E_STATE_INSIDE: return "the state directory lies inside a partner";
	case SB_E_MASS: return "a side looks emptied (unplugged disk?)";
	case SB_E_BADPATH: return "not a path inside the partners";
	case SB_E_STATE_CORRUPT: return "the state file is damaged";
	case SB_E_STATE_LOST: return "the state was lost: this partnership was synced before, "
				     "but its state file is now missing or empty";
	case SB_E_STATE_FOREIGN: return "refusing a state directory owned by another user";
	case SB_E_STATE_WRITABLE: return "refusing a state directory writable by group or others";
	case SB_E_STATE_SYMLINK: return "refusing a state directory or file that is a symbolic link";
	case SB_E_BADPATTERN: return "not a usable ignore pattern";
	case SB_E_ROOT_MOVED: return "no longer mounted there: its path names another directory";
	case SB_E_GONE: return "a partner went away during the scan";
	}
	if (code < 0)
		return strerror(-code);
	return "success";
}

const char *sb_type_name(int type)
{
	static const char *const names[] = { "none", "file", "directory",
					     "symlink", "special file", "fifo",
					     "character device", "block device", "socket" };
	return type >= 0 && type <= SB_SOCK ? names[type] : "?";
}

const char *sb_conflict_kind_name(int kind)
{
	switch (kind) {
	case SB_CK_CONTENT: return "changed on both sides";
	case SB_CK_MODIFIED_DELETED: return "changed on one side, deleted on the other";
	case SB_CK_TYPE: return "different kinds of entry";
	case SB_CK_UNDER_DELETED: return "changed under a directory deleted on the other side";
	case SB_CK_CASE: return "case clash: another name differs only in case (rename one)";
	}
	return "none";
}

/*
 * Sync Butler's SuggestAction matrix, seen from the side that is "later":
 * later and larger, or later and not larger, wins; about the same time but
 * larger wins; same time and size suggests nothing. Earlier never wins.
 */
int sb_suggest(const struct sb_sideinfo *src, const struct sb_sideinfo *tgt)
{
	if (src->type == SB_NONE && tgt->type != SB_NONE)
		return SB_SUGGEST_TARGET;
	if (tgt->type == SB_NONE && src->type != SB_NONE)
		return SB_SUGGEST_SOURCE;
	int64_t d = src->mtime_ns - tgt->mtime_ns;
	if (d > SB_SUGGEST_TOLERANCE_NS)
		return SB_SUGGEST_SOURCE;
	if (d < -SB_SUGGEST_TOLERANCE_NS)
		return SB_SUGGEST_TARGET;
	if (src->size > tgt->size)
		return SB_SUGGEST_SOURCE;
	if (tgt->size > src->size)
		return SB_SUGGEST_TARGET;
	return SB_SUGGEST_NONE;
}

int sb_type_of_mode(mode_t m)
{
	if (S_ISREG(m))
		return SB_FILE;
	if (S_ISDIR(m))
		return SB_DIR;
	if (S_ISLNK(m))
		return SB_LINK;
	if (S_ISFIFO(m))
		return SB_FIFO;
	if (S_ISCHR(m))
		return SB_CHR;
	if (S_ISBLK(m))
		return SB_BLK;
	if (S_ISSOCK(m))
		return SB_SOCK;
	return SB_OTHER;
}

mode_t sb_mode_of_type(int type)
{
	switch (type) {
	case SB_FIFO: return S_IFIFO;
	case SB_CHR: return S_IFCHR;
	case SB_BLK: return S_IFBLK;
	case SB_SOCK: return S_IFSOCK;
	}
	return S_IFREG;
}

uint64_t sb_size_of_stat(const struct stat *st)
{
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		return st->st_rdev;	/* what tells two device nodes apart */
	return st->st_size;
}

void sb_fp_from_stat(struct sb_fp *fp, const struct stat *st)
{
	fp->dev = st->st_dev;
	fp->ino = st->st_ino;
	fp->size = st->st_size;
	fp->mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	fp->ctime_ns = (int64_t)st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec;
}

void sb_scan_from_stat(struct sb_scan *s, const struct stat *st)
{
	memset(s, 0, sizeof(*s));
	s->info.type = sb_type_of_mode(st->st_mode);
	s->info.mode = s->rawmode = st->st_mode & 07777;
	s->info.size = sb_size_of_stat(st);
	s->info.mtime_ns = (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
	s->atime_ns = (int64_t)st->st_atim.tv_sec * 1000000000 + st->st_atim.tv_nsec;
	s->uid = st->st_uid;
	s->gid = st->st_gid;
	sb_fp_from_stat(&s->fp, st);
}

int sb_fp_equal(const struct sb_fp *a, const struct sb_fp *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime_ns == b->mtime_ns && a->ctime_ns == b->ctime_ns;
}

int sb_rel_valid(const char *rel, size_t len)
{
	return sb_path_valid(rel, len);
}
