/* api/accept.c: the accept loop of the API's HTTP servers (api_internal.h says why it
 * is ours and not MHD's). One thread waits on the listen socket and a stop eventfd,
 * takes up to API_ACCEPT_BATCH_MAX connections at a time and hands each to MHD,
 * which spreads them over its worker threads and applies the connection limits
 * (MHD_add_connection closes a connection it refuses).
 *
 * Two daemons serve them. libmicrohttpd 0.9.75's epoll loop takes a suspended
 * connection out of its epoll set and puts it back after the reply (EPOLL_CTL_DEL +
 * ADD), and being edge-triggered it reads until EAGAIN: three system calls per request
 * that wait for the writer, on top of the one read and the one send. Its poll() loop
 * has none of them (a suspended connection just leaves the next poll set; a read is
 * one read), but each wait costs in proportion to its connections. So the first
 * API_POLL_CONNECTIONS_PER_THREAD per thread go to the poll() daemon, the rest to
 * the epoll one; the per-address limit counts both (conn.c).
 *
 * The loop also keeps each daemon's connection count itself, and starts MHD with a
 * limit its workers never reach: libmicrohttpd 0.9.75 hands a connection added from
 * another thread to a worker whose count it read without a lock, and a worker that
 * finds itself at its limit then returns with its cleanup mutex held (the limit branch
 * of new_connection_process_ has no unlock): its next pass deadlocks, and every thread
 * resuming one of its connections with it. A burst of connections spread by descriptor
 * parity over a pool of two did that. Every daemon fed from another thread is started
 * so: the API's two (server.c) and the standby's forwarder (forward.c), whose 64
 * workers each reached their share of 4096 in a burst past that many connections. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/api_internal.h"
#include "core/core.h"
#include "obs/obs.h"

/* Out of descriptors or memory: the waiting connections stay queued until some close. */
static bool accept_starved(int error) {
    return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

static void accept_pause(void) {
    struct timespec pause = {.tv_sec = 0, .tv_nsec = API_ACCEPT_PAUSE_MS * 1000000L};
    nanosleep(&pause, NULL);
}

/* The count is taken before the hand-over and given back when MHD refuses it (or when
 * the connection closes, conn.c): the poll() daemon never holds more than polled_max. */
static void accept_hand_over(api_acceptor_t *acceptor, int fd, const struct sockaddr_storage *addr,
                             socklen_t addr_bytes) {
    struct MHD_Daemon *daemon = acceptor->daemon;
    _Atomic uint32_t *count = acceptor->daemon_count;
    if (acceptor->polled != NULL) {
        uint32_t held = atomic_fetch_add(acceptor->polled_count, 1);
        if (held < acceptor->polled_max) {
            daemon = acceptor->polled;
            count = acceptor->polled_count;
        } else {
            api_acceptor_release(acceptor->polled_count);
        }
    }
    if (daemon == acceptor->daemon && count != NULL && atomic_fetch_add(count, 1) >= acceptor->daemon_max) {
        api_acceptor_release(count);
        close(fd); /* full: refused as MHD refuses past its limit */
        return;
    }
    if (MHD_add_connection(daemon, fd, (const struct sockaddr *)addr, addr_bytes) != MHD_YES && count != NULL) {
        api_acceptor_release(count);
    }
}

void api_acceptor_release(_Atomic uint32_t *count) {
    uint32_t held = atomic_fetch_sub(count, 1);
    PC_ASSERT(held > 0); /* each place is given back once */
}

void api_acceptor_count_notify(void *cls, struct MHD_Connection *connection, void **socket_context,
                               enum MHD_ConnectionNotificationCode code) {
    (void)connection;
    (void)socket_context;
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) api_acceptor_release(cls);
}

unsigned int api_mhd_connection_limit(uint32_t connections_max, uint32_t threads) {
    /* each of the 'threads' workers gets a share of the limit: every share must hold all */
    uint64_t limit = ((uint64_t)connections_max + 1) * (threads > 0 ? threads : 1);
    return limit < UINT32_MAX ? (unsigned int)limit : UINT32_MAX;
}

/* Takes the connections waiting now; false when the process is out of descriptors. */
static bool accept_ready(api_acceptor_t *acceptor) {
    for (uint32_t i = 0; i < API_ACCEPT_BATCH_MAX; i++) {
        struct sockaddr_storage addr;
        socklen_t addr_bytes = sizeof addr;
        int fd = accept4(acceptor->listen_fd, (struct sockaddr *)&addr, &addr_bytes, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) return !accept_starved(errno); /* EAGAIN: none left; ECONNABORTED: gone */
        accept_hand_over(acceptor, fd, &addr, addr_bytes);
    }
    return true;
}

static void *acceptor_run(void *arg) {
    api_acceptor_t *acceptor = arg;
    bool starved_logged = false;
    for (;;) {
        struct pollfd fds[2] = {{.fd = acceptor->listen_fd, .events = POLLIN},
                                {.fd = acceptor->wake_fd, .events = POLLIN}};
        if (poll(fds, 2, -1) < 0) {
            if (errno != EINTR) accept_pause();
            continue;
        }
        if (fds[1].revents != 0) break; /* stopped */
        if (fds[0].revents == 0) continue;
        if (accept_ready(acceptor)) {
            starved_logged = false;
            continue;
        }
        if (!starved_logged) obs_logf(OBS_LEVEL_ERROR, "accept: %s; new connections wait", strerror(errno));
        starved_logged = true;
        accept_pause();
    }
    return NULL;
}

pc_status api_acceptor_start(api_acceptor_t *acceptor, int listen_fd, struct MHD_Daemon *daemon,
                             _Atomic uint32_t *daemon_count, uint32_t daemon_max, struct MHD_Daemon *polled,
                             _Atomic uint32_t *polled_count, uint32_t polled_max) {
    PC_ASSERT(!acceptor->started);
    PC_ASSERT(listen_fd >= 0 && daemon != NULL && (polled == NULL || polled_count != NULL));
    acceptor->listen_fd = listen_fd;
    acceptor->daemon = daemon;
    acceptor->daemon_count = daemon_count;
    acceptor->daemon_max = daemon_max;
    acceptor->polled = polled;
    acceptor->polled_count = polled_count;
    acceptor->polled_max = polled_max;
    acceptor->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (acceptor->wake_fd < 0) return PC_IO;
    if (pthread_create(&acceptor->thread, NULL, acceptor_run, acceptor) != 0) {
        close(acceptor->wake_fd);
        acceptor->wake_fd = -1;
        return PC_INTERNAL;
    }
    pthread_setname_np(acceptor->thread, "paycore-accept");
    acceptor->started = true;
    return PC_OK;
}

void api_acceptor_stop(api_acceptor_t *acceptor) {
    if (!acceptor->started) return;
    uint64_t one = 1;
    ssize_t written = write(acceptor->wake_fd, &one, sizeof one);
    PC_ASSERT(written == (ssize_t)sizeof one); /* a fresh eventfd cannot be full */
    pthread_join(acceptor->thread, NULL);
    close(acceptor->wake_fd);
    acceptor->wake_fd = -1;
    acceptor->started = false;
}
