// Package meshtest holds helpers for tests that talk to real things: a
// tiny CA issuing SPIFFE certificates, and TLS configurations built from it
// for loopback servers and clients. It is imported only from _test.go files.
package meshtest
