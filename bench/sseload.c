/*
 * sseload: a PocketBase-realtime load generator (one process, epoll, non-blocking sockets).
 *
 * Built by bench/run.py with the machine's `cc -O2` into bench/.build/ at first use.
 *
 *   sseload --port P --clients N --topic T [--tokens FILE] [--owner-mod U]
 *           [--max-seq M] [--concurrency 200] [--posters 32]
 *           [--setup-timeout 120] [--duration 600] [--batch-us 200]
 *
 * For each of N clients: `GET /api/realtime` to 127.0.0.1:P (chunked or identity body),
 * read the PB_CONNECT frame (`data:{"clientId":"..."}`), then
 * `POST /api/realtime {"clientId":..., "subscriptions":[T]}` on one of --posters kept-alive
 * connections (optionally `Authorization: <token>`, token i % lines of FILE), expecting 204.
 * At most --concurrency streams are between connect() and PB_CONNECT at any time.
 * When every client is subscribed (or failed, or --setup-timeout passed) it prints
 * `READY {json}` on stdout.
 *
 * Then every event frame whose data carries `seq:<k>:ts:<CLOCK_MONOTONIC ns>` is stamped
 * with CLOCK_MONOTONIC right after the read that completed it; its latency is kept
 * (uint32 microseconds, one per delivery), and a per-client bitmap of seen seqs (1..M)
 * counts duplicates, and missed events at the end.  With --owner-mod U, client i expects
 * only seqs k with k % U == i % U (others are counted as `unexpected`).
 *
 * After a wake-up that found fewer than a full batch of ready sockets it sleeps --batch-us
 * before the next epoll_wait, so one wake-up serves many streams (about half the CPU per
 * delivery at 1,000 streams); a frame can therefore be stamped up to that long after it
 * arrived (0 = stamp at once).
 *
 * Commands on stdin, one per line (answers on stdout):
 *   mark LO   measured window starts: seqs >= LO are measured; CPU is snapshot. -> `OK mark`
 *   skip K    seq K was never created (a failed create): not expected.        -> nothing
 *   status    -> `STATUS {"deliveries":..,"unique":..,"measured":..,"disconnects":..}`
 *   report HI the measured seqs are LO..HI: print `RESULT {json}` and keep going.
 *   stop HI   the same, then exit.
 * End of stdin, SIGTERM, SIGINT or --duration after READY: the same as `stop` with the
 * highest seq seen.  Only ever connects to 127.0.0.1.  Every loop is bounded.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 200000
#define MAX_POSTERS 1024
#define MAX_ATTEMPTS 3
#define BUF_INIT 1024
#define BUF_MAX (1u << 20)
#define SCRATCH (64 * 1024)
#define MAX_EVENTS 1024
#define MAX_SAMPLES (128u * 1024u * 1024u)
#define MAX_TOKEN 4096
#define ID_MAX 64

enum { K_STREAM = 0, K_POSTER = 1, K_STDIN = 2, K_SIGNAL = 3 };
enum {
    S_NEW = 0,      /* not started yet */
    S_CONNECTING,   /* connect() in progress */
    S_HEAD,         /* GET sent, reading the response head */
    S_WAIT_CONNECT, /* head read, waiting for PB_CONNECT */
    S_CONNECTED,    /* PB_CONNECT read; subscription queued or in flight */
    S_SUBSCRIBED,   /* 204 received: streaming */
    S_CLOSED,       /* the server closed a subscribed stream */
    S_FAILED        /* gave up after MAX_ATTEMPTS */
};
enum { P_IDLE = 0, P_CONNECTING, P_SENDING, P_READING };

typedef struct {
    int fd;
    uint8_t state;
    uint8_t attempts;
    uint8_t chunked;
    uint8_t crlf_left;   /* bytes of CRLF after a chunk's payload still to skip */
    uint8_t size_len;    /* bytes of the pending chunk-size line */
    uint8_t ended;
    uint8_t queued;      /* in the subscription queue */
    uint8_t retry_queued;
    char size_line[20];
    int64_t chunk_left;  /* payload bytes left in the current chunk */
    uint64_t t_start;
    char *buf;           /* head bytes (S_HEAD) or decoded body bytes not yet parsed */
    uint32_t len, cap;
    char id[ID_MAX];
} Conn;

typedef struct {
    int fd;
    int state;
    int client;
    size_t out_len, out_off;
    char *out;
    size_t in_len;
    char in[4096];
} Poster;

/* ------------------------------------------------------------------ state */

static int g_port, g_n, g_conc = 200, g_nposters = 32, g_owner_mod = 0;
static double g_setup_timeout = 120.0, g_duration = 600.0;
static const char *g_topic = "public_posts/*";
static char **g_tokens;
static int g_ntokens;
static uint32_t g_max_seq = 100000;
static uint32_t g_bm_bytes;
static uint8_t *g_seen;      /* N * g_bm_bytes */
static uint8_t *g_skipped;   /* g_bm_bytes */
static Conn *g_conns;
static Poster g_posters[MAX_POSTERS];
static int *g_queue;         /* ring of clients waiting for a subscription POST */
static int g_qhead, g_qtail, g_qcount;
static int *g_retry;         /* ring of clients waiting to reconnect */
static int g_rhead, g_rtail, g_rcount;
static int g_ep;
static char g_scratch[SCRATCH];

static int g_next_start, g_in_flight, g_connected, g_subscribed, g_failed;
static uint64_t g_connect_errors, g_subscribe_errors, g_protocol_errors;
static int g_first_sub_status;
static uint32_t *g_connect_us, *g_subscribe_us;
static uint64_t *g_connected_at;

static uint32_t *g_lat, *g_lat_seq;
static uint64_t g_nsamples, g_cap_samples, g_samples_dropped;
static uint64_t g_deliveries, g_measured, g_duplicates, g_unexpected, g_out_of_range;
static uint64_t g_disconnects, g_resets, g_frames, g_wakeups, g_reads;
static int g_batch_us = 200;
static uint32_t g_seq_hi_seen, g_measure_lo = 1;
static uint64_t g_first_measured_ns, g_last_measured_ns;
static uint64_t g_unique, g_mark_unique, g_mark_ns, g_last_unique_ns;
static struct rusage g_ru_mark;
static int g_marked;
static double g_setup_s;
static uint64_t g_t0;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "sseload: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static void *xmalloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

/* ------------------------------------------------------------------ sockets */

static int open_socket(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)g_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK); /* 127.0.0.1 only */
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void ep_add(int fd, uint32_t events, int kind, int index) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = ((uint64_t)kind << 32) | (uint32_t)index;
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl add: %s", strerror(errno));
}

static void ep_mod(int fd, uint32_t events, int kind, int index) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = ((uint64_t)kind << 32) | (uint32_t)index;
    epoll_ctl(g_ep, EPOLL_CTL_MOD, fd, &ev);
}

static void close_hard(int fd) {
    /* RST instead of FIN: no TIME_WAIT left behind on this side's ports. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

static int sock_error(int fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return errno;
    return err;
}

/* ------------------------------------------------------------------ stream clients */

static int buf_append(Conn *c, const char *data, size_t n) {
    if ((size_t)c->len + n > BUF_MAX) return -1;
    if (c->len + n > c->cap) {
        uint32_t cap = c->cap ? c->cap : BUF_INIT;
        while (cap < c->len + n) cap *= 2;
        char *p = realloc(c->buf, cap);
        if (!p) die("out of memory");
        c->buf = p;
        c->cap = cap;
    }
    memcpy(c->buf + c->len, data, n);
    c->len += (uint32_t)n;
    return 0;
}

static void reset_conn(Conn *c) {
    c->fd = -1;
    c->chunked = 0;
    c->crlf_left = 0;
    c->size_len = 0;
    c->chunk_left = 0;
    c->ended = 0;
    c->len = 0;
}

static void stream_setup_failed(int i);

static void start_stream(int i, uint64_t now) {
    Conn *c = &g_conns[i];
    reset_conn(c);
    c->attempts++;
    c->t_start = now;
    c->fd = open_socket();
    c->state = S_CONNECTING;
    g_in_flight++;
    if (c->fd < 0) {
        stream_setup_failed(i);
        return;
    }
    ep_add(c->fd, EPOLLOUT | EPOLLIN | EPOLLRDHUP, K_STREAM, i);
}

/* A stream failed before it was subscribed: retry, or give up. */
static void stream_setup_failed(int i) {
    Conn *c = &g_conns[i];
    if (c->fd >= 0) close_hard(c->fd);
    c->fd = -1;
    if (c->state >= S_CONNECTING && c->state <= S_WAIT_CONNECT) g_in_flight--;
    g_connect_errors++;
    if (c->attempts >= MAX_ATTEMPTS) {
        c->state = S_FAILED;
        g_failed++;
    } else {
        c->state = S_NEW; /* reconnected by pump_connects */
        if (!c->retry_queued && g_rcount < g_n) {
            c->retry_queued = 1;
            g_retry[g_rtail] = i;
            g_rtail = (g_rtail + 1) % g_n;
            g_rcount++;
        }
    }
}

static void enqueue_subscription(int i) {
    if (g_conns[i].queued || g_qcount >= g_n) return;
    g_conns[i].queued = 1;
    g_queue[g_qtail] = i;
    g_qtail = (g_qtail + 1) % g_n;
    g_qcount++;
}

static void on_event_frame(int i, const char *f, size_t n, uint64_t now) {
    g_frames++;
    const char *p = memmem(f, n, "seq:", 4);
    if (!p) {
        if (memmem(f, n, "RF_RESET", 8)) g_resets++;
        return;
    }
    const char *end = f + n;
    p += 4;
    uint64_t seq = 0, ts = 0;
    int digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 12) seq = seq * 10 + (uint64_t)(*p++ - '0'), digits++;
    if (digits == 0 || end - p < 4 || memcmp(p, ":ts:", 4) != 0) {
        g_protocol_errors++;
        return;
    }
    p += 4;
    digits = 0;
    while (p < end && *p >= '0' && *p <= '9' && digits < 20) ts = ts * 10 + (uint64_t)(*p++ - '0'), digits++;
    if (digits == 0) {
        g_protocol_errors++;
        return;
    }
    g_deliveries++;
    if (seq < 1 || seq > g_max_seq) {
        g_out_of_range++;
        return;
    }
    if (g_owner_mod > 0 && (seq % (uint64_t)g_owner_mod) != (uint64_t)(i % g_owner_mod)) g_unexpected++;
    uint8_t *bm = g_seen + (size_t)i * g_bm_bytes;
    uint8_t bit = (uint8_t)(1u << (seq & 7));
    if (bm[seq >> 3] & bit) {
        g_duplicates++;
        return;
    }
    bm[seq >> 3] |= bit;
    g_unique++;
    g_last_unique_ns = now;
    if (seq > g_seq_hi_seen) g_seq_hi_seen = (uint32_t)seq;
    uint64_t us = now > ts ? (now - ts) / 1000 : 0;
    if (us > UINT32_MAX) us = UINT32_MAX;
    if (g_nsamples >= g_cap_samples) {
        if (g_cap_samples >= MAX_SAMPLES) {
            g_samples_dropped++;
            goto counted;
        }
        uint64_t cap = g_cap_samples ? g_cap_samples * 2 : 65536;
        if (cap > MAX_SAMPLES) cap = MAX_SAMPLES;
        uint32_t *a = realloc(g_lat, cap * sizeof *a), *b;
        if (!a) die("out of memory");
        g_lat = a;
        b = realloc(g_lat_seq, cap * sizeof *b);
        if (!b) die("out of memory");
        g_lat_seq = b;
        g_cap_samples = cap;
    }
    g_lat[g_nsamples] = (uint32_t)us;
    g_lat_seq[g_nsamples] = (uint32_t)seq;
    g_nsamples++;
counted:
    if (g_marked && seq >= g_measure_lo) {
        g_measured++;
        if (!g_first_measured_ns) g_first_measured_ns = now;
        g_last_measured_ns = now;
    }
}

/* The PB_CONNECT frame: take the client id from data's "clientId". */
static int on_connect_frame(Conn *c, const char *f, size_t n) {
    if (!memmem(f, n, "PB_CONNECT", 10)) return 0; /* e.g. a comment: keep waiting */
    const char *p = memmem(f, n, "\"clientId\":\"", 12);
    if (!p) return -1;
    p += 12;
    const char *q = memchr(p, '"', (size_t)(f + n - p));
    if (!q || q - p >= ID_MAX || q == p) return -1;
    memcpy(c->id, p, (size_t)(q - p));
    c->id[q - p] = 0;
    return 1;
}

/* Split decoded body bytes into frames (blank-line separated). -1 = protocol error. */
static int parse_frames(int i, uint64_t now) {
    Conn *c = &g_conns[i];
    size_t off = 0;
    for (int guard = 0; guard < 1000000; guard++) {
        if (off >= c->len) break;
        char *start = c->buf + off;
        char *e = memmem(start, c->len - off, "\n\n", 2);
        if (!e) break;
        size_t flen = (size_t)(e - start);
        if (c->state == S_WAIT_CONNECT) {
            int r = on_connect_frame(c, start, flen);
            if (r < 0) return -1;
            if (r > 0) {
                c->state = S_CONNECTED;
                g_in_flight--;
                g_connected++;
                g_connect_us[i] = (uint32_t)((now - c->t_start) / 1000);
                g_connected_at[i] = now;
                enqueue_subscription(i);
            }
        } else {
            on_event_frame(i, start, flen, now);
        }
        off += flen + 2;
    }
    if (off) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= (uint32_t)off;
    }
    return 0;
}

/* Feed body bytes (after the head) through the chunk decoder into c->buf. */
static int feed_body(int i, const char *d, size_t n, uint64_t now) {
    Conn *c = &g_conns[i];
    if (!c->chunked) {
        if (buf_append(c, d, n) < 0) return -1;
        return parse_frames(i, now);
    }
    size_t k = 0;
    for (int guard = 0; guard < 10000000 && k < n; guard++) {
        if (c->chunk_left > 0) {
            size_t take = (size_t)c->chunk_left < n - k ? (size_t)c->chunk_left : n - k;
            if (buf_append(c, d + k, take) < 0) return -1;
            k += take;
            c->chunk_left -= (int64_t)take;
            if (c->chunk_left == 0) c->crlf_left = 2;
            continue;
        }
        if (c->crlf_left) {
            c->crlf_left--;
            k++;
            continue;
        }
        /* chunk-size line */
        char ch = d[k++];
        if (ch == '\n') {
            c->size_line[c->size_len] = 0;
            char *endp;
            long long sz = strtoll(c->size_line, &endp, 16);
            c->size_len = 0;
            if (endp == c->size_line || sz < 0) return -1;
            if (sz == 0) {
                c->ended = 1;
                break;
            }
            c->chunk_left = sz;
        } else if (ch != '\r') {
            if (c->size_len >= sizeof c->size_line - 1) return -1;
            c->size_line[c->size_len++] = ch;
        }
    }
    return parse_frames(i, now);
}

/* Response head: status 200 and whether the body is chunked. Remaining bytes are body. */
static int feed_head(int i, const char *d, size_t n, uint64_t now) {
    Conn *c = &g_conns[i];
    if (buf_append(c, d, n) < 0) return -1;
    char *e = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!e) return c->len > 16384 ? -1 : 0;
    size_t head_len = (size_t)(e - c->buf) + 4;
    if (c->len < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0 || memcmp(c->buf + 9, "200", 3) != 0)
        return -1;
    /* case-insensitive search of the header block for chunked transfer-encoding */
    c->chunked = 0;
    for (size_t p = 0; p + 26 <= head_len; p++) {
        if ((c->buf[p] == 't' || c->buf[p] == 'T') && strncasecmp(c->buf + p, "transfer-encoding:", 18) == 0) {
            const char *v = c->buf + p + 18;
            const char *line_end = memmem(v, head_len - (size_t)(v - c->buf), "\r\n", 2);
            size_t vlen = line_end ? (size_t)(line_end - v) : 0;
            for (size_t q = 0; q + 7 <= vlen; q++)
                if (strncasecmp(v + q, "chunked", 7) == 0) c->chunked = 1;
            break;
        }
    }
    size_t rest = c->len - head_len;
    char tmp[SCRATCH];
    if (rest > sizeof tmp) return -1;
    memcpy(tmp, c->buf + head_len, rest);
    c->len = 0;
    c->state = S_WAIT_CONNECT;
    return rest ? feed_body(i, tmp, rest, now) : 0;
}

static const char *g_get_req;
static size_t g_get_len;

static void on_stream(int i, uint32_t ev, uint64_t now) {
    Conn *c = &g_conns[i];
    if (c->fd < 0) return;
    if (c->state == S_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        if (sock_error(c->fd) != 0 || (ev & EPOLLERR)) {
            stream_setup_failed(i);
            return;
        }
        ssize_t w = send(c->fd, g_get_req, g_get_len, MSG_NOSIGNAL);
        if (w != (ssize_t)g_get_len) {
            stream_setup_failed(i);
            return;
        }
        c->state = S_HEAD;
        ep_mod(c->fd, EPOLLIN | EPOLLRDHUP, K_STREAM, i);
        return;
    }
    ssize_t r = read(c->fd, g_scratch, SCRATCH);
    uint64_t t = now_ns();
    g_reads++;
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    (void)now;
    int rc = r <= 0 ? 1 : c->state == S_HEAD ? feed_head(i, g_scratch, (size_t)r, t)
                                             : feed_body(i, g_scratch, (size_t)r, t);
    if (rc == 0 && !c->ended) return;
    g_protocol_errors += rc < 0;
    if (c->state == S_SUBSCRIBED) { /* the server ended a subscribed stream */
        g_disconnects++;
        c->state = S_CLOSED;
        close_hard(c->fd);
        c->fd = -1;
    } else {
        if (c->state == S_CONNECTED) {
            g_connected--;
            c->state = S_WAIT_CONNECT; /* counted in flight again by stream_setup_failed */
            g_in_flight++;
        }
        stream_setup_failed(i);
    }
}

static void pump_connects(uint64_t now) {
    /* retries first, then new clients; bounded by g_n iterations per call */
    for (int guard = 0; guard < g_n && g_in_flight < g_conc && g_rcount > 0; guard++) {
        int i = g_retry[g_rhead];
        g_rhead = (g_rhead + 1) % g_n;
        g_rcount--;
        g_conns[i].retry_queued = 0;
        if (g_conns[i].state == S_NEW) start_stream(i, now);
    }
    for (int guard = 0; guard < g_n && g_in_flight < g_conc && g_next_start < g_n; guard++) {
        Conn *c = &g_conns[g_next_start];
        if (c->attempts == 0) start_stream(g_next_start, now);
        g_next_start++;
    }
}

/* ------------------------------------------------------------------ posters */

static void poster_close(Poster *p) {
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
    p->in_len = 0;
}

static void subscription_failed(Poster *p, int status) {
    int i = p->client;
    p->client = -1;
    if (i < 0) return;
    g_subscribe_errors++;
    if (!g_first_sub_status && status) g_first_sub_status = status;
    Conn *c = &g_conns[i];
    if (c->state != S_CONNECTED) return;
    if (c->attempts >= MAX_ATTEMPTS) {
        c->state = S_FAILED;
        g_failed++;
        if (c->fd >= 0) close_hard(c->fd);
        c->fd = -1;
    } else {
        c->attempts++;
        enqueue_subscription(i);
    }
}

static void poster_build(Poster *p, int i) {
    Conn *c = &g_conns[i];
    char body[512 + ID_MAX];
    int blen = snprintf(body, sizeof body, "{\"clientId\":\"%s\",\"subscriptions\":[\"%s\"]}", c->id, g_topic);
    const char *tok = g_ntokens ? g_tokens[i % g_ntokens] : NULL;
    size_t need = 512 + (size_t)blen + (tok ? strlen(tok) : 0);
    free(p->out);
    p->out = xmalloc(need);
    int n = snprintf(p->out, need,
                     "POST /api/realtime HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n%s%s%s\r\n%s",
                     g_port, blen, tok ? "Authorization: " : "", tok ? tok : "", tok ? "\r\n" : "", body);
    p->out_len = (size_t)n;
    p->out_off = 0;
    p->client = i;
}

static void poster_send(Poster *p, int idx) {
    for (int guard = 0; guard < 1000 && p->out_off < p->out_len; guard++) {
        ssize_t w = send(p->fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                ep_mod(p->fd, EPOLLOUT | EPOLLIN | EPOLLRDHUP, K_POSTER, idx);
                p->state = P_SENDING;
                return;
            }
            poster_close(p);
            p->state = P_IDLE;
            subscription_failed(p, 0);
            return;
        }
        p->out_off += (size_t)w;
    }
    p->state = P_READING;
    p->in_len = 0;
    ep_mod(p->fd, EPOLLIN | EPOLLRDHUP, K_POSTER, idx);
}

static void pump_posters(uint64_t now) {
    for (int k = 0; k < g_nposters && g_qcount > 0; k++) {
        Poster *p = &g_posters[k];
        if (p->state != P_IDLE) continue;
        int i = -1;
        for (int guard = 0; guard < g_n && g_qcount > 0; guard++) {
            int cand = g_queue[g_qhead];
            g_qhead = (g_qhead + 1) % g_n;
            g_qcount--;
            g_conns[cand].queued = 0;
            if (g_conns[cand].state == S_CONNECTED) {
                i = cand;
                break;
            }
        }
        if (i < 0) break;
        poster_build(p, i);
        if (p->fd < 0) {
            p->fd = open_socket();
            if (p->fd < 0) {
                subscription_failed(p, 0);
                continue;
            }
            p->state = P_CONNECTING;
            ep_add(p->fd, EPOLLOUT | EPOLLIN | EPOLLRDHUP, K_POSTER, k);
        } else {
            poster_send(p, k);
        }
    }
    (void)now;
}

/* A complete response in p->in? 1 = yes (status, close set), 0 = need more, -1 = bad. */
static int parse_response(Poster *p, int *status, int *conn_close, size_t *used) {
    char *e = memmem(p->in, p->in_len, "\r\n\r\n", 4);
    if (!e) return p->in_len >= sizeof p->in ? -1 : 0;
    size_t head = (size_t)(e - p->in) + 4;
    if (p->in_len < 12 || memcmp(p->in, "HTTP/1.", 7) != 0) return -1;
    *status = atoi(p->in + 9);
    *conn_close = memcmp(p->in, "HTTP/1.0", 8) == 0;
    long clen = -1;
    int chunked = 0;
    for (size_t q = 0; q < head; q++) {
        if (p->in[q] != '\n') continue;
        const char *h = p->in + q + 1;
        if (strncasecmp(h, "content-length:", 15) == 0) clen = strtol(h + 15, NULL, 10);
        else if (strncasecmp(h, "connection:", 11) == 0) {
            const char *v = h + 11;
            while (*v == ' ') v++;
            if (strncasecmp(v, "close", 5) == 0) *conn_close = 1;
        } else if (strncasecmp(h, "transfer-encoding:", 18) == 0) {
            chunked = 1;
        }
    }
    if (*status == 204 || *status == 304 || clen == 0) {
        *used = head;
        return 1;
    }
    if (clen > 0) {
        if (p->in_len < head + (size_t)clen) return (head + (size_t)clen > sizeof p->in) ? -1 : 0;
        *used = head + (size_t)clen;
        return 1;
    }
    if (chunked) {
        char *z = memmem(p->in + head, p->in_len - head, "0\r\n\r\n", 5);
        if (!z) return p->in_len >= sizeof p->in ? -1 : 0;
        *used = (size_t)(z - p->in) + 5;
        return 1;
    }
    *conn_close = 1; /* body until close: we do not need it */
    *used = p->in_len;
    return 1;
}

static void on_poster(int k, uint32_t ev, uint64_t now) {
    Poster *p = &g_posters[k];
    if (p->fd < 0) return;
    if (p->state == P_CONNECTING || p->state == P_SENDING) {
        if (ev & (EPOLLERR | EPOLLHUP)) goto broken;
        if (ev & EPOLLOUT) {
            if (p->state == P_CONNECTING && sock_error(p->fd) != 0) goto broken;
            poster_send(p, k);
        }
        return;
    }
    ssize_t r = read(p->fd, p->in + p->in_len, sizeof p->in - p->in_len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) goto broken;
    p->in_len += (size_t)r;
    if (p->state != P_READING) { /* unsolicited bytes on an idle connection */
        poster_close(p);
        p->state = P_IDLE;
        return;
    }
    int status = 0, cclose = 0;
    size_t used = 0;
    int rc = parse_response(p, &status, &cclose, &used);
    if (rc == 0) return;
    if (rc < 0) goto broken;
    int i = p->client;
    if (status == 204 || status == 200) {
        p->client = -1;
        Conn *c = &g_conns[i];
        if (c->state == S_CONNECTED) {
            c->state = S_SUBSCRIBED;
            g_subscribed++;
            g_subscribe_us[i] = (uint32_t)((now - g_connected_at[i]) / 1000);
        }
    } else {
        subscription_failed(p, status);
    }
    p->in_len = 0;
    p->state = P_IDLE;
    if (cclose) poster_close(p);
    return;
broken:
    poster_close(p);
    p->state = P_IDLE;
    subscription_failed(p, 0);
}

/* ------------------------------------------------------------------ results */

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* nearest-rank percentile of a sorted array, in milliseconds */
static double pct_ms(const uint32_t *v, uint64_t n, double pct) {
    if (!n) return -1;
    uint64_t rank = (uint64_t)((pct / 100.0) * (double)n + 0.999999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return v[rank - 1] / 1000.0;
}

static void print_stats(const char *name, uint32_t *v, uint64_t n) {
    if (!n) {
        printf("\"%s\":{\"n\":0,\"p50\":null,\"p90\":null,\"p99\":null,\"max\":null,\"mean\":null}", name);
        return;
    }
    qsort(v, n, sizeof *v, cmp_u32);
    double sum = 0;
    for (uint64_t k = 0; k < n; k++) sum += v[k];
    printf("\"%s\":{\"n\":%llu,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f,\"mean\":%.3f}", name,
           (unsigned long long)n, pct_ms(v, n, 50), pct_ms(v, n, 90), pct_ms(v, n, 99),
           v[n - 1] / 1000.0, sum / (double)n / 1000.0);
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

static void finish(uint32_t hi) {
    uint32_t lo = g_measure_lo;
    if (hi > g_max_seq) hi = g_max_seq;
    uint64_t expected = 0, missed = 0;
    for (int i = 0; i < g_n; i++) {
        uint8_t st = g_conns[i].state;
        if (st != S_SUBSCRIBED && st != S_CLOSED) continue;
        const uint8_t *bm = g_seen + (size_t)i * g_bm_bytes;
        for (uint32_t k = lo; k <= hi && k >= 1; k++) {
            if (g_skipped[k >> 3] & (1u << (k & 7))) continue;
            if (g_owner_mod > 0 && (k % (uint32_t)g_owner_mod) != (uint32_t)(i % g_owner_mod)) continue;
            expected++;
            if (!(bm[k >> 3] & (1u << (k & 7)))) missed++;
        }
    }
    /* measured latencies (a copy: `report` keeps the generator running) */
    uint64_t m = 0;
    for (uint64_t k = 0; k < g_nsamples; k++) m += g_lat_seq[k] >= lo && g_lat_seq[k] <= hi;
    uint32_t *lat = xmalloc((size_t)m * sizeof *lat);
    m = 0;
    for (uint64_t k = 0; k < g_nsamples; k++)
        if (g_lat_seq[k] >= lo && g_lat_seq[k] <= hi) lat[m++] = g_lat[k];
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    uint32_t *cus = xmalloc((size_t)g_n * sizeof *cus), *sus = xmalloc((size_t)g_n * sizeof *sus);
    uint64_t nc = 0, ns = 0;
    for (int i = 0; i < g_n; i++) {
        uint8_t st = g_conns[i].state;
        if (st >= S_CONNECTED && st != S_FAILED && g_connected_at[i]) cus[nc++] = g_connect_us[i];
        if ((st == S_SUBSCRIBED || st == S_CLOSED) && g_subscribe_us[i]) sus[ns++] = g_subscribe_us[i];
    }
    printf("RESULT {\"clients\":%d,\"connected\":%d,\"subscribed\":%d,\"failed\":%d,"
           "\"connect_errors\":%llu,\"subscribe_errors\":%llu,\"first_subscribe_status\":%d,"
           "\"protocol_errors\":%llu,\"setup_s\":%.3f,",
           g_n, g_connected, g_subscribed, g_failed, (unsigned long long)g_connect_errors,
           (unsigned long long)g_subscribe_errors, g_first_sub_status,
           (unsigned long long)g_protocol_errors, g_setup_s);
    print_stats("connect_ms", cus, nc);
    printf(",");
    print_stats("subscribe_ms", sus, ns);
    printf(",\"seq_lo\":%u,\"seq_hi\":%u,\"expected\":%llu,\"deliveries\":%llu,\"missed\":%llu,"
           "\"duplicates\":%llu,\"unexpected\":%llu,\"out_of_range\":%llu,\"deliveries_total\":%llu,"
           "\"frames\":%llu,\"samples_dropped\":%llu,\"first_recv_ns\":%llu,\"last_recv_ns\":%llu,",
           lo, hi, (unsigned long long)expected, (unsigned long long)(expected - missed),
           (unsigned long long)missed, (unsigned long long)g_duplicates, (unsigned long long)g_unexpected,
           (unsigned long long)g_out_of_range, (unsigned long long)g_deliveries,
           (unsigned long long)g_frames, (unsigned long long)g_samples_dropped,
           (unsigned long long)g_first_measured_ns, (unsigned long long)g_last_measured_ns);
    print_stats("latency_ms", lat, m);
    free(lat);
    double cu = tv_s(ru.ru_utime), cs = tv_s(ru.ru_stime);
    double wu = g_marked ? cu - tv_s(g_ru_mark.ru_utime) : cu;
    double ws = g_marked ? cs - tv_s(g_ru_mark.ru_stime) : cs;
    printf(",\"wakeups\":%llu,\"reads\":%llu", (unsigned long long)g_wakeups, (unsigned long long)g_reads);
    /* every first-time delivery since `mark` (also of seqs before the window: a backlog) */
    uint64_t span = g_marked && g_last_unique_ns > g_mark_ns ? g_last_unique_ns - g_mark_ns : 0;
    printf(",\"window_deliveries\":%llu,\"window_span_s\":%.6f",
           (unsigned long long)(g_unique - g_mark_unique), (double)span / 1e9);
    printf(",\"disconnects\":%llu,\"resets\":%llu,\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,"
           "\"cpu_window_s\":%.3f,\"maxrss_kib\":%ld}\n",
           (unsigned long long)g_disconnects, (unsigned long long)g_resets, cu, cs, wu + ws, ru.ru_maxrss);
    fflush(stdout);
    free(cus);
    free(sus);
}

/* ------------------------------------------------------------------ control */

static char g_cmd[4096];
static size_t g_cmd_len;
static int g_stop_requested;
static uint32_t g_stop_hi;

static void on_command(const char *line) {
    unsigned long v = 0;
    if (sscanf(line, "mark %lu", &v) == 1) {
        g_measure_lo = (uint32_t)(v ? v : 1);
        getrusage(RUSAGE_SELF, &g_ru_mark);
        g_marked = 1;
        g_measured = 0;
        g_mark_unique = g_unique;
        g_mark_ns = now_ns();
        g_first_measured_ns = g_last_measured_ns = 0;
        printf("OK mark\n");
        fflush(stdout);
    } else if (sscanf(line, "skip %lu", &v) == 1) {
        if (v >= 1 && v <= g_max_seq) g_skipped[v >> 3] |= (uint8_t)(1u << (v & 7));
    } else if (strncmp(line, "status", 6) == 0) {
        printf("STATUS {\"deliveries\":%llu,\"unique\":%llu,\"measured\":%llu,\"disconnects\":%llu,\"duplicates\":%llu,"
               "\"subscribed\":%d,\"last_recv_ns\":%llu}\n",
               (unsigned long long)g_deliveries, (unsigned long long)g_unique,
               (unsigned long long)g_measured,
               (unsigned long long)g_disconnects, (unsigned long long)g_duplicates, g_subscribed,
               (unsigned long long)g_last_measured_ns);
        fflush(stdout);
    } else if (sscanf(line, "report %lu", &v) == 1) {
        finish((uint32_t)v);
    } else if (sscanf(line, "stop %lu", &v) == 1) {
        g_stop_requested = 1;
        g_stop_hi = (uint32_t)v;
    }
}

static void on_stdin(void) {
    ssize_t r = read(0, g_cmd + g_cmd_len, sizeof g_cmd - 1 - g_cmd_len);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        g_stop_requested = 1;
        g_stop_hi = g_seq_hi_seen;
        epoll_ctl(g_ep, EPOLL_CTL_DEL, 0, NULL);
        return;
    }
    g_cmd_len += (size_t)r;
    for (int guard = 0; guard < 1000; guard++) {
        char *nl = memchr(g_cmd, '\n', g_cmd_len);
        if (!nl) break;
        *nl = 0;
        on_command(g_cmd);
        size_t used = (size_t)(nl - g_cmd) + 1;
        memmove(g_cmd, g_cmd + used, g_cmd_len - used);
        g_cmd_len -= used;
    }
    if (g_cmd_len >= sizeof g_cmd - 1) g_cmd_len = 0; /* an overlong line: drop it */
}

static void read_tokens(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open %s: %s", path, strerror(errno));
    int cap = 1024;
    g_tokens = xmalloc((size_t)cap * sizeof *g_tokens);
    char *line = xmalloc(MAX_TOKEN + 2);
    for (int guard = 0; guard < MAX_CLIENTS && fgets(line, MAX_TOKEN + 2, f); guard++) {
        size_t n = strcspn(line, "\r\n");
        line[n] = 0;
        if (!n) continue;
        if (g_ntokens == cap) {
            cap *= 2;
            g_tokens = realloc(g_tokens, (size_t)cap * sizeof *g_tokens);
            if (!g_tokens) die("out of memory");
        }
        g_tokens[g_ntokens++] = strdup(line);
    }
    free(line);
    fclose(f);
    if (!g_ntokens) die("no tokens in %s", path);
}

static void usage(void) {
    die("usage: sseload --port P --clients N [--topic T] [--tokens FILE] [--owner-mod U] "
        "[--max-seq M] [--concurrency C] [--posters K] [--setup-timeout S] [--duration S] "
        "[--batch-us U]");
}

int main(int argc, char **argv) {
    const char *tokens = NULL;
    for (int k = 1; k < argc; k++) {
        const char *a = argv[k];
        const char *v = k + 1 < argc ? argv[k + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--port")) g_port = atoi(v);
        else if (!strcmp(a, "--clients")) g_n = atoi(v);
        else if (!strcmp(a, "--topic")) g_topic = v;
        else if (!strcmp(a, "--tokens")) tokens = v;
        else if (!strcmp(a, "--owner-mod")) g_owner_mod = atoi(v);
        else if (!strcmp(a, "--max-seq")) g_max_seq = (uint32_t)strtoul(v, NULL, 10);
        else if (!strcmp(a, "--concurrency")) g_conc = atoi(v);
        else if (!strcmp(a, "--posters")) g_nposters = atoi(v);
        else if (!strcmp(a, "--setup-timeout")) g_setup_timeout = atof(v);
        else if (!strcmp(a, "--duration")) g_duration = atof(v);
        else if (!strcmp(a, "--batch-us")) g_batch_us = atoi(v);
        else usage();
        k++;
    }
    if (g_port <= 0 || g_port > 65535 || g_n < 1 || g_n > MAX_CLIENTS || g_conc < 1 || g_nposters < 1 ||
        g_nposters > MAX_POSTERS || g_batch_us < 0 || g_batch_us > 100000 || g_max_seq < 1 || g_max_seq > 100000000 || g_owner_mod < 0 ||
        strlen(g_topic) > 400 || strchr(g_topic, '"') || strchr(g_topic, '\\'))
        usage();
    if (tokens) read_tokens(tokens);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rlim_t want = (rlim_t)g_n + (rlim_t)g_nposters + 64;
        if (rl.rlim_cur < want) {
            rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
            setrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur < want)
            die("open-files limit %llu < %llu needed", (unsigned long long)rl.rlim_cur, (unsigned long long)want);
    }

    g_bm_bytes = g_max_seq / 8 + 1;
    g_seen = xmalloc((size_t)g_n * g_bm_bytes);
    g_skipped = xmalloc(g_bm_bytes);
    g_conns = xmalloc((size_t)g_n * sizeof *g_conns);
    g_queue = xmalloc((size_t)g_n * sizeof *g_queue);
    g_retry = xmalloc((size_t)g_n * sizeof *g_retry);
    g_connect_us = xmalloc((size_t)g_n * sizeof *g_connect_us);
    g_subscribe_us = xmalloc((size_t)g_n * sizeof *g_subscribe_us);
    g_connected_at = xmalloc((size_t)g_n * sizeof *g_connected_at);
    for (int i = 0; i < g_n; i++) g_conns[i].fd = -1;
    for (int k = 0; k < g_nposters; k++) g_posters[k].fd = -1, g_posters[k].client = -1;

    static char get_req[256];
    snprintf(get_req, sizeof get_req,
             "GET /api/realtime HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n\r\n", g_port);
    g_get_req = get_req;
    g_get_len = strlen(get_req);

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) die("epoll_create1: %s", strerror(errno));
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sfd < 0) die("signalfd: %s", strerror(errno));
    ep_add(sfd, EPOLLIN, K_SIGNAL, 0);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    struct epoll_event sev = {.events = EPOLLIN, .data.u64 = (uint64_t)K_STDIN << 32};
    int have_stdin = epoll_ctl(g_ep, EPOLL_CTL_ADD, 0, &sev) == 0;

    g_t0 = now_ns();
    uint64_t setup_deadline = g_t0 + (uint64_t)(g_setup_timeout * 1e9);
    uint64_t end_deadline = 0;
    int ready = 0;
    struct epoll_event evs[MAX_EVENTS];
    /* Time bounds end the loop; the iteration cap is a backstop (>= 1 ms per idle pass). */
    uint64_t max_iter = (uint64_t)((g_setup_timeout + g_duration + 10) * 1e6);
    for (uint64_t iter = 0; iter < max_iter; iter++) {
        uint64_t now = now_ns();
        if (!ready) {
            pump_connects(now);
            pump_posters(now);
            if (g_subscribed + g_failed >= g_n || now >= setup_deadline) {
                ready = 1;
                g_setup_s = (double)(now - g_t0) / 1e9;
                for (int k = 0; k < g_nposters; k++) {
                    Poster *p = &g_posters[k];
                    if (p->fd >= 0) close(p->fd);
                    p->fd = -1;
                    p->state = P_IDLE;
                }
                /* streams still in setup at the deadline count as failed */
                for (int i = 0; i < g_n; i++) {
                    Conn *c = &g_conns[i];
                    if (c->state != S_SUBSCRIBED && c->state != S_CLOSED && c->state != S_FAILED) {
                        if (c->fd >= 0) close_hard(c->fd);
                        c->fd = -1;
                        c->state = S_FAILED;
                        g_failed++;
                    }
                }
                struct rusage ru;
                getrusage(RUSAGE_SELF, &ru);
                printf("READY {\"clients\":%d,\"connected\":%d,\"subscribed\":%d,\"failed\":%d,"
                       "\"setup_s\":%.3f,\"connect_errors\":%llu,\"subscribe_errors\":%llu,"
                       "\"first_subscribe_status\":%d,\"cpu_s\":%.3f}\n",
                       g_n, g_connected, g_subscribed, g_failed, g_setup_s,
                       (unsigned long long)g_connect_errors, (unsigned long long)g_subscribe_errors,
                       g_first_sub_status, tv_s(ru.ru_utime) + tv_s(ru.ru_stime));
                fflush(stdout);
                end_deadline = now + (uint64_t)(g_duration * 1e9);
            }
        } else if (now >= end_deadline) {
            g_stop_requested = 1;
            g_stop_hi = g_seq_hi_seen;
        }
        if (g_stop_requested && ready) break;
        int n = epoll_wait(g_ep, evs, MAX_EVENTS, ready ? 100 : 10);
        if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
        g_wakeups++;
        if (g_batch_us && ready && n > 0 && n < MAX_EVENTS) {
            usleep((useconds_t)g_batch_us);
            n = epoll_wait(g_ep, evs, MAX_EVENTS, 0);
        }
        now = now_ns();
        for (int e = 0; e < n; e++) {
            int kind = (int)(evs[e].data.u64 >> 32);
            int idx = (int)(uint32_t)evs[e].data.u64;
            if (kind == K_STREAM) on_stream(idx, evs[e].events, now);
            else if (kind == K_POSTER) on_poster(idx, evs[e].events, now);
            else if (kind == K_STDIN) on_stdin();
            else if (kind == K_SIGNAL) {
                struct signalfd_siginfo si;
                if (read(sfd, &si, sizeof si) > 0) {
                    g_stop_requested = 1;
                    g_stop_hi = g_seq_hi_seen;
                }
            }
        }
        if (g_stop_requested && !ready) { /* stop during setup: report what we have */
            g_setup_s = (double)(now_ns() - g_t0) / 1e9;
            break;
        }
    }
    (void)have_stdin;
    finish(g_stop_hi ? g_stop_hi : g_seq_hi_seen);
    for (int i = 0; i < g_n; i++)
        if (g_conns[i].fd >= 0) close_hard(g_conns[i].fd);
    return 0;
}
