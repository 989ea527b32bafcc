/*
 * Open files of the view: both sides' descriptors, written in step (the
 * target's half of a large write by a writer thread), hashed while written
 * in order, and recorded at each flush with the fingerprints taken there.
 * The journal lists the files open for writing, for a crash. And what the
 * mount saw around a change of metadata, which open files follow.
 */

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "mirror_int.h"

/* One side's half of a write, done by a writer thread. */
struct wjob {
	struct wjob *next;
	int fd, ret, done;
	const void *buf;
	size_t size;
	int64_t off;
};

static void note_change(struct sb_file *f);
static int file_record(struct sb_file *f);

void *sb_mi_writer(void *arg)
{
	struct sb_mirror *m = arg;
	pthread_mutex_lock(&m->wmu);
	for (;;) {
		while (!m->whead && !m->wstop)
			pthread_cond_wait(&m->wcv, &m->wmu);
		if (!m->whead)
			break;
		struct wjob *j = m->whead;
		if (!(m->whead = j->next))
			m->wtail = &m->whead;
		pthread_mutex_unlock(&m->wmu);
		int ret = sb_pwrite_all(j->fd, j->buf, j->size, j->off);
		pthread_mutex_lock(&m->wmu);
		j->ret = ret;
		j->done = 1;
		pthread_cond_broadcast(&m->wdone);
	}
	pthread_mutex_unlock(&m->wmu);
	return NULL;
}

static void wjob_submit(struct sb_mirror *m, struct wjob *j)
{
	pthread_mutex_lock(&m->wmu);
	j->next = NULL;
	*m->wtail = j;
	m->wtail = &j->next;
	pthread_cond_signal(&m->wcv);
	pthread_mutex_unlock(&m->wmu);
}

static int wjob_wait(struct sb_mirror *m, struct wjob *j)
{
	pthread_mutex_lock(&m->wmu);
	while (!j->done)
		pthread_cond_wait(&m->wdone, &m->wmu);
	pthread_mutex_unlock(&m->wmu);
	return j->ret;
}

/* ------------------------------------------------------------ what the mount saw */

/* Both sides' stats of rel; 0 only when both are regular files. */
int sb_mi_stat_files(struct sb_mirror *m, const char *rel, struct stat st[2])
{
	for (int i = 0; i < 2; i++)
		if (!*rel || sb_stat_beneath(m->p->rootfd[i], rel, strlen(rel), &st[i]) < 0 ||
		    !S_ISREG(st[i].st_mode))
			return -1;
	return 0;
}

/*
 * After a change of metadata only (mode, owner, times, xattrs, a rename or
 * link), made on both sides just after the stats pre[]: what the state may
 * learn (K_SAME). The stats taken now must show the same content on each
 * side: the same size and the mtime as before, or as the change set it
 * (*mt, unless NULL or UTIME_OMIT). A write landing in between is stamped
 * with its own time, and then nothing is learnt (K_NONE).
 */
void sb_mi_seen_meta(struct sb_mirror *m, const char *rel, const struct stat pre[2],
		      const struct timespec *mt, struct known *k)
{
	struct stat st[2];

	memset(k, 0, sizeof(*k));
	k->before_ns = sb_wall_ns();
	if (sb_mi_stat_files(m, rel, st) < 0)
		return;
	for (int i = 0; i < 2; i++) {
		int64_t want = mt && mt->tv_nsec != UTIME_OMIT ? sb_mi_ts_ns(mt)
			: sb_mi_ts_ns(&pre[i].st_mtim);
		if (st[i].st_size != pre[i].st_size || st[i].st_ino != pre[i].st_ino ||
		    sb_mi_ts_ns(&st[i].st_mtim) != want)
			return;
		sb_fp_from_stat(&k->pre[i], &pre[i]);
		sb_fp_from_stat(&k->fp[i], &st[i]);
	}
	k->how = K_SAME;
	k->mode = st[0].st_mode & 07777;
	k->mtime_ns = sb_mi_ts_ns(&st[0].st_mtim);
}

/*
 * Handles open for writing on rel take the mount's own change of metadata
 * as theirs (so their flush still records the file), if they had seen
 * everything before it; otherwise someone else changed the file too.
 */
void sb_mi_files_follow(struct sb_mirror *m, const char *rel, const struct known *k)
{
	pthread_mutex_lock(&m->files_mu);
	for (struct sb_file *f = m->files; f; f = f->next) {
		if (strcmp(f->rel, rel))
			continue;
		pthread_mutex_lock(&f->lock);
		if (f->last[0].ino || f->last[1].ino) {
			for (int i = 0; i < 2; i++) {
				if (f->fd[i] < 0)
					continue;
				if (k->how == K_SAME && sb_fp_equal(&f->last[i], &k->pre[i]))
					f->last[i] = k->fp[i];
				else
					f->foreign = 1;
			}
		}
		pthread_mutex_unlock(&f->lock);
	}
	pthread_mutex_unlock(&m->files_mu);
}

/* Open files follow a rename, so their state update lands on the new name. */
void sb_mi_files_renamed(struct sb_mirror *m, const char *from, const char *to)
{
	size_t fl = strlen(from);
	pthread_mutex_lock(&m->files_mu);
	for (struct sb_file *f = m->files; f; f = f->next) {
		if (strncmp(f->rel, from, fl) || (f->rel[fl] && f->rel[fl] != '/'))
			continue;
		char *n = NULL;
		if (asprintf(&n, "%s%s", to, f->rel + fl) >= 0) {
			free(f->rel);
			f->rel = n;
		}
	}
	pthread_mutex_unlock(&m->files_mu);
}

/* ------------------------------------------------------------ files */

/* Rewritten past this size, with only the files open then. */
#define JOURNAL_REWRITE (1L << 20)

/*
 * Notes that a file was opened for writing or closed. Called with
 * files_mu held, so that the files listed in m->files with a jrel are
 * exactly those whose 'W' record is not yet matched by a 'C'.
 */
static long journal_note(struct sb_mirror *m, char what, const char *rel)
{
	long ret = sb_journal_note(m->journal, what, rel);
	if (ret > 0)
		m->jbytes += ret;
	if (m->jbytes < JOURNAL_REWRITE)
		return ret;
	size_t n = 0;
	for (struct sb_file *o = m->files; o; o = o->next)
		n += o->jrel != NULL;
	const char **v = malloc((n + 1) * sizeof(*v));
	if (v) {
		n = 0;
		for (struct sb_file *o = m->files; o; o = o->next)
			if (o->jrel)
				v[n++] = o->jrel;
		long r = sb_journal_rewrite(m->p, m->journal, v, n);
		/* on failure, tried again after as many bytes more */
		m->jbytes = r >= 0 ? r : 0;
		free(v);
	}
	return ret;
}

static void file_free(struct sb_file *f)
{
	if (!f)
		return;
	if (f->pprev) {
		pthread_mutex_lock(&f->m->files_mu);
		*f->pprev = f->next;
		if (f->next)
			f->next->pprev = f->pprev;
		if (f->jrel)
			journal_note(f->m, 'C', f->jrel);
		pthread_mutex_unlock(&f->m->files_mu);
	}
	for (int i = 0; i < 2; i++)
		if (f->fd[i] >= 0)
			close(f->fd[i]);
	sb_sha_free(f->sha);
	free(f->jrel);
	free(f->rel);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

/*
 * Opens base on one side; *existed says whether it was there before, so
 * that only what this call made is owned by the caller or undone. An
 * O_EXCL attempt first spares a stat in the usual case, a new file.
 */
static int open_side(int dfd, const char *base, int flags, unsigned mode, int create,
		     int *existed)
{
	flags |= O_NOFOLLOW | O_CLOEXEC;
	*existed = 1;
	if (!create) {
		int fd = openat(dfd, base, flags, mode);
		return fd >= 0 ? fd : -errno;
	}
	for (int tries = 0; tries < 3; tries++) {
		int fd = openat(dfd, base, flags | O_CREAT | O_EXCL, mode);
		if (fd >= 0) {
			*existed = 0;
			return fd;
		}
		if (errno != EEXIST || (flags & O_EXCL))
			return -errno;
		fd = openat(dfd, base, flags & ~O_CREAT, mode);
		if (fd >= 0 || errno != ENOENT)
			return fd >= 0 ? fd : -errno;
		/* removed in between: create it after all */
	}
	return -EEXIST;
}

static int sb_file_open_impl(struct sb_mirror *m, const char *path, int flags, int create,
		 unsigned mode, unsigned uid, unsigned gid, struct sb_file **out)
{
	struct sb_file *f = calloc(1, sizeof(*f));
	int side, ret, existed[2] = { 0, 0 };

	*out = NULL;
	if (!f)
		return -ENOMEM;
	f->m = m;
	f->fd[0] = f->fd[1] = -1;
	f->seq = 1;
	pthread_mutex_init(&f->lock, NULL);
	if ((ret = sb_mi_map(m, path, &f->rel, &side)) < 0)
		goto out;
	if ((ret = sb_sha_new(&f->sha)) < 0)
		goto out;
	/* FUSE's buffers are not aligned for O_DIRECT; the kernel already
	 * bypasses the cache on the mount's side. */
	flags &= ~(O_DIRECT | O_NOCTTY | O_NOFOLLOW);
	if (!create)
		flags &= ~(O_CREAT | O_EXCL);
	/* Nothing is emptied before both sides are open: a target that is
	 * down (EIO) or read-only must not cost the source its content. */
	int trunc = flags & O_TRUNC;
	flags &= ~O_TRUNC;
	for (int i = 0; i < 2; i++) {
		int dfd;
		const char *base;
		if (side >= 0 && i != side)
			continue;
		ret = sb_mi_side_parent(m, i, f->rel, create, &dfd, &base);
		if (ret == -ENOENT && !create)
			continue;
		if (ret < 0)
			goto out;
		if (create && (ret = sb_mi_fold_clash(m, i, dfd, base, f->rel)) < 0) {
			close(dfd);
			goto out;
		}
		if (!create && i == SB_TGT && f->fd[0] < 0 &&
		    (sb_pship_caps(m->p, i)->flags & SB_CAP_FOLD) && sb_fold_alias(dfd, base)) {
			close(dfd);
			continue;
		}
		ret = open_side(dfd, base, flags, mode, create, &existed[i]);
		if (ret == -ENOENT && !create) {
			close(dfd);
			continue;
		}
		f->fd[i] = ret < 0 ? -1 : ret;
		ret = ret < 0 ? ret : 0;
		if (ret == 0 && create && !existed[i]) {
			struct creds c = { uid, gid, mode, NULL, 0 };
			sb_mi_own(dfd, base, &c);
		}
		close(dfd);
		if (ret < 0)
			goto out;
	}
	if (f->fd[0] < 0 && f->fd[1] < 0) {
		ret = -ENOENT;
		goto out;
	}
	for (int i = 0; trunc && i < 2; i++) {
		if (f->fd[i] >= 0 && ftruncate(f->fd[i], 0) < 0) {
			ret = -errno;
			goto out;
		}
	}
	flags |= trunc;
	if ((flags & O_ACCMODE) != O_RDONLY) {
		pthread_mutex_lock(&f->lock);
		note_change(f);		/* the baseline a flush compares with */
		f->changed = create || (flags & O_TRUNC);
		pthread_mutex_unlock(&f->lock);
	}
	if (create && !existed[0] && !existed[1] && !(mode & (S_ISUID | S_ISGID))) {
		f->plain = 1;
		f->plain_gen = __atomic_load_n(&m->mode_gen, __ATOMIC_RELAXED);
	}
	/* Two handles on one file: neither's running hash tells the content. */
	pthread_mutex_lock(&m->files_mu);
	for (struct sb_file *o = m->files; o; o = o->next) {
		if (!strcmp(o->rel, f->rel)) {
			pthread_mutex_lock(&o->lock);
			o->seq = 0;
			pthread_mutex_unlock(&o->lock);
			f->seq = 0;
		}
	}
	f->next = m->files;
	if (m->files)
		m->files->pprev = &f->next;
	f->pprev = &m->files;
	m->files = f;
	if ((flags & O_ACCMODE) != O_RDONLY && f->fd[0] >= 0 && f->fd[1] >= 0 &&
	    m->journal >= 0 && (f->jrel = strdup(f->rel)) &&
	    journal_note(m, 'W', f->jrel) < 0) {
		free(f->jrel);
		f->jrel = NULL;
	}
	pthread_mutex_unlock(&m->files_mu);
	ret = 0;
out:
	if (ret < 0) {
		for (int i = 0; i < 2; i++) {
			if (f->fd[i] >= 0 && create && !existed[i] && f->rel) {
				int dfd;
				const char *base;
				if (sb_mi_side_parent(m, i, f->rel, 0, &dfd, &base) == 0) {
					unlinkat(dfd, base, 0);
					close(dfd);
				}
			}
		}
		file_free(f);
		return ret;
	}
	*out = f;
	return 0;
}

static long sb_file_read_impl(struct sb_file *f, void *buf, size_t size, int64_t off)
{
	int fd = f->fd[0] >= 0 ? f->fd[0] : f->fd[1];
	ssize_t n = pread(fd, buf, size, off);
	return n < 0 ? -errno : n;
}

/* Large writes: the target's half runs on a writer thread meanwhile. */
#define PARALLEL_WRITE (128 * 1024)

static long sb_file_write_impl(struct sb_file *f, const void *buf, size_t size, int64_t off)
{
	struct sb_mirror *m = f->m;
	struct wjob j = { .fd = f->fd[1], .buf = buf, .size = size, .off = off };
	int ret = 0, par = f->fd[0] >= 0 && f->fd[1] >= 0 && size >= PARALLEL_WRITE && m->nwthr;

	pthread_mutex_lock(&f->lock);
	int bad = -1;	/* the side that refused, for the log */
	if (par)
		wjob_submit(m, &j);
	for (int i = 0; i < (par ? 1 : 2) && ret == 0; i++)
		if (f->fd[i] >= 0 && (ret = sb_pwrite_all(f->fd[i], buf, size, off)) < 0)
			bad = i;
	if (ret == 0 && f->seq && (uint64_t)off == f->hoff) {
		/* Hashed while written, as long as the writes come in order. */
		sb_sha_update(f->sha, buf, size);
		f->hoff += size;
	} else {
		f->seq = 0;
	}
	if (par) {
		int r = wjob_wait(m, &j);	/* buf must outlive the job */
		if (ret == 0 && (ret = r) < 0)
			bad = SB_TGT;
	}
	if (ret < 0 && bad >= 0 && !f->failed && f->fd[!bad] >= 0)
		sb_mi_log_oneside(m, "write", f->rel, bad, ret);	/* once per open */
	if (ret < 0 && !f->foreign) {
		/* Failed on a side (a full disk): what it appended on either
		 * side is taken back, so both end as the caller was told. */
		for (int i = 0; i < 2; i++)
			if (f->fd[i] >= 0 && (uint64_t)off + size > f->last[i].size)
				(void)!ftruncate(f->fd[i], f->last[i].size);
	}
	note_change(f);
	if (ret < 0)
		f->failed = 1;
	pthread_mutex_unlock(&f->lock);
	return ret < 0 ? ret : (ssize_t)size;
}

static int sb_file_truncate_impl(struct sb_file *f, int64_t size)
{
	int ret = 0;
	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < 2 && ret == 0; i++)
		if (f->fd[i] >= 0 && ftruncate(f->fd[i], size) < 0)
			ret = -errno;
	note_change(f);
	if (ret < 0)
		f->failed = 1;
	if (size == 0) {
		sb_sha_reset(f->sha);
		f->hoff = 0;
		f->seq = 1;
	} else if ((uint64_t)size != f->hoff) {
		f->seq = 0;
	}
	pthread_mutex_unlock(&f->lock);
	return ret;
}

/* Side a did mode over [off, off + len), b refused: a is put back from b,
 * which still holds what both held. An insert is collapsed again; a
 * collapsed, punched or zeroed range is refilled from b (holes stay holes,
 * a collapse first inserted again); a size that grew is cut back. */
static int fallocate_undo(int a, int b, int mode, int64_t off, int64_t len)
{
	struct stat st;
	long ret = 0;
	if (mode & FALLOC_FL_INSERT_RANGE)
		return fallocate(a, FALLOC_FL_COLLAPSE_RANGE, off, len) < 0 ? -errno : 0;
	if ((mode & FALLOC_FL_COLLAPSE_RANGE) && fallocate(a, FALLOC_FL_INSERT_RANGE, off, len) < 0)
		return -errno;
	if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		ret = sb_copy_range_holes(b, off, a, off, (size_t)len);
	if (ret >= 0 && (fstat(b, &st) < 0 || ftruncate(a, st.st_size) < 0))
		ret = -errno;
	return ret < 0 ? (int)ret : 0;
}

/*
 * Every mode to both sides, the target first: the partner more likely to
 * refuse one (exFAT, a FUSE driver; btrfs and tmpfs take no insert or
 * collapse), so the usual refusal comes before anything changed. No call
 * tells beforehand whether a mode would be taken. Should the source refuse
 * after, the target is put back from the source's bytes: exact for every
 * mode, a collapse too, if both held the same (same size, nobody else's
 * change seen). The running hash cannot follow: hashed again after close.
 */
static int sb_file_fallocate_impl(struct sb_file *f, int mode, int64_t off, int64_t len)
{
	int ret = 0, done = -1;
	struct stat pre[2];
	pthread_mutex_lock(&f->lock);
	int both = f->fd[0] >= 0 && f->fd[1] >= 0 && !f->foreign &&
		   fstat(f->fd[0], &pre[0]) == 0 && fstat(f->fd[1], &pre[1]) == 0 &&
		   pre[0].st_size == pre[1].st_size;
	for (int i = SB_TGT; i >= SB_SRC && ret == 0; i--) {
		if (f->fd[i] >= 0 && (ret = fallocate(f->fd[i], mode, off, len) < 0 ? -errno : 0) == 0)
			done = done < 0 ? i : done;
	}
	if (ret < 0 && both && done >= 0 && fallocate_undo(f->fd[done], f->fd[!done], mode, off, len))
		f->foreign = 1;	/* the sides now differ: record nothing */
	note_change(f);
	f->seq = 0;
	if (ret < 0)
		f->failed = 1;
	pthread_mutex_unlock(&f->lock);
	return ret;
}

/* The view's attributes of an open file: those of the side it reads. */
static int sb_file_getattr_impl(struct sb_file *f, struct stat *st)
{
	int side = f->fd[SB_SRC] >= 0 ? SB_SRC : SB_TGT;
	if (fstat(f->fd[side], st) < 0)
		return -errno;
	st->st_ino = SB_VIEW_INO(st->st_ino, side);
	return 0;
}

/*
 * In the kernel, on both sides, from what `in` reads: no data through the
 * daemon, and a reflink where the file system can. The running hash cannot
 * follow, so the file is hashed again after close.
 */
static long sb_file_copy_range_impl(struct sb_file *in, int64_t off_in, struct sb_file *out,
				    int64_t off_out, size_t len)
{
	int ifd = in->fd[SB_SRC] >= 0 ? in->fd[SB_SRC] : in->fd[SB_TGT];
	long n = -1, ret = 0;

	if (in == out)
		pthread_mutex_lock(&out->lock);
	else if (in < out) {
		pthread_mutex_lock(&in->lock);
		pthread_mutex_lock(&out->lock);
	} else {
		pthread_mutex_lock(&out->lock);
		pthread_mutex_lock(&in->lock);
	}
	for (int i = 0; i < 2 && ret >= 0; i++) {
		if (out->fd[i] < 0)
			continue;
		/* The second side gets exactly what the first got. */
		long got = sb_copy_range_holes(ifd, off_in, out->fd[i], off_out, n < 0 ? len : (size_t)n);
		if (got < 0)
			ret = got;
		else if (n >= 0 && got != n)
			ret = -EIO;	/* the input changed under the copy */
		else
			n = got;
	}
	note_change(out);
	out->seq = 0;
	if (ret < 0)
		out->failed = 1;
	if (in != out)
		pthread_mutex_unlock(&in->lock);
	pthread_mutex_unlock(&out->lock);
	return ret < 0 ? ret : n;
}

int sb_file_flush(struct sb_file *f)
{
	SHARED(f->m);
	int ret = file_record(f);
	UNSHARED(f->m);
	return ret;
}

int sb_file_fsync(struct sb_file *f, int datasync)
{
	for (int i = 0; i < 2; i++)
		if (f->fd[i] >= 0 && (datasync ? fdatasync(f->fd[i]) : fsync(f->fd[i])) < 0)
			return -errno;
	return 0;
}

/*
 * Called with f->lock held after each change this handle makes: the
 * fingerprints a flush compares with, to tell its own changes from others'.
 */
static void note_change(struct sb_file *f)
{
	struct stat st;
	for (int i = 0; i < 2; i++) {
		if (f->fd[i] < 0)
			continue;
		if (fstat(f->fd[i], &st) < 0)
			f->foreign = 1;	/* cannot tell: record nothing */
		else
			sb_fp_from_stat(&f->last[i], &st);
	}
	f->changed = 1;
}

/*
 * At each flush (close(2) waits for it, so it comes before anything the
 * closer does next) and at release: both sides get the source's mtime, as
 * a copy would, and f->seen the fingerprints a record may keep. Each side
 * must still be exactly as this handle's last change left it; a write by
 * anyone else since would otherwise be recorded as ours, and the target's
 * mtime set here would hide it. Called with f->lock held.
 */
static void file_settle(struct sb_file *f)
{
	struct stat st[2];
	struct sb_fp now[2];

	if (!f->changed || f->foreign || f->failed || f->fd[0] < 0 || f->fd[1] < 0)
		return;
	f->changed = 0;
	f->seen.how = K_NONE;
	int64_t before = sb_wall_ns();
	for (int i = 0; i < 2; i++) {
		if (fstat(f->fd[i], &st[i]) < 0)
			goto foreign;
		sb_fp_from_stat(&now[i], &st[i]);
		if (!sb_fp_equal(&now[i], &f->last[i]))
			goto foreign;
	}
	struct timespec t[2] = { st[0].st_atim, st[0].st_mtim };
	if (futimens(f->fd[1], t) < 0 || fstat(f->fd[1], &st[1]) < 0)
		goto foreign;
	sb_fp_from_stat(&f->last[1], &st[1]);
	f->seen.how = K_POST;
	f->seen.fp[0] = now[0];
	f->seen.fp[1] = f->last[1];
	f->seen.before_ns = before;
	f->seen.mode = st[0].st_mode & 07777;
	f->seen.mtime_ns = (int64_t)st[0].st_mtim.tv_sec * 1000000000 + st[0].st_mtim.tv_nsec;
	return;
foreign:
	f->foreign = 1;
}

/*
 * Settles f and queues its record. At a flush, so that the record is
 * queued before anything its closer does next (a chmod, a rename), which
 * the recorder must see after it.
 */
static int file_record(struct sb_file *f)
{
	struct known k;

	pthread_mutex_lock(&f->lock);
	file_settle(f);
	k = f->seen;
	f->seen.how = K_NONE;	/* queued once */
	if (f->foreign || f->failed)
		k.how = K_NONE;
	/* Hashed while written, in order, up to the size the flush saw. */
	if (k.how == K_POST && f->seq && k.fp[0].size == f->hoff &&
	    sb_sha_peek(f->sha, k.sha) == 0)
		k.how = K_SHA;
	pthread_mutex_unlock(&f->lock);
	if (k.how == K_NONE)
		return 0;
	pthread_mutex_lock(&f->m->files_mu);
	char *rel = strdup(f->rel);
	pthread_mutex_unlock(&f->m->files_mu);
	int ret = rel ? sb_mi_enqueue(f->m, ROP_REFRESH, rel, NULL, &k) : -ENOMEM;
	free(rel);
	return ret;
}

int sb_file_release(struct sb_file *f)
{
	int ret = file_record(f);	/* writes after the last flush: mmap's writeback */
	file_free(f);	/* with the journal's 'C' record */
	return ret;
}

/* ------------------------------------------------------------ locked entry points */

int sb_file_open(struct sb_mirror *m, const char *path, int flags, int create,
		 unsigned mode, unsigned uid, unsigned gid, struct sb_file **out)
{
	SHARED(m);
	int ret = sb_file_open_impl(m, path, flags, create, mode, uid, gid, out);
	UNSHARED(m);
	return ret;
}

long sb_file_read(struct sb_file *f, void *buf, size_t size, int64_t off)
{
	SHARED(f->m);
	long ret = sb_file_read_impl(f, buf, size, off);
	UNSHARED(f->m);
	return ret;
}

int sb_file_drop_privs(struct sb_file *f, int privileged)
{
	struct stat st;
	int i = f->fd[0] >= 0 ? 0 : 1, ret = 0;

	if (f->plain && f->plain_gen == __atomic_load_n(&f->m->mode_gen, __ATOMIC_RELAXED))
		return 0;	/* spares two syscalls per small file written */
	if (fstat(f->fd[i], &st) < 0)
		return -errno;
	mode_t kill = 0;
	if (!privileged && (st.st_mode & S_ISUID))
		kill |= S_ISUID;
	if (!privileged && (st.st_mode & (S_ISGID | S_IXGRP)) == (S_ISGID | S_IXGRP))
		kill |= S_ISGID;
	int caps = fgetxattr(f->fd[i], "security.capability", NULL, 0) > 0;
	if (!kill && !caps)
		return 0;
	SHARED(f->m);
	pthread_mutex_lock(&f->lock);
	for (i = 0; i < 2 && ret == 0; i++) {
		if (f->fd[i] < 0)
			continue;
		if (kill && fchmod(f->fd[i], st.st_mode & 07777 & ~kill) < 0)
			ret = -errno;
		if (ret == 0 && caps && fremovexattr(f->fd[i], "security.capability") < 0 &&
		    errno != ENODATA)
			ret = -errno;
	}
	note_change(f);
	pthread_mutex_unlock(&f->lock);
	UNSHARED(f->m);
	return ret;
}

long sb_file_write(struct sb_file *f, const void *buf, size_t size, int64_t off)
{
	SHARED(f->m);
	long ret = sb_file_write_impl(f, buf, size, off);
	UNSHARED(f->m);
	return ret;
}

int sb_file_truncate(struct sb_file *f, int64_t size)
{
	SHARED(f->m);
	int ret = sb_file_truncate_impl(f, size);
	UNSHARED(f->m);
	return ret;
}

int sb_file_fallocate(struct sb_file *f, int mode, int64_t off, int64_t len)
{
	SHARED(f->m);
	int ret = sb_file_fallocate_impl(f, mode, off, len);
	UNSHARED(f->m);
	return ret;
}

int sb_file_getattr(struct sb_file *f, struct stat *st)
{
	SHARED(f->m);
	int ret = sb_file_getattr_impl(f, st);
	UNSHARED(f->m);
	return ret;
}

long sb_file_copy_range(struct sb_file *in, int64_t off_in, struct sb_file *out,
			int64_t off_out, size_t len)
{
	SHARED(out->m);
	long ret = sb_file_copy_range_impl(in, off_in, out, off_out, len);
	UNSHARED(out->m);
	return ret;
}
