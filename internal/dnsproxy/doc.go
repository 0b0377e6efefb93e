// Package dnsproxy is the proxy's DNS server, Istio's DNS proxying: a
// captured app's DNS queries are redirected to it, it answers the mesh's
// names itself with their services' virtual addresses (so that the app
// connects to an address its proxy maps back to the service), and
// forwards every other question to the upstream resolvers.
//
// The proxy feeds it the services of each config push (Update); the name
// table is built once per push (table.go, pure) and swapped atomically.
package dnsproxy
