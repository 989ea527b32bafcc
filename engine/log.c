/*
 * The operation log (JSON Lines) and the JSON string helpers it shares with
 * the front ends. Paths are byte strings: what is not valid UTF-8 is shown
 * with U+FFFD and kept exactly in a base64 twin field.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define LOG_MAX_DEFAULT (10ull << 20)	/* SBFS_LOG_MAX_SIZE */
#define LOG_KEEP_DEFAULT 3		/* SBFS_LOG_KEEP */
#define LOG_KEEP_MAX 100

struct sb_log {
	/* A mount's threads share one descriptor, and flock() does not keep
	 * apart holders of the same open file: this does. */
	pthread_mutex_t lock;
	int fd;
	char *path;
	unsigned long long max;	/* rotate before passing it; 0: never */
	int keep;		/* path.1 .. path.keep */
};

/*
 * Length of the well-formed UTF-8 sequence at p (n bytes available), 0 if
 * the byte at p does not start one. Follows the Unicode table of
 * well-formed byte sequences, so overlongs, surrogates and code points past
 * U+10FFFF are all rejected.
 */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t need, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 2;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 3;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (c == 0xed)
			hi = 0x9f;	/* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 4;
		if (c == 0xf0)
			lo = 0x90;	/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;	/* past U+10FFFF */
	} else {
		return 0;
	}
	if (n < need || p[1] < lo || p[1] > hi)
		return 0;
	for (i = 2; i < need; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return need;
}

int sb_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		n = utf8_seq(p + i, len - i);
		if (!n)
			return 0;
		i += n;
	}
	return 1;
}

/* The escaped body of a JSON string, without the quotes. */
static void json_chars(FILE *f, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, n;

	while (i < len) {
		n = utf8_seq(p + i, len - i);
		if (n == 0) {
			fputs("\xef\xbf\xbd", f);	/* U+FFFD */
			i++;
			continue;
		}
		if (n > 1) {
			fwrite(p + i, 1, n, f);
			i += n;
			continue;
		}
		switch (p[i]) {
		case '"': fputs("\\\"", f); break;
		case '\\': fputs("\\\\", f); break;
		case '\b': fputs("\\b", f); break;
		case '\f': fputs("\\f", f); break;
		case '\n': fputs("\\n", f); break;
		case '\r': fputs("\\r", f); break;
		case '\t': fputs("\\t", f); break;
		default:
			if (p[i] < 0x20)
				fprintf(f, "\\u%04x", p[i]);
			else
				putc(p[i], f);
			break;
		}
		i++;
	}
}

void sb_json_string(FILE *f, const char *s, size_t len)
{
	putc('"', f);
	json_chars(f, s, len);
	putc('"', f);
}

static void base64(FILE *f, const char *s, size_t len)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const unsigned char *p = (const unsigned char *)s;
	size_t i;

	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 |
			     p[i + 2];

		putc(tab[v >> 18], f);
		putc(tab[(v >> 12) & 63], f);
		putc(tab[(v >> 6) & 63], f);
		putc(tab[v & 63], f);
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;

		putc(tab[v >> 18], f);
		putc(tab[(v >> 12) & 63], f);
		fputs("==", f);
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;

		putc(tab[v >> 18], f);
		putc(tab[(v >> 12) & 63], f);
		putc(tab[(v >> 6) & 63], f);
		putc('=', f);
	}
}

void sb_json_path(FILE *f, const char *key, const char *s, size_t len)
{
	size_t klen = strlen(key);

	sb_json_string(f, key, klen);
	putc(':', f);
	sb_json_string(f, s, len);
	if (sb_utf8_valid(s, len))
		return;
	putc(',', f);
	putc('"', f);
	json_chars(f, key, klen);
	fputs("_b64\":\"", f);
	base64(f, s, len);
	putc('"', f);
}

/* SBFS_LOG_MAX_SIZE: bytes, or with K, M or G (1024-based); 0 never
 * rotates. A value that does not parse is taken as unset: the log is not
 * worth refusing a sync over. */
static unsigned long long env_size(void)
{
	const char *v = getenv("SBFS_LOG_MAX_SIZE");
	char *end;
	if (!v || !*v)
		return LOG_MAX_DEFAULT;
	errno = 0;
	unsigned long long n = strtoull(v, &end, 10);
	int shift = !*end ? 0 : !strcmp(end, "K") ? 10 : !strcmp(end, "M") ? 20 :
		    !strcmp(end, "G") ? 30 : -1;
	if (errno || end == v || *v == '-' || shift < 0 || n > (~0ull >> shift))
		return LOG_MAX_DEFAULT;
	return n << shift;
}

static int env_keep(void)
{
	const char *v = getenv("SBFS_LOG_KEEP");
	char *end;
	if (!v || !*v)
		return LOG_KEEP_DEFAULT;
	long n = strtol(v, &end, 10);
	return *end || n < 0 || n > LOG_KEEP_MAX ? LOG_KEEP_DEFAULT : (int)n;
}

/* O_NOFOLLOW: a symlink planted where root appends its log would make it
 * append to whatever file the symlink names. */
static int open_log(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	return fd < 0 ? -errno : fd;
}

int sb_log_open(const char *path, struct sb_log **out)
{
	struct sb_log *l = NULL;
	int ret = 0;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l || !(l->path = strdup(path))) {
		ret = -ENOMEM;
		goto out;
	}
	l->fd = -1;
	if ((ret = open_log(path)) < 0)
		goto out;
	l->fd = ret;
	ret = 0;
	l->max = env_size();
	l->keep = env_keep();
	pthread_mutex_init(&l->lock, NULL);
	*out = l;
	l = NULL;
out:
	if (l)
		free(l->path);
	free(l);
	return ret;
}

void sb_log_close(struct sb_log *l)
{
	if (!l)
		return;
	close(l->fd);
	pthread_mutex_destroy(&l->lock);
	free(l->path);
	free(l);
}

static int put_time(FILE *f)
{
	struct timespec ts;
	struct tm tm;
	char buf[32];
	int ret = 0;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0) {
		ret = -errno;
		goto out;
	}
	if (!gmtime_r(&ts.tv_sec, &tm)) {
		ret = -EOVERFLOW;
		goto out;
	}
	if (!strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm)) {
		ret = -EOVERFLOW;
		goto out;
	}
	fprintf(f, "\"time\":\"%s.%03ldZ\"", buf, ts.tv_nsec / 1000000);
out:
	return ret;
}

/* All of buf in as few write(2)s as the kernel allows: O_APPEND makes each
 * write land whole at the end, so one call keeps concurrent lines apart. */
static int write_all(int fd, const char *buf, size_t len)
{
	ssize_t n;
	int ret = 0;

	while (len) {
		n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		buf += n;
		len -= (size_t)n;
	}
out:
	return ret;
}

/* path.keep-1 .. path.1 move up one (the oldest falls off), path becomes
 * path.1; with keep 0 path goes. */
static int rotate(const char *path, int keep)
{
	char *from = NULL, *to = NULL;
	int ret = 0;

	if (!keep) {
		ret = unlink(path) < 0 ? -errno : 0;
		goto out;
	}
	for (int i = keep; i >= 1 && !ret; i--) {
		free(from);
		free(to);
		to = from = NULL;
		if (asprintf(&to, "%s.%d", path, i) < 0 ||
		    (i > 1 ? asprintf(&from, "%s.%d", path, i - 1) : asprintf(&from, "%s", path)) < 0) {
			ret = -ENOMEM;
			break;
		}
		if (rename(from, to) < 0 && errno != ENOENT)
			ret = -errno;
	}
out:
	free(from);
	free(to);
	return ret;
}

/*
 * Appends line, rotating first when it would take the file past l->max.
 * Under flock of the file at l->path, checked to be the one we hold open
 * after the lock is taken: another process may have rotated it meanwhile,
 * so we reopen and look again. A rotation is thus done by one process at a
 * time, and a line is always written, to the file before or after it. A
 * rotation that fails still writes the line; its error is returned.
 */
static int log_write(struct sb_log *l, const char *line, size_t len)
{
	int ret = 0, rot = 0;

	pthread_mutex_lock(&l->lock);
	for (int tries = 0; l->max && tries < 8; tries++) {
		struct stat fs, ps;
		/* Without the lock or the file's identity the line is still
		 * written, only not rotated. */
		while ((ret = flock(l->fd, LOCK_EX) < 0 ? -errno : 0) == -EINTR)
			;
		if (ret < 0 || (ret = fstat(l->fd, &fs) < 0 ? -errno : 0) < 0)
			break;
		int moved = lstat(l->path, &ps) < 0 || ps.st_dev != fs.st_dev || ps.st_ino != fs.st_ino;
		int full = !moved && !rot && fs.st_size > 0 &&
			   (unsigned long long)fs.st_size + len > l->max;
		if (!moved && !full)
			break;
		if (full)
			rot = rotate(l->path, l->keep) ?: 1;
		int fd = open_log(l->path);
		if (fd < 0) {
			/* keep the old descriptor: the line goes there */
			ret = fd;
			break;
		}
		close(l->fd);	/* drops the lock */
		l->fd = fd;
	}
	int w = write_all(l->fd, line, len);
	ret = w < 0 ? w : rot < 0 ? rot : ret;
	flock(l->fd, LOCK_UN);
	pthread_mutex_unlock(&l->lock);
	return ret;
}

/* Opens a line: {"time":…,"partnership":…,"action":… */
static FILE *line_open(char **line, size_t *llen, const char *partnership, const char *action)
{
	FILE *f = open_memstream(line, llen);
	if (!f)
		return NULL;
	putc('{', f);
	if (put_time(f) < 0) {
		fclose(f);
		free(*line);
		*line = NULL;
		errno = EOVERFLOW;
		return NULL;
	}
	fputs(",\"partnership\":", f);
	sb_json_string(f, partnership, strlen(partnership));
	fputs(",\"action\":", f);
	sb_json_string(f, action, strlen(action));
	return f;
}

/* Closes the line f holds and appends it to l with one write. */
static int line_write(struct sb_log *l, FILE *f, char **line, size_t *llen)
{
	fputs("}\n", f);
	int bad = ferror(f);
	/* fclose publishes line and llen. */
	if (fclose(f) != 0 || bad)
		return -ENOMEM;
	return log_write(l, *line, *llen);
}

int sb_log_op(struct sb_log *l, const char *partnership, const char *action,
	      const char *rel, size_t len, uint64_t size, const uint8_t *sha,
	      int err)
{
	char *line = NULL, hex[2 * SB_SHA_LEN + 1], ebuf[128];
	size_t llen = 0;
	FILE *f = NULL;
	int ret;

	if (!l || !partnership || !action) {
		ret = -EINVAL;
		goto out;
	}
	if (!(f = line_open(&line, &llen, partnership, action))) {
		ret = -errno;
		goto out;
	}
	putc(',', f);
	sb_json_path(f, "path", rel, len);
	fprintf(f, ",\"size\":%" PRIu64, size);
	if (sha) {
		sb_sha_hex(sha, hex);
		fprintf(f, ",\"sha256\":\"%s\"", hex);
	}
	if (err < 0) {
		/* GNU strerror_r: thread-safe, returns the text (maybe not in
		 * ebuf). */
		const char *msg = strerror_r(-err, ebuf, sizeof(ebuf));

		fputs(",\"result\":\"error\",\"error\":", f);
		sb_json_string(f, msg, strlen(msg));
		fprintf(f, ",\"errno\":%d", -err);
	} else {
		fputs(",\"result\":\"ok\"", f);
	}
	ret = line_write(l, f, &line, &llen);
out:
	free(line);
	return ret;
}

int sb_log_note(struct sb_log *l, const char *partnership, const char *action,
		uint64_t paths, const char *result, const char *reason)
{
	char *line = NULL;
	size_t llen = 0;
	FILE *f;
	int ret;

	if (!l || !partnership || !action || !result) {
		ret = -EINVAL;
		goto out;
	}
	if (!(f = line_open(&line, &llen, partnership, action))) {
		ret = -errno;
		goto out;
	}
	fprintf(f, ",\"paths\":%" PRIu64 ",\"result\":", paths);
	sb_json_string(f, result, strlen(result));
	if (reason) {
		fputs(",\"reason\":", f);
		sb_json_string(f, reason, strlen(reason));
	}
	ret = line_write(l, f, &line, &llen);
out:
	free(line);
	return ret;
}
