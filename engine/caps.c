/*
 * What each partner's file system can hold.
 *
 * A USB disk (exFAT, FAT, NTFS) or a network mount (sshfs) cannot keep
 * everything a Linux file system can: modes, owners, symlinks, names that
 * differ only in case, some characters, nanosecond times, inode numbers
 * across a remount. What a side cannot hold must never look like a change
 * (a fake 0777 carried back to the source), and what it cannot store must
 * be skipped with a reason rather than fail every run.
 *
 * The answer comes from trying: in a temporary directory under the root
 * (SB_TMP_PREFIX, which scans never show), sbfs creates a file and sees
 * what sticks, then removes everything. A file system that cannot be
 * written (read only, no permission) gets its type's known limits instead,
 * and nothing is stored, so the next run that can write probes. The result
 * is kept in the state (meta "caps.0", "caps.1") with the root's device and
 * type, and probed again when either changes (a disk replugged, sshfs
 * reconnected: both give a new device number).
 *
 * Whether inode numbers survive a remount cannot be seen in one mount, so
 * it comes from the type: FAT and exFAT number entries as they are met,
 * sshfs and unknown FUSE file systems at every mount. There a fingerprint
 * is compared without device and inode (plan.c), and a same-size edit is
 * still caught by its mtime: the racy rule of fp.c spoils any fingerprint
 * taken within SB_RACY_NS of its mtime on such a side, so the edit either
 * moves the mtime to a later tick or finds the fingerprint spoiled.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>
#include <wctype.h>

#include "core.h"

#define FOUR_GIB_LESS_1 ((uint64_t)4 * 1024 * 1024 * 1024 - 1)
#define CAPS_VERSION 1
#define CAPS_LEN (1 + 4 + 4 + 8 + 8 + 8 + 24 + 16)

/* Characters Windows file systems refuse (and FAT and exFAT drivers with them). */
static const char win_refused[] = ":*?\"<>|\\";

/* ------------------------------------------------------------ type */

/* Known limits by type, for a side that cannot be probed. */
static void type_defaults(struct sb_caps *c)
{
	const char *t = c->fstype;
	uint32_t all = SB_CAP_SYMLINK | SB_CAP_HARDLINK | SB_CAP_MODE | SB_CAP_OWNER |
		       SB_CAP_XATTR | SB_CAP_INO | SB_CAP_CTIME;

	c->flags = all;
	c->time_ns = 1;
	c->file_max = UINT64_MAX;
	c->refused[0] = '\0';
	if (!strcmp(t, "vfat") || !strcmp(t, "msdos") || !strcmp(t, "exfat")) {
		c->flags = SB_CAP_FOLD | SB_CAP_TRAIL | (t[0] == 'e' ? 0 : SB_CAP_MVTIME);
		c->time_ns = t[0] == 'e' ? 1000000000 : 2000000000;
		if (t[0] != 'e')
			c->file_max = FOUR_GIB_LESS_1;
		strcpy(c->refused, win_refused);
	} else if (!strcmp(t, "ntfs") || !strcmp(t, "ntfs3")) {
		c->flags = SB_CAP_SYMLINK | SB_CAP_HARDLINK | SB_CAP_INO | SB_CAP_CTIME;
		c->time_ns = 100;
	} else if (!strcmp(t, "sshfs")) {
		c->flags = SB_CAP_SYMLINK | SB_CAP_MODE;
		c->time_ns = 1000000000;
	} else if (!strncmp(t, "fuse", 4)) {
		c->flags &= ~(uint32_t)SB_CAP_INO;
	}
}

/* Unstable inode numbers are a property of the type; see the top. */
static int type_keeps_inodes(const char *t)
{
	return strcmp(t, "vfat") && strcmp(t, "msdos") && strcmp(t, "exfat") &&
	       strcmp(t, "sshfs") && strncmp(t, "fuse", 4);
}

/* A block device's file system, from its boot sector (FUSE drivers such
 * as exfat-fuse and ntfs-3g show only "fuseblk"). */
static const char *sniff_device(const char *dev)
{
	unsigned char b[512];
	const char *res = NULL;
	int fd = open(dev, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0)
		return NULL;
	if (pread(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b)) {
		if (!memcmp(b + 3, "EXFAT   ", 8))
			res = "exfat";
		else if (!memcmp(b + 3, "NTFS    ", 8))
			res = "ntfs";
		else if (!memcmp(b + 82, "FAT32   ", 8) || !memcmp(b + 54, "FAT1", 4))
			res = "vfat";
	}
	close(fd);
	return res;
}

/* The type of the file system with device dev, from mountinfo. */
static void find_type(dev_t dev, char *out, size_t n)
{
	char want[32], *line = NULL;
	size_t cap = 0;
	FILE *f = fopen("/proc/self/mountinfo", "re");

	snprintf(out, n, "unknown");
	if (!f)
		return;
	snprintf(want, sizeof(want), "%u:%u", major(dev), minor(dev));
	while (getline(&line, &cap, f) > 0) {
		char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
		char *dash = strstr(line, " - ");
		if (!sp2 || !dash || (size_t)(strchr(sp2 + 1, ' ') - sp2 - 1) != strlen(want) ||
		    strncmp(sp2 + 1, want, strlen(want)))
			continue;
		char type[64] = "", src[256] = "";
		if (sscanf(dash + 3, "%63s %255s", type, src) < 1)
			continue;
		const char *t = type, *sniffed;
		if (!strncmp(t, "fuse.", 5) || !strncmp(t, "fuseblk.", 8))
			t = strchr(t, '.') + 1;
		if (!strcmp(t, "fusefat"))
			t = "vfat";
		if ((!strcmp(t, "fuseblk") || !strcmp(t, "fuse")) && !strncmp(src, "/dev/", 5) &&
		    (sniffed = sniff_device(src)))
			t = sniffed;
		snprintf(out, n, "%s", t);
		break;
	}
	free(line);
	fclose(f);
}

/* ------------------------------------------------------------ probe */

static int64_t stat_mtime(const struct stat *st)
{
	return (int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec;
}

/* The coarsest granule that turns `set` into `got` (by truncation or by
 * rounding up), 2 s when none does. */
static int64_t granule(int64_t set, int64_t got)
{
	static const int64_t g[] = { 1, 10, 100, 1000, 10000, 100000, 1000000,
				     10000000, 100000000, 1000000000, 2000000000 };
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		if (set / g[i] * g[i] == got || (set + g[i] - 1) / g[i] * g[i] == got)
			return g[i];
	return 2000000000;
}

/* 1 if a file named name can be made in dfd and is found under that name
 * and no other (a driver that strips a trailing dot makes "t" of "t."). */
static int can_create(int dfd, const char *name, const char *alias)
{
	struct stat st;
	int fd = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	int ok = fd >= 0 && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		 (!alias || fstatat(dfd, alias, &st, AT_SYMLINK_NOFOLLOW) < 0);
	if (fd >= 0)
		close(fd);
	return ok;
}

static void probe_names(int dfd, struct sb_caps *c)
{
	char name[8];
	size_t n = 0;

	for (const char *p = win_refused; *p; p++) {
		snprintf(name, sizeof(name), "x%cy", *p);
		if (!can_create(dfd, name, NULL) && n + 1 < sizeof(c->refused))
			c->refused[n++] = *p;
	}
	c->refused[n] = '\0';
	if (!can_create(dfd, "t.", "t") || !can_create(dfd, "s ", "s"))
		c->flags |= SB_CAP_TRAIL;
	if (!can_create(dfd, "CON", NULL))
		c->flags |= SB_CAP_DOSDEV;
}

static void probe_file(int dfd, struct sb_caps *c, uint32_t owner_default)
{
	struct stat st;
	int fd = openat(dfd, "a", O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);

	if (fd < 0)
		return;
	if (fchmod(fd, 0640) == 0 && fstat(fd, &st) == 0 && (st.st_mode & 07777) == 0640 &&
	    fchmod(fd, 0600) == 0 && fstat(fd, &st) == 0 && (st.st_mode & 07777) == 0600)
		c->flags |= SB_CAP_MODE;
	/* Owners stick where a chown to another user is kept. Refused for
	 * want of privilege (EPERM: not root, or root without CAP_CHOWN) says
	 * nothing of the file system: its type's answer stands then. */
	if (fstat(fd, &st) == 0) {
		uid_t me = st.st_uid;
		if (fchown(fd, me + 1, (gid_t)-1) == 0) {
			if (fstat(fd, &st) == 0 && st.st_uid == me + 1)
				c->flags |= SB_CAP_OWNER;
			(void)!fchown(fd, me, (gid_t)-1);
		} else if (errno == EPERM) {
			c->flags |= owner_default;
		}
	}
	if (fsetxattr(fd, "user.sbfs.probe", "1", 1, 0) == 0)
		c->flags |= SB_CAP_XATTR;
	/* An odd second and nine significant digits: every granule shows. */
	int64_t set = 1000000001555555555LL;
	/* Both times: exfat-fuse mishandles an omitted atime. */
	struct timespec t[2] = { { set / 1000000000, set % 1000000000 },
				 { set / 1000000000, set % 1000000000 } };
	if (futimens(fd, t) == 0 && fstat(fd, &st) == 0) {
		c->time_ns = granule(set, stat_mtime(&st));
		/* A real ctime is the time of the change, not the old mtime set. */
		if (st.st_ctim.tv_sec > t[1].tv_sec + 100)
			c->flags |= SB_CAP_CTIME;
		int64_t before = stat_mtime(&st);
		if (renameat(dfd, "a", dfd, "b") == 0) {
			if (fstat(fd, &st) == 0 && stat_mtime(&st) != before)
				c->flags |= SB_CAP_MVTIME;
			renameat(dfd, "b", dfd, "a");
		}
	}
	close(fd);
	if (fstatat(dfd, "A", &st, AT_SYMLINK_NOFOLLOW) == 0)
		c->flags |= SB_CAP_FOLD;
	if (symlinkat("a", dfd, "l") == 0)
		c->flags |= SB_CAP_SYMLINK;
	if (linkat(dfd, "a", dfd, "h", 0) == 0)
		c->flags |= SB_CAP_HARDLINK;
	/* U+00E9 composed, looked up decomposed (e + U+0301). */
	if (!can_create(dfd, "\xc3\xa9", NULL))
		c->flags |= SB_CAP_ASCII;
	else if (fstatat(dfd, "e\xcc\x81", &st, AT_SYMLINK_NOFOLLOW) == 0)
		c->flags |= SB_CAP_NORM;
}

/* Removes what the probe made: plain entries in one directory. */
static void probe_clean(int rootfd, const char *dir, int dfd)
{
	DIR *d = fdopendir(dup(dfd));
	struct dirent *de;

	if (d) {
		rewinddir(d);
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				unlinkat(dfd, de->d_name, 0);
		closedir(d);
	}
	close(dfd);
	unlinkat(rootfd, dir, AT_REMOVEDIR);
}

/* 0 when probed; else the type's limits stand (c->flags without PROBED). */
static int probe(int rootfd, struct sb_caps *c)
{
	char dir[64];
	struct statvfs vfs;
	int dfd;

	type_defaults(c);
	c->name_max = fstatvfs(rootfd, &vfs) == 0 && vfs.f_namemax ? vfs.f_namemax : 255;
	snprintf(dir, sizeof(dir), SB_TMP_PREFIX "caps.%ld.%lx", (long)getpid(),
		 (unsigned long)sb_wall_ns());
	if (mkdirat(rootfd, dir, 0700) < 0)
		return -errno;
	dfd = openat(rootfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (dfd < 0) {
		int ret = -errno;
		unlinkat(rootfd, dir, AT_REMOVEDIR);
		return ret;
	}
	uint64_t file_max = c->file_max;
	uint32_t owner_default = c->flags & SB_CAP_OWNER;
	c->flags = SB_CAP_PROBED;
	c->time_ns = 2000000000;
	probe_file(dfd, c, owner_default);
	probe_names(dfd, c);
	probe_clean(rootfd, dir, dfd);
	if (type_keeps_inodes(c->fstype))
		c->flags |= SB_CAP_INO;
	c->file_max = file_max;
	return 0;
}

/* ------------------------------------------------------------ storage */

static void encode(const struct sb_caps *c, uint8_t b[CAPS_LEN])
{
	b[0] = CAPS_VERSION;
	put_u32(b + 1, c->flags);
	put_u32(b + 5, c->name_max);
	put_u64(b + 9, (uint64_t)c->time_ns);
	put_u64(b + 17, c->file_max);
	put_u64(b + 25, c->dev);
	memcpy(b + 33, c->fstype, 24);
	memcpy(b + 57, c->refused, 16);
}

static int decode(const uint8_t *b, size_t len, struct sb_caps *c)
{
	if (len != CAPS_LEN || b[0] != CAPS_VERSION)
		return -EINVAL;
	c->flags = get_u32(b + 1);
	c->name_max = get_u32(b + 5);
	c->time_ns = (int64_t)get_u64(b + 9);
	c->file_max = get_u64(b + 17);
	c->dev = get_u64(b + 25);
	memcpy(c->fstype, b + 33, 24);
	memcpy(c->refused, b + 57, 16);
	c->fstype[23] = c->refused[15] = '\0';
	return c->time_ns > 0 ? 0 : -EINVAL;
}

static int load(struct sb_pship *p, int side, struct sb_caps *c)
{
	char key[8] = "caps.0";
	uint8_t b[CAPS_LEN];
	size_t len = sizeof(b);
	struct sb_txn *t;
	int ret;

	key[5] = (char)('0' + side);
	if ((ret = sb_state_begin(p->state, 1, &t)) < 0)
		return ret;
	ret = sb_state_meta_get(t, key, b, &len);
	sb_txn_abort(t);
	return ret < 0 ? ret : decode(b, len, c);
}

static int store(struct sb_pship *p, int side, const struct sb_caps *c)
{
	char key[8] = "caps.0";
	uint8_t b[CAPS_LEN];
	struct sb_txn *t;
	int ret;

	key[5] = (char)('0' + side);
	encode(c, b);
	if ((ret = sb_state_begin(p->state, 0, &t)) < 0)
		return ret;
	if ((ret = sb_state_meta_put(t, key, b, sizeof(b))) < 0) {
		sb_txn_abort(t);
		return ret;
	}
	return sb_txn_commit(t);
}

const struct sb_caps *sb_pship_caps(struct sb_pship *p, int side)
{
	struct sb_caps *c = &p->caps[side], old;
	struct stat st;

	if (p->have_caps[side])
		return c;
	memset(c, 0, sizeof(*c));
	c->dev = fstat(p->rootfd[side], &st) == 0 ? st.st_dev : 0;
	find_type(c->dev, c->fstype, sizeof(c->fstype));
	if (load(p, side, &old) == 0 && old.dev == c->dev && !strcmp(old.fstype, c->fstype) &&
	    (old.flags & SB_CAP_PROBED)) {
		*c = old;
	} else if (probe(p->rootfd[side], c) == 0) {
		/* A state that cannot be written only costs a probe next time. */
		store(p, side, c);
	}
	p->have_caps[side] = 1;
	return c;
}

/* ------------------------------------------------------------ using */

static int dos_device(const char *name, size_t len)
{
	static const char *const dev[] = { "CON", "PRN", "AUX", "NUL" };
	size_t base = 0;
	while (base < len && name[base] != '.')
		base++;
	if (base == 3) {
		for (size_t i = 0; i < 4; i++)
			if (!strncasecmp(name, dev[i], 3))
				return 1;
	}
	return base == 4 && (!strncasecmp(name, "COM", 3) || !strncasecmp(name, "LPT", 3)) &&
	       name[3] >= '1' && name[3] <= '9';
}

int sb_caps_any_name(const struct sb_caps *c)
{
	return !c->refused[0] && !(c->flags & (SB_CAP_TRAIL | SB_CAP_DOSDEV | SB_CAP_ASCII)) &&
	       c->name_max >= 255;
}

int sb_caps_storable(const struct sb_caps *c, const char *name, size_t len,
		     int type, uint64_t size, char buf[64], const char **why)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (ch && strchr(c->refused, ch)) {
			snprintf(buf, 64, "name contains '%c'", ch);
			*why = buf;
			return -EINVAL;
		}
	}
	if (c->flags & SB_CAP_ASCII) {
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)name[i] >= 0x80) {
				*why = "name has characters beyond ASCII";
				return -EINVAL;
			}
	}
	if ((c->flags & SB_CAP_TRAIL) && len && (name[len - 1] == '.' || name[len - 1] == ' ')) {
		*why = name[len - 1] == '.' ? "name ends with a dot" : "name ends with a space";
		return -EINVAL;
	}
	if ((c->flags & SB_CAP_DOSDEV) && dos_device(name, len)) {
		*why = "name is reserved (a DOS device name)";
		return -EINVAL;
	}
	if (len > c->name_max) {
		snprintf(buf, 64, "name too long (%zu bytes, at most %u)", len, c->name_max);
		*why = buf;
		return -ENAMETOOLONG;
	}
	if (type == SB_LINK && !(c->flags & SB_CAP_SYMLINK)) {
		*why = "no symbolic links";
		return -EOPNOTSUPP;
	}
	/* What keeps no modes keeps no FIFOs or device nodes either (FAT, exFAT). */
	if (sb_type_special(type) && !(c->flags & SB_CAP_MODE)) {
		*why = "no special files";
		return -EOPNOTSUPP;
	}
	if (type == SB_FILE && size > c->file_max) {
		snprintf(buf, 64, "too large (%llu MiB, at most %llu MiB)",
			 (unsigned long long)(size >> 20), (unsigned long long)(c->file_max >> 20));
		*why = buf;
		return -EFBIG;
	}
	return 0;
}

int sb_caps_same_time(const struct sb_caps *a, const struct sb_caps *b, int64_t x, int64_t y)
{
	int64_t g = a->time_ns > b->time_ns ? a->time_ns : b->time_ns;
	int64_t d = x > y ? x - y : y - x;
	return d < g;
}

static void granule_text(int64_t g, char *buf, size_t n)
{
	if (g >= 1000000000)
		snprintf(buf, n, "%lld s", (long long)(g / 1000000000));
	else if (g >= 1000000)
		snprintf(buf, n, "%lld ms", (long long)(g / 1000000));
	else if (g >= 1000)
		snprintf(buf, n, "%lld us", (long long)(g / 1000));
	else
		snprintf(buf, n, "%lld ns", (long long)g);
}

void sb_caps_describe(const struct sb_caps *c, char *buf, size_t n)
{
	static const struct { uint32_t flag; int want; const char *text; } facts[] = {
		{ SB_CAP_FOLD, 1, "case-insensitive" },
		{ SB_CAP_NORM, 1, "unicode-normalising" },
		{ SB_CAP_MODE, 0, "no modes" },
		{ SB_CAP_OWNER, 0, "no owners" },
		{ SB_CAP_SYMLINK, 0, "no symlinks" },
		{ SB_CAP_HARDLINK, 0, "no hard links" },
		{ SB_CAP_XATTR, 0, "no xattrs" },
		{ SB_CAP_INO, 0, "inode numbers change on remount" },
		{ SB_CAP_CTIME, 0, "no ctime" },
		{ SB_CAP_ASCII, 1, "ASCII names only" },
	};
	char g[32];
	size_t off = (size_t)snprintf(buf, n, "%s%s:", c->fstype,
				      c->flags & SB_CAP_PROBED ? "" : " (not probed)");
	const char *sep = " ";

	for (size_t i = 0; i < sizeof(facts) / sizeof(facts[0]) && off < n; i++) {
		if (!!(c->flags & facts[i].flag) != facts[i].want)
			continue;
		off += (size_t)snprintf(buf + off, n - off, "%s%s", sep, facts[i].text);
		sep = ", ";
	}
	granule_text(c->time_ns, g, sizeof(g));
	if (off < n)
		off += (size_t)snprintf(buf + off, n - off, "%stimes %s", sep, g);
	if (off < n && c->file_max != UINT64_MAX)
		off += (size_t)snprintf(buf + off, n - off, ", files under %llu GiB",
					(unsigned long long)((c->file_max + 1) >> 30));
	if (off < n && c->refused[0])
		off += (size_t)snprintf(buf + off, n - off, ", refuses %s in names", c->refused);
	if (off < n && (c->flags & SB_CAP_TRAIL))
		snprintf(buf + off, n - off, ", no trailing dot or space");
}

void sb_caps_json(const struct sb_caps *c, FILE *f)
{
	static const struct { uint32_t flag; const char *key; } keys[] = {
		{ SB_CAP_PROBED, "probed" }, { SB_CAP_SYMLINK, "symlinks" },
		{ SB_CAP_HARDLINK, "hard_links" }, { SB_CAP_MODE, "modes" },
		{ SB_CAP_OWNER, "owners" }, { SB_CAP_XATTR, "xattrs" },
		{ SB_CAP_INO, "stable_inodes" }, { SB_CAP_CTIME, "real_ctime" },
		{ SB_CAP_NORM, "normalises_unicode" }, { SB_CAP_ASCII, "ascii_names_only" }, { SB_CAP_TRAIL, "refuses_trailing_dot" },
	};
	fputs("{\"fs\":", f);
	sb_json_string(f, c->fstype, strlen(c->fstype));
	fprintf(f, ",\"case_sensitive\":%s", c->flags & SB_CAP_FOLD ? "false" : "true");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
		fprintf(f, ",\"%s\":%s", keys[i].key, c->flags & keys[i].flag ? "true" : "false");
	fprintf(f, ",\"time_ns\":%lld,\"name_max\":%u", (long long)c->time_ns, c->name_max);
	if (c->file_max != UINT64_MAX)
		fprintf(f, ",\"file_max\":%llu", (unsigned long long)c->file_max);
	fputs(",\"refused\":", f);
	sb_json_string(f, c->refused, strlen(c->refused));
	fputc('}', f);
}

void sb_pship_describe(struct sb_pship *p, int side, char *buf, size_t n)
{
	sb_caps_describe(sb_pship_caps(p, side), buf, n);
}

void sb_pship_caps_json(struct sb_pship *p, int side, FILE *f)
{
	sb_caps_json(sb_pship_caps(p, side), f);
}

/* ------------------------------------------------------------ names */

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_init(void)
{
	utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

/* One UTF-8 sequence at s (n > 0 bytes left): its code point and length,
 * or -1 for a byte that starts none (then kept as it is). */
static int32_t utf8_next(const unsigned char *s, size_t n, size_t *used)
{
	int len = s[0] < 0x80 ? 1 : (s[0] & 0xe0) == 0xc0 ? 2 : (s[0] & 0xf0) == 0xe0 ? 3
		: (s[0] & 0xf8) == 0xf0 ? 4 : 0;
	int32_t cp = len == 1 ? s[0] : len == 2 ? s[0] & 0x1f : len == 3 ? s[0] & 0x0f : s[0] & 0x07;

	*used = 1;
	if (!len || (size_t)len > n)
		return -1;
	for (int i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return -1;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	*used = (size_t)len;
	return cp;
}

static size_t utf8_put(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/*
 * The name as a case-insensitive side compares it: each character upper
 * cased by Unicode's simple mapping (what exFAT's up-case table and NTFS's
 * $UpCase hold; FAT's long names compare the same way), bytes that are not
 * UTF-8 kept as they are. malloc'd, NUL-terminated; NULL on ENOMEM.
 */
char *sb_caps_fold(const char *name, size_t len)
{
	const unsigned char *s = (const unsigned char *)name;
	char *out = malloc(4 * len + 1);
	size_t o = 0, used;

	if (!out)
		return NULL;
	pthread_once(&utf8_once, utf8_init);
	for (size_t i = 0; i < len; i += used) {
		int32_t cp = utf8_next(s + i, len - i, &used);
		if (cp < 0) {
			out[o++] = name[i];
			continue;
		}
		uint32_t up = utf8_locale ? (uint32_t)towupper_l((wint_t)cp, utf8_locale)
			: (uint32_t)(cp < 0x80 ? toupper(cp) : cp);
		o += utf8_put(up, out + o);
	}
	out[o] = '\0';
	return out;
}

int sb_pship_local(struct sb_pship *p, int side)
{
	static const char *const remote[] = {
		"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "sshfs",
		"davfs", "afs", "lustre", "gfs2", "ocfs2", "fuse", "fuseblk",
	};
	const char *t = sb_pship_caps(p, side)->fstype;
	for (size_t i = 0; i < sizeof(remote) / sizeof(*remote); i++)
		if (!strcmp(t, remote[i]))
			return 0;
	return t[0] != '\0';
}
