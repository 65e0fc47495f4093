/* events/secret.c: webhook endpoint secrets and signatures.
 *
 * A receiver needs the raw secret to check a signature, so paycore must be able to
 * read it back: it is kept encrypted (XChaCha20-Poly1305, the endpoint id bound in as
 * associated data so a secret cannot be moved to another endpoint) under a key in
 * "<db>.webhook-key" (mode 0600, beside the journal's signing key). A copy of the
 * database alone (a backup, a stolen disk image of the data directory without the key
 * file) does not give the secrets away.
 *
 * Signatures: Paycore-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256("<t>.<body>")>,
 * one v1 per valid secret, as Stripe and Standard Webhooks do during a rotation. */
#include <curl/curl.h>
#include <limits.h>
#include <inttypes.h>
#include <netdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "events/events_internal.h"
#include "journal/journal.h"

#define SECRET_PREFIX "whsec_"
#define SECRET_RANDOM_BYTES 32
#define HMAC_HEX_SIZE (2 * crypto_auth_hmacsha256_BYTES + 1)

pc_status events_key_load(const char *db_path, bool may_create, uint8_t key[EVENTS_KEY_BYTES]) {
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s.webhook-key", db_path) >= (int)sizeof path) return PC_INVALID_ARGUMENT;
    pc_status status = journal_secret_file_load(path, key);
    if (status == PC_NOT_FOUND && may_create) {
        randombytes_buf(key, EVENTS_KEY_BYTES);
        status = journal_secret_file_create(path, key);
    }
    if (status != PC_OK) {
        sodium_memzero(key, EVENTS_KEY_BYTES);
        return status == PC_IO ? PC_IO : PC_EVENTS_KEY_INVALID;
    }
    return PC_OK;
}

pc_status events_secret_seal(const uint8_t key[EVENTS_KEY_BYTES], const char *id, const char *secret,
                             uint8_t *box, uint32_t *box_bytes) {
    size_t secret_bytes = strlen(secret);
    uint8_t *nonce = box;
    uint8_t *cipher = box + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
    PC_ASSERT(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + secret_bytes + crypto_aead_xchacha20poly1305_ietf_ABYTES <=
              STORE_EVENT_SECRET_BOX_BYTES_MAX);
    randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
    unsigned long long cipher_bytes = 0;
    crypto_aead_xchacha20poly1305_ietf_encrypt(cipher, &cipher_bytes, (const uint8_t *)secret, secret_bytes,
                                               (const uint8_t *)id, strlen(id), NULL, nonce, key);
    *box_bytes = (uint32_t)(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + cipher_bytes);
    return PC_OK;
}

pc_status events_secret_open(const uint8_t key[EVENTS_KEY_BYTES], const char *id, const uint8_t *box,
                             uint32_t box_bytes, char secret_out[EVENTS_SECRET_SIZE]) {
    const size_t overhead = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES;
    if (box_bytes <= overhead || box_bytes - overhead >= EVENTS_SECRET_SIZE) return PC_EVENTS_KEY_INVALID;
    unsigned long long plain_bytes = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(
            (uint8_t *)secret_out, &plain_bytes, NULL, box + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES,
            box_bytes - crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, (const uint8_t *)id, strlen(id), box,
            key) != 0) {
        sodium_memzero(secret_out, EVENTS_SECRET_SIZE);
        return PC_EVENTS_KEY_INVALID; /* another key file, or a tampered row */
    }
    secret_out[plain_bytes] = '\0';
    return PC_OK;
}

static void secret_generate(char out[EVENTS_SECRET_SIZE]) {
    uint8_t random[SECRET_RANDOM_BYTES];
    randombytes_buf(random, sizeof random);
    memcpy(out, SECRET_PREFIX, sizeof SECRET_PREFIX - 1);
    sodium_bin2base64(out + sizeof SECRET_PREFIX - 1, EVENTS_SECRET_SIZE - (sizeof SECRET_PREFIX - 1), random,
                      sizeof random, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(random, sizeof random);
}

pc_status events_endpoint_new(events_t *events, store_event_destination_t *row, char secret_out[EVENTS_SECRET_SIZE]) {
    uint8_t random[12];
    char hex[sizeof random * 2 + 1];
    randombytes_buf(random, sizeof random);
    sodium_bin2hex(hex, sizeof hex, random, sizeof random);
    snprintf(row->id, sizeof row->id, "we_%s", hex);
    snprintf(row->kind, sizeof row->kind, "webhook");
    row->created_ns = pc_wall_ns();
    secret_generate(secret_out);
    return events_secret_seal(events->key, row->id, secret_out, row->secret_box, &row->secret_box_bytes);
}

pc_status events_endpoint_rotate(events_t *events, store_event_destination_t *row, uint64_t grace_s,
                                 char secret_out[EVENTS_SECRET_SIZE]) {
    memcpy(row->previous_box, row->secret_box, row->secret_box_bytes);
    row->previous_box_bytes = row->secret_box_bytes;
    row->previous_until_ns = pc_wall_ns() + grace_s * 1000000000ull;
    if (grace_s == 0) row->previous_box_bytes = 0;
    secret_generate(secret_out);
    return events_secret_seal(events->key, row->id, secret_out, row->secret_box, &row->secret_box_bytes);
}

/* ---- signatures ---- */

static void hmac_hex(const char *secret, const char *t_text, const char *body, size_t body_bytes,
                     char out[HMAC_HEX_SIZE]) {
    crypto_auth_hmacsha256_state state;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init(&state, (const uint8_t *)secret, strlen(secret));
    crypto_auth_hmacsha256_update(&state, (const uint8_t *)t_text, strlen(t_text));
    crypto_auth_hmacsha256_update(&state, (const uint8_t *)".", 1);
    crypto_auth_hmacsha256_update(&state, (const uint8_t *)body, body_bytes);
    crypto_auth_hmacsha256_final(&state, mac);
    sodium_bin2hex(out, HMAC_HEX_SIZE, mac, sizeof mac);
    sodium_memzero(&state, sizeof state);
}

void events_signature_header(const char *const *secrets, uint32_t secret_count, uint64_t t_s, const char *body,
                             size_t body_bytes, char out[EVENTS_SIGNATURE_HEADER_SIZE]) {
    PC_ASSERT(secret_count >= 1 && secret_count <= 2);
    char t_text[24];
    snprintf(t_text, sizeof t_text, "%" PRIu64, t_s);
    int used = snprintf(out, EVENTS_SIGNATURE_HEADER_SIZE, "t=%s", t_text);
    for (uint32_t i = 0; i < secret_count; i++) {
        char hex[HMAC_HEX_SIZE];
        hmac_hex(secrets[i], t_text, body, body_bytes, hex);
        used += snprintf(out + used, EVENTS_SIGNATURE_HEADER_SIZE - (size_t)used, ",v1=%s", hex);
    }
    PC_ASSERT(used < EVENTS_SIGNATURE_HEADER_SIZE);
}

/* Splits "t=..,v1=..,v1=.." into the timestamp and the v1 values (binary). */
typedef struct {
    char t_text[24];
    uint8_t v1[4][crypto_auth_hmacsha256_BYTES];
    uint32_t v1_count;
} signature_parts;

static bool part_parse(signature_parts *parts, const char *item, size_t bytes) {
    if (bytes > 2 && item[0] == 't' && item[1] == '=') {
        if (parts->t_text[0] != '\0' || bytes - 2 >= sizeof parts->t_text) return false;
        for (size_t i = 2; i < bytes; i++) {
            if (item[i] < '0' || item[i] > '9') return false;
        }
        memcpy(parts->t_text, item + 2, bytes - 2);
        parts->t_text[bytes - 2] = '\0';
        return true;
    }
    if (bytes > 3 && memcmp(item, "v1=", 3) == 0) {
        size_t bin_bytes = 0;
        if (parts->v1_count == 4 || bytes - 3 != 2 * crypto_auth_hmacsha256_BYTES) return false;
        if (sodium_hex2bin(parts->v1[parts->v1_count], crypto_auth_hmacsha256_BYTES, item + 3, bytes - 3, NULL,
                           &bin_bytes, NULL) != 0 || bin_bytes != crypto_auth_hmacsha256_BYTES) {
            return false;
        }
        parts->v1_count++;
        return true;
    }
    return true; /* other schemes (v2=...) are for other verifiers */
}

static bool header_parse(const char *header, signature_parts *parts) {
    memset(parts, 0, sizeof(*parts));
    if (strlen(header) > 1024) return false;
    const char *item = header;
    while (*item != '\0') {
        while (*item == ' ') item++;
        const char *end = strchr(item, ',');
        size_t bytes = end ? (size_t)(end - item) : strlen(item);
        while (bytes > 0 && item[bytes - 1] == ' ') bytes--;
        if (!part_parse(parts, item, bytes)) return false;
        if (end == NULL) break;
        item = end + 1;
    }
    return parts->t_text[0] != '\0' && parts->v1_count > 0;
}

pc_status events_signature_verify(const char *secret, const char *header, const char *body, size_t body_bytes,
                                  uint64_t now_s, uint64_t tolerance_s) {
    signature_parts parts;
    if (!header_parse(header, &parts)) return PC_SIGNATURE_HEADER_INVALID;
    char hex[HMAC_HEX_SIZE];
    uint8_t expected[crypto_auth_hmacsha256_BYTES];
    hmac_hex(secret, parts.t_text, body, body_bytes, hex);
    PC_ASSERT(sodium_hex2bin(expected, sizeof expected, hex, strlen(hex), NULL, NULL, NULL) == 0);
    bool matched = false;
    for (uint32_t i = 0; i < parts.v1_count; i++) {
        matched |= sodium_memcmp(expected, parts.v1[i], sizeof expected) == 0;
    }
    sodium_memzero(expected, sizeof expected);
    if (!matched) return PC_SIGNATURE_MISMATCH;
    uint64_t t_s = strtoull(parts.t_text, NULL, 10);
    uint64_t age_s = now_s > t_s ? now_s - t_s : t_s - now_s;
    return age_s <= tolerance_s ? PC_OK : PC_SIGNATURE_EXPIRED;
}

/* ---- endpoint fields ---- */

static bool url_host(const char *url, char *host, size_t host_bytes) {
    CURLU *handle = curl_url();
    char *scheme = NULL, *name = NULL;
    bool ok = handle != NULL && curl_url_set(handle, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(handle, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
              curl_url_get(handle, CURLUPART_HOST, &name, 0) == CURLUE_OK &&
              (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) && name[0] != '\0' &&
              strlen(name) < host_bytes;
    if (ok) snprintf(host, host_bytes, "%s", name);
    curl_free(scheme);
    curl_free(name);
    curl_url_cleanup(handle);
    return ok;
}

/* PC_OK when every address 'found' holds is public (a name with one private address
 * among public ones could be steered to it). */
static pc_status addresses_check(const struct addrinfo *found) {
    for (const struct addrinfo *at = found; at != NULL; at = at->ai_next) {
        if (!events_address_public(at->ai_addr)) return PC_URL_NOT_PUBLIC;
    }
    return PC_OK;
}

pc_status events_url_check(const char *url, bool private_ok) {
    size_t bytes = strlen(url);
    if (bytes == 0 || bytes > EVENTS_URL_BYTES_MAX) return PC_URL_INVALID;
    for (size_t i = 0; i < bytes; i++) {
        if ((unsigned char)url[i] <= ' ' || (unsigned char)url[i] >= 0x7f) return PC_URL_INVALID;
    }
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) return PC_URL_INVALID;
    char host[256];
    if (!url_host(url, host, sizeof host)) return PC_URL_INVALID;
    /* [::1] comes back as "[::1]" */
    size_t host_bytes = strlen(host);
    if (host[0] == '[' && host_bytes > 2 && host[host_bytes - 1] == ']') {
        memmove(host, host + 1, host_bytes - 2);
        host[host_bytes - 2] = '\0';
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *found = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &found);
    pc_status status = rc != 0 ? PC_URL_UNRESOLVABLE : private_ok ? PC_OK : addresses_check(found);
    if (found != NULL) freeaddrinfo(found);
    return status;
}

bool events_type_pattern_mask(const char *pattern, uint64_t *mask_out) {
    static_assert(EVENTS_TYPE_COUNT <= 64, "a type mask is 64 bits");
    *mask_out = 0;
    size_t bytes = strlen(pattern);
    if (strcmp(pattern, "*") == 0) {
        *mask_out = ~0ull;
    } else if (bytes > 2 && strcmp(pattern + bytes - 2, ".*") == 0) { /* "payment.*" */
        for (uint32_t i = 0; i < EVENTS_TYPE_COUNT; i++) {
            if (strncmp(events_type_name((events_type)i), pattern, bytes - 1) == 0) *mask_out |= 1ull << i;
        }
    } else {
        events_type type;
        if (events_type_parse(pattern, &type)) *mask_out = 1ull << type;
    }
    return *mask_out != 0;
}

pc_status events_types_mask(const char *types, uint64_t *mask_out) {
    uint64_t mask = 0;
    const char *item = types;
    while (*item != '\0') {
        const char *end = strchr(item, ',');
        size_t bytes = end ? (size_t)(end - item) : strlen(item);
        char name[STORE_EVENT_TYPE_SIZE];
        if (bytes == 0 || bytes >= sizeof name) return PC_EVENT_TYPE_UNKNOWN;
        memcpy(name, item, bytes);
        name[bytes] = '\0';
        uint64_t one;
        if (!events_type_pattern_mask(name, &one)) return PC_EVENT_TYPE_UNKNOWN;
        mask |= one;
        if (end == NULL) break;
        item = end + 1;
    }
    if (mask == 0) return PC_EVENT_TYPE_UNKNOWN;
    *mask_out = mask;
    return PC_OK;
}
