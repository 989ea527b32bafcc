/* What fsimg.c shares with fsssh.c; not for tests. */
#ifndef SBFS_FSIMG_PRIV_H
#define SBFS_FSIMG_PRIV_H

#include <sys/types.h>

struct tl_guard;

char *fsi_fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));	/* malloc'd */
long fsi_now_ms(void);
void fsi_sleep_ms(long ms);
char *fsi_log_text(const char *log);	/* the log's text for messages, never NULL */
/* Runs argv (PATH lookup), stdin /dev/null, output appended to log. */
int fsi_run_logged(const char *log, const char *const *argv);
int fsi_have_prog(const char *prog);	/* in PATH, /usr/sbin or /sbin */
void fsi_subreaper(void);
/* A live process named comm, child of parent (0: any), an argument of
 * which contains needle; 0 if none. */
pid_t fsi_find_proc(pid_t parent, const char *comm, const char *needle);
/* 1 once pid ended within ms (reaped if ours; *wst its status or -1). */
int fsi_wait_gone(pid_t pid, const char *comm, long ms, int *wst);
void fsi_stop_proc(pid_t pid, const char *comm, long grace_ms);	/* never asserts */
void fsi_guard_start(struct tl_guard *g);
void fsi_guard_tell(struct tl_guard *g, const char *msg);
void fsi_guard_stop(struct tl_guard *g);

#endif
