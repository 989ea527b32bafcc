/*
 * A running mount owns its partnership: `sbfs reconcile|status|conflicts|
 * resolve` aimed at it are carried out by the mount process, so mount
 * traffic and reconcile never race. The mount listens on a unix socket in
 * the partnership's state directory (mode 0700, and the peer must be the
 * mount's own user or root); the client sends its arguments and its
 * standard input, output and error, and gets the exit status back.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"

#define MAX_MSG 65536

struct changed_list {
	char **v;
	size_t n;
};

/*
 * Locks: run_lock makes commands take turns, a client's and the automatic
 * reconciles' (autosync.c): getopt's state and the partnership's log are
 * the process's, and cl is filled and drained under it. Everything else is
 * set before the accepting thread starts.
 */
struct control {
	pthread_mutex_t run_lock;
	struct sb_pship *p;
	struct sb_mirror *m;
	int sock, dirfd;
	int readonly;
	const struct cli_ign *ign;	/* the mount's own ignore options */
	pthread_t thr;
	void (*changed)(void *arg, const char *path, size_t len);
	void *arg;
	struct changed_list cl;
};

/* sun_path is short; the directory's descriptor makes any path fit. */
static void sock_addr(int dirfd, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	snprintf(a->sun_path, sizeof(a->sun_path), "/proc/self/fd/%d/control.sock", dirfd);
}

static void collect(void *arg, const char *path, size_t len)
{
	struct changed_list *cl = arg;
	char **nv = realloc(cl->v, (cl->n + 1) * sizeof(*nv));
	if (!nv)
		return;
	cl->v = nv;
	if ((nv[cl->n] = strndup(path, len)))
		cl->n++;
}

static int peer_ok(int fd)
{
	struct ucred cr;
	socklen_t l = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) < 0)
		return 0;
	return cr.uid == 0 || cr.uid == geteuid();
}

static void serve(struct control *c, int conn)
{
	char *buf = malloc(MAX_MSG + 1);
	char cbuf[CMSG_SPACE(3 * sizeof(int))];
	struct iovec iov = { buf, MAX_MSG };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	int fds[3] = { -1, -1, -1 };
	unsigned char rc = EXIT_FAILED;
	char **argv = NULL;
	int argc = 0;

	if (!buf || !peer_ok(conn))
		goto out;
	ssize_t n = recvmsg(conn, &mh, MSG_CMSG_CLOEXEC);
	if (n <= 0)
		goto out;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
		    cm->cmsg_len == CMSG_LEN(3 * sizeof(int)))
			memcpy(fds, CMSG_DATA(cm), sizeof(fds));
	if (fds[0] < 0 || fds[1] < 0 || fds[2] < 0)
		goto out;
	buf[n] = '\0';
	for (char *s = buf; s < buf + n; s += strlen(s) + 1)
		argc++;
	if (!argc || !(argv = calloc(argc + 1, sizeof(*argv))))
		goto out;
	argc = 0;
	for (char *s = buf; s < buf + n; s += strlen(s) + 1)
		argv[argc++] = s;
	const struct cli_cmd *cmd = cli_cmd(argv[0]);
	if (!cmd || !cmd->forward) {
		rc = EXIT_USAGE;
		goto out;
	}

	FILE *in = fdopen(fds[0], "r"), *o = fdopen(fds[1], "w"), *e = fdopen(fds[2], "w");
	if (in)
		fds[0] = -1;
	if (o)
		fds[1] = -1;
	if (e)
		fds[2] = -1;
	if (in && o && e) {
		/* Buffered as the client's own stdout and stderr would be: its
		 * progress line, which ends in no newline, shows as it moves,
		 * in its place among the other lines, not all at the end. */
		setvbuf(e, NULL, _IONBF, 0);
		setvbuf(o, NULL, isatty(fileno(o)) ? _IOLBF : _IOFBF, BUFSIZ);
		struct ctx cx = { .cmd = cmd, .progress = isatty(fileno(e)) };
		cli_in = in;
		cli_out = o;
		cli_err = e;
		rc = control_run(c, &cx, argc, argv);
		cli_in = cli_out = cli_err = NULL;
	}
	if (in)
		fclose(in);
	if (o)
		fclose(o);
	if (e)
		fclose(e);
out:
	if (send(conn, &rc, 1, MSG_NOSIGNAL) < 0) {
		/* the client is gone */
	}
	for (int i = 0; i < 3; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	close(conn);
	free(argv);
	free(buf);
}

int control_run(struct control *c, struct ctx *cx, int argc, char **argv)
{
	pthread_mutex_lock(&c->run_lock);
	cx->shared = c->p;
	cx->readonly = c->readonly;
	cx->changed = collect;
	cx->changed_arg = &c->cl;
	sb_mirror_exclusive(c->m, 1);
	/* The patterns the view uses, then the client's own: else a status
	 * would show the view's ignored paths as pending. */
	int rc = cli_ign_copy(&cx->ign, c->ign) < 0 ? EXIT_FAILED : cx->cmd->run(cx, argc, argv);
	cli_ign_free(&cx->ign);
	int r = cx->log_file ? sb_pship_set_log(c->p, NULL) : 0;
	if (r < 0)
		error("cannot reopen the mount's own log (the next command's "
		      "operations go to %s): %s", cx->log_file, sb_strerror(r));
	sb_mirror_exclusive(c->m, 0);
	/* After the lock: the kernel may need locks a blocked request holds. */
	for (size_t i = 0; i < c->cl.n; i++) {
		if (c->changed)
			c->changed(c->arg, c->cl.v[i], strlen(c->cl.v[i]));
		free(c->cl.v[i]);
	}
	free(c->cl.v);
	c->cl.v = NULL;
	c->cl.n = 0;
	pthread_mutex_unlock(&c->run_lock);
	return rc;
}

void control_note(struct control *c, uint64_t paths, const char *result, const char *reason)
{
	pthread_mutex_lock(&c->run_lock);
	int r = sb_pship_log_note(c->p, "auto-reconcile", paths, result, reason);
	pthread_mutex_unlock(&c->run_lock);
	if (r < 0)
		error("cannot log the automatic reconcile: %s", sb_strerror(r));
}

static void *accept_loop(void *arg)
{
	struct control *c = arg;
	for (;;) {
		int conn = accept4(c->sock, NULL, NULL, SOCK_CLOEXEC);
		if (conn < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;	/* shut down */
		}
		serve(c, conn);
	}
	return NULL;
}

int control_start(struct sb_pship *p, struct sb_mirror *m, const char *mountpoint,
		  int readonly, const struct cli_ign *ign,
		  void (*changed)(void *arg, const char *path, size_t len), void *arg,
		  struct control **out)
{
	struct control *c = calloc(1, sizeof(*c));
	struct sockaddr_un a;
	int ret = -ENOMEM;

	*out = NULL;
	if (!c)
		return ret;
	pthread_mutex_init(&c->run_lock, NULL);
	c->p = p;
	c->m = m;
	c->ign = ign;
	c->readonly = readonly;
	c->changed = changed;
	c->arg = arg;
	c->sock = -1;
	if ((c->dirfd = open(sb_pship_dir(p), O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
		goto fail_errno;
	unlinkat(c->dirfd, "control.sock", 0);
	if ((c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		goto fail_errno;
	sock_addr(c->dirfd, &a);
	if (bind(c->sock, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(c->sock, 8) < 0)
		goto fail_errno;
	int mf = openat(c->dirfd, "mount", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (mf >= 0) {
		dprintf(mf, "%s\n", mountpoint);
		close(mf);
	}
	if ((ret = -pthread_create(&c->thr, NULL, accept_loop, c)) < 0)
		goto fail;
	*out = c;
	return 0;
fail_errno:
	ret = -errno;
fail:
	if (c->sock >= 0)
		close(c->sock);
	if (c->dirfd >= 0)
		close(c->dirfd);
	pthread_mutex_destroy(&c->run_lock);
	free(c);
	return ret;
}

void control_stop(struct control *c)
{
	if (!c)
		return;
	shutdown(c->sock, SHUT_RDWR);
	pthread_join(c->thr, NULL);
	close(c->sock);
	unlinkat(c->dirfd, "control.sock", 0);
	unlinkat(c->dirfd, "mount", 0);
	close(c->dirfd);
	pthread_mutex_destroy(&c->run_lock);
	free(c);
}

/* ------------------------------------------------------------ client */

struct mounted {
	char *dir, *roots[2], *mnt;
};

static char *read_line(int dirfd, const char *name, int nth)
{
	char buf[PATH_MAX * 2 + 4];
	int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return NULL;
	buf[n] = '\0';
	char *s = buf;
	for (int i = 0; i < nth && s; i++)
		s = (s = strchr(s, '\n')) ? s + 1 : NULL;
	if (!s || !*s)
		return NULL;
	s[strcspn(s, "\n")] = '\0';
	return strdup(s);
}

static int connect_dir(const char *dir)
{
	struct sockaddr_un a;
	int dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC), s = -1;
	if (dfd < 0)
		return -1;
	sock_addr(dfd, &a);
	s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(s);
		s = -1;
	}
	close(dfd);
	return s;
}

/* Partnerships with a live mount under the state root. */
static size_t find_mounts(const char *root, struct mounted **out)
{
	DIR *d = opendir(root);
	struct dirent *de;
	size_t n = 0;
	*out = NULL;
	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (strlen(de->d_name) != 32)
			continue;
		char *dir = NULL;
		if (asprintf(&dir, "%s/%s", root, de->d_name) < 0)
			break;
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		char *mnt = dfd >= 0 ? read_line(dfd, "mount", 0) : NULL;
		int s = mnt ? connect_dir(dir) : -1;
		if (s >= 0) {
			close(s);
			struct mounted *nv = realloc(*out, (n + 1) * sizeof(*nv));
			if (nv) {
				*out = nv;
				nv[n].dir = dir;
				nv[n].mnt = mnt;
				nv[n].roots[0] = read_line(dfd, "roots", 0);
				nv[n].roots[1] = read_line(dfd, "roots", 1);
				n++;
				dir = mnt = NULL;
			}
		}
		if (dfd >= 0)
			close(dfd);
		free(mnt);
		free(dir);
	}
	closedir(d);
	return n;
}

static void free_mounts(struct mounted *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].dir);
		free(v[i].mnt);
		free(v[i].roots[0]);
		free(v[i].roots[1]);
	}
	free(v);
}

static int send_cmd(const struct mounted *mt, int argc, char **argv)
{
	size_t len = 0;
	unsigned char rc;
	for (int i = 0; i < argc; i++)
		len += strlen(argv[i]) + 1;
	if (len > MAX_MSG)
		return error("arguments too long"), EXIT_USAGE;
	char *buf = malloc(len ? len : 1), *p = buf;
	if (!buf)
		return EXIT_FAILED;
	for (int i = 0; i < argc; i++)
		p = stpcpy(p, argv[i]) + 1;
	int s = connect_dir(mt->dir);
	if (s < 0) {
		free(buf);
		return -1;	/* gone since find_mounts(): see forward_to() */
	}
	int fds[3] = { 0, 1, 2 };
	char cbuf[CMSG_SPACE(sizeof(fds))];
	struct iovec iov = { buf, len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
			     .msg_control = cbuf, .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	fflush(NULL);
	int ret = EXIT_FAILED;
	if (sendmsg(s, &mh, MSG_NOSIGNAL) == (ssize_t)len && read(s, &rc, 1) == 1)
		ret = rc;
	else
		error("%s: the mount stopped answering", mt->mnt);
	close(s);
	free(buf);
	return ret;
}

/* A forwarded command's options, spelled out as the table has them; the
 * operands follow them behind "--". */
struct fwd {
	char **av;
	int n;
	const char *state_dir;
	char *log;	/* --log-file made absolute: the mount's cwd is not ours */
};

static int fwd_opt(void *arg, int id, char *val)
{
	struct fwd *f = arg;
	if (id == OPT_HELP)
		return -2;	/* help is given here */
	if (id == OPT_STATE)
		f->state_dir = val;
	if (id == OPT_LOG && val[0] != '/') {
		char *cwd = getcwd(NULL, 0);
		free(f->log);
		f->log = NULL;
		if (!cwd || asprintf(&f->log, "%s/%s", cwd, val) < 0) {
			free(cwd);
			f->log = NULL;
			return -3;
		}
		free(cwd);
		val = f->log;
	}
	f->av[f->n++] = (char *)cli_opt_spelling(id);
	if (val)
		f->av[f->n++] = val;
	return 0;
}

/* Sends cmd, its options and ops (nops of them) to the mount mt; by_roots:
 * the user gave SOURCE TARGET, which can do without the mount. */
static int forward_to(const struct mounted *mt, const char *cmd, const struct fwd *f,
		      char **ops, int nops, int by_roots)
{
	char **av = calloc(f->n + nops + 3, sizeof(*av));
	int n = 0;
	if (!av)
		return error("%s: %s", mt->mnt, strerror(ENOMEM)), EXIT_FAILED;
	av[n++] = (char *)cmd;
	for (int i = 0; i < f->n; i++)
		av[n++] = f->av[i];
	av[n++] = "--";
	for (int i = 0; i < nops; i++)
		av[n++] = ops[i];
	int ret = send_cmd(mt, n, av);
	free(av);
	/* A mount unmounting stops listening before it removes its "mount"
	 * file: given SOURCE TARGET, the command then runs here (-1). */
	if (ret == -1 && !by_roots) {
		error("%s: the mount stopped answering", mt->mnt);
		ret = EXIT_FAILED;
	}
	return ret;
}

int control_forward(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct fwd f = { .av = calloc(2 * argc + 1, sizeof(char *)) };
	struct mounted *mv = NULL;
	size_t nm = 0;
	char *root, *first = NULL, *second = NULL, **ops = NULL;
	int ret = -1;

	/* An unknown option or --help: the command, run here, says so. */
	int i = f.av ? cli_options(cmd, argc, argv, 1, fwd_opt, &f) : -1;
	if (i < 0)
		goto out;
	if (!(root = sb_state_root(f.state_dir)))
		goto out;
	nm = find_mounts(root, &mv);
	free(root);
	int nops = argc - i, is_resolve = !strcmp(cmd->name, "resolve");
	if (!(ops = calloc(nops + 2, sizeof(*ops))))
		goto out;

	/* sbfs reconcile (no operand): every mounted partnership */
	if (nops == 0 && !is_resolve) {
		if (!nm) {
			error("no sbfs mount is running; give SOURCE and TARGET: sbfs %s SOURCE TARGET",
			      cmd->name);
			ret = EXIT_USAGE;
			goto out;
		}
		ret = EXIT_SYNCED;
		for (size_t k = 0; k < nm; k++) {
			ops[0] = mv[k].roots[0];
			ops[1] = mv[k].roots[1];
			fprintf(OUT, "== %s (%s and %s)\n", mv[k].mnt, mv[k].roots[0], mv[k].roots[1]);
			int r = forward_to(&mv[k], cmd->name, &f, ops, 2, 0);
			if (r > ret)
				ret = r;
		}
		goto out;
	}
	if (nops == 0)
		goto out;
	/* A mount point as the first operand stands for its two roots. */
	first = realpath(argv[i], NULL);
	for (size_t k = 0; first && k < nm; k++) {
		if (strcmp(first, mv[k].mnt))
			continue;
		ops[0] = mv[k].roots[0];
		ops[1] = mv[k].roots[1];
		memcpy(ops + 2, argv + i + 1, (nops - 1) * sizeof(*ops));
		ret = forward_to(&mv[k], cmd->name, &f, ops, nops + 1, 0);
		goto out;
	}
	if (nops == 1 && !is_resolve) {
		error("%s: not an sbfs mount point (give SOURCE and TARGET to work without a mount)",
		      argv[i]);
		ret = EXIT_USAGE;
		goto out;
	}
	/* SOURCE TARGET of a mounted partnership: the mount does it. */
	second = nops >= 2 ? realpath(argv[i + 1], NULL) : NULL;
	for (size_t k = 0; first && second && k < nm; k++) {
		if (mv[k].roots[0] && mv[k].roots[1] && !strcmp(first, mv[k].roots[0]) &&
		    !strcmp(second, mv[k].roots[1])) {
			ret = forward_to(&mv[k], cmd->name, &f, argv + i, nops, 1);
			break;
		}
	}
out:
	free(first);
	free(second);
	free(ops);
	free(f.av);
	free(f.log);
	free_mounts(mv, nm);
	return ret;
}

char *control_mounted(const char *dir)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	char *mnt = dfd >= 0 ? read_line(dfd, "mount", 0) : NULL;
	if (dfd >= 0)
		close(dfd);
	int s = mnt ? connect_dir(dir) : -1;
	if (s < 0) {
		free(mnt);
		return NULL;
	}
	close(s);
	return mnt;
}
