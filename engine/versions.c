/*
 * Old versions kept: the version a reconcile or resolve replaces or deletes
 * on a side is kept in that side's ROOT/.sbfs-versions, as
 * PATH~YYYYMMDD-HHMMSS (UTC, the time it was kept), -NN added from 01 when
 * that name is taken, so names sort by time and never collide. Scans and the
 * mount never show the folder (SB_VERSIONS_DIR). Retention trims each path
 * that got a version after the run; a copy that meets a full disk has the
 * oldest versions of that side go first (apply_copy.c).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "versions.h"

#define VDIR SB_VERSIONS_DIR "/"
#define STAMP_LEN 16		/* "~YYYYMMDD-HHMMSS" */
#define COUNTER_LEN 3		/* "-NN" */

struct sb_vrun {
	struct sb_pship *p;
	const struct sb_hooks *h;
	int failed;
	struct { int side; char *rel; } *got;	/* paths that got a version */
	size_t ngot;
};

int sb_rmtree(int dirfd, const char *name)
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
			ret = sb_rmtree(fd, n);
		if (ret < 0)
			break;
	}
	closedir(d);
	if (ret == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
		ret = -errno;
	return ret;
}

void sb_pship_set_versions(struct sb_pship *p, unsigned keep, unsigned days)
{
	p->keep_versions = keep;
	p->keep_days = days;
}

void sb_pship_get_versions(const struct sb_pship *p, unsigned *keep, unsigned *days)
{
	*keep = p->keep_versions;
	*days = p->keep_days;
}

static int versions_on(const struct sb_pship *p)
{
	return p->keep_versions || p->keep_days;
}

int sb_vrun_new(struct sb_pship *p, const struct sb_hooks *h, struct sb_vrun **out)
{
	if (!(*out = calloc(1, sizeof(**out))))
		return -ENOMEM;
	(*out)->p = p;
	(*out)->h = h;
	return 0;
}

int sb_vrun_failed(struct sb_vrun *v)
{
	int e = v ? v->failed : 0;
	if (v)
		v->failed = 0;
	return e;
}

/* The versions folder's path for rel: ".sbfs-versions/rel" (malloc'd). */
static char *vpath(const char *rel, size_t len, size_t *vlen)
{
	char *s = malloc(sizeof(VDIR) + len);
	if (!s)
		return NULL;
	memcpy(s, VDIR, sizeof(VDIR) - 1);
	memcpy(s + sizeof(VDIR) - 1, rel, len);
	*vlen = sizeof(VDIR) - 1 + len;
	s[*vlen] = '\0';
	return s;
}

/* If name ends in a version stamp: the length of what precedes it, and
 * *t the time it was kept; else 0. */
static size_t parse_stamp(const char *name, int64_t *t)
{
	size_t n = strlen(name), s;
	struct tm tm = { 0 };

	for (int c = 0; c < 2; c++) {
		size_t sl = STAMP_LEN + (c ? COUNTER_LEN : 0);
		if (n <= sl)
			continue;
		s = n - sl;
		const char *p = name + s;
		int ok = p[0] == '~' && p[9] == '-' && (!c || (p[16] == '-'));
		for (size_t i = 1; ok && i < sl; i++)
			if (i != 9 && i != 16)
				ok = p[i] >= '0' && p[i] <= '9';
		if (!ok)
			continue;
		if (sscanf(p + 1, "%4d%2d%2d-%2d%2d%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
			continue;
		tm.tm_year -= 1900;
		tm.tm_mon -= 1;
		*t = (int64_t)timegm(&tm);
		return s;
	}
	return 0;
}

static int remember(struct sb_vrun *v, int side, const char *rel, size_t len)
{
	for (size_t i = 0; i < v->ngot; i++)
		if (v->got[i].side == side && strlen(v->got[i].rel) == len &&
		    !memcmp(v->got[i].rel, rel, len))
			return 0;
	void *nv = realloc(v->got, (v->ngot + 1) * sizeof(*v->got));
	if (!nv)
		return -ENOMEM;
	v->got = nv;
	if (!(v->got[v->ngot].rel = strndup(rel, len)))
		return -ENOMEM;
	v->got[v->ngot++].side = side;
	return 0;
}

int sb_vrun_keep(struct sb_vrun *v, int side, int dfd, const char *name,
		 const char *rel, size_t len, int how)
{
	char *vp = NULL, vname[NAME_MAX + 64], stamp[32];
	const char *base;
	size_t vlen;
	int vfd = -1, ret;
	struct tm tm;
	time_t now = time(NULL);

	if (!v || !versions_on(v->p))
		return 0;
	ret = -ENOMEM;
	if (!(vp = vpath(rel, len, &vlen)))
		goto out;
	if ((ret = sb_open_parent(v->p->rootfd[side], vp, vlen, 0700, &vfd, &base)) < 0)
		goto out;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
	ret = -ENAMETOOLONG;
	if (strlen(base) + STAMP_LEN + COUNTER_LEN > NAME_MAX)
		goto out;
	ret = -EEXIST;
	for (int n = 0; n < 100; n++) {
		if (n)
			snprintf(vname, sizeof(vname), "%s~%s-%02d", base, stamp, n);
		else
			snprintf(vname, sizeof(vname), "%s~%s", base, stamp);
		/* A link leaves the name in place, so the caller's rename over
		 * it stays one atomic step: no instant without the file. */
		if (how == SB_VK_LINK && linkat(dfd, name, vfd, vname, 0) == 0) {
			ret = 0;
			break;
		}
		if (how == SB_VK_LINK && errno != EEXIST && errno != EPERM &&
		    errno != EOPNOTSUPP && errno != EMLINK && errno != ENOSYS) {
			ret = -errno;
			goto out;
		}
		if (how == SB_VK_LINK && errno == EEXIST)
			continue;
		if (renameat2(dfd, name, vfd, vname, RENAME_NOREPLACE) == 0 ||
		    (errno == EINVAL && faccessat(vfd, vname, F_OK, AT_SYMLINK_NOFOLLOW) < 0 &&
		     renameat(dfd, name, vfd, vname) == 0)) {
			ret = 1;
			break;
		}
		if (errno != EEXIST) {
			ret = -errno;
			goto out;
		}
		ret = -EEXIST;
	}
	if (ret >= 0)
		(void)remember(v, side, rel, len);	/* failing, only retention misses it */
out:
	if (ret < 0)
		v->failed = ret;
	if (vfd >= 0)
		close(vfd);
	free(vp);
	return ret;
}

/* ------------------------------------------------------------ listing */

struct walk {
	struct sb_pship *p;
	int side;
	const char *want;	/* only this path and beneath, or NULL */
	size_t wlen;
	struct sb_version_list *l;
	char *buf;		/* the directory's path beneath the folder */
	size_t len, cap;
};

/* 0: path (len) is neither want nor beneath it nor above it. */
static int relevant(const struct walk *w, const char *path, size_t len, int above_ok)
{
	if (!w->want)
		return 1;
	if (len >= w->wlen && !memcmp(path, w->want, w->wlen) &&
	    (len == w->wlen || path[w->wlen] == '/'))
		return 1;
	return above_ok && len < w->wlen && !memcmp(path, w->want, len) &&
	       (len == 0 || w->want[len] == '/');
}

static int add_version(struct walk *w, int fd, const char *name, size_t plen, int64_t t)
{
	struct stat st;
	if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	size_t full = w->len + (w->len ? 1 : 0) + plen;
	char *path = malloc(full + 1), *vn = strdup(name);
	void *nv = realloc(w->l->v, (w->l->n + 1) * sizeof(*w->l->v));
	if (nv)
		w->l->v = nv;
	if (!path || !vn || !nv) {
		free(path);
		free(vn);
		return -ENOMEM;
	}
	if (w->len) {
		memcpy(path, w->buf, w->len);
		path[w->len] = '/';
	}
	memcpy(path + full - plen, name, plen);
	path[full] = '\0';
	if (!relevant(w, path, full, 0)) {
		free(path);
		free(vn);
		return 0;
	}
	struct sb_version *ver = &w->l->v[w->l->n++];
	memset(ver, 0, sizeof(*ver));
	ver->side = w->side;
	ver->path = path;
	ver->len = full;
	ver->vname = vn;
	ver->time = t;
	ver->type = sb_type_of_mode(st.st_mode);
	ver->size = S_ISREG(st.st_mode) || S_ISLNK(st.st_mode) ? (uint64_t)st.st_size : 0;
	ver->mode = st.st_mode & 07777;
	ver->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	snprintf(ver->stamp, sizeof(ver->stamp), "%s", name + plen + 1);
	return 0;
}

static int walk(struct walk *w, int fd)
{
	DIR *d = fdopendir(fd);
	struct dirent *de;
	int ret = 0;

	if (!d) {
		close(fd);
		return -errno;
	}
	while (ret == 0 && (errno = 0, de = readdir(d))) {
		const char *n = de->d_name;
		int64_t t;
		size_t plen;
		if (n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2])))
			continue;
		if ((plen = parse_stamp(n, &t))) {
			ret = add_version(w, dirfd(d), n, plen, t);
			continue;
		}
		size_t nl = strlen(n), saved = w->len;
		if (w->len + nl + 2 > w->cap) {
			char *nb = realloc(w->buf, w->cap = w->len + nl + 256);
			if (!nb) {
				ret = -ENOMEM;
				break;
			}
			w->buf = nb;
		}
		if (w->len)
			w->buf[w->len++] = '/';
		memcpy(w->buf + w->len, n, nl);
		w->len += nl;
		int sub;
		if (relevant(w, w->buf, w->len, 1) &&
		    (sub = openat(dirfd(d), n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) >= 0)
			ret = walk(w, sub);
		w->len = saved;
	}
	if (ret == 0 && errno)
		ret = -errno;
	closedir(d);
	return ret;
}

static int cmp_versions(const void *x, const void *y)
{
	const struct sb_version *a = x, *b = y;
	int c = strcmp(a->path, b->path);
	if (c)
		return c;
	if (a->side != b->side)
		return a->side - b->side;
	return strcmp(b->stamp, a->stamp);	/* newest first */
}

int sb_versions_list(struct sb_pship *p, const char *rel, struct sb_version_list *out)
{
	int ret = 0;

	memset(out, 0, sizeof(*out));
	for (int s = 0; s < 2 && ret == 0; s++) {
		struct walk w = { .p = p, .side = s, .want = rel && *rel ? rel : NULL,
				  .wlen = rel ? strlen(rel) : 0, .l = out };
		int fd = openat(p->rootfd[s], SB_VERSIONS_DIR,
				O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			if (errno != ENOENT)
				ret = -errno;
			continue;
		}
		ret = walk(&w, fd);
		free(w.buf);
	}
	if (ret < 0)
		sb_versions_free(out);
	else if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), cmp_versions);
	return ret;
}

void sb_versions_free(struct sb_version_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].path);
		free(l->v[i].vname);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* ------------------------------------------------------------ removing */

/* Removes version ver from its side; logged, and said with why. */
static int drop(struct sb_pship *p, const struct sb_hooks *h, const struct sb_version *ver,
		int why)
{
	char *vp;
	const char *base;
	size_t vlen;
	int fd, ret = -ENOMEM;
	const char *slash = strrchr(ver->path, '/');
	size_t dl = slash ? (size_t)(slash - ver->path) : 0;
	char *rel = malloc(dl + strlen(ver->vname) + 2);

	if (!rel)
		return ret;
	memcpy(rel, ver->path, dl);
	snprintf(rel + dl, strlen(ver->vname) + 2, "%s%s", dl ? "/" : "", ver->vname);
	if (!(vp = vpath(rel, strlen(rel), &vlen)))
		goto out;
	if ((ret = sb_open_parent(p->rootfd[ver->side], vp, vlen, 0, &fd, &base)) < 0)
		goto out;
	ret = ver->type == SB_DIR ? sb_rmtree(fd, base) : unlinkat(fd, base, 0) < 0 ? -errno : 0;
	close(fd);
	if (ret == -ENOENT)
		ret = 0;
	sb_log_op(p->log, p->id, ver->side ? "version-removed-target" : "version-removed-source",
		  vp, vlen, ver->size, NULL, ret);
	if (why && h && h->warn)
		h->warn(h->arg, vp, vlen, why, ver->side
			? "an old version in the target removed to make room for a copy"
			: "an old version in the source removed to make room for a copy");
out:
	free(vp);
	free(rel);
	return ret;
}

/*
 * Retention over l (sorted: path, side, newest first): beyond the
 * newest keep of a path on a side, and older than days, versions go. Only
 * the path exact (len bytes) when exact is set.
 */
static int trim(struct sb_pship *p, const struct sb_version_list *l, const char *exact,
		size_t elen, int side, uint64_t *removed)
{
	int64_t cut = (int64_t)time(NULL) - (int64_t)p->keep_days * 86400;
	size_t rank = 0;
	int ret = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct sb_version *ver = &l->v[i];
		if (exact && (ver->len != elen || memcmp(ver->path, exact, elen) || ver->side != side))
			continue;
		if (i == 0 || strcmp(l->v[i - 1].path, ver->path) || l->v[i - 1].side != ver->side)
			rank = 0;
		rank++;
		if ((p->keep_versions && rank > p->keep_versions) ||
		    (p->keep_days && ver->time < cut)) {
			int e = drop(p, NULL, ver, 0);
			if (e == 0 && removed)
				++*removed;
			if (e < 0 && ret == 0)
				ret = e;
		}
	}
	return ret;
}

int sb_versions_prune(struct sb_pship *p, uint64_t *removed)
{
	struct sb_version_list l;
	int ret;

	*removed = 0;
	if (!versions_on(p))
		return 0;
	if ((ret = sb_versions_list(p, NULL, &l)) < 0)
		return ret;
	ret = trim(p, &l, NULL, 0, 0, removed);
	sb_versions_free(&l);
	return ret;
}

void sb_vrun_finish(struct sb_vrun *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->ngot; i++) {
		struct sb_version_list l;
		if (sb_versions_list(v->p, v->got[i].rel, &l) == 0) {
			trim(v->p, &l, v->got[i].rel, strlen(v->got[i].rel), v->got[i].side, NULL);
			sb_versions_free(&l);
		}
		free(v->got[i].rel);
	}
	free(v->got);
	free(v);
}

static int cmp_oldest(const void *x, const void *y)
{
	const struct sb_version *a = x, *b = y;
	return strcmp(a->stamp, b->stamp);
}

int sb_vrun_make_room(struct sb_vrun *v, int side, uint64_t need)
{
	struct sb_version_list l;
	struct statvfs sv;
	int n = 0;

	if (!v || sb_versions_list(v->p, NULL, &l) < 0)
		return 0;
	qsort(l.v, l.n, sizeof(*l.v), cmp_oldest);
	for (size_t i = 0; i < l.n; i++) {
		if (l.v[i].side != side)
			continue;
		if (fstatvfs(v->p->rootfd[side], &sv) == 0 &&
		    (uint64_t)sv.f_bavail * sv.f_frsize > need + (1 << 20))
			break;
		if (drop(v->p, v->h, &l.v[i], -ENOSPC) == 0)
			n++;
	}
	sb_versions_free(&l);
	return n;
}

/* ------------------------------------------------------------ restoring */

/* ver's content into a new temporary tmp in dfd: its mode, the time now,
 * so that it reads as the change it is. */
static int restore_copy(struct sb_pship *p, const struct sb_version *ver, int vfd,
			const char *vbase, int dfd, const char *tmp)
{
	int in = -1, out = -1, ret = 0;
	uint8_t *buf = NULL;
	uint64_t done;
	struct sb_sha *sha = NULL;

	if (ver->type == SB_LINK) {
		char target[PATH_MAX];
		ssize_t n = readlinkat(vfd, vbase, target, sizeof(target) - 1);
		if (n < 0)
			return -errno;
		target[n] = '\0';
		return symlinkat(target, dfd, tmp) < 0 ? -errno : 0;
	}
	if ((in = openat(vfd, vbase, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY)) < 0 ||
	    (out = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600)) < 0) {
		ret = -errno;
		goto out;
	}
	if (!(buf = malloc(1 << 20))) {
		ret = -ENOMEM;
		goto out;
	}
	if ((ret = sb_sha_new(&sha)) < 0)
		goto out;
	struct stat st;
	if (fstat(in, &st) < 0) {
		ret = -errno;
		goto out;
	}
	if ((ret = sb_sparse_copy(in, out, 0, st.st_size, sha, buf, 1 << 20, &done)) < 0)
		goto out;
	if (((sb_pship_caps(p, ver->side)->flags & SB_CAP_MODE) && fchmod(out, ver->mode) < 0) ||
	    futimens(out, NULL) < 0 || fsync(out) < 0)
		ret = -errno;
out:
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	if (ret < 0 && out >= 0)
		unlinkat(dfd, tmp, 0);
	sb_sha_free(sha);
	free(buf);
	return ret;
}

int sb_version_restore(struct sb_pship *p, const struct sb_version *ver)
{
	const char *slash = strrchr(ver->path, '/'), *vbase, *base;
	size_t dl = slash ? (size_t)(slash - ver->path) : 0, vlen;
	char *rel = NULL, *vp = NULL, tmp[64];
	int vfd = -1, dfd = -1, ret = -EISDIR, made = 0;
	struct sb_vrun *v = NULL;

	if (ver->type == SB_DIR)
		return ret;
	ret = -ENOMEM;
	if (!(rel = malloc(dl + strlen(ver->vname) + 2)))
		goto out;
	memcpy(rel, ver->path, dl);
	snprintf(rel + dl, strlen(ver->vname) + 2, "%s%s", dl ? "/" : "", ver->vname);
	if (!(vp = vpath(rel, strlen(rel), &vlen)))
		goto out;
	if ((ret = sb_open_parent(p->rootfd[ver->side], vp, vlen, 0, &vfd, &vbase)) < 0 ||
	    (ret = sb_open_parent(p->rootfd[ver->side], ver->path, ver->len, 0755, &dfd, &base)) < 0 ||
	    (ret = sb_vrun_new(p, NULL, &v)) < 0)
		goto out;
	snprintf(tmp, sizeof(tmp), SB_TMP_PREFIX "restore.%ld", (long)getpid());
	if ((ret = restore_copy(p, ver, vfd, vbase, dfd, tmp)) < 0)
		goto out;
	made = 1;
	struct stat st;
	int cur = fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
	/* The current version is kept in its turn: a restore loses nothing. */
	if (cur && S_ISDIR(st.st_mode)) {
		ret = -EISDIR;
		goto out;
	}
	if (cur && (ret = sb_vrun_keep(v, ver->side, dfd, base, ver->path, ver->len, SB_VK_LINK)) < 0)
		goto out;
	if (renameat(dfd, tmp, dfd, base) < 0) {
		ret = -errno;
		goto out;
	}
	made = 0;
	ret = syncfs(dfd) < 0 ? -errno : 0;
	sb_log_op(p->log, p->id, ver->side ? "restore-target" : "restore-source", ver->path,
		  ver->len, ver->size, NULL, ret);
out:
	if (made)
		unlinkat(dfd, tmp, 0);
	sb_vrun_finish(v);
	if (vfd >= 0)
		close(vfd);
	if (dfd >= 0)
		close(dfd);
	free(vp);
	free(rel);
	return ret;
}
