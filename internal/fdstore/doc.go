// Package fdstore keeps a process's listening sockets open across its
// restarts, so that restarting a proxy refuses no connection.
//
// A listening socket lives as long as any process holds a descriptor of
// it, and the connections the kernel completes meanwhile wait in its
// accept queue. So the supervisor (`zmesh up`) holds a copy of every
// listener its child binds — the child sends each one over a Unix socket
// the supervisor gave it (SCM_RIGHTS) — and hands them to the next child
// it starts, as systemd's file descriptor store and socket activation do.
// Between the old child closing its listeners and the new one accepting,
// a caller's connect still succeeds: its handshake waits, instead of
// failing with "connection refused", which is what a restart cost before
// (every caller of a single-instance server saw 503s for the ~0.5 s the
// proxy was away).
//
// The child side (Listeners) reads systemd's protocol — LISTEN_FDS and
// LISTEN_FDNAMES, descriptors from 3 on, LISTEN_PID when set — so a proxy
// run from a systemd socket unit gets the same, plus ZMESH_FDSTORE_FD,
// the socket to send what it binds to. The supervisor cannot set
// LISTEN_PID (Go starts a child with fork and exec at once), so an unset
// LISTEN_PID is accepted; the child removes the variables from its
// environment once read, so that nothing it runs inherits them. An
// inherited descriptor is used only if it is a listening TCP socket bound
// to the address asked for: anything else is left alone, and the address
// is bound anew.
//
// The supervisor side (Store) gives every start the listeners it holds and
// a fresh store socket, keeps what the child sends (a later listener of
// the same name replaces the earlier one), and closes everything once the
// supervisor is done: then a stopped proxy's listeners close with it and
// callers are refused, and move on, as before.
package fdstore
