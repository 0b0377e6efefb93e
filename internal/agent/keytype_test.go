package agent_test

import (
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/zmesh/zmesh/internal/agent"
	"github.com/zmesh/zmesh/internal/agent/agenttest"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/ca/catest"
	"github.com/zmesh/zmesh/internal/certinfo"
)

// TestMixedKeyTypes runs a mesh with an RSA root and agents with ECDSA and
// RSA leaves, and makes TLS 1.3 mTLS connections between every pair.
func TestMixedKeyTypes(t *testing.T) {
	s := catest.Serve(t, catest.NewAuthority(t, ca.Config{KeyType: ca.KeyRSA2048}))
	if got := certinfo.KeyType(s.Authority.SigningCertificate().PublicKey); got != "RSA 2048" {
		t.Fatalf("root key = %s", got)
	}
	agents := map[string]*agent.Agent{
		"ECDSA P-256": agenttest.Start(t, s, "a", "ecdsa", agent.Config{}),
		"RSA 2048":    agenttest.Start(t, s, "b", "rsa2048", agent.Config{KeyType: agent.KeyRSA2048}),
		"RSA 3072":    agenttest.Start(t, s, "c", "rsa3072", agent.Config{KeyType: agent.KeyRSA3072}),
	}
	for want, a := range agents {
		svid, err := a.GetX509SVID()
		if err != nil {
			t.Fatal(err)
		}
		if got := certinfo.KeyType(svid.Certificates[0].PublicKey); got != want {
			t.Errorf("%s leaf key = %s, want %s", a.ID(), got, want)
		}
	}
	for sname, server := range agents {
		for cname, client := range agents {
			if server == client {
				continue
			}
			t.Run(cname+" to "+sname, func(t *testing.T) {
				if v := handshake(t, server, client); v != tls.VersionTLS13 {
					t.Errorf("TLS version %x, want 1.3", v)
				}
			})
		}
	}
}

// handshake makes one mTLS connection from client to server and returns
// its TLS version.
func handshake(t *testing.T, server, client *agent.Agent) uint16 {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer func() { lis.Close(); wg.Wait() }()
	srvCfg := tlsconfig.MTLSServerConfig(server, server, tlsconfig.AuthorizeID(client.ID()))
	srvCfg.MinVersion = tls.VersionTLS13
	wg.Go(func() {
		c, err := lis.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := tls.Server(c, srvCfg)
		if err := tc.Handshake(); err != nil {
			t.Errorf("server handshake: %v", err)
			return
		}
		_, _ = io.Copy(tc, tc)
	})
	cliCfg := tlsconfig.MTLSClientConfig(client, client, tlsconfig.AuthorizeID(server.ID()))
	cliCfg.MinVersion = tls.VersionTLS13
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", lis.Addr().String(), cliCfg)
	if err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(conn, buf); err != nil {
		t.Fatal(err)
	}
	return conn.ConnectionState().Version
}
