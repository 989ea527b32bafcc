/*
 * Ignore patterns in gitignore's syntax: '*', '?' and '[...]' within one
 * name, '**' across directories, a leading '/' anchoring to the root, a
 * trailing '/' for directories only, '!' re-including, '#' comments, '\'
 * escaping. A pattern without a '/' (but a trailing one) matches the name
 * at any depth, one with a '/' the whole relative path. The last pattern
 * that matches decides; nothing beneath an ignored directory is looked at,
 * so a '!' cannot bring back what is inside one (as in git).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "core.h"
#include "ignore.h"

struct pat {
	char *line;		/* as given, for showing */
	const char *p;		/* the part matched: into line */
	size_t len;
	uint8_t origin, neg, dir_only, anchored, directive;
};

struct sb_ignore {
	struct pat *v;
	size_t n, cap;
	int defaults_off;
};

/* What users of both Linux and other systems' disks find in their trees. */
static const char *const defaults[] = {
	".sbfs-tmp*", ".Trash-*", ".DS_Store", "Thumbs.db",
	"System Volume Information", "$RECYCLE.BIN",
};

/* ------------------------------------------------------------ matching */

static int in_class(const char *name, size_t n, unsigned char c)
{
	static const struct { const char *name; int (*fn)(int); } cls[] = {
		{ "alnum", isalnum }, { "alpha", isalpha }, { "blank", isblank },
		{ "cntrl", iscntrl }, { "digit", isdigit }, { "graph", isgraph },
		{ "lower", islower }, { "print", isprint }, { "punct", ispunct },
		{ "space", isspace }, { "upper", isupper }, { "xdigit", isxdigit },
	};
	/* Bytes past ASCII belong to no class: names need not be in any locale. */
	for (size_t i = 0; i < sizeof(cls) / sizeof(cls[0]); i++)
		if (strlen(cls[i].name) == n && !memcmp(cls[i].name, name, n))
			return c < 0x80 && cls[i].fn(c);
	return -1;
}

/*
 * The bracket expression at p ('['): whether c is in it, *end past its
 * ']'; -1 when it is not closed or names an unknown class.
 */
static int bracket(const char *p, const char *pe, unsigned char c, const char **end)
{
	const char *q = p + 1;
	int neg = 0, hit = 0;

	if (q < pe && (*q == '!' || *q == '^')) {
		neg = 1;
		q++;
	}
	for (int first = 1; q < pe && (*q != ']' || first); first = 0) {
		if (*q == '[' && q + 1 < pe && q[1] == ':') {
			const char *e = q + 2;
			while (e + 1 < pe && !(e[0] == ':' && e[1] == ']'))
				e++;
			if (e + 1 >= pe)
				return -1;
			int r = in_class(q + 2, e - (q + 2), c);
			if (r < 0)
				return -1;
			hit |= r;
			q = e + 2;
			continue;
		}
		if (*q == '\\' && q + 1 < pe)
			q++;
		unsigned char lo = (unsigned char)*q++, hi = lo;
		if (q + 1 < pe && *q == '-' && q[1] != ']') {
			q++;
			if (*q == '\\' && q + 1 < pe)
				q++;
			hi = (unsigned char)*q++;
		}
		if (lo <= c && c <= hi)
			hit = 1;
	}
	if (q >= pe)
		return -1;
	*end = q + 1;
	return hit != neg;
}

/* Whether s..se matches p..pe; p0 is where the pattern starts. */
static int wild(const char *p0, const char *p, const char *pe, const char *s, const char *se)
{
	while (p < pe) {
		const char *q, *end;
		switch (*p) {
		case '?':
			if (s == se || *s == '/')
				return 0;
			p++, s++;
			continue;
		case '[':
			if (s == se || *s == '/' || bracket(p, pe, (unsigned char)*s, &end) <= 0)
				return 0;
			p = end, s++;
			continue;
		case '*':
			for (q = p; q < pe && *q == '*'; q++)
				;
			if (q - p >= 2 && (p == p0 || p[-1] == '/') && (q == pe || *q == '/')) {
				if (q == pe)
					return 1;	/* a trailing "**": everything beneath */
				/* "**" then a slash: no directory, or any number of them */
				for (const char *t = s;;) {
					if (wild(p0, q + 1, pe, t, se))
						return 1;
					if (!(t = memchr(t, '/', se - t)))
						return 0;
					t++;
				}
			}
			for (const char *t = s;; t++) {
				if (wild(p0, q, pe, t, se))
					return 1;
				if (t == se || *t == '/')
					return 0;
			}
		case '\\':
			p++;	/* sb_ignore_check saw that something follows */
			/* fall through */
		default:
			if (s == se || *s != *p)
				return 0;
			p++, s++;
		}
	}
	return s == se;
}

static int pat_match(const struct pat *pt, const char *rel, size_t len, int is_dir)
{
	const char *s = rel;
	if (pt->directive || (pt->dir_only && !is_dir))
		return 0;
	if (!pt->anchored) {
		const char *slash = memrchr(rel, '/', len);
		if (slash)
			s = slash + 1;
	}
	return wild(pt->p, pt->p, pt->p + pt->len, s, rel + len);
}

int sb_ignore_match(const struct sb_ignore *ig, const char *rel, size_t len, int is_dir)
{
	if (!ig)
		return 0;
	for (size_t i = ig->n; i-- > 0;) {
		const struct pat *pt = &ig->v[i];
		if (pt->origin == SB_IGN_DEFAULT && ig->defaults_off)
			continue;
		if (pat_match(pt, rel, len, is_dir))
			return !pt->neg;
	}
	return 0;
}

/* Whether a directory above rel[0..len) is ignored. */
static int parent_ignored(const struct sb_ignore *ig, const char *rel, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (rel[i] == '/' && sb_ignore_match(ig, rel, i, 1))
			return 1;
	return 0;
}

int sb_ignore_path(const struct sb_ignore *ig, const char *rel, size_t len, int is_dir)
{
	if (!ig || !len)
		return 0;
	return parent_ignored(ig, rel, len) || sb_ignore_match(ig, rel, len, is_dir);
}

int sb_ignore_kinds(const struct sb_ignore *ig, const char *rel, size_t len)
{
	if (!ig || !len)
		return 0;
	if (parent_ignored(ig, rel, len))
		return 3;
	return sb_ignore_match(ig, rel, len, 0) | sb_ignore_match(ig, rel, len, 1) << 1;
}

int sb_ignore_entry(const struct sb_ignore *ig, const char *rel, size_t len, int t0, int t1,
		    int trec)
{
	if (!ig)
		return 0;
	if (t0 == SB_NONE && t1 == SB_NONE)
		return trec != SB_NONE && sb_ignore_match(ig, rel, len, trec == SB_DIR);
	return (t0 != SB_NONE && sb_ignore_match(ig, rel, len, t0 == SB_DIR)) ||
	       (t1 != SB_NONE && sb_ignore_match(ig, rel, len, t1 == SB_DIR));
}

int sb_ignore_view(const struct sb_ignore *ig, const int rootfd[2], const char *rel,
		   int hint)
{
	size_t len = strlen(rel);
	int k = sb_ignore_kinds(ig, rel, len);
	if (k == 0 || k == 3)
		return k != 0;
	/* Only a directory-only pattern (or its negation) tells them apart. */
	for (int i = 0; i < 2; i++) {
		struct stat st;
		if (sb_stat_beneath(rootfd[i], rel, len, &st) == 0)
			return !!(k & (S_ISDIR(st.st_mode) ? 2 : 1));
	}
	return !!(k & (hint == 1 ? 2 : 1));
}

/* ------------------------------------------------------------ compiling */

/* Trailing blanks are dropped unless escaped, as git does. */
static size_t trim(const char *line, size_t len)
{
	while (len && line[len - 1] == ' ') {
		size_t bs = 0;
		while (bs + 1 < len && line[len - 2 - bs] == '\\')
			bs++;
		if (bs & 1)
			break;
		len--;
	}
	return len;
}

/* Splits line into *pt (p, len and flags; line itself not set). */
static int parse(const char *line, size_t len, struct pat *pt, const char **why)
{
	const char *p = line, *dummy;
	size_t n;

	memset(pt, 0, sizeof(*pt));
	*why = NULL;
	if (memchr(line, '\n', len) || memchr(line, '\0', len)) {
		*why = "a pattern is one line of bytes other than NUL";
		return SB_E_BADPATTERN;
	}
	if (len == strlen(SB_IGNORE_NO_DEFAULTS) && !memcmp(line, SB_IGNORE_NO_DEFAULTS, len)) {
		pt->directive = 1;
		return 0;
	}
	n = trim(line, len);
	if (n == 0 || line[0] == '#')
		return 1;	/* nothing to match */
	if (*p == '!') {
		pt->neg = 1;
		p++, n--;
	}
	if (n && *p == '/') {
		pt->anchored = 1;
		while (n && *p == '/')
			p++, n--;
	}
	while (n && p[n - 1] == '/' && !(n >= 2 && p[n - 2] == '\\')) {
		pt->dir_only = 1;
		n--;
	}
	if (n == 0) {
		*why = "it matches nothing";
		return SB_E_BADPATTERN;
	}
	if (memchr(p, '/', n))
		pt->anchored = 1;
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '\\') {
			if (++i == n) {
				*why = "it ends with a lone '\\'";
				return SB_E_BADPATTERN;
			}
		} else if (p[i] == '[') {
			if (bracket(p + i, p + n, 0, &dummy) < 0) {
				*why = "a '[' is not closed by ']' (or names an unknown [:class:])";
				return SB_E_BADPATTERN;
			}
			i = dummy - p - 1;
		}
	}
	pt->p = p;
	pt->len = n;
	return 0;
}

int sb_ignore_check(const char *line, size_t len, const char **why)
{
	struct pat pt;
	const char *w;
	int ret = parse(line, len, &pt, &w);
	if (why)
		*why = w;
	return ret < 0 ? ret : 0;
}

int sb_ignore_add(struct sb_ignore *ig, const char *line, size_t len, int origin)
{
	struct pat pt;
	const char *why;
	int ret = parse(line, len, &pt, &why);

	if (ret != 0)
		return ret < 0 ? ret : 0;
	if (ig->n == ig->cap) {
		size_t cap = ig->cap ? 2 * ig->cap : 16;
		struct pat *v = realloc(ig->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		ig->v = v;
		ig->cap = cap;
	}
	if (!(pt.line = strndup(line, len)))
		return -ENOMEM;
	pt.p = pt.directive ? pt.line : pt.line + (pt.p - line);
	pt.origin = (uint8_t)origin;
	ig->v[ig->n++] = pt;
	if (pt.directive)
		ig->defaults_off = 1;
	return 0;
}

int sb_ignore_new(struct sb_ignore **out)
{
	struct sb_ignore *ig = calloc(1, sizeof(*ig));
	int ret = 0;

	*out = NULL;
	if (!ig)
		return -ENOMEM;
	for (size_t i = 0; ret == 0 && i < sizeof(defaults) / sizeof(defaults[0]); i++)
		ret = sb_ignore_add(ig, defaults[i], strlen(defaults[i]), SB_IGN_DEFAULT);
	if (ret < 0) {
		sb_ignore_free(ig);
		return ret;
	}
	*out = ig;
	return 0;
}

void sb_ignore_free(struct sb_ignore *ig)
{
	if (!ig)
		return;
	for (size_t i = 0; i < ig->n; i++)
		free(ig->v[i].line);
	free(ig->v);
	free(ig);
}

void sb_ignore_no_defaults(struct sb_ignore *ig)
{
	ig->defaults_off = 1;
}

int sb_ignore_defaults_off(const struct sb_ignore *ig)
{
	return ig->defaults_off;
}

size_t sb_ignore_count(const struct sb_ignore *ig)
{
	return ig->n;
}

const char *sb_ignore_line(const struct sb_ignore *ig, size_t i, int *origin)
{
	*origin = ig->v[i].origin;
	return ig->v[i].line;
}

/* ------------------------------------------------------------ the file */

/* All of dirfd's file name (O_NOFOLLOW), malloc'd in *buf; none: *len 0. */
static int read_file(int dirfd, const char *name, char **buf, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *b = NULL;
	int ret = 0, fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);

	*buf = NULL;
	*len = 0;
	if (fd < 0)
		return errno == ENOENT ? 0 : errno == ELOOP ? SB_E_STATE_SYMLINK : -errno;
	for (;;) {
		if (!b || n == cap) {
			char *nb = realloc(b, b ? (cap *= 2) : cap);
			if (!nb) {
				ret = -ENOMEM;
				goto out;
			}
			b = nb;
		}
		ssize_t r = read(fd, b + n, cap - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (r == 0)
			break;
		n += r;
	}
	*buf = b;
	*len = n;
	b = NULL;
out:
	free(b);
	close(fd);
	return ret;
}

/* The next line of buf[0..len) from *pos: its start and length ('\r' dropped). */
static int next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *n)
{
	if (*pos >= len)
		return 0;
	const char *s = buf + *pos, *nl = memchr(s, '\n', len - *pos);
	size_t l = nl ? (size_t)(nl - s) : len - *pos;
	*pos += l + (nl != NULL);
	if (l && s[l - 1] == '\r')
		l--;
	*line = s;
	*n = l;
	return 1;
}

int sb_ignore_load(struct sb_ignore *ig, const char *dir, struct sb_ignore_bad *bad)
{
	char *buf = NULL;
	size_t len, pos = 0, n, no = 0;
	const char *line;
	int ret, dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	memset(bad, 0, sizeof(*bad));
	if (dfd < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((ret = read_file(dfd, SB_IGNORE_FILE, &buf, &len)) < 0)
		goto out;
	while (ret == 0 && next_line(buf, len, &pos, &line, &n)) {
		no++;
		if ((ret = sb_ignore_add(ig, line, n, SB_IGN_FILE)) == SB_E_BADPATTERN) {
			bad->line = no;
			sb_ignore_check(line, n, &bad->why);
			snprintf(bad->text, sizeof(bad->text), "%.*s", (int)n, line);
		}
	}
out:
	free(buf);
	close(dfd);
	return ret;
}

/* Replaces dirfd's ignore file with buf: a new file renamed over it, so a
 * crash leaves the old list or the new one, never half of one. */
static int replace_file(int dirfd, const char *buf, size_t len)
{
	char tmp[64];
	snprintf(tmp, sizeof(tmp), SB_IGNORE_FILE ".tmp.%ld", (long)getpid());
	unlinkat(dirfd, tmp, 0);	/* left by a killed edit of ours */
	int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	int ret = fd < 0 ? -errno : 0;

	if (ret == 0 && (ret = sb_pwrite_all(fd, buf, len, 0)) == 0 && fsync(fd) < 0)
		ret = -errno;
	if (fd >= 0 && close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && renameat(dirfd, tmp, dirfd, SB_IGNORE_FILE) < 0)
		ret = -errno;
	if (ret < 0 && fd >= 0)
		unlinkat(dirfd, tmp, 0);
	if (ret == 0 && fsync(dirfd) < 0)
		ret = -errno;
	return ret;
}

int sb_ignore_edit(const char *dir, const char *line, int add)
{
	char *buf = NULL, *nb = NULL;
	size_t len = 0, pos = 0, n, ll = strlen(line), o = 0;
	const char *l;
	int ret, found = 0, dfd;

	if ((ret = sb_ignore_check(line, ll, NULL)) < 0)
		return ret;
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
		return errno == ELOOP ? SB_E_STATE_SYMLINK : -errno;
	/* Two edits at once must not lose one: each reads what the last wrote. */
	if (flock(dfd, LOCK_EX) < 0) {
		ret = -errno;
		goto out;
	}
	if ((ret = read_file(dfd, SB_IGNORE_FILE, &buf, &len)) < 0)
		goto out;
	if (!(nb = malloc(len + ll + 2))) {
		ret = -ENOMEM;
		goto out;
	}
	while (next_line(buf, len, &pos, &l, &n)) {
		int same = n == ll && !memcmp(l, line, ll);
		found |= same;
		if (same && !add)
			continue;
		memcpy(nb + o, l, n);
		o += n;
		nb[o++] = '\n';
	}
	if (add ? found : !found) {
		ret = 1;
		goto out;
	}
	if (add) {
		memcpy(nb + o, line, ll);
		o += ll;
		nb[o++] = '\n';
	}
	ret = replace_file(dfd, nb, o);
out:
	free(buf);
	free(nb);
	close(dfd);
	return ret;
}
