/* tests/risk/risk_test_util.h: hand-built authorizations for the risk tests. */
#ifndef PAYCORE_RISK_TEST_UTIL_H
#define PAYCORE_RISK_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "risk/risk.h"
#include "test.h"

/* A card-present USD payment by 'payer' at 'payee'; callers change what they test. */
static inline risk_auth_t auth_make(int64_t ts_s, const char *payer, const char *payee,
                                    int64_t amount_minor) {
    risk_auth_t a;
    memset(&a, 0, sizeof(a));
    a.ts_s = ts_s;
    snprintf(a.payer_id, sizeof(a.payer_id), "%s", payer);
    snprintf(a.payee_id, sizeof(a.payee_id), "%s", payee);
    a.amount_minor = amount_minor;
    strcpy(a.currency, "USD");
    a.mcc = 5411;
    a.channel = RISK_CHANNEL_CARD_PRESENT;
    strcpy(a.country_payer, "US");
    strcpy(a.country_merchant, "US");
    a.account_age_days = 400;
    a.is_fraud = -1;
    return a;
}

/* A fresh temporary path under /tmp, unique per process and 'name'. */
static inline void temp_path(char *out, size_t out_bytes, const char *name) {
    snprintf(out, out_bytes, "/tmp/paycore-risk-test-%d-%s", (int)getpid(), name);
    unlink(out);
}

#define DEV_DATA_HOW "set PAYCORE_SHARED to the directory holding data/payments_dev.csv " \
                     "(the project's ../shared) before 'make test'"

/* The dev data, or NULL after test_input_missing() (a failure under CI). */
static inline const char *dev_data_path(char *buf, size_t buf_bytes) {
    const char *shared = getenv("PAYCORE_SHARED");
    snprintf(buf, buf_bytes, "%s/data/payments_dev.csv", shared ? shared : "(PAYCORE_SHARED unset)");
    if (shared != NULL && access(buf, R_OK) == 0) return buf;
    char what[600];
    snprintf(what, sizeof what, "dev data %s", buf);
    test_input_missing(what, DEV_DATA_HOW);
    return NULL;
}

#endif
