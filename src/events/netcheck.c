/* events/netcheck.c: which addresses a webhook may reach. A merchant names the URL, so
 * by default paycore connects only to public unicast addresses: never to this host, the
 * private networks it sits in, link-local (cloud metadata at 169.254.169.254) or
 * special-purpose ranges. The check runs when an endpoint is created and again on the
 * address each delivery connects to (a name may resolve elsewhere later). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

#include "events/events.h"

typedef struct {
    uint32_t prefix;
    uint32_t bits;
} v4_range;

/* IANA special-purpose IPv4 ranges (RFC 6890 and successors) that are not public. */
static const v4_range V4_NOT_PUBLIC[] = {
    {0x00000000u, 8},  /* 0.0.0.0/8 "this network" */
    {0x0a000000u, 8},  /* 10.0.0.0/8 private */
    {0x64400000u, 10}, /* 100.64.0.0/10 carrier-grade NAT */
    {0x7f000000u, 8},  /* 127.0.0.0/8 loopback */
    {0xa9fe0000u, 16}, /* 169.254.0.0/16 link-local, cloud metadata */
    {0xac100000u, 12}, /* 172.16.0.0/12 private */
    {0xc0000000u, 24}, /* 192.0.0.0/24 protocol assignments */
    {0xc0000200u, 24}, /* 192.0.2.0/24 documentation */
    {0xc0a80000u, 16}, /* 192.168.0.0/16 private */
    {0xc6120000u, 15}, /* 198.18.0.0/15 benchmarking */
    {0xc6336400u, 24}, /* 198.51.100.0/24 documentation */
    {0xcb007100u, 24}, /* 203.0.113.0/24 documentation */
    {0xe0000000u, 4},  /* 224.0.0.0/4 multicast */
    {0xf0000000u, 4},  /* 240.0.0.0/4 reserved, broadcast */
};

static bool v4_public(uint32_t address) {
    for (size_t i = 0; i < sizeof V4_NOT_PUBLIC / sizeof V4_NOT_PUBLIC[0]; i++) {
        uint32_t mask = 0xffffffffu << (32 - V4_NOT_PUBLIC[i].bits);
        if ((address & mask) == V4_NOT_PUBLIC[i].prefix) return false;
    }
    return true;
}

static bool v6_public(const uint8_t a[16]) {
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(a, v4_mapped, 12) == 0 || memcmp(a, nat64, 12) == 0) { /* the IPv4 address inside decides */
        return v4_public((uint32_t)a[12] << 24 | (uint32_t)a[13] << 16 | (uint32_t)a[14] << 8 | a[15]);
    }
    if ((a[0] & 0xe0) != 0x20) return false; /* only 2000::/3 is global unicast: not ::, ::1, fc00::/7,
                                                fe80::/10, ff00::/8, 64:ff9b:1::/48, ... */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8) return false; /* 2001:db8::/32 docs */
    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x00 && a[3] == 0x00) return false; /* 2001::/32 Teredo */
    if (a[0] == 0x20 && a[1] == 0x02) return false;                                 /* 2002::/16 6to4 */
    return true;
}

bool events_address_public(const struct sockaddr *address) {
    if (address == NULL) return false;
    if (address->sa_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)(const void *)address;
        return v4_public(ntohl(v4->sin_addr.s_addr));
    }
    if (address->sa_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)(const void *)address;
        return v6_public(v6->sin6_addr.s6_addr);
    }
    return false;
}
