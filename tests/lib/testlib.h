/*
 * Helpers for tests that drive the sbfs binary on real temporary trees.
 * Each fails the current criterion test (cr_assert_fail) on an unexpected error.
 */
#ifndef SBFS_TESTLIB_H
#define SBFS_TESTLIB_H

#include <stddef.h>
#include <sys/types.h>

struct tl_run {
	int status;		/* exit status, or 128+signal */
	char *out, *err;	/* NUL-terminated captured stdout and stderr */
	size_t outlen, errlen;
};

/* A fresh directory under /tmp holding src/, tgt/ and state/. */
struct tl_env {
	char *base, *src, *tgt, *state, *log;
	int no_file_caps;	/* sbfs runs after tl_drop_file_caps() */
};

void tl_env_init(struct tl_env *e);
void tl_env_fini(struct tl_env *e);	/* removes everything */

/*
 * Drops, from this process and what it runs, the capabilities that let
 * root pass file permission checks (DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER,
 * CHOWN, FSETID): root is then checked like any owner. Returns 0 or -errno.
 */
int tl_drop_file_caps(void);

/* Path of the sbfs binary under test ($SBFS_BIN, else build/sbfs). */
const char *tl_sbfs(void);

/*
 * Runs sbfs with argv (NULL-terminated, without "sbfs"), the env's state
 * directory in SBFS_STATE_DIR, stdin from `input` (NULL: /dev/null).
 */
struct tl_run tl_sbfs_run(const struct tl_env *e, const char *input, const char *const *argv);
/* Shorthands: `sbfs CMD [OPTS...] SRC TGT`; opts NULL-terminated, may be NULL. */
struct tl_run tl_cmd(const struct tl_env *e, const char *cmd, const char *const *opts);
void tl_run_free(struct tl_run *r);

/* Files under a root, relative path joined with "/" (mkdir -p for parents). */
char *tl_join(const char *dir, const char *rel);	/* malloc'd */
/* The same in one of 8 rotating static buffers: for a few at a time. */
const char *tl_at(const char *dir, const char *rel);
/* mkdir -p of the directories above path (not path itself). */
void tl_mkparents(const char *path);
void tl_write(const char *dir, const char *rel, const char *content);
void tl_write_n(const char *dir, const char *rel, const void *buf, size_t n);
char *tl_read(const char *dir, const char *rel);	/* malloc'd, NULL if absent */
int tl_exists(const char *dir, const char *rel);	/* lstat succeeds */
void tl_mkdir(const char *dir, const char *rel);
void tl_rm(const char *dir, const char *rel);		/* rm -rf */
/* Sets mtime of rel to `sec` seconds since the epoch. */
void tl_set_mtime(const char *dir, const char *rel, long sec);
/*
 * 1 if both trees hold the same names, types, file contents, symlink
 * targets and permission bits (and file mtimes); otherwise 0, with the
 * first difference described in *why (malloc'd) when why is not NULL.
 */
int tl_trees_equal(const char *a, const char *b, char **why);
/* Count of entries beneath dir (not counting dir itself), but for a
 * root's .sbfs-versions, as tl_trees_equal leaves it out too. */
size_t tl_count(const char *dir);

/* ------------------------------------------------------------------
 * Background runs and runs without DAC capabilities (safety and crash
 * tests).
 */

/* tl_spawn_ex flags */
#define TL_NO_DAC 1	/* drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH */

/* A process started in the background; its stdout and stderr go to
 * unlinked temporary files. */
struct tl_proc {
	pid_t pid;
	int out, err;
	int reaped, wstatus;
};

/*
 * Starts prog (NULL: the sbfs binary; a name without '/' is looked up in
 * PATH) with args (NULL-terminated, without argv[0]), stdin /dev/null, and
 * SBFS_STATE_DIR set to e->state when e is not NULL. With TL_NO_DAC the
 * child drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from its bounding
 * set before execv, so that even root's exec gets neither and permission
 * bits apply (the child exits 126 if it cannot drop them).
 */
void tl_spawn_ex(struct tl_proc *p, const struct tl_env *e, const char *prog,
		 int flags, const char *const *args);
/* `sbfs CMD [OPTS...] SRC TGT` in the background. */
void tl_spawn_cmd(struct tl_proc *p, const struct tl_env *e, const char *cmd,
		  const char *const *opts);
/* What the process wrote to stderr so far (malloc'd, NUL-terminated). */
char *tl_proc_err(const struct tl_proc *p);
/* 1 once the process has exited (reaps it without blocking), else 0. */
int tl_proc_done(struct tl_proc *p);
/* Sends sig unless 0 or already exited, waits, and returns its status and
 * output as tl_sbfs_run does (status 128+signal when killed). */
struct tl_run tl_proc_wait(struct tl_proc *p, int sig);

/* Like tl_sbfs_run / tl_cmd, in a child started with TL_NO_DAC. */
struct tl_run tl_sbfs_run_nodac(const struct tl_env *e, const char *const *argv);
struct tl_run tl_cmd_nodac(const struct tl_env *e, const char *cmd, const char *const *opts);
/* Fails the test loudly unless a TL_NO_DAC child really cannot list dir. */
void tl_assert_nodac_denied(const char *dir);

#endif

/* ------------------------------------------------------------------
 * FUSE mounts (`sbfs mount`). The test process becomes a child subreaper,
 * so the daemon `sbfs mount` leaves behind is its child and can be waited
 * for. A watchdog process lazily unmounts and kills the daemon should the
 * test process die (a crash or a timeout) before tl_mount_cleanup().
 */
struct tl_mount {
	char *dir;		/* the mount point, e->base/mnt (malloc'd) */
	char *sanlog;		/* sanitizer log prefix of sbfs mount and its daemon */
	pid_t daemon;		/* the process serving the mount; 0 if none */
	int reaped, wstatus;	/* the daemon's wait status once reaped */
	pid_t guard;		/* the watchdog; 0 if none */
	int guard_fd;		/* its pipe: closing it tells it we are done */
};

/* Fails the test loudly unless /dev/fuse and fusermount3 are usable. */
void tl_fuse_required(void);
/* 1 if dir (canonicalised) is a mount point in /proc/self/mountinfo. */
int tl_mounted(const char *dir);
/* 1 if any mount point lies at or beneath dir. */
int tl_mounted_under(const char *dir);
/* Runs `sbfs mount [OPTS...] SRC TGT MNT` as is, and returns its result. */
struct tl_run tl_mount_run(const struct tl_env *e, const char *mnt, const char *const *opts);
/*
 * Creates e->base/mnt (if needed) and mounts the env's partners there with
 * opts (NULL-terminated, may be NULL); asserts it worked, finds the daemon
 * (from the partnership's lock file) and starts the watchdog.
 */
void tl_mount(const struct tl_env *e, struct tl_mount *m, const char *const *opts);
/*
 * After a mount made at m->dir by other means (mount(8)), with the test
 * process a child subreaper beforehand (prctl PR_SET_CHILD_SUBREAPER) and
 * m zeroed but for dir and sanlog (malloc'd): the rest of tl_mount().
 */
void tl_mount_adopt(const struct tl_env *e, struct tl_mount *m);
/* 1 once the daemon has exited (reaps it when it is our child). */
int tl_mount_daemon_gone(struct tl_mount *m);
/* Waits (up to 60 s) for the daemon to exit after an unmount; asserts it
 * exited 0, left no sanitizer report and that the mount point is gone. */
void tl_umount_wait(struct tl_mount *m);
/* `sbfs umount MNT` (asserting exit 0), then tl_umount_wait(). */
void tl_umount(const struct tl_env *e, struct tl_mount *m);
/*
 * For .fini, never asserts, idempotent: lazy unmount (fusermount3 -u -z) if
 * still mounted, waits a little for the daemon, SIGKILLs it if still alive,
 * stops the watchdog.
 */
void tl_mount_cleanup(struct tl_mount *m);
/* The state letter of /proc/PID/stat (0 if pid is gone), its comm in comm
 * (if not NULL) and its parent in *ppid (if not NULL). */
char tl_proc_state(pid_t pid, char *comm, size_t commlen, pid_t *ppid);
/* In a watchdog child just forked: stdin and stdout on /dev/null, every
 * descriptor but rfd and stderr closed (none of the test's pipes kept open),
 * a session of its own. */
void tl_watchdog_detach(int rfd);
/* Runs `sbfs status` until it exits 0 or timeout_ms pass; its last status. */
int tl_status_wait_clean(const struct tl_env *e, int timeout_ms);
