/*
 * sbfs --version: sbfs's own version and those of the libraries it runs
 * with, as loaded (not as built), since a bug report needs the ones in use.
 */
#define FUSE_USE_VERSION 35
#include <fuse_lowlevel.h>
#include <lmdb.h>
#include <openssl/crypto.h>

#include "cli.h"

void cli_version(FILE *f)
{
	fprintf(f, "sbfs %s\nlibfuse %s\n%s\n%s\n", SBFS_VERSION, fuse_pkgversion(),
		mdb_version(NULL, NULL, NULL), OpenSSL_version(OPENSSL_VERSION));
}
