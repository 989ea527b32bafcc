/*
 * chmod, chown and utimens through an open handle: what the mount uses for
 * a file whose last name was unlinked while it is open (fchmod, fchown and
 * futimens on it). There is no name left to record, so the state is not
 * told; both sides' descriptors get the change, a side whose file system
 * cannot hold it (see caps.h) excepted, as in mirror_ns.c.
 */
#include "mirror_int.h"

#include <errno.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum what { SET_MODE, SET_OWNER, SET_TIMES };

struct fattr {
	enum what what;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	struct timespec tv[2];
};

static int holds(struct sb_file *f, int side, enum what w)
{
	uint32_t c = sb_pship_caps(f->m->p, side)->flags;
	return !((w == SET_MODE && !(c & SB_CAP_MODE)) || (w == SET_OWNER && !(c & SB_CAP_OWNER)));
}

static int set_one(int fd, const struct fattr *a)
{
	int r = 0;
	switch (a->what) {
	case SET_MODE: r = fchmod(fd, a->mode); break;
	case SET_OWNER: r = fchown(fd, a->uid, a->gid); break;
	case SET_TIMES: r = futimens(fd, a->tv); break;
	}
	return r < 0 ? -errno : 0;
}

/* Both sides, the source first; the first refusal is the answer (the
 * other side is left as it is: the file is gone from the view). */
static int set_both(struct sb_file *f, const struct fattr *a)
{
	int ret = 0;
	SHARED(f->m);
	pthread_mutex_lock(&f->lock);
	for (int i = 0; i < 2 && ret == 0; i++)
		if (f->fd[i] >= 0 && holds(f, i, a->what))
			ret = set_one(f->fd[i], a);
	pthread_mutex_unlock(&f->lock);
	UNSHARED(f->m);
	return ret;
}

int sb_file_chmod(struct sb_file *f, unsigned mode)
{
	struct fattr a = { .what = SET_MODE, .mode = mode };
	return set_both(f, &a);
}

int sb_file_chown(struct sb_file *f, unsigned uid, unsigned gid)
{
	struct fattr a = { .what = SET_OWNER, .uid = uid, .gid = gid };
	return set_both(f, &a);
}

int sb_file_utimens(struct sb_file *f, const struct timespec tv[2])
{
	/* "Now" once, so both sides get the very same time. */
	struct fattr a = { .what = SET_TIMES, .tv = { tv[0], tv[1] } };
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	for (int i = 0; i < 2; i++)
		if (a.tv[i].tv_nsec == UTIME_NOW)
			a.tv[i] = now;
	return set_both(f, &a);
}
