#define FUSE_USE_VERSION 35

#include "links.h"

#include <errno.h>
#include <fuse.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Names kept: a ring, the oldest forgotten first. A forgotten name only
 * means a stale count for up to the attribute timeout, as without this. */
#define NAMES 1024

struct name {
	uint64_t ino;
	char *path;
};

struct links {
	struct fuse *f;
	pthread_mutex_t mu;
	struct name names[NAMES];
	size_t next, used;
};

int links_new(struct fuse *f, struct links **out)
{
	struct links *l = calloc(1, sizeof(*l));

	*out = NULL;
	if (!l)
		return -ENOMEM;
	l->f = f;
	pthread_mutex_init(&l->mu, NULL);
	*out = l;
	return 0;
}

void links_free(struct links *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < NAMES; i++)
		free(l->names[i].path);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

/* Under l->mu. */
static struct name *find(struct links *l, const char *path)
{
	for (size_t i = 0; i < NAMES; i++)
		if (l->names[i].path && !strcmp(l->names[i].path, path))
			return &l->names[i];
	return NULL;
}

void links_seen(struct links *l, const char *path, const struct stat *st)
{
	/* The usual case, on every getattr, takes no lock: no hard links
	 * anywhere. A stale count here only keeps a name a while longer. */
	if (!l || S_ISDIR(st->st_mode) ||
	    (st->st_nlink <= 1 && !__atomic_load_n(&l->used, __ATOMIC_RELAXED)))
		return;
	pthread_mutex_lock(&l->mu);
	struct name *n = find(l, path);
	if (st->st_nlink > 1 && !n) {
		char *p = strdup(path);
		if (p) {
			n = &l->names[l->next++ % NAMES];
			if (n->path)
				free(n->path);
			else
				__atomic_add_fetch(&l->used, 1, __ATOMIC_RELAXED);
			n->path = p;
		}
	}
	if (n && st->st_nlink > 1) {
		n->ino = st->st_ino;
	} else if (n) {	/* linked once now: nothing to keep */
		free(n->path);
		n->path = NULL;
		__atomic_sub_fetch(&l->used, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&l->mu);
}

uint64_t links_ino(struct links *l, const char *path)
{
	/* every unlink asks: no lock and no scan while no hard link is known */
	if (!l || !__atomic_load_n(&l->used, __ATOMIC_RELAXED))
		return 0;
	pthread_mutex_lock(&l->mu);
	struct name *n = find(l, path);
	uint64_t ino = n ? n->ino : 0;
	pthread_mutex_unlock(&l->mu);
	return ino;
}

/* Few names: a file linked more often keeps the rest stale a while. */
#define REFRESH_MAX 16

void links_changed(struct links *l, uint64_t ino, const char *by, int gone)
{
	char *todo[REFRESH_MAX];
	size_t n = 0;

	if (!l || !ino)
		return;
	pthread_mutex_lock(&l->mu);
	for (size_t i = 0; i < NAMES; i++) {
		struct name *e = &l->names[i];
		if (!e->path || e->ino != ino)
			continue;
		if (!strcmp(e->path, by)) {
			if (gone) {
				free(e->path);
				e->path = NULL;
				__atomic_sub_fetch(&l->used, 1, __ATOMIC_RELAXED);
			}
			continue;
		}
		if (n < REFRESH_MAX && (todo[n] = strdup(e->path)))
			n++;
	}
	pthread_mutex_unlock(&l->mu);
	/* Before the reply, so the caller's next stat sees the new count.
	 * Attributes only matter, but libfuse's path API drops the pages
	 * too; they are read again on demand. */
	for (size_t i = 0; i < n; i++) {
		fuse_invalidate_path(l->f, todo[i]);	/* not cached: nothing to do */
		free(todo[i]);
	}
}
