/*
 * Listings. A directory's listing in the view is built by reading both
 * sides once, without sorting: the source's names in its own order, then
 * the target's that the source lacks (a hash set finds them). The result is
 * kept (see dir_stamp) and served again while neither side's directory nor
 * the conflict list changed, so a directory listed again costs two fstat
 * calls instead of two full reads.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ignore.h"
#include "mirror_int.h"

/*
 * What a directory's listing in the view depends on: both sides' directories
 * and the conflict list. Compared whole (memcmp), so always zeroed first.
 */
struct dstamp {
	uint64_t gen;
	struct {
		uint64_t dev, ino, size, nlink;
		int64_t mtime_ns, ctime_ns;
	} side[2];
};

/* A listing kept for the next readdir of the same directory. */
struct listing {
	uint64_t key;			/* hash of the view path */
	uint64_t when_ns;		/* CLOCK_MONOTONIC, when taken */
	struct dstamp st;		/* of the directory, before it was read */
	struct blob *blob;		/* NULL: empty slot */
};

#define LISTINGS 64
#define LISTING_BYTES (32 << 20)	/* all kept listings together */
/* A kept listing is read again at least this often, as a bound on what an
 * unforeseen way of changing a directory without changing its stamp could
 * cost: edits made outside show within the attribute timeout anyway. */
#define LISTING_TTL_NS (5 * 1000000000ULL)

/* One name of a directory on either side. */
struct dent {
	uint32_t name;			/* offset in the names buffer */
	uint8_t has;			/* bit i: side i has it */
	uint8_t type[2];
	uint64_t ino[2];
};

struct dread {
	struct dent *v;
	size_t n, cap;
	char *names;
	size_t nlen, ncap;
	uint32_t *slot;			/* hash set of names read (index + 1): the
					 * source's, or all where conflicts need it */
	size_t nslot;
};

/* A finished listing: records of [ino u64][type u8][name NUL]. */
struct blob {
	int refs;			/* under lmu */
	size_t len;
	char data[];
};

static void blob_put(struct sb_mirror *m, struct blob *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&m->lmu);
	int last = --b->refs == 0;
	pthread_mutex_unlock(&m->lmu);
	if (last)
		free(b);
}

static uint64_t name_hash(const char *s, size_t n)
{
	uint64_t h = 14695981039346656037ULL;	/* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
	return h;
}

static int dread_add(struct dread *r, const char *name, size_t nl, int side,
		     unsigned char type, uint64_t ino)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 256;
		struct dent *v = realloc(r->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	if (r->nlen + nl + 1 > r->ncap) {
		size_t cap = r->ncap ? 2 * r->ncap : 8192;
		while (cap < r->nlen + nl + 1)
			cap *= 2;
		char *p = realloc(r->names, cap);
		if (!p)
			return -ENOMEM;
		r->names = p;
		r->ncap = cap;
	}
	if (r->nlen > UINT32_MAX - nl - 1 || r->n >= UINT32_MAX)
		return -EOVERFLOW;
	struct dent *e = &r->v[r->n++];
	memset(e, 0, sizeof(*e));
	e->name = (uint32_t)r->nlen;
	e->has = (uint8_t)(1 << side);
	e->type[side] = type;
	e->ino[side] = ino;
	memcpy(r->names + r->nlen, name, nl + 1);
	r->nlen += nl + 1;
	return 0;
}

/* The indexed entry called name, or NULL. */
static struct dent *dread_find(struct dread *r, const char *name, size_t nl)
{
	if (!r->nslot)
		return NULL;
	for (size_t i = name_hash(name, nl) & (r->nslot - 1);; i = (i + 1) & (r->nslot - 1)) {
		if (!r->slot[i])
			return NULL;
		struct dent *e = &r->v[r->slot[i] - 1];
		if (!strcmp(r->names + e->name, name))
			return e;
	}
}

static int dread_index(struct dread *r)
{
	size_t n = 16;
	while (n < 2 * r->n)
		n *= 2;
	if (!(r->slot = calloc(n, sizeof(*r->slot))))
		return -ENOMEM;
	r->nslot = n;
	for (size_t k = 0; k < r->n; k++) {
		const char *name = r->names + r->v[k].name;
		size_t i = name_hash(name, strlen(name)) & (n - 1);
		while (r->slot[i])
			i = (i + 1) & (n - 1);
		r->slot[i] = (uint32_t)(k + 1);
	}
	return 0;
}

/* Whether a name only the target has is hidden: it is ignored, and the
 * view shows what is ignored from the source. */
static int hidden(struct sb_mirror *m, int dfd, const char *rel, const char *name,
		  unsigned char type)
{
	size_t rl = strlen(rel), nl = strlen(name);
	char *full = malloc(rl + nl + 2);
	struct stat st;
	if (!full)
		return 0;
	memcpy(full, rel, rl);
	full[rl] = '/';
	memcpy(full + rl + !!rl, name, nl + 1);
	int k = sb_ignore_kinds(m->ig, full, rl + !!rl + nl);
	free(full);
	if (k == 1 || k == 2) {
		if (type == DT_UNKNOWN && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
			type = S_ISDIR(st.st_mode) ? DT_DIR : DT_REG;
		return !!(k & (type == DT_DIR ? 2 : 1));
	}
	return k != 0;
}

/* Reads side i's directory rel into r; -ENOENT if that side has none.
 * hide: the target's ignored names are left out. */
static int dread_side(struct sb_mirror *m, struct dread *r, int i, const char *rel, int hide)
{
	int fd, ret = sb_open_dir(m->p->rootfd[i], rel, strlen(rel), &fd);
	if (ret < 0)
		return ret == -ENOTDIR ? -ENOENT : ret;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	errno = 0;
	while (ret == 0 && (de = readdir(d))) {
		const char *n = de->d_name;
		if ((n[0] == '.' && (!n[1] || (n[1] == '.' && !n[2]))) ||
		    !strncmp(n, SB_TMP_PREFIX, sizeof(SB_TMP_PREFIX) - 1) ||
		    (!*rel && !strcmp(n, SB_VERSIONS_DIR)))
			continue;
		size_t nl = strlen(n);
		uint64_t ino = SB_VIEW_INO((uint64_t)de->d_ino, i);
		struct dent *e = i == SB_TGT ? dread_find(r, n, nl) : NULL;
		if (e) {
			e->has |= 1 << SB_TGT;
			e->type[SB_TGT] = de->d_type;
			e->ino[SB_TGT] = ino;
		} else if (hide && hidden(m, fd, rel, n, de->d_type)) {
			/* not shown */
		} else {
			ret = dread_add(r, n, nl, i, de->d_type, ino);
		}
		errno = 0;
	}
	if (ret == 0 && errno)
		ret = -errno;
	closedir(d);
	return ret;
}

static int blob_add(struct blob **bp, size_t *cap, const char *name, size_t nl,
		    const char *suf, unsigned char type, uint64_t ino)
{
	struct blob *b = *bp;
	size_t sl = suf ? strlen(suf) : 0, need = sizeof(ino) + 1 + nl + sl + 1;
	if (b->len + need > *cap) {	/* conflict suffixes make it longer */
		size_t c = 2 * *cap;
		while (c < b->len + need)
			c *= 2;
		struct blob *nb = realloc(b, sizeof(*nb) + c);
		if (!nb)
			return -ENOMEM;
		*bp = b = nb;
		*cap = c;
	}
	char *p = b->data + b->len;
	memcpy(p, &ino, sizeof(ino));
	p[sizeof(ino)] = (char)type;
	memcpy(p + sizeof(ino) + 1, name, nl);
	if (sl)
		memcpy(p + sizeof(ino) + 1 + nl, suf, sl);
	p[sizeof(ino) + 1 + nl + sl] = '\0';
	b->len += need;
	return 0;
}

/*
 * The suffix under which the entry of one side of a conflicted name is
 * listed (see is_entry), or NULL when both names are taken by real entries
 * (the conflict is then left to `sbfs resolve`). alt: room for the longer
 * suffix.
 */
static const char *entry_name(struct dread *r, const char *name, size_t nl,
			      const char *suf, char *alt)
{
	size_t sl = strlen(suf);
	if (nl + sl + 1 > NAME_MAX)
		return NULL;
	memcpy(alt, name, nl);
	memcpy(alt + nl, suf, sl + 1);
	if (!dread_find(r, alt, nl + sl))
		return suf;
	alt[nl + sl] = '~';
	alt[nl + sl + 1] = '\0';
	if (dread_find(r, alt, nl + sl + 1))
		return NULL;
	memcpy(alt, suf, sl);
	memcpy(alt + sl, "~", 2);
	return alt;
}

/* The listing of view path rel (mapped: rel, side) as a blob. */
static int build_listing(struct sb_mirror *m, const char *rel, int side, struct blob **out)
{
	struct dread r = { 0 };
	struct blob *b = NULL;
	size_t cap = 0, plen = strlen(rel);
	char *full = NULL;
	int ret = 0, any = 0;

	*out = NULL;
	for (int i = 0; i < 2; i++) {
		if (side >= 0 && i != side)
			continue;
		if (i == SB_TGT && side < 0 && (ret = dread_index(&r)) < 0)
			goto out;
		ret = dread_side(m, &r, i, rel, i == SB_TGT && side < 0 && m->ig);
		if (ret == -ENOENT)
			continue;
		if (ret < 0)
			goto out;
		any = 1;
	}
	ret = any ? 0 : -ENOENT;
	if (ret < 0 || !(full = malloc(plen + NAME_MAX + 2))) {
		ret = ret < 0 ? ret : -ENOMEM;
		goto out;
	}
	memcpy(full, rel, plen);
	if (plen)
		full[plen++] = '/';
	/* sized for the names read, so that it seldom grows (and an empty
	 * directory still has one) */
	cap = r.nlen + r.n * (sizeof(uint64_t) + 1) + 64;
	if (!(b = malloc(sizeof(*b) + cap))) {
		ret = -ENOMEM;
		goto out;
	}
	b->len = 0;
	pthread_rwlock_rdlock(&m->clock);
	/* conflict entries must not take a real entry's name: all are indexed */
	if (m->nconf && side < 0 && r.n) {
		free(r.slot);
		r.slot = NULL;
		ret = dread_index(&r);
	}
	for (size_t k = 0; ret == 0 && k < r.n; k++) {
		const struct dent *e = &r.v[k];
		const char *name = r.names + e->name;
		size_t nl = strlen(name);
		char alt[NAME_MAX + 2];
		int s0 = e->has & 1 ? SB_SRC : SB_TGT;
		if (!m->nconf || side >= 0 || nl > NAME_MAX) {
			ret = blob_add(&b, &cap, name, nl, NULL, e->type[s0], e->ino[s0]);
			continue;
		}
		memcpy(full + plen, name, nl);
		if (!sb_mi_in_conflict(m, full, plen + nl)) {
			ret = blob_add(&b, &cap, name, nl, NULL, e->type[s0], e->ino[s0]);
			continue;
		}
		for (int i = 0; ret == 0 && i < 2; i++) {
			const char *suf = i == SB_SRC ? SUF_SRC : SUF_TGT;
			if (!(e->has & (1 << i)) ||
			    !(suf = entry_name(&r, name, nl, suf, alt)))
				continue;
			ret = blob_add(&b, &cap, name, nl, suf, e->type[i], e->ino[i]);
		}
	}
	pthread_rwlock_unlock(&m->clock);
	if (ret == 0) {
		b->refs = 1;
		*out = b;
		b = NULL;
	}
out:
	free(b);
	free(full);
	free(r.v);
	free(r.names);
	free(r.slot);
	return ret;
}

/*
 * Takes the stamp of the directory rel shows (side as sb_mi_map gives it).
 * Returns whether a change made after now is sure to change the stamp:
 * not when either side's timestamps are so recent that a change could get
 * the same ones (coarse kernel clocks; whole seconds, as FAT's 2 s).
 */
static int dir_stamp(struct sb_mirror *m, const char *rel, int side, struct dstamp *d)
{
	int trusted = 1;
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	for (int i = 0; i < 2; i++) {
		struct stat st;
		int fd;
		if ((side >= 0 && i != side) ||
		    sb_open_dir(m->p->rootfd[i], rel, strlen(rel), &fd) < 0)
			continue;
		if (fstat(fd, &st) == 0) {
			d->side[i].dev = st.st_dev;
			d->side[i].ino = st.st_ino;
			d->side[i].size = (uint64_t)st.st_size;
			d->side[i].nlink = st.st_nlink;
			d->side[i].mtime_ns = sb_mi_ts_ns(&st.st_mtim);
			d->side[i].ctime_ns = sb_mi_ts_ns(&st.st_ctim);
			int64_t last = d->side[i].mtime_ns > d->side[i].ctime_ns ?
				       d->side[i].mtime_ns : d->side[i].ctime_ns;
			int fine = st.st_mtim.tv_nsec || st.st_ctim.tv_nsec;
			if (sb_mi_ts_ns(&now) - last < (fine ? 100000000 : 3000000000LL))
				trusted = 0;
		} else {
			trusted = 0;
		}
		close(fd);
	}
	return trusted;
}

/* Keeps b as the listing of slot l (under lmu), within the memory budget. */
static void listing_keep(struct sb_mirror *m, struct listing *l, uint64_t key,
			 const struct dstamp *d, uint64_t now_ns, struct blob *b)
{
	if (l->blob) {
		m->lbytes -= l->blob->len;
		if (--l->blob->refs == 0)
			free(l->blob);
		l->blob = NULL;
	}
	if (m->lbytes + b->len > LISTING_BYTES)
		return;
	b->refs++;
	l->blob = b;
	l->key = key;
	l->st = *d;
	l->when_ns = now_ns;
	m->lbytes += b->len;
}

/* The listing of the directory shown at path: the kept one while it is
 * good, else read now (and kept if its stamp can be trusted). */
static int get_listing(struct sb_mirror *m, const char *path, struct blob **out)
{
	struct dstamp d;
	struct blob *b = NULL;
	struct timespec now;
	char *rel;
	int side, ret = 0;
	uint64_t key = name_hash(path, strlen(path));
	struct listing *l = &m->listings[key % LISTINGS];

	memset(&d, 0, sizeof(d));	/* compared whole */
	/* before the conflict list is read: a change after it shows */
	d.gen = __atomic_load_n(&m->view_gen, __ATOMIC_RELAXED);
	if ((ret = sb_mi_map(m, path, &rel, &side)) < 0)
		return ret;
	/* before the directories are read, for the same reason */
	int trusted = dir_stamp(m, rel, side, &d);
	clock_gettime(CLOCK_MONOTONIC, &now);
	uint64_t now_ns = (uint64_t)sb_mi_ts_ns(&now);

	pthread_mutex_lock(&m->lmu);
	if (l->blob && l->key == key && now_ns - l->when_ns < LISTING_TTL_NS &&
	    !memcmp(&l->st, &d, sizeof(d))) {
		b = l->blob;
		b->refs++;
	}
	pthread_mutex_unlock(&m->lmu);
	if (!b && (ret = build_listing(m, rel, side, &b)) == 0 && trusted) {
		pthread_mutex_lock(&m->lmu);
		listing_keep(m, l, key, &d, now_ns, b);
		pthread_mutex_unlock(&m->lmu);
	}
	free(rel);
	*out = b;
	return ret;
}

struct listing *sb_mi_listings_new(void)
{
	return calloc(LISTINGS, sizeof(struct listing));
}

void sb_mi_listings_free(struct listing *ls)
{
	for (size_t i = 0; i < LISTINGS; i++)
		free(ls[i].blob);
	free(ls);
}

/* An open directory: the listing taken when it was opened (or rewound). */
struct sb_dir {
	struct sb_mirror *m;
	char *path;
	struct blob *b;
	int read;
};

int sb_dir_open(struct sb_mirror *m, const char *path, struct sb_dir **out)
{
	struct sb_dir *d = calloc(1, sizeof(*d));
	int ret = -ENOMEM;

	*out = NULL;
	if (!d || !(d->path = strdup(path)))
		goto fail;
	d->m = m;
	SHARED(m);
	ret = get_listing(m, path, &d->b);
	UNSHARED(m);
	if (ret < 0)
		goto fail;
	*out = d;
	return 0;
fail:
	sb_dir_close(d);
	return ret;
}

int sb_dir_read(struct sb_dir *d, uint64_t pos,
		int (*fill)(void *arg, const char *name, unsigned char type, uint64_t ino,
			    uint64_t next),
		void *arg)
{
	struct blob *b = d->b;
	int ret = 0;

	if (pos == 0 && d->read) {	/* rewound: as if opened again */
		SHARED(d->m);
		ret = get_listing(d->m, d->path, &b);
		UNSHARED(d->m);
		if (ret < 0)
			return ret;
		blob_put(d->m, d->b);
		d->b = b;
	}
	d->read = 1;
	for (size_t o = pos; ret == 0 && o + sizeof(uint64_t) + 1 < b->len;) {
		uint64_t ino;
		const char *rec = b->data + o, *name = rec + sizeof(ino) + 1;
		memcpy(&ino, rec, sizeof(ino));
		o += sizeof(ino) + 1 + strlen(name) + 1;
		ret = fill(arg, name, (unsigned char)rec[sizeof(ino)], ino, o);
	}
	return ret > 0 ? 0 : ret;
}

void sb_dir_close(struct sb_dir *d)
{
	if (!d)
		return;
	if (d->b)
		blob_put(d->m, d->b);
	free(d->path);
	free(d);
}
