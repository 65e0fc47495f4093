/* Goal: the writer's grant table answers exactly what was granted and committed (who
 * holds an account, and each account's owners in id order: the events' owners), and
 * a failed batch takes back its grants and nothing else, whatever the collisions and
 * growth of its hash tables. Method: thousands of random batches of grants (pairs
 * with dense owners and account indices, so probe chains run long; grants by id of
 * accounts to come), each committed or rolled back at random, against a plain model;
 * after every batch each candidate pair and id is asked. Seeded (PAYCORE_SEED=<n>). */
#include <stdlib.h>

#include "core/core.h"
#include "test.h"
#include "writer/grants.h"

#define OWNERS 8
#define ACCOUNTS 3000
#define BY_ID_NAMES 40
#define BATCHES 1500

static uint64_t rng_state;
static uint32_t rng_below(uint32_t n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

typedef struct {
    bool pairs[OWNERS][ACCOUNTS];
    bool by_id[OWNERS][BY_ID_NAMES];
} model_t;

static void account_name(char out[PC_ID_SIZE], uint32_t index) { snprintf(out, PC_ID_SIZE, "acct-%u", index); }
static void later_name(char out[PC_ID_SIZE], uint32_t index) { snprintf(out, PC_ID_SIZE, "later-%u", index); }

/* writer_grants_owners_of names the model's owners of one account, in id order ("key_0"
 * < "key_1" ...), the first 'max' of them. */
static void check_owners(const writer_grants_t *grants, uint32_t index, const char *id, const bool *held,
                         size_t stride, uint32_t max) {
    const char *got[OWNERS];
    uint32_t count = writer_grants_owners_of(grants, index, id, got, max);
    uint32_t want = 0;
    char name[32];
    for (uint32_t o = 0; o < OWNERS && want < max; o++) {
        if (!held[o * stride]) continue;
        snprintf(name, sizeof name, "key_%u", o);
        if (want >= count || strcmp(got[want], name) != 0) {
            TEST_FAIL("%s: owner %u is %s, the model says %s", id, want, want < count ? got[want] : "(none)", name);
        }
        want++;
    }
    if (count != want) TEST_FAIL("%s: %u owners, the model says %u", id, count, want);
}

static void check_all(const writer_grants_t *grants, const model_t *model, uint32_t owners[OWNERS]) {
    char id[PC_ID_SIZE];
    static uint32_t round; /* an eighth of the accounts' owners each time, in turn */
    round++;
    for (uint32_t a = round % 8; a < ACCOUNTS; a += 8) {
        account_name(id, a);
        check_owners(grants, a, id, &model->pairs[0][a], ACCOUNTS, a % 2 ? OWNERS : 3);
    }
    for (uint32_t n = 0; n < BY_ID_NAMES; n++) {
        later_name(id, n);
        check_owners(grants, WRITER_GRANT_NO_ACCOUNT, id, &model->by_id[0][n], BY_ID_NAMES, OWNERS);
    }
    for (uint32_t o = 0; o < OWNERS; o++) {
        for (uint32_t a = 0; a < ACCOUNTS; a++) {
            account_name(id, a);
            if (writer_grants_holds(grants, owners[o], a, id) != model->pairs[o][a]) {
                TEST_FAIL("owner %u account %u: holds %d, model %d", o, a, !model->pairs[o][a], model->pairs[o][a]);
            }
        }
        for (uint32_t n = 0; n < BY_ID_NAMES; n++) {
            later_name(id, n);
            /* an account index no pair uses: only the by-id grant can answer */
            if (writer_grants_holds(grants, owners[o], ACCOUNTS + 7, id) != model->by_id[o][n]) {
                TEST_FAIL("owner %u id %s: model %d", o, id, model->by_id[o][n]);
            }
        }
    }
}

static void batch_random(writer_grants_t *grants, model_t *model, uint32_t owners[OWNERS]) {
    model_t after = *model;
    uint32_t grants_count = 1 + rng_below(rng_below(10) == 0 ? 2000 : 40);
    char id[PC_ID_SIZE];
    for (uint32_t i = 0; i < grants_count; i++) {
        uint32_t o = rng_below(OWNERS);
        if (rng_below(50) == 0) {
            uint32_t n = rng_below(BY_ID_NAMES);
            later_name(id, n);
            writer_grants_add(grants, owners[o], WRITER_GRANT_NO_ACCOUNT, id);
            after.by_id[o][n] = true;
        } else {
            uint32_t a = rng_below(ACCOUNTS);
            account_name(id, a);
            writer_grants_add(grants, owners[o], a, id);
            after.pairs[o][a] = true;
        }
    }
    if (rng_below(8) == 0) check_all(grants, &after, owners); /* a batch's grants count at once */
    if (rng_below(3) == 0) {
        writer_grants_rollback(grants);
    } else {
        writer_grants_commit(grants);
        *model = after;
    }
}

static void test_random_batches(void) {
    const char *seed_text = getenv("PAYCORE_SEED");
    rng_state = seed_text ? strtoull(seed_text, NULL, 10) | 1 : (pc_wall_ns() | 1);
    printf("seed %llu (PAYCORE_SEED replays it)\n", (unsigned long long)rng_state);
    writer_grants_t *grants;
    ASSERT_STATUS(writer_grants_open(&grants), PC_OK);
    uint32_t owners[OWNERS];
    for (uint32_t o = 0; o < OWNERS; o++) {
        char name[32];
        snprintf(name, sizeof name, "key_%u", o);
        owners[o] = writer_grants_owner(grants, name);
        ASSERT_EQ(writer_grants_owner(grants, name), owners[o]); /* stable */
    }
    static model_t model;
    memset(&model, 0, sizeof model);
    for (uint32_t b = 0; b < BATCHES; b++) {
        batch_random(grants, &model, owners);
        if (b % 8 == 0) check_all(grants, &model, owners);
    }
    check_all(grants, &model, owners);
    writer_grants_close(grants);
}

/* A batch that makes the table grow reorders its slots: taking its grants back must
 * then close the holes it leaves in other grants' probe chains. */
static void test_rollback_across_growth(void) {
    uint32_t owners[OWNERS];
    static model_t model;
    for (uint32_t epoch = 0; epoch < 60; epoch++) {
        writer_grants_t *grants;
        ASSERT_STATUS(writer_grants_open(&grants), PC_OK);
        for (uint32_t o = 0; o < OWNERS; o++) {
            char name[32];
            snprintf(name, sizeof name, "key_%u", o);
            owners[o] = writer_grants_owner(grants, name);
        }
        memset(&model, 0, sizeof model);
        char id[PC_ID_SIZE];
        for (uint32_t i = 300 + rng_below(200); i > 0; i--) { /* just under a growth */
            uint32_t o = rng_below(OWNERS), a = rng_below(ACCOUNTS);
            account_name(id, a);
            writer_grants_add(grants, owners[o], a, id);
            model.pairs[o][a] = true;
        }
        writer_grants_commit(grants);
        for (uint32_t i = 100 + rng_below(3000); i > 0; i--) {
            uint32_t o = rng_below(OWNERS), a = rng_below(ACCOUNTS);
            account_name(id, a);
            writer_grants_add(grants, owners[o], a, id);
        }
        writer_grants_rollback(grants);
        check_all(grants, &model, owners);
        writer_grants_close(grants);
    }
}

int main(void) {
    TEST_RUN(test_random_batches);
    TEST_RUN(test_rollback_across_growth);
    return test_finish();
}
