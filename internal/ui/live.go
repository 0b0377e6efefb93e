package ui

import (
	"context"
	"sync"
	"time"
)

// LiveConfig configures a Live.
type LiveConfig struct {
	// Inputs returns the control plane's side of the inputs (everything
	// but the readings and Now).
	Inputs  func() Inputs
	Scraper *Scraper
	// MinInterval is the least time between two readings of the proxies,
	// whatever the number of viewers; default one second.
	MinInterval time.Duration
	Now         func() time.Time
}

// Live builds Models on demand: the proxies are read only when a Model is
// asked for (someone views the page), at most once per MinInterval, and
// the reading before the latest is kept to compute rates. No goroutine
// outlives a call.
type Live struct {
	cfg LiveConfig

	mu     sync.Mutex // held while reading, so viewers share one reading
	last   *Model
	lastAt time.Time
	cur    map[string]Scrape
	prev   map[string]Scrape
}

// NewLive returns a Live for cfg.
func NewLive(cfg LiveConfig) *Live {
	if cfg.MinInterval <= 0 {
		cfg.MinInterval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Live{cfg: cfg}
}

// Model returns the current Model, reading the proxies unless a reading
// younger than MinInterval exists.
func (l *Live) Model(ctx context.Context) *Model {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	if l.last != nil && now.Sub(l.lastAt) < l.cfg.MinInterval {
		return l.last
	}
	in := l.cfg.Inputs()
	// Not cancelled with the asking request: the reading is shared with
	// every viewer for MinInterval, and the Scraper bounds its time.
	readings := l.cfg.Scraper.Scrape(context.WithoutCancel(ctx), in.Workloads)
	// Rates are over the latest successful reading of each proxy before
	// this one.
	next := map[string]Scrape{}
	for k, s := range l.prev {
		next[k] = s
	}
	for k, s := range l.cur {
		if s.Sample != nil {
			next[k] = s
		}
	}
	l.prev, l.cur = next, readings
	in.Now, in.Scrapes, in.Previous = now, l.cur, l.prev
	l.last, l.lastAt = Build(in), now
	return l.last
}
