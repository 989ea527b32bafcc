/*
 * The operation log (JSON Lines) and the JSON string helpers it shares with
 * the front ends. Paths are byte strings: what is not valid UTF-8 is shown
 * with U+FFFD and kept exactly in a base64 twin field.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

struct sb_log {
	int fd;
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

int sb_log_open(const char *path, struct sb_log **out)
{
	struct sb_log *l = NULL;
	int ret = 0;

	*out = NULL;
	l = calloc(1, sizeof(*l));
	if (!l) {
		ret = -ENOMEM;
		goto out;
	}
	/* O_NOFOLLOW: a symlink planted where root appends its log would make
	 * it append to whatever file the symlink names. */
	l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (l->fd < 0) {
		ret = -errno;
		goto out;
	}
	*out = l;
	l = NULL;
out:
	free(l);
	return ret;
}

void sb_log_close(struct sb_log *l)
{
	if (!l)
		return;
	close(l->fd);
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
	return write_all(l->fd, *line, *llen);
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
