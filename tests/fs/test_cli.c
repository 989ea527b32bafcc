/* Smoke tests of the command line: help, version, a first sync. */
#include <criterion/criterion.h>
#include <string.h>

#include "testlib.h"

static struct tl_env env;

static void setup(void) { tl_env_init(&env); }
static void teardown(void) { tl_env_fini(&env); }

TestSuite(cli, .init = setup, .fini = teardown);

Test(cli, version_and_help)
{
	struct tl_run r = tl_sbfs_run(&env, NULL, (const char *[]){ "--version", NULL });
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "sbfs "));
	tl_run_free(&r);
	r = tl_sbfs_run(&env, NULL, (const char *[]){ "reconcile", "--help", NULL });
	cr_assert_eq(r.status, 0);
	cr_assert(strstr(r.out, "--dry-run"));
	tl_run_free(&r);
	r = tl_sbfs_run(&env, NULL, (const char *[]){ "frobnicate", NULL });
	cr_assert_eq(r.status, 2);
	tl_run_free(&r);
}

Test(cli, first_sync_then_in_sync)
{
	tl_write(env.src, "a.txt", "from source\n");
	tl_write(env.tgt, "dir/b.txt", "from target\n");
	struct tl_run r = tl_cmd(&env, "reconcile", NULL);
	cr_assert_eq(r.status, 0, "%s%s", r.out, r.err);
	tl_run_free(&r);
	char *why;
	cr_assert(tl_trees_equal(env.src, env.tgt, &why), "%s", why);
	r = tl_cmd(&env, "status", NULL);
	cr_assert_eq(r.status, 0, "%s", r.out);
	tl_run_free(&r);
}
