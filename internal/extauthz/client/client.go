package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Defaults of an ext_authz provider.
const (
	// grpcIdle is how long an unused provider connection stays open.
	grpcIdle = 5 * time.Minute
	// maxResponse bounds a provider's answer.
	maxResponse = 1 << 20
)

// errClosed is a check after Close. Its words are the proxy's, whose
// shutdown closes the Client, as operators read them in its log.
var errClosed = errors.New("proxy is shutting down")

// Config is the one place a Client is configured: what it takes from the
// workload it checks requests for. The zero value asks plaintext
// providers only, logs nothing and reads the machine's clock.
type Config struct {
	// Logger gets a warning for each check a provider did not answer;
	// nil discards them.
	Logger *slog.Logger
	// Now is the clock of the request time a CheckRequest carries; nil
	// is time.Now.
	Now func() time.Time
	// Principal is the workload's SPIFFE ID, the destination principal
	// of every CheckRequest.
	Principal string
	// TLS returns a new client configuration for a provider endpoint
	// whose proxy must prove id: the workload's certificate and secure
	// naming, as for any mesh endpoint. Nil: such an endpoint cannot be
	// asked, and its checks fail.
	TLS func(id spiffeid.ID) *tls.Config
	// Dial opens the connections to HTTP providers; nil is net/http's
	// dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// IdleTimeout, HandshakeTimeout and MaxHeaderBytes bound the
	// connections to HTTP providers (the transport's IdleConnTimeout,
	// TLSHandshakeTimeout and MaxResponseHeaderBytes); zero is net/http's
	// default.
	IdleTimeout      time.Duration
	HandshakeTimeout time.Duration
	MaxHeaderBytes   int64
}

// Client holds the connections to ext_authz providers, one gRPC
// connection or pooled HTTP client per address and expected identity,
// shared by all requests. It is safe for concurrent use; its owner calls
// Close once it makes no more checks.
type Client struct {
	cfg    Config
	log    *slog.Logger
	now    func() time.Time
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	https  map[string]*http.Client
	closed bool
}

// New returns a Client configured by cfg. It connects to nothing until a
// check needs a provider.
func New(cfg Config) *Client {
	c := &Client{cfg: cfg, log: cfg.Logger, now: cfg.Now, conns: map[string]*grpc.ClientConn{}, https: map[string]*http.Client{}}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// connKey names the connection to addr for a provider that must prove id
// (plaintext when id is zero).
func connKey(addr string, id spiffeid.ID) string {
	if id.IsZero() {
		return "plain|" + addr
	}
	return id.String() + "|" + addr
}

// tlsConfig is Config.TLS's configuration for id, or an error without it.
func (c *Client) tlsConfig(id spiffeid.ID) (*tls.Config, error) {
	if c.cfg.TLS == nil {
		return nil, fmt.Errorf("no mutual TLS to reach a provider endpoint that is %s", id)
	}
	return c.cfg.TLS(id), nil
}

// grpcClient returns the Authorization client for addr: mutual TLS
// expecting id when id is set (a mesh endpoint with a proxy), plaintext
// otherwise.
func (c *Client) grpcClient(addr string, id spiffeid.ID) (authv3.AuthorizationClient, error) {
	key := connKey(addr, id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if cc, ok := c.conns[key]; ok {
		return authv3.NewAuthorizationClient(cc), nil
	}
	creds := insecure.NewCredentials()
	if !id.IsZero() {
		conf, err := c.tlsConfig(id)
		if err != nil {
			return nil, err
		}
		creds = credentials.NewTLS(conf)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithIdleTimeout(grpcIdle),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponse)),
	)
	if err != nil {
		return nil, err
	}
	c.conns[key] = cc
	return authv3.NewAuthorizationClient(cc), nil
}

// httpClient returns the pooled HTTP client for addr: HTTP/2 over mutual
// TLS expecting id when id is set (a mesh endpoint with a proxy),
// plaintext HTTP/1.1 otherwise. Redirects are answers to pass on (an
// authorizer sending the client to its login page), never followed.
func (c *Client) httpClient(addr string, id spiffeid.ID) (*http.Client, error) {
	key := connKey(addr, id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	if hc, ok := c.https[key]; ok {
		return hc, nil
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            c.cfg.Dial,
		MaxIdleConnsPerHost:    httpIdleConns,
		IdleConnTimeout:        c.cfg.IdleTimeout,
		DisableCompression:     true, // the body is passed on as the authorizer sent it
		MaxResponseHeaderBytes: c.cfg.MaxHeaderBytes,
	}
	if !id.IsZero() {
		conf, err := c.tlsConfig(id)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = conf
		tr.TLSHandshakeTimeout = c.cfg.HandshakeTimeout
		tr.ForceAttemptHTTP2 = true
	}
	hc := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.https[key] = hc
	return hc, nil
}

// Close closes every provider connection; later checks fail (and
// failOpen settles them). An HTTP check still in flight keeps its
// connection until it ends (see closeIfShutDown).
func (c *Client) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for k, cc := range c.conns {
		cc.Close()
		delete(c.conns, k)
	}
	for k, hc := range c.https {
		hc.CloseIdleConnections()
		delete(c.https, k)
	}
}

// closeIfShutDown closes hc's idle connections when the Client was
// closed while hc was checking a request (a proxy's shutdown past its
// grace period does not wait for handlers): Close could not reach the
// connection then, and it would otherwise outlive the proxy until its
// idle time-out.
func (c *Client) closeIfShutDown(hc *http.Client) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		hc.CloseIdleConnections()
	}
}
