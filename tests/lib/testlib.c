/* Helpers for tests that drive the sbfs binary; see testlib.h. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testlib.h"

static char *xasprintf(const char *fmt, const char *a, const char *b)
{
	char *s = NULL;
	if (asprintf(&s, fmt, a, b) < 0)
		cr_assert_fail("out of memory");
	return s;
}

void tl_env_init(struct tl_env *e)
{
	/* SBFS_TEST_ROOT: one run's own directory (scripts/run-tests), so
	 * that its clean-up never touches another run's mounts. */
	const char *root = getenv("SBFS_TEST_ROOT");
	char *tmpl = xasprintf("%s/%s", root && *root ? root : "/tmp", "sbfs-test.XXXXXX");
	if (!mkdtemp(tmpl))
		cr_assert_fail("mkdtemp: %s", strerror(errno));
	e->base = tmpl;
	e->src = xasprintf("%s/%s", tmpl, "src");
	e->tgt = xasprintf("%s/%s", tmpl, "tgt");
	e->state = xasprintf("%s/%s", tmpl, "state");
	e->log = xasprintf("%s/%s", tmpl, "state/log.jsonl");
	e->no_file_caps = 0;
	if (mkdir(e->src, 0755) < 0 || mkdir(e->tgt, 0755) < 0)
		cr_assert_fail("mkdir: %s", strerror(errno));
}

static void rm_at(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (fd >= 0) {
		fchmod(fd, 0700);
		DIR *d = fdopendir(fd);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
				continue;
			rm_at(fd, de->d_name);
		}
		if (d)
			closedir(d);
		unlinkat(dirfd, name, AT_REMOVEDIR);
	} else {
		unlinkat(dirfd, name, 0);
	}
}

void tl_env_fini(struct tl_env *e)
{
	if (e->base)
		rm_at(AT_FDCWD, e->base);
	free(e->base);
	free(e->src);
	free(e->tgt);
	free(e->state);
	free(e->log);
	memset(e, 0, sizeof(*e));
}

const char *tl_sbfs(void)
{
	const char *b = getenv("SBFS_BIN");
	return b && *b ? b : "build/sbfs";
}

static void slurp(int fd, char **buf, size_t *len)
{
	size_t cap = 4096;
	*buf = malloc(cap);
	*len = 0;
	for (;;) {
		if (*len + 1 >= cap)
			*buf = realloc(*buf, cap *= 2);
		ssize_t n = read(fd, *buf + *len, cap - *len - 1);
		if (n <= 0)
			break;
		*len += n;
	}
	(*buf)[*len] = '\0';
}

int tl_drop_file_caps(void)
{
	static const int caps[] = { CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_CHOWN,
				    CAP_FSETID };
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return -errno;
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		if (prctl(PR_CAPBSET_DROP, caps[i], 0, 0, 0) < 0)
			return -errno;
		data[0].effective &= ~(1u << caps[i]);
		data[0].permitted &= ~(1u << caps[i]);
		data[0].inheritable &= ~(1u << caps[i]);
	}
	return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

struct tl_run tl_sbfs_run(const struct tl_env *e, const char *input, const char *const *argv)
{
	struct tl_run r = { 0 };
	char outp[] = "/tmp/sbfs-out.XXXXXX", errp[] = "/tmp/sbfs-err.XXXXXX";
	int of = mkstemp(outp), ef = mkstemp(errp), inpipe[2];
	size_t n = 0;

	while (argv[n])
		n++;
	if (of < 0 || ef < 0 || pipe(inpipe) < 0)
		cr_assert_fail("mkstemp/pipe: %s", strerror(errno));
	unlink(outp);
	unlink(errp);
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		const char **av = calloc(n + 2, sizeof(*av));
		av[0] = tl_sbfs();
		memcpy(av + 1, argv, n * sizeof(*av));
		dup2(inpipe[0], 0);
		dup2(of, 1);
		dup2(ef, 2);
		close(inpipe[1]);
		setenv("SBFS_STATE_DIR", e->state, 1);
		if (e->no_file_caps && tl_drop_file_caps() < 0) {
			dprintf(2, "testlib: cannot drop capabilities: %s\n", strerror(errno));
			_exit(127);
		}
		execv(av[0], (char *const *)av);
		_exit(127);
	}
	close(inpipe[0]);
	if (input) {
		size_t len = strlen(input), off = 0;
		while (off < len) {
			ssize_t w = write(inpipe[1], input + off, len - off);
			if (w <= 0)
				break;
			off += w;
		}
	}
	close(inpipe[1]);
	int st;
	waitpid(pid, &st, 0);
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	lseek(of, 0, SEEK_SET);
	lseek(ef, 0, SEEK_SET);
	slurp(of, &r.out, &r.outlen);
	slurp(ef, &r.err, &r.errlen);
	close(of);
	close(ef);
	/* A sanitizer's exit status can be one the test expects (1): its
	 * report must fail the test all the same. */
	if (strstr(r.err, "runtime error:") || strstr(r.err, "ERROR: AddressSanitizer") ||
	    strstr(r.err, "ERROR: LeakSanitizer"))
		cr_assert_fail("sbfs %s: a sanitizer report:\n%s", argv[0] ? argv[0] : "", r.err);
	return r;
}

/* `CMD [OPTS...] SRC TGT` into av (32 slots). */
static void cmd_argv(const struct tl_env *e, const char *cmd, const char *const *opts,
		     const char *av[32])
{
	size_t n = 0;
	av[n++] = cmd;
	for (size_t i = 0; opts && opts[i] && n < 28; i++)
		av[n++] = opts[i];
	av[n++] = e->src;
	av[n++] = e->tgt;
	av[n] = NULL;
}

struct tl_run tl_cmd(const struct tl_env *e, const char *cmd, const char *const *opts)
{
	const char *av[32];
	cmd_argv(e, cmd, opts, av);
	return tl_sbfs_run(e, NULL, av);
}

void tl_run_free(struct tl_run *r)
{
	free(r->out);
	free(r->err);
	r->out = r->err = NULL;
}

char *tl_join(const char *dir, const char *rel)
{
	return xasprintf("%s/%s", dir, rel);
}

const char *tl_at(const char *dir, const char *rel)
{
	static char buf[8][4096];
	static int i;
	char *b = buf[i++ % 8];
	snprintf(b, sizeof(buf[0]), "%s/%s", dir, rel);
	return b;
}

void tl_mkparents(const char *path)
{
	char *p = strdup(path);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST)
			cr_assert_fail("mkdir %s: %s", p, strerror(errno));
		*s = '/';
	}
	free(p);
}

void tl_write_n(const char *dir, const char *rel, const void *buf, size_t n)
{
	char *p = tl_join(dir, rel);
	tl_mkparents(p);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, buf, n) != (ssize_t)n)
		cr_assert_fail("write %s: %s", p, strerror(errno));
	close(fd);
	free(p);
}

void tl_write(const char *dir, const char *rel, const char *content)
{
	tl_write_n(dir, rel, content, strlen(content));
}

char *tl_read(const char *dir, const char *rel)
{
	char *p = tl_join(dir, rel), *buf;
	size_t len;
	int fd = open(p, O_RDONLY);
	free(p);
	if (fd < 0)
		return NULL;
	slurp(fd, &buf, &len);
	close(fd);
	return buf;
}

int tl_exists(const char *dir, const char *rel)
{
	struct stat st;
	char *p = tl_join(dir, rel);
	int r = lstat(p, &st) == 0;
	free(p);
	return r;
}

void tl_mkdir(const char *dir, const char *rel)
{
	char *p = tl_join(dir, rel);
	tl_mkparents(p);
	if (mkdir(p, 0755) < 0 && errno != EEXIST)
		cr_assert_fail("mkdir %s: %s", p, strerror(errno));
	free(p);
}

void tl_rm(const char *dir, const char *rel)
{
	char *p = tl_join(dir, rel);
	rm_at(AT_FDCWD, p);
	free(p);
}

void tl_set_mtime(const char *dir, const char *rel, long sec)
{
	char *p = tl_join(dir, rel);
	struct timespec t[2] = { { sec, 0 }, { sec, 0 } };
	if (utimensat(AT_FDCWD, p, t, AT_SYMLINK_NOFOLLOW) < 0)
		cr_assert_fail("utimensat %s: %s", p, strerror(errno));
	free(p);
}

static int names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static char **list(int fd, size_t *n)
{
	int d2 = dup(fd);
	DIR *d = fdopendir(d2);
	struct dirent *de;
	char **v = NULL;
	*n = 0;
	while (d && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		v = realloc(v, (*n + 1) * sizeof(*v));
		v[(*n)++] = strdup(de->d_name);
	}
	if (d)
		closedir(d);
	if (*n)
		qsort(v, *n, sizeof(*v), names_cmp);
	return v;
}

static int cmp_fd(int fa, int fb)
{
	char ba[65536], bb[65536];
	for (;;) {
		ssize_t na = read(fa, ba, sizeof(ba)), nb = read(fb, bb, sizeof(bb));
		if (na != nb || (na > 0 && memcmp(ba, bb, na)))
			return 0;
		if (na <= 0)
			return 1;
	}
}

static int eq_at(int a, int b, const char *rel, char **why)
{
	size_t na, nb;
	char **la = list(a, &na), **lb = list(b, &nb);
	int ok = 1;

	/* Each side's old versions are its own: reconcile never syncs them. */
	for (int s = 0; !strcmp(rel, ".") && s < 2; s++) {
		char **l = s ? lb : la;
		size_t *n = s ? &nb : &na;
		for (size_t k = 0; k < *n; k++)
			if (!strcmp(l[k], ".sbfs-versions")) {
				free(l[k]);
				memmove(&l[k], &l[k + 1], (*n - k - 1) * sizeof(*l));
				--*n;
				break;
			}
	}
	for (size_t i = 0, j = 0; ok && (i < na || j < nb);) {
		int c = i >= na ? 1 : j >= nb ? -1 : strcmp(la[i], lb[j]);
		if (c) {
			if (why)
				*why = xasprintf("%s/%s: only on one side", rel, c < 0 ? la[i] : lb[j]);
			ok = 0;
			break;
		}
		const char *n = la[i];
		struct stat sa, sb;
		fstatat(a, n, &sa, AT_SYMLINK_NOFOLLOW);
		fstatat(b, n, &sb, AT_SYMLINK_NOFOLLOW);
		char *sub = xasprintf("%s/%s", rel, n);
		if ((sa.st_mode & S_IFMT) != (sb.st_mode & S_IFMT)) {
			ok = 0;
		} else if (!S_ISLNK(sa.st_mode) && (sa.st_mode & 07777) != (sb.st_mode & 07777)) {
			ok = 0;
		} else if (S_ISREG(sa.st_mode)) {
			int fa = openat(a, n, O_RDONLY), fb = openat(b, n, O_RDONLY);
			ok = fa >= 0 && fb >= 0 && sa.st_size == sb.st_size && cmp_fd(fa, fb) &&
			     sa.st_mtim.tv_sec == sb.st_mtim.tv_sec &&
			     sa.st_mtim.tv_nsec == sb.st_mtim.tv_nsec;
			close(fa);
			close(fb);
		} else if (S_ISLNK(sa.st_mode)) {
			char ta[4096] = "", tb[4096] = "";
			ok = readlinkat(a, n, ta, sizeof(ta) - 1) >= 0 &&
			     readlinkat(b, n, tb, sizeof(tb) - 1) >= 0 && !strcmp(ta, tb);
		} else if (S_ISDIR(sa.st_mode)) {
			int da = openat(a, n, O_RDONLY | O_DIRECTORY), db = openat(b, n, O_RDONLY | O_DIRECTORY);
			ok = da >= 0 && db >= 0 && eq_at(da, db, sub, why);
			close(da);
			close(db);
			if (!ok) {
				free(sub);
				break;
			}
		}
		if (!ok && why)
			*why = xasprintf("%s%s: differs", sub, "");
		free(sub);
		i++;
		j++;
	}
	for (size_t i = 0; i < na; i++)
		free(la[i]);
	for (size_t i = 0; i < nb; i++)
		free(lb[i]);
	free(la);
	free(lb);
	return ok;
}

int tl_trees_equal(const char *a, const char *b, char **why)
{
	int fa = open(a, O_RDONLY | O_DIRECTORY), fb = open(b, O_RDONLY | O_DIRECTORY);
	if (why)
		*why = NULL;
	if (fa < 0 || fb < 0)
		cr_assert_fail("open %s or %s: %s", a, b, strerror(errno));
	int r = eq_at(fa, fb, ".", why);
	close(fa);
	close(fb);
	return r;
}

static size_t count_at(int fd)
{
	size_t n, total = 0;
	char **l = list(fd, &n);
	for (size_t i = 0; i < n; i++) {
		struct stat st;
		total++;
		if (fstatat(fd, l[i], &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
			int d = openat(fd, l[i], O_RDONLY | O_DIRECTORY);
			if (d >= 0) {
				total += count_at(d);
				close(d);
			}
		}
		free(l[i]);
	}
	free(l);
	return total;
}

size_t tl_count(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return 0;
	size_t n = count_at(fd);
	/* the root's old versions are that side's own (engine/versions.c) */
	int vd = openat(fd, ".sbfs-versions", O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (vd >= 0) {
		n -= 1 + count_at(vd);
		close(vd);
	}
	close(fd);
	return n;
}

/* ------------------------------------------------------------------
 * Background runs and runs without DAC capabilities; see testlib.h.
 */
#include <signal.h>

void tl_spawn_ex(struct tl_proc *p, const struct tl_env *e, const char *prog,
		 int flags, const char *const *args)
{
	char outp[] = "/tmp/sbfs-out.XXXXXX", errp[] = "/tmp/sbfs-err.XXXXXX";
	size_t n = 0;

	memset(p, 0, sizeof(*p));
	while (args[n])
		n++;
	p->out = mkostemp(outp, O_CLOEXEC);
	p->err = mkostemp(errp, O_CLOEXEC);
	if (p->out < 0 || p->err < 0)
		cr_assert_fail("mkstemp: %s", strerror(errno));
	unlink(outp);
	unlink(errp);
	if (!prog)
		prog = tl_sbfs();
	fflush(NULL);
	p->pid = fork();
	if (p->pid < 0)
		cr_assert_fail("fork: %s", strerror(errno));
	if (p->pid == 0) {
		const char **av = calloc(n + 2, sizeof(*av));
		int nul = open("/dev/null", O_RDONLY);
		av[0] = prog;
		memcpy(av + 1, args, n * sizeof(*av));
		dup2(nul, 0);
		dup2(p->out, 1);
		dup2(p->err, 2);
		if (e)
			setenv("SBFS_STATE_DIR", e->state, 1);
		if ((flags & TL_NO_DAC) &&
		    (prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) < 0 ||
		     prctl(PR_CAPBSET_DROP, CAP_DAC_READ_SEARCH, 0, 0, 0) < 0)) {
			dprintf(2, "testlib: prctl(PR_CAPBSET_DROP): %s\n", strerror(errno));
			_exit(126);
		}
		if (strchr(prog, '/'))
			execv(prog, (char *const *)av);
		else
			execvp(prog, (char *const *)av);
		dprintf(2, "testlib: exec %s: %s\n", prog, strerror(errno));
		_exit(127);
	}
}

void tl_spawn_cmd(struct tl_proc *p, const struct tl_env *e, const char *cmd,
		  const char *const *opts)
{
	const char *av[32];
	cmd_argv(e, cmd, opts, av);
	tl_spawn_ex(p, e, NULL, 0, av);
}

/* Reads all of fd from offset 0 without moving the offset the child writes at. */
static void pslurp(int fd, char **buf, size_t *len)
{
	size_t cap = 4096;
	*buf = malloc(cap);
	*len = 0;
	for (;;) {
		if (*len + 1 >= cap)
			*buf = realloc(*buf, cap *= 2);
		ssize_t n = pread(fd, *buf + *len, cap - *len - 1, *len);
		if (n <= 0)
			break;
		*len += n;
	}
	(*buf)[*len] = '\0';
}

char *tl_proc_err(const struct tl_proc *p)
{
	char *buf;
	size_t len;
	pslurp(p->err, &buf, &len);
	return buf;
}

int tl_proc_done(struct tl_proc *p)
{
	if (p->reaped)
		return 1;
	pid_t r = waitpid(p->pid, &p->wstatus, WNOHANG);
	if (r == p->pid)
		p->reaped = 1;
	return p->reaped;
}

struct tl_run tl_proc_wait(struct tl_proc *p, int sig)
{
	struct tl_run r = { 0 };
	if (!p->reaped) {
		if (sig)
			kill(p->pid, sig);
		while (waitpid(p->pid, &p->wstatus, 0) < 0) {
			if (errno != EINTR)
				cr_assert_fail("waitpid: %s", strerror(errno));
		}
		p->reaped = 1;
	}
	int st = p->wstatus;
	r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	pslurp(p->out, &r.out, &r.outlen);
	pslurp(p->err, &r.err, &r.errlen);
	close(p->out);
	close(p->err);
	p->out = p->err = -1;
	return r;
}

struct tl_run tl_sbfs_run_nodac(const struct tl_env *e, const char *const *argv)
{
	struct tl_proc p;
	tl_spawn_ex(&p, e, NULL, TL_NO_DAC, argv);
	return tl_proc_wait(&p, 0);
}

struct tl_run tl_cmd_nodac(const struct tl_env *e, const char *cmd, const char *const *opts)
{
	const char *av[32];
	cmd_argv(e, cmd, opts, av);
	return tl_sbfs_run_nodac(e, av);
}

void tl_assert_nodac_denied(const char *dir)
{
	struct tl_proc p;
	tl_spawn_ex(&p, NULL, "ls", TL_NO_DAC, (const char *[]){ "-a", "--", dir, NULL });
	struct tl_run r = tl_proc_wait(&p, 0);
	if (r.status == 126)
		cr_assert_fail("cannot drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH "
			       "(no CAP_SETPCAP?): %s", r.err);
	if (r.status == 0 || !strstr(r.err, "Permission denied"))
		cr_assert_fail("a child without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH "
			       "could still list %s (ls exit %d: %s%s): the permission "
			       "tests would prove nothing", dir, r.status, r.out, r.err);
	tl_run_free(&r);
}

/* ------------------------------------------------------------------
 * FUSE mounts; see testlib.h.
 */
#include <time.h>

void tl_fuse_required(void)
{
	struct stat st;
	cr_assert(stat("/dev/fuse", &st) == 0 && S_ISCHR(st.st_mode),
		  "/dev/fuse is missing or not a character device: the mount tests "
		  "cannot run (and must not pass)");
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	cr_assert(fd >= 0, "cannot open /dev/fuse: %s: the mount tests cannot run",
		  strerror(errno));
	close(fd);
	cr_assert(access("/usr/bin/fusermount3", X_OK) == 0 || access("/bin/fusermount3", X_OK) == 0,
		  "fusermount3 not found: the mount tests cannot run");
}

/* dir with its parent canonicalised (a dead FUSE mount point cannot be
 * resolved itself: stat gives ENOTCONN). */
static char *canon(const char *dir)
{
	char *copy = strdup(dir), *slash = strrchr(copy, '/'), *res = NULL;
	if (slash && slash[1]) {
		*slash = '\0';
		char *parent = realpath(*copy ? copy : "/", NULL);
		if (parent) {
			res = xasprintf("%s/%s", strcmp(parent, "/") ? parent : "", slash + 1);
			free(parent);
		}
	}
	if (!res)
		res = realpath(dir, NULL);
	if (!res)
		res = strdup(dir);
	free(copy);
	return res;
}

/* Mount points from /proc/self/mountinfo, octal escapes decoded; calls
 * match() for each and returns 1 as soon as one matches. */
static int any_mount(int (*match)(const char *mp, const char *arg), const char *arg)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char *line = NULL;
	size_t cap = 0;
	int found = 0;
	if (!f)
		return 0;
	while (!found && getline(&line, &cap, f) > 0) {
		char *p = line;
		for (int field = 0; field < 4 && p; field++) {
			p = strchr(p, ' ');
			if (p)
				p++;
		}
		if (!p)
			continue;
		char mp[4096];
		size_t n = 0;
		while (*p && *p != ' ' && n < sizeof(mp) - 1) {
			if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
				mp[n++] = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
				p += 4;
			} else {
				mp[n++] = *p++;
			}
		}
		mp[n] = '\0';
		found = match(mp, arg);
	}
	free(line);
	fclose(f);
	return found;
}

static int match_eq(const char *mp, const char *dir)
{
	return !strcmp(mp, dir);
}

static int match_under(const char *mp, const char *dir)
{
	size_t n = strlen(dir);
	return !strncmp(mp, dir, n) && (mp[n] == '/' || mp[n] == '\0');
}

int tl_mounted(const char *dir)
{
	char *c = canon(dir);
	int r = any_mount(match_eq, c);
	free(c);
	return r;
}

int tl_mounted_under(const char *dir)
{
	char *c = canon(dir);
	int r = any_mount(match_under, c);
	free(c);
	return r;
}

/* Runs argv with sanitizer reports going to files sanlog.PID (when sanlog
 * is not NULL): the daemon's stderr is /dev/null. */
static struct tl_run run_sanlog(const struct tl_env *e, const char *sanlog,
				const char *const *argv)
{
	static const char *const vars[] = { "ASAN_OPTIONS", "UBSAN_OPTIONS" };
	char *saved[2] = { NULL, NULL };
	for (int i = 0; sanlog && i < 2; i++) {
		const char *old = getenv(vars[i]);
		saved[i] = old ? strdup(old) : NULL;
		char *v = xasprintf("%s%slog_path=", old ? old : "", old && *old ? ":" : "");
		char *full = xasprintf("%s%s", v, sanlog);
		setenv(vars[i], full, 1);
		free(v);
		free(full);
	}
	struct tl_run r = tl_sbfs_run(e, NULL, argv);
	for (int i = 0; sanlog && i < 2; i++) {
		if (saved[i])
			setenv(vars[i], saved[i], 1);
		else
			unsetenv(vars[i]);
		free(saved[i]);
	}
	return r;
}

struct tl_run tl_mount_run(const struct tl_env *e, const char *mnt, const char *const *opts)
{
	const char *av[32];
	size_t n = 0;
	av[n++] = "mount";
	for (size_t i = 0; opts && opts[i] && n < 27; i++)
		av[n++] = opts[i];
	av[n++] = e->src;
	av[n++] = e->tgt;
	av[n++] = mnt;
	av[n] = NULL;
	return tl_sbfs_run(e, NULL, av);
}

char tl_proc_state(pid_t pid, char *comm, size_t commlen, pid_t *ppid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *open_ = strchr(buf, '('), *close_ = strrchr(buf, ')');
	if (!open_ || !close_ || close_[1] != ' ')
		return 0;
	if (comm && commlen) {
		size_t l = (size_t)(close_ - open_ - 1);
		if (l >= commlen)
			l = commlen - 1;
		memcpy(comm, open_ + 1, l);
		comm[l] = '\0';
	}
	if (ppid)
		*ppid = (pid_t)strtol(close_ + 4, NULL, 10);
	return close_[2];
}

/* 1 while pid is a live (not zombie) sbfs process. */
static int sbfs_alive(pid_t pid)
{
	char comm[64] = "";
	char s = tl_proc_state(pid, comm, sizeof(comm), NULL);
	return s && s != 'Z' && s != 'X' && (!strncmp(comm, "sbfs", 4) || !strcmp(comm, "mount.fuse.sbfs"));
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

/* fusermount3 -u -z dir, quietly; its exit status. */
static int lazy_unmount(const char *dir)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		execlp("fusermount3", "fusermount3", "-u", "-z", dir, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	if (pid < 0)
		return -1;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* The watchdog: waits for EOF on rfd (the test process is done or dead),
 * then unmounts lazily and kills the daemon if either is still there. */
void tl_watchdog_detach(int rfd)
{
	int nul = open("/dev/null", O_RDWR);
	dup2(nul, 0);
	dup2(nul, 1);
	if (nul > 2)
		close(nul);
	if (rfd > 3)
		close_range(3, rfd - 1, 0);
	close_range(rfd + 1, ~0U, 0);
	setsid();	/* no signal meant for the test's process group */
}

static void guard_main(int rfd, const char *dir, pid_t daemon)
{
	tl_watchdog_detach(rfd);
	char c;
	for (;;) {
		ssize_t n = read(rfd, &c, 1);
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	if (tl_mounted(dir)) {
		dprintf(2, "testlib watchdog: %s still mounted: unmounting lazily\n", dir);
		lazy_unmount(dir);
	}
	long end = now_ms() + 5000;
	while (daemon > 0 && sbfs_alive(daemon) && now_ms() < end)
		sleep_ms(20);
	if (daemon > 0 && sbfs_alive(daemon)) {
		dprintf(2, "testlib watchdog: sbfs daemon %d still alive: killing it\n", (int)daemon);
		kill(daemon, SIGKILL);
	}
	_exit(0);
}

static pid_t lock_holder(const struct tl_env *e)
{
	DIR *d = opendir(e->state);
	struct dirent *de;
	pid_t pid = 0;
	while (d && !pid && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *p = xasprintf("%s/%s/lock", e->state, de->d_name);
		char *s = tl_read("/", p + 1);
		if (s)
			pid = (pid_t)strtol(s, NULL, 10);
		free(s);
		free(p);
	}
	if (d)
		closedir(d);
	return pid;
}

void tl_mount(const struct tl_env *e, struct tl_mount *m, const char *const *opts)
{
	memset(m, 0, sizeof(*m));
	m->guard_fd = -1;
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0)
		cr_assert_fail("prctl(PR_SET_CHILD_SUBREAPER): %s", strerror(errno));
	m->dir = tl_join(e->base, "mnt");
	m->sanlog = tl_join(e->base, "sanlog");
	if (mkdir(m->dir, 0755) < 0 && errno != EEXIST)
		cr_assert_fail("mkdir %s: %s", m->dir, strerror(errno));

	const char *av[32];
	size_t n = 0;
	av[n++] = "mount";
	for (size_t i = 0; opts && opts[i] && n < 27; i++)
		av[n++] = opts[i];
	av[n++] = e->src;
	av[n++] = e->tgt;
	av[n++] = m->dir;
	av[n] = NULL;
	struct tl_run r = run_sanlog(e, m->sanlog, av);
	if (r.status != 0)
		cr_assert_fail("sbfs mount exited %d:\n%s%s", r.status, r.out, r.err);
	tl_run_free(&r);
	tl_mount_adopt(e, m);
}

void tl_mount_adopt(const struct tl_env *e, struct tl_mount *m)
{
	if (!tl_mounted(m->dir))
		cr_assert_fail("sbfs mount exited 0 but %s is not a mount point", m->dir);
	m->daemon = lock_holder(e);
	if (m->daemon <= 0 || !sbfs_alive(m->daemon))
		cr_assert_fail("cannot find the sbfs mount daemon (lock file pid %d)", (int)m->daemon);

	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		cr_assert_fail("pipe2: %s", strerror(errno));
	fflush(NULL);
	pid_t g = fork();
	if (g < 0)
		cr_assert_fail("fork: %s", strerror(errno));
	if (g == 0)
		guard_main(p[0], m->dir, m->daemon);
	close(p[0]);
	m->guard = g;
	m->guard_fd = p[1];
}

int tl_mount_daemon_gone(struct tl_mount *m)
{
	if (m->daemon <= 0 || m->reaped)
		return 1;
	pid_t r = waitpid(m->daemon, &m->wstatus, WNOHANG);
	if (r == m->daemon) {
		m->reaped = 1;
		return 1;
	}
	if (r < 0 && errno == ECHILD && !sbfs_alive(m->daemon)) {
		m->reaped = 1;
		m->wstatus = -1;	/* not ours: status unknown */
		return 1;
	}
	return 0;
}

/* Sanitizer reports written under m->sanlog (malloc'd), NULL if none. */
static char *sanlog_reports(const struct tl_mount *m)
{
	char *dir = strdup(m->sanlog), *slash = strrchr(dir, '/'), *res = NULL;
	*slash = '\0';
	const char *prefix = slash + 1;
	DIR *d = opendir(dir);
	struct dirent *de;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)))
			continue;
		char *s = tl_read(dir, de->d_name);
		char *n = xasprintf("%s%s", res ? res : "", s ? s : "");
		free(res);
		free(s);
		res = n;
	}
	if (d)
		closedir(d);
	free(dir);
	return res;
}

void tl_umount_wait(struct tl_mount *m)
{
	long end = now_ms() + 60000;
	while (!tl_mount_daemon_gone(m) && now_ms() < end)
		sleep_ms(10);
	if (!tl_mount_daemon_gone(m))
		cr_assert_fail("the sbfs daemon %d did not exit within 60 s of the unmount",
			       (int)m->daemon);
	char *san = sanlog_reports(m);
	if (san)
		cr_assert_fail("the sanitizers reported in sbfs mount or its daemon:\n%s", san);
	if (m->wstatus != -1 && !(WIFEXITED(m->wstatus) && WEXITSTATUS(m->wstatus) == 0))
		cr_assert_fail("the sbfs daemon ended with %s %d after the unmount",
			       WIFEXITED(m->wstatus) ? "exit status" : "signal",
			       WIFEXITED(m->wstatus) ? WEXITSTATUS(m->wstatus) : WTERMSIG(m->wstatus));
	if (tl_mounted(m->dir))
		cr_assert_fail("%s is still mounted after the daemon exited", m->dir);
}

void tl_umount(const struct tl_env *e, struct tl_mount *m)
{
	struct tl_run r = tl_sbfs_run(e, NULL, (const char *[]){ "umount", m->dir, NULL });
	if (r.status != 0)
		cr_assert_fail("sbfs umount %s exited %d:\n%s%s", m->dir, r.status, r.out, r.err);
	tl_run_free(&r);
	tl_umount_wait(m);
}

void tl_mount_cleanup(struct tl_mount *m)
{
	if (!m->dir)
		return;
	if (tl_mounted(m->dir))
		lazy_unmount(m->dir);
	if (m->daemon > 0) {
		long end = now_ms() + 10000;
		while (!tl_mount_daemon_gone(m) && now_ms() < end)
			sleep_ms(10);
		if (!tl_mount_daemon_gone(m)) {
			if (sbfs_alive(m->daemon))
				kill(m->daemon, SIGKILL);
			end = now_ms() + 5000;
			while (!tl_mount_daemon_gone(m) && now_ms() < end)
				sleep_ms(10);
		}
	}
	if (m->guard > 0) {
		close(m->guard_fd);
		while (waitpid(m->guard, NULL, 0) < 0 && errno == EINTR)
			;
	}
	free(m->dir);
	free(m->sanlog);
	memset(m, 0, sizeof(*m));
	m->guard_fd = -1;
}

int tl_status_wait_clean(const struct tl_env *e, int timeout_ms)
{
	long end = now_ms() + timeout_ms;
	for (;;) {
		struct tl_run r = tl_cmd(e, "status", NULL);
		int st = r.status;
		tl_run_free(&r);
		if (st == 0 || now_ms() >= end)
			return st;
		sleep_ms(50);
	}
}
