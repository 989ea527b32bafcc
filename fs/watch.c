/*
 * The mount's watcher (see watch.h): inotify on every directory of both
 * partners, and the kernel's caches of each path an event names dropped
 * through view_invalidate.
 *
 * Locks: none. Everything in struct watch belongs to the watcher thread
 * once it runs (watch_start fills it before, watch_stop reads it after
 * joining), but `full`, which watch_complete reads from any thread (an
 * atomic); the ignore set is shared with the mirror and only read.
 * view_invalidate takes the inode table's lock for its lookup only, and
 * is never called from a request handler: the kernel waits for the
 * handler's answer while it holds what the invalidation needs.
 */
#define FUSE_USE_VERSION 35
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "autosync.h"
#include "cli.h"
#include "ignore.h"
#include "view.h"
#include "watch.h"

#define MASK (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | \
	      IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | \
	      IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)

/* Paths gathered in one wake-up before they are invalidated: a bound, so
 * that a storm of events is not all read before the first is acted on. */
#define PEND_MAX 8192

/* See run(). */
#define SETTLE_NS 1000000

/* A watched directory. */
struct wdir {
	int wd;
	unsigned gen;		/* the walk that last met it (see rewalk) */
	char *path;		/* relative to the root: "" for the root itself */
	struct wdir *next;	/* in its hash chain */
};

struct side {
	/* One inotify instance per partner: the kernel merges an event with
	 * the last one queued only, so the write-through's alternating
	 * events on the two copies of a file would never merge in one. */
	int fd;
	const char *root;
	struct wdir **tab;	/* by wd */
	size_t cap, n;
	int overflow;		/* events were lost: walk it again */
};

/* A view path to invalidate. */
struct pend {
	char *path;
	int gone;	/* deleted or moved away on one side: its name too */
};

struct watch {
	struct view *v;
	const struct sb_ignore *ig;
	struct autosync *as;	/* --watch: NULL without */
	struct side s[2];
	int stop;		/* eventfd: watch_stop's knock */
	pthread_t thr;
	int running;
	unsigned gen;
	int full;		/* out of watches: said once */
	struct pend *pend;	/* to invalidate, this wake-up */
	size_t npend, cappend;
};

/* ------------------------------------------------------------ the table */

static size_t slot(const struct side *s, int wd)
{
	return ((size_t)(unsigned)wd * 2654435761u) & (s->cap - 1);
}

static struct wdir *wd_find(const struct side *s, int wd)
{
	if (!s->cap)
		return NULL;
	for (struct wdir *d = s->tab[slot(s, wd)]; d; d = d->next)
		if (d->wd == wd)
			return d;
	return NULL;
}

static int wd_grow(struct side *s)
{
	size_t cap = s->cap ? s->cap * 2 : 1024;
	struct wdir **tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	struct wdir **old = s->tab;
	size_t ocap = s->cap;
	s->tab = tab;
	s->cap = cap;
	for (size_t i = 0; i < ocap; i++)
		for (struct wdir *d = old[i], *nx; d; d = nx) {
			nx = d->next;
			d->next = tab[slot(s, d->wd)];
			tab[slot(s, d->wd)] = d;
		}
	free(old);
	return 0;
}

/* wd watches path now (a directory watched again, moved, keeps its wd). */
static int wd_put(struct side *s, int wd, const char *path, unsigned gen)
{
	struct wdir *d = wd_find(s, wd);
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	if (d) {
		free(d->path);
		d->path = p;
		d->gen = gen;
		return 0;
	}
	if ((s->n >= s->cap && wd_grow(s) < 0) || !(d = malloc(sizeof(*d)))) {
		free(p);
		return -ENOMEM;
	}
	*d = (struct wdir){ .wd = wd, .gen = gen, .path = p };
	d->next = s->tab[slot(s, wd)];
	s->tab[slot(s, wd)] = d;
	s->n++;
	return 0;
}

/* Unlinks *pp (which is d) and frees d. */
static void wd_unlink(struct side *s, struct wdir **pp, struct wdir *d)
{
	*pp = d->next;
	free(d->path);
	free(d);
	s->n--;
}

static void wd_drop(struct side *s, int wd)
{
	if (!s->cap)
		return;
	for (struct wdir **pp = &s->tab[slot(s, wd)]; *pp; pp = &(*pp)->next)
		if ((*pp)->wd == wd) {
			wd_unlink(s, pp, *pp);
			return;
		}
}

static int under(const char *path, const char *top)
{
	size_t n = strlen(top);
	return !strncmp(path, top, n) && (path[n] == '\0' || path[n] == '/');
}

/* ------------------------------------------------------------ invalidation */

/* Queues the view path of dir/name (relative to a root; "" the root,
 * name NULL the directory itself); gone: no longer there on that side. */
static void pend_add(struct watch *w, const char *dir, const char *name, int gone)
{
	if (w->npend == w->cappend) {
		size_t cap = w->cappend ? w->cappend * 2 : 64;
		struct pend *v = realloc(w->pend, cap * sizeof(*v));
		if (!v)
			return;	/* that path shows after the cache timeouts */
		w->pend = v;
		w->cappend = cap;
	}
	char *p = NULL;
	if (asprintf(&p, "/%s%s%s", dir, *dir && name ? "/" : "", name ? name : "") >= 0)
		w->pend[w->npend++] = (struct pend){ p, gone };
}

static int cmp_pend(const void *a, const void *b)
{
	return strcmp(((const struct pend *)a)->path, ((const struct pend *)b)->path);
}

/*
 * Drops the kernel's attributes and pages of path, and if it is gone its
 * name too: a name the kernel still holds would be opened, not created,
 * by `echo >`, and fail. A path the kernel never looked up is not in
 * the inode table: that costs a lookup there, and nothing more.
 */
static void drop(struct watch *w, char *path, int gone)
{
	view_invalidate(w->v, path + 1, gone);
}

static void flush(struct watch *w)
{
	qsort(w->pend, w->npend, sizeof(*w->pend), cmp_pend);
	for (size_t i = 0; i < w->npend; i++) {
		struct pend *p = &w->pend[i];
		if (i + 1 < w->npend && !strcmp(p->path, w->pend[i + 1].path)) {
			w->pend[i + 1].gone |= p->gone;
			free(p->path);
			continue;
		}
		drop(w, p->path, p->gone);	/* its conflict entries' names too */
		free(p->path);
	}
	w->npend = 0;
}

/* ------------------------------------------------------------ watches */

static int target_ignores(const struct watch *w, int side, const char *rel, int is_dir)
{
	return side == 1 && w->ig && sb_ignore_match(w->ig, rel, strlen(rel), is_dir);
}

/* Watches root/rel. 0, 1 when there is nothing to watch (gone, not a
 * directory, not readable), -ENOSPC when inotify has no watch left, or
 * -ENOMEM. */
static int watch_dir(struct watch *w, int side, const char *abs, const char *rel)
{
	struct side *s = &w->s[side];
	int wd = inotify_add_watch(s->fd, abs, MASK);
	if (wd < 0) {
		if (errno != ENOSPC)
			return 1;
		if (!w->full) {
			char lim[32] = "?";
			FILE *f = fopen("/proc/sys/fs/inotify/max_user_watches", "re");
			if (f) {
				if (!fgets(lim, sizeof(lim), f))
					strcpy(lim, "?");
				lim[strcspn(lim, "\n")] = '\0';
				fclose(f);
			}
			warning("%s: no inotify watch left (fs.inotify.max_user_watches is %s): "
				"edits made directly there and in directories not watched yet show "
				"in the mount only after its cache timeouts", abs, lim);
			__atomic_store_n(&w->full, 1, __ATOMIC_RELAXED);
		}
		return -ENOSPC;
	}
	return wd_put(s, wd, rel, w->gen);
}

/*
 * Watches root/start and every directory beneath it (on the target, those
 * the view shows). With inval, every path met is queued for invalidation
 * too: what was made there before the watch went on. Breadth first, with a
 * queue rather than recursion: no descriptor is held across levels.
 */
static int walk(struct watch *w, int side, const char *start, int inval)
{
	struct side *s = &w->s[side];
	char **q = NULL, *abs = NULL;
	size_t qn = 0, qcap = 0, qi = 0;
	int ret = -ENOMEM;

	if (!(q = malloc(sizeof(*q))) || !(q[0] = strdup(start)))
		goto out;
	qn = qcap = 1;
	for (; qi < qn; qi++) {
		const char *rel = q[qi];
		free(abs);
		abs = NULL;
		if (asprintf(&abs, "%s%s%s", s->root, *rel ? "/" : "", rel) < 0)
			goto out;
		int r = watch_dir(w, side, abs, rel);
		if (r == -ENOSPC)
			break;	/* said: the rest goes unwatched */
		if (r < 0)
			goto out;
		if (r > 0)
			continue;
		int fd = open(abs, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
		if (!d) {
			if (fd >= 0)
				close(fd);
			continue;	/* gone since: its parent's event says so */
		}
		struct dirent *de;
		while ((de = readdir(d))) {
			const char *nm = de->d_name;
			if (!strcmp(nm, ".") || !strcmp(nm, ".."))
				continue;
			int is_dir = de->d_type == DT_DIR;
			struct stat st;
			if (de->d_type == DT_UNKNOWN)
				is_dir = fstatat(dirfd(d), nm, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
					 S_ISDIR(st.st_mode);
			/* a directory's name goes, and the kernel's names beneath it
			 * with it: those made and deleted before its watch was on */
			if (inval)
				pend_add(w, rel, nm, is_dir);
			if (!is_dir)
				continue;
			char *child = NULL;
			if (asprintf(&child, "%s%s%s", rel, *rel ? "/" : "", nm) < 0) {
				closedir(d);
				goto out;
			}
			if (target_ignores(w, side, child, 1)) {
				free(child);
				continue;
			}
			if (qn == qcap) {
				char **nq = realloc(q, (qcap *= 2) * sizeof(*nq));
				if (!nq) {
					free(child);
					closedir(d);
					goto out;
				}
				q = nq;
			}
			q[qn++] = child;
		}
		closedir(d);
		if (inval && w->npend >= PEND_MAX)
			flush(w);
	}
	ret = 0;
out:
	for (size_t i = 0; i < qn; i++)
		free(q[i]);
	free(q);
	free(abs);
	return ret;
}

/* top and what is beneath it are gone from this side (moved or deleted):
 * their watches go, and the kernel's names there with them. */
static void drop_under(struct watch *w, int side, const char *top)
{
	struct side *s = &w->s[side];
	for (size_t i = 0; i < s->cap; i++)
		for (struct wdir **pp = &s->tab[i]; *pp;) {
			struct wdir *d = *pp;
			if (!under(d->path, top)) {
				pp = &d->next;
				continue;
			}
			inotify_rm_watch(s->fd, d->wd);	/* EINVAL if already gone */
			pend_add(w, d->path, NULL, 1);
			wd_unlink(s, pp, d);
		}
}

/* Events were lost: watch again what is there and invalidate all of it;
 * watches of directories no longer met go. */
static void rewalk(struct watch *w, int side)
{
	struct side *s = &w->s[side];
	s->overflow = 0;
	w->gen++;
	pend_add(w, "", NULL, 0);
	if (walk(w, side, "", 1) < 0)
		return;	/* out of memory: keep every watch */
	for (size_t i = 0; i < s->cap; i++)
		for (struct wdir **pp = &s->tab[i]; *pp;) {
			struct wdir *d = *pp;
			if (d->gen == w->gen) {
				pp = &d->next;
				continue;
			}
			inotify_rm_watch(s->fd, d->wd);
			wd_unlink(s, pp, d);
		}
}

/* For --watch: the path for a reconcile. A file's close after writing
 * ends its wait for the writer; what neither side's plan would look at
 * (an ignored name, on either side) is not noted. */
static void note(struct watch *w, const char *rel, uint32_t mask, int is_dir)
{
	size_t len = strlen(rel);
	if (!w->as || (w->ig && sb_ignore_match(w->ig, rel, len, is_dir)))
		return;
	autosync_note(w->as, rel, len, mask & IN_MODIFY ? AS_WRITING
				      : mask & IN_CLOSE_WRITE ? AS_CLOSED : AS_CHANGED);
}

static void event(struct watch *w, int side, const struct inotify_event *ev)
{
	struct side *s = &w->s[side];
	char *rel = NULL;

	if (ev->mask & IN_Q_OVERFLOW) {
		s->overflow = 1;
		if (w->as)
			autosync_note(w->as, "", 0, AS_ALL);	/* a scan of the tree */
		return;
	}
	struct wdir *d = wd_find(s, ev->wd);
	if (!d)
		return;	/* a watch dropped since (moved or deleted) */
	if (ev->mask & IN_IGNORED) {
		wd_drop(s, ev->wd);
		return;
	}
	if (!ev->len || !ev->name[0]) {	/* the directory itself */
		pend_add(w, d->path, NULL, 0);
		return;
	}
	if (asprintf(&rel, "%s%s%s", d->path, d->path[0] ? "/" : "", ev->name) < 0)
		return;
	int is_dir = !!(ev->mask & IN_ISDIR);
	if (target_ignores(w, side, rel, is_dir))
		goto out;	/* not in the view */
	note(w, rel, ev->mask, is_dir);
	/* A directory that appears goes by name too, with what the kernel
	 * holds beneath it: names made and deleted there before its watch
	 * went on would otherwise stay. */
	pend_add(w, rel, NULL, (ev->mask & (IN_DELETE | IN_MOVED_FROM)) ||
				       (is_dir && (ev->mask & (IN_CREATE | IN_MOVED_TO))));
	/* the directory's times and link count */
	if (ev->mask & (IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO))
		pend_add(w, d->path, NULL, 0);
	if (is_dir && (ev->mask & (IN_DELETE | IN_MOVED_FROM)))
		drop_under(w, side, rel);
	/* What was made in it before its watch went on is invalidated too. */
	if (is_dir && (ev->mask & (IN_CREATE | IN_MOVED_TO)))
		walk(w, side, rel, 1);
out:
	free(rel);
}

/* Reads what side's queue holds, up to PEND_MAX paths. */
static void drain(struct watch *w, int side)
{
	char buf[65536] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (w->npend < PEND_MAX) {
		ssize_t n = read(w->s[side].fd, buf, sizeof(buf));
		if (n <= 0)
			break;	/* EAGAIN: empty */
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			event(w, side, ev);
			p += sizeof(*ev) + ev->len;
		}
	}
}

static void *run(void *arg)
{
	struct watch *w = arg;
	struct pollfd pf[3] = {
		{ .fd = w->s[0].fd, .events = POLLIN },
		{ .fd = w->s[1].fd, .events = POLLIN },
		{ .fd = w->stop, .events = POLLIN },
	};
	for (;;) {
		if (poll(pf, 3, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[2].revents)
			break;
		/* An event comes with companions: a file written through the
		 * mount makes some eight (create, modify, attrib, close on each
		 * side), a directory's, with its own, one per name made in it.
		 * Waiting SETTLE_NS for them halves the invalidations of a run
		 * of creates (README); no edit shows later by more than that. */
		nanosleep(&(struct timespec){ 0, SETTLE_NS }, NULL);
		for (int i = 0; i < 2; i++)
			drain(w, i);
		for (int i = 0; i < 2; i++)
			if (w->s[i].overflow)
				rewalk(w, i);
		flush(w);
	}
	return NULL;
}

/* ------------------------------------------------------------ start, stop */

static void side_free(struct side *s)
{
	for (size_t i = 0; i < s->cap; i++)
		while (s->tab[i])
			wd_unlink(s, &s->tab[i], s->tab[i]);
	free(s->tab);
	if (s->fd >= 0)
		close(s->fd);
}

static void watch_free(struct watch *w)
{
	side_free(&w->s[0]);
	side_free(&w->s[1]);
	if (w->stop >= 0)
		close(w->stop);
	for (size_t i = 0; i < w->npend; i++)
		free(w->pend[i].path);
	free(w->pend);
	free(w);
}

int watch_start(struct view *v, const char *const roots[2], const struct sb_ignore *ig,
		struct autosync *as, struct watch **out)
{
	struct watch *w = calloc(1, sizeof(*w));
	sigset_t all, old;
	int ret = -ENOMEM;

	*out = NULL;
	if (!w)
		goto out;
	w->s[0].fd = w->s[1].fd = w->stop = -1;
	w->v = v;
	w->ig = ig;
	w->as = as;
	for (int i = 0; i < 2; i++) {
		w->s[i].root = roots[i];
		if ((w->s[i].fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0) {
			ret = -errno;
			goto out;
		}
	}
	if ((w->stop = eventfd(0, EFD_CLOEXEC)) < 0) {
		ret = -errno;
		goto out;
	}
	for (int i = 0; i < 2; i++)
		if ((ret = walk(w, i, "", 0)) < 0)
			goto out;
	/* Signals go to the thread that runs the loop: fuse's handlers end
	 * it by waking that thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&w->thr, NULL, run, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0)
		goto out;
	w->running = 1;
	pthread_setname_np(w->thr, "sbfs-watch");	/* for top -H and /proc */
	*out = w;
	w = NULL;
out:
	if (ret < 0)
		error("cannot watch %s and %s for edits made outside the mount (they show "
		      "only after its cache timeouts): %s", roots[0], roots[1], strerror(-ret));
	if (w)
		watch_free(w);
	return ret;
}

void watch_stop(struct watch *w)
{
	uint64_t one = 1;
	if (!w)
		return;
	if (w->running) {
		if (write(w->stop, &one, sizeof(one)) < 0) {
			/* an eventfd takes this; nothing else to do */
		}
		pthread_join(w->thr, NULL);
	}
	watch_free(w);
}

int watch_complete(const struct watch *w)
{
	return w && !__atomic_load_n(&w->full, __ATOMIC_RELAXED);
}
