/* core/json_fields.h: reading the fields of an already parsed JSON object (jansson),
 * shared by every decoder of a request body (the API's codec, payments). The first
 * bad field refuses with its code and its dotted place ("payment_method.card.number");
 * an absent or null field is "not given". */
#ifndef PAYCORE_CORE_JSON_FIELDS_H
#define PAYCORE_CORE_JSON_FIELDS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "paycore/status.h"

typedef struct {
    pc_status status;       /* PC_OK or the refusing code */
    int http_status;        /* 400 for every field error */
    char field[128];        /* "path.key"; "" when the whole body is at fault */
    char message[192];
} pc_field_error_t;

/* Fills *err: the place is "path.key", "key" or "path"; a NULL message is the code's own. */
void pc_field_fail(pc_field_error_t *err, pc_status status, const char *path, const char *key,
                   const char *message);
/* Refuses the first key not in 'allowed' (NULL-terminated): a typo is never ignored. */
bool pc_field_check_known(const json_t *object, const char *const *allowed, const char *path,
                          pc_field_error_t *err);
/* A string of at most bytes_max bytes without NUL; absent gives *out = NULL. */
bool pc_field_string(const json_t *object, const char *key, bool required, size_t bytes_max,
                     const char *path, const char **out, pc_field_error_t *err);
/* A nested object; absent gives *out = NULL. */
bool pc_field_object(const json_t *object, const char *key, bool required, const char *path,
                     const json_t **out, pc_field_error_t *err);
/* A JSON integer within [min, max]; absent leaves *out alone. */
bool pc_field_int(const json_t *object, const char *key, bool required, int64_t min, int64_t max,
                  const char *path, int64_t *out, pc_field_error_t *err);
/* true or false; absent leaves *out alone. */
bool pc_field_bool(const json_t *object, const char *key, const char *path, bool *out,
                   pc_field_error_t *err);

#endif
