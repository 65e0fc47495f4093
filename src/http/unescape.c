/* http/unescape.c: %XX decoding of a request target's path and query arguments, as
 * libmicrohttpd decodes them (the API and the simulators on the engine answer what
 * they answered on MHD): an escape is decoded only when both of its hex digits are
 * there, anything else stays as it came; '+' is a blank in query arguments only. */
#include <string.h>

#include "core/core.h"
#include "http/http.h"

bool http_percent_decode(const char *bytes, size_t byte_count, bool plus_is_space, char *out,
                         size_t out_bytes) {
    if (out_bytes == 0) return false;
    size_t used = 0;
    for (size_t i = 0; i < byte_count; i++) {
        char c = bytes[i];
        int high = c == '%' && i + 2 < byte_count ? pc_hex_digit(bytes[i + 1]) : -1;
        int low = high >= 0 ? pc_hex_digit(bytes[i + 2]) : -1;
        if (low >= 0) {
            c = (char)(high * 16 + low);
            i += 2;
        } else if (plus_is_space && c == '+') {
            c = ' ';
        }
        if (used + 1 >= out_bytes) return false; /* and the NUL */
        out[used++] = c;
    }
    out[used] = '\0';
    return true;
}

void http_percent_decode_in_place(char *text, bool plus_is_space) {
    size_t text_bytes = strlen(text);
    bool fits = http_percent_decode(text, text_bytes, plus_is_space, text, text_bytes + 1);
    PC_ASSERT(fits); /* decoding never lengthens */
}
