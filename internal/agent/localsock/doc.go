// Package localsock serves the agent's local APIs (the SPIFFE Workload API
// and Envoy's SDS) on a unix socket and says who is calling.
//
// The socket is the only thing between a workload's private key and every
// other process on the host, so Listen creates it mode 0600 inside a
// directory it creates mode 0700, and Credentials identifies each caller by
// the uid the kernel reports for the connection (SO_PEERCRED on Linux).
// Handlers call Authorize, which admits only the agent's own uid unless the
// operator configured others: on a shared host, file modes alone are not
// enough, since root-owned and same-group processes may still reach the
// socket, and a socket inherited by a container would be open to any uid in
// it.
package localsock
