/* core/core.h: small helpers every subsystem shares: ids, clocks, hashing. */
#ifndef PAYCORE_CORE_H
#define PAYCORE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "paycore/limits.h"
#include "paycore/status.h"

/* True when 'id' is 1..PC_ID_BYTES_MAX characters of [A-Za-z0-9._:-]. */
bool pc_id_valid(const char *id);
/* Copies a valid id into a PC_ID_SIZE buffer; false (dst = "") when invalid. */
bool pc_id_copy(char dst[PC_ID_SIZE], const char *id);
/* snprintf(dst, dst_bytes, "%s", src) without the format machinery (~20x cheaper on
 * the hot paths): at most dst_bytes - 1 bytes, always terminated; dst_bytes > 0. */
static inline void pc_str_copy(char *dst, size_t dst_bytes, const char *src) {
    size_t n = 0;
    while (n + 1 < dst_bytes && src[n] != '\0') n++;
    memmove(dst, src, n);
    dst[n] = '\0';
}

/* True when 'id' names an account of the payments' chart (docs/accounting.md: "mer:",
 * "chn:", "sys:", "wal:"). Only paycore moves money on them: a merchant key neither
 * creates one nor names one in a transfer through the ledger API (it reads its own). */
bool pc_id_payments_chart(const char *id);

/* The malloc this process runs on, asked of the dynamic linker (what runs, not what the
 * build asked for): "tcmalloc" (the server's, CMake's PC_ALLOCATOR), "glibc", "asan" or
 * "tsan" (a sanitizer's runtime), else "other". */
const char *pc_allocator_name(void);

/* Wall-clock nanoseconds since the Unix epoch. */
uint64_t pc_wall_ns(void);
/* Monotonic nanoseconds (for durations, never stored). */
uint64_t pc_mono_ns(void);
/* The CLOCK_REALTIME time 'ms' milliseconds from now: pthread_cond_timedwait's deadline. */
struct timespec pc_realtime_after_ms(uint64_t ms);

/* A hold a test asks for through the environment ('env_name'=<ms>, 0 or unset: none),
 * capped at 'max_ms', read once into '*cache' (initialised to -1 by its owner; a
 * benign race: every reader parses the same text). Tests hold a step this way so that
 * a stop surely lands while it runs. */
uint32_t pc_test_hold_ms(int32_t *cache, const char *env_name, uint32_t max_ms);
/* Sleeps 'ms' in steps of 'step_ms', asking 'go_on' (NULL: always) before each step;
 * false when it said stop. */
bool pc_test_hold_sleep(uint32_t ms, uint32_t step_ms, bool (*go_on)(void *ctx), void *ctx);

/* A fast 64-bit hash of bytes. Unkeyed and invertible: anyone can build inputs
 * with equal hashes, so never use it on what a client chooses (ids); use
 * pc_hash_keyed there. */
uint64_t pc_hash64(const void *bytes, size_t byte_count);

/* Initialises libsodium (its CSPRNG above all) once per process; any thread, any
 * number of times. */
void pc_sodium_ready(void);

/* Random bytes (nonces, ids, attempt keys) from a per-thread CSPRNG: ChaCha20 keyed
 * from the kernel (libsodium's randombytes) once per PC_RANDOM_RESEED_FILLS pools,
 * rekeyed from its own output at every pool (fast key erasure: past output cannot be
 * recomputed from the state). Each byte is handed out once, then wiped; a forked child
 * draws a new key (it never hands out its parent's bytes: nonces stay unique). At most
 * PC_RANDOM_POOL_BYTES per call. */
#define PC_RANDOM_POOL_BYTES 256
#define PC_RANDOM_RESEED_FILLS 4096 /* 1 MiB of output per kernel draw */
void pc_random_pooled(void *out, size_t byte_count);
/* How many times this thread's generator drew a key from the kernel. */
uint64_t pc_random_kernel_draws(void);

/* A secret key for pc_hash_keyed. Without it, no one can choose inputs that collide
 * (hash flooding of tables, crafted collisions in indexes). */
#define PC_HASH_KEY_BYTES 16
typedef struct {
    uint8_t bytes[PC_HASH_KEY_BYTES];
} pc_hash_key_t;
/* A fresh random key (libsodium's CSPRNG). */
void pc_hash_key_random(pc_hash_key_t *out);
/* SipHash-2-4 of bytes under 'key' (libsodium's crypto_shorthash). */
uint64_t pc_hash_keyed(const pc_hash_key_t *key, const void *bytes, size_t byte_count);

/* Secret files beside a database (the journal signing seed, the id hash key): the
 * bytes as lower-case hex and a newline. Reading: PC_NOT_FOUND when the file is
 * missing; PC_KEY_FILE_INVALID when it is not a regular file of exactly that form,
 * or ('secret') readable by anyone but its owner. */
PC_MUST_USE pc_status pc_key_file_read(const char *path, bool secret, uint8_t *out, size_t byte_count);
/* Writes atomically (temporary file, fsync, rename, fsync of the directory), with
 * 'mode' (0600 for secrets). */
PC_MUST_USE pc_status pc_key_file_write(const char *path, const uint8_t *bytes, size_t byte_count,
                                        unsigned mode);

/* Duplicates a string with malloc; NULL stays NULL. */
char *pc_strdup(const char *s);

/* Integers in decimal, as "%" PRIu64 and "%" PRId64 write them, without the format
 * machinery (a snprintf costs ~600-1000 instructions on the hot paths): into 'out',
 * NUL-terminated; the length is returned. */
#define PC_INT_TEXT_SIZE 21 /* "-9223372036854775808", or 20 digits, and a NUL */
size_t pc_u64_text(char out[PC_INT_TEXT_SIZE], uint64_t value);
size_t pc_i64_text(char out[PC_INT_TEXT_SIZE], int64_t value);
/* In lower-case hex with at least 'digits_min' digits (1..16), as "%0*" PRIx64 writes it. */
#define PC_HEX_TEXT_SIZE 17
size_t pc_u64_hex(char out[PC_HEX_TEXT_SIZE], uint64_t value, unsigned digits_min);
/* A hex digit's value, 0..15 (either case), or -1 for a byte that is none. */
static inline int pc_hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
/* The texts 'parts' one after another into 'dst', as snprintf(dst, dst_bytes,
 * "%s%s...") would: at most dst_bytes - 1 bytes, always terminated (dst_bytes > 0);
 * returns the whole length (>= dst_bytes: cut). */
size_t pc_str_join(char *dst, size_t dst_bytes, const char *const *parts, size_t part_count);


/* Actions deferred to the end of a thread's batch. A thread that runs many small jobs
 * in a row (a payments stage thread's take of flows) opens a batch around them; an
 * action deferred inside it runs at the batch's end, in order, on the same thread. So
 * the answers of a batch reach the HTTP threads together: one wake-up of each for
 * them all, not one per answer. Outside a batch, or with PC_BATCH_ACTIONS_MAX already
 * deferred, pc_batch_defer returns false and the caller acts at once. Batches nest:
 * the outermost end runs them. */
#define PC_BATCH_ACTIONS_MAX 32
void pc_batch_begin(void);
void pc_batch_end(void);
bool pc_batch_defer(void (*fn)(void *arg), void *arg);

#endif
