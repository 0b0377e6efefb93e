package echo

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// DefaultCallTimeout bounds one /call request, from dialing the outbound
// proxy to reading the last byte of the upstream body.
const DefaultCallTimeout = 10 * time.Second

// Config configures an echo Server. The zero value, but for Listen, is
// ready to use.
type Config struct {
	// Listen is the TCP address to serve on, e.g. "127.0.0.1:8080" or
	// "127.0.0.1:0" for any free port (see Server.Addr).
	Listen string
	// Name identifies this app in every echo answer ("name"); empty
	// means "echo".
	Name string
	// Client makes the /call requests. Nil means a client of the Server's
	// own whose transport takes its proxy from the environment
	// (http.ProxyFromEnvironment, so HTTP_PROXY sends calls through the
	// workload's outbound proxy) and keeps connections alive.
	Client *http.Client
	// CallTimeout bounds each /call request; zero means DefaultCallTimeout.
	CallTimeout time.Duration
	// Logger receives lifecycle events and, at debug level, failed calls;
	// nil discards them. Successful requests are never logged.
	Logger *slog.Logger
}

// Validate reports whether c can be used to build a Server.
func (c *Config) Validate() error {
	if c.Listen == "" {
		return errors.New("echo: listen address is required")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("echo: listen address %q: %w", c.Listen, err)
	}
	if c.CallTimeout < 0 {
		return fmt.Errorf("echo: negative call timeout %s", c.CallTimeout)
	}
	return nil
}

// defaultClient returns the client used when Config.Client is nil: it
// honours HTTP_PROXY/NO_PROXY and pools connections to the proxy, so a
// /call under load does not dial per request.
func defaultClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{
				Timeout:   5 * time.Second,
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: DefaultCallTimeout,
		},
		// Redirects are the caller's business: report the 3xx as it came.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
