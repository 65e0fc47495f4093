/* gateway/sim_holders.c: a card record's cardholders in memory (sim_internal.h,
 * "card: cardholders"). Their rows hold where each started; the authorizations hold
 * what moved since; memory holds the sum, so a card request decides and moves money
 * without reading or rewriting its cardholder's row (a row at a random place in its
 * table: one more page in every group commit). Used under the simulator's lock. */
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "gateway/sim_internal.h"
#include "obs/obs.h"

#define HOLDERS_SLOTS_MIN 1024u

struct sim_holder_slot {
    char text[SIM_HOLDER_TEXT_SIZE]; /* number, a space, currency; "" : empty */
    sim_holder_t holder;
};

/* A cardholder's text: its number, a space, its currency; false when it does not fit
 * (never for a validated number and currency). */
static bool holder_text(const char *number, const char *currency, char out[SIM_HOLDER_TEXT_SIZE]) {
    const char *const parts[] = {number, " ", currency};
    return pc_str_join(out, SIM_HOLDER_TEXT_SIZE, parts, 3) < SIM_HOLDER_TEXT_SIZE;
}

/* The slot of 'text': its own, or the empty one where it would go. */
static struct sim_holder_slot *slot_of(struct sim_holder_slot *slots, uint32_t capacity, const char *text) {
    uint32_t at = (uint32_t)sim_text_hash(text) & (capacity - 1);
    while (slots[at].text[0] != '\0' && strcmp(slots[at].text, text) != 0) at = (at + 1) & (capacity - 1);
    return &slots[at];
}

/* Doubles the slots (or makes the first ones); false when out of memory. */
static bool holders_grow(sim_holders_t *holders) {
    uint32_t capacity = holders->capacity ? holders->capacity * 2 : HOLDERS_SLOTS_MIN;
    if (capacity < holders->capacity) return false;
    struct sim_holder_slot *slots = calloc(capacity, sizeof *slots);
    if (slots == NULL) return false;
    for (uint32_t i = 0; i < holders->capacity; i++) {
        if (holders->slots[i].text[0] != '\0') *slot_of(slots, capacity, holders->slots[i].text) = holders->slots[i];
    }
    free(holders->slots);
    holders->slots = slots;
    holders->capacity = capacity;
    return true;
}

void sim_holders_clear(sim_holders_t *holders) {
    free(holders->slots);
    memset(holders, 0, sizeof *holders);
}

bool sim_holders_loaded(const sim_db_t *db) {
    return db->holders.slots != NULL;
}

sim_holder_t *sim_holders_find(sim_db_t *db, const char *number, const char *currency) {
    char text[SIM_HOLDER_TEXT_SIZE];
    if (db->holders.slots == NULL || !holder_text(number, currency, text)) return NULL;
    struct sim_holder_slot *slot = slot_of(db->holders.slots, db->holders.capacity, text);
    return slot->text[0] != '\0' ? &slot->holder : NULL;
}

sim_holder_t *sim_holders_add(sim_db_t *db, const char *number, const char *currency, const sim_holder_t *holder) {
    sim_holders_t *holders = &db->holders;
    char text[SIM_HOLDER_TEXT_SIZE];
    if (holders->slots == NULL || !holder_text(number, currency, text) ||
        ((holders->count + 1) * 2 > holders->capacity && !holders_grow(holders))) {
        obs_log(OBS_LEVEL_ERROR, "simulator record: no room for a cardholder in memory", NULL);
        return NULL;
    }
    struct sim_holder_slot *slot = slot_of(holders->slots, holders->capacity, text);
    if (slot->text[0] == '\0') holders->count++;
    memcpy(slot->text, text, sizeof text);
    slot->holder = *holder;
    return &slot->holder;
}

/* Every cardholder's row: where its balance and holds started. */
static bool openings_load(sim_db_t *db) {
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db->db, "SELECT number, currency, opening_balance, opening_held, amount_limit"
                                " FROM cardholder_openings", -1, &stmt, NULL);
    bool ok = rc == SQLITE_OK;
    while (ok && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        sim_holder_t holder = {.balance_minor = sqlite3_column_int64(stmt, 2),
                               .held_minor = sqlite3_column_int64(stmt, 3),
                               .amount_limit_minor = sqlite3_column_int64(stmt, 4)};
        ok = sim_holders_add(db, sim_col_text(stmt, 0), sim_col_text(stmt, 1), &holder) != NULL;
    }
    sqlite3_finalize(stmt);
    return ok && rc == SQLITE_DONE;
}

/* What the authorizations moved since (one scan of the table, in rowid order: a few
 * hundred nanoseconds a row). An authorization whose cardholder has no row moves
 * nothing, as the view `cardholders` shows it. */
static bool moves_load(sim_db_t *db) {
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db->db, "SELECT card_number, currency, " SIM_HOLDER_BALANCE_MOVE_SQL ", "
                                SIM_HOLDER_HELD_MOVE_SQL " FROM authorizations WHERE " SIM_HOLDER_MOVES_WHERE,
                                -1, &stmt, NULL);
    bool ok = rc == SQLITE_OK;
    while (ok && (rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        sim_holder_t *holder = sim_holders_find(db, sim_col_text(stmt, 0), sim_col_text(stmt, 1));
        if (holder == NULL) continue;
        holder->balance_minor += sqlite3_column_int64(stmt, 2);
        holder->held_minor += sqlite3_column_int64(stmt, 3);
    }
    sqlite3_finalize(stmt);
    return ok && rc == SQLITE_DONE;
}

bool sim_holders_load(sim_db_t *db) {
    sim_holders_clear(&db->holders);
    if (holders_grow(&db->holders) && openings_load(db) && moves_load(db)) return true;
    obs_logf(OBS_LEVEL_ERROR, "simulator record: the cardholders cannot be loaded (%s)", sqlite3_errmsg(db->db));
    sim_holders_clear(&db->holders);
    return false;
}
