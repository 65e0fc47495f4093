/* Goal: a channels file is refused with the line of the mistake, for syntax errors
 * (jansson's line) and for meaning (unknown channel kind, a weight that is not a
 * number, an impossible eligibility range, unknown fields, unknown channels in routing,
 * duplicates, a channel's max_connections outside 1..256, whose edges are taken); a
 * refused reload keeps the running configuration; a good reload
 * replaces it. Method: files written line by line with the mistake on a known line;
 * gw_config_check for loading, a started gateway (no calls) for reloads. */
#include "gw_test_util.h"

#define URL "\"url\":\"http://127.0.0.1:9\""

typedef struct {
    const char *name;
    const char *text;
    uint32_t line;
    const char *says;
} bad_case;

static const bad_case bad[] = {
    {"syntax", "{\"channels\":[\n {\"name\":\"a\",\"kind\":\"card\"," URL "}\n ]\n \"routing\":{}\n}\n", 4, "'}' expected"},
    {"duplicate key", "{\"channels\":[\n {\"name\":\"a\",\n  \"kind\":\"card\",\n  \"kind\":\"card\"," URL "}]}\n", 4, "duplicate"},
    {"unknown kind", "{\"channels\":[\n {\"name\":\"a\",\"kind\":\"card\"," URL "},\n {\"name\":\"b\",\n  \"kind\":\"telegraph\"," URL "}]}\n", 4,
     "unknown channel kind 'telegraph'"},
    {"weight string", "{\"channels\":[\n {\"name\":\"a\",\"kind\":\"card\"," URL "}],\n \"routing\":{\"strategy\":\"weighted\",\n  \"weights\":{\n   \"a\":\"70\"}}}\n", 5,
     "routing.weights.a: the weight is not a number"},
    {"weight real", "{\"channels\":[\n {\"name\":\"a\",\"kind\":\"card\"," URL "}],\n \"routing\":{\"strategy\":\"weighted\",\"weights\":{\n\n \"a\":70.5}}}\n", 5,
     "not a number"},
    {"impossible range", "{\"channels\":[\n {\"name\":\"a\",\"kind\":\"card\"," URL ",\n  \"eligibility\":{\n   \"amount_min_minor\":500,\n   \"amount_max_minor\":100}}]}\n", 5,
     "impossible amount range"},
    {"zero amount", "{\"channels\":[\n {\"name\":\"a\",\"kind\":\"card\"," URL ",\n  \"eligibility\":{\"amount_min_minor\":0}}]}\n", 3, "at least 1"},
    {"unknown field", "{\"channels\":[\n {\"name\":\"a\",\"kind\":\"card\"," URL ",\n  \"timeout_msec\":5}]}\n", 3,
     "channels[0].timeout_msec: unknown field"},
    {"routing unknown channel", "{\"channels\":[\n {\"name\":\"a\",\"kind\":\"card\"," URL "}],\n \"routing\":{\"priority\":[\"a\",\n  \"b\"]}}\n", 4,
     "no channel named 'b'"},
    {"duplicate name", "{\"channels\":[\n {\"name\":\"a\",\"kind\":\"card\"," URL "},\n {\"kind\":\"wallet\"," URL ",\n  \"name\":\"a\"}]}\n", 4,
     "a second channel named 'a'"},
    {"bad currency", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n \"eligibility\":{\"currencies\":[\"EUR\",\n  \"EURO\"]}}]}\n", 3,
     "not an ISO 4217 currency"},
    {"bad code class", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n \"codes\":{\n  \"05\":\"maybe\"}}]}\n", 3,
     "channels[0].codes.05"},
    {"bad url", "{\"channels\":[\n{\"name\":\"a\",\"kind\":\"card\",\n\"url\":\"ftp://x\"}]}\n", 3, "http://"},
    {"no channels", "{\n\"channels\":[]}\n", 2, "names no channel"},
    {"timeouts", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n\"timeout_ms\":100,\n\"connect_timeout_ms\":500}]}\n", 3,
     "longer than timeout_ms"},
    {"weighted without weights", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL "}],\n\"routing\":{\n\"strategy\":\"weighted\"}}\n", 3,
     "needs routing.weights"},
    {"strategy", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL "}],\n\"routing\":{\n\"strategy\":\"direct\"}}\n", 3,
     "unknown strategy"},
    {"breaker", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n\"breaker\":{\"window_calls\":5,\n\"calls_min\":6}}]}\n", 3,
     "larger than window_calls"},
    {"window zero", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n\"authorization_window_s\":0}]}\n", 2,
     "channels[0].authorization_window_s: must be between 1"},
    {"window real", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n\n\"authorization_window_s\":1.5}]}\n", 3,
     "must be an integer"},
    {"partial captures string", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n\"partial_captures\":\"no\"}]}\n", 2,
     "channels[0].partial_captures: must be true or false"},
    {"no connections", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n\"max_connections\":0}]}\n", 2,
     "channels[0].max_connections: must be between 1 and 256"},
    {"too many connections", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n\n\"max_connections\":257}]}\n",
     3, "channels[0].max_connections: must be between 1 and 256"},
    {"connections negative", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n\"max_connections\":-1}]}\n", 2,
     "channels[0].max_connections: must be between 1 and 256"},
    {"connections real", "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\n\"max_connections\":2.5}]}\n", 2,
     "channels[0].max_connections: must be an integer"},
    {"not an object", "[1,\n2]\n", 1, "one JSON object"},
};

/* The edges of max_connections' range are taken. */
static void test_connection_edges(void) {
    char path[512];
    gwt_path(path, sizeof path, "edges.json");
    static const unsigned edges[] = {1, GW_HTTP_CONNECTIONS_MAX};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        gwt_write(path, "{\"channels\":[{\"name\":\"a\",\"kind\":\"card\"," URL ",\"max_connections\":%u}]}\n", edges[i]);
        gw_config_error_t error;
        pc_status status = gw_config_check(path, &error);
        if (status != PC_OK) TEST_FAIL("max_connections %u: refused: line %u '%s'", edges[i], error.line, error.message);
    }
}

static void test_refusals(void) {
    char path[512];
    gwt_path(path, sizeof path, "bad.json");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gwt_write(path, "%s", bad[i].text);
        gw_config_error_t error;
        pc_status status = gw_config_check(path, &error);
        if (status != PC_GATEWAY_CONFIG_INVALID || error.line != bad[i].line ||
            strstr(error.message, bad[i].says) == NULL) {
            TEST_FAIL("%s: got %s line %u '%s', want line %u '%s'", bad[i].name, pc_status_code(status),
                      error.line, error.message, bad[i].line, bad[i].says);
        }
    }
}

static const char good_text[] =
    "{\n"
    "  \"channels\": [\n"
    "    {\"name\": \"card_a\", \"kind\": \"card\", \"url\": \"http://127.0.0.1:9/\", \"api_key\": \"k\",\n"
    "     \"connect_timeout_ms\": 500, \"timeout_ms\": 3000, \"codes\": {\"05\": \"hard_decline\", \"N7\": \"hard_decline\"},\n"
    "     \"eligibility\": {\"methods\": [\"card\"], \"currencies\": [\"EUR\", \"USD\"], \"countries\": [\"DE\"],\n"
    "                     \"amount_min_minor\": 1, \"amount_max_minor\": 100000},\n"
    "     \"breaker\": {\"failures_consecutive\": 3, \"error_rate_percent\": 40, \"window_calls\": 10,\n"
    "                 \"calls_min\": 5, \"cooldown_ms\": 100, \"half_open_probes\": 2}},\n"
    "    {\"name\": \"card-b\", \"kind\": \"card\", \"url\": \"https://acquirer.example/api\"},\n"
    "    {\"name\": \"w\", \"kind\": \"wallet\", \"url\": \"http://127.0.0.1:9\"}\n"
    "  ],\n"
    "  \"routing\": {\"strategy\": \"success_rate\", \"priority\": [\"card-b\"], \"fallback\": [\"card_a\"],\n"
    "              \"weights\": {\"card\\u005fa\": 3, \"card-b\": 1},\n"
    "              \"success_rate\": {\"window_calls\": 50, \"window_ms\": 60000, \"calls_min\": 5,\n"
    "                               \"exploration_percent\": 5, \"elimination_percent\": 60},\n"
    "              \"attempts_max\": 2},\n"
    "  \"status_inquiry\": {\"delay_ms\": 10, \"attempts\": 2, \"interval_ms\": 50}\n"
    "}\n";

static json_t *channels_of(gw_t *gw) {
    json_t *all = gw_channels_json(gw);
    ASSERT_TRUE(all != NULL);
    return all;
}

static void test_good_and_reload(void) {
    char path[512];
    gwt_path(path, sizeof path, "good.json");
    gwt_write(path, "%s", good_text);
    gw_config_error_t error;
    ASSERT_STATUS(gw_config_check(path, &error), PC_OK);
    gw_t *gw = gwt_gateway(path);
    json_t *all = channels_of(gw);
    ASSERT_EQ(json_array_size(json_object_get(all, "channels")), 3);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(all, "routing"), "strategy")), "success_rate");
    const json_t *first = json_array_get(json_object_get(all, "channels"), 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(first, "url")), "http://127.0.0.1:9"); /* '/' trimmed */
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(first, "breaker"), "state")), "closed");
    uint64_t version = (uint64_t)json_integer_value(json_object_get(json_object_get(all, "config"), "version"));
    json_decref(all);

    /* a bad file: refused with its line, the old configuration keeps serving */
    gwt_write(path, "{\"channels\":[\n{\"name\":\"x\",\"kind\":\"pigeon\",\"url\":\"http://127.0.0.1:9\"}]}\n");
    ASSERT_STATUS(gw_reload(gw, &error), PC_GATEWAY_CONFIG_INVALID);
    ASSERT_EQ(error.line, 2);
    all = channels_of(gw);
    ASSERT_EQ(json_array_size(json_object_get(all, "channels")), 3);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(all, "config"), "version")), (json_int_t)version);
    ASSERT_EQ(json_integer_value(json_object_get(json_object_get(all, "config"), "reloads_refused")), 1);
    json_decref(all);

    gw_channel_terms_t terms;
    ASSERT_STATUS(gw_channel_terms(gw, "card_a", &terms), PC_OK);          /* the defaults */
    ASSERT_TRUE(terms.partial_captures);
    ASSERT_EQ(terms.authorization_window_s, 0);
    ASSERT_STATUS(gw_channel_terms(gw, "nope", &terms), PC_NOT_FOUND);

    /* a good one replaces it, and its terms are the channel's from then on */
    gwt_write(path, "{\"channels\":[{\"name\":\"card_a\",\"kind\":\"card\",\"url\":\"http://127.0.0.1:9\",\n"
                    " \"authorization_window_s\":86400,\"partial_captures\":false}]}\n");
    ASSERT_STATUS(gw_reload(gw, &error), PC_OK);
    ASSERT_STATUS(gw_channel_terms(gw, "card_a", &terms), PC_OK);
    ASSERT_TRUE(!terms.partial_captures);
    ASSERT_EQ(terms.authorization_window_s, 86400);
    all = channels_of(gw);
    ASSERT_EQ(json_array_size(json_object_get(all, "channels")), 1);
    ASSERT_TRUE(json_integer_value(json_object_get(json_object_get(all, "config"), "version")) > (json_int_t)version);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_object_get(all, "routing"), "strategy")), "priority");
    json_decref(all);
    gw_stop(gw);
}

static void test_missing_file(void) {
    gw_config_error_t error;
    ASSERT_STATUS(gw_config_check("/nonexistent/channels.json", &error), PC_GATEWAY_CONFIG_INVALID);
    ASSERT_TRUE(strstr(error.message, "cannot open") != NULL);
    ASSERT_EQ(error.line, 0);
}

/* The demo's file loads, names the three channels and is private to its owner. */
static void test_demo_file(void) {
    char path[512];
    gwt_path(path, sizeof path, "demo.json");
    ASSERT_STATUS(gw_demo_config_write(path, "http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3",
                                       "whsec", "http://127.0.0.1:8080"),
                  PC_OK);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 0777, 0600);
    gw_t *gw = gwt_gateway(path);
    json_t *all = channels_of(gw);
    const json_t *list = json_object_get(all, "channels");
    ASSERT_EQ(json_array_size(list), 3);
    ASSERT_STR_EQ(json_string_value(json_object_get(json_array_get(list, 2), "kind")), "bank");
    json_decref(all);
    gw_stop(gw);
}

int main(void) {
    gwt_setup("gw-config");
    char log[512];
    gwt_path(log, sizeof log, "log.txt");
    ASSERT_TRUE(obs_log_open(log, OBS_LEVEL_INFO));
    TEST_RUN(test_refusals);
    TEST_RUN(test_connection_edges);
    TEST_RUN(test_good_and_reload);
    TEST_RUN(test_missing_file);
    TEST_RUN(test_demo_file);
    ASSERT_TRUE(gwt_log_has(log, "reload of", "refused (line 2", "unknown channel kind 'pigeon'", NULL));
    obs_log_close();
    gwt_teardown();
    return test_finish();
}
