/* Foreign partners: loop images under FUSE drivers, sshd and sshfs; see fsimg.h. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fsimg.h"
#include "fsimg_priv.h"
#include "testlib.h"

char *fsi_fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, f);
	int n = vasprintf(&s, f, ap);
	va_end(ap);
	if (n < 0)
		cr_assert_fail("out of memory");
	return s;
}

long fsi_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

void fsi_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* What a log file holds, for failure messages (never NULL). */
char *fsi_log_text(const char *log)
{
	char *s = log ? tl_read("/", log + 1) : NULL;
	return s ? s : strdup("(no log)");
}

/* Runs argv (a name looked up in PATH) with stdin /dev/null and output
 * appended to log; returns its exit status (128+signal when killed). */
int fsi_run_logged(const char *log, const char *const *argv)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		cr_assert_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		int nul = open("/dev/null", O_RDONLY);
		int out = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(nul, 0);
		dup2(out, 1);
		dup2(out, 2);
		execvp(argv[0], (char *const *)argv);
		dprintf(2, "fsimg: exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* ------------------------------------------------------------------
 * Processes. Drivers daemonise; as a child subreaper the test process
 * inherits them, so they are found among its children and waited for.
 */

void fsi_subreaper(void)
{
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		cr_assert_fail("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
}

/* Parent pid and comm of pid; 0 if it is gone or a zombie. */
static pid_t proc_parent(pid_t pid, char *comm, size_t commlen)
{
	pid_t pp = 0;
	char st = tl_proc_state(pid, comm, commlen, &pp);
	return st && st != 'Z' && st != 'X' ? pp : 0;
}

/* 1 while pid lives (not a zombie) and its comm is comm. */
static int alive_as(pid_t pid, const char *comm)
{
	char c[64];
	return pid > 0 && proc_parent(pid, c, sizeof(c)) > 0 && !strcmp(c, comm);
}

/* 1 if one of pid's arguments contains needle. */
static int cmdline_has(pid_t pid, const char *needle)
{
	char path[64], buf[8192];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	for (char *a = buf; a < buf + n; a += strlen(a) + 1)
		if (strstr(a, needle))
			return 1;
	return 0;
}

/* A live process with this comm, a child of parent (0: any), one of whose
 * arguments contains needle; 0 if none. */
pid_t fsi_find_proc(pid_t parent, const char *comm, const char *needle)
{
	DIR *d = opendir("/proc");
	struct dirent *de;
	pid_t found = 0;
	while (d && !found && (de = readdir(d))) {
		pid_t pid = (pid_t)strtol(de->d_name, NULL, 10);
		char c[64];
		if (pid <= 0)
			continue;
		pid_t pp = proc_parent(pid, c, sizeof(c));
		if (pp > 0 && (!parent || pp == parent) && !strcmp(c, comm) &&
		    cmdline_has(pid, needle))
			found = pid;
	}
	if (d)
		closedir(d);
	return found;
}

/*
 * Waits up to ms for pid to end: reaps it when it is our child (its wait
 * status in *wst), else watches /proc. 1 once it ended.
 */
int fsi_wait_gone(pid_t pid, const char *comm, long ms, int *wst)
{
	long end = fsi_now_ms() + ms;
	if (wst)
		*wst = -1;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			if (wst)
				*wst = st;
			return 1;
		}
		if (r < 0 && !alive_as(pid, comm))
			return 1;
		if (fsi_now_ms() >= end)
			return 0;
		fsi_sleep_ms(10);
	}
}

/* Never asserts: TERM, then KILL, and reaps. */
void fsi_stop_proc(pid_t pid, const char *comm, long grace_ms)
{
	if (pid <= 0 || fsi_wait_gone(pid, comm, grace_ms, NULL))
		return;
	if (alive_as(pid, comm))
		kill(pid, SIGTERM);
	if (fsi_wait_gone(pid, comm, 3000, NULL))
		return;
	if (alive_as(pid, comm))
		kill(pid, SIGKILL);
	fsi_wait_gone(pid, comm, 3000, NULL);
}

/* ------------------------------------------------------------------
 * Loop devices.
 */

int tl_loop_is(const char *loop, const char *img)
{
	if (!loop || strncmp(loop, "/dev/", 5))
		return 0;
	char *p = fsi_fmt("sys/block/%s/loop/backing_file", loop + 5);
	char *s = tl_read("/", p);
	free(p);
	if (!s)
		return 0;
	s[strcspn(s, "\n")] = '\0';
	int r = !strcmp(s, img);
	free(s);
	return r;
}

int tl_loop_any(const char *img)
{
	DIR *d = opendir("/sys/block");
	struct dirent *de;
	int found = 0;
	while (d && !found && (de = readdir(d))) {
		if (strncmp(de->d_name, "loop", 4))
			continue;
		char dev[300];
		snprintf(dev, sizeof(dev), "/dev/%s", de->d_name);
		found = tl_loop_is(dev, img);
	}
	if (d)
		closedir(d);
	return found;
}

/* losetup -d, but only while it is still attached to img: a device that
 * was autocleared may already serve someone else's image. */
static void loop_detach(const char *loop, const char *img)
{
	if (!tl_loop_is(loop, img))
		return;
	int fd = open(loop, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ioctl(fd, LOOP_CLR_FD, 0);
		close(fd);
	}
}

/*
 * Attaches img to a free loop device with LO_FLAGS_AUTOCLEAR and keeps
 * the device open in f->loop_fd: the kernel detaches it when the last
 * holder closes it, i.e. when the driver exits, or this process dies
 * before the driver opened it.
 */
static void loop_attach(struct tl_fsimg *f)
{
	int img = open(f->img, O_RDWR | O_CLOEXEC);
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (img < 0 || ctl < 0)
		cr_assert_fail("cannot open %s: %s: the foreign-FS tests need loop devices",
			       img < 0 ? f->img : "/dev/loop-control", strerror(errno));
	for (int tries = 0;; tries++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0)
			cr_assert_fail("no free loop device (LOOP_CTL_GET_FREE: %s): the foreign-FS "
				       "tests cannot run (and must not pass)", strerror(errno));
		snprintf(f->loop, sizeof(f->loop), "/dev/loop%d", n);
		int fd = -1;
		for (int i = 0; fd < 0 && i < 50; i++) {	/* devtmpfs may lag */
			fd = open(f->loop, O_RDWR | O_CLOEXEC);
			if (fd < 0 && errno != ENOENT)
				break;
			if (fd < 0)
				fsi_sleep_ms(20);
		}
		if (fd < 0)
			cr_assert_fail("open %s: %s", f->loop, strerror(errno));
		struct loop_config c;
		memset(&c, 0, sizeof(c));
		c.fd = (unsigned)img;
		c.info.lo_flags = LO_FLAGS_AUTOCLEAR;
		snprintf((char *)c.info.lo_file_name, sizeof(c.info.lo_file_name), "%s", f->img);
		if (ioctl(fd, LOOP_CONFIGURE, &c) == 0) {
			f->loop_fd = fd;
			break;
		}
		int e = errno;
		close(fd);
		/* Another process took it between GET_FREE and CONFIGURE. */
		if (e != EBUSY || tries >= 20)
			cr_assert_fail("LOOP_CONFIGURE %s for %s: %s", f->loop, f->img, strerror(e));
	}
	close(img);
	close(ctl);
}

/* ------------------------------------------------------------------
 * The watchdog. Messages, one per line: "X" forget everything, "M path"
 * unmount path, "P pid comm" stop that process, "L loop img" detach loop
 * if it still serves img. Only EOF without a final "X" (the test process
 * died) makes it act: lazy unmounts first, so the drivers can exit.
 */

#define GUARD_MAX 8
struct guard_list {
	char *m[GUARD_MAX], *l[GUARD_MAX], *limg[GUARD_MAX], pcomm[GUARD_MAX][64];
	pid_t p[GUARD_MAX];
	int nm, nl, np;
};

static void guard_clear(struct guard_list *g)
{
	for (int i = 0; i < g->nm; i++)
		free(g->m[i]);
	for (int i = 0; i < g->nl; i++) {
		free(g->l[i]);
		free(g->limg[i]);
	}
	memset(g, 0, sizeof(*g));
}

static void guard_line(struct guard_list *g, char *line)
{
	char *arg = line[0] && line[1] == ' ' ? line + 2 : NULL;
	if (line[0] == 'X') {
		guard_clear(g);
	} else if (line[0] == 'M' && arg && g->nm < GUARD_MAX) {
		g->m[g->nm++] = strdup(arg);
	} else if (line[0] == 'P' && arg && g->np < GUARD_MAX) {
		char *sp = strchr(arg, ' ');
		if (sp) {
			snprintf(g->pcomm[g->np], sizeof(g->pcomm[0]), "%s", sp + 1);
			g->p[g->np++] = (pid_t)strtol(arg, NULL, 10);
		}
	} else if (line[0] == 'L' && arg && g->nl < GUARD_MAX) {
		char *sp = strchr(arg, ' ');
		if (sp) {
			*sp = '\0';
			g->l[g->nl] = strdup(arg);
			g->limg[g->nl++] = strdup(sp + 1);
		}
	}
}

static void guard_main(int rfd)
{
	struct guard_list g;
	char buf[8192];
	size_t len = 0;

	memset(&g, 0, sizeof(g));
	tl_watchdog_detach(rfd);
	for (;;) {
		ssize_t n = read(rfd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += n;
		char *nl;
		while ((nl = memchr(buf, '\n', len))) {
			*nl = '\0';
			guard_line(&g, buf);
			len -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, len);
		}
	}
	for (int i = 0; i < g.nm; i++)
		if (tl_mounted(g.m[i])) {
			dprintf(2, "fsimg watchdog: %s still mounted: unmounting lazily\n", g.m[i]);
			umount2(g.m[i], MNT_DETACH);
		}
	for (int i = 0; i < g.np; i++)
		fsi_stop_proc(g.p[i], g.pcomm[i], 5000);
	for (int i = 0; i < g.nl; i++)
		loop_detach(g.l[i], g.limg[i]);
	_exit(0);
}

void fsi_guard_start(struct tl_guard *g)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		cr_assert_fail("pipe2: %s", strerror(errno));
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		cr_assert_fail("fork: %s", strerror(errno));
	if (pid == 0)
		guard_main(p[0]);
	close(p[0]);
	g->pid = pid;
	g->fd = p[1];
}

/* One write, so a message is never half there when we die. */
void fsi_guard_tell(struct tl_guard *g, const char *msg)
{
	size_t n = strlen(msg);
	if (g->fd < 0 || write(g->fd, msg, n) != (ssize_t)n)
		cr_assert_fail("cannot brief the watchdog: %s", strerror(errno));
}

void fsi_guard_stop(struct tl_guard *g)
{
	if (g->fd >= 0) {
		if (write(g->fd, "X\n", 2) != 2) {
			/* it acts on what it was told: nothing is left to undo */
		}
		close(g->fd);
	}
	if (g->pid > 0)
		while (waitpid(g->pid, NULL, 0) < 0 && errno == EINTR)
			;
	g->pid = 0;
	g->fd = -1;
}

/* ------------------------------------------------------------------
 * Images.
 */

static const struct fstype {
	const char *name, *mkfs, *driver, *comm;
} fstypes[] = {
	[TL_EXFAT] = { "exfat", "mkfs.exfat", "mount.exfat-fuse", "mount.exfat-fus" },
	[TL_FAT32] = { "fat32", "mkfs.vfat", "fusefat", "fusefat" },
	[TL_NTFS] = { "ntfs", "mkfs.ntfs", "ntfs-3g", "ntfs-3g" },
	[TL_EXT4] = { "ext4", "mkfs.ext4", NULL, NULL },	/* the kernel's */
};

const char *tl_fstype_name(enum tl_fstype t)
{
	return fstypes[t].name;
}

/* 1 if prog is an executable in PATH or /sbin, /usr/sbin. */
int fsi_have_prog(const char *prog)
{
	const char *path = getenv("PATH");
	char *all = fsi_fmt("%s:/usr/sbin:/sbin", path ? path : "/usr/bin:/bin");
	int found = 0;
	for (char *save = NULL, *d = strtok_r(all, ":", &save); d && !found;
	     d = strtok_r(NULL, ":", &save)) {
		char *p = fsi_fmt("%s/%s", d, prog);
		found = access(p, X_OK) == 0;
		free(p);
	}
	free(all);
	return found;
}

void tl_fsimg_required(enum tl_fstype t)
{
	if (fstypes[t].driver)
		tl_fuse_required();
	cr_assert(access("/dev/loop-control", R_OK | W_OK) == 0,
		  "/dev/loop-control: %s: the %s tests need loop devices and cannot run "
		  "(and must not pass)", strerror(errno), fstypes[t].name);
	cr_assert(fsi_have_prog(fstypes[t].mkfs) &&
		  (!fstypes[t].driver || fsi_have_prog(fstypes[t].driver)),
		  "%s or %s not found: run scripts/install-deps", fstypes[t].mkfs,
		  fstypes[t].driver ? fstypes[t].driver : "(the kernel)");
}

void tl_fsimg_make(struct tl_fsimg *f, enum tl_fstype t, const char *base, const char *dir,
		   int size_mib)
{
	memset(f, 0, sizeof(*f));
	f->loop_fd = -1;
	f->guard.fd = -1;
	f->type = t;
	tl_fsimg_required(t);
	fsi_subreaper();
	char *real = realpath(base, NULL);
	if (!real)
		cr_assert_fail("realpath %s: %s", base, strerror(errno));
	/* The kernel names the backing file by its real path. */
	f->img = fsi_fmt("%s/%s.img", real, fstypes[t].name);
	f->log = fsi_fmt("%s/%s.log", real, fstypes[t].name);
	f->dir = strdup(dir);
	free(real);
	fsi_guard_start(&f->guard);

	int fd = open(f->img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size_mib << 20) < 0)
		cr_assert_fail("create %s: %s", f->img, strerror(errno));
	close(fd);
	int st;
	if (t == TL_EXFAT)	/* exfatprogs 1.2.0: no -q */
		st = fsi_run_logged(f->log, (const char *[]){ "mkfs.exfat", f->img, NULL });
	else if (t == TL_FAT32)
		st = fsi_run_logged(f->log, (const char *[]){ "mkfs.vfat", "-F", "32", f->img, NULL });
	else if (t == TL_NTFS)
		st = fsi_run_logged(f->log, (const char *[]){ "mkfs.ntfs", "-F", "-Q", f->img, NULL });
	else
		st = fsi_run_logged(f->log, (const char *[]){ "mkfs.ext4", "-q", "-F", f->img, NULL });
	if (st != 0) {
		char *l = fsi_log_text(f->log);
		cr_assert_fail("%s %s exited %d:\n%s", fstypes[t].mkfs, f->img, st, l);
	}
	tl_fsimg_mount(f);
}

void tl_fsimg_mount(struct tl_fsimg *f)
{
	const struct fstype *t = &fstypes[f->type];
	loop_attach(f);
	char *msg = fsi_fmt("X\nM %s\nL %s %s\n", f->dir, f->loop, f->img);
	fsi_guard_tell(&f->guard, msg);
	free(msg);

	int st;
	if (!t->driver) {
		if (mount(f->loop, f->dir, t->name, 0, NULL) < 0)
			cr_assert_fail("mount -t %s %s %s: %s", t->name, f->loop, f->dir,
				       strerror(errno));
		/* The kernel holds the device: autoclear detaches it once the
		 * file system is unmounted and let go of. */
		close(f->loop_fd);
		f->loop_fd = -1;
		return;
	}
	if (f->type == TL_FAT32)	/* rw+: read-write; plain rw is refused */
		st = fsi_run_logged(f->log, (const char *[]){ t->driver, "-o", "rw+", f->loop, f->dir,
							  NULL });
	else
		st = fsi_run_logged(f->log, (const char *[]){ t->driver, f->loop, f->dir, NULL });
	long end = fsi_now_ms() + 5000;
	while (st == 0 && !tl_mounted(f->dir) && fsi_now_ms() < end)
		fsi_sleep_ms(10);
	if (st != 0 || !tl_mounted(f->dir)) {
		char *l = fsi_log_text(f->log);
		cr_assert_fail("%s %s %s: exit %d, %s:\n%s", t->driver, f->loop, f->dir, st,
			       tl_mounted(f->dir) ? "mounted" : "not mounted", l);
	}
	f->driver = fsi_find_proc(getpid(), t->comm, f->loop);
	if (!f->driver)
		cr_assert_fail("%s mounted %s but its daemon is not among our children", t->driver,
			       f->dir);
	msg = fsi_fmt("P %d %s\n", (int)f->driver, t->comm);
	fsi_guard_tell(&f->guard, msg);
	free(msg);
	/* The driver holds the device now: autoclear detaches it when it exits. */
	close(f->loop_fd);
	f->loop_fd = -1;
}

void tl_fsimg_umount(struct tl_fsimg *f)
{
	const struct fstype *t = &fstypes[f->type];
	if (umount2(f->dir, 0) < 0)
		cr_assert_fail("umount %s (%s): %s", f->dir, t->name, strerror(errno));
	int wst = -1;
	if (f->driver && !fsi_wait_gone(f->driver, t->comm, 30000, &wst))
		cr_assert_fail("%s (pid %d) did not exit within 30 s of the unmount of %s",
			       t->driver, (int)f->driver, f->dir);
	f->driver = 0;
	if (wst != -1 && !(WIFEXITED(wst) && WEXITSTATUS(wst) == 0)) {
		char *l = fsi_log_text(f->log);
		cr_assert_fail("%s ended with wait status 0x%x after the unmount:\n%s", t->driver,
			       wst, l);
	}
	long end = fsi_now_ms() + 5000;
	while (tl_loop_is(f->loop, f->img) && fsi_now_ms() < end)
		fsi_sleep_ms(10);
	if (tl_loop_is(f->loop, f->img))
		cr_assert_fail("%s still attached to %s after %s exited", f->loop, f->img, t->driver);
	f->loop[0] = '\0';
	fsi_guard_tell(&f->guard, "X\n");
}

void tl_fsimg_pull(struct tl_fsimg *f)
{
	if (umount2(f->dir, MNT_DETACH) < 0)
		cr_assert_fail("umount -l %s: %s", f->dir, strerror(errno));
}

void tl_fsimg_after_pull(struct tl_fsimg *f)
{
	const struct fstype *t = &fstypes[f->type];
	if (f->driver && !fsi_wait_gone(f->driver, t->comm, 30000, NULL))
		cr_assert_fail("%s (pid %d) still runs 30 s after %s was pulled", t->driver,
			       (int)f->driver, f->dir);
	f->driver = 0;
	long end = fsi_now_ms() + 30000;
	while (tl_loop_any(f->img) && fsi_now_ms() < end)
		fsi_sleep_ms(10);
	if (tl_loop_any(f->img))
		cr_assert_fail("%s still attached 30 s after %s was pulled", f->img, f->dir);
	f->loop[0] = '\0';
	fsi_guard_tell(&f->guard, "X\n");
}

void tl_fsimg_remount(struct tl_fsimg *f)
{
	tl_fsimg_umount(f);
	tl_fsimg_mount(f);
}

void tl_fsimg_cleanup(struct tl_fsimg *f)
{
	if (!f->img)
		return;
	if (f->dir && tl_mounted(f->dir) && umount2(f->dir, 0) < 0)
		umount2(f->dir, MNT_DETACH);
	fsi_stop_proc(f->driver, fstypes[f->type].comm, 10000);
	if (f->loop_fd >= 0)
		close(f->loop_fd);
	if (f->loop[0])
		loop_detach(f->loop, f->img);
	fsi_guard_stop(&f->guard);
	free(f->img);
	free(f->dir);
	free(f->log);
	memset(f, 0, sizeof(*f));
	f->loop_fd = -1;
	f->guard.fd = -1;
}

