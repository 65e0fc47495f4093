/* payments/stage.c: the stage threads. The gateway's thread and the writer's serve
 * every payment: what a flow does in their callbacks holds up every other flow behind
 * it. So a gateway result is applied, a command submitted from a writer completion is
 * rendered (the dry run of its in_tx, flow.c) and queued, and a finished flow is
 * answered and freed, on one of these threads instead. A flow is touched by
 * one thread at a time (the one its current step runs on): handing it over through the
 * queue's mutex is what orders its fields between the two. Commands of different flows
 * may reach the writer in another order than their submits; one flow never has two
 * commands out at once, so its own order stays. */
#include <sched.h>

#include "obs/obs.h"
#include "payments/pay_internal.h"

static void *stage_main(void *arg) {
    struct pay_stage *stage = arg;
    pthread_mutex_lock(&stage->mutex);
    for (;;) {
        while (stage->head == NULL && !stage->stopping) {
            stage->idle++; /* its queuer takes it off 'idle' as it posts */
            pthread_mutex_unlock(&stage->mutex);
            while (sem_wait(&stage->wake) != 0) continue; /* EINTR */
            pthread_mutex_lock(&stage->mutex);
        }
        pay_flow_t *taken = stage->head;
        if (taken == NULL) break; /* stopping, and nothing left */
        /* a few at once: one hold of the mutex (which the gateway's and the writer's
         * threads take to queue) for them all */
        pay_flow_t *last = taken;
        uint32_t count = 1;
        while (count < PAY_STAGE_TAKE_MAX && last->staging.next != NULL) {
            last = last->staging.next;
            count++;
        }
        stage->head = last->staging.next;
        stage->queued -= count;
        if (stage->head == NULL) stage->tail = NULL;
        last->staging.next = NULL;
        pthread_mutex_unlock(&stage->mutex);
        pc_batch_begin(); /* the answers of these flows leave together, at its end */
        while (taken != NULL) {
            pay_flow_t *flow = taken;
            taken = flow->staging.next;
            flow->staging.next = NULL;
            flow->staging.run(flow); /* may end and free the flow */
        }
        pc_batch_end();
        pthread_mutex_lock(&stage->mutex);
    }
    pthread_mutex_unlock(&stage->mutex);
    return NULL;
}

void pay_stage_start(pay_t *pay) {
    struct pay_stage *stage = &pay->stage;
    pthread_mutex_init(&stage->mutex, NULL);
    sem_init(&stage->wake, 0, 0);
    stage->started = true;
    for (uint32_t i = 0; i < PAY_STAGE_THREADS; i++) {
        if (pthread_create(&stage->threads[i], NULL, stage_main, stage) != 0) {
            obs_logf(OBS_LEVEL_WARN, "payments: %u of %u stage threads started", i, PAY_STAGE_THREADS);
            break;
        }
        pthread_setname_np(stage->threads[i], "paycore-stage");
        stage->thread_count++;
    }
}

void pay_stage_stop(pay_t *pay) {
    struct pay_stage *stage = &pay->stage;
    if (!stage->started) return;
    pthread_mutex_lock(&stage->mutex);
    stage->stopping = true;
    pthread_mutex_unlock(&stage->mutex);
    for (uint32_t i = 0; i < stage->thread_count; i++) sem_post(&stage->wake);
    for (uint32_t i = 0; i < stage->thread_count; i++) pthread_join(stage->threads[i], NULL);
    PC_ASSERT(stage->head == NULL);
    while (atomic_load(&stage->waking) != 0) sched_yield(); /* a queuer's post, after its flow ended */
    stage->thread_count = 0;
    stage->started = false;
    sem_destroy(&stage->wake);
    pthread_mutex_destroy(&stage->mutex);
}

/* Flows a gateway thread queued during one pass (or the writer during one batch's
 * completions), not yet handed over (pay_stage_hold):
 * the stage threads cannot see them, so none can end (and free its runtime) before
 * the hand-over. */
static _Thread_local struct {
    bool holding;
    struct pay_stage *stage;
    pay_flow_t *head;
    pay_flow_t *tail;
    uint32_t count;
    uint32_t carried; /* flows the holder ran itself instead (pay_stage_carry) */
} held;

static void stage_append(struct pay_stage *stage, pay_flow_t *head, pay_flow_t *tail, uint32_t count) {
    pthread_mutex_lock(&stage->mutex);
    if (stage->tail != NULL) stage->tail->staging.next = head;
    else stage->head = head;
    stage->tail = tail;
    stage->queued += count;
    /* every thread asleep: wake one per PAY_STAGE_TAKE_MAX queued (a woken thread takes
     * that many at once: a second one woken for fewer would find nothing and sleep
     * again); one busy: it takes these next, unless a backlog grew */
    bool all_idle = stage->idle == stage->thread_count;
    bool wake = stage->idle > 0 && (all_idle || stage->queued > PAY_STAGE_WAKE_BACKLOG);
    /* Posted after the mutex is let go: a thread woken under it would only block on it
     * at once (a second sleep and wake-up for each). Once let go, a stage thread may
     * end these flows and the last one's end lets pay_stop go on: 'waking' holds
     * pay_stage_stop back from destroying the semaphore until this is done. */
    uint32_t needed = (stage->queued + PAY_STAGE_TAKE_MAX - 1) / PAY_STAGE_TAKE_MAX;
    uint32_t posts = !wake ? 0 : !all_idle ? 1 : needed < stage->idle ? needed : stage->idle;
    stage->idle -= posts; /* each post wakes one of them: not counted twice */
    if (posts > 0) atomic_fetch_add(&stage->waking, 1);
    pthread_mutex_unlock(&stage->mutex);
    if (posts == 0) return;
    for (uint32_t i = 0; i < posts; i++) sem_post(&stage->wake);
    atomic_fetch_sub(&stage->waking, 1);
}

static void held_hand_over(void) {
    if (held.count == 0) return;
    stage_append(held.stage, held.head, held.tail, held.count);
    held.stage = NULL;
    held.head = held.tail = NULL;
    held.count = 0;
}

void pay_stage_hold(void) { held.holding = true; }

void pay_stage_release(void) {
    held.holding = false;
    held.carried = 0;
    held_hand_over();
}

bool pay_stage_carry(pay_t *pay) {
    struct pay_stage *stage = &pay->stage;
    if (!held.holding || held.count > 0 || held.carried >= PAY_STAGE_CARRY_MAX || stage->thread_count == 0) {
        return false;
    }
    pthread_mutex_lock(&stage->mutex);
    bool asleep = stage->head == NULL && stage->idle == stage->thread_count;
    pthread_mutex_unlock(&stage->mutex);
    if (!asleep) return false;
    held.carried++;
    atomic_fetch_add_explicit(&stage->carried, 1, memory_order_relaxed);
    return true;
}

bool pay_stage_queue(pay_flow_t *flow, void (*run)(pay_flow_t *flow)) {
    struct pay_stage *stage = &flow->pay->stage;
    if (stage->thread_count == 0) return false; /* set before any flow exists, never changed while one does */
    flow->staging.next = NULL;
    flow->staging.run = run;
    if (!held.holding) {
        stage_append(stage, flow, flow, 1);
        return true;
    }
    if (held.stage != stage) held_hand_over(); /* another runtime's flows: they go now */
    held.stage = stage;
    if (held.tail != NULL) held.tail->staging.next = flow;
    else held.head = flow;
    held.tail = flow;
    held.count++;
    return true;
}
