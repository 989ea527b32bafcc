/*
 * Holes. A sparse file (a disk image, a database) is copied and hashed
 * region by region, found with lseek(SEEK_DATA/SEEK_HOLE): its holes are
 * neither read nor written, so the copy keeps them and takes the space the
 * original does. The hash is still of the whole content, holes as zeros,
 * so it matches the one of a dense copy of the same bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/falloc.h>

#include "internal.h"

/* The buffer of a copy the kernel cannot do. */
#define COPY_BUF (1 << 20)

static const uint8_t zeros[64 * 1024];

void sb_next_data(int fd, off_t pos, off_t end, off_t *data, off_t *hole)
{
	off_t d = lseek(fd, pos, SEEK_DATA), h;

	*data = pos;
	*hole = end;
	if (d < 0) {
		/* ENXIO: nothing but a hole from pos on. Anything else (EINVAL
		 * where the file system cannot tell): all data, read it. */
		if (errno == ENXIO)
			*data = end;
		return;
	}
	if (d >= end) {
		*data = end;
		return;
	}
	*data = d;
	h = lseek(fd, d, SEEK_HOLE);
	if (h > d && h < end)	/* h <= d: punched meanwhile, read it all */
		*hole = h;
}

int sb_sha_zeros(struct sb_sha *h, uint64_t n)
{
	int ret = 0;

	while (n && ret == 0) {
		size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
		ret = sb_sha_update(h, zeros, k);
		n -= k;
	}
	return ret;
}

int sb_pwrite_all(int fd, const void *buf, size_t n, off_t off)
{
	const uint8_t *b = buf;

	while (n) {
		ssize_t w = pwrite(fd, b, n, off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		b += w;
		n -= w;
		off += w;
	}
	return 0;
}

static int all_zero(const uint8_t *b, size_t n)
{
	return n && b[0] == 0 && memcmp(b, b + 1, n - 1) == 0;
}

int sb_sparse_copy(int in, int out, off_t from, off_t to, struct sb_sha *h,
		   uint8_t *buf, size_t bufsz, uint64_t *done)
{
	off_t pos = from, data, hole;
	int ret = 0;

	while (pos < to) {
		sb_next_data(in, pos, to, &data, &hole);
		if ((ret = sb_sha_zeros(h, data - pos)) < 0)
			goto out;
		pos = data;
		while (pos < hole) {
			size_t want = hole - pos < (off_t)bufsz ? (size_t)(hole - pos) : bufsz;
			ssize_t n = pread(in, buf, want, pos);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0) {
				ret = -errno;
				goto out;
			}
			if (n == 0)
				goto out;	/* in ended early: *done says so */
			if ((ret = sb_sha_update(h, buf, n)) < 0)
				goto out;
			/* out is new: zeros need not be written to read back. */
			if (out >= 0 && !all_zero(buf, n) &&
			    (ret = sb_pwrite_all(out, buf, n, pos)) < 0)
				goto out;
			pos += n;
		}
	}
out:
	*done = pos - from;
	/* The trailing hole (or zeros) too: out gets the size. Only where it
	 * is short: fusefat (FAT) refuses every ftruncate. */
	struct stat ost;
	if (ret == 0 && out >= 0 && (fstat(out, &ost) < 0 || ost.st_size != pos) &&
	    ftruncate(out, pos) < 0)
		ret = -errno;
	return ret;
}

int sb_zero_range(int fd, off_t off, off_t len)
{
	off_t end = off + len, stop;
	struct stat st;
	int ret = 0;

	if (len <= 0)
		goto out;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto out;
	}
	stop = end < st.st_size ? end : st.st_size;
	if (off < stop && fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off,
				    stop - off) < 0) {
		if (errno != EOPNOTSUPP && errno != ENOSYS) {
			ret = -errno;
			goto out;
		}
		for (; off < stop && ret == 0; off += sizeof(zeros))
			ret = sb_pwrite_all(fd, zeros, stop - off < (off_t)sizeof(zeros) ?
					    (size_t)(stop - off) : sizeof(zeros), off);
		if (ret < 0)
			goto out;
	}
	if (end > st.st_size && ftruncate(fd, end) < 0)
		ret = -errno;
out:
	return ret;
}

/* Copies len bytes, fewer only at in's end of file: in the kernel where
 * it can, else (another file system type, say) through a buffer. */
static long copy_data(int in, int64_t off_in, int out, int64_t off_out, size_t len)
{
	loff_t oi = off_in, oo = off_out;
	size_t done = 0;
	char *buf = NULL;
	long ret = 0;

	while (done < len) {
		ssize_t n;
		if (!buf) {
			n = copy_file_range(in, &oi, out, &oo, len - done, 0);
			if (n < 0 && (errno == EXDEV || errno == EOPNOTSUPP || errno == EINVAL ||
				      errno == ENOSYS)) {
				if (!(buf = malloc(COPY_BUF))) {
					ret = -ENOMEM;
					break;
				}
				continue;
			}
		} else {
			size_t want = len - done < COPY_BUF ? len - done : COPY_BUF;
			n = pread(in, buf, want, oi);
			if (n > 0 && (ret = sb_pwrite_all(out, buf, n, oo)) < 0)
				break;
			if (n > 0) {
				oi += n;
				oo += n;
			}
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		if (n == 0)
			break;
		done += n;
	}
	free(buf);
	return ret < 0 ? ret : (long)done;
}

long sb_copy_range_holes(int in, int64_t off_in, int out, int64_t off_out, size_t len)
{
	off_t pos = off_in, end, data, hole;
	struct stat st;
	long ret = 0;

	if (fstat(in, &st) < 0)
		return -errno;
	end = st.st_size <= off_in ? off_in
	      : (uint64_t)(st.st_size - off_in) <= len ? st.st_size : off_in + (off_t)len;
	while (pos < end) {
		sb_next_data(in, pos, end, &data, &hole);
		if ((ret = sb_zero_range(out, off_out + (pos - off_in), data - pos)) < 0)
			break;
		pos = data;
		if (pos == end)
			break;
		if ((ret = copy_data(in, data, out, off_out + (data - off_in), hole - data)) < 0)
			break;
		pos += ret;
		if (pos < hole)
			break;	/* in ended early */
	}
	return ret < 0 ? ret : pos - off_in;
}
