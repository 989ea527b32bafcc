/*
 * The mount's automatic reconciles (see autosync.h): paths named by the
 * watcher's events wait out a quiet period, then run as `sbfs reconcile
 * MOUNTPOINT` limited to them.
 *
 * Locks: lock guards the table, all, stop and last_run; the watcher's
 * notes take it briefly, the thread holds it except while a run goes on
 * (so notes never wait for a reconcile). A run itself takes the control
 * socket's turn (control_run), then the mirror exclusively.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autosync.h"
#include "cli.h"

#define MS 1000000LL

/* A path waiting for its quiet period. */
struct ent {
	char *path;
	size_t len;
	int64_t first_ns;	/* its first event since it was last run */
	int64_t last_ns;	/* its latest event */
	int writing;		/* modified, not closed since */
	struct ent *next;	/* in its hash chain */
};

struct autosync {
	struct control *ctl;
	const char *roots[2];
	pthread_t thr;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct ent **tab;
	size_t cap, n;
	int all;		/* the whole tree is due (lost events, no memory) */
	int64_t all_ns;
	int64_t last_run;	/* when the last run ended */
	int stop;
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* FNV-1a */
static size_t hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return (size_t)h;
}

static int grow(struct autosync *a)
{
	size_t cap = a->cap ? a->cap * 2 : 256;
	struct ent **tab = calloc(cap, sizeof(*tab));
	if (!tab)
		return -ENOMEM;
	for (size_t i = 0; i < a->cap; i++)
		for (struct ent *e = a->tab[i], *nx; e; e = nx) {
			nx = e->next;
			size_t k = hash(e->path, e->len) & (cap - 1);
			e->next = tab[k];
			tab[k] = e;
		}
	free(a->tab);
	a->tab = tab;
	a->cap = cap;
	return 0;
}

/* Called with a->lock held. */
static void note_locked(struct autosync *a, const char *rel, size_t len, enum autosync_how how,
			int64_t now)
{
	if (how == AS_ALL || !len) {
		a->all = 1;
		a->all_ns = now;
		return;
	}
	if (a->n >= a->cap && grow(a) < 0) {
		a->all = 1;	/* kept nowhere: the whole tree covers it */
		a->all_ns = now;
		return;
	}
	size_t k = hash(rel, len) & (a->cap - 1);
	struct ent *e;
	for (e = a->tab[k]; e; e = e->next)
		if (e->len == len && !memcmp(e->path, rel, len))
			break;
	if (!e) {
		char *p = strndup(rel, len);
		if (!p || !(e = calloc(1, sizeof(*e)))) {
			free(p);
			a->all = 1;
			a->all_ns = now;
			return;
		}
		e->path = p;
		e->len = len;
		e->first_ns = now;
		e->next = a->tab[k];
		a->tab[k] = e;
		a->n++;
	}
	e->last_ns = now;
	if (how == AS_WRITING)
		e->writing = 1;
	else if (how == AS_CLOSED && e->writing) {
		e->writing = 0;
		e->first_ns = now;	/* its wait begins now */
	}
}

void autosync_note(struct autosync *a, const char *rel, size_t len, enum autosync_how how)
{
	int64_t now = mono_ns();
	pthread_mutex_lock(&a->lock);
	note_locked(a, rel, len, how, now);
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

/* When e may run alone: a file still open for writing. */
static int64_t open_due(const struct ent *e)
{
	return e->last_ns + AUTOSYNC_OPEN_MS * MS;
}

/*
 * The paths due at now, taken out of the table into *out (n of them), or
 * with a whole run due, *whole set and every path not being written taken.
 * The paths not being written are due together, once none has had an
 * event for the quiet period, so a burst (a checkout, an rm) runs as one;
 * or once the oldest has waited AUTOSYNC_MAX_MS, so that steady traffic
 * cannot put it off for ever. *next: when to look again (INT64_MAX: when
 * a note comes).
 */
static int take_due(struct autosync *a, int64_t now, char ***out, size_t *n, int *whole,
		    int64_t *next)
{
	int64_t newest = INT64_MIN, oldest = INT64_MAX, wnext = INT64_MAX;
	size_t cnt = 0, idle = 0;

	*out = NULL;
	*n = 0;
	for (size_t i = 0; i < a->cap; i++)
		for (struct ent *e = a->tab[i]; e; e = e->next) {
			if (e->writing) {
				cnt += open_due(e) <= now;
				if (open_due(e) > now && open_due(e) < wnext)
					wnext = open_due(e);
				continue;
			}
			idle++;
			newest = e->last_ns > newest ? e->last_ns : newest;
			oldest = e->first_ns < oldest ? e->first_ns : oldest;
		}
	if (a->all) {
		newest = a->all_ns > newest ? a->all_ns : newest;
		oldest = a->all_ns < oldest ? a->all_ns : oldest;
	}
	int go = (idle || a->all) && (newest + AUTOSYNC_QUIET_MS * MS <= now ||
				      oldest + AUTOSYNC_MAX_MS * MS <= now);
	*whole = go && a->all;
	*next = wnext;
	if ((idle || a->all) && !go) {
		int64_t t = newest + AUTOSYNC_QUIET_MS * MS, u = oldest + AUTOSYNC_MAX_MS * MS;
		t = t < u ? t : u;
		*next = t < *next ? t : *next;
	}
	cnt += go ? idle : 0;
	if (cnt && !(*out = malloc(cnt * sizeof(**out))))
		return -ENOMEM;
	for (size_t i = 0; i < a->cap; i++)
		for (struct ent **pp = &a->tab[i]; *pp;) {
			struct ent *e = *pp;
			if (e->writing ? open_due(e) > now : !go) {
				pp = &e->next;
				continue;
			}
			*pp = e->next;
			(*out)[(*n)++] = e->path;
			free(e);
			a->n--;
		}
	if (*whole)
		a->all = 0;
	return 0;
}

static int cmp_str(const void *x, const void *y)
{
	return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Sorted, without the paths that lie beneath another one (the plan of a
 * directory covers them, and a path twice would be carried twice). */
static size_t prune(char **v, size_t n)
{
	size_t k = 0;
	qsort(v, n, sizeof(*v), cmp_str);
	for (size_t i = 0; i < n; i++) {
		size_t l = k ? strlen(v[k - 1]) : 0;
		if (k && !strncmp(v[i], v[k - 1], l) && (v[i][l] == '/' || v[i][l] == '\0')) {
			free(v[i]);
			continue;
		}
		v[k++] = v[i];
	}
	return k;
}

static const char *result_name(int rc)
{
	switch (rc) {
	case EXIT_SYNCED: return "ok";
	case EXIT_PENDING: return "pending";
	case EXIT_USAGE: return "refused";
	default: return "failed";
	}
}

/* One automatic reconcile of paths (n of them; none: the whole tree). */
static void run_once(struct autosync *a, char **paths, size_t n)
{
	char *av[] = { "reconcile", "--", (char *)a->roots[0], (char *)a->roots[1], NULL };
	struct ctx cx = { .cmd = cli_cmd("reconcile"), .paths = (const char *const *)paths,
			  .npaths = n };
	char *text = NULL;
	size_t tlen = 0;
	/* What the run says is kept, and shown only when it did something:
	 * most runs are the mount's own write-through, found in sync. */
	FILE *f = open_memstream(&text, &tlen);
	if (!f) {
		error("automatic reconcile: %s", strerror(errno));
		return;
	}
	cli_out = cli_err = f;
	int rc = control_run(a->ctl, &cx, 4, av);
	cli_out = cli_err = NULL;
	fclose(f);
	if (!cx.nothing || rc >= EXIT_USAGE) {
		/* cx.paths is NULL when the plan was made again whole */
		if (cx.paths)
			fprintf(stderr, "sbfs: automatic reconcile of %zu path(s) edited outside the mount:\n",
				n);
		else if (n)
			fprintf(stderr, "sbfs: automatic reconcile of the whole tree (of %zu path(s) edited "
				"outside the mount, some deleted: deletions are weighed against it):\n", n);
		else
			fprintf(stderr, "sbfs: automatic reconcile of the whole tree (events were lost):\n");
		fwrite(text, 1, tlen, stderr);
		fflush(stderr);
		control_note(a->ctl, cx.paths ? n : 0, result_name(rc), cx.why[0] ? cx.why : NULL);
	}
	free(text);
}

static void *loop(void *arg)
{
	struct autosync *a = arg;
	pthread_mutex_lock(&a->lock);
	while (!a->stop) {
		int64_t now = mono_ns(), next;
		char **paths;
		size_t n;
		int whole;
		/* Runs keep a quiet period apart, so heavy traffic through the
		 * mount cannot hold it off more than briefly twice a second. */
		int64_t ready = a->last_run + AUTOSYNC_QUIET_MS * MS;
		if (now < ready) {
			next = ready;
			paths = NULL;
			n = 0;
			whole = 0;
		} else if (take_due(a, now, &paths, &n, &whole, &next) < 0) {
			note_locked(a, "", 0, AS_ALL, now);	/* retried whole, later */
			next = now + AUTOSYNC_QUIET_MS * MS;
			n = 0;
			whole = 0;
		}
		if (!n && !whole) {
			if (next == INT64_MAX) {
				pthread_cond_wait(&a->cond, &a->lock);
			} else {
				struct timespec ts = { next / 1000000000, next % 1000000000 };
				pthread_cond_timedwait(&a->cond, &a->lock, &ts);
			}
			continue;
		}
		pthread_mutex_unlock(&a->lock);
		if (whole) {
			for (size_t i = 0; i < n; i++)
				free(paths[i]);
			n = 0;
		}
		n = n ? prune(paths, n) : 0;	/* qsort takes no NULL */
		run_once(a, n ? paths : NULL, n);
		for (size_t i = 0; i < n; i++)
			free(paths[i]);
		free(paths);
		pthread_mutex_lock(&a->lock);
		a->last_run = mono_ns();
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

static void tab_free(struct autosync *a)
{
	for (size_t i = 0; i < a->cap; i++)
		for (struct ent *e = a->tab[i], *nx; e; e = nx) {
			nx = e->next;
			free(e->path);
			free(e);
		}
	free(a->tab);
}

int autosync_start(struct control *ctl, const char *const roots[2], struct autosync **out)
{
	struct autosync *a = calloc(1, sizeof(*a));
	pthread_condattr_t ca;
	sigset_t all, old;
	int ret = -ENOMEM;

	*out = NULL;
	if (!a)
		goto out;
	a->ctl = ctl;
	a->roots[0] = roots[0];
	a->roots[1] = roots[1];
	a->last_run = INT64_MIN / 2;
	pthread_mutex_init(&a->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cond, &ca);
	pthread_condattr_destroy(&ca);
	/* Signals are for the thread that runs the FUSE loop. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&a->thr, NULL, loop, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret < 0) {
		pthread_cond_destroy(&a->cond);
		pthread_mutex_destroy(&a->lock);
		free(a);
		goto out;
	}
	pthread_setname_np(a->thr, "sbfs-autosync");
	*out = a;
out:
	if (ret < 0)
		error("cannot start the automatic reconciles (--watch): %s", strerror(-ret));
	return ret;
}

void autosync_stop(struct autosync *a)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	a->stop = 1;
	pthread_cond_signal(&a->cond);
	pthread_mutex_unlock(&a->lock);
	pthread_join(a->thr, NULL);
	tab_free(a);
	pthread_cond_destroy(&a->cond);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
