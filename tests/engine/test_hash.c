/* SHA-256 helpers: known vectors, fd hashing, incremental use, hex. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static void hex_of(const uint8_t sha[SB_SHA_LEN], char out[2 * SB_SHA_LEN + 1])
{
	sb_sha_hex(sha, out);
}

static void expect_buf(const char *s, size_t len, const char *want)
{
	uint8_t sha[SB_SHA_LEN];
	char hex[2 * SB_SHA_LEN + 1];

	cr_assert_eq(sb_hash_buf(s, len, sha), 0);
	hex_of(sha, hex);
	cr_assert_str_eq(hex, want);
}

Test(hash, vectors)
{
	static const char two_block[] =
		"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";

	expect_buf("", 0,
		   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	expect_buf(NULL, 0,
		   "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	expect_buf("abc", 3,
		   "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	expect_buf(two_block, strlen(two_block),
		   "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

Test(hash, million_a_incremental)
{
	struct sb_sha *h = NULL;
	uint8_t sha[SB_SHA_LEN];
	char hex[2 * SB_SHA_LEN + 1], chunk[1000];
	int i;

	memset(chunk, 'a', sizeof(chunk));
	cr_assert_eq(sb_sha_new(&h), 0);
	for (i = 0; i < 1000; i++)
		cr_assert_eq(sb_sha_update(h, chunk, sizeof(chunk)), 0);
	cr_assert_eq(sb_sha_final(h, sha), 0);
	hex_of(sha, hex);
	cr_assert_str_eq(hex,
			 "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	sb_sha_free(h);
}

static unsigned char *random_bytes(size_t len, unsigned seed)
{
	unsigned char *p = malloc(len);
	uint32_t x = seed ? seed : 1;
	size_t i;

	cr_assert_not_null(p);
	for (i = 0; i < len; i++) {
		/* xorshift: reproducible, no libc state */
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (unsigned char)x;
	}
	return p;
}

Test(hash, incremental_equals_oneshot)
{
	const size_t len = 100003;
	unsigned char *data = random_bytes(len, 7);
	uint8_t one[SB_SHA_LEN], inc[SB_SHA_LEN], again[SB_SHA_LEN];
	struct sb_sha *h = NULL;
	size_t off = 0, step = 1;

	cr_assert_eq(sb_hash_buf(data, len, one), 0);
	cr_assert_eq(sb_sha_new(&h), 0);
	/* Uneven chunk sizes cross SHA-256's 64-byte blocks every way. */
	while (off < len) {
		size_t n = step < len - off ? step : len - off;

		cr_assert_eq(sb_sha_update(h, data + off, n), 0);
		off += n;
		step = step * 3 + 1;
		if (step > 70000)
			step = 5;
	}
	cr_assert_eq(sb_sha_update(h, data, 0), 0);
	cr_assert_eq(sb_sha_final(h, inc), 0);
	cr_assert_arr_eq(inc, one, SB_SHA_LEN);

	/* After final the object is ready for another digest... */
	cr_assert_eq(sb_sha_update(h, data, len), 0);
	cr_assert_eq(sb_sha_final(h, again), 0);
	cr_assert_arr_eq(again, one, SB_SHA_LEN);

	/* ...and reset throws away a half-done one. */
	cr_assert_eq(sb_sha_update(h, "junk", 4), 0);
	cr_assert_eq(sb_sha_reset(h), 0);
	cr_assert_eq(sb_sha_update(h, data, len), 0);
	cr_assert_eq(sb_sha_final(h, again), 0);
	cr_assert_arr_eq(again, one, SB_SHA_LEN);

	sb_sha_free(h);
	sb_sha_free(NULL);
	free(data);
}

/* A new empty file f in a new directory dir, open read-write. */
static int temp_file(char *dir, char path[64])
{
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, 64, "%s/f", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	return fd;
}

static void temp_done(int fd, const char *dir, const char *path)
{
	close(fd);
	cr_assert_eq(unlink(path), 0);
	cr_assert_eq(rmdir(dir), 0);
}

Test(hash, fd_equals_buf)
{
	char dir[] = "/tmp/sbfs-test-hash-XXXXXX", path[64];
	const size_t len = 3 * 1024 * 1024 + 17;
	unsigned char *data = random_bytes(len, 42);
	uint8_t a[SB_SHA_LEN], b[SB_SHA_LEN];
	uint64_t n = 0;
	int fd;

	fd = temp_file(dir, path);
	cr_assert_eq(write(fd, data, len), (ssize_t)len);

	cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
	cr_assert_eq(sb_hash_fd(fd, a, &n), 0);
	cr_assert_eq(n, len);
	cr_assert_eq(sb_hash_buf(data, len, b), 0);
	cr_assert_arr_eq(a, b, SB_SHA_LEN);

	/* From the current offset, not from 0; nbytes may be NULL. */
	cr_assert_eq(lseek(fd, 1000, SEEK_SET), 1000);
	cr_assert_eq(sb_hash_fd(fd, a, NULL), 0);
	cr_assert_eq(sb_hash_buf(data + 1000, len - 1000, b), 0);
	cr_assert_arr_eq(a, b, SB_SHA_LEN);

	/* At EOF: the empty digest. */
	cr_assert_eq(sb_hash_fd(fd, a, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(sb_hash_buf("", 0, b), 0);
	cr_assert_arr_eq(a, b, SB_SHA_LEN);

	temp_done(fd, dir, path);
	free(data);
}

/* Holes hash as the zeros they read as, from any offset, data or hole. */
Test(hash, fd_sparse_file)
{
	char dir[] = "/tmp/sbfs-test-hash-XXXXXX", path[64];
	const size_t len = 64 * 1024 * 1024 + 17, block = 100000;
	const size_t at[] = { 0, 5 * 1024 * 1024 + 3, len - 4 * 1024 * 1024 };
	unsigned char *data = calloc(1, len), *bytes = random_bytes(block, 9);
	uint8_t a[SB_SHA_LEN], b[SB_SHA_LEN];
	uint64_t n = 0;
	int fd;

	fd = temp_file(dir, path);
	for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++) {
		memcpy(data + at[i], bytes, block);
		cr_assert_eq(pwrite(fd, bytes, block, at[i]), (ssize_t)block);
	}
	cr_assert_eq(ftruncate(fd, len), 0);

	const size_t from[] = { 0, 1000, 2 * 1024 * 1024, len - 1 };
	for (size_t i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
		cr_assert_eq(lseek(fd, from[i], SEEK_SET), (off_t)from[i]);
		cr_assert_eq(sb_hash_fd(fd, a, &n), 0);
		cr_assert_eq(n, len - from[i]);
		cr_assert_eq(sb_hash_buf(data + from[i], len - from[i], b), 0);
		cr_assert_arr_eq(a, b, SB_SHA_LEN, "from %zu", from[i]);
		cr_assert_eq(lseek(fd, 0, SEEK_CUR), (off_t)len, "the offset is left at the end");
	}

	temp_done(fd, dir, path);
	free(bytes);
	free(data);
}

Test(hash, fd_pipe)
{
	uint8_t a[SB_SHA_LEN], b[SB_SHA_LEN];
	uint64_t n = 0;
	int p[2];

	/* Short reads: a pipe hands data over in pieces. */
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(write(p[1], "abc", 3), 3);
	close(p[1]);
	cr_assert_eq(sb_hash_fd(p[0], a, &n), 0);
	close(p[0]);
	cr_assert_eq(n, 3);
	cr_assert_eq(sb_hash_buf("abc", 3, b), 0);
	cr_assert_arr_eq(a, b, SB_SHA_LEN);
}

Test(hash, fd_errors)
{
	uint8_t a[SB_SHA_LEN];
	char dir[] = "/tmp/sbfs-test-hash-XXXXXX";
	int fd;

	cr_assert_eq(sb_hash_fd(-1, a, NULL), -EBADF);
	cr_assert_not_null(mkdtemp(dir));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sb_hash_fd(fd, a, NULL), -EISDIR);
	close(fd);
	cr_assert_eq(rmdir(dir), 0);
}

Test(hash, hex_format)
{
	uint8_t sha[SB_SHA_LEN];
	char hex[2 * SB_SHA_LEN + 1];
	int i;

	for (i = 0; i < SB_SHA_LEN; i++)
		sha[i] = (uint8_t)(i * 8 + (i & 1 ? 0xf : 0));
	memset(hex, 'X', sizeof(hex));
	sb_sha_hex(sha, hex);
	cr_assert_eq(hex[64], '\0');
	cr_assert_str_eq(hex,
			 "00171027203730474057506760777087"
			 "809790a7a0b7b0c7c0d7d0e7e0f7f007");

	memset(sha, 0xff, sizeof(sha));
	sb_sha_hex(sha, hex);
	cr_assert_str_eq(hex,
			 "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff");
	memset(sha, 0, sizeof(sha));
	sb_sha_hex(sha, hex);
	cr_assert_str_eq(hex,
			 "0000000000000000000000000000000000000000000000000000000000000000");
}
