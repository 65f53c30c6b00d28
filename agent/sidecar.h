/* agent/sidecar.h: the `weir sidecar` role: the per-pod proxy.
 *
 * iptables (`weir iptables`) sends the pod's outbound TCP to the outbound port (15001) and its
 * inbound TCP to the inbound port (15006). Outbound connections are routed by the original
 * destination's port and the Host header through the VirtualServices that apply to the mesh;
 * inbound connections go to the app on 127.0.0.1:<original port>, from 127.0.0.6. Thin: the
 * work is the shared proxy path configured from a sidecar snapshot. */
#ifndef WEIR_SIDECAR_H
#define WEIR_SIDECAR_H

/* Runs the sidecar until SIGTERM/SIGINT. argv[first..] are its options. Returns the exit
 * status. */
int weir_sidecar_main(int argc, char **argv, int first);

#endif
