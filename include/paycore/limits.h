/* include/paycore/limits.h: every bound in paycore, with the reason for its value.
 * Hitting a bound returns its own status code; nothing is truncated silently. */
#ifndef PAYCORE_LIMITS_H
#define PAYCORE_LIMITS_H

#include <assert.h>

/* A bound's value as a string literal (an option's default text, a libpq setting). */
#define PC_LIMIT_TEXT_OF(value) #value
#define PC_LIMIT_TEXT(value) PC_LIMIT_TEXT_OF(value)

/* Ids: client-chosen, 1..64 chars of [A-Za-z0-9._:-]; room for the NUL. */
#define PC_ID_BYTES_MAX 64
#define PC_ID_SIZE (PC_ID_BYTES_MAX + 1)

/* One request carries at most this many events (TigerBeetle's batch size, so that
 * clients written against its limits keep working). */
#define LEDGER_BATCH_EVENTS_MAX 8189

/* Metadata: a flat JSON object, serialized compactly; small so that it never
 * dominates the row. */
#define LEDGER_METADATA_BYTES_MAX 1024
#define LEDGER_METADATA_KEYS_MAX 16

/* Accounts resident in memory: sized so that a full table stays within a few
 * hundred MiB (about 150 bytes an account). */
#define LEDGER_ACCOUNTS_MAX (16u * 1024u * 1024u)

/* Open (unresolved) pending transfers held in memory for post/void/expiry. */
#define LEDGER_PENDING_MAX (4u * 1024u * 1024u)

/* The writer drains at most this many events into one store transaction. */
#define WRITER_BATCH_EVENTS_MAX (4 * LEDGER_BATCH_EVENTS_MAX)

/* Commands waiting for the writer; past this, the API sheds load (503). */
#define WRITER_QUEUE_DEPTH_MAX 65536

/* A pending transfer may wait at most ten years for its timeout. */
#define LEDGER_TIMEOUT_S_MAX (10u * 366u * 24u * 3600u)

/* The indexer retries a failed write of the id index file this many times, waiting
 * STORE_INDEX_RETRY_MS_FIRST, then twice as long each time up to STORE_INDEX_RETRY_MS_MAX
 * (about 5 s in all): a momentary lock or full disk may pass. Then the store stops
 * taking writes instead of stalling committed requests behind a full memtable (the
 * index is derived data: the next start rebuilds it from the main file). */
#define STORE_INDEX_WRITE_ATTEMPTS_MAX 8
#define STORE_INDEX_RETRY_MS_FIRST 50
#define STORE_INDEX_RETRY_MS_MAX 2000
/* A standby writer (paycore serve --store URL --standby) polls the writer's lock this
 * often: it takes over within this much of the holder's connection closing (the goal
 * is 5 s), at one cheap query a poll. */
#define STORE_STANDBY_POLL_MS 500
/* A writer that has just stopped or died holds the PostgreSQL writer's lock until its
 * server session ends, a moment later: a new writer polls this long for it before it
 * refuses with store_in_use (a writer that is alive is refused after it). */
#define STORE_WRITER_LOCK_GRACE_MS 5000
/* A new writer waits this long for the staged transactions of the previous writer of
 * its database (the pipeline's shared lock) to end before it loads: a staged part lives
 * from its COPY to its COMMIT (under a second normally), and a dead writer's session
 * ends with it. A holder past this is a session the server has not ended (the old
 * node cut off): start is refused with store_in_use naming its backend pid, and the
 * supervisor's restart tries again. */
#define STORE_PIPELINE_LOCK_WAIT_MS 15000
/* A store URL asking for a writable server (target_session_attrs=read-write, Patroni)
 * while none is: paycore retries this often, for serve --store-wait-s (default
 * STORE_WRITABLE_WAIT_S_DEFAULT: Patroni's default leader TTL of 30 s plus its
 * loop_wait of 10 s, and some) before it refuses to start. */
#define STORE_WRITABLE_POLL_MS 500
#define STORE_WRITABLE_WAIT_S_DEFAULT 60
#define STORE_WRITABLE_WAIT_S_MAX 3600
/* A PostgreSQL server that vanished (power loss, a partition) answers nothing: data
 * the writer sent (a COMMIT) unacknowledged this long fails its connection, instead of
 * the kernel's retransmissions (~15 min), so that paycore exits and its restart finds
 * the new primary within a failover's time. An idle connection is probed after
 * STORE_PG_KEEPALIVE_IDLE_S, every _INTERVAL_S, _COUNT times. A store URL may set
 * its own (tcp_user_timeout, keepalives_idle, ...). */
#define STORE_PG_TCP_USER_TIMEOUT_MS 30000
#define STORE_PG_KEEPALIVE_IDLE_S 10
#define STORE_PG_KEEPALIVE_INTERVAL_S 3
#define STORE_PG_KEEPALIVE_COUNT 3
/* A batch's transfers go to PostgreSQL in pieces of this many bytes while the writer
 * makes the rest (pg_conn.c, pg_stream_*): large enough that a piece costs one write,
 * small enough that the server starts on the rows early (about 1,500 transfers). */
#define STORE_PG_COPY_CHUNK_BYTES (256 * 1024)

/* An account's transfers in one batch are listed by rows of at most this many
 * timestamps (PostgreSQL's account_transfers, schema v10): a row stays small enough to
 * live in its page (no TOAST), and a page of an account's transfers reads at most
 * (page + 1) rows of them however many transfers a hot account has in a batch. */
#define STORE_PG_ACCOUNT_ROW_TIMESTAMPS 64

/* The journal signs a checkpoint every this many batches. */
#define JOURNAL_CHECKPOINT_BATCHES 64

/* Path buffers (the database's and the names beside it, backups, the dashboard's
 * files): Linux's PATH_MAX. */
#define PC_PATH_BYTES_MAX 4096

/* Currencies one sum table holds (ledger totals, verify): the ISO 4217 table has
 * about 180; verify names a file with more distinct codes a discrepancy. */
#define PC_CURRENCIES_MAX 256

/* The largest key a key file holds (an Ed25519 secret key; hex is twice that). */
#define PC_KEY_FILE_BYTES_MAX 64

/* The newest SQLite file format: the store migrates up to it, verify reads 1 to it. */
#define STORE_SCHEMA_VERSION_MAX 17

/* A merchant's events on SQLite (schema version 17): one span row per owner and run of
 * a transaction's events (src/store/sqlite_event_spans.c). A run ends after more than
 * this many other events: a listing reads at most this many rows not the merchant's
 * between two of its own. */
#define STORE_EVENT_SPAN_GAP_MAX 16
/* Owners whose runs a transaction keeps open at once; the least recent closes first. */
#define STORE_EVENT_SPANS_OPEN_MAX 8

/* verify on PostgreSQL fetches each stream's cursor this many rows at a time: one
 * round trip per 2,048 rows, and at most ~2,048 rows of each of six streams held
 * (about 1 MB with the largest metadata). */
#define PG_VERIFY_FETCH_ROWS 2048

/* Store (src/store/). A balance snapshot every this many batches (and at a clean stop):
 * bounds the replay at load to this many batches. */
#define STORE_BALANCE_SNAPSHOT_BATCHES 64

/* The id memtable: committed ids wait there for the indexer thread, which writes a
 * memtable into the index file once it holds STORE_MEMTABLE_FLUSH_ENTRIES (in steps,
 * below). Past STORE_MEMTABLE_ENTRIES_MAX unindexed ids a batch waits for the indexer
 * before it begins: a slow index file bounds memory (~40 bytes an entry) instead of
 * growing it. The flush size is what an insert into the file's random-key B-trees
 * costs: the more entries a flush takes, the more of them share each page it dirties.
 * 262,144 rather than 65,536: once the file holds millions of ids the indexer's CPU
 * grows with it (0.06 -> 0.12 of a core over five minutes of payments). Two
 * interleaved pairs of bench_payments --sustain 300 --cards 2000000: 5,394 and 5,129
 * payments/s (p99 22.5, 23.8 ms) against 4,948 and 5,045 (24.5, 24.2) with 65,536.
 * The price: an account's history scans the memtables (up to twice this many
 * entries), and the catch-up after a crash re-reads as many. */
#define STORE_MEMTABLE_FLUSH_ENTRIES 262144u
#define STORE_MEMTABLE_ENTRIES_MAX (512u * 1024u)

/* The indexer writes a memtable in steps: transactions of about
 * STORE_INDEX_STEP_FRAMES pages (1 MiB), each followed by a passive checkpoint. Every
 * fsync on this disk queues behind whatever else is being flushed, the writer's commit
 * too: one transaction for a whole memtable made a WAL of thousands of pages, and its
 * checkpoint's two fsyncs (4.5-7.4 ms) held the writer's fdatasync 4-6 ms. The pairs a
 * step inserts follow the pages the last step wrote (random keys: about a page each in
 * a large file, many a page in a small one), between STORE_INDEX_STEP_PAIRS_MIN and
 * STORE_INDEX_STEP_PAIRS_MAX, at most twice the last step's; the first inserts
 * STORE_INDEX_STEP_FRAMES pairs (at most about a page each). */
#define STORE_INDEX_STEP_FRAMES 256
#define STORE_INDEX_STEP_PAIRS_MIN 64u
#define STORE_INDEX_STEP_PAIRS_MAX 65536u

/* The bloom filter over the index file's ids: 32 MiB, ~0.5 % false positives at 20M
 * ids (a false positive costs one index lookup, never a wrong answer). */
#define STORE_BLOOM_BITS (1ull << 28)

/* A reader's own page cache (the writer's is 128 MiB, the index file's 256 MiB). A
 * reader's cache is emptied whenever it begins a read after some commit, so under
 * writes it holds one read's pages; while nothing is written it would keep everything
 * read through it, up to its bound, in every pooled reader (one per busy thread). */
#define STORE_READER_CACHE_KIB (16 * 1024)

/* The page cache's region (store/sqlite_pcache.c) is faulted in by its own thread at
 * most this far past the slots handed out, and woken once the distance falls to half
 * of it: a first touch there would otherwise zero a 2 MiB huge page inside the
 * writer's batch. 16 MiB is eight huge pages, about 3,800 cached pages, a few
 * seconds of the cache's growth under the payments load, so a late wake-up of that
 * low-priority thread still finds memory ready; and it is all the region's resident
 * size ever runs ahead of its use (the region is 280 MiB). */
#define STORE_PCACHE_WARM_AHEAD_BYTES (16u * 1024 * 1024)
static_assert(STORE_PCACHE_WARM_AHEAD_BYTES % (2u * 1024 * 1024) == 0, "whole huge pages ahead");

/* The WAL checkpoint thread's schedule (store/sqlite_wal_checkpointer.c). The first
 * passive checkpoint once the WAL holds STORE_WAL_CHECKPOINT_PAGES frames of a 4 KiB
 * page (~16 MiB), then one per STORE_WAL_CHECKPOINT_STEP_FRAMES new frames (~1 MiB: a
 * page the commits rewrite is copied once a step, not once a commit; a longer step
 * made the database file's fsync after it long enough, 4-10 ms at ~4 MiB, to hold the
 * writer's WAL fsync behind it), and past
 * STORE_WAL_FRAMES_SOFT_MAX (~64 MiB, the WAL not restarted meanwhile) one after every
 * commit, the chances to restart it, until it does; one more when the writer pauses
 * STORE_WAL_CHECKPOINT_IDLE_MS, so that its next commit restarts the WAL. The WAL's
 * length has no hard bound: a reader holding a snapshot keeps every frame after it
 * (SQLite cannot restart the WAL under it). After a restart the writer's first commit
 * truncates the file to STORE_WAL_FILE_BYTES_MAX (journal_size_limit), above the
 * payments load's cycle (70-98 MiB measured) so that it is not grown again each time. */
#define STORE_WAL_CHECKPOINT_PAGES 4096
#define STORE_WAL_CHECKPOINT_STEP_FRAMES 256
#define STORE_WAL_FRAMES_SOFT_MAX 16384
#define STORE_WAL_CHECKPOINT_IDLE_MS 50
#define STORE_WAL_FILE_BYTES_MAX (128ll * 1024 * 1024)
static_assert(STORE_WAL_CHECKPOINT_PAGES < STORE_WAL_FRAMES_SOFT_MAX, "the soft bound is past the first checkpoint");
static_assert(STORE_WAL_FILE_BYTES_MAX > STORE_WAL_FRAMES_SOFT_MAX * 4120ll, "the file keeps a cycle up to the soft bound");

/* The most of one transaction's WAL frames the writing connections hold in memory
 * before writing them (store/sqlite_vfs.h): a larger transaction goes out in pieces
 * of this size. SQLite's unix VFS writes at most 128 KiB - 1 bytes per pwrite (it
 * masks the length to 17 bits), so one piece is one system call: 124 KiB, 30 frames
 * of a 4 KiB page. */
#define STORE_WALBUF_BYTES_MAX (124u * 1024u)

/* The writer's lock file: taking it retries when the file was replaced under us; a
 * refused start reads the holder's pid, which it writes just after its lock, for at
 * most STORE_LOCK_PID_READ_ATTEMPTS_MAX x STORE_LOCK_PID_READ_PAUSE_NS (0.5 s). */
#define STORE_LOCK_TAKE_ATTEMPTS_MAX 16
#define STORE_LOCK_PID_READ_ATTEMPTS_MAX 50
#define STORE_LOCK_PID_READ_PAUSE_NS (10 * 1000 * 1000)

/* Writer (src/writer/). Expiries voided per batch: a request's worth, so that a
 * backlog of expiries cannot stall requests (and the id memtable's room for one batch
 * counts them). */
#define WRITER_EXPIRE_PER_BATCH_MAX LEDGER_BATCH_EVENTS_MAX

/* After a failed batch, expiries and probes wait this long, doubling up to the max:
 * a store that fails fast must not turn the writer into a busy loop. */
#define WRITER_RETRY_BACKOFF_NS_MIN (10u * 1000u * 1000u)
#define WRITER_RETRY_BACKOFF_NS_MAX (2000u * 1000u * 1000u)

/* HTTP. */
#define API_BODY_BYTES_DEFAULT (4 * 1024 * 1024) /* a full 8189-transfer batch fits */
#define API_STRING_BYTES_MAX 256                 /* names, references, metadata values */
#define API_JSON_DEPTH_MAX 8                     /* no request shape nests deeper */
#define API_IDEMPOTENCY_KEY_BYTES_MAX 255
#define API_LIST_LIMIT_MAX 100
#define API_KEYS_MAX 4096           /* API keys, all held in memory (hash, scope, name) */
#define API_KEY_GRANTS_MAX 1024     /* accounts granted in one key request */
#define API_READERS_MAX 256         /* pooled store readers (one per busy MHD thread) */
#define API_INFLIGHT_MAX 65536      /* Idempotency-Keys running at once */
#define API_REPLY_HEADERS_MAX 8     /* extra headers of one reply: the dashboard's carry six */
#define API_ROUTE_SEGMENTS_MAX 8    /* "/v1/a/b/c": no route has more; longer is a 404 */
#define API_ROUTE_PARAMS_MAX 4      /* {id} parts of one route */
/* Kept inside each request (api_internal.h): a path this long or shorter, and the first
 * allocations of a request up to this many bytes, take no allocation of their own. */
#define API_REQUEST_PATH_INLINE_BYTES 64
#define API_REQUEST_ARENA_INLINE_BYTES 48
/* Past those, a request's allocations are cut from blocks of this many bytes (a larger
 * one gets a block of its own): a payment's request, its headers and Idempotency-Key
 * copied, takes one block instead of a calloc each (and a free each on the thread that
 * answers it, which met the allocating thread's arena lock). With its header the block
 * stays under 1 KiB, where glibc serves it from its small bins and thread caches. */
#define API_REQUEST_ARENA_BLOCK_BYTES 960
/* Ended requests (about 1 KiB each) and their blocks kept for the next ones: more than
 * the requests a busy server has in flight at once, under 1 MiB held after a burst. */
#define API_REQUEST_SPARES_MAX 512

/* Request bodies are buffered whole before their handler runs. The server holds at
 * most API_BODY_BUDGET_BYTES of them at once (each may be up to --body-max, and its
 * parsed JSON several times that); one API key at most API_BODY_KEY_BODIES full
 * bodies (so one key's slow uploads block that key only); and keys other than admin
 * keys leave API_BODY_ADMIN_RESERVE_BYTES free, so an operator can always act. */
#define API_BODY_BUDGET_BYTES (256ull * 1024 * 1024)
#define API_BODY_KEY_BODIES 16
#define API_BODY_ADMIN_RESERVE_BYTES (API_BODY_BUDGET_BYTES / 8)

/* Connections: MHD's table; one client address may hold API_CONNECTIONS_PER_IP_DEFAULT
 * of them unless --connections-per-ip-max says otherwise (raise it, or 0, behind a
 * proxy: every client then shares the proxy's address). */
#define API_CONNECTIONS_MAX 4096
#define API_CONNECTIONS_PER_IP_DEFAULT 1024
/* The first connections are served by a poll() loop, the rest by an epoll one (api/
 * accept.c says why): this many per HTTP thread in the poll loop, whose every wait
 * costs in proportion to its connections (~0.15 us each here). */
#define API_POLL_CONNECTIONS_PER_THREAD 48
/* The per-address counts of connections (api/conn.c): twice the connections. */
#define API_CONN_ADDRESS_SLOTS (2 * API_CONNECTIONS_MAX)
/* One connection's memory in libmicrohttpd: its request line and headers, its read
 * buffer and its reply's headers. MHD zeroes all of it for each request on a kept-alive
 * connection, so it is kept to what a request needs (its default is 32 KiB). The API's
 * own heads stay under 2 KiB (a 255-byte Idempotency-Key, a key, a cursor in the line,
 * the forwarding headers of a shard set); 8 KiB reads a request line and headers of up
 * to 6 KiB in up to 30 fields (each field also takes ~56 bytes of it), room for a
 * browser's as well (docs/architecture.md); larger: 431. A body is not held here: it
 * passes through the read buffer to the handler, which keeps its own copy. */
#define API_CONNECTION_MEMORY_BYTES (8 * 1024)
/* The accept loop (api/accept.c) takes at most this many connections per wake-up
 * before it looks for a stop again, and waits this long when the process is out of
 * descriptors (the connections stay in the backlog meanwhile). */
#define API_ACCEPT_BATCH_MAX 64
#define API_ACCEPT_PAUSE_MS 10

/* Stored Idempotency-Key replies live at least a day (as Stripe's do): a client's
 * retries after an outage of hours still replay. Their room is bounded in total
 * (--idempotency-max-bytes: past it every new reply is refused) and shared fairly
 * (--idempotency-key-max-bytes: a key's share, enforced only once the room is short,
 * i.e. API_IDEM_ROOM_SHORT_PERCENT full, so one busy key may use the room the others
 * leave, and the rest is kept for keys within their share). A payment (authorize +
 * capture, each under its own key) takes about 260 bytes of room: the default room
 * holds 24 h of ~380 payments/s, its short mark (6 GiB) ~24 M payments, e.g. a burst
 * of 5,000/s for 80 minutes (docs/architecture.md, limits). A full batch's reply is
 * about 1 MiB. The purge deletes expired rows through the writer in chunks this small
 * (one short write transaction each, the next at once while chunks come full: it must
 * keep up with the rate replies are stored), and only while the writer's queue holds
 * fewer events than API_IDEM_PURGE_QUEUE_EVENTS_MAX. */
#define API_IDEM_RETENTION_H_MIN 24
#define API_IDEM_BYTES_DEFAULT (8ull << 30)
#define API_IDEM_KEY_BYTES_DEFAULT (256ull << 20)
#define API_IDEM_ROOM_SHORT_PERCENT 75
#define API_IDEM_PURGE_ROWS_MAX 256
#define API_IDEM_PURGE_BYTES_MAX (4ull << 20)
#define API_IDEM_PURGE_QUEUE_EVENTS_MAX 1024

/* The in-memory index of stored Idempotency-Keys (store/idem_index.h): 16 to 32 bytes
 * a key (a table of 64-bit prints at most half full), grown as keys arrive. The
 * default holds the rows the default room allows at a payment reply's size (about
 * 130 bytes a row: 8 GiB / 130 B ~ 66M keys, 2^27 slots = 1 GiB at most); past
 * --idempotency-index-max-keys every lookup reads the store as it would without an
 * index (never a wrong "new"), until the purge brought the rows under
 * API_IDEM_INDEX_REBUILD_PERCENT of it: then it is rebuilt from the store in the
 * background (a restart, too, finds the rows within it again). */
#define API_IDEM_INDEX_KEYS_DEFAULT 67108864     /* 2^26 */
#define API_IDEM_INDEX_KEYS_MAX 134217728 /* 2^27: 2 GiB of table at most */
#define API_IDEM_INDEX_REBUILD_PERCENT 75 /* room left for the keys that arrive during the
                                             rebuild's scan, and no rebuild after each purge */
#define API_IDEM_INDEX_SCAN_CHECK_ROWS 4096 /* the scan that loads the index (at start, a
                                               rebuild) asks whether to go on this often:
                                               a stop waits for a few ms of rows, not for
                                               millions (about 1 us a row) */

/* Events (src/events/). */
#define EVENTS_BODY_BYTES_MAX (PAY_DOC_BYTES_MAX + 8 * 1024) /* one event's JSON: a ledger
                                               object is ~2 KiB; a payment's event carries its
                                               whole document, plus the envelope (stored
                                               as a reference, rendered at delivery) */
#define EVENTS_REF_BYTES_MAX 128            /* a stored reference ("@payment:<id>:<version>"):
                                               an id (64) and a version fit with room */
#define EVENTS_OWNERS_MAX 8                 /* merchants who may see one event (a transfer
                                               touches two accounts, each granted to a few keys) */
#define EVENTS_RELAY_ROWS_MAX 1024          /* a shard's outbox rows copied into the home outbox
                                               per relay run (and per read of a global
                                               transaction's home leg): bounds the home batch
                                               it rides in */
#define EVENTS_RELAY_GAP_MS 20             /* the relay waits this long after a wake, so that
                                               one run copies many commits of the shards (each
                                               run is a batch on the home shard's writer) */
#define EVENTS_RELAY_INTERVAL_MS 1000       /* the relay looks at the shards' outboxes at least
                                               this often (a commit there wakes it at once) */
#define EVENTS_URL_BYTES_MAX 2048           /* browsers' and proxies' common URL bound */
#define EVENTS_ENDPOINTS_MAX 256            /* webhook endpoints in all: each holds a window
                                               of work in the delivery worker's memory */
#define EVENTS_ENDPOINTS_PER_MERCHANT_MAX 16  /* so one merchant cannot use them all */
#define EVENTS_WINDOW_MAX 1024              /* new events a destination holds in memory;
                                               past it, reading the outbox waits */
#define EVENTS_RETRY_ROWS_MAX 10000         /* retrying deliveries of one destination held
                                               in memory; past it, new events wait in the
                                               outbox (the lag shows it), none is lost */
#define EVENTS_WINDOW_BODY_BYTES_MAX (4 * 1024 * 1024) /* event bodies a destination keeps
                                               read (no second read to send); past it a
                                               job reads its body when sent */
#define EVENTS_INFLIGHT_PER_DESTINATION_MAX 16 /* concurrent requests to one endpoint */
#define EVENTS_INFLIGHT_MAX 256             /* concurrent webhook requests in all */
#define EVENTS_PURGE_ROWS_MAX 10000         /* events deleted per writer batch by retention:
                                               keeps the writer's transaction short */
#define EVENTS_AMQP_UNCONFIRMED_MAX 1024    /* published, not yet confirmed by the broker */
#define EVENTS_FLUSH_OPS_MAX 8192           /* delivery-state changes in one writer command */

static_assert(EVENTS_INFLIGHT_PER_DESTINATION_MAX <= EVENTS_INFLIGHT_MAX,
              "one endpoint's requests must fit in the worker's total");

/* Operations (GET /v1/stats, the dashboard, /metrics). */
#define OBS_ROUTES_MAX 64             /* routes with their own metrics series: all of them */
#define OBS_STATS_SECONDS 64          /* per-second history: a minute of charts, plus slack */
#define OBS_STATS_HISTORY_S_MAX 60    /* the longest window or history a client may ask */
#define OBS_STATS_SCOPES_MAX 4096     /* keys with their own figures: as many as API keys */
#define WEB_ASSET_FILES_MAX 64        /* the built dashboard is a handful of files */
#define WEB_ASSET_BYTES_MAX (8u * 1024u * 1024u) /* all of them together, held in memory */

/* Gateway (src/gateway/). */
#define GW_CHANNELS_MAX 16          /* channels in one config: a routing decision scans them all */
#define GW_NAME_BYTES_MAX 32        /* channel names: [A-Za-z0-9_-], a metrics label value */
#define GW_NAME_SIZE (GW_NAME_BYTES_MAX + 1)
#define GW_KEY_BYTES_MAX 64         /* idempotency key toward a channel (the protocol's bound) */
#define GW_KEY_SIZE (GW_KEY_BYTES_MAX + 1)
#define GW_CODE_BYTES_MAX 24        /* a channel's response code ("insufficient_balance") */
#define GW_CODE_SIZE (GW_CODE_BYTES_MAX + 1)
#define GW_CODES_MAX 32             /* response codes in one channel's table */
#define GW_METHOD_SIZE 17           /* "card", "wallet", "bank_transfer" */
#define GW_METHODS_MAX 8            /* methods one channel accepts */
#define GW_LIST_MAX 64              /* currencies or countries one channel accepts */
#define GW_CARD_NUMBER_SIZE 20      /* PANs are at most 19 digits */
#define GW_BANK_FIELD_SIZE 35       /* IBAN-sized account and routing numbers */
#define GW_ATTEMPTS_MAX 8           /* channel calls for one operation (retries included) */
#define GW_MESSAGE_SIZE 160         /* a channel's message, a refusal's reason */
#define GW_WHY_SIZE 160             /* the routing decision's reason */
#define GW_URL_BYTES_MAX 512        /* a channel's base URL */
#define GW_HEADERS_MAX 5            /* request headers the gateway sends a channel */
#define GW_SECRET_BYTES_MAX 256     /* a channel's API key or callback secret */
#define GW_THREADS_MAX 16           /* gateway threads (each runs one curl multi) */
#define GW_EPOLL_EVENTS 64          /* ready sockets one gateway wake-up takes at most */
#define GW_HTTP_CONNECTIONS_MAX 256 /* connections a gateway thread opens to one channel address (its
                                     own client): past it calls wait for one, within their timeout */
#define GW_HTTP_POOLS_MAX 32        /* channel addresses a gateway thread keeps connections to (two
                                     configs' worth across a reload); past it curl takes the call */
#define GW_HTTP_HEAD_BYTES 1024    /* a request's head or body formatted on the stack at once; longer
                                     ones (a long URL or API key) are sized first, then formatted */
#define GW_HTTP_READ_BYTES 16384    /* one recv of an answer (answers are a few hundred bytes) */
#define GW_PASS_HOOKS_MAX 4         /* distinct pass_end hooks one gateway pass remembers; more are
                                     run at once (a hook is only a hand-over, never a result) */
#define GW_IDLE_CONNECTIONS_MAX 1024 /* kept-alive connections per gateway thread: curl's default
                                     (4 per call in flight) closes them whenever the calls in
                                     flight dip, and every later call pays a new connection */
#define GW_CALLS_MAX 65536          /* operations queued or running; past it: limit_reached */
#define GW_CALLS_FREE_MAX 256       /* ended calls kept for reuse (5.8 kB each: a fresh one is a
                                     large allocation on the submitting HTTP thread, freed on a
                                     gateway thread, so no thread's malloc cache ever holds one) */
#define GW_RESPONSE_BYTES_MAX (64 * 1024) /* a channel answer larger than this is garbage */
#define GW_CONFIG_BYTES_MAX (1024 * 1024) /* a channels file is small; bigger is a mistake */
#define GW_CONFIG_DEPTH_MAX 8       /* the channels file's deepest nesting */
#define GW_WINDOW_CALLS_MAX 4096    /* sliding windows (success rate, breaker), in calls */
#define GW_TIMEOUT_MS_MAX 120000    /* a channel call longer than 2 minutes is a dead channel */
#define GW_AUTHORIZATION_WINDOW_S_MAX LEDGER_TIMEOUT_S_MAX /* a channel's hold is a ledger timeout */
#define GW_LATENCY_SAMPLES 256      /* recent latencies kept per channel for p50/p99 */
#define GW_CALLBACK_SKEW_S 300      /* a signed callback older or newer than this is refused */

static_assert(GW_CHANNELS_MAX <= 255, "decision order indexes are uint8_t");
static_assert(GW_KEY_BYTES_MAX <= PC_ID_BYTES_MAX, "a channel key fits the protocol's id bound");

static_assert(LEDGER_BATCH_EVENTS_MAX <= WRITER_BATCH_EVENTS_MAX,
              "a full request batch must fit in one writer batch");
static_assert(WRITER_BATCH_EVENTS_MAX <= WRITER_QUEUE_DEPTH_MAX,
              "a full writer batch must fit in the queue");
static_assert(API_BODY_ADMIN_RESERVE_BYTES >= API_BODY_BYTES_DEFAULT,
              "the admin reserve holds at least one full default body");
static_assert(API_BODY_KEY_BODIES * API_BODY_BYTES_DEFAULT <= API_BODY_BUDGET_BYTES / 4,
              "with the default --body-max, no key takes more than a quarter of the budget");
static_assert(API_CONNECTIONS_PER_IP_DEFAULT <= API_CONNECTIONS_MAX / 4,
              "one address leaves most connections to the others");
static_assert(API_IDEM_KEY_BYTES_DEFAULT <= API_IDEM_BYTES_DEFAULT,
              "one key's stored replies fit in the total");
static_assert(API_IDEM_PURGE_QUEUE_EVENTS_MAX < WRITER_QUEUE_DEPTH_MAX,
              "the purge yields before the queue is full");
static_assert(STORE_MEMTABLE_FLUSH_ENTRIES <= STORE_MEMTABLE_ENTRIES_MAX,
              "the indexer takes a memtable before the writer has to wait");
static_assert(STORE_INDEX_STEP_PAIRS_MIN <= STORE_INDEX_STEP_FRAMES && STORE_INDEX_STEP_FRAMES <= STORE_INDEX_STEP_PAIRS_MAX,
              "the first step (a pair a page: STORE_INDEX_STEP_FRAMES pairs) is in the range");
static_assert(WRITER_EXPIRE_PER_BATCH_MAX <= WRITER_BATCH_EVENTS_MAX,
              "a batch's expiries are no more than its events");
static_assert(STORE_BALANCE_SNAPSHOT_BATCHES >= 1, "a snapshot needs a batch");
static_assert(WRITER_RETRY_BACKOFF_NS_MIN <= WRITER_RETRY_BACKOFF_NS_MAX,
              "the backoff grows from its first wait");
static_assert(API_ROUTE_PARAMS_MAX <= API_ROUTE_SEGMENTS_MAX, "a parameter is a segment");
static_assert(OBS_STATS_SCOPES_MAX >= API_KEYS_MAX, "every key can have its own figures");
static_assert(OBS_STATS_SECONDS > OBS_STATS_HISTORY_S_MAX + 1,
              "the slot being written must never be one that is read");

/* Risk (src/risk/). */
#define RISK_KEY_BYTES_MAX PC_ID_BYTES_MAX /* payer, payee, device ids: as ledger ids */
#define RISK_KEY_SIZE (RISK_KEY_BYTES_MAX + 1)
#define RISK_RING_EVENTS 16        /* a payer's remembered payments: covers 24 h for
                                      all but the busiest payers; counts saturate there */
#define RISK_KNOWN_SLOTS 4         /* devices / countries / IPs remembered per payer */
#define RISK_ENTITY_PAYERS 8       /* distinct payers remembered per device / IP */
#define RISK_PAYERS_DEFAULT 1000000u      /* 1M payers in <= 512 MiB (docs/risk.md) */
#define RISK_ENTITIES_DEFAULT 1000000u  /* merchants + devices + IP prefixes */
#define RISK_IDLE_S_DEFAULT (90u * 86400u) /* a key idle this long is evicted */
#define RISK_RULES_MAX 1024        /* rules in one file: each is evaluated per decision */
#define RISK_RULES_LINE_BYTES_MAX 1024
#define RISK_REASONS_MAX 16        /* reasons reported per decision */
#define RISK_REASON_BYTES_MAX 48
#define RISK_REASON_KINDS_MAX 128  /* distinct reason codes counted for /metrics */
#define RISK_REVIEWS_MAX 65536     /* reviews held in memory (open ones first) */
#define RISK_MCC_LIST_MAX 16       /* merchant category codes one rule names */
#define RISK_CSV_LINE_BYTES_MAX 1024
#define RISK_CSV_FIELDS_MAX 32     /* columns of a CSV line: the format has 14 */
#define RISK_MODEL_NAMES_BYTES_MAX 4096 /* the model's stored feature-name list */
#define RISK_MODEL_NODES_MAX (1u << 22) /* tree nodes paycore walks itself (12 bytes each:
                                      48 MiB); a bigger model is scored through XGBoost */
#define RISK_MODEL_DEPTH_MAX 64    /* deeper trees: scored through XGBoost (bounds the
                                      recursion that copies a tree) */
#define RISK_MODEL_PROBE_ROWS 64   /* rows scored both ways at load: any difference and
                                      XGBoost scores (a ~2 ms check per load) */
#define RISK_STORE_QUEUE_MAX 65536 /* decisions waiting for the store thread */
#define RISK_STORE_BATCH_MAX 4096  /* rows in one store transaction */
#define RISK_STORE_SPARE_MAX 1024  /* written ops kept for reuse (1.4 kB each: a fresh one is a
                                    large allocation on the scoring HTTP thread, freed on the
                                    store thread) */
#define RISK_STORE_WAIT_MS_MAX 1000 /* a full queue holds the caller at most this long */
#define RISK_STORE_GATHER_MS 20    /* a decisions batch fills this long before its commit:
                                      at most 50 fsyncs/s for the decisions file, whatever
                                      the payment rate (a flush commits at once) */
#define RISK_STORE_CHECKPOINT_FRAMES 256 /* the decisions file's WAL is copied into it (a passive
                                      checkpoint after the commit that reached this many
                                      pages: 1 MiB) in steps this small: every fsync on the
                                      disk queues behind the flushes under way, the ledger's
                                      commit too, and SQLite's default (1000 pages) made
                                      fsyncs of the decisions file of up to 6 ms */

static_assert(RISK_STORE_BATCH_MAX <= RISK_STORE_QUEUE_MAX, "a store batch comes from the queue");

/* Command-line client (src/cli/). */
#define CLI_REPLY_BYTES_MAX (64u * 1024u * 1024u) /* a reply larger than this is not ours */
#define CLI_LOAD_THREADS_MAX 1024  /* paycore load's connections, a thread each */
#define CLI_LOAD_BACKLOG_MAX 65536 /* open loop: arrivals waiting for a connection */

/* Channel simulators (docs/channels.md). */
#define SIM_BODY_BYTES_MAX (64 * 1024)          /* the largest request is a few hundred bytes */
#define SIM_AMOUNT_MINOR_MAX 1000000000000000LL /* 10^15: above any real payment; a sum of
                                                   thousands of them stays far from int64 */
#define SIM_REF_BYTES_MAX 255                   /* merchant_ref, reference */
#define SIM_URL_BYTES_MAX 2048                  /* callback_url: what browsers accept */
#define SIM_PATH_BYTES_MAX 1024                 /* request paths and file paths */
#define SIM_ID_SIZE PC_ID_SIZE                  /* keys and ids share paycore's id rules */
#define SIM_CHALLENGE_CODE_BYTES_MAX 32
#define SIM_OUTAGES_MAX 16                      /* windows in one fault config */
#define SIM_HOLD_MS_MAX 600000                  /* a held timeout: ten minutes at most */
#define SIM_LATENCY_MS_MAX 600000               /* one simulated latency */
#define SIM_DISCREPANCY_COUNT_MAX 100           /* rows one injected discrepancy touches */
#define SIM_CONNECTIONS_MAX 1024                /* an fd and a request buffer each: bounded memory */
#define SIM_DATA_ENTRIES_MAX 100000             /* cardholders or accounts in a --data file */
#define SIM_REPORT_ROWS_MAX 1000000             /* one day's settlement report */
#define SIM_CALLBACK_RETRY_MS_MAX 3600000       /* retries never wait longer than an hour */
#define SIM_SETTLE_BATCH_MAX 100                /* bank transfers decided in one transaction */
#define SIM_CALLBACKS_PER_PASS 32               /* deliveries before the worker looks again */
#define SIM_CONNECTION_IDLE_S 120               /* an idle keep-alive connection is closed */
#define SIM_CONNECTION_MEMORY_BYTES (4 * 1024)  /* one connection's headers and buffers: a request's
                                                   line and headers fit up to ~3.8 KiB (MHD answers 431
                                                   above), the largest legal one (a 1 KiB path, a 256-byte
                                                   key, an id) ~1.5 KiB; MHD zeroes the whole pool, and half
                                                   of it again, between two requests of a kept-alive
                                                   connection: 8 KiB cost ~12k instructions a request */
#define SIM_HEAD_BYTES_MAX 3840                  /* --http-engine: request line and headers (431 above),
                                                   the ~3.8 KiB that fit MHD's pool above */
#define SIM_LOOP_WAIT_MS_MAX 1000               /* the event loop looks at the clock at least this often */
#define SIM_STMT_CACHE_MAX 96                   /* prepared statements: the simulator has ~60 */
#define SIM_CHECKPOINT_WAL_KIB (4 * 1024)      /* WAL written (pages of the record's size) before the worker
                                                 * checkpoints: a page rewritten by many groups meanwhile
                                                 * (a table's last leaf) is copied and synced once; not
                                                 * more: the database file's fsync after 32 MiB took
                                                 * 20-28 ms and held every other fsync on the disk
                                                 * (the server's commits) behind it */
#define SIM_WAL_WRITEBACK_KIB 1024             /* WAL written before the worker starts writing it to the
                                                 * disk (sync_file_range, no wait): the checkpoint's fsync
                                                 * of the WAL (synchronous=NORMAL: its first) then finds
                                                 * little left, where it wrote all SIM_CHECKPOINT_WAL_KIB
                                                 * and every other fsync on the disk (the server's commits)
                                                 * queued behind it; a smaller checkpoint instead copied
                                                 * the pages every group rewrites more often (simulator
                                                 * CPU 0.057 -> 0.066 ms a payment at 1 MiB) */
#define SIM_CACHE_KIB (64 * 1024)               /* the record's page cache: a benchmark's record (a few
                                                 * tens of MiB) stays in it, so a request's B-tree
                                                 * searches read no page from the file */
#define SIM_GROUP_UNITS_MAX 256                 /* requests one group commit carries at most:
                                                 * bounds a group's wait when arrivals never pause */
#define SIM_DEMO_START_MS 60000                 /* a sanitized build on a busy machine starts slowly */
#define SIM_DEMO_STOP_MS 10000                  /* then a demo simulator is killed */
#define SIM_DEMO_ENV_MAX 512                    /* environment entries passed to a demo simulator */

/* Payments (src/payments/). */
#define PAY_MERCHANT_ID_BYTES_MAX 32   /* "mer:<id>:<cur>:available" must stay a ledger id (64) */
#define PAY_CURRENCIES_MAX 16          /* currencies one merchant takes: four accounts each */
#define PAY_PRICES_MAX (GW_CHANNELS_MAX + 1) /* a price per channel, and the default */
#define PAY_FEE_FIXED_MINOR_MAX 1000000 /* a fixed fee above 10^6 minor units is a typo */
#define PAY_FEE_BPS_MAX 10000          /* 100 %: a fee never takes more than the amount's rate */
#define PAY_WEBHOOKS_MAX 8             /* webhook URLs kept with a merchant */
#define PAY_CAPTURES_MAX 64            /* partial captures of one payment: bounded document */
#define PAY_REFUNDS_MAX 64             /* refunds of one payment */
#define PAY_AMOUNT_MINOR_MAX 1000000000000000LL /* 10^15, the channels' bound (SIM_AMOUNT_MINOR_MAX) */
#define PAY_FLOWS_MAX 65536            /* operations in flight at once; past it: 503 limit_reached */
#define PAY_STAGE_THREADS 2            /* threads rendering commands' texts before they are queued
                                          (off the one gateway and the one writer thread): the
                                          machine's 2 cores; more only adds switches */
#define PAY_STAGE_WAKE_BACKLOG 4       /* a flow queued while a stage thread is busy wakes another
                                          only past this many waiting: a wake-up (a futex call on
                                          the gateway's or writer's thread, a switch on the stage's)
                                          costs more than a few flows' wait behind a busy one */
#define PAY_STAGE_TAKE_MAX 8           /* flows a stage thread takes off the queue at once (one
                                          hold of its mutex for them); the rest wait for the
                                          other thread, woken past PAY_STAGE_WAKE_BACKLOG */
#define PAY_STAGE_CARRY_MAX 8          /* a gateway pass's results it applies itself (booking
                                          rendered and queued on its own thread) while every stage
                                          thread sleeps and nothing of the pass is queued: a small
                                          job, cheaper there than a wake-up and two switches */
#define PAY_BUSY_STAMPS 16384          /* release stamps of busy marks (ids hashed onto them):
                                          a recovery pass skips, until its next pass, an id
                                          whose stamp moved since it listed it */
#define PAY_FLOWS_FREE_MAX 256         /* ended flows (~15 kB each) kept zeroed for the next
                                          operations: more than the connections in flight */
#define PAY_MAP_SPARES_MAX 256         /* removed entries of an id-sized key a runtime map keeps
                                          for its next put (busy marks, holds, recent and committed
                                          payments come and go with every payment): no malloc and
                                          free each; more than the connections in flight */
#define PAY_RECENT_PAYMENTS_MAX 4096   /* payments kept in memory as last committed, so the next
                                          operation on one (a capture after its authorization)
                                          skips reading and parsing it: a few seconds of traffic */
#define PAY_RECOVERY_MS_DEFAULT 2000   /* recovery and expiry passes: seconds matter, not ms */
#define PAY_RECOVERY_GRACE_MS_DEFAULT 15000 /* a request may still be in a channel that long
                                          (the default channel timeout is 10 s) */
#define PAY_RECOVERY_BATCH_MAX 256     /* pending operations one pass takes on */
#define PAY_BANK_INQUIRY_MS_DEFAULT 900000 /* a payout (withdrawal, bank collection) waiting for
                                          its bank callback 15 min is asked about: the bank
                                          retries a failed callback for minutes first, and
                                          each waiting operation costs one inquiry per period */
#define PAY_BANK_INQUIRY_MS_MAX 604800000u /* 7 days: ACH settles in 1-3 business days */
#define PAY_AUTHORIZATION_WINDOW_S_DEFAULT (7u * 24u * 3600u) /* card networks hold ~7 days */
#define PAY_CAPTURE_CUTOFF_S 60        /* no capture starts in the hold's last minute: the
                                          channel call must end before the ledger's expiry */
#define PAY_DOC_BYTES_MAX (256 * 1024) /* one stored payment document, every op included */
#define VAULT_REENCRYPT_BATCH_CARDS 256 /* cards one re-encryption commit rewrites: payments'
                                          commits run between batches, none waits long */
#define CLI_DATA_KEY_ROTATE_TIMEOUT_S 3600 /* keys rotate --data-key follows the rotation this
                                          long: millions of cards re-encrypt in minutes */
#define CLI_DATA_KEY_ROTATE_POLL_MS 200     /* ... asking for its status this often */
#define VAULT_DATA_KEYS_MAX 16         /* data keys a running vault keeps (retired ones stay
                                          until their slot is needed: a card vaulted under
                                          one just before its retirement still opens) */
#define PAY_STATS_DECLINE_CODES_MAX 32 /* decline codes counted by name for the dashboard and
                                          /metrics (bounded label set); later ones: "other" */
#define PAY_STATS_MERCHANTS_MAX 1024   /* merchants whose own figures are kept for their keys'
                                          dashboards (about 3 KB each, made at a merchant's
                                          first payment); later ones' figures are unknown */
static_assert(EVENTS_BODY_BYTES_MAX >= PAY_DOC_BYTES_MAX + 1024,
              "a stored payment always fits its event: an event too big would fail the payment");

static_assert(VAULT_REENCRYPT_BATCH_CARDS <= LEDGER_BATCH_EVENTS_MAX,
              "a re-encryption batch is one writer command");
static_assert(4 * PAY_CURRENCIES_MAX <= API_KEY_GRANTS_MAX,
              "a merchant's key holds its chart of accounts (four per currency)");

/* ---- shards (src/shard/, docs/scaleout.md §6) ---- */
#define SHARD_COUNT_MAX 16             /* shards in a set: one bit each in a global
                                          transaction's shard mask, and a map that fits
                                          on one screen */
#define SHARD_RECOVERY_INTERVAL_MS 3000 /* recovery and the in-doubt gauges: "every few
                                          seconds", and cheap (two small queries a shard) */
#define SHARD_FENCE_WAIT_MS 30000      /* verify --shards waits this long for the read fence:
                                          the coordinator holds it for one commit (ms), longer
                                          only while a COMMIT PREPARED waits on a shard that
                                          went silent (tcp_user_timeout, 30 s) */
#define SHARD_EXPIRY_RETRY_MS 1000      /* a cross-shard pending transfer whose expiry could
                                          not run (a shard unreadable, a round aborted) is
                                          tried again this much later */
#define SHARD_VERIFY_IN_DOUBT_WAIT_MS 6000 /* verify --shards: how long a global transaction
                                          open at the start may take to end before it is
                                          reported in doubt (two recovery intervals) */
#define STORE_CURSOR_KEY_BYTES 32      /* the set's key of list cursors (BLAKE2b's key) */
#define STORE_CURSOR_TEXT_SIZE 320     /* a list cursor's text and its NUL: base64url of at
                                          most 221 bytes (a 64-byte id, 16 shards' seqs,
                                          a 16-byte tag), so a query string stays small */
#define STORE_CURSOR_AGE_S_MAX 3600    /* a list cursor older than this is refused
                                          (list_cursor_expired): a later page replays the
                                          transfers its shards committed since the first
                                          page, so its cost grows with the listing's age */

/* ---- nodes of a set: forwarding to the set's writer (docs/scaleout.md §7) ---- */
#define SHARD_DIRECTORY_CACHE_MS 500     /* a node reuses the writer it read from the writers
                                            table this long: one small query per half second
                                            under load, and a takeover (a standby polls every
                                            STORE_STANDBY_POLL_MS) is followed as fast */
#define FORWARD_CONNECT_TIMEOUT_MS 2000  /* connecting to the writer: on loopback or a LAN a
                                            connect takes well under this; past it the writer
                                            is taken as gone (nothing was sent: 503, retry) */
#define FORWARD_REPLY_TIMEOUT_MARGIN_MS 5000 /* a forwarded request waits the writer's request
                                            timeout plus this (the writer answers 503
                                            request_timeout itself before) */
#define FORWARD_REPLY_TIMEOUT_MS_DEFAULT 60000 /* the same when the request timeout is 0 (never) */
#define FORWARD_THREADS_MIN 64           /* a standby's forwarder threads (or --threads if more):
                                            each holds one request while the writer runs it
                                            (a blocking libcurl call), so this is how many
                                            forwarded requests can wait in one group commit */
#define FORWARD_CONNECTION_IDLE_S_MAX 10 /* a kept-open connection to the writer idle longer
                                            is not reused: well under the writer's idle
                                            connection timeout (--timeout-s, 30 s by
                                            default), so the writer seldom closes one as
                                            it is being reused */
#define STORE_STANDBY_FENCE_WAIT_MS 2000 /* a standby's first page of a list waits this long
                                            for the read fence (the coordinator holds it
                                            for one commit step, ms), then forwards the
                                            list to the writer */
#define STORE_STANDBY_CONNECTIONS_MAX 8 /* a standby's read connections to each shard (it
                                            answers account and transfer reads itself):
                                            a read is one short statement, so a few
                                            serve many threads, and the shard's server
                                            keeps its max_connections for the writers
                                            and the other nodes */
#define FORWARD_REPLY_BYTES_MAX (64u * 1024 * 1024) /* a writer's reply relayed whole: a full
                                            8189-transfer batch's results (about 3 MiB) and
                                            the largest list page fit many times over */

#endif
