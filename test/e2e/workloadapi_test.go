package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// TestWorkloadAPI points go-spiffe's own Workload API client at the socket
// `zmesh up` printed for frontend: it gets the frontend's SVID and the mesh
// bundle, and with them a SPIFFE-aware app makes an mTLS connection to the
// backend's proxy, which authorizes it as the frontend.
func TestWorkloadAPI(t *testing.T) {
	m := startMesh(t)
	frontend, backend := m.w("web/frontend"), m.w("api/backend")
	if frontend.workloadAPI == "" {
		t.Fatal("zmesh up printed no workloadapi= field")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(frontend.workloadAPI)))
	if err != nil {
		t.Fatalf("workload API at %s: %v", frontend.workloadAPI, err)
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if got := svid.ID.String(); got != "spiffe://cluster.local/ns/web/sa/frontend" {
		t.Fatalf("SVID %s, want the frontend's", got)
	}

	backendID := spiffeid.RequireFromString("spiffe://cluster.local/ns/api/sa/backend")
	tc := tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(backendID))
	tc.MinVersion = tls.VersionTLS13
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: tc,
		DialContext:     (&net.Dialer{}).DialContext,
	}}
	resp, err := client.Get("https://" + backend.inbound + "/from-spiffe-app")
	if err != nil {
		t.Fatalf("mTLS to backend's proxy with the fetched SVID: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("backend answered %d to the frontend's SVID, want 200 (the policy allows frontend)", resp.StatusCode)
	}
}
