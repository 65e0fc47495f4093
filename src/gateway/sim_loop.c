/* gateway/sim_loop.c: the simulator's event loop on libmicrohttpd (--http-mhd; the
 * default is paycore's HTTP engine, sim_engine.c). One thread runs libmicrohttpd's epoll
 * set (non-blocking sockets), the timers of latency waits and held timeouts, and the
 * group commit that ends every pass. A request that has to wait (a simulated latency,
 * a held timeout, its group's commit) suspends its connection and the loop resumes it
 * later: nothing on the loop sleeps, so one slow or delayed request never holds another.
 * A pass: epoll wait, MHD runs every ready connection (their units join one group),
 * the group commits, due timers resume their requests. A request waiting for the
 * commit is not suspended: its handler returns without an answer, so MHD keeps the
 * connection ready and calls the handler again in the next pass, after the commit
 * (a suspend and a resume would cost two epoll_ctl calls per request). */
#include <errno.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/core.h"
#include "gateway/sim_internal.h"
#include "obs/obs.h"

struct sim_loop {
    int epoll_fd;                 /* MHD's epoll fd and wake_fd */
    int wake_fd;                  /* eventfd: stop */
    pthread_t thread;
    bool started;
    sim_timers_t timers;          /* a connection has one request waiting at most */
    uint32_t committing;          /* requests whose handler waits for the open group's commit */
    uint32_t suspended;           /* connections the loop must resume */
};

/* ---- timers: a binary min-heap (also the engine's, sim_engine.c) ---- */

static void timer_swap(sim_timer_t *timers, uint32_t a, uint32_t b) {
    sim_timer_t held = timers[a];
    timers[a] = timers[b];
    timers[b] = held;
}

bool sim_timers_init(sim_timers_t *heap) {
    heap->count = 0;
    heap->timers = calloc(SIM_CONNECTIONS_MAX, sizeof *heap->timers);
    return heap->timers != NULL;
}

void sim_timers_free(sim_timers_t *heap) {
    free(heap->timers);
    heap->timers = NULL;
    heap->count = 0;
}

void sim_timers_push(sim_timers_t *heap, uint64_t due_ms, sim_req_t *req) {
    PC_ASSERT(heap->count < SIM_CONNECTIONS_MAX);
    uint32_t i = heap->count++;
    heap->timers[i] = (sim_timer_t){.due_ms = due_ms, .req = req};
    while (i > 0 && heap->timers[(i - 1) / 2].due_ms > heap->timers[i].due_ms) {
        timer_swap(heap->timers, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

sim_req_t *sim_timers_pop(sim_timers_t *heap) {
    sim_req_t *req = heap->timers[0].req;
    heap->timers[0] = heap->timers[--heap->count];
    uint32_t i = 0;
    for (;;) {
        uint32_t least = i, left = 2 * i + 1, right = left + 1;
        if (left < heap->count && heap->timers[left].due_ms < heap->timers[least].due_ms) least = left;
        if (right < heap->count && heap->timers[right].due_ms < heap->timers[least].due_ms) least = right;
        if (least == i) return req;
        timer_swap(heap->timers, i, least);
        i = least;
    }
}

/* ---- suspending and resuming (on the loop thread only) ---- */

static void resume(sim_loop_t *loop, sim_req_t *req) {
    PC_ASSERT(loop->suspended > 0);
    loop->suspended--;
    MHD_resume_connection(req->connection);
}

void sim_loop_wait_ms(sim_req_t *req, uint64_t ms) {
    if (req->sim->engine != NULL) {
        sim_engine_wait_ms(req, ms);
        return;
    }
    sim_loop_t *loop = req->sim->loop;
    MHD_suspend_connection(req->connection);
    loop->suspended++;
    sim_timers_push(&loop->timers, sim_mono_ms() + ms, req);
}

void sim_loop_wait_commit(sim_req_t *req) {
    if (req->sim->engine != NULL) {
        sim_engine_wait_commit(req);
        return;
    }
    if (req->awaiting_commit) return;
    req->awaiting_commit = true;
    req->sim->loop->committing++;
}

void sim_loop_commit_seen(sim_req_t *req) {
    if (req->sim->engine != NULL) {
        req->awaiting_commit = false;
        return;
    }
    sim_loop_t *loop = req->sim->loop;
    if (!req->awaiting_commit) return;
    req->awaiting_commit = false;
    PC_ASSERT(loop != NULL && loop->committing > 0);
    loop->committing--;
}

/* Resumes the timers due by 'now_ms' (all of them at stop); the count resumed. */
static uint32_t timers_fire(sim_loop_t *loop, uint64_t now_ms) {
    uint32_t fired = 0;
    while (loop->timers.count > 0 && loop->timers.timers[0].due_ms <= now_ms) {
        resume(loop, sim_timers_pop(&loop->timers));
        fired++;
    }
    return fired;
}

/* Commits the pass's group; the count of requests that waited for it (MHD calls
 * their handlers again in the next pass). */
static uint32_t commit_release(sim_t *sim) {
    sim_group_flush(sim);
    return sim->loop->committing;
}

/* ---- the loop ---- */

/* How long epoll may wait: until MHD's next connection timeout or the next timer; not
 * at all when the last pass resumed requests or committed for some (MHD runs them in
 * the next pass). */
static int pass_timeout_ms(sim_t *sim, bool stopping, uint32_t resumed) {
    if (stopping || resumed > 0) return 0;
    uint64_t wait_ms = UINT64_MAX;
    MHD_UNSIGNED_LONG_LONG mhd_ms = 0;
    if (MHD_get_timeout(sim->daemon, &mhd_ms) == MHD_YES) wait_ms = mhd_ms;
    if (sim->loop->timers.count > 0) {
        uint64_t now_ms = sim_mono_ms(), due_ms = sim->loop->timers.timers[0].due_ms;
        uint64_t timer_ms = due_ms > now_ms ? due_ms - now_ms : 0;
        if (timer_ms < wait_ms) wait_ms = timer_ms;
    }
    return wait_ms > SIM_LOOP_WAIT_MS_MAX ? SIM_LOOP_WAIT_MS_MAX : (int)wait_ms;
}

static void wait_events(sim_t *sim, int timeout_ms) {
    struct epoll_event events[4];
    int count = epoll_wait(sim->loop->epoll_fd, events, 4, timeout_ms);
    for (int i = 0; i < count; i++) {
        if (events[i].data.fd != sim->loop->wake_fd) continue;
        uint64_t value;
        if (read(sim->loop->wake_fd, &value, sizeof value) < 0 && errno != EAGAIN) {
            obs_logf(OBS_LEVEL_ERROR, "simulator loop: wake read: %s", strerror(errno));
        }
    }
}

/* Stop: new connections are refused; every suspended request is resumed (a held
 * timeout or a latency wait closes), and the loop ends once no request waits. */
static void *loop_main(void *arg) {
    sim_t *sim = arg;
    sim_loop_t *loop = sim->loop;
    bool quiesced = false;
    uint32_t resumed = 0;
    for (;;) {
        bool stopping = atomic_load(&sim->stopping);
        if (stopping && !quiesced) {
            sim->quiesced_fd = MHD_quiesce_daemon(sim->daemon);
            quiesced = true;
        }
        /* A pass that must not wait leaves the polling to MHD_run (its own epoll_wait
         * with no timeout): a wait of 0 here first would be a second system call for
         * the same events. The wake fd matters only when a wait could block. */
        int timeout_ms = pass_timeout_ms(sim, stopping, resumed);
        if (timeout_ms > 0) wait_events(sim, timeout_ms);
        atomic_store(&sim->batching, true);
        (void)MHD_run(sim->daemon);
        atomic_store(&sim->batching, false);
        resumed = commit_release(sim);
        resumed += timers_fire(loop, stopping ? UINT64_MAX : sim_mono_ms());
        if (stopping && resumed == 0 && loop->suspended == 0) break;
    }
    return NULL;
}

static bool watch(int epoll_fd, int fd) {
    struct epoll_event event = {.events = EPOLLIN, .data.fd = fd};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event) == 0;
}

static void loop_free(sim_loop_t *loop) {
    if (loop->epoll_fd >= 0) close(loop->epoll_fd);
    if (loop->wake_fd >= 0) close(loop->wake_fd);
    sim_timers_free(&loop->timers);
    free(loop);
}

bool sim_loop_start(sim_t *sim, char *error, size_t error_bytes) {
    sim_loop_t *loop = calloc(1, sizeof *loop);
    if (loop == NULL) {
        snprintf(error, error_bytes, "out of memory");
        return false;
    }
    bool timers_ok = sim_timers_init(&loop->timers);
    loop->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    loop->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(sim->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    bool ok = timers_ok && loop->epoll_fd >= 0 && loop->wake_fd >= 0 && info != NULL &&
              watch(loop->epoll_fd, info->epoll_fd) && watch(loop->epoll_fd, loop->wake_fd);
    sim->loop = loop;
    if (ok) ok = pthread_create(&loop->thread, NULL, loop_main, sim) == 0;
    if (!ok) {
        snprintf(error, error_bytes, "cannot start the event loop: %s", strerror(errno));
        sim->loop = NULL;
        loop_free(loop);
        return false;
    }
    loop->started = true;
    return true;
}

void sim_loop_stop(sim_t *sim) {
    sim_loop_t *loop = sim->loop;
    if (loop == NULL) return;
    PC_ASSERT(atomic_load(&sim->stopping));
    uint64_t one = 1;
    if (write(loop->wake_fd, &one, sizeof one) < 0) {
        obs_logf(OBS_LEVEL_ERROR, "simulator loop: wake: %s", strerror(errno));
    }
    if (loop->started) pthread_join(loop->thread, NULL);
    PC_ASSERT(loop->suspended == 0 && loop->committing == 0 && loop->timers.count == 0);
    sim->loop = NULL;
    loop_free(loop);
}
