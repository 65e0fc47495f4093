/* store/shard_cursor.c: the opaque cursor of a list of accounts on a set of shards
 * (store_shard.h, docs/scaleout.md §6): where the next page starts (a shard and the
 * last account listed there) and the cut every page reads as of (each shard's journal
 * seq at the first page). A client gets it as "next_cursor" and hands it back as
 * "cursor"; it is bytes, keyed-hashed (BLAKE2b with the set's cursor key, over the
 * bytes and the key id of the caller it was issued to), base64url. So a cursor
 * altered, made up, issued to another key or for another list is refused
 * (list_cursor_invalid) before anything is read: it cannot make a list read as of a
 * point of its choosing or continue another caller's listing. */
#include <sodium.h>
#include <string.h>

#include "core/core.h"
#include "store/store_shard.h"

enum { CURSOR_VERSION = 1, CURSOR_TAG_BYTES = 16 };

/* version, kind, shard count, shard, id length, id, seq per shard, issued_ns, tag */
#define CURSOR_BYTES_MAX (5 + PC_ID_BYTES_MAX + 8 * SHARD_COUNT_MAX + 8 + CURSOR_TAG_BYTES)
static_assert(sodium_base64_ENCODED_LEN(CURSOR_BYTES_MAX, sodium_base64_VARIANT_URLSAFE_NO_PADDING) <=
                  STORE_CURSOR_TEXT_SIZE,
              "a cursor's text fits its buffer");

static void put_u64(uint8_t *out, uint64_t value) {
    for (int i = 0; i < 8; i++) out[i] = (uint8_t)(value >> (8 * i));
}

static uint64_t get_u64(const uint8_t *in) {
    uint64_t value = 0;
    for (int i = 0; i < 8; i++) value |= (uint64_t)in[i] << (8 * i);
    return value;
}

/* The tag of 'bytes' for the caller 'owner' (its key id; "" for none). */
static void cursor_tag(const uint8_t key[STORE_CURSOR_KEY_BYTES], const char *owner, const uint8_t *bytes,
                       size_t length, uint8_t tag[CURSOR_TAG_BYTES]) {
    crypto_generichash_state state;
    crypto_generichash_init(&state, key, STORE_CURSOR_KEY_BYTES, CURSOR_TAG_BYTES);
    crypto_generichash_update(&state, bytes, length);
    const char *who = owner != NULL ? owner : "";
    crypto_generichash_update(&state, (const uint8_t *)who, strlen(who) + 1);
    crypto_generichash_final(&state, tag, CURSOR_TAG_BYTES);
}

bool store_shard_cursor_encode(const uint8_t key[STORE_CURSOR_KEY_BYTES], const char *owner,
                               const store_shard_cursor_t *cursor, char out[STORE_CURSOR_TEXT_SIZE]) {
    uint8_t bytes[CURSOR_BYTES_MAX];
    size_t id_bytes = strlen(cursor->after);
    if (cursor->cut.count == 0 || cursor->cut.count > SHARD_COUNT_MAX || cursor->shard >= cursor->cut.count ||
        id_bytes == 0 || id_bytes > PC_ID_BYTES_MAX) {
        out[0] = '\0';
        return false;
    }
    size_t at = 0;
    bytes[at++] = CURSOR_VERSION;
    bytes[at++] = (uint8_t)cursor->kind;
    bytes[at++] = (uint8_t)cursor->cut.count;
    bytes[at++] = (uint8_t)cursor->shard;
    bytes[at++] = (uint8_t)id_bytes;
    memcpy(bytes + at, cursor->after, id_bytes);
    at += id_bytes;
    for (uint32_t i = 0; i < cursor->cut.count; i++, at += 8) put_u64(bytes + at, cursor->cut.seq[i]);
    put_u64(bytes + at, cursor->issued_ns);
    at += 8;
    cursor_tag(key, owner, bytes, at, bytes + at);
    at += CURSOR_TAG_BYTES;
    sodium_bin2base64(out, STORE_CURSOR_TEXT_SIZE, bytes, at, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    return true;
}

/* The fields of tagged 'bytes' (the tag checked already): false when malformed. */
static bool cursor_fields(const uint8_t *bytes, size_t length, store_shard_cursor_t *out) {
    if (length < 5 || bytes[0] != CURSOR_VERSION) return false;
    size_t count = bytes[2], id_bytes = bytes[4];
    if (count == 0 || count > SHARD_COUNT_MAX || bytes[3] >= count || id_bytes == 0 || id_bytes > PC_ID_BYTES_MAX ||
        length != 5 + id_bytes + 8 * count + 8) {
        return false;
    }
    memset(out, 0, sizeof *out);
    out->kind = bytes[1];
    out->cut.count = (uint32_t)count;
    out->shard = bytes[3];
    memcpy(out->after, bytes + 5, id_bytes);
    out->after[id_bytes] = '\0';
    const uint8_t *seqs = bytes + 5 + id_bytes;
    for (size_t i = 0; i < count; i++) out->cut.seq[i] = get_u64(seqs + 8 * i);
    out->issued_ns = get_u64(seqs + 8 * count);
    return pc_id_valid(out->after);
}

pc_status store_shard_cursor_decode(const uint8_t key[STORE_CURSOR_KEY_BYTES], const char *owner,
                                    const char *text, store_shard_cursor_t *out) {
    uint8_t bytes[CURSOR_BYTES_MAX];
    size_t length = 0;
    if (strlen(text) >= STORE_CURSOR_TEXT_SIZE ||
        sodium_base642bin(bytes, sizeof bytes, text, strlen(text), NULL, &length, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        length <= CURSOR_TAG_BYTES) {
        return PC_LIST_CURSOR_INVALID;
    }
    length -= CURSOR_TAG_BYTES;
    uint8_t tag[CURSOR_TAG_BYTES];
    cursor_tag(key, owner, bytes, length, tag);
    if (sodium_memcmp(tag, bytes + length, CURSOR_TAG_BYTES) != 0) return PC_LIST_CURSOR_INVALID;
    if (!cursor_fields(bytes, length, out)) return PC_LIST_CURSOR_INVALID;
    uint64_t now_ns = pc_wall_ns();
    uint64_t age_ns = now_ns > out->issued_ns ? now_ns - out->issued_ns : out->issued_ns - now_ns;
    return age_ns > (uint64_t)STORE_CURSOR_AGE_S_MAX * 1000000000ull ? PC_LIST_CURSOR_EXPIRED : PC_OK;
}
