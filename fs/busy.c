/*
 * What keeps a mount busy: the processes whose working directory, root,
 * executable, open files or mapped files lie under it, as fuser -m finds
 * them. Read from /proc's links by name only (readlink), never stat'ed,
 * so a hung mount cannot hang the look.
 */
#include <ctype.h>
#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static int under(const char *path, const char *mnt, size_t n)
{
	return !strncmp(path, mnt, n) && (path[n] == '/' || path[n] == '\0' || path[n] == ' ');
}

static int link_under(const char *link, const char *mnt, size_t n)
{
	char buf[PATH_MAX];
	ssize_t len = readlink(link, buf, sizeof(buf) - 1);
	if (len < 0)
		return 0;
	buf[len] = '\0';
	return under(buf, mnt, n);
}

/* 1 if pid uses mnt, 0 if not, -1 if we may not look (another user's). */
static int holds(const char *pid, const char *mnt, size_t n)
{
	char p[64];
	static const char *const links[] = { "cwd", "root", "exe" };
	snprintf(p, sizeof(p), "/proc/%s/fd", pid);
	DIR *d = opendir(p);
	if (!d)
		return -1;
	int found = 0;
	for (size_t i = 0; i < 3 && !found; i++) {
		snprintf(p, sizeof(p), "/proc/%s/%s", pid, links[i]);
		found = link_under(p, mnt, n);
	}
	for (struct dirent *e; !found && (e = readdir(d));) {
		if (e->d_name[0] == '.')
			continue;
		char f[300];
		snprintf(f, sizeof(f), "/proc/%s/fd/%s", pid, e->d_name);
		found = link_under(f, mnt, n);
	}
	closedir(d);
	snprintf(p, sizeof(p), "/proc/%s/maps", pid);
	FILE *m = found ? NULL : fopen(p, "re");
	char line[PATH_MAX + 128];
	while (m && !found && fgets(line, sizeof(line), m)) {
		char *path = strchr(line, '/');
		if (path) {
			path[strcspn(path, "\n")] = '\0';
			found = under(path, mnt, n);
		}
	}
	if (m)
		fclose(m);
	return found;
}

int busy_holders(FILE *f, const char *mnt, int *hidden)
{
	size_t n = strlen(mnt);
	int count = 0;
	*hidden = 0;
	DIR *d = opendir("/proc");
	if (!d)
		return 0;
	char self[32];
	snprintf(self, sizeof(self), "%d", (int)getpid());
	for (struct dirent *e; (e = readdir(d));) {
		if (!isdigit((unsigned char)e->d_name[0]) || !strcmp(e->d_name, self))
			continue;
		int h = holds(e->d_name, mnt, n);
		if (h < 0) {
			(*hidden)++;
			continue;
		}
		if (!h)
			continue;
		char p[300], comm[64] = "?";
		snprintf(p, sizeof(p), "/proc/%s/comm", e->d_name);
		FILE *c = fopen(p, "re");
		if (c) {
			if (!fgets(comm, sizeof(comm), c))
				strcpy(comm, "?");
			comm[strcspn(comm, "\n")] = '\0';
			fclose(c);
		}
		if (!count++)
			fprintf(f, "  PID COMMAND\n");
		fprintf(f, "  %s %s\n", e->d_name, comm);
	}
	closedir(d);
	return count;
}
