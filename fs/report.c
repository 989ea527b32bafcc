/* Human and JSON reports of plans and conflicts. */
#include <ctype.h>
#include <stdarg.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "cli.h"

__thread FILE *cli_out, *cli_err, *cli_in;

int error(const char *fmt, ...)
{
	va_list ap;
	/* A client's command run by the mount tells the client, not syslog. */
	if (!cli_err && dlog_on()) {
		va_start(ap, fmt);
		dlog_vsay(LOG_ERR, fmt, ap);
		va_end(ap);
		return -1;
	}
	fputs("sbfs: ", ERR);
	va_start(ap, fmt);
	vfprintf(ERR, fmt, ap);
	va_end(ap);
	fputc('\n', ERR);
	return -1;
}

void warning(const char *fmt, ...)
{
	va_list ap;
	if (!cli_err && dlog_on()) {
		va_start(ap, fmt);
		dlog_vsay(LOG_WARNING, fmt, ap);
		va_end(ap);
		return;
	}
	fputs("sbfs: warning: ", ERR);
	va_start(ap, fmt);
	vfprintf(ERR, fmt, ap);
	va_end(ap);
	fputc('\n', ERR);
}

/* Names may hold any byte but NUL and '/': never let one steer a terminal. */
void put_path(FILE *f, const char *s, size_t len)
{
	if (len == 0) {
		fputs(".", f);
		return;
	}
	if (sb_utf8_valid(s, len)) {
		int plain = 1;
		for (size_t i = 0; i < len && plain; i++)
			plain = (unsigned char)s[i] >= 0x20 && s[i] != 0x7f && s[i] != '\\';
		if (plain) {
			fwrite(s, 1, len, f);
			return;
		}
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		if (c == '\\')
			fputs("\\\\", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !sb_utf8_valid(s, len)))
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

void put_time(FILE *f, int64_t ns)
{
	struct tm tm;
	time_t t = ns / 1000000000;
	char buf[32];
	localtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
	fputs(buf, f);
}

static void put_iso(FILE *f, int64_t ns)
{
	struct tm tm;
	time_t t = ns / 1000000000;
	char buf[40];
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(f, "\"%s.%09lldZ\"", buf, (long long)(ns % 1000000000 + (ns < 0 ? 1000000000 : 0)));
}

const char *op_label(int op, int to)
{
	switch (op) {
	case SB_OP_COPY: return to ? "Copy to target" : "Copy to source";
	case SB_OP_UPDATE: return to ? "Update target" : "Update source";
	case SB_OP_META: return to ? "Update target (mode/time)" : "Update source (mode/time)";
	case SB_OP_DELETE: return to ? "Delete in target" : "Delete in source";
	case SB_OP_KEEP_BOTH: return "Keep both";
	}
	return NULL;
}

static const char *op_key(int op, int to)
{
	switch (op) {
	case SB_OP_COPY: return to ? "copy-to-target" : "copy-to-source";
	case SB_OP_UPDATE: return to ? "update-target" : "update-source";
	case SB_OP_META: return to ? "metadata-to-target" : "metadata-to-source";
	case SB_OP_DELETE: return to ? "delete-in-target" : "delete-in-source";
	case SB_OP_KEEP_BOTH: return "keep-both";
	}
	return NULL;
}

const char *suggest_name(int s)
{
	return s == SB_SUGGEST_SOURCE ? "source" : s == SB_SUGGEST_TARGET ? "target" : NULL;
}

static void put_side(FILE *f, const char *label, const struct sb_sideinfo *s, int kind)
{
	fprintf(f, "   %s: ", label);
	if (s->type == SB_NONE) {
		fputs(kind == SB_CK_CASE ? "cannot hold it: the name is taken in another case\n"
			: "deleted\n", f);
		return;
	}
	put_time(f, s->mtime_ns);
	if (s->type == SB_FILE)
		fprintf(f, ", %llu bytes\n", (unsigned long long)s->size);
	else
		fprintf(f, ", %s\n", sb_type_name(s->type));
}

void print_conflict(FILE *f, size_t n, const struct sb_item *it)
{
	const struct sb_conflict *c = &it->conflict;
	fprintf(f, "%zu. ", n);
	put_path(f, it->path, it->len);
	fprintf(f, " (%s)\n", sb_conflict_kind_name(c->kind));
	put_side(f, "Source", &c->side[0], c->kind);
	put_side(f, "Target", &c->side[1], c->kind);
	const char *s = suggest_name(c->suggest);
	if (c->kind == SB_CK_CASE)
		fputs("   Fix: rename one of the names that differ only in case\n", f);
	else
		fprintf(f, "   Suggested: %s\n", s ? s : "none (same time and size)");
}

void print_plan(FILE *f, struct sb_pship *p, struct sb_plan *plan, int list_actions)
{
	const struct sb_plan_stats *st = sb_plan_stats(plan);
	struct sb_item it;
	size_t n = 0;
	char what[512];

	fprintf(f, "\n=== SYNC ANALYSIS ===\n");
	for (int side = 0; side < 2; side++) {
		sb_pship_describe(p, side, what, sizeof(what));
		fprintf(f, "%s: %s\n", side ? "Target" : "Source", what);
	}
	fprintf(f, "Copy to target: %llu files\n", (unsigned long long)st->copy[1]);
	fprintf(f, "Update target: %llu files\n", (unsigned long long)st->update[1]);
	fprintf(f, "Copy to source: %llu files\n", (unsigned long long)st->copy[0]);
	fprintf(f, "Update source: %llu files\n", (unsigned long long)st->update[0]);
	fprintf(f, "Delete in target: %llu files\n", (unsigned long long)st->del[1]);
	fprintf(f, "Delete in source: %llu files\n", (unsigned long long)st->del[0]);
	if (st->keep_both)
		fprintf(f, "Keep both: %llu files\n", (unsigned long long)st->keep_both);
	fprintf(f, "Conflicts: %llu files\n", (unsigned long long)st->conflicts);
	if (st->skipped)
		fprintf(f, "Skipped: %llu\n", (unsigned long long)st->skipped);
	if (st->ignored)
		fprintf(f, "Ignored: %llu\n", (unsigned long long)st->ignored);
	fprintf(f, "\nTotal changes: %llu files\n", (unsigned long long)sb_plan_changes(plan));

	if (list_actions && sb_plan_changes(plan)) {
		fprintf(f, "\n=== PLANNED ACTIONS ===\n");
		sb_plan_rewind(plan);
		while (sb_plan_next(plan, &it) > 0) {
			const char *label = op_label(it.op, it.to);
			if (!label)
				continue;
			const char *arrow = it.op == SB_OP_KEEP_BOTH ? "↔" : it.to ? "→" : "←";
			fprintf(f, "%zu. %s %s%s: ", ++n, arrow, label,
				it.resolved ? " (conflict resolved)" : "");
			put_path(f, it.path, it.len);
			fputc('\n', f);
		}
	}
	if (st->conflicts) {
		fprintf(f, "\n=== CONFLICTS (manual resolution required) ===\n");
		n = 0;
		sb_plan_rewind(plan);
		while (sb_plan_next(plan, &it) > 0)
			if (it.op == SB_OP_CONFLICT)
				print_conflict(f, ++n, &it);
	}
}

static void json_side(FILE *f, const struct sb_sideinfo *s)
{
	if (s->type == SB_NONE) {
		fputs("null", f);
		return;
	}
	fprintf(f, "{\"type\":\"%s\",\"size\":%llu,\"mode\":\"%04o\",\"mtime\":",
		s->type == SB_FILE ? "file" : s->type == SB_DIR ? "directory" :
		s->type == SB_LINK ? "symlink" : s->type == SB_FIFO ? "fifo" :
		s->type == SB_CHR ? "char-device" : s->type == SB_BLK ? "block-device" :
		s->type == SB_SOCK ? "socket" : "other",
		(unsigned long long)s->size, (unsigned)s->mode);
	put_iso(f, s->mtime_ns);
	fprintf(f, ",\"mtime_ns\":%lld}", (long long)s->mtime_ns);
}

static void json_conflict(FILE *f, const char *path, size_t len, const struct sb_conflict *c)
{
	static const char *const kinds[] = { "none", "content", "modified-deleted",
					     "type", "under-deleted-directory", "case-clash" };
	fputc('{', f);
	sb_json_path(f, "path", path, len);
	fprintf(f, ",\"kind\":\"%s\",\"source\":", kinds[c->kind <= SB_CK_CASE ? c->kind : 0]);
	json_side(f, &c->side[0]);
	fputs(",\"target\":", f);
	json_side(f, &c->side[1]);
	const char *s = suggest_name(c->suggest);
	fprintf(f, ",\"suggestion\":%s%s%s}", s ? "\"" : "", s ? s : "null", s ? "\"" : "");
}

static void json_roots(FILE *f, struct sb_pship *p)
{
	fputs("\"source\":", f);
	sb_json_string(f, sb_pship_root(p, 0), strlen(sb_pship_root(p, 0)));
	fputs(",\"target\":", f);
	sb_json_string(f, sb_pship_root(p, 1), strlen(sb_pship_root(p, 1)));
}

void print_plan_json(FILE *f, struct sb_pship *p, struct sb_plan *plan)
{
	const struct sb_plan_stats *st = sb_plan_stats(plan);
	struct sb_item it;
	int first;

	fputc('{', f);
	json_roots(f, p);
	fprintf(f, ",\"in_sync\":%s", sb_plan_changes(plan) || st->conflicts || st->skipped
		? "false" : "true");
	fprintf(f, ",\"summary\":{\"copy_to_target\":%llu,\"update_target\":%llu,"
		"\"copy_to_source\":%llu,\"update_source\":%llu,\"delete_in_target\":%llu,"
		"\"delete_in_source\":%llu,\"keep_both\":%llu,\"conflicts\":%llu,"
		"\"skipped\":%llu,\"total_changes\":%llu,\"hashed\":%llu,\"ignored\":%llu}",
		(unsigned long long)st->copy[1], (unsigned long long)st->update[1],
		(unsigned long long)st->copy[0], (unsigned long long)st->update[0],
		(unsigned long long)st->del[1], (unsigned long long)st->del[0],
		(unsigned long long)st->keep_both, (unsigned long long)st->conflicts,
		(unsigned long long)st->skipped, (unsigned long long)sb_plan_changes(plan),
		(unsigned long long)(st->hashed[0] + st->hashed[1]),
		(unsigned long long)st->ignored);
	fputs(",\"partners\":{\"source\":", f);
	sb_pship_caps_json(p, 0, f);
	fputs(",\"target\":", f);
	sb_pship_caps_json(p, 1, f);
	fputc('}', f);
	const char *sect[] = { "actions", "conflicts", "skipped" };
	for (int s = 0; s < 3; s++) {
		fprintf(f, ",\"%s\":[", sect[s]);
		first = 1;
		sb_plan_rewind(plan);
		while (sb_plan_next(plan, &it) > 0) {
			const char *key = op_key(it.op, it.to);
			if (s == 0 && key) {
				fputs(first ? "{" : ",{", f);
				fprintf(f, "\"action\":\"%s\",", key);
				sb_json_path(f, "path", it.path, it.len);
				const struct sb_sideinfo *si = &it.side[it.op == SB_OP_DELETE ? it.to : !it.to];
				fprintf(f, ",\"type\":\"%s\",\"size\":%llu,\"resolved\":%s}",
					sb_type_name(si->type), (unsigned long long)si->size,
					it.resolved ? "true" : "false");
			} else if (s == 1 && it.op == SB_OP_CONFLICT) {
				if (!first)
					fputc(',', f);
				json_conflict(f, it.path, it.len, &it.conflict);
			} else if (s == 2 && it.op == SB_OP_SKIP) {
				fputs(first ? "{" : ",{", f);
				sb_json_path(f, "path", it.path, it.len);
				fputs(",\"error\":", f);
				const char *e = sb_strerror(it.err);
				sb_json_string(f, e, strlen(e));
				if (it.why) {
					fputs(",\"reason\":", f);
					sb_json_string(f, it.why, strlen(it.why));
				}
				fputc('}', f);
			} else {
				continue;
			}
			first = 0;
		}
		fputc(']', f);
	}
	fputs("}\n", f);
}

void print_conflicts_json(FILE *f, struct sb_pship *p, const struct sb_conflict_list *l)
{
	fputc('{', f);
	json_roots(f, p);
	fputs(",\"conflicts\":[", f);
	for (size_t i = 0; i < l->n; i++) {
		if (i)
			fputc(',', f);
		json_conflict(f, l->v[i].path, l->v[i].len, &l->v[i].c);
	}
	fputs("]}\n", f);
}
