/*
 * pxeha_sockopt: the few Linux socket calls Node's dgram does not expose.
 *
 * A DHCP server listens on 0.0.0.0:67 because a DISCOVER is sent to 255.255.255.255 from
 * 0.0.0.0, and a socket bound to a unicast address never sees it. Such a socket cannot tell
 * which link a broadcast came in on, and its broadcast replies follow the default route. The
 * cure is one socket per interface, pinned with SO_BINDTODEVICE (socket(7)): the kernel then
 * delivers to it only what arrived on that device and routes everything it sends out of it.
 *
 * openUdpSocket() does the whole setup before bind(2), so there is no moment in which the
 * socket is bound but not yet pinned (a datagram from another link could land in it then), and
 * hands the descriptor to dgram's bind({ fd }). bindToDevice() pins a socket that is already
 * bound, for callers that keep dgram's own bind.
 *
 * setArpEntry() writes a neighbour entry with SIOCSARP (arp(7)). RFC 2131 §4.1 asks a server
 * to unicast an OFFER/ACK to chaddr + yiaddr when the client did not set the broadcast bit;
 * the client cannot answer ARP for an address it does not hold yet, so the entry must be
 * written first (ISC dhcpd does the same).
 *
 * Errors are thrown as JS Errors with `code` (errno name, e.g. "ENODEV"), `errno` and
 * `syscall`, the shape Node's own system errors have; src/dhcp/socket.ts wraps them.
 */
#define _GNU_SOURCE
#include <node_api.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#ifdef __linux__
#include <arpa/inet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#endif

#include "napi_check.h"

static const char *errno_name(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
#endif
  (void)err;
  return "EUNKNOWN";
}

/* Throws Error("<syscall> <what>: <strerror>") with code/errno/syscall set; returns NULL. */
static napi_value throw_errno(napi_env env, int err, const char *syscall, const char *what) {
  char message[256];
  snprintf(message, sizeof message, "%s%s%s: %s", syscall, what[0] ? " " : "", what, strerror(err));
  napi_value msg, code, error, errno_value, syscall_value;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok ||
      napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_error(env, code, msg, &error) != napi_ok ||
      napi_create_int32(env, -err, &errno_value) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) != napi_ok ||
      napi_set_named_property(env, error, "errno", errno_value) != napi_ok ||
      napi_set_named_property(env, error, "syscall", syscall_value) != napi_ok) {
    napi_throw_error(env, errno_name(err), message);
    return NULL;
  }
  napi_throw(env, error);
  return NULL;
}

static napi_value throw_type(napi_env env, const char *message) {
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

/* Reads argv[i] as a string into buf (NUL-terminated); false (with a TypeError thrown) if not. */
static int get_string(napi_env env, napi_value value, char *buf, size_t size, const char *name) {
  napi_valuetype type;
  size_t length = 0;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_string) {
    char message[96];
    snprintf(message, sizeof message, "%s must be a string", name);
    throw_type(env, message);
    return 0;
  }
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok || length + 1 > size) {
    char message[96];
    snprintf(message, sizeof message, "%s is too long (at most %zu bytes)", name, size - 1);
    throw_type(env, message);
    return 0;
  }
  napi_get_value_string_utf8(env, value, buf, size, &length);
  return 1;
}

static int get_int(napi_env env, napi_value value, int32_t *out, const char *name) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number ||
      napi_get_value_int32(env, value, out) != napi_ok) {
    char message[96];
    snprintf(message, sizeof message, "%s must be an integer", name);
    throw_type(env, message);
    return 0;
  }
  return 1;
}

static int get_bool(napi_env env, napi_value value, bool *out, const char *name) {
  if (napi_get_value_bool(env, value, out) != napi_ok) {
    char message[96];
    snprintf(message, sizeof message, "%s must be a boolean", name);
    throw_type(env, message);
    return 0;
  }
  return 1;
}

#ifdef __linux__

/* ifIndex(ifname: string): number — if_nametoindex(3); throws ENODEV if there is no such link. */
static napi_value IfIndex(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  char ifname[IF_NAMESIZE];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_string(env, argv[0], ifname, sizeof ifname, "ifname")) return NULL;
  unsigned int index = if_nametoindex(ifname);
  if (index == 0) return throw_errno(env, errno, "if_nametoindex", ifname);
  CHECK(napi_create_uint32(env, index, &result));
  return result;
}

/*
 * openUdpSocket(ifname: string, address: string, port: number, reuseAddr: boolean): number
 * An AF_INET/SOCK_DGRAM socket with SO_BINDTODEVICE and SO_BROADCAST set, then bound; returns
 * its descriptor (close-on-exec). SO_REUSEADDR lets several servers (or a test's client and
 * server) share the port; sockets pinned to different devices do not conflict without it.
 */
static napi_value OpenUdpSocket(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], result;
  char ifname[IF_NAMESIZE], address[INET_ADDRSTRLEN];
  int32_t port;
  bool reuse;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4) return throw_type(env, "openUdpSocket(ifname, address, port, reuseAddr)");
  if (!get_string(env, argv[0], ifname, sizeof ifname, "ifname") ||
      !get_string(env, argv[1], address, sizeof address, "address") ||
      !get_int(env, argv[2], &port, "port") || !get_bool(env, argv[3], &reuse, "reuseAddr")) {
    return NULL;
  }
  if (port < 0 || port > 65535) return throw_type(env, "port must be 0..65535");

  struct sockaddr_in sin;
  memset(&sin, 0, sizeof sin);
  sin.sin_family = AF_INET;
  sin.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, address, &sin.sin_addr) != 1) return throw_type(env, "address must be a dotted IPv4 address");

  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", "");
  int one = 1;
  const char *failed = NULL;
  if (reuse && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
    failed = "setsockopt(SO_REUSEADDR)";
  } else if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname)) < 0) {
    failed = "setsockopt(SO_BINDTODEVICE)";
  } else if (setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one) < 0) {
    failed = "setsockopt(SO_BROADCAST)";
  } else if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
    failed = "bind";
  }
  if (failed != NULL) {
    int err = errno;
    close(fd);
    char what[IF_NAMESIZE + INET_ADDRSTRLEN + 16];
    snprintf(what, sizeof what, "%s %s:%d", ifname, address, port);
    return throw_errno(env, err, failed, what);
  }
  CHECK(napi_create_int32(env, fd, &result));
  return result;
}

/* bindToDevice(fd: number, ifname: string): void — SO_BINDTODEVICE on an existing socket; "" unpins. */
static napi_value BindToDevice(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t fd;
  char ifname[IF_NAMESIZE];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !get_int(env, argv[0], &fd, "fd") || !get_string(env, argv[1], ifname, sizeof ifname, "ifname")) {
    return NULL;
  }
  if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, (socklen_t)strlen(ifname)) < 0) {
    return throw_errno(env, errno, "setsockopt(SO_BINDTODEVICE)", ifname);
  }
  return NULL;
}

/* boundDevice(fd: number): string — the device a socket is pinned to, "" if none. */
static napi_value BoundDevice(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int32_t fd;
  char ifname[IF_NAMESIZE + 1];
  socklen_t length = IF_NAMESIZE;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_int(env, argv[0], &fd, "fd")) return NULL;
  memset(ifname, 0, sizeof ifname);
  if (getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, ifname, &length) < 0) {
    return throw_errno(env, errno, "getsockopt(SO_BINDTODEVICE)", "");
  }
  CHECK(napi_create_string_utf8(env, ifname, strnlen(ifname, IF_NAMESIZE), &result));
  return result;
}

/* closeFd(fd: number): void — for a descriptor from openUdpSocket that dgram never adopted. */
static napi_value CloseFd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_int(env, argv[0], &fd, "fd")) return NULL;
  if (close(fd) < 0) return throw_errno(env, errno, "close", "");
  return NULL;
}

static int parse_mac(const char *text, unsigned char mac[6]) {
  unsigned int b[6];
  char tail;
  if (sscanf(text, "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6 &&
      sscanf(text, "%2x-%2x-%2x-%2x-%2x-%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6) {
    return 0;
  }
  for (int i = 0; i < 6; i++) mac[i] = (unsigned char)b[i];
  return 1;
}

/* Fills an arpreq for ip on ifname; false (TypeError thrown) on a bad address. */
static int fill_arpreq(napi_env env, struct arpreq *req, const char *ifname, const char *ip) {
  memset(req, 0, sizeof *req);
  struct sockaddr_in *pa = (struct sockaddr_in *)&req->arp_pa;
  pa->sin_family = AF_INET;
  if (inet_pton(AF_INET, ip, &pa->sin_addr) != 1) {
    throw_type(env, "ip must be a dotted IPv4 address");
    return 0;
  }
  snprintf(req->arp_dev, sizeof req->arp_dev, "%s", ifname);
  return 1;
}

static napi_value arp_ioctl(napi_env env, unsigned long request, const char *name, struct arpreq *req,
                            const char *what) {
  /* Any AF_INET socket carries the ioctl; the entry lands in this process's network namespace. */
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket", "");
  int rc = ioctl(fd, request, req);
  int err = errno;
  close(fd);
  if (rc < 0) return throw_errno(env, err, name, what);
  return NULL;
}

/*
 * setArpEntry(ifname: string, ip: string, mac: string): void — a complete, non-permanent
 * neighbour entry ip → mac on ifname (it ages out like a learned one).
 */
static napi_value SetArpEntry(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  char ifname[IF_NAMESIZE], ip[INET_ADDRSTRLEN], mac_text[32];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !get_string(env, argv[0], ifname, sizeof ifname, "ifname") ||
      !get_string(env, argv[1], ip, sizeof ip, "ip") || !get_string(env, argv[2], mac_text, sizeof mac_text, "mac")) {
    return NULL;
  }
  struct arpreq req;
  if (!fill_arpreq(env, &req, ifname, ip)) return NULL;
  unsigned char mac[6];
  if (!parse_mac(mac_text, mac)) return throw_type(env, "mac must look like 02:00:00:00:00:01");
  req.arp_ha.sa_family = ARPHRD_ETHER;
  memcpy(req.arp_ha.sa_data, mac, 6);
  req.arp_flags = ATF_COM;
  char what[IF_NAMESIZE + INET_ADDRSTRLEN + 40];
  snprintf(what, sizeof what, "%s %s -> %s", ifname, ip, mac_text);
  return arp_ioctl(env, SIOCSARP, "ioctl(SIOCSARP)", &req, what);
}

/* deleteArpEntry(ifname: string, ip: string): void */
static napi_value DeleteArpEntry(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  char ifname[IF_NAMESIZE], ip[INET_ADDRSTRLEN];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !get_string(env, argv[0], ifname, sizeof ifname, "ifname") ||
      !get_string(env, argv[1], ip, sizeof ip, "ip")) {
    return NULL;
  }
  struct arpreq req;
  if (!fill_arpreq(env, &req, ifname, ip)) return NULL;
  char what[IF_NAMESIZE + INET_ADDRSTRLEN + 4];
  snprintf(what, sizeof what, "%s %s", ifname, ip);
  return arp_ioctl(env, SIOCDARP, "ioctl(SIOCDARP)", &req, what);
}

#else /* not Linux: the module loads, every call fails with ENOTSUP. */

static napi_value Unsupported(napi_env env, napi_callback_info info) {
  (void)info;
  return throw_errno(env, ENOTSUP, "pxeha_sockopt", "(Linux only)");
}
#define IfIndex Unsupported
#define OpenUdpSocket Unsupported
#define BindToDevice Unsupported
#define BoundDevice Unsupported
#define CloseFd Unsupported
#define SetArpEntry Unsupported
#define DeleteArpEntry Unsupported

#endif

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"ifIndex", NULL, IfIndex, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openUdpSocket", NULL, OpenUdpSocket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bindToDevice", NULL, BindToDevice, NULL, NULL, NULL, napi_enumerable, NULL},
      {"boundDevice", NULL, BoundDevice, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, CloseFd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setArpEntry", NULL, SetArpEntry, NULL, NULL, NULL, napi_enumerable, NULL},
      {"deleteArpEntry", NULL, DeleteArpEntry, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
