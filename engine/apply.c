/*
 * Carrying a plan out: the loop over the plan's items, the parent
 * directories they share, the records the state learns, keep-both and the
 * batches. The copies, metadata changes and deletions themselves are in
 * apply_copy.c. Each item is re-checked against what the scan saw before
 * anything is replaced or deleted. The state learns each outcome in batched
 * LMDB transactions, each committed only after both file systems are
 * synced, so the state never vouches for data a crash could still lose.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "apply_int.h"
#include "versions.h"

#define BATCH_ITEMS 20000
#define BATCH_NS (5LL * 1000000000)
/* Items between two checks of the roots, besides one at each failure and
 * each commit: umount -l makes no failure, and the writes it lets through
 * to the unseen file system are not recorded anyway (gone_side). */
#define CHECK_EVERY 64

static const char *const action_names[][2] = {
	[SB_OP_COPY] = { "copy-to-source", "copy-to-target" },
	[SB_OP_UPDATE] = { "update-source", "update-target" },
	[SB_OP_META] = { "metadata-to-source", "metadata-to-target" },
	[SB_OP_DELETE] = { "delete-in-source", "delete-in-target" },
	[SB_OP_RECORD] = { "record", "record" },
	[SB_OP_FORGET] = { "forget", "forget" },
	[SB_OP_KEEP_BOTH] = { "keep-both", "keep-both" },
	[SB_OP_CONFLICT] = { "conflict", "conflict" },
	[SB_OP_SKIP] = { "skip", "skip" },
};

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static void warn(struct apply *a, const char *path, size_t len, int err, const char *what)
{
	if (a->h && a->h->warn)
		a->h->warn(a->h->arg, path, len, err, what);
}

static void close_parent(struct apply *a)
{
	for (int i = 0; i < 2; i++) {
		if (a->pfd[i] >= 0)
			close(a->pfd[i]);
		a->pfd[i] = -1;
	}
	a->pvalid = 0;
}

/*
 * Opens both sides' directories holding path (cached while items share a
 * parent). A side lacking it gets -1; with create set, side `create - 1`
 * gets the missing directories made.
 */
static int open_parent(struct apply *a, const char *path, size_t len,
		       int create, const char **name)
{
	const char *slash = memrchr(path, '/', len);
	size_t plen = slash ? (size_t)(slash - path) : 0;
	int ret;

	*name = slash ? slash + 1 : path;
	if (a->pvalid && plen == a->plen && !memcmp(path, a->ppath, plen) &&
	    !(create && a->pfd[create - 1] < 0))
		return 0;
	close_parent(a);
	if (plen + 1 > a->pcap) {
		char *np = realloc(a->ppath, plen + 256);
		if (!np)
			return -ENOMEM;
		a->ppath = np;
		a->pcap = plen + 256;
	}
	memcpy(a->ppath, path, plen);
	a->plen = plen;
	for (int i = 0; i < 2; i++) {
		const char *base;
		mode_t mk = create == i + 1 ? 0755 : 0;
		if (a->side_gone == i + 1) {
			a->pfd[i] = -1;	/* only items not touching it get here */
			a->perr[i] = -ENODEV;
			continue;
		}
		ret = plen ? (mk ? sb_open_parent(a->p->rootfd[i], path, len, mk, &a->pfd[i], &base)
				 : sb_open_dir(a->p->rootfd[i], path, plen, &a->pfd[i]))
			   : ((a->pfd[i] = dup(a->p->rootfd[i])) < 0 ? -errno : 0);
		/* No real directory there (a symlink is not one): that side
		 * lacks the parent, and only items needing it fail. */
		if (ret == -ENOENT || ret == -ENOTDIR || ret == -ELOOP) {
			a->pfd[i] = -1;
			a->perr[i] = ret == -ELOOP ? -ENOTDIR : ret;	/* ELOOP: a symlink */
		} else if (ret < 0) {
			close_parent(a);
			return ret;
		}
	}
	if (sb_state_dir_id(a->txn, path, plen, &a->pid) < 0)
		a->pid = 0;
	a->pvalid = 1;
	return 0;
}

/* ------------------------------------------------------------ state */

static int put_rec(struct apply *a, const char *name, struct sb_rec *r, int fresh)
{
	int ret;
	if (!a->pid)
		return 0;	/* parent not recorded: the next run records it */
	if (fresh) {
		ret = sb_state_del(a->txn, a->pid, name, strlen(name));
		if (ret < 0 && ret != -ENOENT)
			return ret;
		r->dir_id = 0;
	}
	return sb_state_put(a->txn, a->pid, name, strlen(name), r);
}

/*
 * Records that both sides hold the version described by side `from`'s scan.
 * No side is stat()ed again here: a stat taken now would describe whatever
 * happened since. `from`'s fingerprint is the scan's (verified unchanged
 * on the descriptor that was read), settled against the scan's start; the
 * other side's is *tofp, taken where the change was made, or for an item
 * that changed nothing there, its scan's. Directories' fingerprints are
 * never compared, so theirs is read now.
 */
static int record(struct apply *a, const struct sb_pitem *it, const char *name,
		  int from, const uint8_t *sha, int fresh, const struct sb_fp *tofp)
{
	struct sb_rec r;
	struct stat st;
	int other = !from;

	memset(&r, 0, sizeof(r));
	r.type = it->s[from].info.type;
	r.mode = it->s[from].info.mode;
	r.size = it->s[from].info.size;
	r.mtime_ns = it->s[from].info.mtime_ns;
	if ((it->flags & SB_IF_REC) && it->rec.type == SB_DIR && r.type == SB_DIR)
		r.dir_id = it->rec.dir_id;
	if (sha)
		memcpy(r.sha, sha, SB_SHA_LEN);
	r.fp[from] = it->s[from].fp;
	sb_fp_settle(&r.fp[from], sb_pship_fine(a->p, from), a->scan_ns);
	if (r.type == SB_DIR) {
		if (a->pfd[other] < 0)
			return -ENOENT;
		if (fstatat(a->pfd[other], name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return -errno;
		if (sb_type_of_mode(st.st_mode) != r.type)
			return -EAGAIN;
		sb_fp_from_stat(&r.fp[other], &st);
	} else if (tofp) {
		r.fp[other] = *tofp;
	} else {
		if (it->s[other].info.type != r.type)
			return -EAGAIN;
		r.fp[other] = it->s[other].fp;
		sb_fp_settle(&r.fp[other], sb_pship_fine(a->p, other), a->scan_ns);
	}
	return put_rec(a, name, &r, fresh);
}


static int add_follow(struct apply *a, const char *path, size_t len)
{
	for (size_t i = 0; i < a->nfollow; i++)
		if (strlen(a->follow[i]) == len && !memcmp(a->follow[i], path, len))
			return 0;
	char **nv = realloc(a->follow, (a->nfollow + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	a->follow = nv;
	if (!(nv[a->nfollow] = strndup(path, len)))
		return -ENOMEM;
	a->nfollow++;
	return 0;
}

/*
 * The deletion won a conflict under a directory that side `gone` deleted:
 * once the kept entries are settled, the directories that held them can go
 * too, so plan again from the topmost one that side lacks.
 */
static int follow_deleted_parent(struct apply *a, const char *path, size_t len,
				 int gone)
{
	for (size_t i = 0; i < len; i++) {
		if (path[i] != '/')
			continue;
		int fd, ret = sb_open_dir(a->p->rootfd[gone], path, i, &fd);
		if (ret == 0) {
			close(fd);
			continue;
		}
		return ret == -ENOENT ? add_follow(a, path, i) : 0;
	}
	return 0;
}

/* ------------------------------------------------------------ ops */

/* name -> name.target-YYYYMMDD-HHMMSS.ext, unused on both sides. */
static int keep_name(struct apply *a, const char *name, int64_t mtime_ns,
		     char out[256])
{
	struct tm tm;
	time_t t = mtime_ns / 1000000000;
	char stamp[32], suffix[48];
	const char *dot = strrchr(name, '.');
	size_t stem = dot && dot != name ? (size_t)(dot - name) : strlen(name);
	const char *ext = name + stem;
	struct stat st;

	localtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
	for (int n = 0; n < 1000; n++) {
		if (n)
			snprintf(suffix, sizeof(suffix), ".target-%s-%d", stamp, n);
		else
			snprintf(suffix, sizeof(suffix), ".target-%s", stamp);
		size_t sl = strlen(suffix), el = strlen(ext), keep = stem;
		if (keep + sl + el > 255)
			keep = 255 - sl - el;
		snprintf(out, 256, "%.*s%s%s", (int)keep, name, suffix, ext);
		if (fstatat(a->pfd[0], out, &st, AT_SYMLINK_NOFOLLOW) < 0 &&
		    fstatat(a->pfd[1], out, &st, AT_SYMLINK_NOFOLLOW) < 0)
			return 0;
	}
	return -EEXIST;
}

static int do_keep_both(struct apply *a, const struct sb_pitem *it,
			const char *path, const char *name)
{
	char newname[256];
	int ret;

	if ((ret = sb_ap_unchanged(a->pfd[0], name, &it->s[0])) < 0 ||
	    (ret = sb_ap_unchanged(a->pfd[1], name, &it->s[1])) < 0)
		return ret;
	if ((ret = keep_name(a, name, it->s[1].info.mtime_ns, newname)) < 0)
		return ret;
	if (renameat2(a->pfd[1], name, a->pfd[1], newname, RENAME_NOREPLACE) < 0)
		return errno == EEXIST ? -EAGAIN : -errno;
	if (a->pid) {
		ret = sb_state_del(a->txn, a->pid, name, strlen(name));
		if (ret < 0 && ret != -ENOENT)
			return ret;
	}
	size_t plen = name - path;
	char *np = malloc(plen + strlen(newname) + 1);
	if (!np)
		return -ENOMEM;
	memcpy(np, path, plen);
	strcpy(np + plen, newname);
	ret = add_follow(a, path, strlen(path));
	if (ret == 0)
		ret = add_follow(a, np, strlen(np));
	free(np);
	return ret;
}

/* ------------------------------------------------------------ batches */

/* Whether path (len bytes) is dir or beneath it. */
static int beneath(const char *dir, const char *path, size_t len)
{
	size_t n = strlen(dir);
	return len >= n && !memcmp(path, dir, n) && (len == n || path[n] == '/');
}

static int keep_path(char **dst, const char *path, size_t len)
{
	free(*dst);
	*dst = strndup(path, len);
	return *dst ? 0 : -ENOMEM;
}

/*
 * After apply_item: an item left without its directory takes the real
 * cause (the failed mkdir's errno), and is reported only when its
 * directory has not been (*quiet). Returns its error, or -ENOMEM.
 */
static int missing_dir(struct apply *a, const struct sb_pitem *it, const char *path,
		       int err, int *quiet)
{
	*quiet = 0;
	if (err < 0 && err != -EAGAIN && it->op == SB_OP_COPY &&
	    it->s[!it->to].info.type == SB_DIR) {
		a->mkdir_err = err;
		if (keep_path(&a->mkdir_failed, path, it->len) < 0)
			return -ENOMEM;
	}
	if (err != -EAGAIN || !a->pgone)
		return err;
	if (a->mkdir_failed && beneath(a->mkdir_failed, path, it->len)) {
		*quiet = 1;	/* the directory's own failure said why */
		return a->mkdir_err;
	}
	*quiet = a->gone && beneath(a->gone, a->ppath, a->plen);
	if (!*quiet && keep_path(&a->gone, a->ppath, a->plen) < 0)
		return -ENOMEM;
	return err;
}

/* ------------------------------------------------------------ a side gone */

/* Whether item it reads, checks or writes side s (not only the state). */
static int touches(const struct sb_pitem *it, int s)
{
	switch (it->op) {
	case SB_OP_SKIP:
	case SB_OP_CONFLICT:
	case SB_OP_FORGET:
		return 0;
	case SB_OP_CLEANUP:
	case SB_OP_DELETE:
		return it->to == s;
	default:
		return 1;	/* copies, metadata, records, keep-both: both sides */
	}
}

/*
 * Side s stopped answering. Nothing more is tried there: each step would
 * fail on its own (or, after umount -l, write to a file system nobody can
 * see). What this batch did since its last commit is not recorded: its
 * data was never synced, and may never have landed, so the state must not
 * vouch for it; the next run finds each such path done (both sides alike,
 * recorded as in a first sync) or still to do. Steps on the side that is
 * left go on, but only those that do not read the gone one. Among them a
 * deletion carried from the gone side (it deleted the file, the present
 * side still has it as recorded) is still done: the plan came from a
 * complete scan (a scan that met a gone side is refused), so the deletion
 * was seen while that side answered, it is what the user did there, and
 * sb_ap_delete re-checks that the present copy is the one scanned, so no
 * version the user kept is lost. Leaving it would change nothing but
 * delay it to the next run.
 */
static int gone_side(struct apply *a, int s)
{
	a->side_gone = s + 1;
	close_parent(a);
	a->dirty[s] = 0;
	sb_txn_abort(a->txn);
	a->txn = NULL;
	a->res->done -= a->batch_done;
	a->res->conflicts -= a->batch_conflicts;
	a->res->left += a->batch_done + a->batch_conflicts;
	a->batch_done = a->batch_conflicts = 0;
	a->batch = 0;
	return sb_state_begin(a->p->state, 0, &a->txn);
}

/* Marks the first side whose root stopped answering; 0 or a state error.
 * err: what made us look (a write's EIO asks for the deep check). */
static int check_roots(struct apply *a, int err)
{
	a->since_check = 0;
	if (a->side_gone)
		return 0;
	for (int i = 0; i < 2; i++)
		if (sb_pship_root_alive(a->p, i, err == -EIO) < 0)
			return gone_side(a, i);
	return 0;
}

/* ------------------------------------------------------------ commits */

/* Data first, then the state that vouches for it: each file system that
 * was written is synced, once, before the commit. */
int sb_sync_written(struct sb_pship *p, const int dirty[2])
{
	for (int i = 0; i < 2; i++) {
		if (!dirty[i] || (i == 1 && p->same_fs && dirty[0]))
			continue;
		if (syncfs(p->rootfd[i]) < 0)
			return -errno;
	}
	return 0;
}

static int commit(struct apply *a, int reopen)
{
	int ret = check_roots(a, 0), gone = a->side_gone;
	if (ret == 0)
		ret = sb_sync_written(a->p, a->dirty);
	/* A side that went just before its syncfs: the other's batch only. */
	if (ret < 0 && ret != -ENOMEM && !gone && check_roots(a, ret) == 0 && a->side_gone)
		ret = sb_sync_written(a->p, a->dirty);
	a->dirty[0] = a->dirty[1] = 0;
	if (ret == 0)
		ret = sb_txn_commit(a->txn);
	else
		sb_txn_abort(a->txn);
	if (ret == 0)
		a->batch_done = a->batch_conflicts = 0;
	a->txn = NULL;
	a->batch = 0;
	a->batch_start = now_ns();
	if (ret == 0 && reopen)
		ret = sb_state_begin(a->p->state, 0, &a->txn);
	return ret;
}

/* *logsha gets the content hash an item carried over, if any. */
static int apply_item(struct apply *a, const struct sb_pitem *it, const char *path,
		      uint8_t sha[SB_SHA_LEN], int *logsha)
{
	const char *name;
	int ret, to = it->to;
	int create = 0;
	struct sb_fp tofp;

	if (it->op == SB_OP_SKIP)
		return 0;
	if ((it->op == SB_OP_COPY || it->op == SB_OP_UPDATE) && it->resolved)
		create = to + 1;	/* a kept conflict may need its parents back */
	if ((ret = open_parent(a, path, it->len, create, &name)) < 0)
		return ret;
	switch (it->op) {
	case SB_OP_CLEANUP:
		if (a->pfd[to] >= 0)
			unlinkat(a->pfd[to], name, 0);
		return 0;
	case SB_OP_COPY:
	case SB_OP_UPDATE:
		if ((ret = sb_ap_copy(a, it, name, sha, &tofp)) < 0)
			return ret;
		*logsha = it->s[!to].info.type == SB_FILE || it->s[!to].info.type == SB_LINK;
		return record(a, it, name, !to, it->s[!to].info.type == SB_DIR ? NULL : sha, 1,
			      &tofp);
	case SB_OP_META: {
		int from = !to;	/* an ACL set moves the mode: its xattrs come along */
		if ((ret = sb_ap_meta(a, it, name, &tofp)) < 0 ||
		    (it->s[from].info.type == SB_FILE &&
		     (ret = sb_ap_xattr_follow(a, it, name, &from, &tofp)) < 0))
			return ret;
		return record(a, it, name, !to, known_sha(it), 0,
			      it->s[!to].info.type == SB_FILE ? &tofp : NULL);
	}
	case SB_OP_RECORD: {
		int from = -1;
		if ((ret = sb_ap_unchanged(a->pfd[0], name, &it->s[0])) < 0 ||
		    (ret = sb_ap_unchanged(a->pfd[1], name, &it->s[1])) < 0 ||
		    (ret = sb_ap_xattr_follow(a, it, name, &from, &tofp)) < 0)
			return ret;
		return record(a, it, name, ret ? from : SB_SRC, known_sha(it), 0,
			      ret ? &tofp : NULL);
	}
	case SB_OP_DELETE:
		if ((ret = sb_ap_delete(a, it, name)) < 0)
			return ret;
		if (it->resolved && it->conflict.kind == SB_CK_UNDER_DELETED &&
		    (ret = follow_deleted_parent(a, path, it->len, !to)) < 0)
			return ret;
		/* fall through */
	case SB_OP_FORGET:
		if (a->pid && (it->flags & SB_IF_REC)) {
			ret = sb_state_del(a->txn, a->pid, name, strlen(name));
			return ret == -ENOENT ? 0 : ret;
		}
		return 0;
	case SB_OP_KEEP_BOTH:
		return do_keep_both(a, it, path, name);
	case SB_OP_CONFLICT:
		return sb_state_conflict_put(a->txn, path, it->len, &it->conflict);
	}
	return 0;
}

static void log_item(struct apply *a, const struct sb_pitem *it, const char *path,
		     int err, const uint8_t *sha)
{
	if (it->op == SB_OP_RECORD || it->op == SB_OP_FORGET || it->op == SB_OP_CLEANUP)
		return;
	if (err == 0 && it->op == SB_OP_SKIP)
		err = it->err;
	int from = !it->to;
	sb_log_op(a->p->log, a->p->id, action_names[it->op][it->to ? 1 : 0],
		  path, it->len, it->op == SB_OP_DELETE ? it->s[it->to].info.size
		  : it->s[from].info.size, sha, err);
}

int sb_plan_apply(struct sb_pship *p, struct sb_plan *plan,
		  const struct sb_hooks *hooks, int full,
		  struct sb_apply_result *res)
{
	struct apply a = { .p = p, .h = hooks, .res = res, .full = full,
			   .pfd = { -1, -1 } };
	struct sb_pitem it;
	const char *path;
	uint64_t n = 0, total = sb_plan_count(plan);
	int ret;

	memset(res, 0, sizeof(*res));
	p->gone = 0;
	a.pid_self = getpid();
	a.scan_ns = sb_plan_started(plan);
	for (int i = 0; i < 2; i++)
		sb_pship_fine(p, i);	/* probed before anything is written */
	a.euid = geteuid();
	a.egid = getegid();
	if (getrandom(&a.nonce, sizeof(a.nonce), 0) != sizeof(a.nonce))
		a.nonce = (uint64_t)now_ns();
	a.nonce &= 0xffffffff;
	if (!(a.buf = malloc(COPY_BUF))) {
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = sb_sha_new(&a.sha)) < 0 || (ret = sb_vrun_new(p, hooks, &a.vers)) < 0 ||
	    (ret = sb_plan_rewind(plan)) < 0 ||
	    (ret = sb_state_begin(p->state, 0, &a.txn)) < 0)
		goto out;
	a.batch_start = now_ns();
	if (full && (ret = sb_state_conflict_clear(a.txn)) < 0)
		goto out;
	while ((ret = sb_plan_next_raw(plan, &it, &path)) > 0) {
		uint8_t sha[SB_SHA_LEN];
		int logsha = 0, quiet;
		if (++a.since_check >= CHECK_EVERY && (ret = check_roots(&a, 0)) < 0)
			goto out;
		if (a.side_gone && touches(&it, a.side_gone - 1)) {
			res->left += it.op != SB_OP_CLEANUP;	/* not tried: one message at the end */
			continue;
		}
		a.pgone = 0;
		a.cur = path;
		a.curlen = it.len;
		int err = apply_item(&a, &it, path, sha, &logsha);
		/* A failure may be the first sign of a side gone: then it is
		 * no failure of this item's, which is left with the rest. */
		if (err < 0 && err != -ENOMEM && !a.side_gone) {
			if ((ret = check_roots(&a, err)) < 0)
				goto out;
			if (a.side_gone && touches(&it, a.side_gone - 1)) {
				res->left += it.op != SB_OP_CLEANUP;
				continue;
			}
		}
		int verr = sb_vrun_failed(a.vers);
		err = missing_dir(&a, &it, path, err, &quiet);
		if (it.op != SB_OP_RECORD && it.op != SB_OP_FORGET && it.op != SB_OP_CONFLICT &&
		    it.op != SB_OP_SKIP)
			a.dirty[it.op == SB_OP_KEEP_BOTH ? 1 : it.to] = 1;
		if (err == -ENOMEM) {
			ret = err;
			goto out;
		}
		if (!full && it.op != SB_OP_CONFLICT && it.op != SB_OP_SKIP &&
		    it.op != SB_OP_CLEANUP)
			sb_state_conflict_del(a.txn, path, it.len);
		if (it.op == SB_OP_SKIP) {
			res->skipped++;
		} else if (verr && err == verr) {
			/* Never lose a version: without its copy kept, no change. */
			res->skipped++;
			warn(&a, path, it.len, err, "not applied: the version it would replace or "
			     "delete could not be kept in " SB_VERSIONS_DIR);
		} else if (it.op == SB_OP_CONFLICT && err == 0) {
			res->conflicts++;
			a.batch_conflicts++;
		} else if (err == -EAGAIN && a.pgone) {
			res->skipped++;
			if (!quiet)
				warn(&a, a.ppath, a.plen, a.perr[a.pgone - 1], a.pgone == 1
				     ? "changed in the source since the scan; what is in it is left for the next run"
				     : "changed in the target since the scan; what is in it is left for the next run");
		} else if (err == -EAGAIN) {
			res->skipped++;
			warn(&a, path, it.len, err, "changed since the scan; left for the next run");
		} else if (err < 0 && quiet) {
			res->failed++;
		} else if (err < 0) {
			res->failed++;
			warn(&a, path, it.len, err, action_names[it.op < SB_OP_CLEANUP ? it.op : SB_OP_SKIP][it.to ? 1 : 0]);
		} else if (it.op != SB_OP_CLEANUP) {
			res->done++;
			a.batch_done++;
		}
		log_item(&a, &it, path, err, err == 0 && logsha ? sha : NULL);
		if (hooks && hooks->progress && (++n & 255) == 0)
			hooks->progress(hooks->arg, 1, n, total);
		/* A keep-both renamed a user's file: make the state agree at once,
		 * or a crash now would show the old name as deleted. */
		if (++a.batch >= BATCH_ITEMS || now_ns() - a.batch_start > BATCH_NS ||
		    (it.op == SB_OP_KEEP_BOTH && err == 0)) {
			close_parent(&a);
			if ((ret = commit(&a, 1)) < 0)
				goto out;
		}
	}
	if (ret < 0)
		goto out;
	close_parent(&a);
	ret = commit(&a, 0);
	if (ret == 0 && a.side_gone) {
		int s = a.side_gone - 1;
		res->gone = a.side_gone;
		res->gone_err = p->gone_err;
		/* One entry for the whole stop, in the operations' own format. */
		sb_log_op(p->log, p->id, s ? "target-gone" : "source-gone", "", 0, 0, NULL,
			  p->gone_err == SB_E_ROOT_MOVED ? -ENODEV : p->gone_err);
	}
	if (ret == 0 && a.nfollow && !a.side_gone) {
		/* Keep-both left two names, each on one side only: sync them. */
		struct sb_plan *sub = NULL;
		struct sb_apply_result r2;
		struct sb_hooks h2 = hooks ? *hooks : (struct sb_hooks){ 0 };
		h2.choose = NULL;
		memset(&r2, 0, sizeof(r2));
		ret = sb_plan_build(p, (const char *const *)a.follow, a.nfollow, &h2, &sub);
		if (ret == 0)
			ret = sb_plan_apply(p, sub, &h2, 0, &r2);
		sb_plan_free(sub);
		if (ret == SB_E_GONE) {	/* the kept names wait for the next run */
			r2.gone = p->gone;
			r2.gone_err = p->gone_err;
			r2.left = a.nfollow;
			ret = 0;
		}
		if (ret == 0) {
			res->done += r2.done;
			res->skipped += r2.skipped;
			res->failed += r2.failed;
			res->conflicts += r2.conflicts;
			res->left += r2.left;
			res->gone = r2.gone;
			res->gone_err = r2.gone_err;
		}
	}
out:
	close_parent(&a);
	sb_vrun_finish(a.vers);
	sb_txn_abort(a.txn);
	for (size_t i = 0; i < a.nfollow; i++)
		free(a.follow[i]);
	free(a.follow);
	free(a.mkdir_failed);
	free(a.gone);
	free(a.ppath);
	free(a.buf);
	sb_sha_free(a.sha);
	return ret;
}

/* ------------------------------------------------------------ conflicts */

static int collect(void *arg, const char *rel, size_t len, const struct sb_conflict *c)
{
	struct sb_conflict_list *l = arg;
	struct sb_conflict_entry *nv = realloc(l->v, (l->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	l->v = nv;
	if (!(nv[l->n].path = malloc(len + 1)))
		return -ENOMEM;
	memcpy(nv[l->n].path, rel, len);
	nv[l->n].path[len] = '\0';
	nv[l->n].len = len;
	nv[l->n].c = *c;
	l->n++;
	return 0;
}

static int cmp_entries(const void *x, const void *y)
{
	const struct sb_conflict_entry *a = x, *b = y;
	size_t n = a->len < b->len ? a->len : b->len;
	int c = memcmp(a->path, b->path, n);
	return c ? c : (a->len > b->len) - (a->len < b->len);
}

int sb_conflicts_list(struct sb_pship *p, struct sb_conflict_list *out)
{
	struct sb_txn *t = NULL;
	int ret;

	memset(out, 0, sizeof(*out));
	if ((ret = sb_state_begin(p->state, 1, &t)) < 0)
		return ret;
	ret = sb_state_conflict_each(t, collect, out);
	sb_txn_abort(t);
	if (ret < 0) {
		sb_conflicts_free(out);
		return ret;
	}
	if (out->n)
		qsort(out->v, out->n, sizeof(*out->v), cmp_entries);
	return 0;
}

void sb_conflicts_free(struct sb_conflict_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].path);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}