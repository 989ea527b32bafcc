#ifndef SBFS_ITAB_H
#define SBFS_ITAB_H

/*
 * The mount's inode table, as libfuse's low-level API wants one: the
 * kernel's node ids, each naming one file of the view, with the names the
 * kernel was told (parent node and name) and its lookup count.
 *
 * A node is keyed by the view's inode number (what getattr gives), so the
 * names of a hard-linked file are one node and one kernel inode: a change
 * through one name shows through every other at once. A node whose last
 * name was unlinked lives on while the kernel holds it; its open handles,
 * kept here, answer for it (fstat, fchmod of an unlinked open file).
 *
 * Node ids: FUSE_ROOT_ID for the root, else the node's address; an id is
 * only ever one the kernel was given and has not forgotten.
 *
 * Thread-safe: one mutex guards the whole table, held only inside these
 * calls and never across a call into the mirror, so it has no place in
 * the mirror's lock order (engine/mirror_int.h): a reconcile holding the
 * mirror exclusively drops the kernel's caches through itab_find.
 */
#include <stdint.h>
#include <sys/types.h>

struct itab;
struct sb_file;

int itab_new(struct itab **out);
/* NULL-safe. */
void itab_free(struct itab *t);

/*
 * The view path of node id (the root's is ""), with "/name" appended when
 * name is not NULL (none for the root), in *out (malloc'd): 0, -ESTALE
 * for an id not known, -ENOENT for a node with no name left, -ENOMEM,
 * -ENAMETOOLONG.
 */
int itab_path(struct itab *t, uint64_t id, const char *name, char **out);

/*
 * The kernel is about to be told that parent/name is the file with view
 * inode vino and type (S_IFMT bits): one lookup more of its node, whose id
 * goes to *id. 0, or -ENOMEM.
 *
 * A node of the same vino known under other names is that file's only if
 * it is hard-linked and its other name still leads to vino: inode numbers
 * are used again once a file is deleted, and a node of a deleted file
 * taken for the new one would serve the old name's content. So how:
 *   ITAB_NEW   such a node is not taken (one name, or a directory);
 *   ITAB_ASK   returns 1 with one of its names in *other (malloc'd),
 *              nothing done: ask again with the answer;
 *   ITAB_LINK  it is taken (its other name was found to be vino).
 * A node already known under parent/name is taken in every case.
 */
enum { ITAB_NEW, ITAB_ASK, ITAB_LINK };
int itab_enter(struct itab *t, uint64_t parent, const char *name, uint64_t vino, mode_t type,
	       int how, uint64_t *id, char **other);
/* The kernel's FORGET: n lookups fewer. */
void itab_forget(struct itab *t, uint64_t id, uint64_t n);
/* parent/name is gone (unlink, rmdir). */
void itab_unlink(struct itab *t, uint64_t parent, const char *name);
/* A rename was done: the file named p1/n1 is now p2/n2 (and with exchange,
 * the one named p2/n2 is p1/n1). */
void itab_rename(struct itab *t, uint64_t p1, const char *n1, uint64_t p2, const char *n2,
		 int exchange);
/* The node ids of view path (relative, "" the root) and of its parent
 * directory: 0 for what the kernel was not told of. */
void itab_find(struct itab *t, const char *path, uint64_t *parent, uint64_t *id);

/* f was opened on node id (-ENOMEM: not kept, only a later fstat after an
 * unlink then fails); itab_closed before it is released. */
int itab_opened(struct itab *t, uint64_t id, struct sb_file *f);
void itab_closed(struct itab *t, uint64_t id, struct sb_file *f);
/* fn(f, arg) with an open handle of node id, which stays open until fn
 * returns: its result, or -ENOENT when the node has none. */
int itab_with_file(struct itab *t, uint64_t id, int (*fn)(struct sb_file *f, void *arg),
		   void *arg);

#endif
