/*
 * The mount's recorder. Changes made through the mount are queued with
 * what the mount saw when it made them (struct known) and written to the
 * state by one thread, in order, in batches: one syncfs of both partners
 * and one LMDB commit for many changes. The state never vouches for data a
 * crash could still lose (the sync comes first), nor for a file on the
 * strength of a stat taken here, later than the change: a file's record
 * keeps the fingerprints taken where the change was made, and where the
 * mount knew too little the path is left to the next reconcile.
 *
 * Locking: mu protects the queue (head, tail), the counters and the flags;
 * the thread takes it only to take a batch or to report one done. Batches
 * are written without it, by this thread alone (and by close, after the
 * thread has stopped).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "recorder.h"

/* A batch gathers for this long, or this many operations. */
#define BATCH_WINDOW_S 1
#define BATCH_MAX 16384

struct rop {
	struct rop *next;
	int kind;		/* ROP_* */
	char *path, *path2;
	char *dpath;		/* refreshes: where the entry is on disk now, when a
				 * later rename moved it (path: where in history) */
	struct known k;
};

struct sb_recorder {
	struct sb_pship *p;
	pthread_mutex_t mu;
	pthread_cond_t cv, done_cv;
	struct rop *head, **tail;
	uint64_t queued, applied, failures;
	int stop, started, flushing;
	pthread_t thr;
};

/* path with prefix `from` (a whole component) gets `to` instead; NULL if not. */
static char *moved(const char *path, const char *from, const char *to)
{
	size_t fl = strlen(from);
	char *n = NULL;
	if (strncmp(path, from, fl) || (path[fl] && path[fl] != '/'))
		return NULL;
	if (asprintf(&n, "%s%s", to, path + fl) < 0)
		return NULL;
	return n;
}

/*
 * Refreshes that read the disk do so when the recorder gets to them, after
 * any later rename: those still waiting follow the entry to where it is.
 * Called with mu held.
 */
static void follow_rename(struct sb_recorder *rc, const struct rop *r)
{
	for (struct rop *q = rc->head; q; q = q->next) {
		if (q->kind != ROP_REFRESH && q->kind != ROP_META)
			continue;
		const char *cur = q->dpath ? q->dpath : q->path;
		char *n = moved(cur, r->path, r->path2);
		if (!n && r->kind == ROP_SWAP)
			n = moved(cur, r->path2, r->path);
		if (n) {
			free(q->dpath);
			q->dpath = n;
		}
	}
}

int sb_rec_enqueue(struct sb_recorder *rc, int kind, const char *path,
		   const char *path2, const struct known *k)
{
	struct rop *r = calloc(1, sizeof(*r));
	if (!r || !(r->path = strdup(path)) || (path2 && !(r->path2 = strdup(path2)))) {
		if (r)
			free(r->path);
		free(r);
		return -ENOMEM;
	}
	r->kind = kind;
	if (k)
		r->k = *k;
	pthread_mutex_lock(&rc->mu);
	if (kind == ROP_MOVE || kind == ROP_SWAP)
		follow_rename(rc, r);
	int was_empty = !rc->head;
	*rc->tail = r;
	rc->tail = &r->next;
	rc->queued++;
	if (was_empty)	/* later ones wait for the batch window */
		pthread_cond_signal(&rc->cv);
	pthread_mutex_unlock(&rc->mu);
	return 0;
}

static int parent_id(struct sb_txn *t, const char *rel, uint64_t *id, const char **base)
{
	const char *slash = strrchr(rel, '/');
	*base = slash ? slash + 1 : rel;
	return sb_state_dir_id(t, rel, slash ? (size_t)(slash - rel) : 0, id);
}

/*
 * K_POST: hashes the source's file at rel if both sides still have exactly
 * the fingerprints of the moment the mount's change ended (so the bytes
 * are still those both sides got). 1 with sha filled, 0 if not.
 */
static int hash_if_still(struct sb_pship *p, const char *rel, const struct known *k,
			 uint8_t sha[SB_SHA_LEN])
{
	int dfd, fd, ok = 0;
	const char *base;
	struct stat st;
	struct sb_fp fp;
	size_t len = strlen(rel);

	if (sb_stat_beneath(p->rootfd[1], rel, len, &st) < 0)
		return 0;
	sb_fp_from_stat(&fp, &st);
	if (!sb_fp_equal(&fp, &k->fp[1]) ||
	    sb_open_parent(p->rootfd[0], rel, len, 0, &dfd, &base) < 0)
		return 0;
	fd = openat(dfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	close(dfd);
	if (fd >= 0) {
		ok = sb_hash_stable(fd, &k->fp[0], sha) == 0;
		close(fd);
	}
	return ok;
}

/* Whether the inodes of fp[] are still those at rel on each side (not
 * unlinked or replaced since): a record for a name that is gone would only
 * be forgotten again by the next reconcile. */
static int still_there(struct sb_pship *p, const char *rel, const struct sb_fp fp[2])
{
	struct stat st;
	for (int i = 0; i < 2; i++)
		if (sb_stat_beneath(p->rootfd[i], rel, strlen(rel), &st) < 0 ||
		    st.st_ino != fp[i].ino || st.st_dev != fp[i].dev)
			return 0;
	return 1;
}

/*
 * K_POST, then changes of metadata only (K_SAME) to the same file, each
 * starting where the one before ended, renames included (a rename's
 * K_SAME is queued at the new name right after its move): the bytes are
 * those of the K_POST as long as both sides still match the last of them.
 * The fingerprints hash_if_still() must find, and in *at (malloc'd) where:
 * a recorder that lags behind a rename finds the file under its new name.
 */
static const struct sb_fp *chain_end(const struct rop *r, char **at)
{
	const struct sb_fp *cur = r->k.fp;
	char *name = strdup(r->path), *n;

	for (const struct rop *q = r->next; q && name; q = q->next) {
		if (q->kind == ROP_SWAP)
			break;
		if (q->kind == ROP_MOVE) {
			if (!strcmp(q->path2, name))
				break;		/* another entry renamed over it */
			if ((n = moved(name, q->path, q->path2))) {
				free(name);
				name = n;
			}
			continue;
		}
		if (strcmp(q->path, name))
			continue;
		if (q->kind != ROP_META || q->k.how != K_SAME || q->path2 ||
		    !sb_fp_equal(&q->k.pre[0], &cur[0]) || !sb_fp_equal(&q->k.pre[1], &cur[1]))
			break;
		cur = q->k.fp;
	}
	*at = name;
	return cur;
}

/*
 * Where rel is now if renames the recorder has not taken yet moved it:
 * a batch being written can find a name already renamed on disk, the move
 * queued behind it (malloc'd; NULL when none applies).
 */
static char *pending_name(struct sb_recorder *rc, const char *rel)
{
	char *cur = NULL, *n;

	pthread_mutex_lock(&rc->mu);
	for (const struct rop *q = rc->head; q; q = q->next) {
		if (q->kind != ROP_MOVE && q->kind != ROP_SWAP)
			continue;
		const char *at = cur ? cur : rel;
		if (!(n = moved(at, q->path, q->path2)) && q->kind == ROP_SWAP)
			n = moved(at, q->path2, q->path);
		if (n) {
			free(cur);
			cur = n;
		}
	}
	pthread_mutex_unlock(&rc->mu);
	return cur;
}

/*
 * A file the mount changed: recorded only from what it saw then. A K_SAME
 * with path2 (a new hard link) takes its content from path2's record.
 */
static int rec_file(struct sb_recorder *rc, struct sb_txn *t, const struct rop *r,
		    uint64_t pid, const char *base)
{
	const struct known *k = &r->k;
	struct sb_rec rec, old;
	const char *ob = base;
	uint64_t opid = pid;
	int have_old = (!r->path2 || parent_id(t, r->path2, &opid, &ob) == 0) &&
		       sb_state_get(t, opid, ob, strlen(ob), &old) == 0;
	struct known still = *k;
	const char *dp = r->dpath ? r->dpath : r->path;

	if (!still_there(rc->p, dp, k->fp)) {
		/* Renamed on disk, its move not yet taken: what the record says
		 * of the bytes holds there (K_POST, which reads them, waits). */
		char *now = k->how == K_POST ? NULL : pending_name(rc, dp);
		int there = now && still_there(rc->p, now, k->fp);
		free(now);
		if (!there)
			return 0;
	}

	memset(&rec, 0, sizeof(rec));
	rec.type = SB_FILE;
	rec.mode = k->mode;
	rec.size = k->fp[0].size;
	rec.mtime_ns = k->mtime_ns;
	if (k->fp[0].size != k->fp[1].size)
		return 0;
	switch (k->how) {
	case K_SHA:
		memcpy(rec.sha, k->sha, SB_SHA_LEN);
		break;
	case K_SAME:
		/* The record must describe exactly what both sides held before. */
		if (!have_old || old.type != SB_FILE || old.size != rec.size ||
		    !sb_fp_equal(&old.fp[0], &k->pre[0]) || !sb_fp_equal(&old.fp[1], &k->pre[1]))
			return 0;
		memcpy(rec.sha, old.sha, SB_SHA_LEN);
		break;
	case K_POST: {
		char *at = NULL;
		memcpy(still.fp, chain_end(r, &at), sizeof(still.fp));
		/* moved or changed since: the next reconcile looks */
		int ok = at && !strcmp(at, r->dpath ? r->dpath : r->path) &&
			 hash_if_still(rc->p, at, &still, rec.sha);
		free(at);
		if (!ok)
			return 0;
		break;
	}
	default:
		return 0;
	}
	for (int i = 0; i < 2; i++) {
		rec.fp[i] = k->fp[i];
		sb_fp_settle(&rec.fp[i], sb_pship_fine(rc->p, i), k->before_ns);
	}
	int ret = sb_state_put(t, pid, base, strlen(base), &rec);
	if (ret == 0)
		ret = sb_state_conflict_del(t, r->path, strlen(r->path));
	return ret == -ENOENT ? 0 : ret;
}

/*
 * Directories, symlinks and special files: what both sides hold now, if
 * they agree on its kind. None can change content in place (a directory's
 * fingerprint is never compared, a symlink is replaced whole, with a new
 * inode, a special file has none), so a
 * stat taken now is as good as one taken then. A file never gets here.
 */
static int rec_entry(struct sb_recorder *rc, struct sb_txn *t, const struct rop *r,
		     uint64_t pid, const char *base)
{
	const char *dp = r->dpath ? r->dpath : r->path;
	struct stat st[2];
	struct sb_rec rec, old;

	for (int i = 0; i < 2; i++)
		if (sb_stat_beneath(rc->p->rootfd[i], dp, strlen(dp), &st[i]) < 0)
			return 0;
	memset(&rec, 0, sizeof(rec));
	rec.type = sb_type_of_mode(st[0].st_mode);
	rec.size = sb_size_of_stat(&st[0]);
	if (rec.type != sb_type_of_mode(st[1].st_mode) ||
	    rec.type == SB_FILE || rec.type == SB_OTHER ||
	    (rec.type != SB_DIR && rec.size != sb_size_of_stat(&st[1])))
		return 0;
	rec.mode = st[0].st_mode & 07777;
	rec.mtime_ns = (int64_t)st[0].st_mtim.tv_sec * 1000000000 + st[0].st_mtim.tv_nsec;
	sb_fp_from_stat(&rec.fp[0], &st[0]);
	sb_fp_from_stat(&rec.fp[1], &st[1]);
	if (rec.type == SB_LINK) {
		char target[4096];
		int dfd;
		const char *b;
		if (sb_open_parent(rc->p->rootfd[0], dp, strlen(dp), 0, &dfd, &b) < 0)
			return 0;
		ssize_t n = readlinkat(dfd, b, target, sizeof(target));
		close(dfd);
		if (n < 0 || (uint64_t)n != rec.size || sb_hash_buf(target, n, rec.sha) < 0)
			return 0;
	} else if (sb_state_get(t, pid, base, strlen(base), &old) == 0 && old.type == SB_DIR) {
		rec.dir_id = old.dir_id;
	}
	int ret = sb_state_put(t, pid, base, strlen(base), &rec);
	if (ret == 0)
		ret = sb_state_conflict_del(t, r->path, strlen(r->path));
	return ret == -ENOENT ? 0 : ret;
}

static int rec_apply(struct sb_recorder *rc, struct sb_txn *t, const struct rop *r)
{
	const char *base, *base2;
	uint64_t pid, pid2;
	int ret;

	switch (r->kind) {
	case ROP_REFRESH:
	case ROP_META:
		if (!*r->path)
			return 0;
		if ((ret = parent_id(t, r->path, &pid, &base)) < 0)
			return ret == -ENOENT ? 0 : ret;	/* parent not synced yet */
		return r->k.how != K_NONE ? rec_file(rc, t, r, pid, base)
			: rec_entry(rc, t, r, pid, base);
	case ROP_SWAP:
		if ((ret = parent_id(t, r->path, &pid, &base)) < 0 ||
		    (ret = parent_id(t, r->path2, &pid2, &base2)) < 0)
			return ret == -ENOENT ? 0 : ret;
		return sb_state_swap(t, pid, base, strlen(base), pid2, base2, strlen(base2));
	case ROP_DEL:
		if ((ret = parent_id(t, r->path, &pid, &base)) < 0)
			return ret == -ENOENT ? 0 : ret;
		ret = sb_state_del(t, pid, base, strlen(base));
		return ret == -ENOENT ? 0 : ret;
	case ROP_MOVE:
		if ((ret = parent_id(t, r->path, &pid, &base)) < 0 ||
		    (ret = parent_id(t, r->path2, &pid2, &base2)) < 0)
			return ret == -ENOENT ? 0 : ret;
		ret = sb_state_move(t, pid, base, strlen(base), pid2, base2, strlen(base2));
		return ret == -ENOENT ? 0 : ret;
	}
	return 0;
}

static void rop_free(struct rop *r)
{
	free(r->dpath);
	free(r->path);
	free(r->path2);
	free(r);
}

/*
 * Writes one batch; returns how many operations it took. A batch that
 * cannot be made safe (a partner's sync failed) or written (a full map, an
 * I/O error) is not committed at all: the state keeps the records of
 * before, whose fingerprints no longer match, so the next reconcile looks
 * at those paths. Each path is logged with the cause.
 */
static uint64_t rec_batch(struct sb_recorder *rc)
{
	static const int both[2] = { 1, 1 };
	struct sb_txn *t = NULL;
	uint64_t n = 0;

	pthread_mutex_lock(&rc->mu);
	struct rop *list = rc->head;
	rc->head = NULL;
	rc->tail = &rc->head;
	pthread_mutex_unlock(&rc->mu);
	if (!list)
		return 0;
	int ret = sb_sync_written(rc->p, both);
	if (ret == 0)
		ret = sb_state_begin(rc->p->state, 0, &t);
	/* In order, as it happened; a refresh writes the record where the
	 * history has it, for later renames to move. */
	for (struct rop *r = list; r && ret == 0; r = r->next)
		ret = rec_apply(rc, t, r);
	if (ret == 0) {
		ret = sb_txn_commit(t);
		t = NULL;
	}
	sb_txn_abort(t);
	if (ret < 0) {
		pthread_mutex_lock(&rc->mu);
		rc->failures++;
		pthread_mutex_unlock(&rc->mu);
	}
	for (struct rop *r = list, *next; r; r = next) {
		next = r->next;
		if (ret < 0)
			sb_log_op(rc->p->log, rc->p->id, "record", r->path, strlen(r->path),
				  r->k.fp[0].size, NULL, ret);
		rop_free(r);
		n++;
	}
	return n;
}

static void *recorder(void *arg)
{
	struct sb_recorder *rc = arg;
	for (;;) {
		pthread_mutex_lock(&rc->mu);
		while (!rc->head && !rc->stop)
			pthread_cond_wait(&rc->cv, &rc->mu);
		int stop = rc->stop && !rc->head;
		/* Gather a batch. A flush (reconcile, unmount) does not wait
		 * for the window. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += BATCH_WINDOW_S;
		while (!rc->stop && !rc->flushing && rc->queued - rc->applied < BATCH_MAX &&
		       pthread_cond_timedwait(&rc->cv, &rc->mu, &ts) == 0)
			;
		pthread_mutex_unlock(&rc->mu);
		if (stop)
			break;
		uint64_t n = rec_batch(rc);
		pthread_mutex_lock(&rc->mu);
		rc->applied += n;
		pthread_cond_broadcast(&rc->done_cv);
		pthread_mutex_unlock(&rc->mu);
	}
	return NULL;
}

void sb_rec_flush(struct sb_recorder *rc)
{
	pthread_mutex_lock(&rc->mu);
	uint64_t want = rc->queued;
	rc->flushing++;
	pthread_cond_signal(&rc->cv);
	while (rc->applied < want)
		pthread_cond_wait(&rc->done_cv, &rc->mu);
	rc->flushing--;
	pthread_mutex_unlock(&rc->mu);
}

uint64_t sb_rec_failures(struct sb_recorder *rc)
{
	pthread_mutex_lock(&rc->mu);
	uint64_t n = rc->failures;
	pthread_mutex_unlock(&rc->mu);
	return n;
}

int sb_rec_open(struct sb_pship *p, struct sb_recorder **out)
{
	struct sb_recorder *rc = calloc(1, sizeof(*rc));
	int ret;

	*out = NULL;
	if (!rc)
		return -ENOMEM;
	rc->p = p;
	rc->tail = &rc->head;
	pthread_mutex_init(&rc->mu, NULL);
	pthread_cond_init(&rc->cv, NULL);
	pthread_cond_init(&rc->done_cv, NULL);
	/* Probed now, before the thread and the mount's requests read them. */
	for (int i = 0; i < 2; i++)
		sb_pship_fine(p, i);
	if ((ret = -pthread_create(&rc->thr, NULL, recorder, rc)) < 0) {
		sb_rec_close(rc);
		return ret;
	}
	rc->started = 1;
	*out = rc;
	return 0;
}

void sb_rec_close(struct sb_recorder *rc)
{
	if (!rc)
		return;
	if (rc->started) {
		pthread_mutex_lock(&rc->mu);
		rc->stop = 1;
		pthread_cond_signal(&rc->cv);
		pthread_mutex_unlock(&rc->mu);
		pthread_join(rc->thr, NULL);
	}
	while (rc->head)
		rc->applied += rec_batch(rc);
	pthread_mutex_destroy(&rc->mu);
	pthread_cond_destroy(&rc->cv);
	pthread_cond_destroy(&rc->done_cv);
	free(rc);
}
