/* core/core.c: ids, clocks and the non-cryptographic hash. */
#include "core/core.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The bytes an id may hold: [A-Za-z0-9._:-]; a table, as every id of every command
 * (three or four a transfer) is checked on the writer's path. */
#define ID_RANGE(from, to) [from ... to] = true
static const bool id_char_valid[256] = {ID_RANGE('a', 'z'), ID_RANGE('A', 'Z'), ID_RANGE('0', '9'),
                                        ['.'] = true, ['_'] = true, [':'] = true, ['-'] = true};

bool pc_id_valid(const char *id) {
    if (id == NULL || id[0] == '\0') return false;
    for (size_t i = 0; i <= PC_ID_BYTES_MAX; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c == '\0') return true;
        if (!id_char_valid[c]) return false;
    }
    return false; /* longer than PC_ID_BYTES_MAX */
}

bool pc_id_copy(char dst[PC_ID_SIZE], const char *id) {
    if (!pc_id_valid(id)) {
        dst[0] = '\0';
        return false;
    }
    size_t bytes = strlen(id);
    memcpy(dst, id, bytes + 1);
    return true;
}

bool pc_id_payments_chart(const char *id) {
    static const char *const prefixes[] = {"mer:", "chn:", "sys:", "wal:"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
        if (strncmp(id, prefixes[i], 4) == 0) return true;
    }
    return false;
}

uint64_t pc_wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t pc_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct timespec pc_realtime_after_ms(uint64_t ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(ms / 1000);
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    return until;
}

uint32_t pc_test_hold_ms(int32_t *cache, const char *env_name, uint32_t max_ms) {
    int32_t value = __atomic_load_n(cache, __ATOMIC_RELAXED);
    if (value < 0) {
        const char *text = getenv(env_name);
        unsigned long parsed = text != NULL ? strtoul(text, NULL, 10) : 0;
        uint32_t cap_ms = max_ms < INT32_MAX ? max_ms : INT32_MAX;
        value = (int32_t)(parsed < cap_ms ? parsed : cap_ms);
        __atomic_store_n(cache, value, __ATOMIC_RELAXED);
    }
    return (uint32_t)value;
}

bool pc_test_hold_sleep(uint32_t ms, uint32_t step_ms, bool (*go_on)(void *ctx), void *ctx) {
    if (step_ms == 0) step_ms = 1;
    for (uint32_t waited_ms = 0; waited_ms < ms; waited_ms += step_ms) {
        if (go_on != NULL && !go_on(ctx)) return false;
        uint32_t nap_ms = ms - waited_ms < step_ms ? ms - waited_ms : step_ms;
        struct timespec pause = {.tv_sec = nap_ms / 1000, .tv_nsec = (long)(nap_ms % 1000) * 1000000L};
        while (nanosleep(&pause, &pause) != 0) {
        }
    }
    return true;
}

/* FNV-1a over 8-byte words, then a murmur finalizer: fast and well mixed for
 * short ids. */
uint64_t pc_hash64(const void *bytes, size_t byte_count) {
    const unsigned char *p = bytes;
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)byte_count;
    while (byte_count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        h = (h ^ word) * 0x100000001b3ull;
        h ^= h >> 29;
        p += 8;
        byte_count -= 8;
    }
    while (byte_count > 0) {
        h = (h ^ *p++) * 0x100000001b3ull;
        byte_count--;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

char *pc_strdup(const char *s) {
    if (s == NULL) return NULL;
    size_t bytes = strlen(s) + 1;
    char *copy = malloc(bytes);
    if (copy != NULL) memcpy(copy, s, bytes);
    return copy;
}

/* The magnitude's digits, after a '-' when 'negative'. Two digits a step (the texts
 * of payments carry many 19-digit nanosecond times). */
static size_t decimal_text(char out[PC_INT_TEXT_SIZE], uint64_t magnitude, bool negative) {
    static const char pairs[201] = "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
                                   "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
                                   "8081828384858687888990919293949596979899";
    char digits[PC_INT_TEXT_SIZE];
    char *end = digits + sizeof digits, *at = end;
    while (magnitude >= 100) {
        unsigned pair = (unsigned)(magnitude % 100) * 2;
        magnitude /= 100;
        *--at = pairs[pair + 1];
        *--at = pairs[pair];
    }
    if (magnitude >= 10) {
        *--at = pairs[magnitude * 2 + 1];
        *--at = pairs[magnitude * 2];
    } else {
        *--at = (char)('0' + magnitude);
    }
    if (negative) *--at = '-';
    size_t bytes = (size_t)(end - at);
    memcpy(out, at, bytes);
    out[bytes] = '\0';
    return bytes;
}

size_t pc_u64_text(char out[PC_INT_TEXT_SIZE], uint64_t value) { return decimal_text(out, value, false); }

size_t pc_i64_text(char out[PC_INT_TEXT_SIZE], int64_t value) {
    return decimal_text(out, value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value, value < 0);
}

size_t pc_u64_hex(char out[PC_HEX_TEXT_SIZE], uint64_t value, unsigned digits_min) {
    static const char hex[] = "0123456789abcdef";
    PC_ASSERT(digits_min >= 1 && digits_min <= 16);
    unsigned digits = 1;
    while (digits < 16 && (value >> (4 * digits)) != 0) digits++;
    if (digits < digits_min) digits = digits_min;
    for (unsigned i = 0; i < digits; i++) out[digits - 1 - i] = hex[(value >> (4 * i)) & 0xf];
    out[digits] = '\0';
    return digits;
}

size_t pc_str_join(char *dst, size_t dst_bytes, const char *const *parts, size_t part_count) {
    PC_ASSERT(dst_bytes > 0);
    size_t total = 0, at = 0;
    for (size_t i = 0; i < part_count; i++) {
        size_t bytes = strlen(parts[i]);
        size_t fits = at + bytes < dst_bytes ? bytes : dst_bytes - 1 - at;
        memcpy(dst + at, parts[i], fits);
        at += fits;
        total += bytes;
    }
    dst[at] = '\0';
    return total;
}

/* ---- actions deferred to the end of a batch (one thread's) ---- */

static _Thread_local struct {
    uint32_t depth; /* > 0: a batch is open */
    uint32_t count;
    void (*fn[PC_BATCH_ACTIONS_MAX])(void *arg);
    void *arg[PC_BATCH_ACTIONS_MAX];
} batch;

void pc_batch_begin(void) { batch.depth++; }

void pc_batch_end(void) {
    PC_ASSERT(batch.depth > 0);
    if (--batch.depth > 0) return;
    /* taken out first: an action may open a batch of its own */
    uint32_t count = batch.count;
    void (*fn[PC_BATCH_ACTIONS_MAX])(void *arg);
    void *arg[PC_BATCH_ACTIONS_MAX];
    memcpy(fn, batch.fn, count * sizeof fn[0]);
    memcpy(arg, batch.arg, count * sizeof arg[0]);
    batch.count = 0;
    for (uint32_t i = 0; i < count; i++) fn[i](arg[i]);
}

bool pc_batch_defer(void (*fn)(void *arg), void *arg) {
    if (batch.depth == 0 || batch.count == PC_BATCH_ACTIONS_MAX) return false;
    batch.fn[batch.count] = fn;
    batch.arg[batch.count] = arg;
    batch.count++;
    return true;
}

const char *pc_allocator_name(void) {
    Dl_info info;
    void *malloc_at = dlsym(RTLD_DEFAULT, "malloc"); /* the definition every library's calls bind to */
    if (malloc_at == NULL || dladdr(malloc_at, &info) == 0 || info.dli_fname == NULL) return "other";
    static const struct {
        const char *file_part, *name;
    } known[] = {{"tcmalloc", "tcmalloc"}, {"libasan", "asan"}, {"libtsan", "tsan"}, {"libc.so", "glibc"}};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if (strstr(info.dli_fname, known[i].file_part) != NULL) return known[i].name;
    }
    return "other";
}
