/* gateway/gateway.h: the `weir gateway` role: the edge ingress gateway.
 *
 * Listens on the port of every Gateway server whose selector matches --labels, and routes
 * each request by the VirtualServices bound to those Gateways. Thin: everything it does is
 * the shared proxy path, configured from a gateway snapshot. */
#ifndef WEIR_GATEWAY_H
#define WEIR_GATEWAY_H

/* Runs the gateway until SIGTERM/SIGINT. argv[first..] are its options. Returns the process
 * exit status. */
int weir_gateway_main(int argc, char **argv, int first);

#endif
