/*
 * The plan once built: a stream of items in an unlinked temporary file,
 * read back in order (apply.c, the commands), and what its scan counted.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

void sb_item_view(struct sb_item *it, const struct sb_pitem *pi,
		      const char *path)
{
	memset(it, 0, sizeof(*it));
	it->op = pi->op;
	it->to = pi->to;
	it->resolved = pi->resolved;
	it->err = pi->err;
	it->path = path;
	it->len = pi->len;
	it->side[0] = pi->s[0].info;
	it->side[1] = pi->s[1].info;
	it->conflict = pi->conflict;
}

int64_t sb_plan_started(const struct sb_plan *plan)
{
	return plan->started_ns;
}

void sb_plan_free(struct sb_plan *plan)
{
	if (!plan)
		return;
	if (plan->f)
		fclose(plan->f);
	free(plan->path);
	free(plan->why);
	free(plan);
}

const struct sb_plan_stats *sb_plan_stats(const struct sb_plan *plan)
{
	return &plan->st;
}

uint64_t sb_plan_changes(const struct sb_plan *plan)
{
	const struct sb_plan_stats *s = &plan->st;
	return s->copy[0] + s->copy[1] + s->update[0] + s->update[1] +
	       s->del[0] + s->del[1] + s->keep_both;
}

uint64_t sb_plan_count(const struct sb_plan *plan)
{
	return plan->count;
}

int sb_plan_rewind(struct sb_plan *plan)
{
	return fseeko(plan->f, 0, SEEK_SET) < 0 ? -errno : 0;
}

/* Reads the next n bytes of the plan into *buf, NUL-terminated. */
static int read_str(struct sb_plan *plan, char **buf, size_t *cap, uint32_t n)
{
	if ((size_t)n + 1 > *cap) {
		char *np = realloc(*buf, n + 1);
		if (!np)
			return -ENOMEM;
		*buf = np;
		*cap = n + 1;
	}
	if (n && fread(*buf, 1, n, plan->f) != n)
		return -EIO;
	(*buf)[n] = '\0';
	return 0;
}

int sb_plan_next_raw(struct sb_plan *plan, struct sb_pitem *it, const char **path)
{
	int ret;

	if (fread(it, sizeof(*it), 1, plan->f) != 1)
		return ferror(plan->f) ? -EIO : 0;
	if ((ret = read_str(plan, &plan->path, &plan->cap, it->len)) < 0 ||
	    (ret = read_str(plan, &plan->why, &plan->whycap, it->whylen)) < 0)
		return ret;
	*path = plan->path;
	return 1;
}

int sb_plan_next(struct sb_plan *plan, struct sb_item *it)
{
	struct sb_pitem pi;
	const char *path;
	int ret;

	while ((ret = sb_plan_next_raw(plan, &pi, &path)) > 0) {
		if (pi.op == SB_OP_CLEANUP)
			continue;
		sb_item_view(it, &pi, path);
		it->why = pi.whylen ? plan->why : NULL;
		return 1;
	}
	return ret;
}

int sb_plan_check_mass(const struct sb_plan *plan, int *side)
{
	const struct sb_plan_stats *s = &plan->st;
	/* A root that cannot be listed (a network mount gone) shows nothing:
	 * refused whatever the state holds, naming that side. */
	for (int i = 0; i < 2; i++) {
		if (s->unlisted[i]) {
			*side = i;
			return SB_E_MASS;
		}
	}
	if (!plan->full || s->state_entries == 0)
		return 0;
	for (int i = 0; i < 2; i++) {
		if (s->seen[i] == 0 || s->missing[i] * 2 > s->state_entries) {
			*side = i;
			return SB_E_MASS;
		}
	}
	return 0;
}
