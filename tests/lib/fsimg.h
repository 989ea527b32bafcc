/*
 * Foreign partners for the tests: USB-disk file systems (exFAT, FAT32,
 * NTFS) on loop images served by Debian's FUSE drivers, and network mounts
 * (sshfs against a private sshd on 127.0.0.1). The kernel here has no vfat
 * or exfat module, which is also what many users' desktops do.
 *
 * Every helper that sets something up fails the current criterion test
 * loudly when it cannot (no loop device, no driver, no sshd): a foreign-FS
 * test that silently skipped would prove nothing. Every resource is handed
 * to a watchdog process (one per object) that unmounts lazily, stops the
 * processes and detaches the loop device if the test process dies first;
 * the *_cleanup() functions never assert and are idempotent, for .fini.
 *
 * The test process becomes a child subreaper (as for tl_mount), so the
 * drivers, which daemonise, stay its children and can be waited for: a
 * driver must have exited (flushed and closed the device) before the image
 * is mounted again.
 */
#ifndef SBFS_FSIMG_H
#define SBFS_FSIMG_H

#include <sys/types.h>

/* A watchdog: told over a pipe what to undo; acts only on EOF without a
 * clean tl_guard_stop() (the test process died). */
struct tl_guard {
	pid_t pid;		/* 0 if none */
	int fd;			/* the pipe's write end; -1 if none */
};

/* TL_EXT4: the kernel's own ext4 on a loop image (no FUSE driver), for a
 * disk that goes away under a running reconcile (test_vanish.c). */
enum tl_fstype { TL_EXFAT, TL_FAT32, TL_NTFS, TL_EXT4 };

struct tl_fsimg {
	enum tl_fstype type;
	char *img;		/* the image file, BASE/TYPE.img (malloc'd) */
	char *dir;		/* the mount point (malloc'd) */
	char *log;		/* mkfs and driver output, BASE/TYPE.log */
	char loop[32];		/* /dev/loopN while attached, "" otherwise */
	int loop_fd;		/* held until the driver has the device open */
	pid_t driver;		/* the FUSE driver serving dir; 0 if none */
	struct tl_guard guard;
};

const char *tl_fstype_name(enum tl_fstype t);	/* "exfat", "fat32", "ntfs" */
/* Fails the test loudly unless loop devices, mkfs and the driver are there. */
void tl_fsimg_required(enum tl_fstype t);
/*
 * Makes a size_mib MiB image of type t in base (sparse, then mkfs), attaches
 * it to a free loop device (autoclear: the kernel detaches it once the
 * driver closes it) and mounts it at dir (which must exist).
 */
void tl_fsimg_make(struct tl_fsimg *f, enum tl_fstype t, const char *base, const char *dir,
		   int size_mib);
/* Attach and mount the image again after tl_fsimg_umount(). */
void tl_fsimg_mount(struct tl_fsimg *f);
/* Unmounts (asserting it was not busy), waits for the driver to exit 0 and
 * for the loop device to be detached. */
void tl_fsimg_umount(struct tl_fsimg *f);
/*
 * The disk pulled under whoever uses it: a lazy unmount (the file system
 * lives on, unseen, for those holding it open). tl_fsimg_after_pull waits
 * up to 30 s for them to let go (the driver exits, the loop device is
 * detached), after which tl_fsimg_mount mounts it again.
 */
void tl_fsimg_pull(struct tl_fsimg *f);
void tl_fsimg_after_pull(struct tl_fsimg *f);
/* A replugged USB disk: unmount, wait for the driver, attach, mount. */
void tl_fsimg_remount(struct tl_fsimg *f);
/* For .fini: never asserts, idempotent. Lazy unmount if needed, waits for
 * (then kills) the driver, detaches the loop device if still ours, stops
 * the watchdog. The image file stays (tl_env_fini removes it). */
void tl_fsimg_cleanup(struct tl_fsimg *f);
/* 1 if /dev/loopN (as in f->loop) is still attached to f->img. */
int tl_loop_is(const char *loop, const char *img);
/* 1 if any loop device is attached to img. */
int tl_loop_any(const char *img);

/* ------------------------------------------------------------------
 * sshd and sshfs. sshd runs in the foreground (-D -e) as our child on a
 * free port of 127.0.0.1 with a throwaway host key, a throwaway client key
 * in its authorized keys and a private sshd_config, all in BASE/sshd/.
 */
struct tl_sshd {
	char *dir;		/* BASE/sshd (malloc'd) */
	char *key;		/* the client's private key */
	char *log;		/* sshd's stderr */
	int port;
	pid_t pid;		/* 0 once stopped */
	struct tl_guard guard;
};

void tl_sshd_required(void);
void tl_sshd_start(struct tl_sshd *s, const char *base);
/* Stops the listener by its PID (connections it forked live on). */
void tl_sshd_stop(struct tl_sshd *s);
/* Stops the listener and starts it again on the same port and keys. */
void tl_sshd_restart(struct tl_sshd *s);
/* For .fini: stop, remove nothing (tl_env_fini does), never asserts. */
void tl_sshd_cleanup(struct tl_sshd *s);

struct tl_sshfs {
	const struct tl_sshd *sshd;
	char *remote;		/* the served directory (absolute) */
	char *dir;		/* the mount point */
	pid_t pid;		/* the sshfs process; 0 if none */
	struct tl_guard guard;
};

/* `sshfs root@127.0.0.1:REMOTE DIR` with the throwaway key (dir must exist). */
void tl_sshfs_mount(struct tl_sshfs *m, const struct tl_sshd *s, const char *remote,
		    const char *dir);
/* Unmounts (asserting) and waits for sshfs to exit. */
void tl_sshfs_umount(struct tl_sshfs *m);
/* Unmount and mount again, as a user does after suspend (new inode numbers). */
void tl_sshfs_remount(struct tl_sshfs *m);
/*
 * The network went away and the user mounted again: kills sshfs's ssh
 * connection, waits for sshfs to give up, unmounts the dead mount lazily
 * (something may still hold it) and mounts the same directory again.
 */
void tl_sshfs_reconnect(struct tl_sshfs *m);
/* sshfs killed (SIGKILL): its mount answers ENOTCONN until unmounted,
 * which this does lazily; tl_sshfs_respawn mounts it again. */
void tl_sshfs_kill(struct tl_sshfs *m);
void tl_sshfs_respawn(struct tl_sshfs *m);
void tl_sshfs_cleanup(struct tl_sshfs *m);	/* for .fini, never asserts */

#endif
