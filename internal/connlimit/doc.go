// Package connlimit bounds how many connections a server holds open, per
// source and in total, so that one client cannot take every file descriptor
// of the process: with ~20,000 idle TCP connections from one host, the
// control plane used to run out of descriptors, real CSRs timed out and its
// admin port went silent. A Listener wraps the server's net.Listener and
// closes a connection over either bound at once, before any handshake, so a
// refused connection costs one accept and one close. Time-outs for idle and
// half-open connections stay with the protocol server (gRPC's
// ConnectionTimeout and MaxConnectionIdle, net/http's ReadHeaderTimeout and
// IdleTimeout); this package only counts.
package connlimit
