/*
 * A partnership: two validated roots, their state and their log.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "statecheck.h"

static void set_err(struct sb_error *err, int code, const char *path)
{
	if (!err)
		return;
	err->code = code;
	snprintf(err->path, sizeof(err->path), "%s", path ? path : "");
}

/* 1 if canonical path `in` equals or lies beneath canonical `dir`. */
static int path_within(const char *in, const char *dir)
{
	size_t n = strlen(dir);
	if (n == 1 && dir[0] == '/')
		return 1;
	return strncmp(in, dir, n) == 0 && (in[n] == '/' || in[n] == '\0');
}

/* Canonical form of a path that may not exist yet: the deepest existing
 * ancestor resolved, the rest appended. */
static char *canon_maybe(const char *path)
{
	char *copy = strdup(path), *res = NULL, *tail = NULL;
	if (!copy)
		return NULL;
	for (;;) {
		char *r = realpath(copy, NULL);
		if (r) {
			if (!tail) {
				res = r;
			} else if (asprintf(&res, "%s/%s", strcmp(r, "/") ? r : "", tail) < 0) {
				res = NULL;
			}
			if (tail)
				free(r);
			break;
		}
		char *slash = strrchr(copy, '/');
		if (errno != ENOENT || !slash || slash == copy)
			break;
		char *nt = NULL;
		if (asprintf(&nt, "%s%s%s", slash + 1, tail ? "/" : "", tail ? tail : "") < 0)
			break;
		free(tail);
		tail = nt;
		*slash = '\0';
	}
	free(tail);
	free(copy);
	return res;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char *p = strdup(path);
	int ret = 0;
	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; ; s++) {
		if (*s == '/' || *s == '\0') {
			char c = *s;
			*s = '\0';
			if (mkdir(p, mode) < 0 && errno != EEXIST) {
				ret = -errno;
				goto out;
			}
			*s = c;
			if (c == '\0')
				break;
		}
	}
out:
	free(p);
	return ret;
}

static char *default_state_root(void)
{
	const char *env = getenv("SBFS_STATE_DIR");
	char *res = NULL;
	if (env && *env)
		return strdup(env);
	env = getenv("XDG_STATE_HOME");
	if (env && *env) {
		if (asprintf(&res, "%s/sbfs", env) < 0)
			return NULL;
		return res;
	}
	env = getenv("HOME");
	if (asprintf(&res, "%s/.local/state/sbfs", env && *env ? env : "/root") < 0)
		return NULL;
	return res;
}

static int open_root(const char *given, char **canon, int *fd, struct stat *st,
		     struct sb_error *err)
{
	*canon = realpath(given, NULL);
	if (!*canon) {
		int e = -errno;
		set_err(err, e, given);
		return e;
	}
	*fd = open(*canon, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (*fd < 0 || fstat(*fd, st) < 0) {
		int e = -errno;
		set_err(err, e, given);
		return e;
	}
	/* Listing needs read, descending needs search permission. */
	if (faccessat(*fd, ".", R_OK | X_OK, AT_EACCESS) < 0) {
		int e = -errno;
		set_err(err, e, given);
		return e;
	}
	return 0;
}

/* The partnership's id: a hex prefix of SHA-256(source NUL target). */
static int pship_id(const char *src, const char *tgt, char id[33])
{
	uint8_t sha[SB_SHA_LEN];
	char hex[2 * SB_SHA_LEN + 1];
	size_t l0 = strlen(src), l1 = strlen(tgt);
	char *pair = malloc(l0 + l1 + 1);
	int ret = -ENOMEM;

	if (!pair)
		goto out;
	memcpy(pair, src, l0 + 1);
	memcpy(pair + l0 + 1, tgt, l1);
	ret = sb_hash_buf(pair, l0 + 1 + l1, sha);
	free(pair);
	if (ret < 0)
		goto out;
	sb_sha_hex(sha, hex);
	memcpy(id, hex, 32);
	id[32] = '\0';
out:
	return ret;
}

/* "DIR/NAME", or just DIR when name is NULL; malloc'd. */
static char *state_path(const char *dir, const char *name)
{
	char *s = NULL;
	if (!name)
		return strdup(dir);
	if (asprintf(&s, "%s/%s", dir, name) < 0)
		return NULL;
	return s;
}

int sb_pship_open(const char *source, const char *target,
		  const char *state_root, const char *log_path,
		  struct sb_pship **out, struct sb_error *err)
{
	struct sb_pship *p = calloc(1, sizeof(*p));
	struct stat st[2];
	char *sroot = NULL, *scanon = NULL, *logp = NULL;
	int ret = -ENOMEM;

	if (!p)
		goto out;
	p->rootfd[0] = p->rootfd[1] = p->lockfd = -1;
	p->fine[0] = p->fine[1] = -1;
	p->keep_versions = SB_KEEP_VERSIONS;
	p->keep_days = SB_KEEP_DAYS;
	const char *given[2] = { source, target };
	for (int i = 0; i < 2; i++) {
		ret = open_root(given[i], &p->root[i], &p->rootfd[i], &st[i], err);
		if (ret < 0)
			goto out;
	}
	p->same_fs = st[0].st_dev == st[1].st_dev;
	if (st[0].st_dev == st[1].st_dev && st[0].st_ino == st[1].st_ino) {
		ret = SB_E_SAME;
		set_err(err, ret, target);
		goto out;
	}
	if (path_within(p->root[0], p->root[1]) || path_within(p->root[1], p->root[0])) {
		ret = SB_E_NESTED;
		set_err(err, ret, path_within(p->root[0], p->root[1]) ? source : target);
		goto out;
	}

	ret = -ENOMEM;
	sroot = state_root ? strdup(state_root) : default_state_root();
	if (!sroot)
		goto out;
	if (!*sroot) {
		ret = -ENOENT;
		set_err(err, ret, "(an empty state directory)");
		goto out;
	}
	if (!(scanon = canon_maybe(sroot))) {
		ret = errno ? -errno : -ENOMEM;	/* a component not a directory, not searchable... */
		set_err(err, ret, sroot);
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		if (path_within(scanon, p->root[i])) {
			ret = SB_E_STATE_INSIDE;
			set_err(err, ret, sroot);
			goto out;
		}
	}

	if ((ret = pship_id(p->root[0], p->root[1], p->id)) < 0)
		goto out;
	/* The state root holds every partnership's directory: another
	 * user able to write there could swap one for their own. */
	if ((ret = mkdir_p(scanon, 0700)) < 0 || (ret = sb_state_dir_check(scanon)) < 0) {
		set_err(err, ret, scanon);
		goto out;
	}
	ret = -ENOMEM;
	if (asprintf(&p->dir, "%s/%s", scanon, p->id) < 0) {
		p->dir = NULL;
		goto out;
	}
	const char *file = NULL;
	ret = sb_state_open_ex(p->dir, &p->state, &file);
	if (ret < 0) {
		char *what = state_path(p->dir, file);
		set_err(err, ret, what ? what : p->dir);
		free(what);
		goto out;
	}
	/* For people browsing the state directory: which pair this is. */
	char *rootsf = state_path(p->dir, "roots");
	int rfd = rootsf ? open(rootsf, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
	if (rfd >= 0) {
		dprintf(rfd, "%s\n%s\n", p->root[0], p->root[1]);
		close(rfd);
	}
	free(rootsf);
	if (log_path) {
		logp = strdup(log_path);
	} else if (asprintf(&logp, "%s/log.jsonl", scanon) < 0) {
		logp = NULL;
	}
	ret = -ENOMEM;
	if (!logp)
		goto out;
	ret = sb_log_open(logp, &p->log);
	if (ret < 0) {
		set_err(err, ret, logp);
		goto out;
	}
	ret = 0;
out:
	free(sroot);
	free(scanon);
	free(logp);
	if (ret < 0) {
		sb_pship_close(p);
		p = NULL;
	}
	*out = p;
	return ret;
}

int sb_pship_set_log(struct sb_pship *p, const char *log_path)
{
	char *def = NULL;
	struct sb_log *l;
	if (!log_path) {
		/* p->dir is the state root's subdirectory */
		const char *slash = strrchr(p->dir, '/');
		if (asprintf(&def, "%.*s/log.jsonl", (int)(slash - p->dir), p->dir) < 0)
			return -ENOMEM;
		log_path = def;
	}
	int ret = sb_log_open(log_path, &l);
	free(def);
	if (ret < 0)
		return ret;
	sb_log_close(p->log);
	p->log = l;
	return 0;
}

int sb_pship_log_note(struct sb_pship *p, const char *action, uint64_t paths,
		      const char *result, const char *reason)
{
	return sb_log_note(p->log, p->id, action, paths, result, reason);
}

void sb_pship_close(struct sb_pship *p)
{
	if (!p)
		return;
	for (int i = 0; i < 2; i++) {
		if (p->rootfd[i] >= 0)
			close(p->rootfd[i]);
		free(p->root[i]);
	}
	if (p->lockfd >= 0)
		close(p->lockfd);
	sb_log_close(p->log);
	sb_state_close(p->state);
	free(p->dir);
	free(p);
}

const char *sb_pship_root(const struct sb_pship *p, int side)
{
	return p->root[side ? 1 : 0];
}

const char *sb_pship_dir(const struct sb_pship *p)
{
	return p->dir;
}

char *sb_state_root(const char *given)
{
	return given ? strdup(given) : default_state_root();
}

const char *sb_pship_id(const struct sb_pship *p)
{
	return p->id;
}

int sb_pship_refresh_root(struct sb_pship *p, int side, int recaps)
{
	struct stat a, b;
	int ok = fstat(p->rootfd[side], &a) == 0, fd;

	if (stat(p->root[side], &b) < 0)
		return -errno;
	if (ok && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		return 0;
	if ((fd = open(p->root[side], O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -errno;
	/* In place: a thread holding the number now uses the new root. */
	int ret = dup3(fd, p->rootfd[side], O_CLOEXEC) < 0 ? -errno : 1;
	close(fd);
	if (ret == 1 && recaps) {
		p->have_caps[side] = 0;
		p->fine[side] = -1;
	}
	return ret;
}

int sb_pship_root_alive(struct sb_pship *p, int side, int deep)
{
	struct stat a, b;
	int fd, ret = 0;

	if (fstat(p->rootfd[side], &a) < 0) {
		ret = -errno;
	} else if ((fd = openat(p->rootfd[side], ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
		ret = -errno;	/* ext4 after a forced shutdown answers fstat, not open */
	} else {
		close(fd);
		if (stat(p->root[side], &b) < 0)
			ret = errno == ENOENT || errno == ENOTDIR ? SB_E_ROOT_MOVED : -errno;
		else if (a.st_dev != b.st_dev || a.st_ino != b.st_ino)
			ret = SB_E_ROOT_MOVED;
	}
	if (ret == 0 && deep) {
		char name[64];
		snprintf(name, sizeof(name), SB_TMP_PREFIX "alive.%ld", (long)getpid());
		if (mkdirat(p->rootfd[side], name, 0700) < 0 && errno != EEXIST)
			ret = errno == EIO || errno == EROFS ? -errno : 0;
		else
			unlinkat(p->rootfd[side], name, AT_REMOVEDIR);
	}
	/* Our own shortage says nothing about the partner. */
	if (ret == -ENOMEM || ret == -EMFILE || ret == -ENFILE || ret == -EINTR)
		ret = 0;
	if (ret < 0 && !p->gone) {
		p->gone = side + 1;
		p->gone_err = ret;
	}
	return ret;
}

int sb_pship_gone(const struct sb_pship *p, int *err)
{
	if (err)
		*err = p->gone_err;
	return p->gone;
}

int sb_pship_lock(struct sb_pship *p, int wait, long *holder)
{
	char *path = NULL, buf[32];
	int ret = 0;

	if (holder)
		*holder = 0;
	if (p->lockfd >= 0)
		return 0;
	if (asprintf(&path, "%s/lock", p->dir) < 0)
		return -ENOMEM;
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK) {
			ret = -errno;
			goto out;
		}
		ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
		if (holder && n > 0) {
			buf[n] = '\0';
			*holder = strtol(buf, NULL, 10);
		}
		if (!wait) {
			ret = -EWOULDBLOCK;
			goto out;
		}
		while (flock(fd, LOCK_EX) < 0) {
			if (errno != EINTR) {
				ret = -errno;
				goto out;
			}
		}
	}
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, n, 0) != n) {
		/* the pid is only a courtesy for the waiter's message */
	}
	p->lockfd = fd;
	fd = -1;
out:
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}

int sb_pship_forget(const char *source, const char *target, const char *state_root,
		    char **moved, struct sb_error *err)
{
	const char *given[2] = { source, target };
	char *root[2] = { NULL, NULL }, *sroot = NULL, *scanon = NULL, *dir = NULL;
	char *lockp = NULL, id[33], stamp[32];
	int lockfd = -1, ret = -ENOMEM;
	struct stat st;

	*moved = NULL;
	for (int i = 0; i < 2; i++) {
		if (!(root[i] = realpath(given[i], NULL))) {
			ret = -errno;
			set_err(err, ret, given[i]);
			goto out;
		}
	}
	sroot = state_root ? strdup(state_root) : default_state_root();
	if (!sroot || !(scanon = canon_maybe(sroot)))
		goto out;
	if ((ret = pship_id(root[0], root[1], id)) < 0)
		goto out;
	ret = -ENOMEM;
	if (!(dir = state_path(scanon, id)) || !(lockp = state_path(dir, "lock")))
		goto out;
	if (lstat(dir, &st) < 0 && errno == ENOENT) {
		ret = 0;	/* nothing recorded: already a first sync */
		goto out;
	}
	if ((ret = sb_state_dir_check(scanon)) < 0) {
		set_err(err, ret, scanon);
		goto out;
	}
	if ((ret = sb_state_dir_check(dir)) < 0) {
		set_err(err, ret, dir);
		goto out;
	}
	/* A reconcile or mount working on it holds the lock: moving its
	 * state away under it would lose what it records. */
	lockfd = open(lockp, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (lockfd < 0 || flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
		ret = errno == EWOULDBLOCK ? -EBUSY : errno == ELOOP ? SB_E_STATE_SYMLINK : -errno;
		set_err(err, ret, ret == SB_E_STATE_SYMLINK ? lockp : dir);
		goto out;
	}
	time_t now = time(NULL);
	struct tm tm;
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", localtime_r(&now, &tm));
	/* Renamed, never deleted: the old state can still be looked at, and
	 * put back by renaming it again. */
	for (int n = 1; n < 100; n++) {
		free(*moved);
		*moved = NULL;
		if ((n == 1 ? asprintf(moved, "%s.forgotten-%s", dir, stamp)
			    : asprintf(moved, "%s.forgotten-%s-%d", dir, stamp, n)) < 0) {
			*moved = NULL;
			ret = -ENOMEM;
			goto out;
		}
		if (renameat2(AT_FDCWD, dir, AT_FDCWD, *moved, RENAME_NOREPLACE) == 0) {
			ret = 0;
			goto out;
		}
		if (errno != EEXIST) {
			ret = -errno;
			set_err(err, ret, dir);
			goto out;
		}
	}
	ret = -EEXIST;
	set_err(err, ret, dir);
out:
	if (ret < 0) {
		free(*moved);
		*moved = NULL;
	}
	if (lockfd >= 0)
		close(lockfd);
	for (int i = 0; i < 2; i++)
		free(root[i]);
	free(sroot);
	free(scanon);
	free(dir);
	free(lockp);
	return ret;
}
