/* core/keyfile.c: secret files beside a database and the keyed hash. A key file is
 * the key's bytes as lower-case hex and a newline; a secret one is a regular file
 * readable by its owner alone (mode 0600), written atomically so that a crash never
 * leaves half a key. Secrets are wiped from the stack with sodium_memzero. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/core.h"

static_assert(PC_HASH_KEY_BYTES == crypto_shorthash_KEYBYTES, "pc_hash_key_t holds a SipHash key");
static_assert(crypto_shorthash_BYTES == sizeof(uint64_t), "SipHash-2-4 gives 64 bits");

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_init_result;

static void sodium_start(void) { sodium_init_result = sodium_init(); }

void pc_sodium_ready(void) {
    PC_ASSERT(pthread_once(&sodium_once, sodium_start) == 0);
    PC_ASSERT(sodium_init_result >= 0);
}

/* Bumped in a forked child: every pool filled before the fork is stale there. */
static _Atomic uint64_t random_fork_generation = 1;
static pthread_once_t random_atfork_once = PTHREAD_ONCE_INIT;

static void random_after_fork_child(void) { atomic_fetch_add(&random_fork_generation, 1); }

static void random_atfork_register(void) {
    PC_ASSERT(pthread_atfork(NULL, NULL, random_after_fork_child) == 0);
}

/* A thread's generator: ChaCha20 under a key of its own, drawn from the kernel once
 * (and again every PC_RANDOM_RESEED_FILLS pools, and in a forked child). Each fill
 * makes 32 + PC_RANDOM_POOL_BYTES bytes of keystream under the key: the first 32 are
 * the next key (the old one is gone: what was handed out cannot be made again from
 * the state, fast key erasure), the rest the pool. One key makes one keystream, so
 * the nonce stays zero. */
#define RANDOM_KEY_BYTES crypto_stream_chacha20_ietf_KEYBYTES
static _Thread_local uint64_t random_kernel_draws;

uint64_t pc_random_kernel_draws(void) { return random_kernel_draws; }

static void random_fill(uint8_t key[RANDOM_KEY_BYTES], uint8_t *pool, uint32_t *fills, bool reseed) {
    if (reseed || *fills % PC_RANDOM_RESEED_FILLS == 0) {
        pc_sodium_ready();
        randombytes_buf(key, RANDOM_KEY_BYTES);
        random_kernel_draws++;
    }
    (*fills)++;
    static const uint8_t nonce[crypto_stream_chacha20_ietf_NONCEBYTES];
    uint8_t block[RANDOM_KEY_BYTES + PC_RANDOM_POOL_BYTES];
    crypto_stream_chacha20_ietf(block, sizeof block, nonce, key);
    memcpy(key, block, RANDOM_KEY_BYTES);
    memcpy(pool, block + RANDOM_KEY_BYTES, PC_RANDOM_POOL_BYTES);
    sodium_memzero(block, sizeof block);
}

void pc_random_pooled(void *out, size_t byte_count) {
    static _Thread_local uint8_t pool[PC_RANDOM_POOL_BYTES];
    static _Thread_local uint8_t key[RANDOM_KEY_BYTES];
    static _Thread_local size_t used = sizeof pool;
    static _Thread_local uint32_t fills;
    static _Thread_local uint64_t generation; /* of the key; 0 = never drawn */
    PC_ASSERT(byte_count <= sizeof pool);
    uint64_t now_generation = atomic_load_explicit(&random_fork_generation, memory_order_relaxed);
    if (generation != now_generation || used + byte_count > sizeof pool) {
        PC_ASSERT(pthread_once(&random_atfork_once, random_atfork_register) == 0);
        random_fill(key, pool, &fills, generation != now_generation);
        used = 0;
        generation = now_generation;
    }
    memcpy(out, pool + used, byte_count);
    sodium_memzero(pool + used, byte_count);
    used += byte_count;
}

void pc_hash_key_random(pc_hash_key_t *out) {
    pc_sodium_ready();
    crypto_shorthash_keygen(out->bytes);
}

uint64_t pc_hash_keyed(const pc_hash_key_t *key, const void *bytes, size_t byte_count) {
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, bytes, byte_count, key->bytes);
    uint64_t hash;
    memcpy(&hash, out, sizeof hash);
    return hash;
}

pc_status pc_key_file_read(const char *path, bool secret, uint8_t *out, size_t byte_count) {
    PC_ASSERT(byte_count > 0 && byte_count <= PC_KEY_FILE_BYTES_MAX);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return errno == ENOENT ? PC_NOT_FOUND : PC_KEY_FILE_INVALID;
    struct stat st;
    char text[2 * PC_KEY_FILE_BYTES_MAX + 2];
    ssize_t got = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && !(secret && (st.st_mode & 077) != 0)) {
        got = read(fd, text, sizeof text);
    }
    close(fd);
    size_t hex_chars = 2 * byte_count, bin_bytes = 0;
    pc_status status = PC_KEY_FILE_INVALID;
    if (got == (ssize_t)hex_chars + 1 && text[hex_chars] == '\n' &&
        sodium_hex2bin(out, byte_count, text, hex_chars, NULL, &bin_bytes, NULL) == 0 &&
        bin_bytes == byte_count) {
        status = PC_OK;
    }
    sodium_memzero(text, sizeof text);
    return status;
}

static pc_status write_all_sync(int fd, const char *bytes, size_t byte_count) {
    size_t done = 0;
    while (done < byte_count) {
        ssize_t n = write(fd, bytes + done, byte_count - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return PC_IO;
        done += (size_t)n;
    }
    return fsync(fd) == 0 ? PC_OK : PC_IO;
}

/* Makes a rename durable: fsync of the directory that holds 'path'. */
static pc_status directory_sync(const char *path) {
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(dir, sizeof dir, ".");
    } else if (slash == path) {
        snprintf(dir, sizeof dir, "/");
    } else {
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return PC_IO;
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? PC_OK : PC_IO;
}

pc_status pc_key_file_write(const char *path, const uint8_t *bytes, size_t byte_count, unsigned mode) {
    PC_ASSERT(byte_count > 0 && byte_count <= PC_KEY_FILE_BYTES_MAX);
    char tmp_path[PATH_MAX];
    char text[2 * PC_KEY_FILE_BYTES_MAX + 2];
    if (snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path) >= (int)sizeof tmp_path) return PC_INVALID_ARGUMENT;
    sodium_bin2hex(text, sizeof text, bytes, byte_count);
    size_t text_bytes = 2 * byte_count + 1;
    text[text_bytes - 1] = '\n';
    int fd = open(tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);
    pc_status status = PC_IO;
    if (fd >= 0) {
        status = fchmod(fd, (mode_t)mode) == 0 ? write_all_sync(fd, text, text_bytes) : PC_IO;
        if (close(fd) != 0) status = PC_IO;
        if (status == PC_OK && rename(tmp_path, path) != 0) status = PC_IO;
        if (status != PC_OK) unlink(tmp_path);
    }
    sodium_memzero(text, sizeof text);
    return status == PC_OK ? directory_sync(path) : status;
}
