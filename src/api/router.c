/* api/router.c: matches a request path against the route table. Paths are split on
 * '/' in place; a {name} segment matches any one non-empty segment. The table is
 * small (tens of routes), so a linear scan is both simplest and fast enough. */
#include <string.h>

#include "api/api_internal.h"
#include "obs/obs.h"


/* Splits "/v1/accounts/x" into segments (in place); false when too many. */
static bool split_path(char *path, char *segments[API_ROUTE_SEGMENTS_MAX], uint32_t *count) {
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
        if (*cursor == '\0') return false; /* trailing slash: not a route */
    }
    return true;
}

/* True when 'segments' match 'pattern'; params point into 'segments'. */
static bool pattern_matches(const char *pattern, char *const *segments, uint32_t count,
                            const char *params[API_ROUTE_PARAMS_MAX], uint32_t *param_count) {
    uint32_t index = 0;
    *param_count = 0;
    const char *cursor = pattern;
    while (*cursor == '/') cursor++;
    while (*cursor != '\0') {
        if (index >= count) return false;
        /* a literal whose first byte differs: most routes part here, before any scan */
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

api_match api_route_match(const char *method, char *path_buf, uint32_t *route_index,
                          const char *params[API_ROUTE_PARAMS_MAX], uint32_t *param_count) {
    char *segments[API_ROUTE_SEGMENTS_MAX];
    uint32_t count;
    if (!split_path(path_buf, segments, &count)) return API_MATCH_NO_ROUTE;
    api_match result = API_MATCH_NO_ROUTE;
    for (uint32_t i = 0; i < api_route_count; i++) {
        const char *found[API_ROUTE_PARAMS_MAX];
        uint32_t found_count;
        if (!pattern_matches(api_routes[i].pattern, segments, count, found, &found_count)) continue;
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
