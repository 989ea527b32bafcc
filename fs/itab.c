/*
 * The mount's inode table (see itab.h): nodes keyed by the view's inode
 * number, names keyed by (parent node, name), both in hash tables.
 *
 * Lifetime: a node lives while the kernel holds it (nlookup), while names
 * lead through it to others (kids), or while handles are open on it. A
 * name lives while both its ends do: it is dropped with its child, and a
 * parent stays as long as it has one.
 */
#define FUSE_USE_VERSION 35
#include "itab.h"

#include <errno.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct name {
	struct node *parent, *child;
	struct name *hnext;	/* in its bucket of t->names */
	struct name *sib;	/* the child's next name */
	size_t hash;
	char s[];
};

struct ofile {
	struct sb_file *f;
	struct ofile *next;
	unsigned refs;		/* itab_with_file calls using f now */
};

struct node {
	uint64_t vino;
	mode_t type;
	uint64_t nlookup;	/* the kernel's lookup count */
	size_t kids;		/* names whose parent it is */
	int keyed;		/* in t->byino: no newer node took its vino */
	struct node *inext;	/* in its bucket of t->byino */
	struct node *anext, **aprev;	/* every node but the root, for itab_free */
	struct name *names;	/* its own */
	struct ofile *files;
};

/* Everything below the mutex is protected by it. */
struct itab {
	pthread_mutex_t mu;
	pthread_cond_t unused;	/* an ofile's refs fell to 0 */
	struct node root;
	struct name **names;
	size_t ncap, nn;
	struct node **byino;
	size_t icap, in;
	struct node *all;
};

static struct node *node_of(struct itab *t, uint64_t id)
{
	return id == FUSE_ROOT_ID ? &t->root : (struct node *)(uintptr_t)id;
}

static uint64_t id_of(struct itab *t, struct node *n)
{
	return n == &t->root ? FUSE_ROOT_ID : (uint64_t)(uintptr_t)n;
}

static size_t name_hash(const struct node *parent, const char *s)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)(uintptr_t)parent;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)(h ^ h >> 29);
}

static size_t ino_hash(uint64_t vino)
{
	return (size_t)((vino * 0x9e3779b97f4a7c15ULL) >> 17);
}

/* Doubles a table of chains; 0 or -ENOMEM (the old one then stays). */
static int grow_names(struct itab *t)
{
	size_t cap = t->ncap ? t->ncap * 2 : 1024;
	struct name **b = calloc(cap, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->ncap; i++)
		for (struct name *nm = t->names[i], *next; nm; nm = next) {
			next = nm->hnext;
			nm->hnext = b[nm->hash & (cap - 1)];
			b[nm->hash & (cap - 1)] = nm;
		}
	free(t->names);
	t->names = b;
	t->ncap = cap;
	return 0;
}

static int grow_ino(struct itab *t)
{
	size_t cap = t->icap ? t->icap * 2 : 1024;
	struct node **b = calloc(cap, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->icap; i++)
		for (struct node *n = t->byino[i], *next; n; n = next) {
			next = n->inext;
			n->inext = b[ino_hash(n->vino) & (cap - 1)];
			b[ino_hash(n->vino) & (cap - 1)] = n;
		}
	free(t->byino);
	t->byino = b;
	t->icap = cap;
	return 0;
}

static struct name *name_find(struct itab *t, struct node *parent, const char *s)
{
	if (!t->ncap)
		return NULL;
	size_t h = name_hash(parent, s);
	for (struct name *nm = t->names[h & (t->ncap - 1)]; nm; nm = nm->hnext)
		if (nm->hash == h && nm->parent == parent && !strcmp(nm->s, s))
			return nm;
	return NULL;
}

static struct node *ino_find(struct itab *t, uint64_t vino)
{
	if (!t->icap)
		return NULL;
	for (struct node *n = t->byino[ino_hash(vino) & (t->icap - 1)]; n; n = n->inext)
		if (n->vino == vino)
			return n;
	return NULL;
}

static void unkey(struct itab *t, struct node *n)
{
	if (!n->keyed)
		return;
	struct node **pp = &t->byino[ino_hash(n->vino) & (t->icap - 1)];
	while (*pp != n)
		pp = &(*pp)->inext;
	*pp = n->inext;
	n->keyed = 0;
	t->in--;
}

static int name_add(struct itab *t, struct node *parent, struct node *child, const char *s)
{
	size_t len = strlen(s);
	struct name *nm;

	if (t->nn >= t->ncap && grow_names(t) < 0 && !t->ncap)
		return -ENOMEM;
	if (!(nm = malloc(sizeof(*nm) + len + 1)))
		return -ENOMEM;
	memcpy(nm->s, s, len + 1);
	nm->parent = parent;
	nm->child = child;
	nm->hash = name_hash(parent, s);
	nm->hnext = t->names[nm->hash & (t->ncap - 1)];
	t->names[nm->hash & (t->ncap - 1)] = nm;
	nm->sib = child->names;
	child->names = nm;
	parent->kids++;
	t->nn++;
	return 0;
}

/* Takes nm out of every list and frees it; frees no node. */
static void name_unlink(struct itab *t, struct name *nm)
{
	struct name **pp = &t->names[nm->hash & (t->ncap - 1)];
	while (*pp != nm)
		pp = &(*pp)->hnext;
	*pp = nm->hnext;
	for (pp = &nm->child->names; *pp != nm; pp = &(*pp)->sib)
		;
	*pp = nm->sib;
	nm->parent->kids--;
	t->nn--;
	free(nm);
}

/* Frees n if nothing holds it any longer, and then what held only it. */
static void maybe_free(struct itab *t, struct node *n)
{
	if (n == &t->root || n->nlookup || n->kids || n->files)
		return;
	while (n->names) {
		struct node *p = n->names->parent;
		name_unlink(t, n->names);
		maybe_free(t, p);	/* not n: n has no kids */
	}
	unkey(t, n);
	*n->aprev = n->anext;
	if (n->anext)
		n->anext->aprev = n->aprev;
	free(n);
}

static void name_del(struct itab *t, struct name *nm)
{
	struct node *p = nm->parent, *c = nm->child;
	p->kids++;	/* holds p while c goes, whose other names may be under it */
	name_unlink(t, nm);
	maybe_free(t, c);
	p->kids--;
	maybe_free(t, p);
}

/* Makes parent/s name child, or nothing when child is NULL. */
static int rebind(struct itab *t, struct node *parent, const char *s, struct node *child)
{
	struct name *old = name_find(t, parent, s);
	if (old && old->child == child)
		return 0;
	if (child && name_add(t, parent, child, s) < 0)
		return -ENOMEM;
	if (old)
		name_del(t, old);
	return 0;
}

int itab_new(struct itab **out)
{
	struct itab *t = calloc(1, sizeof(*t));

	*out = NULL;
	if (!t)
		return -ENOMEM;
	pthread_mutex_init(&t->mu, NULL);
	pthread_cond_init(&t->unused, NULL);
	t->root.nlookup = 1;
	t->root.type = S_IFDIR;
	*out = t;
	return 0;
}

void itab_free(struct itab *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->ncap; i++)
		for (struct name *nm = t->names[i], *next; nm; nm = next) {
			next = nm->hnext;
			free(nm);
		}
	for (struct node *n = t->all, *next; n; n = next) {
		next = n->anext;
		for (struct ofile *o = n->files, *on; o; o = on) {
			on = o->next;
			free(o);
		}
		free(n);
	}
	for (struct ofile *o = t->root.files, *on; o; o = on) {
		on = o->next;
		free(o);
	}
	free(t->names);
	free(t->byino);
	pthread_cond_destroy(&t->unused);
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* The path of n, under t->mu: 0, -ENOENT, -ENOMEM, -ENAMETOOLONG. */
static int path_locked(struct itab *t, struct node *n, const char *name, char **out)
{
	size_t len = 0, parts = 0, depth = 0;
	struct node *c;
	char *buf;

	if (name) {
		len += strlen(name);
		parts++;
	}
	for (c = n; c != &t->root; c = c->names->parent) {
		if (!c->names)
			return -ENOENT;
		len += strlen(c->names->s);
		parts++;
		if (++depth > PATH_MAX / 2)	/* deeper than any path, so a loop */
			return -ENAMETOOLONG;
	}
	len += parts ? parts - 1 : 0;
	if (!(buf = malloc(len + 1)))
		return -ENOMEM;
	size_t pos = len;
	buf[pos] = '\0';
	if (name) {
		pos -= strlen(name);
		memcpy(buf + pos, name, strlen(name));
	}
	for (c = n; c != &t->root; c = c->names->parent) {
		if (pos < len)	/* a part to its right */
			buf[--pos] = '/';
		size_t l = strlen(c->names->s);
		pos -= l;
		memcpy(buf + pos, c->names->s, l);
	}
	*out = buf;
	return 0;
}

int itab_path(struct itab *t, uint64_t id, const char *name, char **out)
{
	*out = NULL;
	if (!id)
		return -ESTALE;
	pthread_mutex_lock(&t->mu);
	int ret = path_locked(t, node_of(t, id), name, out);
	pthread_mutex_unlock(&t->mu);
	return ret;
}

/* Whether n is known as parent/s. */
static int named(const struct node *n, const struct node *parent, const char *s)
{
	for (const struct name *nm = n->names; nm; nm = nm->sib)
		if (nm->parent == parent && !strcmp(nm->s, s))
			return 1;
	return 0;
}

static struct node *node_new(struct itab *t, uint64_t vino, mode_t type)
{
	struct node *n;
	if (t->in >= t->icap && grow_ino(t) < 0 && !t->icap)
		return NULL;
	if (!(n = calloc(1, sizeof(*n))))
		return NULL;
	n->vino = vino;
	n->type = type;
	n->keyed = 1;
	n->inext = t->byino[ino_hash(vino) & (t->icap - 1)];
	t->byino[ino_hash(vino) & (t->icap - 1)] = n;
	t->in++;
	n->anext = t->all;
	n->aprev = &t->all;
	if (t->all)
		t->all->aprev = &n->anext;
	t->all = n;
	return n;
}

int itab_enter(struct itab *t, uint64_t parent, const char *name, uint64_t vino, mode_t type,
	       int how, uint64_t *id, char **other)
{
	int ret = -ENOMEM;

	type &= S_IFMT;
	pthread_mutex_lock(&t->mu);
	struct node *p = node_of(t, parent), *n = ino_find(t, vino);
	if (n && (n->type != type || (!named(n, p, name) && (how == ITAB_NEW || !n->names)))) {
		unkey(t, n);	/* another file's, or no more this one's */
		n = NULL;
	}
	if (n && how == ITAB_ASK && !named(n, p, name)) {
		ret = path_locked(t, n, NULL, other);
		ret = ret < 0 ? ret : 1;
		goto out;
	}
	if (!n && !(n = node_new(t, vino, type)))
		goto out;
	n->nlookup++;
	if (rebind(t, p, name, n) < 0) {
		n->nlookup--;
		maybe_free(t, n);
		goto out;
	}
	*id = id_of(t, n);
	ret = 0;
out:
	pthread_mutex_unlock(&t->mu);
	return ret;
}

void itab_forget(struct itab *t, uint64_t id, uint64_t n)
{
	pthread_mutex_lock(&t->mu);
	struct node *nd = node_of(t, id);
	if (nd != &t->root) {
		nd->nlookup = nd->nlookup > n ? nd->nlookup - n : 0;
		maybe_free(t, nd);
	}
	pthread_mutex_unlock(&t->mu);
}

void itab_unlink(struct itab *t, uint64_t parent, const char *name)
{
	pthread_mutex_lock(&t->mu);
	struct name *nm = name_find(t, node_of(t, parent), name);
	if (nm)
		name_del(t, nm);
	pthread_mutex_unlock(&t->mu);
}

/*
 * A name that cannot be added for want of memory is only forgotten: the
 * node then has no path, and the kernel's next request on it answers
 * ENOENT until it looks the name up again.
 */
void itab_rename(struct itab *t, uint64_t p1, const char *n1, uint64_t p2, const char *n2,
		 int exchange)
{
	pthread_mutex_lock(&t->mu);
	struct node *a = node_of(t, p1), *b = node_of(t, p2);
	struct name *x = name_find(t, a, n1), *y = name_find(t, b, n2);
	struct node *cx = x ? x->child : NULL, *cy = y ? y->child : NULL;
	/* Held while their names move, as a name dropped could free them. */
	if (cx)
		cx->nlookup++;
	if (cy)
		cy->nlookup++;
	rebind(t, b, n2, cx);
	rebind(t, a, n1, exchange ? cy : NULL);
	if (cx) {
		cx->nlookup--;
		maybe_free(t, cx);
	}
	if (cy) {
		cy->nlookup--;
		maybe_free(t, cy);
	}
	pthread_mutex_unlock(&t->mu);
}

void itab_find(struct itab *t, const char *path, uint64_t *parent, uint64_t *id)
{
	char comp[NAME_MAX + 1];

	*parent = *id = 0;
	pthread_mutex_lock(&t->mu);
	struct node *up = NULL, *n = &t->root;
	const char *s = path;
	while (*s && n) {
		const char *e = strchrnul(s, '/');
		if ((size_t)(e - s) > NAME_MAX) {
			n = up = NULL;
			break;
		}
		memcpy(comp, s, (size_t)(e - s));
		comp[e - s] = '\0';
		struct name *nm = name_find(t, n, comp);
		up = n;
		n = nm ? nm->child : NULL;
		s = *e ? e + 1 : e;
	}
	if (up && !*s)	/* the last component's directory was reached */
		*parent = id_of(t, up);
	if (n)
		*id = id_of(t, n);
	pthread_mutex_unlock(&t->mu);
}

int itab_opened(struct itab *t, uint64_t id, struct sb_file *f)
{
	struct ofile *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->f = f;
	pthread_mutex_lock(&t->mu);
	struct node *n = node_of(t, id);
	o->next = n->files;
	n->files = o;
	pthread_mutex_unlock(&t->mu);
	return 0;
}

/* Waits for the itab_with_file calls using f: f is released next. */
void itab_closed(struct itab *t, uint64_t id, struct sb_file *f)
{
	struct ofile *gone = NULL;

	pthread_mutex_lock(&t->mu);
	struct node *n = node_of(t, id);
	for (struct ofile **pp = &n->files; *pp; pp = &(*pp)->next)
		if ((*pp)->f == f) {
			gone = *pp;
			*pp = gone->next;
			break;
		}
	while (gone && gone->refs)
		pthread_cond_wait(&t->unused, &t->mu);
	if (gone)
		maybe_free(t, n);
	pthread_mutex_unlock(&t->mu);
	free(gone);
}

/* fn runs without the table's lock: it takes the mirror's, which a
 * reconcile holds while it has the kernel's caches dropped through here. */
int itab_with_file(struct itab *t, uint64_t id, int (*fn)(struct sb_file *f, void *arg),
		   void *arg)
{
	pthread_mutex_lock(&t->mu);
	struct ofile *o = node_of(t, id)->files;
	if (o)
		o->refs++;
	pthread_mutex_unlock(&t->mu);
	if (!o)
		return -ENOENT;
	int ret = fn(o->f, arg);
	pthread_mutex_lock(&t->mu);
	if (!--o->refs)
		pthread_cond_broadcast(&t->unused);
	pthread_mutex_unlock(&t->mu);
	return ret;
}
