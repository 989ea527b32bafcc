/*
 * SHA-256 through OpenSSL's EVP interface (the low-level SHA256_* calls are
 * deprecated in OpenSSL 3).
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "internal.h"

/* Large enough that hashing a big file costs few syscalls; on the heap
 * because engine code may run on small thread stacks. */
#define SB_HASH_BUFSZ (256 * 1024)

struct sb_sha {
	EVP_MD_CTX *ctx;
	/* 0 once a digest has been finalised and re-initialising failed:
	 * EVP forbids updating a finalised context, so we must re-init first. */
	int ready;
};

int sb_sha_new(struct sb_sha **out)
{
	struct sb_sha *h = NULL;
	int ret;

	*out = NULL;
	h = calloc(1, sizeof(*h));
	if (!h) {
		ret = -ENOMEM;
		goto out;
	}
	h->ctx = EVP_MD_CTX_new();
	if (!h->ctx) {
		ret = -ENOMEM;
		goto out;
	}
	ret = sb_sha_reset(h);
	if (ret < 0)
		goto out;
	*out = h;
	h = NULL;
out:
	sb_sha_free(h);
	return ret;
}

void sb_sha_free(struct sb_sha *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->ctx);
	free(h);
}

int sb_sha_reset(struct sb_sha *h)
{
	int ret = 0;

	h->ready = 0;
	if (EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
		ret = -EIO;
		goto out;
	}
	h->ready = 1;
out:
	return ret;
}

int sb_sha_update(struct sb_sha *h, const void *buf, size_t len)
{
	int ret = 0;

	if (!h->ready) {
		ret = sb_sha_reset(h);
		if (ret < 0)
			goto out;
	}
	if (len && EVP_DigestUpdate(h->ctx, buf, len) != 1)
		ret = -EIO;
out:
	return ret;
}

/* Leaves h ready for a new digest, so callers hashing many files in a row
 * need not call sb_sha_reset between them. */
int sb_sha_final(struct sb_sha *h, uint8_t out[SB_SHA_LEN])
{
	unsigned int n = 0;
	int ret = 0;

	if (!h->ready) {
		ret = sb_sha_reset(h);
		if (ret < 0)
			goto out;
	}
	h->ready = 0;
	if (EVP_DigestFinal_ex(h->ctx, out, &n) != 1 || n != SB_SHA_LEN) {
		ret = -EIO;
		goto out;
	}
	/* The digest is already good: a failed re-init only matters to the
	 * next update, which retries it. */
	(void)sb_sha_reset(h);
out:
	return ret;
}

int sb_sha_peek(struct sb_sha *h, uint8_t out[SB_SHA_LEN])
{
	unsigned int n = 0;
	int ret = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	if (!c)
		return -ENOMEM;
	if (!h->ready && (ret = sb_sha_reset(h)) < 0)
		goto out;
	if (EVP_MD_CTX_copy_ex(c, h->ctx) != 1 || EVP_DigestFinal_ex(c, out, &n) != 1 ||
	    n != SB_SHA_LEN)
		ret = -EIO;
out:
	EVP_MD_CTX_free(c);
	return ret;
}

int sb_hash_fd(int fd, uint8_t out[SB_SHA_LEN], uint64_t *nbytes)
{
	struct sb_sha *h = NULL;
	unsigned char *buf = NULL;
	uint64_t total = 0;
	struct stat st;
	off_t pos;
	ssize_t n;
	int ret;

	buf = malloc(SB_HASH_BUFSZ);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	ret = sb_sha_new(&h);
	if (ret < 0)
		goto out;
	/* A file's holes are hashed as zeros without reading them; the rest
	 * (past the size it had, should it grow; a pipe) is read to its end. */
	pos = lseek(fd, 0, SEEK_CUR);
	if (pos >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && pos < st.st_size) {
		ret = sb_sparse_copy(fd, -1, pos, st.st_size, h, buf, SB_HASH_BUFSZ, &total);
		if (ret < 0)
			goto out;
		if (lseek(fd, pos + (off_t)total, SEEK_SET) < 0) {
			ret = -errno;
			goto out;
		}
	}
	for (;;) {
		n = read(fd, buf, SB_HASH_BUFSZ);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			goto out;
		}
		if (n == 0)
			break;
		ret = sb_sha_update(h, buf, (size_t)n);
		if (ret < 0)
			goto out;
		total += (uint64_t)n;
	}
	ret = sb_sha_final(h, out);
	if (ret < 0)
		goto out;
	if (nbytes)
		*nbytes = total;
out:
	sb_sha_free(h);
	free(buf);
	return ret;
}

int sb_hash_buf(const void *buf, size_t len, uint8_t out[SB_SHA_LEN])
{
	unsigned int n = 0;
	int ret = 0;

	if (EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL) != 1 ||
	    n != SB_SHA_LEN) {
		ret = -EIO;
		goto out;
	}
out:
	return ret;
}

void sb_sha_hex(const uint8_t sha[SB_SHA_LEN], char out[2 * SB_SHA_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < SB_SHA_LEN; i++) {
		out[2 * i] = digits[sha[i] >> 4];
		out[2 * i + 1] = digits[sha[i] & 0xf];
	}
	out[2 * SB_SHA_LEN] = '\0';
}
