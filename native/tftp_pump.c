/*
 * pxeha_tftp: the steady state of a lock-step TFTP read transfer, off the JavaScript path.
 *
 * In lock step over a fast link, the cost of a transfer is per datagram: one ACK in, one DATA
 * out. Node's dgram spends more on each of those (a wake-up into JS, a 64 KiB receive buffer,
 * a Buffer and an rinfo per datagram, a SendWrap per send) than in.tftpd spends in all
 * (bench/tftp/RESULTS.md). A TftpPump is a transfer's own UDP socket (its TID, RFC 1350 §4)
 * whose readable events are handled here, in C, on Node's event loop (uv_poll on the loop of
 * the calling environment: no thread per transfer, nothing on the libuv threadpool).
 *
 * JavaScript (src/tftp/server.ts and the pure state machine src/tftp/transfer.ts) makes every
 * decision. It tells the pump which block is in flight (reset) and hands it the DATA datagrams
 * that follow, already laid out (append). The pump then does one thing on its own: an ACK from
 * the peer's address:port of exactly the block in flight, while a prepared datagram is queued,
 * is answered with that datagram, which becomes the block in flight. Everything else goes to
 * the JS callback as an event and changes nothing here:
 *
 *   onEvent(PACKET=1, datagram, undefined, 0)   any other datagram from the peer (an ACK of
 *                                               another block, an ACK with nothing queued, an
 *                                               ERROR, anything malformed)
 *   onEvent(STRANGER=2, undefined, address, port)  a datagram from anyone else (ERROR 5 is JS's)
 *   onEvent(LOW=3, undefined, undefined, left)  the queue fell to the mark set by notifyWhenLeft
 *                                               (JS reads more of the file then)
 *   onEvent(RECV_ERROR=4, undefined, undefined, errno)
 *
 * Progress is not an event: each ACK the pump answers adds 1 to counters[0] and stores
 * Date.now()-style milliseconds (CLOCK_REALTIME_COARSE) in counters[1] (a Float64Array JS holds), so the JS timer and
 * statistics learn it by reading two numbers.
 *
 *   new TftpPump(localAddress: string, counters: Float64Array(>= 2), onEvent: Function)
 *     an AF_INET/SOCK_DGRAM socket bound to localAddress:0 (SO_REUSEPORT, never SO_REUSEADDR;
 *     see open_peer_socket), non-blocking, close-on-exec, polled for reading at once
 *   port(): number                    the bound port (the TID)
 *   setPeer(address: string, port: number): boolean
 *                                     the client's TID; also opens the connected socket for it
 *                                     (true), or goes on without one (false)
 *   send(datagram: Buffer, port?: number, address?: string): number
 *                                     sendto(2) to the peer, or to address:port; 0 or an errno.
 *                                     When the socket buffer is full, one datagram is kept and
 *                                     sent once the socket is writable (as dgram would queue it).
 *   reset(expectBlock: number): void  empty the queue; expectBlock is the wire block in flight,
 *                                     -1 for none (then every datagram goes to JS)
 *   append(run: Buffer, packetBytes: number): void
 *                                     queue the DATA datagrams laid out back to back in run,
 *                                     packetBytes each (the last may be shorter); each must be a
 *                                     DATA header numbered one after the block before it. Not
 *                                     copied: the pump holds the Buffer (a reference) until its
 *                                     datagrams are sent, and JS must not change its bytes
 *   notifyWhenLeft(left: number): void  one LOW event when the queue falls to `left`; -1: none
 *   queued(): number                  datagrams queued and not yet sent
 *   close(): void                     stop polling, close the socket (once the handle closed),
 *                                     free the queue; no event is delivered after it
 *
 * Every length and offset JS passes is checked; a bad argument throws a TypeError and changes
 * nothing. The socket is closed on every path: by close(), or when the object is collected.
 */
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

#include "napi_check.h"

enum { EV_PACKET = 1, EV_STRANGER = 2, EV_LOW = 3, EV_RECV_ERROR = 4 };

#define TFTP_DATA 3
#define TFTP_ACK 4
/* A DATA datagram: 4-byte header and at most 65464 payload bytes (RFC 2348 blksize limit). */
#define MAX_DATAGRAM (4 + 65464)
/* What one pump may hold queued: far above any read-ahead the server uses. */
#define MAX_QUEUE_BYTES ((size_t)64 << 20)
/* Datagrams read per recvmmsg(2), and bytes kept of each: an ACK is 4, an ERROR a few dozen. */
#define RECV_BATCH 8
#define RECV_BYTES 2048
/* recvmmsg calls per readable event before yielding to the rest of the loop. */
#define RECV_ROUNDS 4

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

static napi_value throw_errno(napi_env env, int err, const char *what) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, "PXE_NATIVE", message);
  return NULL;
}

#ifdef __linux__

typedef struct pump {
  napi_env env;
  napi_ref callback;
  napi_ref counters_ref;
  double *counters; /* [0] ACKs answered here, [1] ms (CLOCK_REALTIME) of the last one */
  napi_async_context async;
  uv_poll_t poll;      /* fd */
  uv_poll_t poll_peer; /* fd_peer, once there is one */
  int fd;              /* the TID socket: unconnected, hears strangers */
  int fd_peer;         /* the same port, connected to the peer; -1 when none */
  int open;            /* sockets polled and events delivered; 0 from close() on */
  int handles;         /* poll handles initialised and not yet closed */
  int handle_closed;   /* every handle's uv_close callback ran */
  int finalized;      /* the JS object is gone */
  int polling_writable;

  struct sockaddr_in peer;
  int has_peer;
  int32_t expect; /* wire block in flight, whose ACK sends the next queued datagram; -1 none */

  /* The queue: datagram i is ptr[i] .. ptr[i] + len[i], inside the JS Buffer of run run[i]
   * (not copied: each run's Buffer is held by a reference until its datagrams are sent); head
   * is the next to send. The state machine never changes a prepared datagram (transfer.ts). */
  const uint8_t **ptr;
  uint32_t *len, *run;
  size_t count, head, slots;
  napi_ref *runs;     /* references to the Buffers appended; runs[0] is run number runs_base */
  size_t runs_count, runs_slots;
  uint32_t runs_base;
  size_t queued_bytes;
  int final_queued; /* the last queued datagram is shorter than its run's packetBytes */
  long notify_left; /* LOW when count - head falls to this; -1 none */

  /* One datagram waiting for the socket to become writable (EAGAIN/ENOBUFS). */
  uint8_t *pending;
  size_t pending_len, pending_cap;
  struct sockaddr_in pending_to;
  int has_pending;
} pump_t;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts); /* a few ms of resolution is plenty for a timer, and cheaper */
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void pump_free(pump_t *p) {
  free(p->ptr);
  free(p->len);
  free(p->run);
  free(p->runs);
  free(p->pending);
  free(p);
}

static void on_handle_closed(uv_handle_t *handle) {
  pump_t *p = (pump_t *)handle->data;
  if (--p->handles > 0) return;
  if (p->fd >= 0) close(p->fd);
  if (p->fd_peer >= 0) close(p->fd_peer);
  p->fd = p->fd_peer = -1;
  p->handle_closed = 1;
  if (p->finalized) pump_free(p);
}

static void update_poll(pump_t *p);
static void on_poll(uv_poll_t *handle, int status, int events);

/* Drops the references to runs numbered below `upto` (their datagrams are all sent or dropped). */
static void release_runs(pump_t *p, uint32_t upto) {
  while (p->runs_count > 0 && p->runs_base < upto) {
    napi_delete_reference(p->env, p->runs[0]);
    memmove(p->runs, p->runs + 1, (p->runs_count - 1) * sizeof *p->runs);
    p->runs_count--;
    p->runs_base++;
  }
}

/* Stops events, releases the JS references and starts closing the handle (then the socket). */
static void pump_close(pump_t *p) {
  if (!p->open) return;
  p->open = 0;
  napi_env env = p->env;
  if (p->callback) napi_delete_reference(env, p->callback);
  if (p->counters_ref) napi_delete_reference(env, p->counters_ref);
  p->callback = NULL;
  p->counters_ref = NULL;
  p->counters = NULL;
  if (p->async) napi_async_destroy(env, p->async);
  p->async = NULL;
  release_runs(p, p->runs_base + (uint32_t)p->runs_count);
  p->count = p->head = 0;
  p->has_pending = 0;
  uv_poll_stop(&p->poll);
  uv_close((uv_handle_t *)&p->poll, on_handle_closed);
  if (p->fd_peer >= 0) {
    uv_poll_stop(&p->poll_peer);
    uv_close((uv_handle_t *)&p->poll_peer, on_handle_closed);
  }
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  pump_t *p = (pump_t *)data;
  pump_close(p);
  p->finalized = 1;
  if (p->handle_closed) pump_free(p);
}

/* Calls onEvent(kind, datagram | undefined, address | undefined, number). */
static void emit(pump_t *p, int kind, const uint8_t *bytes, size_t length, const struct sockaddr_in *from, int number) {
  if (!p->open) return;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value argv[4], callback, global, result, undefined;
  void *copy;
  char address[INET_ADDRSTRLEN];
  napi_get_undefined(env, &undefined);
  argv[1] = argv[2] = undefined;
  int ok = napi_create_int32(env, kind, &argv[0]) == napi_ok &&
           napi_get_reference_value(env, p->callback, &callback) == napi_ok &&
           napi_get_global(env, &global) == napi_ok;
  if (ok && bytes != NULL) ok = napi_create_buffer_copy(env, length, bytes, &copy, &argv[1]) == napi_ok;
  if (ok && from != NULL) {
    ok = inet_ntop(AF_INET, &from->sin_addr, address, sizeof address) != NULL &&
         napi_create_string_utf8(env, address, NAPI_AUTO_LENGTH, &argv[2]) == napi_ok;
    number = ntohs(from->sin_port);
  }
  if (ok) ok = napi_create_int32(env, number, &argv[3]) == napi_ok;
  if (ok) {
    napi_status status = napi_make_callback(env, p->async, global, callback, 4, argv, &result);
    if (status == napi_pending_exception) {
      napi_value error;
      if (napi_get_and_clear_last_exception(env, &error) == napi_ok) napi_fatal_exception(env, error);
    }
  }
  napi_close_handle_scope(env, scope);
}

static int would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS || err == EINTR; }

/* sendto(2); when the socket buffer is full, keeps the datagram (if the one slot is free) until
 * the socket is writable. 0, or the errno of a datagram that is lost (as on the wire). */
static int send_or_keep(pump_t *p, const uint8_t *bytes, size_t length, const struct sockaddr_in *to) {
  if (!p->has_pending) {
    ssize_t sent = to == &p->peer && p->fd_peer >= 0
                       ? send(p->fd_peer, bytes, length, MSG_DONTWAIT)
                       : sendto(p->fd, bytes, length, MSG_DONTWAIT, (const struct sockaddr *)to, sizeof *to);
    if (sent >= 0) return 0;
    int err = errno;
    if (!would_block(err)) return err;
  }
  if (p->has_pending) return EAGAIN;
  if (p->pending_cap < length) {
    uint8_t *grown = realloc(p->pending, length);
    if (grown == NULL) return ENOMEM;
    p->pending = grown;
    p->pending_cap = length;
  }
  memcpy(p->pending, bytes, length);
  p->pending_len = length;
  p->pending_to = *to;
  p->has_pending = 1;
  update_poll(p);
  return 0;
}

static void update_poll(pump_t *p) {
  if (!p->open) return;
  int want_writable = p->has_pending;
  if (want_writable == p->polling_writable) return;
  p->polling_writable = want_writable;
  uv_poll_start(&p->poll, UV_READABLE | (want_writable ? UV_WRITABLE : 0), on_poll);
}

static void flush_pending(pump_t *p) {
  if (!p->has_pending) return;
  ssize_t sent = sendto(p->fd, p->pending, p->pending_len, MSG_DONTWAIT, (const struct sockaddr *)&p->pending_to,
                        sizeof p->pending_to);
  if (sent < 0 && would_block(errno)) return; /* still full: wait for the next writable event */
  p->has_pending = 0; /* sent, or lost: the transfer's timer re-sends */
  update_poll(p);
}

/* The one thing done here: the ACK of the block in flight answered with the next datagram. */
static void send_next(pump_t *p) {
  const uint8_t *datagram = p->ptr[p->head];
  size_t length = p->len[p->head];
  (void)send_or_keep(p, datagram, length, &p->peer); /* a lost datagram is the timer's, as on the wire */
  p->expect = (int32_t)((datagram[2] << 8) | datagram[3]);
  p->head++;
  p->counters[0] += 1;
  p->counters[1] = now_ms();
  if (p->notify_left >= 0 && (long)(p->count - p->head) <= p->notify_left) {
    long left = p->notify_left;
    p->notify_left = -1;
    emit(p, EV_LOW, NULL, 0, NULL, (int)left);
  }
}

static void handle_datagram(pump_t *p, const uint8_t *bytes, size_t length, const struct sockaddr_in *from,
                            socklen_t from_length) {
  if (from_length < sizeof *from || from->sin_family != AF_INET || !p->has_peer ||
      from->sin_addr.s_addr != p->peer.sin_addr.s_addr || from->sin_port != p->peer.sin_port) {
    if (from_length >= sizeof *from && from->sin_family == AF_INET) emit(p, EV_STRANGER, NULL, 0, from, 0);
    return;
  }
  if (length == 4 && bytes[0] == 0 && bytes[1] == TFTP_ACK && p->expect >= 0 &&
      ((bytes[2] << 8) | bytes[3]) == p->expect && p->head < p->count) {
    send_next(p);
    return;
  }
  emit(p, EV_PACKET, bytes, length, NULL, 0);
}

/* Receive buffers, one set per thread (each Node environment polls on its own thread). */
static _Thread_local uint8_t recv_bytes[RECV_BATCH][RECV_BYTES];
static _Thread_local struct sockaddr_in recv_from[RECV_BATCH];

static void on_poll(uv_poll_t *handle, int status, int events) {
  pump_t *p = (pump_t *)handle->data;
  if (!p->open) return;
  if (status < 0) {
    emit(p, EV_RECV_ERROR, NULL, 0, NULL, -status);
    return;
  }
  if (events & UV_WRITABLE) flush_pending(p);
  if (!(events & UV_READABLE)) return;
  struct mmsghdr msgs[RECV_BATCH];
  struct iovec iov[RECV_BATCH];
  for (int round = 0; round < RECV_ROUNDS && p->open; round++) {
    for (int i = 0; i < RECV_BATCH; i++) {
      iov[i].iov_base = recv_bytes[i];
      iov[i].iov_len = RECV_BYTES;
      memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
      msgs[i].msg_hdr.msg_name = &recv_from[i];
      msgs[i].msg_hdr.msg_namelen = sizeof recv_from[i];
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
      msgs[i].msg_len = 0;
    }
    int n = recvmmsg(handle == &p->poll_peer ? p->fd_peer : p->fd, msgs, RECV_BATCH, MSG_DONTWAIT, NULL);
    if (n < 0) {
      int err = errno;
      if (!would_block(err)) emit(p, EV_RECV_ERROR, NULL, 0, NULL, err);
      return;
    }
    /* A datagram longer than RECV_BYTES arrives cut (MSG_TRUNC): JS then finds it malformed. */
    for (int i = 0; i < n && p->open; i++) {
      size_t length = msgs[i].msg_len < RECV_BYTES ? msgs[i].msg_len : RECV_BYTES;
      handle_datagram(p, recv_bytes[i], length, &recv_from[i], msgs[i].msg_hdr.msg_namelen);
    }
    if (n < RECV_BATCH) return;
  }
}

/* ---- JS methods ---- */

static pump_t *this_pump(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *data = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok || napi_unwrap(env, self, &data) != napi_ok ||
      data == NULL) {
    throw_type(env, "not a TftpPump");
    return NULL;
  }
  return (pump_t *)data;
}

static pump_t *open_pump(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  pump_t *p = this_pump(env, info, argc, argv);
  if (p != NULL && !p->open) {
    napi_throw_error(env, "ERR_SOCKET_DGRAM_NOT_RUNNING", "TftpPump is closed");
    return NULL;
  }
  return p;
}

static int get_int(napi_env env, napi_value value, int64_t min, int64_t max, int64_t *out, const char *message) {
  napi_valuetype type;
  double number;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number || napi_get_value_double(env, value, &number) != napi_ok ||
      number != number || number < (double)min || number > (double)max || number != (double)(int64_t)number) {
    throw_type(env, message);
    return 0;
  }
  *out = (int64_t)number;
  return 1;
}

static int get_ipv4(napi_env env, napi_value value, struct in_addr *out) {
  napi_valuetype type;
  char text[INET_ADDRSTRLEN];
  size_t length = 0;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string ||
      napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok || length + 1 > sizeof text ||
      napi_get_value_string_utf8(env, value, text, sizeof text, &length) != napi_ok || inet_pton(AF_INET, text, out) != 1) {
    throw_type(env, "address must be a dotted IPv4 address");
    return 0;
  }
  return 1;
}

static int get_bytes(napi_env env, napi_value value, const uint8_t **data, size_t *length) {
  bool is_buffer = false;
  void *raw = NULL;
  if (napi_is_buffer(env, value, &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, value, &raw, length) != napi_ok) {
    throw_type(env, "datagram must be a Buffer");
    return 0;
  }
  *data = (const uint8_t *)raw;
  return 1;
}

static napi_value New(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self, new_target;
  CHECK(napi_get_new_target(env, info, &new_target));
  if (new_target == NULL) return throw_type(env, "TftpPump must be called with new");
  CHECK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  if (argc < 3) return throw_type(env, "new TftpPump(localAddress, counters, onEvent)");
  struct sockaddr_in local;
  memset(&local, 0, sizeof local);
  local.sin_family = AF_INET;
  if (!get_ipv4(env, argv[0], &local.sin_addr)) return NULL;

  bool is_typed = false;
  napi_typedarray_type ttype;
  size_t tlength = 0;
  void *tdata = NULL;
  napi_valuetype ftype;
  if (napi_is_typedarray(env, argv[1], &is_typed) != napi_ok || !is_typed ||
      napi_get_typedarray_info(env, argv[1], &ttype, &tlength, &tdata, NULL, NULL) != napi_ok ||
      ttype != napi_float64_array || tlength < 2 || tdata == NULL) {
    return throw_type(env, "counters must be a Float64Array of at least 2");
  }
  if (napi_typeof(env, argv[2], &ftype) != napi_ok || ftype != napi_function) return throw_type(env, "onEvent must be a function");

  uv_loop_t *loop = NULL;
  CHECK(napi_get_uv_event_loop(env, &loop));

  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 || bind(fd, (struct sockaddr *)&local, sizeof local) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, err, "bind");
  }
  pump_t *p = calloc(1, sizeof *p);
  if (p == NULL) {
    close(fd);
    return throw_errno(env, ENOMEM, "TftpPump");
  }
  p->env = env;
  p->fd = fd;
  p->fd_peer = -1;
  p->expect = -1;
  p->notify_left = -1;
  p->counters = (double *)tdata;
  p->poll.data = p;
  p->poll_peer.data = p;
  napi_value resource_name;
  int ok = napi_create_reference(env, argv[2], 1, &p->callback) == napi_ok &&
           napi_create_reference(env, argv[1], 1, &p->counters_ref) == napi_ok &&
           napi_create_string_utf8(env, "TftpPump", NAPI_AUTO_LENGTH, &resource_name) == napi_ok &&
           napi_async_init(env, self, resource_name, &p->async) == napi_ok;
  int rc = ok ? uv_poll_init_socket(loop, &p->poll, fd) : 0;
  if (!ok || rc != 0) {
    if (p->callback) napi_delete_reference(env, p->callback);
    if (p->counters_ref) napi_delete_reference(env, p->counters_ref);
    if (p->async) napi_async_destroy(env, p->async);
    close(fd);
    free(p);
    if (rc != 0) return throw_errno(env, -rc, "uv_poll_init_socket");
    napi_throw_error(env, "PXE_NATIVE", "TftpPump: N-API setup failed");
    return NULL;
  }
  p->open = 1;
  p->handles = 1;
  rc = uv_poll_start(&p->poll, UV_READABLE, on_poll);
  if (rc != 0 || napi_wrap(env, self, p, finalize, NULL, NULL) != napi_ok) {
    pump_close(p); /* closes the handle, then the socket; frees once the handle closed */
    p->finalized = 1;
    if (rc != 0) return throw_errno(env, -rc, "uv_poll_start");
    napi_throw_error(env, "PXE_NATIVE", "TftpPump: napi_wrap failed");
    return NULL;
  }
  return self;
}

static napi_value Port(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pump_t *p = open_pump(env, info, &argc, NULL);
  if (p == NULL) return NULL;
  struct sockaddr_in local;
  socklen_t length = sizeof local;
  if (getsockname(p->fd, (struct sockaddr *)&local, &length) < 0) return throw_errno(env, errno, "getsockname");
  napi_value result;
  CHECK(napi_create_uint32(env, ntohs(local.sin_port), &result));
  return result;
}

/*
 * The fast path's socket: a second socket on the TID's address and port, connected to the peer.
 * Both carry SO_REUSEPORT (the kernel lets only sockets of the same user share the port, unlike
 * SO_REUSEADDR, with which any local user could bind it and take the ACKs). Once a socket of the
 * group is connected, the kernel delivers by best match instead of hashing over the group: the
 * peer's datagrams come to the connected socket, anyone else's to the unconnected one, which
 * answers them (ERROR 5, from JS). A connected socket spares a route lookup per datagram each way
 * (early demux on receive, the cached route on send). Set up before the first datagram goes to
 * the peer; on any failure the pump goes on with the unconnected socket alone.
 */
static void open_peer_socket(napi_env env, pump_t *p) {
  struct sockaddr_in local;
  socklen_t length = sizeof local;
  uv_loop_t *loop = NULL;
  int one = 1;
  if (getsockname(p->fd, (struct sockaddr *)&local, &length) < 0 || napi_get_uv_event_loop(env, &loop) != napi_ok) return;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 || bind(fd, (struct sockaddr *)&local, sizeof local) < 0 ||
      connect(fd, (struct sockaddr *)&p->peer, sizeof p->peer) < 0 || uv_poll_init_socket(loop, &p->poll_peer, fd) != 0) {
    close(fd);
    return;
  }
  p->poll_peer.data = p;
  p->handles++;
  p->fd_peer = fd;
  if (uv_poll_start(&p->poll_peer, UV_READABLE, on_poll) != 0) {
    /* Not polled, so it must not take the peer's datagrams: close it (the handle, then the fd). */
    p->fd_peer = -1;
    uv_close((uv_handle_t *)&p->poll_peer, on_handle_closed);
    close(fd);
  }
}

static napi_value SetPeer(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  pump_t *p = open_pump(env, info, &argc, argv);
  if (p == NULL) return NULL;
  if (argc < 2) return throw_type(env, "setPeer(address, port)");
  struct in_addr address;
  int64_t port;
  if (!get_ipv4(env, argv[0], &address) || !get_int(env, argv[1], 1, 65535, &port, "port must be 1..65535")) return NULL;
  memset(&p->peer, 0, sizeof p->peer);
  p->peer.sin_family = AF_INET;
  p->peer.sin_addr = address;
  p->peer.sin_port = htons((uint16_t)port);
  p->has_peer = 1;
  if (p->fd_peer < 0) open_peer_socket(env, p);
  napi_value result;
  CHECK(napi_get_boolean(env, p->fd_peer >= 0, &result));
  return result;
}

static napi_value Send(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  pump_t *p = open_pump(env, info, &argc, argv);
  if (p == NULL) return NULL;
  if (argc < 1) return throw_type(env, "send(datagram, port?, address?)");
  const uint8_t *bytes;
  size_t length;
  if (!get_bytes(env, argv[0], &bytes, &length)) return NULL;
  if (length > MAX_DATAGRAM) return throw_type(env, "datagram is too long");
  struct sockaddr_in to;
  napi_valuetype type = napi_undefined;
  if (argc >= 2) napi_typeof(env, argv[1], &type);
  if (type == napi_undefined) {
    if (!p->has_peer) return throw_type(env, "no peer set");
    to = p->peer;
  } else {
    int64_t port;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    if (argc < 3 || !get_int(env, argv[1], 1, 65535, &port, "port must be 1..65535") || !get_ipv4(env, argv[2], &to.sin_addr)) {
      return NULL;
    }
    to.sin_port = htons((uint16_t)port);
  }
  napi_value result;
  CHECK(napi_create_int32(env, send_or_keep(p, bytes, length, &to), &result));
  return result;
}

static napi_value Reset(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  pump_t *p = open_pump(env, info, &argc, argv);
  if (p == NULL) return NULL;
  int64_t expect;
  if (argc < 1 || !get_int(env, argv[0], -1, 65535, &expect, "expectBlock must be -1..65535")) return NULL;
  p->expect = (int32_t)expect;
  release_runs(p, p->runs_base + (uint32_t)p->runs_count);
  p->count = p->head = 0;
  p->queued_bytes = 0;
  p->final_queued = 0;
  p->notify_left = -1;
  return NULL;
}

/* Drops the datagrams already sent from the front of the queue, and the runs they came from. */
static void compact(pump_t *p) {
  if (p->head == 0) return;
  size_t left = p->count - p->head;
  for (size_t i = 0; i < p->head; i++) p->queued_bytes -= p->len[i];
  memmove(p->ptr, p->ptr + p->head, left * sizeof *p->ptr);
  memmove(p->len, p->len + p->head, left * sizeof *p->len);
  memmove(p->run, p->run + p->head, left * sizeof *p->run);
  p->count = left;
  p->head = 0;
  release_runs(p, left > 0 ? p->run[0] : p->runs_base + (uint32_t)p->runs_count);
}

static napi_value Append(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  pump_t *p = open_pump(env, info, &argc, argv);
  if (p == NULL) return NULL;
  const uint8_t *run;
  size_t run_length;
  int64_t packet_bytes;
  if (argc < 2 || !get_bytes(env, argv[0], &run, &run_length) ||
      !get_int(env, argv[1], 4, MAX_DATAGRAM, &packet_bytes, "packetBytes must be 4..65468")) {
    return NULL;
  }
  if (run_length == 0) return NULL;
  if (p->expect < 0) return throw_type(env, "append: no block in flight (reset first)");
  if (p->final_queued) return throw_type(env, "append: the final block is already queued");
  size_t step = (size_t)packet_bytes;
  size_t n = (run_length + step - 1) / step;
  /* Check every datagram before changing anything. */
  uint32_t previous = p->count > p->head ? (uint32_t)((p->ptr[p->count - 1][2] << 8) | p->ptr[p->count - 1][3])
                                         : (uint32_t)p->expect;
  for (size_t i = 0; i < n; i++) {
    size_t at = i * step;
    size_t length = run_length - at < step ? run_length - at : step;
    if (length < 4) return throw_type(env, "append: a datagram shorter than a DATA header");
    const uint8_t *d = run + at;
    uint32_t block = (uint32_t)((d[2] << 8) | d[3]);
    if (d[0] != 0 || d[1] != TFTP_DATA) return throw_type(env, "append: not a DATA datagram");
    if (block != ((previous + 1) & 0xffff)) return throw_type(env, "append: DATA blocks out of sequence");
    previous = block;
  }
  compact(p);
  if (p->queued_bytes + run_length > MAX_QUEUE_BYTES) return throw_type(env, "append: queue too large");
  if (p->count + n > p->slots) {
    size_t slots = (p->count + n) + (p->count + n) / 4;
    const uint8_t **ptr = realloc(p->ptr, slots * sizeof *ptr);
    if (ptr == NULL) return throw_errno(env, ENOMEM, "append");
    p->ptr = ptr;
    uint32_t *len = realloc(p->len, slots * sizeof *len);
    if (len == NULL) return throw_errno(env, ENOMEM, "append");
    p->len = len;
    uint32_t *run_of = realloc(p->run, slots * sizeof *run_of);
    if (run_of == NULL) return throw_errno(env, ENOMEM, "append");
    p->run = run_of;
    p->slots = slots;
  }
  if (p->runs_count + 1 > p->runs_slots) {
    size_t slots = p->runs_slots * 2 + 4;
    napi_ref *runs = realloc(p->runs, slots * sizeof *runs);
    if (runs == NULL) return throw_errno(env, ENOMEM, "append");
    p->runs = runs;
    p->runs_slots = slots;
  }
  napi_ref ref;
  CHECK(napi_create_reference(env, argv[0], 1, &ref));
  uint32_t run_number = p->runs_base + (uint32_t)p->runs_count;
  p->runs[p->runs_count++] = ref;
  for (size_t i = 0; i < n; i++) {
    size_t at = i * step;
    size_t length = run_length - at < step ? run_length - at : step;
    p->ptr[p->count] = run + at;
    p->len[p->count] = (uint32_t)length;
    p->run[p->count] = run_number;
    p->count++;
    if (length < step) p->final_queued = 1;
  }
  p->queued_bytes += run_length;
  return NULL;
}

static napi_value NotifyWhenLeft(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  pump_t *p = open_pump(env, info, &argc, argv);
  if (p == NULL) return NULL;
  int64_t left;
  if (argc < 1 || !get_int(env, argv[0], -1, 1 << 30, &left, "left must be -1..2^30")) return NULL;
  p->notify_left = (long)left;
  return NULL;
}

static napi_value Queued(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pump_t *p = open_pump(env, info, &argc, NULL);
  if (p == NULL) return NULL;
  napi_value result;
  CHECK(napi_create_uint32(env, (uint32_t)(p->count - p->head), &result));
  return result;
}

static napi_value Close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  pump_t *p = this_pump(env, info, &argc, NULL);
  if (p == NULL) return NULL;
  pump_close(p);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
      {"port", NULL, Port, NULL, NULL, NULL, napi_default, NULL},
      {"setPeer", NULL, SetPeer, NULL, NULL, NULL, napi_default, NULL},
      {"send", NULL, Send, NULL, NULL, NULL, napi_default, NULL},
      {"reset", NULL, Reset, NULL, NULL, NULL, napi_default, NULL},
      {"append", NULL, Append, NULL, NULL, NULL, napi_default, NULL},
      {"notifyWhenLeft", NULL, NotifyWhenLeft, NULL, NULL, NULL, napi_default, NULL},
      {"queued", NULL, Queued, NULL, NULL, NULL, napi_default, NULL},
      {"close", NULL, Close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  CHECK(napi_define_class(env, "TftpPump", NAPI_AUTO_LENGTH, New, NULL, sizeof methods / sizeof methods[0], methods, &cls));
  CHECK(napi_set_named_property(env, exports, "TftpPump", cls));
  return exports;
}

#else /* not Linux: the module loads without TftpPump; the server keeps its JS path. */

static napi_value Init(napi_env env, napi_value exports) {
  (void)env;
  (void)throw_type;
  (void)throw_errno;
  return exports;
}

#endif

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
