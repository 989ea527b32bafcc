/*
 * Where a background mount's messages go: its terminal is gone once it
 * detaches, so to syslog (the journal takes it from /dev/log), each line
 * naming the partnership, since one user may run several mounts. A message
 * repeated many times in a short while (a failing disk under a busy mount)
 * would flood the journal and hide the others: past DLOG_BURST repeats in
 * DLOG_WINDOW seconds it is counted instead, and the count said once.
 */
#define FUSE_USE_VERSION 35
#include <errno.h>
#include <fcntl.h>
#include <fuse_log.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

#define DLOG_SLOTS 16	/* distinct messages tracked at once */

struct slot {
	char *text;
	int64_t start;		/* when its window began */
	unsigned count;		/* said in that window */
	unsigned held;		/* not said, past DLOG_BURST */
};

static struct {
	pthread_mutex_t lock;
	int on;
	int fd;			/* SBFS_TEST_SYSLOG's file, else -1: syslog */
	char *who;		/* "SOURCE <-> TARGET" */
	struct slot s[DLOG_SLOTS];
} dl = { .lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1 };

static const char *prio_name(int prio)
{
	static const char *const n[] = { "emerg", "alert", "crit", "err",
					 "warning", "notice", "info", "debug" };
	return prio >= 0 && prio < 8 ? n[prio] : "info";
}

/* One line out; under dl.lock. */
static void emit(int prio, const char *text)
{
	if (dl.fd < 0) {
		syslog(prio, "%s: %s", dl.who, text);
		return;
	}
	char *line = NULL;
	int n = asprintf(&line, "%s: %s: %s\n", prio_name(prio), dl.who, text);
	/* One write to an O_APPEND file: lines of several mounts stay whole. */
	if (n > 0 && write(dl.fd, line, (size_t)n) < 0) {
		/* nowhere left to say it */
	}
	free(line);
}

static void say_held(struct slot *s)
{
	if (!s->held)
		return;
	char *t = NULL;
	if (asprintf(&t, "the message \"%s\" repeated %u more times", s->text, s->held) > 0)
		emit(LOG_NOTICE, t);
	free(t);
	s->held = 0;
}

void dlog_at(int prio, const char *text, int64_t now)
{
	pthread_mutex_lock(&dl.lock);
	struct slot *hit = NULL, *old = &dl.s[0];
	for (int i = 0; i < DLOG_SLOTS; i++) {
		struct slot *s = &dl.s[i];
		/* A window over: its count is said now, not at some later
		 * repeat that may never come. */
		if (s->text && now - s->start >= DLOG_WINDOW) {
			say_held(s);
			s->count = 0;
			s->start = now;
		}
		if (s->text && !strcmp(s->text, text))
			hit = s;
		if (!s->text || (old->text && s->start < old->start))
			old = s;
	}
	if (!hit) {
		say_held(old);
		free(old->text);
		*old = (struct slot){ .text = strdup(text), .start = now };
		hit = old;
	}
	if (++hit->count > DLOG_BURST)
		hit->held++;
	else
		emit(prio, text);
	pthread_mutex_unlock(&dl.lock);
}

static int64_t now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

void dlog_vsay(int prio, const char *fmt, va_list ap)
{
	char *t = NULL;
	if (vasprintf(&t, fmt, ap) < 0)
		return;
	size_t n = strlen(t);
	while (n && t[n - 1] == '\n')	/* libfuse ends its messages with one */
		t[--n] = '\0';
	dlog_at(prio, t, now_s());
	free(t);
}

void dlog_say(int prio, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	dlog_vsay(prio, fmt, ap);
	va_end(ap);
}

int dlog_on(void)
{
	return __atomic_load_n(&dl.on, __ATOMIC_ACQUIRE);
}

/* libfuse's own messages (a failed reply, a lost connection) go with ours;
 * its levels are syslog's. */
static void fuse_to_dlog(enum fuse_log_level level, const char *fmt, va_list ap)
{
	if (dlog_on())
		dlog_vsay((int)level, fmt, ap);
	else
		vfprintf(stderr, fmt, ap);
}

int dlog_open(const char *src, const char *tgt)
{
	if (asprintf(&dl.who, "%s <-> %s", src, tgt) < 0) {
		dl.who = NULL;
		return -ENOMEM;
	}
	/* For the tests only: they cannot read the journal, and must not
	 * bind the system's /dev/log. */
	const char *f = getenv("SBFS_TEST_SYSLOG");
	if (f && *f) {
		dl.fd = open(f, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (dl.fd < 0)
			return -errno;
	} else {
		openlog("sbfs", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	}
	__atomic_store_n(&dl.on, 1, __ATOMIC_RELEASE);
	fuse_set_log_func(fuse_to_dlog);
	return 0;
}

void dlog_close(void)
{
	if (!dlog_on())
		return;
	pthread_mutex_lock(&dl.lock);
	for (int i = 0; i < DLOG_SLOTS; i++) {
		say_held(&dl.s[i]);
		free(dl.s[i].text);
		dl.s[i] = (struct slot){ 0 };
	}
	pthread_mutex_unlock(&dl.lock);
	__atomic_store_n(&dl.on, 0, __ATOMIC_RELEASE);
	fuse_set_log_func(NULL);	/* libfuse's own again */
	if (dl.fd >= 0)
		close(dl.fd);
	else
		closelog();
	dl.fd = -1;
	free(dl.who);
	dl.who = NULL;
}
