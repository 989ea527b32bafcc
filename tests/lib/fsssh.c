/* sshd and sshfs for the foreign-partner tests; see fsimg.h. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fsimg.h"
#include "fsimg_priv.h"
#include "testlib.h"

void tl_sshd_required(void)
{
	tl_fuse_required();
	cr_assert(access("/usr/sbin/sshd", X_OK) == 0 && fsi_have_prog("ssh-keygen") &&
		  fsi_have_prog("ssh") && fsi_have_prog("sshfs"),
		  "sshd, ssh-keygen, ssh or sshfs not found: run scripts/install-deps");
}

/* A port on 127.0.0.1 nobody listens on now. */
static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(s, (struct sockaddr *)&a, &len) < 0)
		cr_assert_fail("cannot find a free port: %s", strerror(errno));
	close(s);
	return ntohs(a.sin_port);
}

static int port_open(int port)
{
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int ok = s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (s >= 0)
		close(s);
	return ok;
}

static void keygen(const char *log, const char *key)
{
	int st = fsi_run_logged(log, (const char *[]){ "ssh-keygen", "-q", "-t", "ed25519", "-N", "",
						   "-C", "sbfs-test", "-f", key, NULL });
	if (st != 0) {
		char *l = fsi_log_text(log);
		cr_assert_fail("ssh-keygen %s exited %d:\n%s", key, st, l);
	}
}

/* Starts sshd on s->port; 1 once it listens, 0 if the port was taken. */
static int sshd_spawn(struct tl_sshd *s)
{
	char *cfg = fsi_fmt("%s/sshd_config", s->dir), *port = fsi_fmt("Port=%d", s->port);
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		cr_assert_fail("fork: %s", strerror(errno));
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		int out = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(out, 2);
		/* sshd needs an absolute path to itself and -f; -D -e: stay
		 * our child, log to stderr. */
		execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", cfg, "-o", port,
		      (char *)NULL);
		_exit(127);
	}
	free(cfg);
	free(port);
	long end = fsi_now_ms() + 10000;
	while (fsi_now_ms() < end) {
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			char *l = fsi_log_text(s->log);
			int taken = strstr(l, "Address already in use") != NULL;
			if (!taken)
				cr_assert_fail("sshd exited (status 0x%x) before listening:\n%s", st, l);
			free(l);
			return 0;
		}
		if (port_open(s->port)) {
			s->pid = pid;
			char *msg = fsi_fmt("X\nP %d sshd\n", (int)pid);
			fsi_guard_tell(&s->guard, msg);
			free(msg);
			return 1;
		}
		fsi_sleep_ms(20);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	char *l = fsi_log_text(s->log);
	cr_assert_fail("sshd did not listen on 127.0.0.1:%d within 10 s:\n%s", s->port, l);
	return 0;
}

void tl_sshd_start(struct tl_sshd *s, const char *base)
{
	memset(s, 0, sizeof(*s));
	s->guard.fd = -1;
	tl_sshd_required();
	fsi_subreaper();
	s->dir = tl_join(base, "sshd");
	s->key = tl_join(s->dir, "client_key");
	s->log = tl_join(s->dir, "sshd.log");
	if (mkdir(s->dir, 0700) < 0)
		cr_assert_fail("mkdir %s: %s", s->dir, strerror(errno));
	/* Privilege separation wants it; the Debian service makes it at start. */
	if (mkdir("/run/sshd", 0755) < 0 && errno != EEXIST)
		cr_assert_fail("mkdir /run/sshd: %s", strerror(errno));
	char *host = tl_join(s->dir, "host_key");
	keygen(s->log, host);
	keygen(s->log, s->key);
	char *pub = fsi_fmt("%s.pub", s->key), *auth = tl_join(s->dir, "authorized_keys");
	char *k = tl_read("/", pub + 1);
	if (!k)
		cr_assert_fail("ssh-keygen wrote no %s", pub);
	tl_write("/", auth + 1, k);
	char *cfg = fsi_fmt("HostKey %s\nPidFile %s/sshd.pid\nAuthorizedKeysFile %s\n"
			"ListenAddress 127.0.0.1\nStrictModes no\nPermitRootLogin yes\n"
			"PubkeyAuthentication yes\nPasswordAuthentication no\n"
			"KbdInteractiveAuthentication no\nUsePAM no\nUseDNS no\n"
			"Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxStartups 100\n",
			host, s->dir, auth);
	tl_write(s->dir, "sshd_config", cfg);
	free(cfg);
	free(k);
	free(pub);
	free(auth);
	free(host);
	fsi_guard_start(&s->guard);
	for (int tries = 0;; tries++) {
		s->port = free_port();
		if (sshd_spawn(s))
			break;
		if (tries >= 5)
			cr_assert_fail("no free port for sshd after %d tries", tries + 1);
	}
}

void tl_sshd_stop(struct tl_sshd *s)
{
	fsi_stop_proc(s->pid, "sshd", 0);
	s->pid = 0;
	if (s->guard.fd >= 0 && write(s->guard.fd, "X\n", 2) != 2) {
		/* nothing left for it to stop anyway */
	}
}

void tl_sshd_restart(struct tl_sshd *s)
{
	tl_sshd_stop(s);
	for (int tries = 0; !sshd_spawn(s); tries++) {	/* the old socket may linger */
		if (tries >= 20)
			cr_assert_fail("sshd could not listen on port %d again", s->port);
		fsi_sleep_ms(100);
	}
}

void tl_sshd_cleanup(struct tl_sshd *s)
{
	if (!s->dir)
		return;
	tl_sshd_stop(s);
	fsi_guard_stop(&s->guard);
	free(s->dir);
	free(s->key);
	free(s->log);
	memset(s, 0, sizeof(*s));
	s->guard.fd = -1;
}

static void sshfs_spawn(struct tl_sshfs *m)
{
	const struct tl_sshd *s = m->sshd;
	char *opts = fsi_fmt("IdentityFile=%s,StrictHostKeyChecking=no,UserKnownHostsFile=/dev/null,"
			 "BatchMode=yes,LogLevel=ERROR,port=%d", s->key, s->port);
	char *what = fsi_fmt("root@127.0.0.1:%s", m->remote), *log = tl_join(s->dir, "sshfs.log");
	char *msg = fsi_fmt("X\nM %s\n", m->dir);
	fsi_guard_tell(&m->guard, msg);
	free(msg);
	int st = fsi_run_logged(log, (const char *[]){ "sshfs", "-o", opts, what, m->dir, NULL });
	if (st != 0 || !tl_mounted(m->dir)) {
		char *l = fsi_log_text(log);
		cr_assert_fail("sshfs %s %s: exit %d:\n%s", what, m->dir, st, l);
	}
	m->pid = fsi_find_proc(getpid(), "sshfs", m->dir);
	if (!m->pid)
		cr_assert_fail("sshfs mounted %s but it is not among our children", m->dir);
	msg = fsi_fmt("P %d sshfs\n", (int)m->pid);
	fsi_guard_tell(&m->guard, msg);
	free(msg);
	free(opts);
	free(what);
	free(log);
}

void tl_sshfs_mount(struct tl_sshfs *m, const struct tl_sshd *s, const char *remote,
		    const char *dir)
{
	memset(m, 0, sizeof(*m));
	m->guard.fd = -1;
	fsi_subreaper();
	m->sshd = s;
	m->remote = realpath(remote, NULL);
	if (!m->remote)
		cr_assert_fail("realpath %s: %s", remote, strerror(errno));
	m->dir = strdup(dir);
	fsi_guard_start(&m->guard);
	sshfs_spawn(m);
}

void tl_sshfs_umount(struct tl_sshfs *m)
{
	if (umount2(m->dir, 0) < 0)
		cr_assert_fail("umount %s (sshfs): %s", m->dir, strerror(errno));
	if (!fsi_wait_gone(m->pid, "sshfs", 10000, NULL))
		cr_assert_fail("sshfs (pid %d) did not exit within 10 s of the unmount", (int)m->pid);
	m->pid = 0;
	fsi_guard_tell(&m->guard, "X\n");
}

void tl_sshfs_remount(struct tl_sshfs *m)
{
	tl_sshfs_umount(m);
	sshfs_spawn(m);
}

void tl_sshfs_reconnect(struct tl_sshfs *m)
{
	/* sshfs runs `ssh ... -oIdentityFile=KEY ...`; the key is this test's own. */
	pid_t ssh = fsi_find_proc(0, "ssh", m->sshd->key);
	if (!ssh)
		cr_assert_fail("cannot find the ssh connection of sshfs on %s", m->dir);
	kill(ssh, SIGKILL);
	/* Without -o reconnect sshfs gives up when its connection dies. */
	if (!fsi_wait_gone(m->pid, "sshfs", 10000, NULL))
		cr_assert_fail("sshfs (pid %d) still runs 10 s after its ssh was killed",
			       (int)m->pid);
	m->pid = 0;
	if (tl_mounted(m->dir))
		umount2(m->dir, MNT_DETACH);	/* held by someone: the dead mount goes lazily */
	fsi_wait_gone(ssh, "ssh", 5000, NULL);
	sshfs_spawn(m);
}

void tl_sshfs_kill(struct tl_sshfs *m)
{
	if (m->pid)
		kill(m->pid, SIGKILL);
	if (!fsi_wait_gone(m->pid, "sshfs", 10000, NULL))
		cr_assert_fail("sshfs (pid %d) still runs 10 s after SIGKILL", (int)m->pid);
	m->pid = 0;
	if (tl_mounted(m->dir))
		umount2(m->dir, MNT_DETACH);
	fsi_guard_tell(&m->guard, "X\n");
}

void tl_sshfs_respawn(struct tl_sshfs *m)
{
	sshfs_spawn(m);
}

void tl_sshfs_cleanup(struct tl_sshfs *m)
{
	if (!m->dir)
		return;
	if (tl_mounted(m->dir) && umount2(m->dir, 0) < 0)
		umount2(m->dir, MNT_DETACH);
	fsi_stop_proc(m->pid, "sshfs", 5000);
	fsi_guard_stop(&m->guard);
	free(m->remote);
	free(m->dir);
	memset(m, 0, sizeof(*m));
	m->guard.fd = -1;
}
