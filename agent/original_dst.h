/* agent/original_dst.h: where a redirected connection was really going (SO_ORIGINAL_DST).
 *
 * `weir iptables` REDIRECTs a pod's outbound TCP to 15001 and its inbound TCP to 15006; the
 * kernel rewrites the destination, and conntrack remembers the original one. This asks for it,
 * as Envoy's original_dst listener filter does (istio-semantics.md 6.3):
 * getsockopt(SOL_IP, SO_ORIGINAL_DST) for IPv4 (also on an IPv6 socket carrying a v4-mapped
 * connection) and getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST) for IPv6.
 *
 * A connection that was not redirected has no other destination than the local address:
 * conntrack then reports the local address itself, and when conntrack does not track the
 * connection at all (no nat rules were ever loaded in the namespace: ENOENT; nf_conntrack not
 * in the kernel: ENOPROTOOPT) this falls back to getsockname(), which is the same answer (with
 * TPROXY instead of REDIRECT the local address is the original destination too, as Envoy
 * assumes). So a client that connects straight to <pod ip>:15006 gets <pod ip>:15006 back,
 * and one from another pod to <pod ip>:15001 arrives on 15006 (PREROUTING captures it) with
 * original port 15001. The caller compares the original port with the capture ports (15001,
 * 15006) to recognise such direct connections, and refuses them as Istio does: forwarding one
 * would send it back into a capture listener, forever.
 *
 * Owns nothing; the result is written into the caller's storage. */
#ifndef WEIR_ORIGINAL_DST_H
#define WEIR_ORIGINAL_DST_H

#include <sys/socket.h>

#include <uv.h>

/* Fills *out with the original destination of an accepted connection: a sockaddr_in for IPv4
 * (including v4-mapped connections on an IPv6 listener), a sockaddr_in6 for IPv6. Returns 0 or
 * a negative errno (-EBADF when the handle has no socket, -EAFNOSUPPORT for other families,
 * -EINVAL for an answer of the wrong size, or what getsockopt/getsockname failed with).
 * Call it once, right after uv_accept(): it is two system calls. */
int weir_original_dst(uv_tcp_t *accepted, struct sockaddr_storage *out);

#endif
