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
#include <stdio.h>
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

/* ---- a list paged across shards (store_shard_list) ---- */

/* Pages accounts shard by shard, each shard's part as of its seq in the cut. */
typedef struct {
    store_account_fn fn;
    void *ctx;
    uint32_t emitted;
    uint32_t shard;              /* the shard being listed */
    uint32_t last_shard;         /* the last account passed to fn, and its shard */
    char last[PC_ID_SIZE];
} page_t;

static void page_row(const ledger_account_t *account, void *ctx) {
    page_t *page = ctx;
    page->emitted++;
    if (page->fn == NULL) return; /* the probe for has_more */
    page->fn(account, page->ctx);
    page->last_shard = page->shard;
    snprintf(page->last, sizeof page->last, "%s", account->id);
}

/* One shard's part: the accounts ('key_id' NULL) or a key's granted ones. */
static pc_status shard_part(const store_shard_lister_t *lister, uint32_t shard, const char *key_id,
                            const store_query_t *query, const store_cut_t *cut, page_t *page, bool *more) {
    page->shard = shard;
    return lister->part(lister->ctx, shard, key_id, query, cut->seq[shard], page_row, page, more);
}

static pc_status pages_read(const store_shard_lister_t *lister, const char *key_id, const store_query_t *query, int32_t shard,
                            const store_cut_t *cut, page_t *page, bool *has_more) {
    int32_t step = query->descending ? -1 : 1;
    store_query_t q = *query;
    *has_more = false;
    for (; shard >= 0 && shard < (int32_t)lister->count; shard += step) {
        q.limit = query->limit - page->emitted;
        bool more = false;
        pc_status status = shard_part(lister, (uint32_t)shard, key_id, &q, cut, page, &more);
        if (status != PC_OK) return status;
        q.starting_after = NULL;
        if (more) {
            *has_more = true;
            return PC_OK;
        }
        if (page->emitted == query->limit) break;
    }
    /* a full page that ended a shard: more when a later shard has any */
    for (shard += step; page->emitted == query->limit && shard >= 0 && shard < (int32_t)lister->count; shard += step) {
        store_query_t probe = {.limit = 1, .descending = query->descending};
        page_t none = {0};
        bool more = false;
        (void)shard_part(lister, (uint32_t)shard, key_id, &probe, cut, &none, &more);
        if (none.emitted > 0 || more) {
            *has_more = true;
            break;
        }
    }
    return PC_OK;
}

static store_cursor_kind list_kind(const char *key_id, const store_query_t *query) {
    if (key_id != NULL) return STORE_CURSOR_GRANTED;
    return query->descending ? STORE_CURSOR_ACCOUNTS_DESC : STORE_CURSOR_ACCOUNTS;
}

/* Where a list starts: from query->cursor (its shard, account and cut), or a first
 * page (the shard of starting_after, or the first in the order; the cut not taken
 * yet). */
static pc_status list_start(const store_shard_lister_t *lister, const char *key_id, const store_query_t *query,
                            store_shard_cursor_t *cursor, int32_t *shard) {
    memset(cursor, 0, sizeof *cursor);
    if (query->cursor != NULL) {
        if (lister->cursor_key == NULL) return PC_LIST_CURSOR_INVALID;
        pc_status status = store_shard_cursor_decode(lister->cursor_key, query->cursor_owner, query->cursor, cursor);
        if (status != PC_OK) return status;
        if (cursor->kind != (uint32_t)list_kind(key_id, query) || cursor->cut.count != lister->count) {
            return PC_LIST_CURSOR_INVALID;
        }
        *shard = (int32_t)cursor->shard;
        return PC_OK;
    }
    cursor->kind = list_kind(key_id, query);
    cursor->cut.count = lister->count;
    cursor->issued_ns = pc_wall_ns();
    *shard = query->descending ? (int32_t)lister->count - 1 : 0;
    if (query->starting_after != NULL) *shard = (int32_t)store_shard_of(query->starting_after, lister->count);
    return PC_OK;
}

pc_status store_shard_list(const store_shard_lister_t *lister, const char *key_id, const store_query_t *query,
                          store_account_fn fn, void *ctx, bool *has_more) {
    *has_more = false;
    store_shard_cursor_t cursor;
    int32_t shard = 0;
    pc_status status = list_start(lister, key_id, query, &cursor, &shard);
    if (status == PC_OK && query->cursor == NULL) status = lister->cut(lister->ctx, &cursor.cut);
    if (status != PC_OK) return status;
    store_query_t q = *query;
    if (query->cursor != NULL) q.starting_after = cursor.after;
    page_t page = {.fn = fn, .ctx = ctx};
    status = pages_read(lister, key_id, &q, shard, &cursor.cut, &page, has_more);
    if (status == PC_OK && *has_more && query->next_cursor != NULL && lister->cursor_key != NULL && page.emitted > 0) {
        cursor.shard = page.last_shard;
        snprintf(cursor.after, sizeof cursor.after, "%s", page.last);
        (void)store_shard_cursor_encode(lister->cursor_key, query->cursor_owner, &cursor, query->next_cursor);
    }
    return status;
}
