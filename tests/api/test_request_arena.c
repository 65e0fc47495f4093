/* Goal: a request's arena (api_alloc) hands out zeroed, aligned, separate bytes that
 * live as long as the request, in few allocations: small pieces are cut from blocks of
 * API_REQUEST_ARENA_BLOCK_BYTES (a payment's headers and Idempotency-Key take one block,
 * not a calloc each), a piece larger than a block gets a block of its own and the block
 * being cut goes on being cut after it. Method: a zeroed request as api_request_new makes
 * it; pieces of many sizes, each checked zero and aligned, then filled with its own
 * byte; every piece read back unchanged at the end; the blocks counted on the way. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_internal.h"
#include "test.h"

#define PIECES 400

static uint32_t block_count(const api_request_t *req) {
    uint32_t count = 0;
    for (const api_arena_block *b = req->arena; b != NULL; b = b->next) count++;
    return count;
}

static void blocks_free(api_request_t *req) {
    while (req->arena != NULL) {
        api_arena_block *next = req->arena->next;
        free(req->arena);
        req->arena = next;
    }
}

static bool all_zero(const unsigned char *bytes, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (bytes[i] != 0) return false;
    }
    return true;
}

static void test_small_pieces_share_blocks(void) {
    api_request_t *req = calloc(1, sizeof *req);
    ASSERT_TRUE(req != NULL);
    unsigned char *pieces[PIECES];
    size_t sizes[PIECES];
    size_t total_bytes = 0;
    for (uint32_t i = 0; i < PIECES; i++) {
        sizes[i] = 1 + (i * 37) % 120; /* header copies: a few bytes to a hundred */
        pieces[i] = api_alloc(req, sizes[i]);
        ASSERT_TRUE(pieces[i] != NULL);
        ASSERT_EQ((uintptr_t)pieces[i] % _Alignof(max_align_t), 0);
        ASSERT_TRUE(all_zero(pieces[i], sizes[i]));
        memset(pieces[i], (int)(i % 250) + 1, sizes[i]);
        total_bytes += sizes[i];
    }
    /* one calloc a piece made PIECES blocks; cut from blocks, about total / block */
    ASSERT_TRUE(block_count(req) <= 2 * total_bytes / API_REQUEST_ARENA_BLOCK_BYTES + 2);
    for (uint32_t i = 0; i < PIECES; i++) {
        for (size_t k = 0; k < sizes[i]; k++) ASSERT_EQ(pieces[i][k], (unsigned char)((i % 250) + 1));
    }
    blocks_free(req);
    free(req);
}

static void test_large_piece_own_block(void) {
    api_request_t *req = calloc(1, sizeof *req);
    ASSERT_TRUE(req != NULL);
    unsigned char *first = api_alloc(req, 100); /* past the inline room: a block is cut */
    ASSERT_TRUE(first != NULL);
    memset(first, 0xA1, 100);
    uint32_t blocks_before = block_count(req);
    unsigned char *large = api_alloc(req, 3 * API_REQUEST_ARENA_BLOCK_BYTES);
    ASSERT_TRUE(large != NULL);
    ASSERT_TRUE(all_zero(large, 3 * API_REQUEST_ARENA_BLOCK_BYTES));
    memset(large, 0xB2, 3 * API_REQUEST_ARENA_BLOCK_BYTES);
    ASSERT_EQ(block_count(req), blocks_before + 1);
    unsigned char *next = api_alloc(req, 100); /* still cut from the first block */
    ASSERT_TRUE(next != NULL);
    ASSERT_EQ(block_count(req), blocks_before + 1);
    ASSERT_TRUE(all_zero(next, 100));
    ASSERT_TRUE(next >= first + 100 || next + 100 <= first);
    memset(next, 0xC3, 100);
    for (size_t k = 0; k < 100; k++) ASSERT_EQ(first[k], 0xA1);
    for (size_t k = 0; k < 3 * API_REQUEST_ARENA_BLOCK_BYTES; k++) ASSERT_EQ(large[k], 0xB2);
    ASSERT_TRUE(api_alloc(req, SIZE_MAX - 8) == NULL); /* refused, not wrapped */
    blocks_free(req);
    free(req);
}

int main(void) {
    TEST_RUN(test_small_pieces_share_blocks);
    TEST_RUN(test_large_piece_own_block);
    return test_finish();
}
