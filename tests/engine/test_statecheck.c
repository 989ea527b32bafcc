/*
 * The check sb_state_open makes before LMDB maps data.mdb: a state that
 * went through many commits (a free list, branch pages, several
 * databases) always passes; a truncated one is
 * SB_E_STATE_CORRUPT; an emptied one that had held records is
 * SB_E_STATE_LOST, and only while its "synced" marker says it had.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static char base[] = "/tmp/sbfs-statecheck-XXXXXX";
static char dir[4200], data[4300], marker[4300];

static void setup(void)
{
	cr_assert_not_null(mkdtemp(base));
	snprintf(dir, sizeof(dir), "%s/p", base);
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	snprintf(marker, sizeof(marker), "%s/synced", dir);
}

static void teardown(void)
{
	char cmd[4300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", base);
}

TestSuite(statecheck, .init = setup, .fini = teardown);

/* Round r puts names r*1000.. and deletes most of the previous round's. */
static void churn(int rounds)
{
	struct sb_rec rec = { .type = SB_FILE, .mode = 0644, .size = 1 };
	char name[64];
	for (int r = 0; r < rounds; r++) {
		struct sb_state *st;
		struct sb_txn *t;
		cr_assert_eq(sb_state_open(dir, &st), 0, "round %d: the check refused a sound state", r);
		cr_assert_eq(sb_state_begin(st, 0, &t), 0);
		for (int i = 0; i < 1000; i++) {
			int n = snprintf(name, sizeof(name), "file-%06d-with-some-length", r * 1000 + i);
			cr_assert_eq(sb_state_put(t, SB_ROOT_ID, name, (size_t)n, &rec), 0);
		}
		for (int i = 0; r > 0 && i < 900; i++) {
			int n = snprintf(name, sizeof(name), "file-%06d-with-some-length", (r - 1) * 1000 + i);
			cr_assert_eq(sb_state_del(t, SB_ROOT_ID, name, (size_t)n), 0);
		}
		cr_assert_eq(sb_txn_commit(t), 0);
		sb_state_close(st);
	}
}

static int reopen(void)
{
	struct sb_state *st = NULL;
	int ret = sb_state_open(dir, &st);
	sb_state_close(st);
	return ret;
}

Test(statecheck, churned_state_passes_truncated_fails)
{
	churn(12);
	cr_assert_eq(access(marker, F_OK), 0, "no marker after commits with records");
	struct stat sb;
	cr_assert_eq(stat(data, &sb), 0);
	cr_assert_eq(truncate(data, sb.st_size - 4096), 0);
	cr_assert_eq(reopen(), SB_E_STATE_CORRUPT);
	cr_assert_eq(truncate(data, 8192), 0);
	cr_assert_eq(reopen(), SB_E_STATE_CORRUPT);
	cr_assert_eq(truncate(data, 0), 0);
	cr_assert_eq(reopen(), SB_E_STATE_LOST);
	cr_assert_eq(unlink(data), 0);
	cr_assert_eq(reopen(), SB_E_STATE_LOST);
	/* Without the marker nothing says it had records: a first sync. */
	cr_assert_eq(unlink(marker), 0);
	cr_assert_eq(reopen(), 0);
}

Test(statecheck, empty_state_is_not_marked)
{
	cr_assert_eq(reopen(), 0);
	cr_assert_eq(reopen(), 0);
	cr_assert_neq(access(marker, F_OK), 0, "marked without a record");
}
