// Package extauthztest serves ext_authz providers on loopback for tests:
// the client's own, and the proxy's that run CUSTOM policies end to end.
// A test brings the authorizer (an authv3.AuthorizationServer that
// decides as the test needs); this package runs it over real gRPC.
package extauthztest

import (
	"net"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
)

// ServeGRPC serves Envoy's Authorization API with srv on a loopback
// port until t ends, and returns its address; opts are the server's
// (grpc.Creds for a provider behind mutual TLS).
func ServeGRPC(t testing.TB, srv authv3.AuthorizationServer, opts ...grpc.ServerOption) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, srv)
	done := make(chan struct{})
	go func() { defer close(done); gs.Serve(ln) }()
	t.Cleanup(func() { gs.Stop(); <-done })
	return ln.Addr().String()
}

// ClosedAddr returns a loopback address nothing listens on: a provider
// there is unreachable.
func ClosedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
