/* tests/api/epoll_del_delay.c: an LD_PRELOAD shim for test_api_stop_race.py (built by
 * the test with cc; not part of paycore). An EPOLL_CTL_DEL that the process's main
 * thread makes waits EPOLL_DEL_DELAY_MS first, so any other thread that removes the
 * same descriptor meanwhile wins the race. libmicrohttpd's MHD_quiesce_daemon (called
 * on the main thread) removes the listen socket from each worker's epoll set while
 * the busy workers, seeing the daemon quiesced, remove it themselves: the loser's
 * ENOENT aborts the process. Every other call goes straight through. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EPOLL_DEL_DELAY_MS 100

typedef int (*epoll_ctl_fn)(int epfd, int op, int fd, struct epoll_event *event);

int epoll_ctl(int epfd, int op, int fd, struct epoll_event *event) {
    static epoll_ctl_fn real = NULL;
    if (real == NULL) real = (epoll_ctl_fn)dlsym(RTLD_NEXT, "epoll_ctl");
    if (op == EPOLL_CTL_DEL && syscall(SYS_gettid) == getpid()) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = EPOLL_DEL_DELAY_MS * 1000000L};
        nanosleep(&pause, NULL);
    }
    return real(epfd, op, fd, event);
}
