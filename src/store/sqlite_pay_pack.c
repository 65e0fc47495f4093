/* store/sqlite_pay_pack.c: a payment's version record as pay_versions keeps it (schema
 * version 16). A record is JSON text of about 1.3 KB whose members, ids and entries repeat
 * from record to record; zstd with a dictionary of typical records (sqlite_pay_dict.c)
 * keeps about a fifth of it, so a payment's records take a few hundred bytes of pages and
 * write-ahead log instead of 5 to 6 KB.
 *
 * Stored form, in pay_versions.doc:
 *   TEXT   the record as it is (rows written before version 16, and a record that
 *          packing would not make smaller)
 *   BLOB   byte 0: the format (PACK_FORMAT_DICT_V1), then one zstd frame made with the
 *          dictionary of that format, its content size and checksum in the frame: a
 *          read gives back the text byte for byte or PC_STORE_CORRUPT, never other text.
 * Level -1: zstd's fast matcher without entropy coding of literals, a third cheaper
 * than level 1 for 20 % more bytes. Matches of 7 bytes or more, and a search that
 * steps over 3 positions instead of 2 after a miss: a record's repeats (member names,
 * ids, values) are far longer, so the frames come out as small for 15 % fewer
 * instructions (fewer positions tried, fewer sequences to code). Each context keeps
 * its own copy of the dictionary, prepared with these parameters on its first record
 * (zstd's stable interface shares one made with a level's parameters only); the
 * unpacking dictionary is made once and shared (zstd reads it only). Each connection
 * keeps its own contexts (one thread at a time). How a frame was made is no part of
 * the format: any frame made with the dictionary reads back alike, those of the
 * former parameters too.
 *
 * A record can be packed before its command reaches the writer (store_pay_version_pack,
 * on the thread that renders it, with that thread's own contexts): the writer then
 * binds the bytes. Same dictionary, level and parameters: the stored form is the one
 * the writer would have made. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "store/sqlite_internal.h"

#define PACK_FORMAT_DICT_V1 0x01
#define PACK_LEVEL (-1)
#define PACK_MIN_MATCH_BYTES 7
#define PACK_TARGET_LENGTH 2 /* zstd's fast matcher: a miss steps over this + 1 positions */

struct store_pay_pack {
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    uint8_t *buffer; /* the last packed record */
    size_t buffer_capacity;
};

static pthread_once_t dictionaries_once = PTHREAD_ONCE_INIT;
static pthread_key_t thread_pack_key; /* each thread's contexts for packing ahead */
static bool thread_pack_key_made;
static ZSTD_DDict *dictionary_unpack;

static void thread_pack_free(void *pack) { store_sqlite_pay_pack_free(pack); }

/* Made once, kept for the process's life (zstd only reads them). */
static void dictionaries_make(void) {
    size_t bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&bytes);
    dictionary_unpack = ZSTD_createDDict(dictionary, bytes);
    thread_pack_key_made = pthread_key_create(&thread_pack_key, thread_pack_free) == 0;
}

static bool dictionaries_ready(void) {
    pthread_once(&dictionaries_once, dictionaries_make);
    return dictionary_unpack != NULL;
}

void store_sqlite_pay_pack_free(store_pay_pack_t *pack) {
    if (pack == NULL) return;
    ZSTD_freeCCtx(pack->cctx);
    ZSTD_freeDCtx(pack->dctx);
    free(pack->buffer);
    free(pack);
}

/* The connection's contexts, made on first use (NULL: no memory). */
static store_pay_pack_t *pack_of(store_pay_pack_t **slot) {
    if (*slot == NULL) *slot = calloc(1, sizeof **slot);
    return *slot;
}

static bool buffer_room(store_pay_pack_t *pack, size_t bytes) {
    if (pack->buffer_capacity >= bytes) return true;
    uint8_t *grown = realloc(pack->buffer, bytes);
    if (grown == NULL) return false;
    pack->buffer = grown;
    pack->buffer_capacity = bytes;
    return true;
}

/* One frame: content size and checksum in it, no dictionary id (the format byte names
 * the dictionary); the level, the matcher's parameters and the dictionary, kept by the
 * context from record to record. */
static bool cctx_ready(store_pay_pack_t *pack) {
    if (pack->cctx != NULL) return true;
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    if (cctx == NULL) return false;
    size_t bytes = 0;
    const char *dictionary = store_sqlite_pay_dict_v1(&bytes);
    const size_t results[] = {
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, PACK_LEVEL),
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_minMatch, PACK_MIN_MATCH_BYTES),
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_targetLength, PACK_TARGET_LENGTH),
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1),
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1),
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_dictIDFlag, 0),
        ZSTD_CCtx_loadDictionary(cctx, dictionary, bytes),
    };
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++) {
        if (ZSTD_isError(results[i])) {
            ZSTD_freeCCtx(cctx);
            return false;
        }
    }
    pack->cctx = cctx;
    return true;
}

pc_status store_sqlite_pay_pack(store_pay_pack_t **slot, const char *text, size_t bytes, const uint8_t **out,
                                size_t *out_bytes) {
    *out = NULL;
    *out_bytes = 0;
    store_pay_pack_t *pack = pack_of(slot);
    if (pack == NULL || !dictionaries_ready() || !cctx_ready(pack)) return PC_NO_MEMORY;
    size_t room = 1 + ZSTD_compressBound(bytes);
    if (!buffer_room(pack, room)) return PC_NO_MEMORY;
    size_t packed = ZSTD_compress2(pack->cctx, pack->buffer + 1, room - 1, text, bytes);
    if (ZSTD_isError(packed)) {
        ZSTD_CCtx_reset(pack->cctx, ZSTD_reset_session_only);
        return PC_INTERNAL;
    }
    if (1 + packed >= bytes) return PC_OK; /* no smaller: kept as text */
    pack->buffer[0] = PACK_FORMAT_DICT_V1;
    *out = pack->buffer;
    *out_bytes = 1 + packed;
    return PC_OK;
}

/* The frame's content size, checked against the records' bound before anything is
 * allocated for it. */
static pc_status unpacked_size(const uint8_t *frame, size_t frame_bytes, size_t *bytes_out) {
    unsigned long long size = ZSTD_getFrameContentSize(frame, frame_bytes);
    if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > PAY_DOC_BYTES_MAX) {
        return PC_STORE_CORRUPT;
    }
    *bytes_out = (size_t)size;
    return PC_OK;
}

pc_status store_sqlite_pay_unpack(store_pay_pack_t **slot, const void *blob, size_t blob_bytes, char **text_out,
                                  size_t *bytes_out) {
    *text_out = NULL;
    *bytes_out = 0;
    const uint8_t *stored = blob;
    if (blob_bytes < 2 || stored[0] != PACK_FORMAT_DICT_V1) return PC_STORE_CORRUPT;
    size_t bytes = 0;
    pc_status status = unpacked_size(stored + 1, blob_bytes - 1, &bytes);
    if (status != PC_OK) return status;
    store_pay_pack_t *pack = pack_of(slot);
    if (pack == NULL || !dictionaries_ready()) return PC_NO_MEMORY;
    if (pack->dctx == NULL && (pack->dctx = ZSTD_createDCtx()) == NULL) return PC_NO_MEMORY;
    char *text = malloc(bytes + 1);
    if (text == NULL) return PC_NO_MEMORY;
    size_t got = ZSTD_decompress_usingDDict(pack->dctx, text, bytes, stored + 1, blob_bytes - 1, dictionary_unpack);
    if (ZSTD_isError(got) || got != bytes) {
        free(text);
        return PC_STORE_CORRUPT;
    }
    text[bytes] = '\0';
    *text_out = text;
    *bytes_out = bytes;
    return PC_OK;
}

/* The calling thread's contexts, made on its first call and freed when it ends. */
static store_pay_pack_t *thread_pack(void) {
    if (!dictionaries_ready() || !thread_pack_key_made) return NULL;
    store_pay_pack_t *pack = pthread_getspecific(thread_pack_key);
    if (pack != NULL) return pack;
    pack = calloc(1, sizeof *pack);
    if (pack != NULL && pthread_setspecific(thread_pack_key, pack) != 0) {
        free(pack);
        pack = NULL;
    }
    return pack;
}

pc_status store_sqlite_pay_pack_ahead(const char *text, size_t bytes, uint8_t **packed_out,
                                      size_t *packed_bytes_out) {
    *packed_out = NULL;
    *packed_bytes_out = 0;
    store_pay_pack_t *pack = thread_pack();
    if (pack == NULL) return PC_NO_MEMORY;
    const uint8_t *packed = NULL;
    size_t packed_bytes = 0;
    pc_status status = store_sqlite_pay_pack(&pack, text, bytes, &packed, &packed_bytes);
    if (status != PC_OK || packed == NULL) return status; /* kept as text: nothing made ahead */
    uint8_t *copy = malloc(packed_bytes);
    if (copy == NULL) return PC_NO_MEMORY;
    memcpy(copy, packed, packed_bytes);
    *packed_out = copy;
    *packed_bytes_out = packed_bytes;
    return PC_OK;
}
