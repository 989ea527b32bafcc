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
 * length, the path bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"

static char *journal_path(const struct sb_pship *p)
{
	char *s = NULL;
	if (asprintf(&s, "%s/journal", p->dir) < 0)
		return NULL;
	return s;
}

int sb_journal_open(struct sb_pship *p, int *fd)
{
	char *path = journal_path(p);
	if (!path)
		return -ENOMEM;
	*fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	free(path);
	return *fd < 0 ? -errno : 0;
}

int sb_journal_note(int fd, char what, const char *rel)
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
	return n == (ssize_t)(len + 5) ? 0 : n < 0 ? -errno : -EIO;
}

struct open_path {
	char *path;
	long count;
};

int sb_journal_dirty(struct sb_pship *p, char ***out, size_t *nout)
{
	char *path = journal_path(p), *buf = NULL;
	struct open_path *v = NULL;
	size_t n = 0, len = 0, cap = 0;
	int fd, ret = 0;

	*out = NULL;
	*nout = 0;
	if (!path)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
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
		char what = buf[off];
		const char *rel = buf + off + 5;
		size_t k;
		for (k = 0; k < n; k++)
			if (strlen(v[k].path) == l && !memcmp(v[k].path, rel, l))
				break;
		if (k == n) {
			struct open_path *nv = realloc(v, (n + 1) * sizeof(*nv));
			if (!nv || !(nv[n].path = strndup(rel, l))) {
				if (nv)
					v = nv;
				ret = -ENOMEM;
				goto out;
			}
			v = nv;
			v[n++].count = 0;
		}
		v[k].count += what == 'W' ? 1 : -1;
		off += 5 + l;
	}
	char **res = calloc(n ? n : 1, sizeof(*res));
	if (!res) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < n; k++) {
		if (v[k].count > 0) {
			res[(*nout)++] = v[k].path;
			v[k].path = NULL;
		}
	}
	*out = res;
out:
	for (size_t k = 0; k < n; k++)
		free(v[k].path);
	free(v);
	free(buf);
	close(fd);
	return ret;
}

int sb_journal_clear(struct sb_pship *p)
{
	char *path = journal_path(p);
	if (!path)
		return -ENOMEM;
	int ret = unlink(path) < 0 && errno != ENOENT ? -errno : 0;
	free(path);
	return ret;
}
