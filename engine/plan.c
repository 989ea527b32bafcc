/*
 * Scan and decide: a three-way merge, directory by directory, of the
 * source listing, the target listing and the state's records (AutoSync).
 * Nothing on disk or in the state changes here. The plan is streamed to an
 * unlinked temporary file, so memory stays flat however large the tree.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "ignore.h"

struct walk {
	struct sb_pship *p;
	struct sb_plan *plan;
	const struct sb_hooks *h;
	struct sb_txn *txn;
	char *path;
	size_t len, cap;
	uint64_t seen;
	const struct sb_caps *caps[2];	/* what each side can hold */
	const char *why;		/* the next emitted item's reason */
};

/* What one side's change since the record amounts to. */
enum { CH_SAME, CH_FP, CH_META, CH_CONTENT, CH_DELETED };

/* One entry being decided. */
struct ent {
	int pfd[2];		/* parent directories, -1 where absent */
	const char *name;
	struct sb_scan s[2];
	const struct sb_rec *rec;
	uint8_t sha[2][SB_SHA_LEN];
	uint8_t flags;
	int under_deleted;	/* side that deleted an enclosing directory, or -1 */
	int cfd[2];		/* the entry's own directory on each side, or -1 */
	uint64_t *hashed;	/* the plan's count of files read */
};

static int walk_dir(struct walk *w, const int fd[2], uint64_t dir_id,
		    int under_deleted, uint64_t *kept);

/* ------------------------------------------------------------ emitting */

static int emit(struct walk *w, int op, int to, const struct ent *e,
		int err, const struct sb_conflict *c, int resolved, int extra)
{
	struct sb_pitem it;
	struct sb_plan_stats *st = &w->plan->st;

	memset(&it, 0, sizeof(it));
	it.op = op;
	it.to = to;
	it.err = err;
	it.resolved = resolved;
	it.len = w->len;
	it.whylen = w->why ? (uint32_t)strlen(w->why) : 0;
	if (e) {
		it.s[0] = e->s[0];
		it.s[1] = e->s[1];
		it.flags = e->flags | extra;
		if (e->rec) {
			it.rec = *e->rec;
			it.flags |= SB_IF_REC;
		}
		memcpy(it.sha, e->sha, sizeof(it.sha));
	}
	if (c)
		it.conflict = *c;
	if (fwrite(&it, sizeof(it), 1, w->plan->f) != 1 ||
	    fwrite(w->path, 1, w->len, w->plan->f) != w->len ||
	    fwrite(w->why ? w->why : "", 1, it.whylen, w->plan->f) != it.whylen)
		return -EIO;
	w->plan->count++;
	switch (op) {
	case SB_OP_COPY: st->copy[to]++; break;
	case SB_OP_UPDATE: case SB_OP_META: st->update[to]++; break;
	case SB_OP_DELETE: st->del[to]++; break;
	case SB_OP_RECORD: case SB_OP_FORGET: st->recorded++; break;
	case SB_OP_KEEP_BOTH: st->keep_both++; break;
	case SB_OP_CONFLICT: st->conflicts++; break;
	case SB_OP_SKIP: st->skipped++; break;
	}
	return 0;
}

static int skip(struct walk *w, const struct ent *e, int err, const char *what)
{
	if (w->h && w->h->warn)
		w->h->warn(w->h->arg, w->path, w->len, err, what);
	w->why = what;
	int ret = emit(w, SB_OP_SKIP, 0, e, err, NULL, 0, 0);
	w->why = NULL;
	return ret;
}

/*
 * 1 (and the entry skipped) if side `to` cannot store side `from`'s entry:
 * a name or a kind of entry its file system refuses, a file too large. The
 * side that has it keeps it; nothing beneath it is visited.
 */
static int unstorable(struct walk *w, const struct ent *e, int from)
{
	const struct sb_caps *c = w->caps[!from];
	const struct sb_sideinfo *in = &e->s[from].info;
	char buf[64], what[160];
	const char *why;
	int ret = sb_caps_storable(c, e->name, strlen(e->name), in->type, in->size, buf, &why);

	if (ret == 0)
		return 0;
	snprintf(what, sizeof(what), "cannot be stored on %s (%s): %s",
		 from ? "source" : "target", c->fstype, why);
	return (ret = skip(w, e, ret, what)) < 0 ? ret : 1;
}

/* ------------------------------------------------------------ paths */

static int path_push(struct walk *w, const char *name, size_t *saved)
{
	size_t n = strlen(name), need = w->len + 1 + n + 1;
	if (need > w->cap) {
		size_t cap = w->cap ? w->cap : 256;
		while (cap < need)
			cap *= 2;
		char *np = realloc(w->path, cap);
		if (!np)
			return -ENOMEM;
		w->path = np;
		w->cap = cap;
	}
	*saved = w->len;
	if (w->len)
		w->path[w->len++] = '/';
	memcpy(w->path + w->len, name, n);
	w->len += n;
	return 0;
}

/* ------------------------------------------------------------ hashing */

/* Hashes one side's file or symlink target; -EAGAIN if it changed since its stat. */
static int hash_side(struct ent *e, int side)
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

static int same_content(struct ent *e, int *same)
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
static int fp_same(const struct walk *w, int side, const struct sb_fp *a, const struct sb_fp *b)
{
	struct sb_fp x = *a, y = *b;
	if (!(w->caps[side]->flags & SB_CAP_INO))
		x.dev = y.dev = x.ino = y.ino = 0;
	return sb_fp_equal(&x, &y);
}

static int same_time(const struct walk *w, int64_t x, int64_t y)
{
	return sb_caps_same_time(w->caps[0], w->caps[1], x, y);
}

/* How side i changed since the record (which must exist). */
static int classify(struct walk *w, struct ent *e, int i, int *ch)
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
	} else if (fp_same(w, i, &e->s[i].fp, &r->fp[i]) &&
		   (in->type == SB_LINK || in->mode == r->mode)) {
		*ch = CH_SAME;
	} else if (in->size != r->size) {
		*ch = CH_CONTENT;
	} else {
		if ((ret = hash_side(e, i)) < 0)
			return ret;
		if (memcmp(e->sha[i], r->sha, SB_SHA_LEN))
			*ch = CH_CONTENT;
		else if (in->type == SB_FILE &&
			 (in->mode != r->mode || !same_time(w, in->mtime_ns, r->mtime_ns)))
			*ch = CH_META;
		else
			*ch = CH_FP;
	}
	return 0;
}

/* ------------------------------------------------------------ deciding */

static void fill_conflict(const struct ent *e, int kind, struct sb_conflict *c)
{
	memset(c, 0, sizeof(*c));
	c->kind = kind;
	c->side[0] = e->s[0].info;
	c->side[1] = e->s[1].info;
	c->suggest = sb_suggest(&c->side[0], &c->side[1]);
}

/* Descends into the entry's directories: into side `only` alone when >= 0. */
static int descend(struct walk *w, struct ent *e, int only, uint64_t dir_id,
		   int under_deleted, uint64_t *kept)
{
	int fd[2] = { -1, -1 };
	for (int i = 0; i < 2; i++)
		if (only < 0 || i == only)
			fd[i] = e->cfd[i];
	return walk_dir(w, fd, dir_id, under_deleted, kept);
}

/* Makes side `to` match side `from` for an entry that has no record there. */
static int copy_over(struct walk *w, struct ent *e, int from, int resolved,
		     const struct sb_conflict *c, uint64_t *kept)
{
	int to = !from, ret;
	int op = e->s[to].info.type == SB_NONE ? SB_OP_COPY : SB_OP_UPDATE;
	if ((ret = unstorable(w, e, from)) != 0) {
		++*kept;
		return ret < 0 ? ret : 0;
	}
	int extra = e->s[to].info.type == SB_DIR ? SB_IF_RMTREE : 0;
	if ((ret = emit(w, op, to, e, 0, c, resolved, extra)) < 0)
		return ret;
	++*kept;
	if (e->s[from].info.type == SB_DIR) {
		uint64_t k = 0;
		return descend(w, e, from, 0, -1, &k);
	}
	return 0;
}

static int conflict(struct walk *w, struct ent *e, int kind, uint64_t *kept)
{
	struct sb_conflict c;
	struct sb_item view;
	struct sb_pitem pi;
	int choice = SB_CHOOSE_SKIP;

	if (e->under_deleted >= 0)
		kind = SB_CK_UNDER_DELETED;
	fill_conflict(e, kind, &c);
	if (w->h && w->h->choose) {
		memset(&pi, 0, sizeof(pi));
		pi.op = SB_OP_CONFLICT;
		pi.len = w->len;
		pi.s[0] = e->s[0];
		pi.s[1] = e->s[1];
		pi.conflict = c;
		sb_item_view(&view, &pi, w->path);
		choice = w->h->choose(w->h->arg, &view);
	}
	int present0 = e->s[0].info.type != SB_NONE;
	int present1 = e->s[1].info.type != SB_NONE;
	if (choice == SB_CHOOSE_KEEP_BOTH && !(present0 && present1))
		choice = present0 ? SB_CHOOSE_SOURCE : SB_CHOOSE_TARGET;
	switch (choice) {
	case SB_CHOOSE_KEEP_BOTH:
		++*kept;
		return emit(w, SB_OP_KEEP_BOTH, SB_TGT, e, 0, &c, 1, 0);
	case SB_CHOOSE_SOURCE:
	case SB_CHOOSE_TARGET: {
		int win = choice == SB_CHOOSE_SOURCE ? SB_SRC : SB_TGT;
		if (e->s[win].info.type == SB_NONE)
			return emit(w, SB_OP_DELETE, !win, e, 0, &c, 1, SB_IF_RMTREE);
		return copy_over(w, e, win, 1, &c, kept);
	}
	}
	++*kept;
	return emit(w, SB_OP_CONFLICT, 0, e, 0, &c, 0, 0);
}

/* Both sides hold the same content: record it, evening out metadata. */
static int agree(struct walk *w, struct ent *e, uint64_t *kept)
{
	struct sb_sideinfo *a = &e->s[0].info, *b = &e->s[1].info;
	++*kept;
	if (a->type == SB_FILE && (a->mode != b->mode || !same_time(w, a->mtime_ns, b->mtime_ns))) {
		int newer = b->mtime_ns > a->mtime_ns ? SB_TGT : SB_SRC;
		return emit(w, SB_OP_META, !newer, e, 0, NULL, 0, 0);
	}
	if (a->type == SB_DIR && a->mode != b->mode)
		return emit(w, SB_OP_META, SB_TGT, e, 0, NULL, 0, 0);
	return emit(w, SB_OP_RECORD, 0, e, 0, NULL, 0, 0);
}

/* Entry without a record: nothing is known of its history. */
static int decide_new(struct walk *w, struct ent *e, uint64_t *kept)
{
	int t0 = e->s[0].info.type, t1 = e->s[1].info.type, same, ret;

	if (t0 == SB_NONE && t1 == SB_NONE)
		return 0;
	if (t0 == SB_NONE || t1 == SB_NONE) {
		int from = t0 == SB_NONE ? SB_TGT : SB_SRC;
		/* Created where the other side deleted the enclosing directory. */
		if (e->under_deleted == !from)
			return conflict(w, e, SB_CK_UNDER_DELETED, kept);
		return copy_over(w, e, from, 0, NULL, kept);
	}
	if ((ret = same_content(e, &same)) < 0)
		return skip(w, e, ret, "changed while being compared");
	if (!same)
		return conflict(w, e, t0 == t1 ? SB_CK_CONTENT : SB_CK_TYPE, kept);
	if ((ret = agree(w, e, kept)) < 0)
		return ret;
	if (t0 == SB_DIR)
		return descend(w, e, -1, 0, -1, kept);
	return 0;
}

/* One side (`from`) changed, the other is as recorded. */
static int carry(struct walk *w, struct ent *e, int from, int ch, uint64_t *kept)
{
	int to = !from, ret;
	int tf = e->s[from].info.type, tt = e->s[to].info.type;
	uint64_t k = 0;

	if (ch == CH_DELETED) {
		if (tt == SB_DIR) {
			/* Delete beneath only what did not change; keep the rest. */
			if ((ret = descend(w, e, to, e->rec->dir_id, from, &k)) < 0)
				return ret;
			*kept += k;
			if (k)
				return 0;
		}
		return emit(w, SB_OP_DELETE, to, e, 0, NULL, 0, 0);
	}
	if (ch == CH_META) {
		++*kept;
		if ((ret = emit(w, SB_OP_META, to, e, 0, NULL, 0, 0)) < 0)
			return ret;
		return tf == SB_DIR ? descend(w, e, -1, e->rec->dir_id, -1, kept) : 0;
	}
	/* Content, or the kind of entry, changed. */
	if (tt == SB_DIR && tf != SB_DIR) {
		/* A directory replaced by a file: its tree goes as if deleted. */
		if ((ret = descend(w, e, to, e->rec->dir_id, from, &k)) < 0)
			return ret;
		if (k) {
			*kept += k;
			return conflict(w, e, SB_CK_TYPE, kept);
		}
	}
	++*kept;
	if ((ret = unstorable(w, e, from)) != 0)
		return ret < 0 ? ret : 0;
	if ((ret = emit(w, SB_OP_UPDATE, to, e, 0, NULL, 0, 0)) < 0)
		return ret;
	if (tf == SB_DIR)
		return descend(w, e, from, 0, -1, &k);
	return 0;
}

static int decide(struct walk *w, struct ent *e, uint64_t *kept)
{
	const struct sb_rec *r = e->rec;
	int ch[2], ret;

	if (!r)
		return decide_new(w, e, kept);
	for (int i = 0; i < 2; i++) {
		if ((ret = classify(w, e, i, &ch[i])) < 0)
			return skip(w, e, ret, "changed while being scanned");
		if (e->s[i].info.type == SB_NONE)
			w->plan->st.missing[i]++;
	}
	if (ch[0] <= CH_FP && ch[1] <= CH_FP) {
		++*kept;
		if ((ch[0] == CH_FP || ch[1] == CH_FP) &&
		    (ret = emit(w, SB_OP_RECORD, 0, e, 0, NULL, 0, 0)) < 0)
			return ret;
		return r->type == SB_DIR ? descend(w, e, -1, r->dir_id, -1, kept) : 0;
	}
	if (ch[1] <= CH_FP)
		return carry(w, e, SB_SRC, ch[0], kept);
	if (ch[0] <= CH_FP)
		return carry(w, e, SB_TGT, ch[1], kept);

	/* Changed on both sides. */
	if (ch[0] == CH_DELETED && ch[1] == CH_DELETED)
		return emit(w, SB_OP_FORGET, 0, e, 0, NULL, 0, 0);
	if (ch[0] == CH_DELETED || ch[1] == CH_DELETED) {
		int del = ch[0] == CH_DELETED ? SB_SRC : SB_TGT;
		if (r->type == SB_DIR && e->s[!del].info.type == SB_DIR)
			return carry(w, e, del, CH_DELETED, kept);
		return conflict(w, e, SB_CK_MODIFIED_DELETED, kept);
	}
	int same;
	if ((ret = same_content(e, &same)) < 0)
		return skip(w, e, ret, "changed while being compared");
	if (!same) {
		int t0 = e->s[0].info.type, t1 = e->s[1].info.type;
		return conflict(w, e, t0 == t1 ? SB_CK_CONTENT : SB_CK_TYPE, kept);
	}
	if ((ret = agree(w, e, kept)) < 0)
		return ret;
	if (e->s[0].info.type == SB_DIR)
		return descend(w, e, -1, r->type == SB_DIR ? r->dir_id : 0, -1, kept);
	return 0;
}

/*
 * A side that keeps no modes (FAT, exFAT: every file 0777) shows the mode
 * its partner or the record gives, so that what it cannot hold is never a
 * change, and never carried to the other side: the partner's mode where it
 * has the entry, else the record's, else 0644 (0755 for a directory). The
 * stat's own mode stays in rawmode, for apply.c's checks.
 */
static void as_held(const struct walk *w, struct ent *e)
{
	for (int i = 0; i < 2; i++) {
		struct sb_sideinfo *in = &e->s[i].info, *o = &e->s[!i].info;
		if (in->type == SB_NONE || (w->caps[i]->flags & SB_CAP_MODE))
			continue;
		if (o->type == in->type && (w->caps[!i]->flags & SB_CAP_MODE))
			in->mode = o->mode;
		else if (e->rec && e->rec->type == in->type)
			in->mode = e->rec->mode;
		else
			in->mode = in->type == SB_DIR ? 0755 : in->type == SB_LINK ? 0777 : 0644;
	}
}

/* Stats both sides of one entry and decides it. */
/* An entry side `fold` cannot hold beside another spelling (clash.c):
 * a conflict, whatever the hooks choose, and nothing beneath it visited. */
static int case_clash(struct walk *w, struct ent *e, uint64_t *kept)
{
	struct sb_conflict c;
	++*kept;
	fill_conflict(e, SB_CK_CASE, &c);
	c.suggest = SB_SUGGEST_NONE;	/* no choice settles it: a rename does */
	return emit(w, SB_OP_CONFLICT, 0, e, 0, &c, 0, 0);
}

/* Stats both sides of one entry and decides it; with fold >= 0 that side
 * is not looked at: the name is a case clash there. */
static int do_entry(struct walk *w, const int pfd[2], const char *name,
		    const struct sb_rec *rec, int under_deleted, int fold, uint64_t *kept)
{
	struct ent e;
	struct stat st;
	size_t saved;
	int ret;

	memset(&e, 0, sizeof(e));
	e.hashed = w->plan->st.hashed;
	e.cfd[0] = e.cfd[1] = -1;
	e.pfd[0] = pfd[0];
	e.pfd[1] = pfd[1];
	e.name = name;
	e.rec = rec;
	e.under_deleted = under_deleted;
	if ((ret = path_push(w, name, &saved)) < 0)
		return ret;
	for (int i = 0; i < 2; i++) {
		if (pfd[i] < 0 || i == fold)
			continue;
		if (fstatat(pfd[i], name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			if (errno == ENOENT)
				continue;
			ret = skip(w, &e, -errno, "cannot examine");
			++*kept;
			goto out;
		}
		sb_scan_from_stat(&e.s[i], &st);
	}
	if (w->h && sb_ignore_entry(w->h->ignore, w->path, w->len, e.s[0].info.type,
				    e.s[1].info.type, rec ? rec->type : SB_NONE)) {
		++*kept;	/* never deleted, nor what holds it */
		w->plan->st.ignored++;
		/* A side holding it is not empty; a lost one still shows
		 * as the records it no longer has (sb_plan_check_mass). */
		for (int i = 0; i < 2; i++)
			w->plan->st.seen[i] += e.s[i].info.type != SB_NONE;
		ret = rec ? emit(w, SB_OP_FORGET, 0, &e, 0, NULL, 0, 0) : 0;
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		if (e.s[i].info.type == SB_NONE)
			continue;
		w->plan->st.seen[i]++;
		if (e.s[i].info.type == SB_OTHER) {
			ret = skip(w, &e, -EOPNOTSUPP, "not a file, directory or symlink");
			++*kept;
			goto out;
		}
	}
	/* A directory that cannot be opened is skipped on both sides before
	 * anything (its mode included) is decided about it. */
	for (int i = 0; i < 2; i++) {
		if (e.s[i].info.type != SB_DIR)
			continue;
		e.cfd[i] = openat(pfd[i], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (e.cfd[i] < 0) {
			ret = skip(w, &e, -errno, "cannot open directory");
			++*kept;
			goto out;
		}
	}
	if (w->h && w->h->progress && (++w->seen & 1023) == 0)
		w->h->progress(w->h->arg, 0, w->seen, 0);
	as_held(w, &e);
	ret = fold >= 0 ? case_clash(w, &e, kept) : decide(w, &e, kept);
out:
	for (int i = 0; i < 2; i++)
		if (e.cfd[i] >= 0)
			close(e.cfd[i]);
	w->len = saved;
	return ret;
}

/* ------------------------------------------------------------ listing */

/* Emits the removal of a temporary file left by a killed run. */
static int cleanup_item(struct walk *w, const char *name, int side)
{
	size_t saved;
	int ret = path_push(w, name, &saved);
	if (ret == 0)
		ret = emit(w, SB_OP_CLEANUP, side, NULL, 0, NULL, 0, 0);
	w->len = saved;
	return ret;
}

/* Lists one side's directory; stale temporaries become cleanup items. */
static int list_side(struct walk *w, int fd, int side, struct sb_names *out)
{
	struct sb_names tmp = { 0 };
	int ret = sb_list_dir(fd, out, &tmp), e = 0;

	for (size_t i = 0; i < tmp.n && e == 0; i++)
		e = cleanup_item(w, tmp.v[i], side);
	sb_names_free(&tmp);
	return e ? e : ret;
}

static int walk_dir(struct walk *w, const int fd[2], uint64_t dir_id,
		    int under_deleted, uint64_t *kept)
{
	struct sb_names l[2] = { { 0 }, { 0 } };
	struct sb_recs r = { 0 };
	size_t i[2] = { 0, 0 }, k = 0, nclash[2] = { 0, 0 };
	char **clash[2] = { NULL, NULL };
	int ret = 0;

	for (int s = 0; s < 2; s++) {
		if (fd[s] < 0)
			continue;
		if ((ret = list_side(w, fd[s], s, &l[s])) < 0) {
			if (w->len == 0 && dir_id == SB_ROOT_ID)
				w->plan->st.unlisted[s] = ret;	/* see sb_plan_check_mass */
			if (ret == -ENOMEM || ret == -EIO)
				goto out;
			ret = skip(w, NULL, ret, "cannot list directory");
			++*kept;
			goto out;
		}
	}
	if (dir_id && (ret = sb_load_recs(w->txn, dir_id, &r)) < 0)
		goto out;
	if ((ret = sb_find_clashes(w->caps, l, &r, clash, nclash)) < 0)
		goto out;

	for (;;) {
		const char *a = i[0] < l[0].n ? l[0].v[i[0]] : NULL;
		const char *b = i[1] < l[1].n ? l[1].v[i[1]] : NULL;
		const char *c = k < r.n ? r.names[k] : NULL;
		const char *m = a;
		if (!m || (b && strcmp(b, m) < 0))
			m = b;
		if (!m || (c && strcmp(c, m) < 0))
			m = c;
		if (!m)
			break;
		const struct sb_rec *rec = c && !strcmp(c, m) ? &r.v[k] : NULL;
		int fold = sb_clash_has(clash[0], nclash[0], m) ? 0
			: sb_clash_has(clash[1], nclash[1], m) ? 1 : -1;
		if ((ret = do_entry(w, fd, m, rec, under_deleted, fold, kept)) < 0)
			goto out;
		if (a && !strcmp(a, m))
			i[0]++;
		if (b && !strcmp(b, m))
			i[1]++;
		if (rec)
			k++;
	}
out:
	sb_names_free(&l[0]);
	sb_names_free(&l[1]);
	sb_recs_free(&r);
	for (int s = 0; s < 2; s++) {
		for (size_t j = 0; j < nclash[s]; j++)
			free(clash[s][j]);
		free(clash[s]);
	}
	return ret;
}

/* ------------------------------------------------------------ one path */

static int path_set(struct walk *w, const char *rel, size_t len)
{
	if (len + 1 > w->cap) {
		char *np = realloc(w->path, len + 256);
		if (!np)
			return -ENOMEM;
		w->path = np;
		w->cap = len + 256;
	}
	memcpy(w->path, rel, len);
	w->len = len;
	return 0;
}

static int plan_path(struct walk *w, const char *rel, size_t len)
{
	int pfd[2] = { -1, -1 }, ret = 0, under_deleted = -1;
	const char *base = rel;
	uint64_t pid = 0, kept = 0;
	struct sb_rec rec;
	int have_rec = 0;
	char name[256];

	w->len = 0;
	if (len == 0) {
		w->plan->full = 1;
		return walk_dir(w, w->p->rootfd, SB_ROOT_ID, -1, &kept);
	}
	if (!sb_path_valid(rel, len))
		return SB_E_BADPATH;
	if ((ret = path_set(w, rel, len)) < 0)
		return ret;
	for (int i = 0; i < 2; i++) {
		ret = sb_open_parent(w->p->rootfd[i], rel, len, 0, &pfd[i], &base);
		if (ret == -ENOENT || ret == -ENOTDIR) {
			pfd[i] = -1;
		} else if (ret < 0) {
			ret = skip(w, NULL, ret, "cannot open its directory");
			goto out;
		}
	}
	ret = 0;
	size_t plen = base > rel ? (size_t)(base - rel - 1) : 0;
	size_t nlen = len - (base - rel);
	if (nlen >= sizeof(name)) {
		ret = skip(w, NULL, -ENAMETOOLONG, "name too long");
		goto out;
	}
	memcpy(name, base, nlen);
	name[nlen] = '\0';
	if (sb_state_dir_id(w->txn, rel, plen, &pid) == 0) {
		if (sb_state_get(w->txn, pid, name, nlen, &rec) == 0)
			have_rec = 1;
		/* Inside a recorded directory that one side no longer has. */
		if ((pfd[0] < 0) != (pfd[1] < 0))
			under_deleted = pfd[0] < 0 ? SB_SRC : SB_TGT;
	}
	if (w->h && sb_ignore_path(w->h->ignore, rel, plen, 1))
		goto out;	/* beneath an ignored directory */
	/* A name a case-insensitive side holds under another spelling only:
	 * what the walk of its directory finds a case clash (clash.c). */
	int fold = -1;
	for (int i = 0; i < 2; i++)
		if (pfd[i] >= 0 && (w->caps[i]->flags & SB_CAP_FOLD) && sb_fold_alias(pfd[i], name))
			fold = i;
	w->len = plen;		/* do_entry appends the name */
	ret = do_entry(w, pfd, name, have_rec ? &rec : NULL, under_deleted, fold, &kept);
out:
	for (int i = 0; i < 2; i++)
		if (pfd[i] >= 0)
			close(pfd[i]);
	return ret;
}

/* ------------------------------------------------------------ public */

int sb_plan_build(struct sb_pship *p, const char *const *paths, size_t npaths,
		  const struct sb_hooks *hooks, struct sb_plan **out)
{
	struct walk w = { .p = p, .h = hooks };
	struct sb_plan *plan = calloc(1, sizeof(*plan));
	int ret = -ENOMEM;

	*out = NULL;
	if (!plan)
		goto out;
	w.plan = plan;
	/* Before the scan's transaction: a first probe stores its findings. */
	w.caps[0] = sb_pship_caps(p, 0);
	w.caps[1] = sb_pship_caps(p, 1);
	plan->started_ns = sb_wall_ns();
	if (!(plan->f = tmpfile())) {
		ret = -errno;
		goto out;
	}
	if ((ret = sb_state_begin(p->state, 1, &w.txn)) < 0)
		goto out;
	if ((ret = sb_state_count(w.txn, &plan->st.state_entries)) < 0)
		goto out;
	if (!paths) {
		ret = plan_path(&w, "", 0);
	} else {
		for (size_t i = 0; i < npaths && ret >= 0; i++)
			ret = plan_path(&w, paths[i], strlen(paths[i]));
	}
	if (ret < 0)
		goto out;
	if (fflush(plan->f) != 0) {
		ret = -EIO;
		goto out;
	}
	*out = plan;
	plan = NULL;
out:
	sb_txn_abort(w.txn);
	free(w.path);
	sb_plan_free(plan);
	return ret;
}
