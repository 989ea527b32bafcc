/*
 * What sbfs mount and umount read of /proc/self/mountinfo: whether a path
 * is a mount point (an sbfs one), and the mount's readahead.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "mountinfo.h"

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = '\0';
}

/*
 * Sequential reads: with the kernel's default readahead of 128 KiB every
 * READ is 128 KiB, one round trip each, one at a time; 4 MiB lets the
 * kernel ask for 1 MiB (max_write) requests, several at once. Set on the
 * mount's backing device info, as mergerfs's readahead option does; best
 * effort (only root may). Found through mountinfo: a stat of the mount
 * point would wait for the loop that is not serving yet.
 */
/* Whether mnt is a mount point (the last mount there, which is the one
 * seen): its device numbers, and whether it is an sbfs mount. */
int mounted_at(const char *mnt, unsigned *maj, unsigned *min, int *sbfs)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], mp[4097];
	int found = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned a, b;
		if (sscanf(line, "%*u %*u %u:%u %*s %4096s", &a, &b, mp) != 3)
			continue;
		unescape(mp);
		if (strcmp(mp, mnt))
			continue;
		*maj = a;
		*min = b;
		found = 1;
		/* after " - ": type, then source (fsname=sbfs:SOURCE) */
		const char *sep = strstr(line, " - ");
		char type[64] = "", src[6] = "";
		*sbfs = sep && sscanf(sep, " - %63s %5s", type, src) == 2 &&
			!strncmp(type, "fuse", 4) && !strcmp(src, "sbfs:");
	}
	fclose(f);
	return found;
}

void set_readahead(const char *mnt)
{
	char path[64];
	unsigned maj, min;
	int sbfs;

	if (!mounted_at(mnt, &maj, &min, &sbfs))
		return;
	snprintf(path, sizeof(path), "/sys/class/bdi/%u:%u/read_ahead_kb", maj, min);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, "4096", 4) < 0) {
			/* not permitted: the kernel's default stays */
		}
		close(fd);
	}
}
