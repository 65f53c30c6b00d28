/* agent/original_dst.c: see original_dst.h. */
#include "agent/original_dst.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<linux/netfilter_ipv4.h>)
#include <linux/netfilter_ipv4.h>
#endif
#endif

/* The values are part of the kernel ABI (both 80); some libcs' headers lack them, and
 * <linux/netfilter_ipv6/ip6_tables.h> drags in the whole xtables API for one constant. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif
#ifndef SOL_IP
#define SOL_IP IPPROTO_IP
#endif
#ifndef SOL_IPV6
#define SOL_IPV6 IPPROTO_IPV6
#endif

static int local_addr(int fd, struct sockaddr_storage *out)
{
    socklen_t len = sizeof(*out);
    memset(out, 0, sizeof(*out));
    if (getsockname(fd, (struct sockaddr *)out, &len) != 0)
        return -errno;
    return 0;
}

/* Asks conntrack for the original destination (getsockopt into addr, `size` bytes).
 * Returns 1 when it answered; 0 when it does not track the connection (ENOENT) or is not in
 * the kernel at all (ENOPROTOOPT: nf_conntrack not loaded); either way nothing was NATed and
 * the local address is the answer. Otherwise a negative errno. */
static int ask_conntrack(int fd, int level, int optname, void *addr, socklen_t size)
{
    socklen_t len = size;
    if (getsockopt(fd, level, optname, addr, &len) == 0)
        return len == size ? 1 : -EINVAL;
    return errno == ENOENT || errno == ENOPROTOOPT ? 0 : -errno;
}

int weir_original_dst(uv_tcp_t *accepted, struct sockaddr_storage *out)
{
    uv_os_fd_t fd;
    int r = uv_fileno((const uv_handle_t *)accepted, &fd);
    if (r != 0)
        return r; /* libuv errors are negative errno values on Unix */

    struct sockaddr_storage local;
    r = local_addr(fd, &local);
    if (r != 0)
        return r;
    memset(out, 0, sizeof(*out));

    if (local.ss_family == AF_INET6) {
        const struct sockaddr_in6 *l6 = (const struct sockaddr_in6 *)&local;
        if (!IN6_IS_ADDR_V4MAPPED(&l6->sin6_addr)) {
            struct sockaddr_in6 dst;
            memset(&dst, 0, sizeof(dst));
            r = ask_conntrack(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &dst, sizeof(dst));
            if (r < 0)
                return r;
            if (r == 0)
                dst = *l6;
            dst.sin6_family = AF_INET6;
            memcpy(out, &dst, sizeof(dst));
            return 0;
        }
        /* A v4 client on a dual-stack listener: conntrack tracked it as IPv4, and the kernel
         * answers SOL_IP options on IPv6 TCP sockets from the IPv4 state. */
    } else if (local.ss_family != AF_INET) {
        return -EAFNOSUPPORT;
    }

    struct sockaddr_in dst;
    memset(&dst, 0, sizeof(dst));
    r = ask_conntrack(fd, SOL_IP, SO_ORIGINAL_DST, &dst, sizeof(dst));
    if (r < 0)
        return r;
    if (r == 0) {
        /* Untracked: the local address, given as plain IPv4 even when it is v4-mapped, as
         * conntrack's own answer would be. */
        memset(&dst, 0, sizeof(dst));
        if (local.ss_family == AF_INET) {
            dst = *(const struct sockaddr_in *)&local;
        } else {
            const struct sockaddr_in6 *m = (const struct sockaddr_in6 *)&local;
            dst.sin_port = m->sin6_port;
            memcpy(&dst.sin_addr, &m->sin6_addr.s6_addr[12], 4);
        }
    }
    dst.sin_family = AF_INET;
    memcpy(out, &dst, sizeof(dst));
    return 0;
}
