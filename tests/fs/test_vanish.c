/*
 * A partner that comes and goes: the target taken away while a reconcile
 * works on it (a loop ext4 image unmounted lazily, sshfs killed). The run
 * must stop touching it, say once which side went and how far it got,
 * exit 3 and lose nothing; a scan that meets it must be refused rather
 * than read what it could not list as deleted. Each test pulls the target
 * only once the run is seen at work (files landing, a target directory
 * open), and starts again should the run finish first.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsimg.h"
#include "testlib.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define TRIES 10

static struct tl_env env;
static struct tl_fsimg img;
static struct tl_sshd sshd;
static struct tl_sshfs sfs;
static char *served, *tgt_real;
static int ndir, nfile;

static void setup_ext4(void)
{
	tl_env_init(&env);
	tl_fsimg_make(&img, TL_EXT4, env.base, env.tgt, 128);
	tl_rm(env.tgt, "lost+found");	/* else it is carried to the source */
	tgt_real = realpath(env.tgt, NULL);
	ndir = 20;
	nfile = 150;
}

static void setup_sshfs(void)
{
	tl_env_init(&env);
	tl_sshd_start(&sshd, env.base);
	tl_mkdir(env.base, "served");
	served = tl_join(env.base, "served");
	tl_sshfs_mount(&sfs, &sshd, served, env.tgt);
	tgt_real = realpath(env.tgt, NULL);
	ndir = 10;
	nfile = 60;
}

static void teardown(void)
{
	tl_sshfs_cleanup(&sfs);
	tl_sshd_cleanup(&sshd);
	tl_fsimg_cleanup(&img);
	tl_env_fini(&env);
	free(served);
	free(tgt_real);
	served = tgt_real = NULL;
}

TestSuite(vanish_ext4, .init = setup_ext4, .fini = teardown, .timeout = 180);
TestSuite(vanish_sshfs, .init = setup_sshfs, .fini = teardown, .timeout = 180);

/* ================================================================ trees */

static void name_of(char out[64], int d, int f)
{
	if (f < 0)
		snprintf(out, 64, "d%02d", d);
	else
		snprintf(out, 64, "d%02d/f%03d", d, f);
}

/* 4 KiB that say which file they are. */
static char *content_of(int d, int f)
{
	char *c = malloc(4097), line[32];
	size_t n = 0;
	int len = snprintf(line, sizeof(line), "file %d of directory %d\n", f, d);
	while (n + (size_t)len <= 4096) {
		memcpy(c + n, line, (size_t)len);
		n += (size_t)len;
	}
	c[n] = '\0';
	return c;
}

static void make_source(void)
{
	char rel[64];
	for (int d = 0; d < ndir; d++)
		for (int f = 0; f < nfile; f++) {
			char *c = content_of(d, f);
			name_of(rel, d, f);
			tl_write(env.src, rel, c);
			free(c);
		}
}

/* dir holds every file of make_source with its content, and nothing else. */
static void expect_all(const char *dir, const char *what)
{
	char rel[64];
	for (int d = 0; d < ndir; d++)
		for (int f = 0; f < nfile; f++) {
			char *c = content_of(d, f);
			name_of(rel, d, f);
			char *got = tl_read(dir, rel);
			cr_assert(got && !strcmp(got, c), "%s: %s is %s", what, rel,
				  got ? "not what it was" : "missing");
			free(got);
			free(c);
		}
	size_t n = tl_count(dir), want = (size_t)ndir * (size_t)(nfile + 1);
	cr_assert_eq(n, want, "%s holds %zu entries, not %zu", what, n, want);
}

/* Empties dir's top level (the directories make_source made). */
static void wipe(const char *dir)
{
	char rel[64];
	for (int d = 0; d < ndir; d++) {
		name_of(rel, d, -1);
		tl_rm(dir, rel);
	}
}

static size_t count_lines_with(const char *file, const char *needle)
{
	char *text = tl_read("/", file + 1);
	size_t n = 0;
	for (const char *s = text; s && (s = strstr(s, needle)); s++)
		n++;
	free(text);
	return n;
}

/* ================================================================ the window */

/* Polls until dir holds at least n entries: 1, or 0 if p ended first. */
static int wait_entries(struct tl_proc *p, const char *dir, size_t n)
{
	while (!tl_proc_done(p))
		if (tl_count(dir) >= n)
			return 1;
	return 0;
}

/* Polls until p holds a directory beneath dir open (its scan is listing
 * there): 1, or 0 if p ended first. */
static int wait_open_beneath(struct tl_proc *p, const char *dir)
{
	char fds[64], link[384], to[PATH_MAX];
	size_t dl = strlen(dir);
	snprintf(fds, sizeof(fds), "/proc/%d/fd", (int)p->pid);
	while (!tl_proc_done(p)) {
		DIR *d = opendir(fds);
		struct dirent *de;
		int hit = 0;
		while (d && !hit && (de = readdir(d))) {
			snprintf(link, sizeof(link), "%s/%s", fds, de->d_name);
			ssize_t n = readlink(link, to, sizeof(to) - 1);
			if (n > (ssize_t)dl && !memcmp(to, dir, dl) && to[dl] == '/')
				hit = 1;
		}
		if (d)
			closedir(d);
		if (hit)
			return 1;
	}
	return 0;
}

/*
 * Runs reconcile and pulls the target (pull) once `landed` entries are in
 * `watch`; a run that ends first is undone (target emptied, state
 * forgotten) and tried again. Returns the interrupted run.
 */
static struct tl_run run_and_pull(const char *watch, size_t landed, void (*pull)(void))
{
	for (int t = 0; t < TRIES; t++) {
		struct tl_proc p;
		tl_spawn_cmd(&p, &env, "reconcile", OPTS("-q"));
		if (wait_entries(&p, watch, landed)) {
			pull();
			return tl_proc_wait(&p, 0);
		}
		struct tl_run r = tl_proc_wait(&p, 0);
		tl_run_free(&r);
		wipe(watch);
		r = tl_cmd(&env, "forget", NULL);
		tl_run_free(&r);
	}
	cr_assert_fail("reconcile finished before %zu entries landed in %s, %d times", landed,
		       watch, TRIES);
	return (struct tl_run){ 0 };
}

static void pull_ext4(void) { tl_fsimg_pull(&img); }
static void pull_sshfs(void) { tl_sshfs_kill(&sfs); }

static void expect_gone(const struct tl_run *r, int status, const char *when)
{
	char *want = NULL;
	cr_assert(asprintf(&want, "sbfs: the target %s went away during the %s (", tgt_real,
			   when) > 0);
	cr_assert_eq(r->status, status, "exit %d, not %d:\n%s%s", r->status, status, r->out,
		     r->err);
	cr_assert(strstr(r->err, want), "no \"%s...\" in:\n%s", want, r->err);
	/* One message, not one warning per path. */
	cr_assert(!strstr(r->err, "warning"), "warnings besides the message:\n%s", r->err);
	free(want);
}

/* The partner back, the next run finishes the job: both sides whole. */
static void next_run_finishes(const char *tgt_files)
{
	struct tl_run r = tl_cmd(&env, "reconcile", OPTS("-q"));
	cr_assert_eq(r.status, 0, "the run after the target came back: exit %d:\n%s%s", r.status,
		     r.out, r.err);
	tl_run_free(&r);
	expect_all(env.src, "the source after the second run");
	expect_all(tgt_files, "the target after the second run");
}

/* ================================================================ tests */

/* The USB disk unmounted (lazily: something holds it) mid-run; plugged
 * back at the same place, the next run finishes. */
Test(vanish_ext4, umount_lazy_mid_run)
{
	make_source();
	struct tl_run r = run_and_pull(env.tgt, 200, pull_ext4);
	expect_gone(&r, 3, "run");
	cr_assert(strstr(r.err, "the rest left for the next run; nothing was lost"), "%s", r.err);
	tl_run_free(&r);
	expect_all(env.src, "the source after the target went away");
	cr_assert_eq(count_lines_with(env.log, "\"action\":\"target-gone\""), 1,
		     "the log has not one target-gone entry");

	tl_fsimg_after_pull(&img);
	tl_fsimg_mount(&img);
	next_run_finishes(env.tgt);
	struct tl_run r2 = tl_cmd(&env, "status", OPTS("-q"));
	cr_assert_eq(r2.status, 0, "status after the second run: exit %d:\n%s", r2.status, r2.out);
	tl_run_free(&r2);
}

/* sshfs dies mid-run (the network went, the server rebooted). */
Test(vanish_sshfs, sshfs_killed_mid_run)
{
	make_source();
	struct tl_run r = run_and_pull(served, 40, pull_sshfs);
	expect_gone(&r, 3, "run");
	tl_run_free(&r);
	expect_all(env.src, "the source after sshfs died");

	tl_sshfs_respawn(&sfs);
	next_run_finishes(served);
}

/* sshfs dies while the scan lists the target, after a sync that recorded
 * everything: what it could not list must not read as deleted. */
Test(vanish_sshfs, scan_meets_vanished_target)
{
	make_source();
	struct tl_run r = tl_cmd(&env, "reconcile", OPTS("-q"));
	cr_assert_eq(r.status, 0, "first sync: exit %d:\n%s", r.status, r.err);
	tl_run_free(&r);
	for (int t = 0;; t++) {
		cr_assert(t < TRIES, "the scan never opened a target directory in %d runs", TRIES);
		struct tl_proc p;
		tl_spawn_cmd(&p, &env, "reconcile", OPTS("-q"));
		if (wait_open_beneath(&p, tgt_real)) {
			tl_sshfs_kill(&sfs);
			r = tl_proc_wait(&p, 0);
			break;
		}
		r = tl_proc_wait(&p, 0);
		tl_run_free(&r);
	}
	expect_gone(&r, 2, "scan");
	cr_assert(strstr(r.err, "nothing was changed"), "%s", r.err);
	tl_run_free(&r);
	expect_all(env.src, "the source after a scan that met a vanished target");
	expect_all(served, "the served directory");
}
