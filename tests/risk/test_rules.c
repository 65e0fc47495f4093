/* Goal: every rule kind hits when it should, not when it should not, with its
 * reason code and action; AML patterns fire on constructed sequences; a bad rules
 * file is refused with its line number.
 * Method: rules parsed from text, evaluated against hand-built streams. */
#include <stdlib.h>

#include "risk/risk.h"
#include "risk_test_util.h"
#include "test.h"

#define T0 1717200000 /* 2024-06-01 00:00 UTC */

static risk_rules_t *parse_ok(const char *text) {
    risk_rules_t *rules = NULL;
    uint32_t line = 0;
    char message[160];
    pc_status status = risk_rules_parse(text, &rules, &line, message, sizeof(message));
    if (status != PC_OK) TEST_FAIL("rules refused at line %u: %s", line, message);
    return rules;
}

static risk_features_t *features_new(void) {
    risk_features_config_t c;
    risk_features_config_default(&c);
    c.payers_max = 1024;
    c.entities_max = 1024;
    risk_features_t *f = NULL;
    ASSERT_STATUS(risk_features_open(&c, &f), PC_OK);
    return f;
}

/* The reasons for 'a', as "code:action,..." in hit order. */
static const char *eval_str(const risk_rules_t *rules, const risk_features_t *f,
                            const risk_auth_t *a) {
    static char out[512];
    risk_reason_t reasons[RISK_REASONS_MAX];
    uint32_t n = risk_rules_eval(rules, f, a, reasons);
    out[0] = '\0';
    for (uint32_t i = 0; i < n; i++) {
        if (i) strcat(out, ",");
        strcat(out, reasons[i].code);
        strcat(out, reasons[i].action == RISK_ACTION_DECLINE ? ":decline" : ":review");
    }
    return out;
}

static void test_amount_limits(void) {
    risk_rules_t *r = parse_ok(
        "# limits\n"
        "amount_limit currency=USD channel=ecommerce max_minor=50000 reason=ecom_usd_limit\n"
        "amount_limit account=P-vip currency=USD max_minor=100 action=decline\n"
        "amount_limit max_usd=2000\n");
    risk_features_t *f = features_new();
    risk_auth_t a = auth_make(T0, "P1", "M1", 50000);
    a.channel = RISK_CHANNEL_ECOMMERCE;
    ASSERT_STR_EQ(eval_str(r, f, &a), "");                  /* at the limit: ok */
    a.amount_minor = 50001;
    ASSERT_STR_EQ(eval_str(r, f, &a), "ecom_usd_limit:review");
    a.channel = RISK_CHANNEL_WALLET;                         /* other channel */
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    strcpy(a.payer_id, "P-vip");
    ASSERT_STR_EQ(eval_str(r, f, &a), "amount_limit:decline");
    a = auth_make(T0, "P1", "M1", 184001);                   /* 1840.01 EUR > 2000 USD */
    strcpy(a.currency, "EUR");
    ASSERT_STR_EQ(eval_str(r, f, &a), "amount_limit:review");
    a.amount_minor = 183999;
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    risk_rules_free(r);
    risk_features_close(f);
}

static void test_velocity(void) {
    risk_rules_t *r = parse_ok("velocity window=1h max_count=3\n"
                               "velocity window=24h max_sum_usd=100 reason=velocity_sum_24h\n");
    risk_features_t *f = features_new();
    for (int i = 0; i < 3; i++) {
        risk_auth_t a = auth_make(T0 + i * 600, "P1", "M1", 1000);
        ASSERT_STR_EQ(eval_str(r, f, &a), ""); /* 1st..3rd in the hour */
        risk_features_observe(f, &a);
    }
    risk_auth_t a = auth_make(T0 + 1800, "P1", "M1", 1000);
    ASSERT_STR_EQ(eval_str(r, f, &a), "velocity:review"); /* 4th */
    a.ts_s = T0 + 3600;                                    /* the first left the window */
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    a.amount_minor = 7001;                                 /* 30 + 70.01 > 100 USD */
    ASSERT_STR_EQ(eval_str(r, f, &a), "velocity_sum_24h:review");
    risk_rules_free(r);
    risk_features_close(f);
}

static void test_blocklists(void) {
    risk_rules_t *r = parse_ok("block payer=P-bad\n"
                               "block device=dev-bad\n"
                               "block ip_prefix=10.1\n"
                               "block country=KP\n"
                               "block payer=P-watch action=review reason=watchlist\n");
    risk_features_t *f = features_new();
    risk_auth_t a = auth_make(T0, "P-bad", "M1", 100);
    ASSERT_STR_EQ(eval_str(r, f, &a), "blocklist_payer:decline");
    a = auth_make(T0, "P1", "M1", 100);
    strcpy(a.device_id, "dev-bad");
    ASSERT_STR_EQ(eval_str(r, f, &a), "blocklist_device:decline");
    a = auth_make(T0, "P1", "M1", 100);
    strcpy(a.ip_prefix, "10.1.7");
    ASSERT_STR_EQ(eval_str(r, f, &a), "blocklist_ip:decline");
    strcpy(a.ip_prefix, "10.10.7");                        /* not under 10.1 */
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    strcpy(a.country_merchant, "KP");
    ASSERT_STR_EQ(eval_str(r, f, &a), "blocklist_country:decline");
    a = auth_make(T0, "P-watch", "M1", 100);
    ASSERT_STR_EQ(eval_str(r, f, &a), "watchlist:review");
    risk_rules_free(r);
    risk_features_close(f);
}

/* Gambling between 00 and 05 local time; US is UTC-6 here, so 06:00 UTC is 00 local. */
static void test_mcc_hours(void) {
    risk_rules_t *r = parse_ok("mcc_hours mcc=7995,6051 hours=0-5 action=decline\n"
                               "mcc_hours mcc=6011 hours=22-3\n");
    risk_features_t *f = features_new();
    risk_auth_t a = auth_make(T0 + 6 * 3600, "P1", "M1", 100);
    a.mcc = 7995;
    ASSERT_STR_EQ(eval_str(r, f, &a), "mcc_hour:decline");
    a.ts_s = T0 + 12 * 3600;                               /* 06 local */
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    a.mcc = 6011;                                          /* wrapping range */
    a.ts_s = T0 + 4 * 3600;                                /* 22 local */
    ASSERT_STR_EQ(eval_str(r, f, &a), "mcc_hour:review");
    a.ts_s = T0 + 10 * 3600;                               /* 04 local */
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    risk_rules_free(r);
    risk_features_close(f);
}

/* Three payments of 9,500-9,999 USD within 7 days: the third is structuring. */
static void test_aml_structuring(void) {
    risk_rules_t *r = parse_ok("aml_structuring threshold_usd=10000 margin_pct=5 count=3 window=7d\n");
    risk_features_t *f = features_new();
    int64_t amounts[] = {990000, 500000, 960000};
    for (int i = 0; i < 3; i++) {
        risk_auth_t a = auth_make(T0 + i * 86400, "P1", "M1", amounts[i]);
        ASSERT_STR_EQ(eval_str(r, f, &a), "");
        risk_features_observe(f, &a);
    }
    risk_auth_t a = auth_make(T0 + 3 * 86400, "P1", "M2", 999900);
    ASSERT_STR_EQ(eval_str(r, f, &a), "aml_structuring:review");
    a.amount_minor = 1000000;                              /* at the threshold: reported anyway */
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    a.amount_minor = 999900;
    a.ts_s = T0 + 8 * 86400;                               /* the first left the 7 days */
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    risk_rules_free(r);
    risk_features_close(f);
}

/* ACC-mule receives 5,000 USD from two senders, then sends 4,500 out the same day. */
static void test_aml_mule(void) {
    risk_rules_t *r = parse_ok("aml_mule min_inflow_usd=1000 out_pct=80 action=decline\n");
    risk_features_t *f = features_new();
    risk_auth_t in1 = auth_make(T0, "ACC-a", "ACC-mule", 300000);
    risk_auth_t in2 = auth_make(T0 + 600, "ACC-b", "ACC-mule", 200000);
    risk_features_observe(f, &in1);
    risk_features_observe(f, &in2);
    risk_auth_t out = auth_make(T0 + 1200, "ACC-mule", "ACC-x", 450000);
    ASSERT_STR_EQ(eval_str(r, f, &out), "aml_rapid_in_out:decline");
    out.amount_minor = 100000;                             /* a small part: normal spending */
    ASSERT_STR_EQ(eval_str(r, f, &out), "");
    risk_auth_t other = auth_make(T0 + 1200, "ACC-a", "ACC-x", 450000); /* no inflow */
    ASSERT_STR_EQ(eval_str(r, f, &other), "");
    risk_rules_free(r);
    risk_features_close(f);
}

/* A payee first seen today gets money from a 4th distinct payer: fan-in. */
static void test_aml_fan_in(void) {
    risk_rules_t *r = parse_ok("aml_fan_in min_payers=4 payee_age=2d\n");
    risk_features_t *f = features_new();
    for (int i = 0; i < 3; i++) {
        char payer[16];
        snprintf(payer, sizeof(payer), "P%d", i);
        risk_auth_t a = auth_make(T0 + i * 60, payer, "NEW-payee", 10000);
        ASSERT_STR_EQ(eval_str(r, f, &a), "");
        risk_features_observe(f, &a);
    }
    risk_auth_t a = auth_make(T0 + 300, "P0", "NEW-payee", 10000); /* a repeat payer */
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    strcpy(a.payer_id, "P3");
    ASSERT_STR_EQ(eval_str(r, f, &a), "aml_many_payers_new_payee:review");
    a.ts_s = T0 + 3 * 86400;                               /* the payee is no longer new */
    ASSERT_STR_EQ(eval_str(r, f, &a), "");
    risk_rules_free(r);
    risk_features_close(f);
}

static void expect_bad(const char *text, uint32_t line_expected, const char *message_part) {
    risk_rules_t *rules = NULL;
    uint32_t line = 0;
    char message[160];
    ASSERT_STATUS(risk_rules_parse(text, &rules, &line, message, sizeof(message)),
                  PC_RISK_RULES_INVALID);
    ASSERT_TRUE(rules == NULL);
    ASSERT_EQ(line, line_expected);
    if (strstr(message, message_part) == NULL) TEST_FAIL("message '%s' lacks '%s'", message, message_part);
}

static void test_file_errors(void) {
    expect_bad("block payer=P1\nfrobnicate x=1\n", 2, "unknown rule kind");
    expect_bad("# c\n\nvelocity window=1h\n", 3, "velocity needs");
    expect_bad("velocity window=1h max_count=abc\n", 1, "bad value for max_count");
    expect_bad("velocity window=1h max_count=3 mcc=1\n", 1, "does not take 'mcc'");
    expect_bad("block payer\n", 1, "expected key=value");
    expect_bad("block payer=P1 action=maybe\n", 1, "bad value for action");
    expect_bad("mcc_hours mcc=7995 hours=25-3\n", 1, "bad value for hours");
    expect_bad("block payer=a device=b\n", 1, "bad value for device");
    expect_bad("amount_limit currency=USD\n", 1, "amount_limit needs");
    expect_bad("block payer=P1 reason=Bad-Code\n", 1, "bad value for reason");
    expect_bad("aml_fan_in min_payers=99 payee_age=1d\n", 1, "bad value for min_payers");
    expect_bad("thresholds review=0.9 decline=0.5\n", 1, "thresholds needs");
    /* the loader: a missing file; a file with a bad 3rd line */
    risk_rules_t *rules = NULL;
    uint32_t line = 0;
    char message[160];
    ASSERT_STATUS(risk_rules_load("/nonexistent/rules.conf", &rules, &line, message, sizeof(message)),
                  PC_NOT_FOUND);
    char path[256];
    temp_path(path, sizeof(path), "rules.conf");
    FILE *file = fopen(path, "w");
    fputs("block payer=P1\nvelocity window=1h max_count=5\nvelocity window=2d max_count=5\n", file);
    fclose(file);
    ASSERT_STATUS(risk_rules_load(path, &rules, &line, message, sizeof(message)),
                  PC_RISK_RULES_INVALID);
    ASSERT_EQ(line, 3);
    unlink(path);
}

static void test_thresholds_line(void) {
    risk_rules_t *r = parse_ok("thresholds review=0.4 decline=0.95\n");
    float review = 0, decline = 0;
    ASSERT_TRUE(risk_rules_thresholds(r, &review, &decline));
    ASSERT_TRUE(review > 0.399f && review < 0.401f);
    ASSERT_TRUE(decline > 0.949f && decline < 0.951f);
    ASSERT_EQ(risk_rules_count(r), 1);
    risk_rules_free(r);
}

int main(void) {
    TEST_RUN(test_amount_limits);
    TEST_RUN(test_velocity);
    TEST_RUN(test_blocklists);
    TEST_RUN(test_mcc_hours);
    TEST_RUN(test_aml_structuring);
    TEST_RUN(test_aml_mule);
    TEST_RUN(test_aml_fan_in);
    TEST_RUN(test_file_errors);
    TEST_RUN(test_thresholds_line);
    return test_finish();
}
