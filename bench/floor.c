/*
 * floor: the cheapest possible fan-out, to measure the kernel's cost per send.
 *
 * A single-threaded epoll WebSocket server in C. Clients connect and subscribe (any
 * text frame counts as the subscribe); each gets a subscribe reply and a snapshot, then
 * on every tick (--rate per second) the same pre-framed update frames, --batch of them
 * in one send() per client. A fractional --batch (1.54: hotpath's measured frames per
 * write) alternates whole batches so that their mean is exactly that. Messages are
 * hotpath's client envelope with a real timestamp and a continuous seq, so the load
 * generator checks them like hotpath's. A client with more than MAX_BACKLOG unsent bytes
 * is closed, as hotpath closes a slow consumer.
 * Nothing is parsed or encoded per client: the frames of a tick are built once.
 *
 * Build: cc -O2 -o floor floor.c
 * Run:   ./floor --port 9000 --rate 10 --batch 1 --stream hotpath.futures.ticker.BTCUSDT \
 *                --arg ticker:BTCUSDT --data '{"price":"1"}' --max-seconds 120
 * Prints "FLOOR_READY port=N" when listening and one JSON line of counters at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 1024
#define MAX_BACKLOG (8 << 20) /* unsent bytes per client before it is closed */
#define HS_MAX 8192

/* ---- SHA-1 (RFC 3174), only for Sec-WebSocket-Accept ------------------------------ */

static uint32_t rol(uint32_t v, int n) { return (v << n) | (v >> (32 - n)); }

static void sha1(const unsigned char *msg, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = ((len + 8) / 64 + 1) * 64;
    unsigned char *buf = calloc(total, 1);
    memcpy(buf, msg, len);
    buf[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++) buf[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t off = 0; off < total; off += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)buf[off + 4 * i] << 24 | (uint32_t)buf[off + 4 * i + 1] << 16 |
                   (uint32_t)buf[off + 4 * i + 2] << 8 | buf[off + 4 * i + 3];
        for (int i = 16; i < 80; i++) w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
            else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
            else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
            else { f = b ^ c ^ d; k = 0xCA62C1D6; }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d; d = c; c = rol(b, 30); b = a; a = t;
        }
        h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
    }
    free(buf);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = h[i] >> 24; out[4 * i + 1] = h[i] >> 16;
        out[4 * i + 2] = h[i] >> 8; out[4 * i + 3] = h[i];
    }
}

static void base64(const unsigned char *in, size_t len, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = tbl[(v >> 18) & 63];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = i + 1 < len ? tbl[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < len ? tbl[v & 63] : '=';
    }
    out[o] = 0;
}

/* ---- clients --------------------------------------------------------------------- */

enum { HANDSHAKE, OPEN, LIVE, CLOSING, DEAD };

typedef struct client {
    int fd;
    int state;
    char *in;        /* handshake bytes, then partial client frames */
    size_t in_len;
    char *out;       /* backlog of unsent bytes (kernel buffer full) */
    size_t out_len, out_cap;
    struct client *next_live, *prev_live;
} client;

static client *live_head = NULL;
/* Dropped clients, freed once the current epoll batch is handled: a later event of
 * the same batch may still point at one (e.g. a tick closed it as slow). */
static client *graveyard = NULL;
static long long n_live = 0, n_open = 0;
static unsigned long long sends = 0, frames = 0, bytes_out = 0, partial = 0, closed_slow = 0;
static unsigned long long ticks = 0, late_ticks = 0, accepted = 0;
static unsigned long long seq = 0;
static volatile sig_atomic_t stop = 0;
static int ep;

static const char *stream = "hotpath.futures.ticker.BTCUSDT";
static const char *arg = "ticker:BTCUSDT";
static const char *data = "{\"price\":\"60000.0\"}";

static void on_signal(int sig) { (void)sig; stop = 1; }

static unsigned long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000ULL + (unsigned long long)ts.tv_nsec / 1000000ULL;
}

/* Append one server->client text frame (unmasked) holding `len` bytes of `payload`. */
static size_t put_frame(char *dst, const char *payload, size_t len) {
    size_t h = 0;
    dst[h++] = (char)0x81;
    if (len < 126) {
        dst[h++] = (char)len;
    } else if (len < 65536) {
        dst[h++] = 126;
        dst[h++] = (char)(len >> 8);
        dst[h++] = (char)len;
    } else {
        dst[h++] = 127;
        for (int i = 7; i >= 0; i--) dst[h++] = (char)((uint64_t)len >> (8 * i));
    }
    memcpy(dst + h, payload, len);
    return h + len;
}

static size_t message(char *dst, const char *type, unsigned long long s) {
    char body[65536];
    int n = snprintf(body, sizeof body,
                     "{\"stream\":\"%s\",\"type\":\"%s\",\"data\":%s,\"timestamp\":%llu,"
                     "\"source\":\"hotpath\",\"seq\":%llu}", stream, type, data, now_ms(), s);
    if (n < 0 || (size_t)n >= sizeof body) n = 0;
    return put_frame(dst, body, (size_t)n);
}

static void unlink_live(client *c) {
    if (c->state != LIVE) return;
    if (c->prev_live) c->prev_live->next_live = c->next_live; else live_head = c->next_live;
    if (c->next_live) c->next_live->prev_live = c->prev_live;
    c->next_live = c->prev_live = NULL;
    n_live--;
}

static void drop(client *c) {
    if (c->state == DEAD) return;
    unlink_live(c);
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = DEAD;
    c->next_live = graveyard;
    graveyard = c;
    n_open--;
}

static void bury(void) {
    while (graveyard) {
        client *c = graveyard;
        graveyard = c->next_live;
        free(c->in);
        free(c->out);
        free(c);
    }
}

/* Keep `len` bytes the kernel did not take. Returns 0 when the client was dropped. */
static int backlog(client *c, const char *buf, size_t len) {
    if (c->out_len + len > MAX_BACKLOG) {
        closed_slow++;
        drop(c);
        return 0;
    }
    if (c->out_len + len > c->out_cap) {
        c->out_cap = (c->out_len + len) * 2;
        c->out = realloc(c->out, c->out_cap);
    }
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    return 1;
}

/* One send() of `len` bytes; what the kernel does not take waits in the backlog.
 * Returns 0 when the client was dropped. */
static int deliver(client *c, const char *buf, size_t len, int nframes) {
    frames += nframes;
    if (c->out_len) return backlog(c, buf, len);
    ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    sends++;
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) { drop(c); return 0; }
        n = 0;
    }
    bytes_out += (size_t)n;
    if ((size_t)n < len) {
        partial++;
        return backlog(c, buf + n, len - (size_t)n);
    }
    return 1;
}

static void flush_backlog(client *c) {
    ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    sends++;
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) drop(c);
        return;
    }
    bytes_out += (size_t)n;
    memmove(c->out, c->out + n, c->out_len - (size_t)n);
    c->out_len -= (size_t)n;
    if (!c->out_len) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
    }
}

static void handshake(client *c) {
    c->in[c->in_len] = 0;
    if (!strstr(c->in, "\r\n\r\n")) {
        if (c->in_len >= HS_MAX - 1) drop(c);
        return;
    }
    char *key = strcasestr(c->in, "\r\nSec-WebSocket-Key:");
    if (!key) { drop(c); return; }
    key += strlen("\r\nSec-WebSocket-Key:");
    while (*key == ' ') key++;
    char joined[128];
    size_t klen = strcspn(key, "\r\n ");
    if (klen > 60) { drop(c); return; }
    snprintf(joined, sizeof joined, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)klen, key);
    unsigned char digest[20];
    char accept_key[32];
    sha1((unsigned char *)joined, strlen(joined), digest);
    base64(digest, 20, accept_key);
    char resp[256];
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept_key);
    c->in_len = 0;
    c->state = OPEN;
    if (send(c->fd, resp, (size_t)n, MSG_NOSIGNAL) != n) drop(c);
}

/* Client frames: the first text frame is the subscribe; a close is answered and ends. */
static void client_frames(client *c) {
    size_t off = 0;
    while (c->in_len - off >= 2) {
        unsigned char *p = (unsigned char *)c->in + off;
        int opcode = p[0] & 15;
        uint64_t len = p[1] & 127;
        size_t h = 2;
        if (len == 126) { if (c->in_len - off < 4) break; len = (uint64_t)p[2] << 8 | p[3]; h = 4; }
        else if (len == 127) { drop(c); return; }
        if (p[1] & 128) h += 4;
        if (c->in_len - off < h + len) break;
        off += h + len;
        if (opcode == 8) { /* close: answer it and hang up (server closes first) */
            char frame[4] = {(char)0x88, 2, 0x03, (char)0xE8};
            send(c->fd, frame, 4, MSG_NOSIGNAL);
            drop(c);
            return;
        }
        if (opcode == 1 && c->state == OPEN) {
            char buf[70000];
            char reply[512];
            int n = snprintf(reply, sizeof reply, "{\"op\":\"subscribe\",\"success\":true,"
                             "\"args\":[\"%s\"],\"rejected\":null}", arg);
            size_t len2 = put_frame(buf, reply, (size_t)n);
            len2 += message(buf + len2, "snapshot", seq);
            c->state = LIVE;
            c->next_live = live_head;
            c->prev_live = NULL;
            if (live_head) live_head->prev_live = c;
            live_head = c;
            n_live++;
            if (!deliver(c, buf, len2, 2)) return;
        }
    }
    memmove(c->in, c->in + off, c->in_len - off);
    c->in_len -= off;
}

static void on_readable(client *c) {
    for (;;) {
        if (c->in_len >= HS_MAX - 1) { drop(c); return; }
        ssize_t n = recv(c->fd, c->in + c->in_len, HS_MAX - 1 - c->in_len, 0);
        if (n == 0) { drop(c); return; }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            drop(c);
            return;
        }
        c->in_len += (size_t)n;
        if (c->state == HANDSHAKE) handshake(c);
        else client_frames(c);
        return; /* the client may have been dropped: do not touch it again */
    }
}

static void tick(int batch, char *buf) {
    size_t len = 0;
    for (int i = 0; i < batch; i++) len += message(buf + len, "update", ++seq);
    ticks++;
    client *c = live_head;
    while (c) {
        client *next = c->next_live;
        deliver(c, buf, len, batch);
        c = next;
    }
}

static void usage(void) {
    fprintf(stderr, "usage: floor --port N [--host ADDR] [--rate TICKS_PER_S] [--batch FRAMES]"
                    " [--stream NAME] [--arg ARG] [--data JSON] [--max-seconds S]\n");
    exit(2);
}

int main(int argc, char **argv) {
    int port = 0;
    double batch = 1.0;
    double rate = 10.0, max_seconds = 600.0;
    const char *host = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        if (!strcmp(argv[i], "--port")) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host")) host = argv[++i];
        else if (!strcmp(argv[i], "--rate")) rate = atof(argv[++i]);
        else if (!strcmp(argv[i], "--batch")) batch = atof(argv[++i]);
        else if (!strcmp(argv[i], "--stream")) stream = argv[++i];
        else if (!strcmp(argv[i], "--arg")) arg = argv[++i];
        else if (!strcmp(argv[i], "--data")) data = argv[++i];
        else if (!strcmp(argv[i], "--max-seconds")) max_seconds = atof(argv[++i]);
        else usage();
    }
    if (rate <= 0 || !(batch >= 1 && batch <= 64) || strlen(data) > 60000) usage();

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) { rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl); }
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4096)) {
        perror("floor: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);

    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    long long period_ns = (long long)(1e9 / rate);
    struct itimerspec its = {.it_interval = {period_ns / 1000000000LL, period_ns % 1000000000LL},
                             .it_value = {period_ns / 1000000000LL, period_ns % 1000000000LL}};
    timerfd_settime(tfd, 0, &its, NULL);
    static int timer_tag;
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = &timer_tag};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    printf("FLOOR_READY port=%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    char *tickbuf = malloc((size_t)ceil(batch) * 70000);
    uint64_t tick_no = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct epoll_event events[MAX_EVENTS];
    while (!stop) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((double)(t.tv_sec - t0.tv_sec) + (t.tv_nsec - t0.tv_nsec) / 1e9 > max_seconds) break;
        int n = epoll_wait(ep, events, MAX_EVENTS, 200);
        for (int i = 0; i < n; i++) {
            void *tag = events[i].data.ptr;
            if (tag == NULL) {
                for (;;) {
                    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    client *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    c->in = malloc(HS_MAX);
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                    n_open++;
                    accepted++;
                }
            } else if (tag == &timer_tag) {
                uint64_t expirations = 0;
                if (read(tfd, &expirations, sizeof expirations) == sizeof expirations) {
                    if (expirations > 1) late_ticks += expirations - 1;
                    for (uint64_t k = 0; k < expirations; k++, tick_no++) {
                        /* frames due by the end of this tick minus those already sent */
                        int due = (int)floor((double)(tick_no + 1) * batch + 1e-9)
                                  - (int)floor((double)tick_no * batch + 1e-9);
                        tick(due, tickbuf);
                    }
                }
            } else {
                client *c = tag;
                if (c->state == DEAD) continue;
                if (events[i].events & EPOLLOUT) {
                    flush_backlog(c);
                    continue; /* may have been dropped; EPOLLIN comes again if pending */
                }
                if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
            }
        }
        bury();
    }
    printf("{\"accepted\":%llu,\"open\":%lld,\"live\":%lld,\"ticks\":%llu,\"late_ticks\":%llu,"
           "\"sends\":%llu,\"frames\":%llu,\"bytes\":%llu,\"partial_sends\":%llu,"
           "\"closed_slow\":%llu,\"seq\":%llu}\n", accepted, n_open, n_live, ticks, late_ticks,
           sends, frames, bytes_out, partial, closed_slow, seq);
    free(tickbuf);
    return 0;
}
