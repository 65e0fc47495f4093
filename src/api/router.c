/* api/router.c: matches a request path against the route table. Paths are split on
 * '/' in place; a {name} segment matches any one non-empty segment. The table is
 * small (tens of routes), so a linear scan is simplest; each pattern is split once
 * (at the first match) into its segments with their lengths, so a route whose
 * segment count differs is passed over without reading a byte of it, and a literal
 * segment is one length check and one memcmp. */
#include <pthread.h>
#include <string.h>

#include "api/api_internal.h"
#include "obs/obs.h"

/* A pattern split into segments: a literal's text and length, or a {param} (NULL). */
typedef struct {
    uint32_t count;
    const char *text[API_ROUTE_SEGMENTS_MAX];
    uint32_t bytes[API_ROUTE_SEGMENTS_MAX];
} route_segments;

static route_segments compiled[OBS_ROUTES_MAX];
static pthread_once_t compiled_once = PTHREAD_ONCE_INIT;

/* Splits one pattern (never written: literals point into the table's strings). */
static void compile_pattern(const char *pattern, route_segments *out) {
    out->count = 0;
    const char *cursor = pattern;
    while (*cursor == '/') cursor++;
    while (*cursor != '\0') {
        PC_ASSERT(out->count < API_ROUTE_SEGMENTS_MAX);
        const char *end = strchr(cursor, '/');
        size_t bytes = end ? (size_t)(end - cursor) : strlen(cursor);
        out->text[out->count] = cursor[0] == '{' ? NULL : cursor;
        out->bytes[out->count] = (uint32_t)bytes;
        out->count++;
        cursor += bytes;
        while (*cursor == '/') cursor++;
    }
}

static void compile_routes(void) {
    PC_ASSERT(api_route_count <= OBS_ROUTES_MAX);
    for (uint32_t i = 0; i < api_route_count; i++) compile_pattern(api_routes[i].pattern, &compiled[i]);
}

/* Splits "/v1/accounts/x" into segments (in place) with their lengths; false when
 * too many, or on a trailing slash (not a route). */
static bool split_path(char *path, char *segments[API_ROUTE_SEGMENTS_MAX],
                       uint32_t bytes[API_ROUTE_SEGMENTS_MAX], uint32_t *count) {
    *count = 0;
    char *cursor = path;
    while (*cursor == '/') cursor++;
    while (*cursor != '\0') {
        if (*count == API_ROUTE_SEGMENTS_MAX) return false;
        char *end = cursor;
        while (*end != '\0' && *end != '/') end++;
        segments[*count] = cursor;
        bytes[*count] = (uint32_t)(end - cursor);
        (*count)++;
        if (*end == '\0') break;
        *end = '\0';
        cursor = end + 1;
        if (*cursor == '\0') return false;
    }
    return true;
}

/* True when the path's segments match route 'r'; params point into 'segments'. */
static bool route_matches(const route_segments *r, char *const *segments, const uint32_t *bytes,
                          uint32_t count, const char *params[API_ROUTE_PARAMS_MAX], uint32_t *param_count) {
    if (r->count != count) return false;
    *param_count = 0;
    for (uint32_t s = 0; s < count; s++) {
        if (r->text[s] == NULL) {
            if (bytes[s] == 0 || *param_count == API_ROUTE_PARAMS_MAX) return false;
            params[(*param_count)++] = segments[s];
        } else if (r->bytes[s] != bytes[s] || memcmp(r->text[s], segments[s], bytes[s]) != 0) {
            return false;
        }
    }
    return true;
}

api_match api_route_match(const char *method, char *path_buf, uint32_t *route_index,
                          const char *params[API_ROUTE_PARAMS_MAX], uint32_t *param_count) {
    pthread_once(&compiled_once, compile_routes);
    char *segments[API_ROUTE_SEGMENTS_MAX];
    uint32_t bytes[API_ROUTE_SEGMENTS_MAX];
    uint32_t count;
    if (!split_path(path_buf, segments, bytes, &count)) return API_MATCH_NO_ROUTE;
    api_match result = API_MATCH_NO_ROUTE;
    for (uint32_t i = 0; i < api_route_count; i++) {
        const char *found[API_ROUTE_PARAMS_MAX];
        uint32_t found_count;
        if (!route_matches(&compiled[i], segments, bytes, count, found, &found_count)) continue;
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

const char *api_route_name(uint32_t route_index) {
    if (route_index >= api_route_count) return "unmatched";
    return api_routes[route_index].pattern;
}
