/* api/conn.c: every open connection and its deadline. MHD's own timeout is an idle
 * timeout: a client that trickles one byte every few seconds is never idle and would
 * hold its connection (and, in the body, its buffer) for ever. Here a request must
 * arrive whole (headers and body) within --timeout-s of the moment its connection
 * became ready for it (accepted, or the previous reply sent; the first byte cannot come
 * earlier), and a reply must leave within --timeout-s of being queued. While the
 * handler runs there is no deadline (a long verify; a command with the writer, where
 * the request timeout answers for the wait).
 *
 * A reaper thread walks the list a few times a second and shuts down the socket of a
 * connection past its deadline; MHD then sees the end of the stream and closes the
 * connection itself (the reaper never closes a descriptor). MHD reports the close
 * (MHD_CONNECTION_NOTIFY_CLOSED) before it closes the descriptor, and that callback
 * unlinks the entry under the same mutex the reaper holds: a descriptor the reaper
 * shuts down is always still this connection's. */
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "obs/obs.h"

#define CONN_REAPER_PERIOD_MS 100

static uint64_t timeout_ns(const api_server_t *server) {
    return (uint64_t)server->config.connection_timeout_s * 1000000000u;
}

void api_conn_deadline_restart(const api_server_t *server, api_conn_t *conn) {
    if (conn != NULL) atomic_store(&conn->deadline_ns, pc_mono_ns() + timeout_ns(server));
}

void api_conn_deadline_clear(api_conn_t *conn) {
    if (conn != NULL) atomic_store(&conn->deadline_ns, 0);
}

bool api_conn_expired(const api_conn_t *conn) {
    return conn != NULL && atomic_load(&conn->expired);
}

api_conn_t *api_conn_of(struct MHD_Connection *connection) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info != NULL ? info->socket_context : NULL;
}

static void conn_link_locked(api_server_t *server, api_conn_t *conn) {
    conn->prev = NULL;
    conn->next = server->conns_head;
    if (server->conns_head != NULL) server->conns_head->prev = conn;
    server->conns_head = conn;
}

static void conn_unlink_locked(api_server_t *server, api_conn_t *conn) {
    if (conn->prev != NULL) conn->prev->next = conn->next;
    else server->conns_head = conn->next;
    if (conn->next != NULL) conn->next->prev = conn->prev;
}

/* ---- connections per client address, over both daemons (accept.c) ----
 * A table with open addressing, never more than half full (a slot per connection at
 * most, twice as many slots); a freed slot is filled by shifting its cluster back. */

static void conn_address_of_sockaddr(const struct sockaddr *addr, uint8_t out[16]) {
    memset(out, 0, 16);
    if (addr == NULL) return;
    if (addr->sa_family == AF_INET) memcpy(out, &((const struct sockaddr_in *)(const void *)addr)->sin_addr, 4);
    else if (addr->sa_family == AF_INET6) memcpy(out, &((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr, 16);
}

static void conn_address_of(struct MHD_Connection *connection, uint8_t out[16]) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    conn_address_of_sockaddr(info != NULL ? info->client_addr : NULL, out);
}

static uint32_t conn_address_home(const uint8_t address[16]) {
    return (uint32_t)pc_hash64(address, 16) & (API_CONN_ADDRESS_SLOTS - 1);
}

/* The address's slot, or the free slot where it would go. Under conns_mutex. */
static uint32_t conn_address_find(const api_server_t *server, const uint8_t address[16]) {
    uint32_t slot = conn_address_home(address);
    while (server->conn_addresses[slot].count != 0 && memcmp(server->conn_addresses[slot].address, address, 16) != 0) {
        slot = (slot + 1) & (API_CONN_ADDRESS_SLOTS - 1);
    }
    return slot;
}

/* True (and counted) while the address holds fewer than --connections-per-ip-max. */
static bool conn_address_take(api_server_t *server, const uint8_t address[16]) {
    api_conn_address_t *entry = &server->conn_addresses[conn_address_find(server, address)];
    uint32_t max = server->config.connections_per_ip_max;
    if (max != 0 && entry->count >= max) return false;
    memcpy(entry->address, address, 16);
    entry->count++;
    return true;
}

static void conn_address_release(api_server_t *server, const uint8_t address[16]) {
    uint32_t hole = conn_address_find(server, address);
    api_conn_address_t *slots = server->conn_addresses;
    PC_ASSERT(slots[hole].count > 0);
    if (--slots[hole].count > 0) return;
    /* backward shift: a later entry of the cluster moves into the hole unless its home
     * lies cyclically in (hole, at] */
    for (uint32_t at = (hole + 1) & (API_CONN_ADDRESS_SLOTS - 1); slots[at].count != 0;
         at = (at + 1) & (API_CONN_ADDRESS_SLOTS - 1)) {
        uint32_t home = conn_address_home(slots[at].address);
        bool stays = hole <= at ? (hole < home && home <= at) : (hole < home || home <= at);
        if (stays) continue;
        slots[hole] = slots[at];
        slots[at].count = 0;
        hole = at;
    }
}

static bool conn_address_take(api_server_t *server, const uint8_t address[16]);
static void conn_address_release(api_server_t *server, const uint8_t address[16]);

bool api_conn_address_admit(api_server_t *server, const struct sockaddr *addr) {
    uint8_t address[16];
    conn_address_of_sockaddr(addr, address);
    pthread_mutex_lock(&server->conns_mutex);
    bool admitted = conn_address_take(server, address);
    pthread_mutex_unlock(&server->conns_mutex);
    return admitted;
}

void api_conn_address_closed(api_server_t *server, const struct sockaddr *addr) {
    uint8_t address[16];
    conn_address_of_sockaddr(addr, address);
    pthread_mutex_lock(&server->conns_mutex);
    conn_address_release(server, address);
    pthread_mutex_unlock(&server->conns_mutex);
}

/* MHD_OPTION_NOTIFY_CONNECTION: a connection opens or closes. An entry that cannot be
 * allocated, or a connection past the per-address limit, is shut down: MHD closes it. */
static void conn_notify(api_server_t *server, bool polled, struct MHD_Connection *connection,
                        void **socket_context, enum MHD_ConnectionNotificationCode code) {
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info == NULL) return;
        api_conn_t *conn = calloc(1, sizeof(*conn));
        if (conn != NULL) {
            conn->fd = info->connect_fd;
            conn_address_of(connection, conn->address);
            api_conn_deadline_restart(server, conn);
        }
        pthread_mutex_lock(&server->conns_mutex);
        bool admitted = conn != NULL && conn_address_take(server, conn->address);
        if (admitted) conn_link_locked(server, conn);
        pthread_mutex_unlock(&server->conns_mutex);
        if (!admitted) {
            free(conn);
            (void)shutdown(info->connect_fd, SHUT_RDWR);
            return;
        }
        *socket_context = conn;
        return;
    }
    api_acceptor_release(polled ? &server->conns_polled : &server->conns_epoll); /* taken by accept.c */
    api_conn_t *conn = *socket_context;
    if (conn == NULL) return;
    *socket_context = NULL;
    pthread_mutex_lock(&server->conns_mutex);
    conn_unlink_locked(server, conn);
    conn_address_release(server, conn->address);
    pthread_mutex_unlock(&server->conns_mutex);
    free(conn);
}

void api_conn_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                     enum MHD_ConnectionNotificationCode code) {
    conn_notify(cls, false, connection, socket_context, code);
}

void api_conn_notify_polled(void *cls, struct MHD_Connection *connection, void **socket_context,
                            enum MHD_ConnectionNotificationCode code) {
    conn_notify(cls, true, connection, socket_context, code);
}

/* Shuts down every connection past its deadline (each once). */
static uint32_t conns_expire(api_server_t *server, uint64_t now_ns) {
    uint32_t closed = 0;
    pthread_mutex_lock(&server->conns_mutex);
    if (server->engine != NULL) { /* --http-engine: its workers close them; counted here */
        http_stats_t stats;
        http_server_stats(server->engine, &stats);
        closed = (uint32_t)(stats.timeouts - server->engine_timeouts_seen);
        server->engine_timeouts_seen = stats.timeouts;
    }
    for (api_conn_t *conn = server->conns_head; conn != NULL; conn = conn->next) {
        uint64_t deadline_ns = atomic_load(&conn->deadline_ns);
        if (deadline_ns == 0 || deadline_ns > now_ns || atomic_load(&conn->expired)) continue;
        atomic_store(&conn->expired, true);
        (void)shutdown(conn->fd, SHUT_RDWR);
        closed++;
    }
    pthread_mutex_unlock(&server->conns_mutex);
    return closed;
}

static void *conns_reaper_run(void *arg) {
    pthread_setname_np(pthread_self(), "paycore-connrp"); /* per-thread CPU in top, perf */
    api_server_t *server = arg;
    pthread_mutex_lock(&server->conns_stop_mutex);
    while (!server->conns_stop) {
        struct timespec until = pc_realtime_after_ms(CONN_REAPER_PERIOD_MS);
        pthread_cond_timedwait(&server->conns_cond, &server->conns_stop_mutex, &until);
        if (server->conns_stop) break;
        uint32_t closed = conns_expire(server, pc_mono_ns());
        if (closed > 0) {
            obs_metrics_connections_expired(closed);
            obs_logf(OBS_LEVEL_INFO, "closed %u connection(s) past their deadline (--timeout-s %u)",
                     closed, server->config.connection_timeout_s);
        }
    }
    pthread_mutex_unlock(&server->conns_stop_mutex);
    return NULL;
}

pc_status api_conns_init(api_server_t *server) {
    pthread_mutex_init(&server->conns_mutex, NULL);
    pthread_mutex_init(&server->conns_stop_mutex, NULL);
    pthread_cond_init(&server->conns_cond, NULL);
    server->conn_addresses = calloc(API_CONN_ADDRESS_SLOTS, sizeof(*server->conn_addresses));
    if (server->conn_addresses == NULL) return PC_NO_MEMORY;
    if (pthread_create(&server->conns_reaper, NULL, conns_reaper_run, server) != 0) return PC_INTERNAL;
    server->conns_started = true;
    return PC_OK;
}

void api_conns_stop(api_server_t *server) {
    if (!server->conns_started) return;
    pthread_mutex_lock(&server->conns_stop_mutex);
    server->conns_stop = true;
    pthread_cond_signal(&server->conns_cond);
    pthread_mutex_unlock(&server->conns_stop_mutex);
    pthread_join(server->conns_reaper, NULL);
    server->conns_started = false;
}

/* After MHD stopped: every connection was reported closed, the list is empty. */
void api_conns_free(api_server_t *server) {
    api_conns_stop(server);
    PC_ASSERT(server->conns_head == NULL);
    pthread_cond_destroy(&server->conns_cond);
    pthread_mutex_destroy(&server->conns_stop_mutex);
    pthread_mutex_destroy(&server->conns_mutex);
    free(server->conn_addresses);
    server->conn_addresses = NULL;
}
