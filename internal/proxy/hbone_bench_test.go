package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"golang.org/x/net/http2"

	"github.com/zmesh/zmesh/internal/meshtest"
)

// The HBONE benchmarks measure, outside the proxy's data path, what a
// short TCP stream between two proxies costs when each stream is its own
// mutual TLS connection (zmesh's TCP over mTLS today) against when every
// stream is an HTTP/2 CONNECT on one long-lived mTLS connection (Istio's
// HBONE, on 15008). Both ends use the proxies' TLS settings: SPIFFE
// certificates (ECDSA P-256) from a mesh CA, TLS 1.3, the peer's ID
// checked. Each stream sends hboneMsg bytes and reads them back echoed,
// over loopback; ns/op is per stream, and cpu-µs/op the CPU time both
// ends (this process) spent per stream, which a loaded machine inflates
// less than the wall time.
//
// par=N runs N×GOMAXPROCS streams at a time (b.SetParallelism).
//
//	go test -run '^$' -bench HBONE -benchmem ./internal/proxy/

const hboneMsg = 1 << 10

type hboneEnds struct {
	client, server *tls.Config
}

// hboneTLS returns the client's and server's TLS settings, as the proxies
// build them: mutual, TLS 1.3, peer IDs verified.
func hboneTLS(b *testing.B) hboneEnds {
	ca := meshtest.NewCA(b, testTD)
	cli := newTestCerts(b, ca, "web", "frontend")
	srv := newTestCerts(b, ca, "api", "backend")
	serverID := spiffeid.RequireFromString(srv.uri)
	client := tlsconfig.MTLSClientConfig(cli, cli, tlsconfig.AuthorizeID(serverID))
	server := tlsconfig.MTLSServerConfig(srv, srv, tlsconfig.AuthorizeMemberOf(spiffeid.RequireTrustDomainFromString(testTD)))
	client.MinVersion, server.MinVersion = tls.VersionTLS13, tls.VersionTLS13
	return hboneEnds{client: client, server: server}
}

// echoTLS serves conf on a loopback listener, echoing each connection,
// and counts the connections it accepted.
func echoTLS(b *testing.B, conf *tls.Config) (string, *atomic.Int64) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	conns := new(atomic.Int64)
	b.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				buf := make([]byte, hboneMsg)
				if _, err := io.ReadFull(c, buf); err == nil {
					c.Write(buf)
				}
			})
		}
	})
	return ln.Addr().String(), conns
}

// mtlsStream is one stream as its own mutual TLS connection.
func mtlsStream(addr string, conf *tls.Config, msg, buf []byte) error {
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		return err
	}
	_, err = io.ReadFull(c, buf)
	return err
}

// connectServer serves HTTP/2 over conf, each CONNECT stream echoed, and
// counts the connections it accepted.
func connectServer(b *testing.B, conf *tls.Config) (string, *atomic.Int64) {
	conf = conf.Clone()
	conf.NextProtos = []string{http2.NextProtoTLS}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		rc.Flush()
		buf := make([]byte, hboneMsg)
		if _, err := io.ReadFull(r.Body, buf); err == nil {
			w.Write(buf)
			rc.Flush()
		}
	})}
	h2 := &http2.Server{MaxConcurrentStreams: 1000}
	var wg sync.WaitGroup
	conns := new(atomic.Int64)
	b.Cleanup(func() { ln.Close(); srv.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Go(func() {
				// http2 checks the negotiated TLS version and ALPN, so
				// the handshake comes first.
				if err := c.(*tls.Conn).Handshake(); err != nil {
					c.Close()
					return
				}
				h2.ServeConn(c, &http2.ServeConnOpts{Handler: srv.Handler, BaseConfig: srv})
			})
		}
	})
	return ln.Addr().String(), conns
}

// connectStream is one stream as an HTTP/2 CONNECT on tr's connection.
func connectStream(tr *http2.Transport, addr string, msg, buf []byte) error {
	pr, pw := io.Pipe()
	req := (&http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Scheme: "https", Host: addr},
		Host:   "backend.api.svc.cluster.local:9000",
		Header: http.Header{},
		Body:   pr,
	}).WithContext(context.Background())
	resp, err := tr.RoundTrip(req)
	if err != nil {
		pw.Close()
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		pw.Close()
		return errors.New(resp.Status)
	}
	if _, err := pw.Write(msg); err != nil {
		return err
	}
	_, err = io.ReadFull(resp.Body, buf)
	pw.Close()
	return err
}

func BenchmarkHBONE(b *testing.B) {
	ends := hboneTLS(b)
	msg := bytes.Repeat([]byte("z"), hboneMsg)
	check := func(b *testing.B, buf []byte) {
		if !bytes.Equal(buf, msg) {
			b.Fatal("echo differs")
		}
	}

	b.Run("mtls-per-stream", func(b *testing.B) {
		addr, conns := echoTLS(b, ends.server)
		buf := make([]byte, hboneMsg)
		b.ReportAllocs()
		cpu := cpuTime()
		for b.Loop() {
			if err := mtlsStream(addr, ends.client, msg, buf); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu)
		check(b, buf)
		b.ReportMetric(float64(conns.Load()), "conns")
	})
	b.Run("mtls-per-stream-resumed", func(b *testing.B) {
		// TLS 1.3 session resumption skips the certificate exchange and
		// signatures but still costs a connection and an ECDHE.
		addr, conns := echoTLS(b, ends.server)
		conf := ends.client.Clone()
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(64)
		buf := make([]byte, hboneMsg)
		b.ReportAllocs()
		cpu := cpuTime()
		for b.Loop() {
			if err := mtlsStream(addr, conf, msg, buf); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu)
		check(b, buf)
		b.ReportMetric(float64(conns.Load()), "conns")
	})
	for _, par := range []int{1, 16} {
		b.Run("h2-connect-one-connection/par="+strconv.Itoa(par), func(b *testing.B) {
			addr, conns := connectServer(b, ends.server)
			conf := ends.client.Clone()
			conf.NextProtos = []string{http2.NextProtoTLS}
			tr := &http2.Transport{TLSClientConfig: conf, StrictMaxConcurrentStreams: true}
			b.Cleanup(tr.CloseIdleConnections)
			// The connection is set up before timing, as HBONE's is
			// long-lived.
			if err := connectStream(tr, addr, msg, make([]byte, hboneMsg)); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			cpu := cpuTime()
			b.SetParallelism(par)
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, hboneMsg)
				for pb.Next() {
					if err := connectStream(tr, addr, msg, buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportCPU(b, cpu)
			b.ReportMetric(float64(conns.Load()), "conns")
		})
	}
	b.Run("mtls-per-stream/par=16", func(b *testing.B) {
		addr, conns := echoTLS(b, ends.server)
		b.ReportAllocs()
		cpu := cpuTime()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, hboneMsg)
			for pb.Next() {
				if err := mtlsStream(addr, ends.client, msg, buf); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportCPU(b, cpu)
		b.ReportMetric(float64(conns.Load()), "conns")
	})
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time used since start per iteration.
func reportCPU(b *testing.B, start time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
	}
}
