/* risk/risk_internal.h: inside the risk subsystem only (engine.c <-> store.c,
 * model.c <-> trees.c).
 * Callers outside src/risk use risk.h. */
#ifndef PAYCORE_RISK_INTERNAL_H
#define PAYCORE_RISK_INTERNAL_H

#include "core/core.h"
#include "risk/risk.h"

typedef struct risk_store risk_store_t;

/* Opens (creating) the decisions file and starts its writer thread. */
PC_MUST_USE pc_status risk_store_open(const char *path, risk_store_t **out);
/* Flushes what is queued, stops the thread, closes the file. */
void risk_store_close(risk_store_t *store);
/* Queues a decision (copied). PC_LIMIT_REACHED when the queue stayed full. */
PC_MUST_USE pc_status risk_store_put_decision(risk_store_t *store, const risk_auth_t *auth,
                                              const risk_decision_t *decision);
PC_MUST_USE pc_status risk_store_put_feedback(risk_store_t *store, uint64_t decision_id,
                                              bool is_fraud, int64_t at_s);
PC_MUST_USE pc_status risk_store_put_review(risk_store_t *store, const risk_review_t *review);
/* Waits until everything queued so far is committed. */
PC_MUST_USE pc_status risk_store_flush(risk_store_t *store);
/* Reads (on the caller's thread, own connection; after a flush). */
PC_MUST_USE pc_status risk_store_max_decision_id(risk_store_t *store, uint64_t *out);
PC_MUST_USE pc_status risk_store_decision_exists(risk_store_t *store, uint64_t decision_id,
                                                 bool *exists_out);
/* The owner a decision was stored with ("" none). PC_NOT_FOUND: no such decision. */
PC_MUST_USE pc_status risk_store_decision_owner(risk_store_t *store, uint64_t decision_id,
                                                char *owner_out, size_t owner_bytes);
/* Every stored authorization with decision_id > 'after_id', in order. */
PC_MUST_USE pc_status risk_store_each_auth(risk_store_t *store, uint64_t after_id,
                                           void (*fn)(const risk_auth_t *auth, void *ctx),
                                           void *ctx);
/* Every review row (open and decided), in decision order. */
PC_MUST_USE pc_status risk_store_each_review(risk_store_t *store,
                                             void (*fn)(const risk_review_t *review, void *ctx),
                                             void *ctx);
PC_MUST_USE pc_status risk_store_meta_get(risk_store_t *store, const char *key, uint64_t *out);
PC_MUST_USE pc_status risk_store_meta_set(risk_store_t *store, const char *key, uint64_t value);
uint64_t risk_store_failed_total(const risk_store_t *store);

/* ---- the decision ids clients see (ids.c) ---- */
typedef struct {
    pc_hash_key_t key;
    uint64_t legacy_max; /* numbers up to this one are their own ids (stored before opaque ids) */
} risk_ids_t;
/* The installation's key from 'key_path' (made at the first start, with the boundary
 * of the numbers stored before it); RISK_STORE_FAILED (logged) when the file is
 * missing, malformed or another decisions file's. */
PC_MUST_USE pc_status risk_ids_open(risk_ids_t *ids, risk_store_t *store, const char *key_path);
/* No decisions file: a key of this process, no numbers from before. */
void risk_ids_random(risk_ids_t *ids);
/* A decision number's id, and back: 0 when 'id' names no number. */
uint64_t risk_ids_external(const risk_ids_t *ids, uint64_t number);
uint64_t risk_ids_number(const risk_ids_t *ids, uint64_t id);

/* ---- the model's trees walked by paycore (trees.c, used by model.c) ---- */
typedef struct risk_trees risk_trees_t;
/* Flat trees from XGBoost's JSON model. RISK_MODEL_INVALID with the reason in 'why'
 * when the model has something the walk does not evaluate exactly (another
 * objective, categorical splits, several outputs, limits): score through XGBoost. */
PC_MUST_USE pc_status risk_trees_from_json(const char *json, size_t json_bytes, risk_trees_t **out,
                                           char *why, size_t why_bytes);
void risk_trees_free(risk_trees_t *trees);
/* XGBoost's score of one row (NaN = missing), computed as XGBoost 1.7 does. */
float risk_trees_score(const risk_trees_t *trees, const float row[RISK_FEATURE_COUNT]);
float risk_trees_margin(const risk_trees_t *trees, const float row[RISK_FEATURE_COUNT]);
uint32_t risk_trees_count(const risk_trees_t *trees);
uint32_t risk_trees_nodes(const risk_trees_t *trees);
/* Up to 'max' split thresholds on 'feature'; returns how many. */
uint32_t risk_trees_thresholds(const risk_trees_t *trees, uint32_t feature, float *out, uint32_t max);

#endif
