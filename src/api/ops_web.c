/* api/ops_web.c: the dashboard's files (built from web/ by `make build`), read once at
 * start into memory and served from there:
 *   GET /dashboard                 index.html, Cache-Control: no-cache
 *   GET /dashboard/assets/{file}   content-hashed names: cached for a year, immutable
 * A request names a file of the table or gets 404: nothing is opened per request, so
 * no path can reach outside the directory. Every answer carries a strict
 * Content-Security-Policy (scripts, styles and fetches from this origin only; no inline
 * code), nosniff and an ETag (If-None-Match answers 304).
 * The directory: --web-dir, else <bin>/../share/paycore/web (make install), else
 * <bin>/web (the build tree). */
#include <dirent.h>
#include <libgen.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "api/api_ops.h"
#include "core/core.h"
#include "obs/obs.h"

#define WEB_CSP "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " \
                "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "        \
                "frame-ancestors 'none'"
#define WEB_PATH_BYTES PC_PATH_BYTES_MAX

typedef struct {
    char *name;                 /* "index.html", "assets/app-4F2A.js" */
    const char *content_type;
    char *body;
    size_t bytes;
    char etag[20];              /* "\"" + 16 hex + "\"" */
    bool immutable;             /* under assets/: the build puts a content hash in the name */
} web_file;

static struct {
    web_file files[WEB_ASSET_FILES_MAX];
    uint32_t count;
    size_t bytes;
    char dir[WEB_PATH_BYTES];
} web;

static const struct {
    const char *extension;
    const char *content_type;
} web_types[] = {
    {".html", "text/html; charset=utf-8"},  {".js", "text/javascript; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},    {".svg", "image/svg+xml"},
    {".png", "image/png"},                  {".ico", "image/x-icon"},
    {".woff2", "font/woff2"},               {".json", "application/json"},
};

static const char *type_of(const char *name) {
    size_t name_bytes = strlen(name);
    for (size_t i = 0; i < sizeof web_types / sizeof web_types[0]; i++) {
        size_t ext_bytes = strlen(web_types[i].extension);
        if (name_bytes > ext_bytes && strcmp(name + name_bytes - ext_bytes, web_types[i].extension) == 0) {
            return web_types[i].content_type;
        }
    }
    return NULL;
}

/* Reads 'path' whole into a new buffer; false when unreadable or over the budget. */
static bool read_whole(const char *path, char **body, size_t *bytes) {
    FILE *file = fopen(path, "rb");
    if (file == NULL) return false;
    struct stat st;
    bool ok = fstat(fileno(file), &st) == 0 && S_ISREG(st.st_mode) &&
              web.bytes + (size_t)st.st_size <= WEB_ASSET_BYTES_MAX;
    *body = ok ? malloc((size_t)st.st_size + 1) : NULL;
    ok = ok && *body != NULL && fread(*body, 1, (size_t)st.st_size, file) == (size_t)st.st_size;
    fclose(file);
    if (!ok) {
        free(*body);
        *body = NULL;
        return false;
    }
    *bytes = (size_t)st.st_size;
    return true;
}

static bool add_file(const char *dir, const char *name) {
    const char *type = type_of(name);
    if (type == NULL) return true; /* not a kind of file the page uses: not served */
    if (web.count == WEB_ASSET_FILES_MAX) return false;
    char path[WEB_PATH_BYTES];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    web_file *file = &web.files[web.count];
    if (!read_whole(path, &file->body, &file->bytes)) return false;
    file->name = pc_strdup(name);
    if (file->name == NULL) {
        free(file->body);
        return false;
    }
    file->content_type = type;
    file->immutable = strncmp(name, "assets/", 7) == 0;
    uint8_t hash[8];
    crypto_generichash(hash, sizeof hash, (const uint8_t *)file->body, file->bytes, NULL, 0);
    char hex[17];
    sodium_bin2hex(hex, sizeof hex, hash, sizeof hash);
    snprintf(file->etag, sizeof file->etag, "\"%s\"", hex);
    web.bytes += file->bytes;
    web.count++;
    return true;
}

static bool load_dir(const char *dir) {
    if (!add_file(dir, "index.html")) return false;
    char assets[WEB_PATH_BYTES];
    snprintf(assets, sizeof assets, "%s/assets", dir);
    DIR *listing = opendir(assets);
    if (listing == NULL) return true;
    bool ok = true;
    for (struct dirent *entry; ok && (entry = readdir(listing)) != NULL;) {
        if (entry->d_name[0] == '.') continue;
        char name[512];
        snprintf(name, sizeof name, "assets/%.400s", entry->d_name);
        ok = add_file(dir, name);
    }
    closedir(listing);
    return ok;
}

/* <bin>/../share/paycore/web, then <bin>/web; false when neither holds index.html. */
static bool default_dir(char *out, size_t room) {
    char exe[WEB_PATH_BYTES];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = '\0';
    const char *bin_dir = dirname(exe);
    const char *const layouts[] = {"%s/../share/paycore/web", "%s/web"};
    for (size_t i = 0; i < 2; i++) {
        char index[WEB_PATH_BYTES + 16];
        snprintf(out, room, layouts[i], bin_dir);
        snprintf(index, sizeof index, "%s/index.html", out);
        if (access(index, R_OK) == 0) return true;
    }
    return false;
}

pc_status api_ops_web_load(const char *web_dir) {
    api_ops_web_free();
    if (web_dir != NULL) {
        pc_str_copy(web.dir, sizeof web.dir, web_dir);
    } else if (!default_dir(web.dir, sizeof web.dir)) {
        obs_log(OBS_LEVEL_WARN, "dashboard: no built assets beside the binary (make build, or --web-dir): /dashboard answers 404", NULL);
        return PC_OK;
    }
    if (!load_dir(web.dir)) {
        obs_logf(OBS_LEVEL_ERROR, "dashboard: cannot load %.200s (index.html, at most %u files and %u bytes)",
                 web.dir, (unsigned)WEB_ASSET_FILES_MAX, (unsigned)WEB_ASSET_BYTES_MAX);
        api_ops_web_free();
        return web_dir != NULL ? PC_INVALID_ARGUMENT : PC_OK; /* asked for by name: an error */
    }
    obs_logf(OBS_LEVEL_INFO, "dashboard: %u files from %.200s", web.count, web.dir);
    return PC_OK;
}

void api_ops_web_free(void) {
    for (uint32_t i = 0; i < web.count; i++) {
        free(web.files[i].name);
        free(web.files[i].body);
    }
    memset(&web, 0, sizeof web);
}

static const web_file *web_find(const char *name) {
    for (uint32_t i = 0; i < web.count; i++) {
        if (strcmp(web.files[i].name, name) == 0) return &web.files[i];
    }
    return NULL;
}

static void web_reply(api_request_t *req, const char *name) {
    const web_file *file = web_find(name);
    if (file == NULL) {
        api_reply_error(req, PC_NOT_FOUND, NULL, web.count == 0 ? "the dashboard is not installed" : NULL);
        return;
    }
    const char *if_none_match = api_header(req, "If-None-Match");
    bool fresh = if_none_match != NULL && strstr(if_none_match, file->etag) != NULL;
    if (fresh) api_reply_text(req, 304, file->content_type, "", 0);
    else api_reply_text(req, 200, file->content_type, file->body, file->bytes);
    api_reply_header(req, "Cache-Control", file->immutable ? "public, max-age=31536000, immutable" : "no-cache");
    api_reply_header(req, "ETag", file->etag);
    api_reply_header(req, "Content-Security-Policy", WEB_CSP);
    api_reply_header(req, "X-Content-Type-Options", "nosniff");
    api_reply_header(req, "Referrer-Policy", "no-referrer");
    api_reply_header(req, "X-Frame-Options", "DENY");
}

void api_route_dashboard(api_request_t *req) {
    web_reply(req, "index.html");
}

void api_route_dashboard_asset(api_request_t *req) {
    char name[512];
    snprintf(name, sizeof name, "assets/%.400s", api_param(req, 0));
    web_reply(req, name);
}
