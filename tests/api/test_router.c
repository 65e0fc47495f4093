/* Goal: the route matcher (segments split once per pattern) answers every path exactly
 * as the plain matcher it replaced: the same result (found, no route, no method), the
 * same route and the same parameters. Method: that plain matcher is kept here as the
 * reference; every route's own pattern with sample parameters, then 200000 random
 * paths built from the table's segments, parameters, empty segments, extra and
 * trailing slashes, too many segments, with every method, each matched both ways. */
#include <sodium.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "test.h"

/* ---- the reference: the matcher as it was (strchr/strlen per pattern per request) */

static bool ref_split_path(char *path, char *segments[API_ROUTE_SEGMENTS_MAX], uint32_t *count) {
    *count = 0;
    char *cursor = path;
    while (*cursor == '/') cursor++;
    while (*cursor != '\0') {
        if (*count == API_ROUTE_SEGMENTS_MAX) return false;
        segments[(*count)++] = cursor;
        char *slash = strchr(cursor, '/');
        if (slash == NULL) break;
        *slash = '\0';
        cursor = slash + 1;
        if (*cursor == '\0') return false;
    }
    return true;
}

static bool ref_pattern_matches(const char *pattern, char *const *segments, uint32_t count,
                                const char *params[API_ROUTE_PARAMS_MAX], uint32_t *param_count) {
    uint32_t index = 0;
    *param_count = 0;
    const char *cursor = pattern;
    while (*cursor == '/') cursor++;
    while (*cursor != '\0') {
        if (index >= count) return false;
        if (cursor[0] != '{' && cursor[0] != segments[index][0]) return false;
        const char *end = strchr(cursor, '/');
        size_t bytes = end ? (size_t)(end - cursor) : strlen(cursor);
        if (cursor[0] == '{') {
            if (segments[index][0] == '\0' || *param_count == API_ROUTE_PARAMS_MAX) return false;
            params[(*param_count)++] = segments[index];
        } else if (strlen(segments[index]) != bytes || memcmp(segments[index], cursor, bytes) != 0) {
            return false;
        }
        index++;
        cursor += bytes;
        while (*cursor == '/') cursor++;
    }
    return index == count;
}

static api_match ref_route_match(const char *method, char *path_buf, uint32_t *route_index,
                                 const char *params[API_ROUTE_PARAMS_MAX], uint32_t *param_count) {
    char *segments[API_ROUTE_SEGMENTS_MAX];
    uint32_t count;
    if (!ref_split_path(path_buf, segments, &count)) return API_MATCH_NO_ROUTE;
    api_match result = API_MATCH_NO_ROUTE;
    for (uint32_t i = 0; i < api_route_count; i++) {
        const char *found[API_ROUTE_PARAMS_MAX];
        uint32_t found_count;
        if (!ref_pattern_matches(api_routes[i].pattern, segments, count, found, &found_count)) continue;
        if (strcmp(api_routes[i].method, method) != 0) {
            result = API_MATCH_NO_METHOD;
            continue;
        }
        *route_index = i;
        *param_count = found_count;
        memcpy(params, found, sizeof(found[0]) * found_count);
        return API_MATCH_FOUND;
    }
    return result;
}

/* ---- both ways */

static const char *const methods[] = {"GET", "POST", "DELETE", "PUT", "OTHER"};
static uint64_t found_count, no_route_count, no_method_count;

static void compare(const char *method, const char *path) {
    char a[512], b[512];
    pc_str_copy(a, sizeof a, path);
    pc_str_copy(b, sizeof b, path);
    uint32_t route_a = 999, route_b = 999, count_a = 0, count_b = 0;
    const char *params_a[API_ROUTE_PARAMS_MAX] = {0}, *params_b[API_ROUTE_PARAMS_MAX] = {0};
    api_match got = api_route_match(method, a, &route_a, params_a, &count_a);
    api_match want = ref_route_match(method, b, &route_b, params_b, &count_b);
    if (got != want) TEST_FAIL("%s %s: matched %d, the reference %d", method, path, (int)got, (int)want);
    if (got == API_MATCH_FOUND) found_count++;
    else if (got == API_MATCH_NO_ROUTE) no_route_count++;
    else no_method_count++;
    if (got != API_MATCH_FOUND) return;
    if (route_a != route_b) TEST_FAIL("%s %s: route %u, the reference %u", method, path, route_a, route_b);
    if (count_a != count_b) TEST_FAIL("%s %s: %u params, the reference %u", method, path, count_a, count_b);
    for (uint32_t i = 0; i < count_a; i++) {
        if (strcmp(params_a[i], params_b[i]) != 0) TEST_FAIL("%s %s: param %u differs", method, path, i);
        if (params_a[i] < a || params_a[i] >= a + sizeof a) TEST_FAIL("%s %s: param outside the path", method, path);
    }
}

/* Every route's own pattern, its {params} filled in. */
static void test_table(void) {
    for (uint32_t i = 0; i < api_route_count; i++) {
        char path[256] = "";
        size_t at = 0;
        for (const char *p = api_routes[i].pattern; *p != '\0' && at + 8 < sizeof path;) {
            if (*p == '{') {
                at += (size_t)snprintf(path + at, sizeof path - at, "x_%u", i);
                while (*p != '\0' && *p != '}') p++;
                if (*p == '}') p++;
            } else {
                path[at++] = *p++;
                path[at] = '\0';
            }
        }
        uint32_t route = 999, count = 0;
        const char *params[API_ROUTE_PARAMS_MAX];
        char buf[256];
        pc_str_copy(buf, sizeof buf, path);
        ASSERT_EQ(api_route_match(api_routes[i].method, buf, &route, params, &count), API_MATCH_FOUND);
        ASSERT_STR_EQ(api_routes[route].pattern, api_routes[i].pattern);
        for (size_t m = 0; m < sizeof methods / sizeof methods[0]; m++) compare(methods[m], path);
    }
}

static const char *const pieces[] = {"v1", "payments", "capture", "accounts", "transfers", "merchants", "keys",
                                     "risk", "reviews", "approve", "webhook-endpoints", "deliveries", "admin",
                                     "vault", "rotate", "rotation", "metrics", "healthz", "dashboard", "assets",
                                     "pay_1", "x", "", "v", "v12", "paymentsx", "refunds", "wallets", "top_ups",
                                     "channels", "callbacks", "events", "redeliver", "api-keys", "stats"};

static void random_path(char *out, size_t out_bytes) {
    uint32_t segments = randombytes_uniform(API_ROUTE_SEGMENTS_MAX + 3);
    size_t at = 0;
    out[0] = '\0';
    uint32_t leading = randombytes_uniform(8) == 0 ? 2 : 1;
    if (randombytes_uniform(16) == 0) leading = 0;
    for (uint32_t i = 0; i < leading && at + 1 < out_bytes; i++) out[at++] = '/';
    for (uint32_t s = 0; s < segments; s++) {
        const char *piece = s == 0 && randombytes_uniform(4) != 0
                                ? "v1"
                                : pieces[randombytes_uniform(sizeof pieces / sizeof pieces[0])];
        at += (size_t)snprintf(out + at, out_bytes - at, "%s", piece);
        if (s + 1 < segments && at + 1 < out_bytes) out[at++] = '/';
    }
    if (randombytes_uniform(10) == 0 && at + 1 < out_bytes) out[at++] = '/';
    out[at < out_bytes ? at : out_bytes - 1] = '\0';
}

/* A route's pattern, each {param} a random piece (maybe empty), one segment at times
 * replaced by a random piece, a slash at times doubled or added at the end. */
static void near_path(char *out, size_t out_bytes) {
    const char *p = api_routes[randombytes_uniform(api_route_count)].pattern;
    size_t at = 0;
    while (*p != '\0' && at + 40 < out_bytes) {
        if (*p == '{') {
            at += (size_t)snprintf(out + at, out_bytes - at, "%s",
                                   pieces[randombytes_uniform(sizeof pieces / sizeof pieces[0])]);
            while (*p != '\0' && *p != '}') p++;
            if (*p == '}') p++;
        } else if (*p == '/' && randombytes_uniform(20) == 0) {
            out[at++] = '/';
            out[at++] = *p++;
        } else if (*p != '/' && (p[-1] == '/') && randombytes_uniform(12) == 0) {
            at += (size_t)snprintf(out + at, out_bytes - at, "%s",
                                   pieces[randombytes_uniform(sizeof pieces / sizeof pieces[0])]);
            while (*p != '\0' && *p != '/') p++;
        } else {
            out[at++] = *p++;
        }
    }
    if (randombytes_uniform(20) == 0 && at + 1 < out_bytes) out[at++] = '/';
    out[at] = '\0';
}

static void test_random(void) {
    char path[512];
    for (int i = 0; i < 200000; i++) {
        if (i % 2 == 0) random_path(path, sizeof path);
        else near_path(path, sizeof path);
        compare(methods[randombytes_uniform(sizeof methods / sizeof methods[0])], path);
    }
    printf("found=%llu no_route=%llu no_method=%llu\n", (unsigned long long)found_count,
           (unsigned long long)no_route_count, (unsigned long long)no_method_count);
    ASSERT_TRUE(found_count > 1000);
    ASSERT_TRUE(no_route_count > 1000);
    ASSERT_TRUE(no_method_count > 1000);
}

int main(void) {
    if (sodium_init() < 0) TEST_FAIL("sodium_init");
    TEST_RUN(test_table);
    TEST_RUN(test_random);
    return test_finish();
}
