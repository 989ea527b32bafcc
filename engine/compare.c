/*
 * What changed: one entry's sides against its record (the change classes
 * plan.c's rules table reads) and against each other, hashing a file only
 * where its stat cannot tell.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

/* Hashes one side's file or symlink target; -EAGAIN if it changed since its stat. */
static int hash_side(struct sb_ent *e, int side)
{
	uint8_t bit = side ? SB_IF_HASH1 : SB_IF_HASH0;
	struct sb_scan *s = &e->s[side];
	int fd = -1, ret;

	if (e->flags & bit)
		return 0;
	if (s->info.type == SB_LINK) {
		char *buf = malloc(s->info.size + 1);
		if (!buf)
			return -ENOMEM;
		ssize_t n = readlinkat(e->pfd[side], e->name, buf, s->info.size + 1);
		ret = n < 0 ? -errno : (uint64_t)n != s->info.size ? -EAGAIN
			: sb_hash_buf(buf, n, e->sha[side]);
		free(buf);
		if (ret == 0)
			e->flags |= bit;
		return ret;
	}
	fd = openat(e->pfd[side], e->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	ret = sb_hash_stable(fd, &s->fp, e->sha[side]);
	e->hashed[side]++;
	if (ret == 0)
		e->flags |= bit;
	close(fd);
	return ret;
}

int sb_same_content(struct sb_ent *e, int *same)
{
	int ret;
	*same = 0;
	if (e->s[0].info.type != e->s[1].info.type)
		return 0;
	if (e->s[0].info.type == SB_DIR) {
		*same = 1;
		return 0;
	}
	if (e->s[0].info.size != e->s[1].info.size)
		return 0;
	if (sb_type_special(e->s[0].info.type)) {
		*same = 1;	/* type and rdev: a special file has no content */
		return 0;
	}
	if ((ret = hash_side(e, 0)) < 0 || (ret = hash_side(e, 1)) < 0)
		return ret;
	*same = memcmp(e->sha[0], e->sha[1], SB_SHA_LEN) == 0;
	return 0;
}

/*
 * A fingerprint against the record's. Where inode numbers do not survive a
 * remount (caps.c), device and inode are left out: size, mtime and ctime
 * still move with every change, and fp.c's racy rule covers the tick.
 */
static int fp_same(const struct sb_caps *const caps[2], int side, const struct sb_fp *a, const struct sb_fp *b)
{
	struct sb_fp x = *a, y = *b;
	if (!(caps[side]->flags & SB_CAP_INO))
		x.dev = y.dev = x.ino = y.ino = 0;
	return sb_fp_equal(&x, &y);
}

int sb_classify(const struct sb_caps *const caps[2], struct sb_ent *e, int i, int *ch)
{
	const struct sb_rec *r = e->rec;
	const struct sb_sideinfo *in = &e->s[i].info;
	int ret;

	if (in->type == SB_NONE) {
		*ch = CH_DELETED;
	} else if (in->type != r->type) {
		*ch = CH_CONTENT;
	} else if (in->type == SB_DIR) {
		/* A directory's mtime moves with its entries: only its mode counts. */
		*ch = in->mode != r->mode ? CH_META : CH_SAME;
	} else if (fp_same(caps, i, &e->s[i].fp, &r->fp[i]) &&
		   (in->type == SB_LINK || in->mode == r->mode)) {
		*ch = CH_SAME;
	} else if (in->size != r->size) {
		*ch = CH_CONTENT;
	} else if (sb_type_special(in->type)) {
		*ch = in->mode != r->mode ? CH_META : CH_FP;
	} else {
		if ((ret = hash_side(e, i)) < 0)
			return ret;
		if (memcmp(e->sha[i], r->sha, SB_SHA_LEN))
			*ch = CH_CONTENT;
		else if (in->type == SB_FILE &&
			 (in->mode != r->mode || !sb_caps_same_time(caps[0], caps[1], in->mtime_ns, r->mtime_ns)))
			*ch = CH_META;
		else
			*ch = CH_FP;
	}
	return 0;
}

/*
 * A side that keeps no modes (FAT, exFAT: every file 0777) shows the mode
 * its partner or the record gives, so that what it cannot hold is never a
 * change, and never carried to the other side: the partner's mode where it
 * has the entry, else the record's, else 0644 (0755 for a directory). The
 * stat's own mode stays in rawmode, for apply.c's checks.
 */
void sb_as_held(const struct sb_caps *const caps[2], struct sb_ent *e)
{
	for (int i = 0; i < 2; i++) {
		struct sb_sideinfo *in = &e->s[i].info, *o = &e->s[!i].info;
		if (in->type == SB_NONE || (caps[i]->flags & SB_CAP_MODE))
			continue;
		if (o->type == in->type && (caps[!i]->flags & SB_CAP_MODE))
			in->mode = o->mode;
		else if (e->rec && e->rec->type == in->type)
			in->mode = e->rec->mode;
		else
			in->mode = in->type == SB_DIR ? 0755 : in->type == SB_LINK ? 0777 : 0644;
	}
}
