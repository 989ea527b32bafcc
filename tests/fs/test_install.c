/*
 * sbfs as a Linux tool: make install and uninstall (the systemd units
 * checked by systemd-analyze where it is), the man page (every
 * option each command's --help prints is in it; it renders without a
 * warning), the bash completion, --version, and mount(8): an fstab-style
 * SOURCE:TARGET with "\:" for a ':' inside a path, and the generic options
 * mount(8) and mount.fuse3 pass along.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testlib.h"

#define OPTS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static struct tl_env env;
static struct tl_mount mnt;

static void setup(void) { tl_env_init(&env); }
static void teardown(void)
{
	tl_mount_cleanup(&mnt);
	free(mnt.dir);
	free(mnt.sanlog);
	memset(&mnt, 0, sizeof(mnt));
	tl_env_fini(&env);
}

TestSuite(install, .init = setup, .fini = teardown, .timeout = 120);

/* The source tree: the sbfs under test is build/sbfs or build-san/sbfs. */
static char *repo_dir(void)
{
	char *d = realpath(tl_sbfs(), NULL);
	cr_assert(d, "%s: not found", tl_sbfs());
	for (int i = 0; i < 2; i++)
		*strrchr(d, '/') = '\0';
	return d;
}

/* sh -c script with $1.. = args; its result. */
static struct tl_run sh(const char *script, const char *const *args)
{
	const char *av[16] = { "-c", script, "sh" };
	size_t n = 3;
	for (size_t i = 0; args && args[i] && n < 15; i++)
		av[n++] = args[i];
	av[n] = NULL;
	struct tl_proc p;
	tl_spawn_ex(&p, NULL, "sh", 0, av);
	return tl_proc_wait(&p, 0);
}

Test(install, version_names_the_libraries)
{
	struct tl_run r = tl_sbfs_run(&env, NULL, OPTS("--version"));
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "sbfs ") && strstr(r.out, "libfuse 3.") &&
		  strstr(r.out, "LMDB ") && strstr(r.out, "OpenSSL "), "%s", r.out);
	tl_run_free(&r);
}

Test(install, install_and_uninstall_under_destdir)
{
	char *repo = repo_dir(), *dest = tl_join(env.base, "dest");
	struct tl_run r = sh("make -s -C \"$1\" install DESTDIR=\"$2\" PREFIX=/opt/sb", OPTS(repo, dest));
	cr_assert_eq(r.status, 0, "make install: %s%s", r.out, r.err);
	tl_run_free(&r);
	static const char *const files[] = {
		"opt/sb/bin/sbfs", "opt/sb/share/man/man1/sbfs.1",
		"opt/sb/share/bash-completion/completions/sbfs", "opt/sb/sbin/mount.fuse.sbfs",
		"opt/sb/lib/systemd/system/sbfs-mount@.service",
		"opt/sb/lib/systemd/user/sbfs-mount@.service",
		"opt/sb/share/doc/sbfs/examples/mnt-sbfs.mount",
	};
	size_t nfiles = sizeof(files) / sizeof(files[0]);
	for (size_t i = 0; i < nfiles; i++)
		cr_assert(tl_exists(dest, files[i]), "make install did not install %s", files[i]);
	struct stat st;
	cr_assert(stat(tl_at(dest, "opt/sb/bin/sbfs"), &st) == 0 && (st.st_mode & 0111));
	char buf[256];
	ssize_t n = readlink(tl_at(dest, "opt/sb/sbin/mount.fuse.sbfs"), buf, sizeof(buf) - 1);
	cr_assert(n > 0);
	buf[n] = '\0';
	cr_assert_str_eq(buf, "/opt/sb/bin/sbfs", "the link must name the installed path");
	r = sh("make -s -C \"$1\" uninstall DESTDIR=\"$2\" PREFIX=/opt/sb", OPTS(repo, dest));
	cr_assert_eq(r.status, 0, "make uninstall: %s%s", r.out, r.err);
	tl_run_free(&r);
	for (size_t i = 0; i < nfiles; i++)
		cr_assert(!tl_exists(dest, files[i]), "make uninstall left %s", files[i]);
	free(repo);
	free(dest);
}

/*
 * The units make install puts in place pass systemd-analyze verify (the
 * template as an instance), and the template runs the installed sbfs.
 * Checked where systemd is; elsewhere skipped, saying why.
 */
Test(install, systemd_units_verify)
{
	struct tl_run r = sh("command -v systemd-analyze", NULL);
	int have = r.status == 0;
	tl_run_free(&r);
	if (!have)
		cr_skip_test("systemd-analyze is not installed: the systemd units are not checked");
	char *repo = repo_dir(), *pfx = tl_join(env.base, "pfx");
	r = sh("make -s -C \"$1\" install PREFIX=\"$2\"", OPTS(repo, pfx));
	cr_assert_eq(r.status, 0, "make install: %s%s", r.out, r.err);
	tl_run_free(&r);
	char *unit = tl_read(pfx, "lib/systemd/system/sbfs-mount@.service"), *want = NULL;
	cr_assert(unit);
	cr_assert(asprintf(&want, "ExecStart=%s/bin/sbfs mount -f ", pfx) > 0);
	cr_assert(strstr(unit, want) && strstr(unit, "EnvironmentFile=%E/sbfs/%i.conf"), "%s", unit);
	free(want);
	free(unit);
	/* MANPATH: verify runs man for Documentation=man:sbfs(1) */
	r = sh("cd \"$1\" && MANPATH=\"$1\"/share/man systemd-analyze verify "
	       "lib/systemd/system/sbfs-mount@test.service share/doc/sbfs/examples/mnt-sbfs.mount 2>&1",
	       OPTS(pfx));
	cr_assert_eq(r.status, 0, "systemd-analyze verify: %s", r.out);
	cr_assert_str_eq(r.out, "", "systemd-analyze verify warned:\n%s", r.out);
	tl_run_free(&r);
	r = sh("make -s -C \"$1\" uninstall PREFIX=\"$2\"", OPTS(repo, pfx));
	cr_assert_eq(r.status, 0, "make uninstall: %s%s", r.out, r.err);
	tl_run_free(&r);
	cr_assert(!tl_exists(pfx, "lib/systemd/system/sbfs-mount@.service"));
	free(pfx);
	free(repo);
}

/* Every option the usage texts print, as troff writes it (\-\-name). */
Test(install, man_page_has_every_option_and_renders_cleanly)
{
	char *repo = repo_dir(), *man = tl_join(repo, "man/sbfs.1");
	char *page = tl_read("/", man + 1);
	cr_assert(page, "%s: missing", man);
	static const char *const cmds[] = { "reconcile", "status", "conflicts", "resolve",
					    "mount", "umount", "forget", "ignore", "versions",
					    "restore" };
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		struct tl_run r = tl_sbfs_run(&env, NULL, OPTS(cmds[i], "--help"));
		cr_assert_eq(r.status, 0, "sbfs %s --help: %d", cmds[i], r.status);
		char want[128];
		snprintf(want, sizeof(want), "\n.BI \"%s ", cmds[i]);
		cr_assert(strstr(page, want), "the man page has no entry for the command %s", cmds[i]);
		for (char *s = r.out; (s = strchr(s, '-'));) {
			/* an option begins a word: "-x" or "--name" */
			if (s > r.out && !strchr(" ,[|\n", s[-1])) {
				s++;
				continue;
			}
			size_t n = strspn(s, "-") ;
			size_t m = strspn(s + n, "abcdefghijklmnopqrstuvwxyz-");
			if (n > 2 || !m) {
				s += n;
				continue;
			}
			char troff[128] = "";
			for (size_t k = 0; k < n + m && strlen(troff) < 120; k++)
				strcat(troff, s[k] == '-' ? "\\-" : (char[]){ s[k], 0 });
			/* fusermount3's -u, in mount's usage, is not sbfs's */
			if (strcmp(troff, "\\-u"))
				cr_assert(strstr(page, troff), "sbfs %s --help prints %.*s, the man page lacks it",
					  cmds[i], (int)(n + m), s);
			s += n + m;
		}
		tl_run_free(&r);
	}
	struct tl_run r = sh("groff -man -ww -z \"$1\" 2>&1 && "
			     "MANWIDTH=80 man --warnings -l \"$1\" 2>&1 >/dev/null", OPTS(man));
	cr_assert_eq(r.status, 0, "groff/man failed: %s", r.out);
	cr_assert_str_eq(r.out, "", "the man page renders with warnings:\n%s", r.out);
	tl_run_free(&r);
	free(page);
	free(man);
	free(repo);
}

/* bash with the completion loaded: COMP_WORDS, COMP_CWORD, then _sbfs. */
static char *complete(const char *words, int cword)
{
	char *repo = repo_dir(), *script = NULL, *cw = NULL;
	cr_assert(asprintf(&script, ". \"$1\"/completion/sbfs.bash; COMP_WORDS=(%s); "
			   "COMP_CWORD=%d; _sbfs; printf '%%s\\n' \"${COMPREPLY[@]}\"",
			   words, cword) > 0);
	cr_assert(asprintf(&cw, "%d", cword) > 0);
	struct tl_proc p;
	tl_spawn_ex(&p, NULL, "bash", 0, OPTS("-c", script, "bash", repo));
	struct tl_run r = tl_proc_wait(&p, 0);
	cr_assert_eq(r.status, 0, "bash: %s", r.err);
	char *res = strdup(r.out);
	tl_run_free(&r);
	free(script);
	free(cw);
	free(repo);
	return res;
}

Test(install, bash_completion)
{
	tl_fuse_required();
	char *bin = NULL, *w = NULL;
	cr_assert(asprintf(&bin, "'%s'", tl_sbfs()) > 0);
	cr_assert(asprintf(&w, "%s rec", bin) > 0);
	char *c = complete(w, 1);
	cr_assert_str_eq(c, "reconcile\n");
	free(c);
	free(w);
	cr_assert(asprintf(&w, "%s reconcile --dr", bin) > 0);
	cr_assert_str_eq((c = complete(w, 2)), "--dry-run\n");
	free(c);
	free(w);
	cr_assert(asprintf(&w, "%s mount -", bin) > 0);
	c = complete(w, 2);
	cr_assert(strstr(c, "-o\n") && strstr(c, "--auto-resolve\n") && !strstr(c, "--dry-run"),
		  "%s", c);
	free(c);
	free(w);
	cr_assert(asprintf(&w, "%s reconcile --auto-resolve ne", bin) > 0);
	cr_assert_str_eq((c = complete(w, 3)), "newer\n");
	free(c);
	free(w);
	/* directories for the operands */
	tl_mkdir(env.base, "dir-one");
	tl_write(env.base, "dir-file", "x");
	cr_assert(asprintf(&w, "%s reconcile '%s/dir-'", bin, env.base) > 0);
	c = complete(w, 2);
	cr_assert(strstr(c, "dir-one") && !strstr(c, "dir-file"), "%s", c);
	free(c);
	free(w);
	/* umount offers sbfs mount points, and only those */
	tl_mount(&env, &mnt, NULL);
	cr_assert(asprintf(&w, "%s umount ''", bin) > 0);
	c = complete(w, 2);
	cr_assert(strstr(c, mnt.dir) && !strstr(c, "/proc\n"), "%s", c);
	free(c);
	free(w);
	tl_umount(&env, &mnt);
	free(bin);
}

/* The spec of the env's partners, the target a directory named "t:x". */
static char *spec_with_colon(char **tgt)
{
	*tgt = tl_join(env.base, "t:x");
	cr_assert(mkdir(*tgt, 0755) == 0);
	char *spec = NULL;
	cr_assert(asprintf(&spec, "%s:%s/t\\:x", env.src, env.base) > 0);
	return spec;
}

static void start_adopting(void)
{
	memset(&mnt, 0, sizeof(mnt));
	mnt.guard_fd = -1;
	mnt.dir = tl_join(env.base, "mnt");
	mnt.sanlog = tl_join(env.base, "sanlog");
	cr_assert(mkdir(mnt.dir, 0755) == 0);
	cr_assert(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0);
}

/* What mount(8) does for -t fuse.sbfs: mount.fuse3 runs the program named
 * before '#' (here the sbfs under test, so that nothing is installed). */
Test(install, mount_8_with_fstab_options)
{
	tl_fuse_required();
	char *tgt, *spec = spec_with_colon(&tgt), *dev = NULL, *o = NULL;
	tl_write(env.src, "a.txt", "from source\n");
	start_adopting();
	cr_assert(asprintf(&dev, "%s#%s", tl_sbfs(), spec) > 0);
	cr_assert(asprintf(&o, "noauto,nofail,_netdev,x-systemd.automount,defaults,users,"
			   "state_dir=%s,ignore=*.tmp", env.state) > 0);
	struct tl_run r = sh("exec mount -t fuse \"$1\" \"$2\" -o \"$3\"", OPTS(dev, mnt.dir, o));
	cr_assert_eq(r.status, 0, "mount(8): %s%s", r.out, r.err);
	tl_run_free(&r);
	tl_mount_adopt(&env, &mnt);
	cr_assert(tl_exists(tgt, "a.txt"), "the opening reconcile did not reach %s", tgt);
	tl_write(mnt.dir, "b.txt", "through the mount\n");
	tl_write(mnt.dir, "c.tmp", "ignored\n");
	char *b = tl_read(tgt, "b.txt");
	cr_assert(b && !strcmp(b, "through the mount\n"));
	free(b);
	cr_assert(!tl_exists(tgt, "c.tmp"), "ignore= did not reach the mount");
	r = sh("grep -F \" $1 \" /proc/self/mountinfo", OPTS(mnt.dir));
	cr_assert(strstr(r.out, " - fuse.sbfs sbfs:"), "not shown as fuse.sbfs:\n%s", r.out);
	tl_run_free(&r);
	tl_umount(&env, &mnt);
	free(spec);
	free(tgt);
	free(dev);
	free(o);
}

/* mount(8) runs /sbin/mount.fuse.sbfs itself where it exists, with its
 * helper options and none of mount.fuse3's filtering. */
Test(install, mount_fuse_sbfs_link_as_mount_8_runs_it)
{
	tl_fuse_required();
	char *tgt, *spec = spec_with_colon(&tgt), *o = NULL;
	char *link = tl_join(env.base, "mount.fuse.sbfs");
	cr_assert(symlink(tl_sbfs(), link) == 0);
	start_adopting();
	cr_assert(asprintf(&o, "rw,noauto,nofail,x-systemd.requires=/,comment=x,state_dir=%s",
			   env.state) > 0);
	struct tl_proc p;
	tl_spawn_ex(&p, &env, link, 0, OPTS(spec, mnt.dir, "-n", "-o", o, "-t", "fuse.sbfs"));
	struct tl_run r = tl_proc_wait(&p, 0);
	cr_assert_eq(r.status, 0, "mount.fuse.sbfs: %s%s", r.out, r.err);
	tl_run_free(&r);
	tl_mount_adopt(&env, &mnt);
	tl_write(mnt.dir, "n.txt", "n\n");
	cr_assert(tl_exists(tgt, "n.txt") && tl_exists(env.src, "n.txt"));
	tl_umount(&env, &mnt);
	free(spec);
	free(tgt);
	free(o);
	free(link);
}

Test(install, bad_specs_are_refused_with_the_rule)
{
	char *mp = tl_join(env.base, "mnt");
	cr_assert(mkdir(mp, 0755) == 0);
	static const char *const bad[] = { "/a:/b:/c", "/a:", ":/b", "/a:/b\\" };
	for (size_t i = 0; i < 4; i++) {
		struct tl_run r = tl_sbfs_run(&env, NULL, OPTS(bad[i], mp));
		cr_assert_eq(r.status, 2, "%s: exit %d", bad[i], r.status);
		cr_assert(strstr(r.err, bad[i]) && strstr(r.err, "\\"), "%s: %s", bad[i], r.err);
		tl_run_free(&r);
	}
	cr_assert(!tl_mounted(mp));
	cr_assert_eq(tl_count(env.state), 0);
	free(mp);
}
