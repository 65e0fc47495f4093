/* api/api_risk.h: the risk engine inside `paycore serve` (routes in routes_risk.c).
 * The server process holds one engine; serve opens it before listening and closes
 * it after draining. Without an engine the risk routes answer 503. */
#ifndef PAYCORE_API_RISK_H
#define PAYCORE_API_RISK_H

#include <stdbool.h>
#include <stddef.h>

#include "paycore/status.h"
#include "risk/risk.h"

typedef struct {
    const char *db_path;         /* the ledger db: decisions go to "<db>-risk.db" */
    const char *model_path;      /* NULL: rules-only */
    const char *rules_path;      /* NULL: no rules */
    bool rules_only;             /* run without the model even if one is given */
    const char *review_threshold;  /* NULL: default */
    const char *decline_threshold;
} api_risk_options_t;

/* Opens the engine. A missing or corrupt model is an error unless rules_only. */
PC_MUST_USE pc_status api_risk_start(const api_risk_options_t *options);
/* SIGHUP: reloads rules and model; a bad file keeps the old ones (logged). */
void api_risk_reload(void);
void api_risk_stop(void);
/* The running engine (NULL when none): the payments layer scores through it. */
struct risk_engine *api_risk_engine(void);
/* "model" or "rules_only" ("off" when no engine runs). */
const char *api_risk_mode(void);
/* Appends the risk metrics (Prometheus text) to 'text' (malloc'ed); returns the new
 * text (the old one is freed) or the old one unchanged on OOM. */
char *api_risk_metrics_append(char *text, size_t *bytes);
/* The engine's counters; false when no engine runs. */
bool api_risk_stats(risk_engine_stats_t *out);
/* Every reason code seen so far with its count (nothing when no engine runs). */
void api_risk_reasons_each(void (*fn)(const char *code, uint64_t count, void *ctx), void *ctx);

#endif
