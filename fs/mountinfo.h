#ifndef SBFS_MOUNTINFO_H
#define SBFS_MOUNTINFO_H

/* Whether mnt is a mount point (the last mount there, which is the one
 * seen): its device numbers, and whether it is an sbfs mount. */
int mounted_at(const char *mnt, unsigned *maj, unsigned *min, int *sbfs);
/* Raises the readahead of the mount at mnt to 4 MiB (best effort: root). */
void set_readahead(const char *mnt);

#endif
