/* tests/events/amqp_consume.c: a real AMQP consumer for the events tests and the
 * benchmark (librabbitmq). It declares the topic exchange and a durable queue bound to
 * every routing key, then prints one line per message received,
 *     <message id> <routing key> <body>
 * acknowledging each after printing it. A lost connection (the broker stopped) is
 * retried until --timeout-s passes without a message or a connection. Not a test
 * itself: the tests start it.
 *
 *   amqp_consume --port P [--host H] [--exchange X] [--queue Q] [--declare-only]
 *                [--count N] [--timeout-s S] */
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *host;
    int port;
    const char *exchange;
    const char *queue;
    bool declare_only;
    long count;
    long timeout_s;
} options;

static bool rpc_ok(amqp_connection_state_t conn) {
    return amqp_get_rpc_reply(conn).reply_type == AMQP_RESPONSE_NORMAL;
}

/* Connects, declares, and (unless declare_only) starts consuming; NULL on failure. */
static amqp_connection_state_t connect_consume(const options *o) {
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    struct timeval timeout = {5, 0};
    bool ok = socket != NULL && amqp_socket_open_noblock(socket, o->host, o->port, &timeout) == AMQP_STATUS_OK;
    ok = ok && amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, "guest", "guest").reply_type ==
                   AMQP_RESPONSE_NORMAL;
    if (ok) {
        amqp_channel_open(conn, 1);
        ok = rpc_ok(conn);
    }
    if (ok) {
        amqp_exchange_declare(conn, 1, amqp_cstring_bytes(o->exchange), amqp_cstring_bytes("topic"), 0, 1, 0, 0,
                              amqp_empty_table);
        ok = rpc_ok(conn);
    }
    if (ok) {
        amqp_queue_declare(conn, 1, amqp_cstring_bytes(o->queue), 0, 1, 0, 0, amqp_empty_table);
        ok = rpc_ok(conn);
    }
    if (ok) {
        amqp_queue_bind(conn, 1, amqp_cstring_bytes(o->queue), amqp_cstring_bytes(o->exchange),
                        amqp_cstring_bytes("#"), amqp_empty_table);
        ok = rpc_ok(conn);
    }
    if (ok && !o->declare_only) {
        amqp_basic_qos(conn, 1, 0, 1000, 0);
        ok = rpc_ok(conn);
        amqp_basic_consume(conn, 1, amqp_cstring_bytes(o->queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
        ok = ok && rpc_ok(conn);
    }
    if (!ok) {
        amqp_destroy_connection(conn);
        return NULL;
    }
    return conn;
}

static void print_message(const amqp_envelope_t *envelope) {
    const amqp_basic_properties_t *p = &envelope->message.properties;
    const amqp_bytes_t none = {0, NULL};
    amqp_bytes_t id = (p->_flags & AMQP_BASIC_MESSAGE_ID_FLAG) ? p->message_id : none;
    printf("%.*s %.*s %.*s\n", (int)id.len, (const char *)id.bytes, (int)envelope->routing_key.len,
           (const char *)envelope->routing_key.bytes, (int)envelope->message.body.len,
           (const char *)envelope->message.body.bytes);
    fflush(stdout);
}

/* Consumes until the count is reached or the connection drops; returns messages seen. */
static long consume(amqp_connection_state_t conn, const options *o, long seen, time_t *last_activity) {
    while (o->count == 0 || seen < o->count) {
        amqp_envelope_t envelope;
        struct timeval timeout = {1, 0};
        amqp_maybe_release_buffers(conn);
        amqp_rpc_reply_t reply = amqp_consume_message(conn, &envelope, &timeout, 0);
        if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT) {
            if (time(NULL) - *last_activity > o->timeout_s) return -seen - 1;
            continue;
        }
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) return seen; /* the broker went away */
        print_message(&envelope);
        amqp_basic_ack(conn, 1, envelope.delivery_tag, 0);
        amqp_destroy_envelope(&envelope);
        *last_activity = time(NULL);
        seen++;
    }
    return seen;
}

static bool options_parse(int argc, char **argv, options *o) {
    *o = (options){"127.0.0.1", 0, "paycore.events", "paycore.test", false, 0, 60};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--declare-only") == 0) o->declare_only = true;
        else if (value == NULL) return false;
        else if (strcmp(arg, "--host") == 0) o->host = argv[++i];
        else if (strcmp(arg, "--port") == 0) o->port = atoi(argv[++i]);
        else if (strcmp(arg, "--exchange") == 0) o->exchange = argv[++i];
        else if (strcmp(arg, "--queue") == 0) o->queue = argv[++i];
        else if (strcmp(arg, "--count") == 0) o->count = atol(argv[++i]);
        else if (strcmp(arg, "--timeout-s") == 0) o->timeout_s = atol(argv[++i]);
        else return false;
    }
    return o->port > 0;
}

int main(int argc, char **argv) {
    options o;
    if (!options_parse(argc, argv, &o)) {
        fprintf(stderr, "usage: amqp_consume --port P [--host H] [--exchange X] [--queue Q] [--declare-only]"
                        " [--count N] [--timeout-s S]\n");
        return 2;
    }
    long seen = 0;
    time_t last_activity = time(NULL);
    while (time(NULL) - last_activity <= o.timeout_s) {
        amqp_connection_state_t conn = connect_consume(&o);
        if (conn == NULL) {
            usleep(200000);
            continue;
        }
        last_activity = time(NULL);
        if (o.declare_only) {
            amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
            amqp_destroy_connection(conn);
            return 0;
        }
        seen = consume(conn, &o, seen, &last_activity);
        amqp_destroy_connection(conn);
        if (seen < 0) return 1; /* idle too long */
        if (o.count != 0 && seen >= o.count) return 0;
        fprintf(stderr, "amqp_consume: connection lost after %ld messages; reconnecting\n", seen);
    }
    return 1;
}
