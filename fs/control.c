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

struct control {
	struct sb_pship *p;
	struct sb_mirror *m;
	int sock, dirfd;
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
	char *argv[64];
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
	for (char *s = buf; s < buf + n && argc < 63; s += strlen(s) + 1)
		argv[argc++] = s;
	argv[argc] = NULL;
	if (!argc)
		goto out;

	FILE *in = fdopen(fds[0], "r"), *o = fdopen(fds[1], "w"), *e = fdopen(fds[2], "w");
	if (in)
		fds[0] = -1;
	if (o)
		fds[1] = -1;
	if (e)
		fds[2] = -1;
	if (in && o && e) {
		struct ctx cx = { .cmd = argv[0], .progress = isatty(fileno(e)),
				  .shared = c->p, .changed = collect, .changed_arg = &c->cl };
		cli_in = in;
		cli_out = o;
		cli_err = e;
		sb_mirror_exclusive(c->m, 1);
		if (!strcmp(argv[0], "reconcile"))
			rc = cmd_reconcile(&cx, argc, argv, 0);
		else if (!strcmp(argv[0], "status"))
			rc = cmd_reconcile(&cx, argc, argv, 1);
		else if (!strcmp(argv[0], "conflicts"))
			rc = cmd_conflicts(&cx, argc, argv);
		else if (!strcmp(argv[0], "resolve"))
			rc = cmd_resolve(&cx, argc, argv);
		else
			rc = EXIT_USAGE;
		sb_mirror_exclusive(c->m, 0);
		cli_in = cli_out = cli_err = NULL;
		/* After the lock: the kernel may need locks a blocked request holds. */
		for (size_t i = 0; i < c->cl.n; i++) {
			if (c->changed)
				c->changed(c->arg, c->cl.v[i], strlen(c->cl.v[i]));
			free(c->cl.v[i]);
		}
		free(c->cl.v);
		c->cl.v = NULL;
		c->cl.n = 0;
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
	free(buf);
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
		  void (*changed)(void *arg, const char *path, size_t len), void *arg,
		  struct control **out)
{
	struct control *c = calloc(1, sizeof(*c));
	struct sockaddr_un a;
	int ret = -ENOMEM;

	*out = NULL;
	if (!c)
		return ret;
	c->p = p;
	c->m = m;
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
		return error("%s: the mount stopped answering", mt->mnt), EXIT_FAILED;
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

/* Options that take a value, so their value is not taken for an operand. */
static int takes_value(const char *o)
{
	return !strcmp(o, "--auto-resolve") || !strcmp(o, "--log-file") || !strcmp(o, "--state-dir");
}

int control_forward(int argc, char **argv)
{
	const char *state_dir = NULL;
	int ops[64], nops = 0, ret = -1;
	struct mounted *mv = NULL;
	size_t nm;
	char *root;

	for (int i = 1, opts = 1; i < argc && nops < 64; i++) {
		if (opts && !strcmp(argv[i], "--")) {
			opts = 0;
		} else if (opts && argv[i][0] == '-' && argv[i][1]) {
			if (!strncmp(argv[i], "--state-dir=", 12))
				state_dir = argv[i] + 12;
			if (takes_value(argv[i]) && i + 1 < argc) {
				if (!strcmp(argv[i], "--state-dir"))
					state_dir = argv[i + 1];
				i++;
			}
			if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
				return -1;
		} else {
			ops[nops++] = i;
		}
	}
	if (!(root = sb_state_root(state_dir)))
		return -1;
	nm = find_mounts(root, &mv);
	free(root);
	int is_resolve = !strcmp(argv[0], "resolve");

	/* sbfs reconcile (no operand): every mounted partnership */
	if (nops == 0 && !is_resolve) {
		if (!nm) {
			error("no sbfs mount is running; give SOURCE and TARGET: sbfs %s SOURCE TARGET",
			      argv[0]);
			ret = EXIT_USAGE;
			goto out;
		}
		ret = EXIT_SYNCED;
		for (size_t k = 0; k < nm; k++) {
			char **av = calloc(argc + 3, sizeof(*av));
			if (!av)
				goto out;
			memcpy(av, argv, argc * sizeof(*av));
			av[argc] = mv[k].roots[0];
			av[argc + 1] = mv[k].roots[1];
			fprintf(OUT, "== %s (%s and %s)\n", mv[k].mnt, mv[k].roots[0], mv[k].roots[1]);
			int r = send_cmd(&mv[k], argc + 2, av);
			free(av);
			if (r > ret)
				ret = r;
		}
		goto out;
	}
	if (nops == 0)
		goto out;
	/* A mount point as the first operand stands for its two roots. */
	char *first = realpath(argv[ops[0]], NULL);
	for (size_t k = 0; first && k < nm; k++) {
		if (strcmp(first, mv[k].mnt))
			continue;
		char **av = calloc(argc + 2, sizeof(*av));
		if (!av)
			break;
		int n = 0;
		for (int i = 0; i < argc; i++) {
			if (i == ops[0]) {
				av[n++] = mv[k].roots[0];
				av[n++] = mv[k].roots[1];
			} else {
				av[n++] = argv[i];
			}
		}
		ret = send_cmd(&mv[k], n, av);
		free(av);
		free(first);
		goto out;
	}
	if (nops == 1 && !is_resolve) {
		error("%s: not an sbfs mount point (give SOURCE and TARGET to work without a mount)",
		      argv[ops[0]]);
		free(first);
		ret = EXIT_USAGE;
		goto out;
	}
	/* SOURCE TARGET of a mounted partnership: the mount does it. */
	char *second = nops >= 2 ? realpath(argv[ops[1]], NULL) : NULL;
	for (size_t k = 0; first && second && k < nm; k++) {
		if (mv[k].roots[0] && mv[k].roots[1] && !strcmp(first, mv[k].roots[0]) &&
		    !strcmp(second, mv[k].roots[1])) {
			ret = send_cmd(&mv[k], argc, argv);
			break;
		}
	}
	free(first);
	free(second);
out:
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
