/*
 * When a stat may vouch for content.
 *
 * The state says "side i holds the bytes with this hash" by keeping side
 * i's stat fingerprint (device, inode, size, mtime, ctime) beside the hash,
 * and a later scan that finds the same fingerprint does not read the file.
 * That is only sound if every change made after the fingerprint was taken
 * moves it. Two things can defeat it:
 *
 * - a fingerprint taken after the fact: a stat made some time after the
 *   bytes were hashed or written describes whatever happened in between.
 *   The rule, enforced where records are made (apply.c, mirror_file.c): a
 *   fingerprint is taken on the very descriptor that was hashed or
 *   written, before and after, and where sbfs set a time itself that time
 *   must still be there;
 * - a change in the same clock tick: where a file system stamps changes
 *   with a coarse clock, a change made in the tick of the stat leaves the
 *   fingerprint as it was. Linux's multigrain timestamps (6.13+: ext4,
 *   xfs, btrfs, tmpfs) give a change that follows a stat a fine-grained,
 *   later ctime, so there a stat vouches for everything after it. Where
 *   a probe finds coarse stamps, a fingerprint whose ctime is less than
 *   SB_RACY_NS older than the moment it was taken is spoiled before it is
 *   recorded (as git does with "racily clean" index entries): the next
 *   scan then hashes the file instead of trusting it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

int64_t sb_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Four one-byte writes a few microseconds apart, each followed by fstat:
 * every ctime distinct only where changes are stamped finely. The probe
 * file is unnamed where the file system can (O_TMPFILE), else a temporary
 * that scans ignore, removed at once. Anything failing says "coarse",
 * which costs a rehash, never a wrong record.
 */
static int probe_fine(int dirfd)
{
	char name[64] = "";
	int fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600), fine = 1;
	int64_t last = INT64_MIN;
	struct stat st;

	if (fd < 0) {
		snprintf(name, sizeof(name), SB_TMP_PREFIX "probe.%ld", (long)getpid());
		fd = openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			return 0;
	}
	for (int i = 0; i < 4 && fine; i++) {
		if (pwrite(fd, "x", 1, i) != 1 || fstat(fd, &st) < 0) {
			fine = 0;
			break;
		}
		int64_t c = (int64_t)st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec;
		fine = c > last;
		last = c;
	}
	if (name[0])
		unlinkat(dirfd, name, 0);
	close(fd);
	return fine;
}

int sb_pship_fine(struct sb_pship *p, int side)
{
	if (p->fine[side] < 0)
		p->fine[side] = (int8_t)probe_fine(p->rootfd[side]);
	return p->fine[side];
}

void sb_fp_settle(struct sb_fp *fp, int fine, int64_t before_ns)
{
	if (!fine && fp->ctime_ns > before_ns - SB_RACY_NS)
		fp->ctime_ns = SB_FP_UNSURE;
}

int sb_hash_stable(int fd, const struct sb_fp *want, uint8_t sha[SB_SHA_LEN])
{
	struct stat st;
	struct sb_fp fp;
	int ret;

	for (int pass = 0; pass < 2; pass++) {
		if (fstat(fd, &st) < 0)
			return -errno;
		sb_fp_from_stat(&fp, &st);
		if (!sb_fp_equal(&fp, want))
			return -EAGAIN;
		if (pass == 0 && (ret = sb_hash_fd(fd, sha, NULL)) < 0)
			return ret;
	}
	return 0;
}
