#ifndef SBFS_LINKS_H
#define SBFS_LINKS_H

/*
 * The kernel caches attributes per name, and libfuse's path-based API gives
 * each name of a hard-linked file a node of its own: a link or an unlink
 * through one name leaves the link count cached under the others stale
 * for the attribute timeout. This module remembers the names under which
 * multiply linked files were shown, and when a count changes has the
 * kernel's attributes of the other names dropped before the request that
 * changed it is answered.
 */
#include <stdint.h>
#include <sys/stat.h>

struct fuse;
struct links;

int links_new(struct fuse *f, struct links **out);
/* NULL-safe. */
void links_free(struct links *l);
/* A name (view path, with its leading '/') was shown with these attributes. */
void links_seen(struct links *l, const char *path, const struct stat *st);
/* The inode number last shown under path, if it was multiply linked; else 0. */
uint64_t links_ino(struct links *l, const char *path);
/* ino's link count changed through name `by` (gone: `by` was unlinked):
 * refresh its other names. */
void links_changed(struct links *l, uint64_t ino, const char *by, int gone);

#endif
