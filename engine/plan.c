/*
 * Scan and decide: a three-way merge, directory by directory, of the
 * source listing, the target listing and the state's records (AutoSync),
 * by one table of rules (above decide()). Nothing on disk or in the state changes here. The plan is streamed to an
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

static int walk_dir(struct walk *w, const int fd[2], uint64_t dir_id,
		    int under_deleted, uint64_t *kept);

/* ------------------------------------------------------------ emitting */

static int emit(struct walk *w, int op, int to, const struct sb_ent *e,
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

/*
 * Whether a failure is a whole side gone (a disk pulled, sshfs dead) rather
 * than one unreadable entry: what such a side could not show is not known
 * to be deleted, nor to be there, so the scan stops and is refused instead
 * of skipping one directory after another and planning from the rest.
 */
static int side_gone(struct walk *w)
{
	for (int i = 0; i < 2; i++)
		if (sb_pship_root_alive(w->p, i, 0) < 0)
			return SB_E_GONE;
	return 0;
}

static int skip(struct walk *w, const struct sb_ent *e, int err, const char *what)
{
	if (err < 0 && err != -ENOMEM && side_gone(w))
		return SB_E_GONE;
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
static int unstorable(struct walk *w, const struct sb_ent *e, int from)
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

/* ------------------------------------------------------------ deciding */

static void fill_conflict(const struct sb_ent *e, int kind, struct sb_conflict *c)
{
	memset(c, 0, sizeof(*c));
	c->kind = kind;
	c->side[0] = e->s[0].info;
	c->side[1] = e->s[1].info;
	c->suggest = sb_suggest(&c->side[0], &c->side[1]);
}

/* Descends into the entry's directories: into side `only` alone when >= 0. */
static int descend(struct walk *w, struct sb_ent *e, int only, uint64_t dir_id,
		   int under_deleted, uint64_t *kept)
{
	int fd[2] = { -1, -1 };
	for (int i = 0; i < 2; i++)
		if (only < 0 || i == only)
			fd[i] = e->cfd[i];
	return walk_dir(w, fd, dir_id, under_deleted, kept);
}

/* Makes side `to` match side `from` for an entry that has no record there. */
static int copy_over(struct walk *w, struct sb_ent *e, int from, int resolved,
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

static int conflict(struct walk *w, struct sb_ent *e, int kind, uint64_t *kept)
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
static int agree(struct walk *w, struct sb_ent *e, uint64_t *kept)
{
	struct sb_sideinfo *a = &e->s[0].info, *b = &e->s[1].info;
	++*kept;
	if (a->type == SB_FILE && (a->mode != b->mode || !sb_caps_same_time(w->caps[0], w->caps[1], a->mtime_ns, b->mtime_ns))) {
		int newer = b->mtime_ns > a->mtime_ns ? SB_TGT : SB_SRC;
		return emit(w, SB_OP_META, !newer, e, 0, NULL, 0, 0);
	}
	if ((a->type == SB_DIR || sb_type_special(a->type)) && a->mode != b->mode)
		return emit(w, SB_OP_META, SB_TGT, e, 0, NULL, 0, 0);
	return emit(w, SB_OP_RECORD, 0, e, 0, NULL, 0, 0);
}

/*
 * The rules, one cell per pair of change classes (source, target), and in
 * each cell one outcome for an entry whose record is not a directory (or
 * that has no record), one for a recorded directory, and one for an entry
 * that is a socket on either side: Unison's recon.ml match, as data. A
 * socket belongs to the process that bound it: it is never copied, nor
 * replaced by nor replacing another kind of entry (KEEP, and no warning),
 * but recorded where both sides hold one (as the mount makes them), its
 * mode carried and its deletion followed. FIFOs and device nodes are
 * carried as files are, compared by type, mode and rdev (compare.c). Every cell is listed, mirror images included; a pair with
 * a record on one side only cannot occur.
 *
 *   KEEP          unchanged: nothing to do; into a directory's entries
 *   RECORD        unchanged, but a fingerprint moved: the state learns it
 *   META(X)       mode or mtime carried to side X; into a directory's entries
 *   UPDATE(X)     the other side's content, or its kind of entry, replaces
 *                 X's; into the new directory, if it is one
 *   REPLACE(X)    UPDATE(X) of X's recorded directory: first its tree loses
 *                 what did not change since the last sync; what changed
 *                 stays, and the entry is then a type conflict
 *   COPY(X)       copied to side X, which never had it; a conflict instead
 *                 where X deleted a directory holding it
 *   DELETE(X)     deleted on side X
 *   PRUNE(X)      X's directory loses what did not change beneath it; it goes
 *                 too unless something stays (a conflict, with its parents)
 *   FORGET        gone on both sides: the state forgets it
 *   MODDEL        a modified-deleted conflict
 *   COMPARE       the same content on both sides is recorded (a file takes
 *                 the mode and mtime of the newer, the source's on a tie; a
 *                 directory or special file the source's mode), else a content conflict
 *                 (type, where the kinds of entry differ); into a directory
 *                 both have
 *   NOTHING       on neither side and never recorded
 *
 * Beneath a directory one side deleted, every conflict is of the kind
 * under-deleted-directory (conflict()), and every conflict goes through the
 * choose hook, which may settle it at once. A case clash and an ignored
 * entry never reach the table (do_entry()).
 */
enum {
	R_NOTHING, R_KEEP, R_RECORD, R_META, R_UPDATE, R_COPY, R_DELETE,
	R_FORGET, R_CONFLICT, R_COMPARE
};

struct rule {
	uint8_t act;
	uint8_t to;		/* the side it changes */
	uint8_t ck;		/* the conflict it may end in */
	uint8_t prune;		/* side `to`'s recorded tree is pruned first */
};

#define KEEP		{ R_KEEP, 0, 0, 0 }
#define RECORD		{ R_RECORD, 0, 0, 0 }
#define META(x)		{ R_META, x, 0, 0 }
#define UPDATE(x)	{ R_UPDATE, x, 0, 0 }
#define REPLACE(x)	{ R_UPDATE, x, SB_CK_TYPE, 1 }
#define COPY(x)		{ R_COPY, x, SB_CK_UNDER_DELETED, 0 }
#define DELETE(x)	{ R_DELETE, x, 0, 0 }
#define PRUNE(x)	{ R_DELETE, x, 0, 1 }
#define FORGET		{ R_FORGET, 0, 0, 0 }
#define MODDEL		{ R_CONFLICT, 0, SB_CK_MODIFIED_DELETED, 0 }
#define COMPARE		{ R_COMPARE, 0, 0, 0 }
#define NOTHING		{ R_NOTHING, 0, 0, 0 }
#define RULE(src, tgt, other, dir, sock)	[src][tgt] = { other, dir, sock }

static const struct rule rules[N_CH][N_CH][3] = {
	/*   source      target      not a directory  a directory      a socket */
	RULE(CH_SAME,    CH_SAME,    KEEP,            KEEP,            KEEP),
	RULE(CH_SAME,    CH_FP,      RECORD,          RECORD,          RECORD),
	RULE(CH_SAME,    CH_META,    META(SB_SRC),    META(SB_SRC),    META(SB_SRC)),
	RULE(CH_SAME,    CH_CONTENT, UPDATE(SB_SRC),  REPLACE(SB_SRC), KEEP),
	RULE(CH_SAME,    CH_DELETED, DELETE(SB_SRC),  PRUNE(SB_SRC),   DELETE(SB_SRC)),

	RULE(CH_FP,      CH_SAME,    RECORD,          RECORD,          RECORD),
	RULE(CH_FP,      CH_FP,      RECORD,          RECORD,          RECORD),
	RULE(CH_FP,      CH_META,    META(SB_SRC),    META(SB_SRC),    META(SB_SRC)),
	RULE(CH_FP,      CH_CONTENT, UPDATE(SB_SRC),  REPLACE(SB_SRC), KEEP),
	RULE(CH_FP,      CH_DELETED, DELETE(SB_SRC),  PRUNE(SB_SRC),   DELETE(SB_SRC)),

	RULE(CH_META,    CH_SAME,    META(SB_TGT),    META(SB_TGT),    META(SB_TGT)),
	RULE(CH_META,    CH_FP,      META(SB_TGT),    META(SB_TGT),    META(SB_TGT)),
	RULE(CH_META,    CH_META,    COMPARE,         COMPARE,         COMPARE),
	RULE(CH_META,    CH_CONTENT, COMPARE,         COMPARE,         KEEP),
	RULE(CH_META,    CH_DELETED, MODDEL,          PRUNE(SB_SRC),   DELETE(SB_SRC)),

	RULE(CH_CONTENT, CH_SAME,    UPDATE(SB_TGT),  REPLACE(SB_TGT), KEEP),
	RULE(CH_CONTENT, CH_FP,      UPDATE(SB_TGT),  REPLACE(SB_TGT), KEEP),
	RULE(CH_CONTENT, CH_META,    COMPARE,         COMPARE,         KEEP),
	RULE(CH_CONTENT, CH_CONTENT, COMPARE,         COMPARE,         KEEP),
	RULE(CH_CONTENT, CH_DELETED, MODDEL,          MODDEL,          KEEP),

	RULE(CH_DELETED, CH_SAME,    DELETE(SB_TGT),  PRUNE(SB_TGT),   DELETE(SB_TGT)),
	RULE(CH_DELETED, CH_FP,      DELETE(SB_TGT),  PRUNE(SB_TGT),   DELETE(SB_TGT)),
	RULE(CH_DELETED, CH_META,    MODDEL,          PRUNE(SB_TGT),   DELETE(SB_TGT)),
	RULE(CH_DELETED, CH_CONTENT, MODDEL,          MODDEL,          KEEP),
	RULE(CH_DELETED, CH_DELETED, FORGET,          FORGET,          FORGET),

	/* Without a record no deletion is ever inferred. */
	RULE(CH_NEW,     CH_NEW,     COMPARE,         COMPARE,         COMPARE),
	RULE(CH_NEW,     CH_ABSENT,  COPY(SB_TGT),    COPY(SB_TGT),    KEEP),
	RULE(CH_ABSENT,  CH_NEW,     COPY(SB_SRC),    COPY(SB_SRC),    KEEP),
	RULE(CH_ABSENT,  CH_ABSENT,  NOTHING,         NOTHING,         NOTHING),
};

#undef KEEP
#undef RECORD
#undef META
#undef UPDATE
#undef REPLACE
#undef COPY
#undef DELETE
#undef PRUNE
#undef FORGET
#undef MODDEL
#undef COMPARE
#undef NOTHING
#undef RULE

/* UPDATE and REPLACE: side `to` takes the other side's version. */
static int update(struct walk *w, struct sb_ent *e, const struct rule *u, uint64_t *kept)
{
	int to = u->to, from = !to, ret;
	uint64_t k = 0;

	if (u->prune) {
		if ((ret = descend(w, e, to, e->rec->dir_id, from, &k)) < 0)
			return ret;
		if (k) {
			*kept += k;
			return conflict(w, e, u->ck, kept);
		}
	}
	++*kept;
	if ((ret = unstorable(w, e, from)) != 0)
		return ret < 0 ? ret : 0;
	if ((ret = emit(w, SB_OP_UPDATE, to, e, 0, NULL, 0, 0)) < 0)
		return ret;
	if (e->s[from].info.type == SB_DIR)
		return descend(w, e, from, 0, -1, &k);
	return 0;
}

/* DELETE and PRUNE. */
static int delete(struct walk *w, struct sb_ent *e, const struct rule *u, uint64_t *kept)
{
	uint64_t k = 0;
	int ret;

	if (u->prune) {
		if ((ret = descend(w, e, u->to, e->rec->dir_id, !u->to, &k)) < 0)
			return ret;
		*kept += k;
		if (k)
			return 0;
	}
	return emit(w, SB_OP_DELETE, u->to, e, 0, NULL, 0, 0);
}

/* COMPARE: hashes both sides where sizes do not already tell them apart. */
static int compare(struct walk *w, struct sb_ent *e, uint64_t *kept)
{
	const struct sb_rec *r = e->rec;
	int t0 = e->s[0].info.type, t1 = e->s[1].info.type, same, ret;

	if ((ret = sb_same_content(e, &same)) < 0)
		return skip(w, e, ret, "changed while being compared");
	if (!same)
		return conflict(w, e, t0 == t1 ? SB_CK_CONTENT : SB_CK_TYPE, kept);
	if ((ret = agree(w, e, kept)) < 0)
		return ret;
	if (t0 == SB_DIR)
		return descend(w, e, -1, r && r->type == SB_DIR ? r->dir_id : 0, -1, kept);
	return 0;
}

static int decide(struct walk *w, struct sb_ent *e, uint64_t *kept)
{
	const struct sb_rec *r = e->rec;
	int ch[2], ret;

	for (int i = 0; i < 2; i++) {
		if (!r) {
			ch[i] = e->s[i].info.type == SB_NONE ? CH_ABSENT : CH_NEW;
			continue;
		}
		if ((ret = sb_classify(w->caps, e, i, &ch[i])) < 0)
			return skip(w, e, ret, "changed while being scanned");
		if (e->s[i].info.type == SB_NONE)
			w->plan->st.missing[i]++;
	}
	int sock = e->s[0].info.type == SB_SOCK || e->s[1].info.type == SB_SOCK;
	int dir = r && r->type == SB_DIR && !sock;
	const struct rule *u = &rules[ch[0]][ch[1]][sock ? 2 : dir];

	switch (u->act) {
	case R_KEEP:
	case R_RECORD:
		++*kept;
		if (u->act == R_RECORD && (ret = emit(w, SB_OP_RECORD, 0, e, 0, NULL, 0, 0)) < 0)
			return ret;
		return dir ? descend(w, e, -1, r->dir_id, -1, kept) : 0;
	case R_META:
		++*kept;
		if ((ret = emit(w, SB_OP_META, u->to, e, 0, NULL, 0, 0)) < 0)
			return ret;
		return dir ? descend(w, e, -1, r->dir_id, -1, kept) : 0;
	case R_UPDATE:
		return update(w, e, u, kept);
	case R_COPY:
		if (e->under_deleted == u->to)
			return conflict(w, e, u->ck, kept);
		return copy_over(w, e, !u->to, 0, NULL, kept);
	case R_DELETE:
		return delete(w, e, u, kept);
	case R_FORGET:
		return emit(w, SB_OP_FORGET, 0, e, 0, NULL, 0, 0);
	case R_CONFLICT:
		return conflict(w, e, u->ck, kept);
	case R_COMPARE:
		return compare(w, e, kept);
	}
	return 0;	/* R_NOTHING */
}

/* An entry side `fold` cannot hold beside another spelling (clash.c):
 * a conflict, whatever the hooks choose, and nothing beneath it visited. */
static int case_clash(struct walk *w, struct sb_ent *e, uint64_t *kept)
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
	struct sb_ent e;
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
	sb_as_held(w->caps, &e);
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
	/* The root's old versions are that side's own: never synced, never
	 * taken as deleted (and not counted as ignored: no pattern asks). */
	for (size_t i = 0; w->len == 0 && i < out->n; i++)
		if (!strcmp(out->v[i], SB_VERSIONS_DIR)) {
			free(out->v[i]);
			memmove(&out->v[i], &out->v[i + 1], (out->n - i - 1) * sizeof(*out->v));
			out->n--;
			break;
		}
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
			if (ret == -ENOMEM)
				goto out;
			if (ret == -EIO) {
				ret = side_gone(w) ? SB_E_GONE : ret;
				goto out;
			}
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
	if (sb_versions_reserved(rel, len))
		return 0;	/* each side's old versions: see list_side */
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
	p->gone = 0;
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
	/* A side that went away without an error (umount -l leaves the
	 * descriptors working on a file system nobody sees) is refused too:
	 * the run would find it gone at its first step. */
	if (side_gone(&w)) {
		ret = SB_E_GONE;
		goto out;
	}
	*out = plan;
	plan = NULL;
out:
	/* Whatever went wrong, a side that went meanwhile is the cause. */
	if (ret < 0 && ret != -ENOMEM && ret != SB_E_GONE && w.plan && side_gone(&w))
		ret = SB_E_GONE;
	sb_txn_abort(w.txn);
	free(w.path);
	sb_plan_free(plan);
	return ret;
}
