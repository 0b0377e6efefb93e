// Package jwksfetch fetches the documents RequestAuthentication needs from
// the network: JWKS key sets and OpenID discovery documents. It is kept
// apart from internal/authn so that the authentication decisions stay free
// of I/O; authn.JWKSCache takes a fetcher from its caller.
package jwksfetch

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"time"
)

// DefaultMaxBytes bounds a fetched JWKS or discovery document. Real key
// sets are a few KiB.
const DefaultMaxBytes = 1 << 20

// HTTP fetches documents over HTTP(S). It implements authn.Fetcher.
type HTTP struct {
	// Client performs the requests; nil means a client with a 10 s
	// overall timeout and TLS 1.2 or later. The per-fetch bound is the
	// context's deadline (the rule's timeout).
	Client *http.Client
	// MaxBytes bounds the response body; 0 means DefaultMaxBytes.
	MaxBytes int64
}

var defaultJWKSClient = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 5 * time.Second,
		MaxIdleConns:        10,
		IdleConnTimeout:     90 * time.Second,
	},
}

// Fetch is a GET that must answer 200 with a body no
// larger than MaxBytes.
func (f *HTTP) Fetch(ctx context.Context, uri string) ([]byte, error) {
	client := f.Client
	if client == nil {
		client = defaultJWKSClient
	}
	limit := f.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("status %s", resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return data, nil
}
