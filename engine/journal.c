/*
 * The mount's write journal: which files are open for writing through the
 * mount. A mount killed during a write leaves the two sides of the file
 * different, but only by the write in flight: every write the application
 * saw complete is on both. The next reconcile finds the file still "open"
 * here and lets the source's version win instead of reporting a conflict
 * nobody made. Records are appended with
 * one write(2) each and never synced: a killed process loses nothing from
 * the page cache, and after a power loss the sync-before-commit rule of
 * the state already holds.
 *
 * Record: one byte 'W' (opened for writing) or 'C' (closed), a 4-byte
 * length, the path bytes. A mount that runs for long rewrites it now and
 * then with the files open at that time (sb_journal_rewrite), so it stays
 * small whatever the traffic.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static char *journal_path(const struct sb_pship *p, const char *suffix)
{
	char *s = NULL;
	if (asprintf(&s, "%s/journal%s", p->dir, suffix) < 0)
		return NULL;
	return s;
}

int sb_journal_open(struct sb_pship *p, int *fd)
{
	char *path = journal_path(p, "");
	if (!path)
		return -ENOMEM;
	*fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	free(path);
	return *fd < 0 ? -errno : 0;
}

long sb_journal_note(int fd, char what, const char *rel)
{
	size_t len = strlen(rel);
	uint32_t l = (uint32_t)len;
	char *buf = malloc(len + 5);
	if (!buf)
		return -ENOMEM;
	buf[0] = what;
	memcpy(buf + 1, &l, 4);
	memcpy(buf + 5, rel, len);
	ssize_t n = write(fd, buf, len + 5);
	free(buf);
	return n == (ssize_t)(len + 5) ? (long)(len + 5) : n < 0 ? -errno : -EIO;
}

long sb_journal_rewrite(struct sb_pship *p, int fd, const char *const *paths, size_t n)
{
	char *path = journal_path(p, ""), *tmp = journal_path(p, ".new");
	long ret = 0, size = 0;
	int nfd = -1;

	if (!path || !tmp) {
		ret = -ENOMEM;
		goto out;
	}
	nfd = open(tmp, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (nfd < 0) {
		ret = -errno;
		goto out;
	}
	for (size_t k = 0; k < n; k++) {
		if ((ret = sb_journal_note(nfd, 'W', paths[k])) < 0)
			goto out;
		size += ret;
	}
	/* the rename replaces the old journal whole or not at all */
	if (rename(tmp, path) < 0 || dup3(nfd, fd, O_CLOEXEC) < 0) {
		ret = -errno;
		goto out;
	}
	ret = size;
out:
	if (nfd >= 0)
		close(nfd);
	if (ret < 0 && tmp)
		unlink(tmp);
	free(path);
	free(tmp);
	return ret;
}

struct rec {
	const char *path;
	uint32_t len;
	int delta;
};

static int rec_cmp(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;
	int c = memcmp(x->path, y->path, x->len < y->len ? x->len : y->len);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

int sb_journal_dirty(struct sb_pship *p, char ***out, size_t *nout)
{
	char *path = journal_path(p, ""), *buf = NULL;
	struct rec *v = NULL;
	char **res = NULL;
	size_t n = 0, len = 0, cap = 0, vcap = 0;
	int fd, ret = 0;

	*out = NULL;
	*nout = 0;
	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	free(path);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	for (;;) {
		if (len == cap) {
			cap = cap ? 2 * cap : 65536;
			char *nb = realloc(buf, cap);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			buf = nb;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0) {
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		len += r;
	}
	for (size_t off = 0; off + 5 <= len;) {
		uint32_t l;
		memcpy(&l, buf + off + 1, 4);
		if (off + 5 + l > len)
			break;	/* a record cut short by the kill */
		if (n == vcap) {
			vcap = vcap ? 2 * vcap : 1024;
			struct rec *nv = realloc(v, vcap * sizeof(*nv));
			if (!nv) {
				ret = -ENOMEM;
				goto out;
			}
			v = nv;
		}
		v[n++] = (struct rec){ buf + off + 5, l, buf[off] == 'W' ? 1 : -1 };
		off += 5 + l;
	}
	/* sorted, each path's records are adjacent: a path is still open
	 * when it has more 'W' than 'C' records */
	if (n)
		qsort(v, n, sizeof(*v), rec_cmp);
	if (!(res = calloc(n ? n : 1, sizeof(*res)))) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < n;) {
		size_t e = k;
		long count = 0;
		while (e < n && rec_cmp(&v[k], &v[e]) == 0)
			count += v[e++].delta;
		if (count > 0 && !(res[(*nout)++] = strndup(v[k].path, v[k].len))) {
			ret = -ENOMEM;
			goto out;
		}
		k = e;
	}
	*out = res;
	res = NULL;
out:
	if (res) {
		for (size_t k = 0; k < *nout; k++)
			free(res[k]);
		free(res);
		*nout = 0;
	}
	free(v);
	free(buf);
	close(fd);
	return ret;
}

int sb_journal_clear(struct sb_pship *p)
{
	char *path = journal_path(p, "");
	if (!path)
		return -ENOMEM;
	int ret = unlink(path) < 0 && errno != ENOENT ? -errno : 0;
	free(path);
	return ret;
}
