/*
 * Carrying a plan out. Each item is re-checked against what the scan saw
 * before anything is replaced or deleted; copies go to a temporary file in
 * the destination directory, hashed while written, and are renamed into
 * place. The state learns each outcome in batched LMDB transactions, each
 * committed only after both file systems are synced, so the state never
 * vouches for data a crash could still lose.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define COPY_BUF (1 << 20)
#define BATCH_ITEMS 20000
#define BATCH_NS (5LL * 1000000000)

struct apply {
	struct sb_pship *p;
	const struct sb_hooks *h;
	struct sb_apply_result *res;
	struct sb_txn *txn;
	int full;
	/* the parent directory of the current item, cached between items */
	char *ppath;
	size_t plen, pcap;
	int pvalid;
	int pfd[2];
	int perr[2];		/* why pfd[side] is -1 */
	uint64_t pid;		/* its state id, 0 when not recorded */
	uint64_t batch;
	int64_t batch_start;
	char **follow;		/* paths to plan again once the plan is done */
	size_t nfollow;
	uint8_t *buf;
	struct sb_sha *sha;
	int dirty[2];		/* side written since the last commit */
	int no_tmpfile;		/* O_TMPFILE + linkat failed here once */
	int64_t scan_ns;	/* sb_plan_started(): the scan fingerprints' "before" */
	pid_t pid_self;
	uid_t euid;
	gid_t egid;
	uint64_t nonce, ntemp;
	/* An item whose directory is missing on a side (pgone) is reported
	 * once for that directory, with the real cause, not once per item. */
	int pgone;		/* 1 + the side lacking it */
	char *mkdir_failed;	/* a directory that could not be created, */
	int mkdir_err;		/* and why */
	char *gone;		/* the directory last reported as missing */
};

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

static struct timespec ts_of(int64_t ns)
{
	struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
	if (ts.tv_nsec < 0) {
		ts.tv_nsec += 1000000000;
		ts.tv_sec--;
	}
	return ts;
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

/* 0 if side's entry is still what the scan saw, -EAGAIN if it changed. */
static int unchanged(int pfd, const char *name, const struct sb_scan *s)
{
	struct stat st;
	struct sb_fp fp;

	if (pfd < 0 || fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		if (pfd >= 0 && errno != ENOENT)
			return -errno;
		return s->info.type == SB_NONE ? 0 : -EAGAIN;
	}
	if (s->info.type != sb_type_of_mode(st.st_mode))
		return -EAGAIN;
	sb_fp_from_stat(&fp, &st);
	if (s->info.type == SB_DIR)
		return fp.dev == s->fp.dev && fp.ino == s->fp.ino ? 0 : -EAGAIN;
	if (!sb_fp_equal(&fp, &s->fp) || (st.st_mode & 07777) != s->rawmode)
		return -EAGAIN;
	return 0;
}

/* Removes a tree beneath dirfd without following symlinks. */
static int rmtree(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	int ret = 0;
	DIR *d;
	struct dirent *de;

	if (fd < 0) {
		if (errno == ENOTDIR || errno == ELOOP)
			return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
		return -errno;
	}
	if (!(d = fdopendir(fd))) {
		close(fd);
		return -errno;
	}
	while ((de = readdir(d))) {
		const char *n = de->d_name;
		if (n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
			continue;
		if (unlinkat(fd, n, 0) == 0)
			continue;
		if (errno != EISDIR && errno != EPERM)
			ret = -errno;
		else
			ret = rmtree(fd, n);
		if (ret < 0)
			break;
	}
	closedir(d);
	if (ret == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
		ret = -errno;
	return ret;
}

/* Unique per run and per file; O_EXCL catches the impossible clash. */
static void make_temp_name(struct apply *a, char out[64])
{
	snprintf(out, 64, SB_TMP_PREFIX "%ld.%08llx.%llu", (long)a->pid_self,
		 (unsigned long long)a->nonce, (unsigned long long)++a->ntemp);
}

/*
 * Ownership as the original where we may (as root), and mode, on side
 * `to`, as far as its file system keeps them: FAT answers ENOSYS to chmod,
 * and a mode or owner it cannot hold is no change (plan.c's as_held()).
 */
static int set_owner_mode(const struct apply *a, int to, int fd, const struct sb_scan *s)
{
	uint32_t caps = sb_pship_caps(a->p, to)->flags;
	if ((caps & SB_CAP_OWNER) && a->euid == 0 && (s->uid != a->euid || s->gid != a->egid) &&
	    fchown(fd, s->uid, s->gid) < 0 && errno != EPERM)
		return -errno;
	if ((caps & SB_CAP_MODE) && fchmod(fd, s->info.mode) < 0)
		return -errno;
	return 0;
}

/* Ownership, mode and times of side `to`'s new copy. */
static int set_meta_fd(const struct apply *a, int to, int fd, const struct sb_scan *s)
{
	struct timespec t[2] = { ts_of(s->atime_ns), ts_of(s->info.mtime_ns) };
	int ret = set_owner_mode(a, to, fd, s);
	if (ret == 0 && futimens(fd, t) < 0)
		ret = -errno;
	return ret;
}

/*
 * Copies a file into a new temporary on side `to`; -EAGAIN if the source moved.
 * The temporary is returned open in *outfd, with its fingerprint once its
 * times were set (*wrote; see installed()). With anon set (a new name) it
 * may be an unnamed O_TMPFILE (tmp then stays empty) for link_anon(): a
 * killed run then leaves nothing behind, and no rename is needed.
 */
static int copy_file(struct apply *a, int sfd, const char *name,
		     const struct sb_scan *s, int to, char tmp[64],
		     uint8_t sha[SB_SHA_LEN], int anon, int *outfd, struct sb_fp *wrote)
{
	int in = -1, out = -1, ret, dfd = a->pfd[to];
	struct stat st;
	struct sb_fp fp;
	uint64_t total = 0;

	tmp[0] = '\0';
	in = openat(sfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (in < 0)
		return errno == ENOENT || errno == ELOOP ? -EAGAIN : -errno;
	if (fstat(in, &st) < 0) {
		ret = -errno;
		goto out;
	}
	sb_fp_from_stat(&fp, &st);
	ret = -EAGAIN;
	if (!sb_fp_equal(&fp, &s->fp))
		goto out;
	if (anon && !a->no_tmpfile) {
		out = openat(dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
		if (out < 0)
			a->no_tmpfile = 1;	/* not on this file system: named ones */
	}
	if (out < 0) {
		make_temp_name(a, tmp);
		out = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (out < 0) {
			ret = -errno;
			tmp[0] = '\0';
			goto out;
		}
	}
	/* Holes stay holes: a sparse image is neither read nor written whole. */
	if ((ret = sb_sha_reset(a->sha)) < 0 ||
	    (ret = sb_sparse_copy(in, out, 0, s->info.size, a->sha, a->buf, COPY_BUF,
				  &total)) < 0 ||
	    (ret = sb_sha_final(a->sha, sha)) < 0)
		goto out;
	/* A write during the copy moves size, mtime or ctime: never record it. */
	if (fstat(in, &st) < 0) {
		ret = -errno;
		goto out;
	}
	sb_fp_from_stat(&fp, &st);
	ret = -EAGAIN;
	if (!sb_fp_equal(&fp, &s->fp) || total != s->info.size)
		goto out;
	if ((ret = set_meta_fd(a, to, out, s)) < 0)
		goto out;
	if (fstat(out, &st) < 0) {
		ret = -errno;
		goto out;
	}
	sb_fp_from_stat(wrote, &st);
	/* Start writeback of a large file now, so the syncfs before the next
	 * commit finds little left to write and the I/O overlaps the rest of
	 * the copy (for small files the call costs more than it saves). */
	if (total >= COPY_BUF)
		sync_file_range(out, 0, 0, SYNC_FILE_RANGE_WRITE);
	*outfd = out;
	out = -1;
	ret = 0;
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (ret < 0 && tmp[0]) {
		unlinkat(dfd, tmp, 0);
		tmp[0] = '\0';
	}
	return ret;
}

static int copy_link(struct apply *a, int sfd, const char *name,
		     const struct sb_scan *s, int dfd, char tmp[64],
		     uint8_t sha[SB_SHA_LEN], struct sb_fp *wrote)
{
	char *target = malloc(s->info.size + 1);
	int ret;

	tmp[0] = '\0';
	if (!target)
		return -ENOMEM;
	ssize_t n = readlinkat(sfd, name, target, s->info.size + 1);
	if (n < 0 || (uint64_t)n != s->info.size) {
		ret = n < 0 && errno != ENOENT && errno != EINVAL ? -errno : -EAGAIN;
		goto out;
	}
	target[n] = '\0';
	if ((ret = sb_hash_buf(target, n, sha)) < 0)
		goto out;
	make_temp_name(a, tmp);
	if (symlinkat(target, dfd, tmp) < 0) {
		ret = -errno;
		tmp[0] = '\0';
		goto out;
	}
	struct timespec t[2] = { ts_of(s->atime_ns), ts_of(s->info.mtime_ns) };
	if (a->euid == 0 && (s->uid != a->euid || s->gid != a->egid))
		fchownat(dfd, tmp, s->uid, s->gid, AT_SYMLINK_NOFOLLOW);
	utimensat(dfd, tmp, t, AT_SYMLINK_NOFOLLOW);
	struct stat st;
	if (fstatat(dfd, tmp, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		ret = -errno;
		unlinkat(dfd, tmp, 0);
		tmp[0] = '\0';
		goto out;
	}
	sb_fp_from_stat(wrote, &st);
out:
	free(target);
	return ret;
}

/* Puts the finished temporary in place of name, if name is still as scanned. */
static int install(int dfd, const char *tmp, const char *name,
		   const struct sb_scan *was, int rmtree_ok)
{
	/* An absent destination needs no look: RENAME_NOREPLACE refuses a newcomer. */
	int ret = was->info.type == SB_NONE ? 0 : unchanged(dfd, name, was);
	if (ret < 0)
		return ret;
	if (was->info.type == SB_DIR) {
		ret = rmtree_ok ? rmtree(dfd, name)
			: unlinkat(dfd, name, AT_REMOVEDIR) < 0 ? -errno : 0;
		if (ret < 0)
			return ret == -ENOTEMPTY ? -EAGAIN : ret;
	}
	if (was->info.type == SB_NONE || was->info.type == SB_DIR) {
		if (renameat2(dfd, tmp, dfd, name, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno == EEXIST)
			return -EAGAIN;
		if (errno != EINVAL && errno != ENOSYS)
			return -errno;
	}
	return renameat(dfd, tmp, dfd, name) < 0 ? -errno : 0;
}

/* Gives an unnamed temporary the name, which must still be free. */
static int link_anon(struct apply *a, int fd, int dfd, const char *name)
{
	char proc[64];
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dfd, name, AT_SYMLINK_FOLLOW) == 0)
		return 0;
	if (errno == EEXIST)
		return -EAGAIN;	/* it appeared since the scan */
	if (errno == ENOENT || errno == EPERM || errno == EXDEV)
		a->no_tmpfile = 1;	/* no /proc here: named temporaries from now on */
	return -errno;
}

/*
 * The fingerprint a record may keep for a copy just put in place: taken on
 * the copy's own descriptor (fd, or for a symlink by name) after the rename
 * or link, since those move the ctime. It vouches for the bytes written
 * only if the copy still has the inode, size and mtime it had when sbfs
 * set its times (*wrote): a write landing in between is stamped with the
 * time of the write, which differs from the mtime given where stamps are
 * fine, and on a coarse file system when the mtime given is older than
 * SB_RACY_NS. Otherwise its ctime is spoiled and the next scan looks.
 */
static void installed(struct apply *a, int fd, int dfd, const char *name,
		      const struct sb_fp *wrote, int side, int64_t before, struct sb_fp *fp)
{
	struct stat st;
	int ok = fd >= 0 ? fstat(fd, &st) == 0 : fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;

	*fp = *wrote;
	if (ok)
		sb_fp_from_stat(fp, &st);
	if (!ok || fp->ino != wrote->ino || fp->size != wrote->size ||
	    fp->mtime_ns != wrote->mtime_ns ||
	    (!sb_pship_fine(a->p, side) && wrote->mtime_ns > before - SB_RACY_NS))
		fp->ctime_ns = SB_FP_UNSURE;
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

static const uint8_t *known_sha(const struct sb_pitem *it)
{
	if (it->flags & SB_IF_HASH0)
		return it->sha[0];
	if (it->flags & SB_IF_HASH1)
		return it->sha[1];
	return (it->flags & SB_IF_REC) ? it->rec.sha : NULL;
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

/*
 * Reads fd back after sbfs set its times: a write landing in between would
 * have had its mtime overwritten, so *fp, taken now on that descriptor,
 * may vouch only for bytes hashed to want (NULL: any); -EAGAIN if not.
 */
static int read_back(struct apply *a, int fd, int to, const uint8_t *want, struct sb_fp *fp)
{
	uint8_t sha[SB_SHA_LEN];
	struct stat st;
	int ret;

	if (fstat(fd, &st) < 0)
		return -errno;
	int64_t before = sb_wall_ns();
	sb_fp_from_stat(fp, &st);
	if ((ret = sb_hash_stable(fd, fp, sha)) < 0)
		return ret;
	if (want && memcmp(sha, want, SB_SHA_LEN))
		return -EAGAIN;
	sb_fp_settle(fp, sb_pship_fine(a->p, to), before);
	return 0;
}

/*
 * For a copy whose mtime moved when it was renamed into place, on a file
 * system known to do that (fusefat stamps the rename of an open file with
 * the time of day; caps.c): sets the time again. A write may have moved it
 * instead, so the bytes are read back on the same descriptor, as do_meta()
 * does; unless they are the bytes copied, *fp stays spoiled (installed()
 * saw the mtime move) and the next scan finds the change by its hash.
 */
static void retime(struct apply *a, int dfd, const char *name, const struct sb_scan *s,
		   const uint8_t sha[SB_SHA_LEN], int to, struct sb_fp *fp)
{
	struct timespec t[2] = { ts_of(s->atime_ns), ts_of(s->info.mtime_ns) };
	struct stat st;
	struct sb_fp now;
	int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && st.st_ino == fp->ino && futimens(fd, t) == 0 &&
	    read_back(a, fd, to, sha, &now) == 0)
		*fp = now;
	close(fd);
}

/* *tofp gets the fingerprint a record may keep for the copy (files and
 * symlinks; see installed()). */
static int do_copy(struct apply *a, const struct sb_pitem *it, const char *name,
		   uint8_t sha[SB_SHA_LEN], struct sb_fp *tofp)
{
	int to = it->to, from = !to, ret;
	const struct sb_scan *src = &it->s[from], *dst = &it->s[to];
	char tmp[64] = "";

	/* Its directory went (or became a symlink) since the scan. */
	if (a->pfd[from] < 0 || a->pfd[to] < 0) {
		a->pgone = a->pfd[from] < 0 ? from + 1 : to + 1;
		return -EAGAIN;
	}
	/* A file's source is checked on its open descriptor by copy_file. */
	if (src->info.type != SB_FILE && (ret = unchanged(a->pfd[from], name, src)) < 0)
		return ret;
	if (src->info.type == SB_DIR) {
		if ((ret = unchanged(a->pfd[to], name, dst)) < 0)
			return ret;
		if (dst->info.type != SB_NONE && dst->info.type != SB_DIR) {
			if (unlinkat(a->pfd[to], name, 0) < 0)
				return -errno;
		}
		if (mkdirat(a->pfd[to], name, 0700) < 0 && errno != EEXIST)
			return -errno;
		int fd = openat(a->pfd[to], name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		ret = set_owner_mode(a, to, fd, src);
		close(fd);
		memset(sha, 0, SB_SHA_LEN);
		return ret;
	}
	int out = -1, fresh = dst->info.type == SB_NONE;
	struct sb_fp wrote;
	int64_t before = sb_wall_ns();	/* before the copy's times are set */
	ret = src->info.type == SB_LINK
		? copy_link(a, a->pfd[from], name, src, a->pfd[to], tmp, sha, &wrote)
		: copy_file(a, a->pfd[from], name, src, to, tmp, sha, fresh,
			    &out, &wrote);
	if (ret < 0)
		return ret;
	int unnamed = !tmp[0];
	/* The plan may already know the content: a mismatch means it moved. */
	if ((it->flags & (from ? SB_IF_HASH1 : SB_IF_HASH0)) &&
	    memcmp(sha, it->sha[from], SB_SHA_LEN))
		ret = -EAGAIN;
	if (ret == 0)
		ret = unnamed ? link_anon(a, out, a->pfd[to], name)
			: install(a->pfd[to], tmp, name, dst, it->flags & SB_IF_RMTREE);
	if (ret == 0)
		installed(a, out, a->pfd[to], name, &wrote, to, before, tofp);
	if (out >= 0)
		close(out);
	if (ret == 0 && src->info.type == SB_FILE && tofp->mtime_ns != wrote.mtime_ns &&
	    (sb_pship_caps(a->p, to)->flags & SB_CAP_MVTIME))
		retime(a, a->pfd[to], name, src, sha, to, tofp);
	if (ret < 0 && !unnamed)
		unlinkat(a->pfd[to], tmp, 0);
	if (unnamed && (ret == -ENOENT || ret == -EPERM || ret == -EXDEV))
		return do_copy(a, it, name, sha, tofp);	/* again, with a named temporary */
	return ret;
}

/*
 * Carries mode and mtime to side `to`, whose content is already the same.
 * A write landing between the check and the change of mtime would have its
 * mtime overwritten, so the file is read back on the same descriptor after
 * the change: *tofp is the fingerprint of bytes hashed to the known hash.
 */
static int do_meta(struct apply *a, const struct sb_pitem *it, const char *name,
		   struct sb_fp *tofp)
{
	int to = it->to, from = !to, ret, fd = -1;
	const struct sb_scan *src = &it->s[from];
	const uint8_t *want = known_sha(it);
	struct stat st;
	struct sb_fp fp;

	if ((ret = unchanged(a->pfd[from], name, src)) < 0 ||
	    (ret = unchanged(a->pfd[to], name, &it->s[to])) < 0)
		return ret;
	int modes = sb_pship_caps(a->p, to)->flags & SB_CAP_MODE;
	if (src->info.type != SB_FILE)
		return modes && fchmodat(a->pfd[to], name, src->info.mode, 0) < 0 ? -errno : 0;
	fd = openat(a->pfd[to], name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT || errno == ELOOP ? -EAGAIN : -errno;
	ret = -EAGAIN;
	if (fstat(fd, &st) < 0)
		goto errno_out;
	sb_fp_from_stat(&fp, &st);
	if (!sb_fp_equal(&fp, &it->s[to].fp))
		goto out;
	/* Its own atime, not UTIME_OMIT, which exfat-fuse mishandles. */
	struct timespec t[2] = { ts_of(it->s[to].atime_ns), ts_of(src->info.mtime_ns) };
	if ((modes && fchmod(fd, src->info.mode) < 0) || futimens(fd, t) < 0)
		goto errno_out;
	ret = read_back(a, fd, to, want, tofp);
	goto out;
errno_out:
	ret = -errno;
out:
	close(fd);
	return ret;
}

static int do_delete(struct apply *a, const struct sb_pitem *it, const char *name)
{
	int to = it->to, ret;
	if ((ret = unchanged(a->pfd[to], name, &it->s[to])) < 0)
		return ret;
	if (it->s[to].info.type == SB_NONE)
		return 0;
	if (it->s[to].info.type != SB_DIR)
		return unlinkat(a->pfd[to], name, 0) < 0 ? -errno : 0;
	if (it->flags & SB_IF_RMTREE)
		return rmtree(a->pfd[to], name);
	if (unlinkat(a->pfd[to], name, AT_REMOVEDIR) < 0)
		return errno == ENOTEMPTY || errno == EEXIST ? -EAGAIN : -errno;
	return 0;
}

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

	if ((ret = unchanged(a->pfd[0], name, &it->s[0])) < 0 ||
	    (ret = unchanged(a->pfd[1], name, &it->s[1])) < 0)
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
	int ret = sb_sync_written(a->p, a->dirty);
	a->dirty[0] = a->dirty[1] = 0;
	if (ret == 0)
		ret = sb_txn_commit(a->txn);
	else
		sb_txn_abort(a->txn);
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
		if ((ret = do_copy(a, it, name, sha, &tofp)) < 0)
			return ret;
		*logsha = it->s[!to].info.type != SB_DIR;
		return record(a, it, name, !to, it->s[!to].info.type == SB_DIR ? NULL : sha, 1,
			      &tofp);
	case SB_OP_META:
		if ((ret = do_meta(a, it, name, &tofp)) < 0)
			return ret;
		return record(a, it, name, !to, known_sha(it), 0,
			      it->s[!to].info.type == SB_FILE ? &tofp : NULL);
	case SB_OP_RECORD:
		if ((ret = unchanged(a->pfd[0], name, &it->s[0])) < 0 ||
		    (ret = unchanged(a->pfd[1], name, &it->s[1])) < 0)
			return ret;
		return record(a, it, name, SB_SRC, known_sha(it), 0, NULL);
	case SB_OP_DELETE:
		if ((ret = do_delete(a, it, name)) < 0)
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
	if ((ret = sb_sha_new(&a.sha)) < 0 || (ret = sb_plan_rewind(plan)) < 0 ||
	    (ret = sb_state_begin(p->state, 0, &a.txn)) < 0)
		goto out;
	a.batch_start = now_ns();
	if (full && (ret = sb_state_conflict_clear(a.txn)) < 0)
		goto out;
	while ((ret = sb_plan_next_raw(plan, &it, &path)) > 0) {
		uint8_t sha[SB_SHA_LEN];
		int logsha = 0, quiet;
		a.pgone = 0;
		int err = apply_item(&a, &it, path, sha, &logsha);
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
		} else if (it.op == SB_OP_CONFLICT && err == 0) {
			res->conflicts++;
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
	if (ret == 0 && a.nfollow) {
		/* Keep-both left two names, each on one side only: sync them. */
		struct sb_plan *sub = NULL;
		struct sb_apply_result r2;
		struct sb_hooks h2 = hooks ? *hooks : (struct sb_hooks){ 0 };
		h2.choose = NULL;
		ret = sb_plan_build(p, (const char *const *)a.follow, a.nfollow, &h2, &sub);
		if (ret == 0)
			ret = sb_plan_apply(p, sub, &h2, 0, &r2);
		sb_plan_free(sub);
		if (ret == 0) {
			res->done += r2.done;
			res->skipped += r2.skipped;
			res->failed += r2.failed;
			res->conflicts += r2.conflicts;
		}
	}
out:
	close_parent(&a);
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
