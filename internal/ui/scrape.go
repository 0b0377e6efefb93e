package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/zmesh/zmesh/internal/registry"
)

// Defaults of ScraperConfig.
const (
	DefaultScrapeTimeout     = time.Second
	DefaultScrapeConcurrency = 8
	DefaultMaxMetricsBytes   = 4 << 20
)

// ScraperConfig configures a Scraper.
type ScraperConfig struct {
	Timeout     time.Duration // per proxy; default DefaultScrapeTimeout
	Concurrency int           // proxies read at once; default DefaultScrapeConcurrency
	MaxBytes    int64         // of one /metrics answer; default DefaultMaxMetricsBytes
	Now         func() time.Time
}

// Scraper reads proxies' admin /metrics. The addresses are what proxies
// registered, claims a proxy with a mesh certificate can make: a Scraper
// therefore reads only path /metrics, only on the host of the workload's
// own registered address, follows no redirect, uses no proxy, bounds time
// and size, and never shows what it read verbatim.
type Scraper struct {
	cfg    ScraperConfig
	client *http.Client
}

// NewScraper returns a Scraper for cfg.
func NewScraper(cfg ScraperConfig) *Scraper {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultScrapeTimeout
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultScrapeConcurrency
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxMetricsBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        10 * time.Second,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &Scraper{cfg: cfg, client: &http.Client{
		Transport:     tr,
		Timeout:       cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Close releases idle connections.
func (s *Scraper) Close() { s.client.CloseIdleConnections() }

// errNoAdmin and errOtherHost are the reasons a workload is not read.
var (
	errNoAdmin   = errors.New("its proxy reported no admin address")
	errOtherHost = errors.New("its admin address is not on the host of its workload address; not read")
)

// AdminTarget returns the URL of w's metrics, or why it is not read.
func AdminTarget(w registry.Workload) (string, error) {
	if w.AdminAddress == "" {
		return "", errNoAdmin
	}
	ah, _, err := net.SplitHostPort(w.AdminAddress)
	if err != nil {
		return "", errNoAdmin
	}
	wh, _, err := net.SplitHostPort(w.Address)
	if err != nil || wh != ah {
		return "", errOtherHost
	}
	return "http://" + w.AdminAddress + "/metrics", nil
}

// Scrape reads the metrics of every workload with a proxy, at most
// Concurrency at once, and returns the readings by workload key. It
// returns when every reading has finished or timed out.
func (s *Scraper) Scrape(ctx context.Context, ws []registry.Workload) map[string]Scrape {
	out := make(map[string]Scrape, len(ws))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.cfg.Concurrency)
	for _, w := range ws {
		if !w.HasProxy {
			continue
		}
		url, err := AdminTarget(w)
		if err != nil {
			mu.Lock()
			out[w.Key()] = Scrape{At: s.cfg.Now(), Err: err.Error()}
			mu.Unlock()
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			sample, err := s.read(ctx, url)
			sc := Scrape{At: s.cfg.Now(), Sample: sample}
			if err != nil {
				sc.Err = err.Error()
			}
			mu.Lock()
			out[w.Key()] = sc
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

func (s *Scraper) read(ctx context.Context, url string) (*Sample, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, errors.New("metrics: bad admin address")
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.client.Do(req)
	if err != nil {
		// The client's and the transport's own time-outs equal ctx's and
		// may fire first: a timing-out error is no answer in time too.
		var ne net.Error
		if ctx.Err() != nil || errors.As(err, &ne) && ne.Timeout() {
			return nil, errors.New("metrics: no answer in time")
		}
		return nil, errors.New("metrics: admin port unreachable")
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: admin port answered %d", resp.StatusCode)
	}
	body := io.LimitReader(resp.Body, s.cfg.MaxBytes+1)
	lr := &countingReader{r: body}
	sample, err := ParseMetrics(lr)
	if lr.n > s.cfg.MaxBytes {
		return nil, fmt.Errorf("metrics: answer larger than %d bytes", s.cfg.MaxBytes)
	}
	if err != nil {
		// The parser's message may quote what the proxy sent.
		return nil, errors.New("metrics: not Prometheus text")
	}
	return sample, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
