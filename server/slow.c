/* The server's slow lane: one thread that runs the commands whose engine calls block (a
 * read-modify-write run as a transaction, EXEC's block, SCAN's cursors, DBSIZE, INFO's
 * statistics, FLUSHALL).
 * A shard loop must never block (a blocking call there can wait for its own shard), so it hands
 * such a command here (slow_submit) and goes on with its other connections; the lane runs the
 * command's slow() in arrival order, which builds the reply, and pushes it onto its shard's
 * lock-free stack (net->slow_done) and wakes that shard, which sends the reply in order.
 *
 * One thread keeps the lane simple and the order of blocking commands plain; its throughput is
 * that of one thread making blocking calls (each a few microseconds, a durable commit one fsync
 * round). The queue is a mutex and a condition variable: it is off the hot path (GET, SET, DEL,
 * MGET and MSET never come here).
 *
 * EXCLUSIVE. The lane's transactions (EXEC's block, MSETNX, a read-modify-write inside MULTI) are
 * optimistic: one that read a key another client keeps writing fails validation every time, and
 * Redis never fails an EXEC for that. So after CMD_TXN_EXCL_AFTER conflicts the lane holds the
 * writes of every client (slow_exclusive: the nets keep new writes in their backlogs, in order;
 * reads go on) until the engine finished the writes already handed to it; the next attempt then
 * meets no other client's write, and the writes flow again once the command is done. The lane is
 * one thread, so one command at a time holds them, for one transaction's time. Commands the lane
 * runs are never counted as the nets' writes, so it never waits for itself. */
#include <time.h>
#include <errno.h>
#include <stdlib.h>

#include "server/server_int.h"

static void *slow_main(void *arg)
{
    struct server *s = arg;
    pthread_mutex_lock(&s->slow_mu);
    for (;;) {
        while (!s->slow_head && !s->slow_quit)
            pthread_cond_wait(&s->slow_cv, &s->slow_mu);
        if (!s->slow_head)
            break; /* quit, and nothing queued */
        struct cmd *c = s->slow_head;
        s->slow_head = c->slow_next;
        if (!s->slow_head)
            s->slow_tail = NULL;
        pthread_mutex_unlock(&s->slow_mu);
        c->slow(c);
        if (atomic_load(&s->excl)) { /* release the writes: wake every net's backlog */
            atomic_store(&s->excl, 0);
            for (unsigned i = 0; i < s->nshards; i++)
                host_wake(s->db, i);
        }
        struct net *n = c->conn->net;
        ck_stack_push_upmc(&n->slow_done, &c->link); /* release: the reply is complete */
        host_wake(s->db, n->shard);
        pthread_mutex_lock(&s->slow_mu);
    }
    pthread_mutex_unlock(&s->slow_mu);
    return NULL;
}

int slow_start(struct server *s)
{
    if (pthread_mutex_init(&s->slow_mu, NULL) != 0)
        return -ENOMEM;
    if (pthread_cond_init(&s->slow_cv, NULL) != 0) {
        pthread_mutex_destroy(&s->slow_mu);
        return -ENOMEM;
    }
    int rc = pthread_create(&s->slow_thread, NULL, slow_main, s);
    if (rc) {
        pthread_cond_destroy(&s->slow_cv);
        pthread_mutex_destroy(&s->slow_mu);
        return -rc;
    }
    return 0;
}

void slow_stop(struct server *s)
{
    pthread_mutex_lock(&s->slow_mu);
    s->slow_quit = true;
    pthread_cond_signal(&s->slow_cv);
    pthread_mutex_unlock(&s->slow_mu);
    pthread_join(s->slow_thread, NULL);
    pthread_cond_destroy(&s->slow_cv);
    pthread_mutex_destroy(&s->slow_mu);
    for (unsigned i = 0; i < SCAN_TABLE_SIZE; i++) {
        free(s->scans[i].coll);
        free(s->scans[i].key);
    }
}

void slow_submit(struct cmd *c)
{
    struct server *s = c->conn->net->srv;
    c->conn->net->slow_out++;
    c->slow_next = NULL;
    pthread_mutex_lock(&s->slow_mu);
    if (s->slow_tail)
        s->slow_tail->slow_next = c;
    else
        s->slow_head = c;
    s->slow_tail = c;
    pthread_cond_signal(&s->slow_cv);
    pthread_mutex_unlock(&s->slow_mu);
}

void slow_exclusive(struct cmd *c)
{
    struct server *s = c->conn->net->srv;
    if (atomic_load(&s->excl))
        return;
    atomic_store(&s->excl, 1);
    atomic_fetch_add(&s->excl_runs, 1);
    /* the writes in flight complete within a commit's time (or fail): their nets reap them */
    const struct timespec nap = {.tv_sec = 0, .tv_nsec = 20000};
    for (unsigned i = 0; i < s->nshards; i++)
        while (atomic_load(&s->nets[i]->writes_busy) > 0)
            nanosleep(&nap, NULL);
}
