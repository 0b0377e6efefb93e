package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// drainPoll is how often Drain looks whether the last CONNECT tunnel has
// ended: tunnels are hijacked connections, which http.Server.Shutdown
// does not track, and their count has no channel to wait on.
const drainPoll = 20 * time.Millisecond

// Drain takes the proxy out of service gracefully, as Envoy's drain does
// during Istio's terminationDrainDuration, and returns once the work in
// flight is done or ctx ends, whichever comes first:
//
//  1. /ready answers 503 "draining" from now on, so whatever routes by
//     readiness stops sending.
//  2. The inbound listener closes: new mesh connections are refused.
//  3. Inbound requests in flight and inbound TCP streams run to their end;
//     keep-alive connections are closed once idle and HTTP/2 connections
//     get a GOAWAY, so callers move to other endpoints.
//  4. Only then does the outbound side close the same way: an app that
//     finishes its requests may still call other services while doing so
//     (Istio drains inbound listeners only, for that reason).
//
// When ctx ends first, Drain closes the HTTP connections and CONNECT
// tunnels still open and returns an error; inbound TCP streams still open
// are closed by Run when its context is cancelled. Drain does not stop
// Run: the caller cancels Run's context after Drain returns. It returns
// an error if the proxy is already draining.
func (p *Proxy) Drain(ctx context.Context) error {
	if !p.lifecycle().draining.CompareAndSwap(false, true) {
		return errors.New("proxy: already draining")
	}
	start := time.Now()
	p.log.Info("draining: readiness false, inbound listener closed")
	p.inLn.Close()
	err := p.drainInbound(ctx)
	if err == nil {
		err = p.drainOutbound(ctx)
	} else {
		p.out.srv.Close()
		p.out.closeTunnels()
	}
	if err != nil {
		p.log.Warn("drain time is up: open connections closed", "after", time.Since(start).Round(time.Millisecond), "err", err)
		return fmt.Errorf("proxy: drain: %w", err)
	}
	p.log.Info("drained", "after", time.Since(start).Round(time.Millisecond))
	return nil
}

// drainInbound waits for the inbound side's work in flight, its inbound
// listener already closed.
func (p *Proxy) drainInbound(ctx context.Context) error {
	// Run's accept loop closes in.conns once it has stopped accepting:
	// from then on in.wg, which counts every connection the loop took,
	// only counts down, so waiting on it is safe.
	select {
	case <-p.in.conns.done:
	case <-ctx.Done():
		p.in.srv.Close()
		return ctx.Err()
	}
	// This goroutine ends when the last inbound connection has ended, at
	// the latest when Run's context is cancelled, which closes them all.
	streams := make(chan struct{})
	go func() {
		p.in.wg.Wait()
		close(streams)
	}()
	if err := p.in.srv.Shutdown(ctx); err != nil {
		p.in.srv.Close()
		return err
	}
	select {
	case <-streams:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drainOutbound closes the outbound listener and waits for the app's
// requests and CONNECT tunnels in flight.
func (p *Proxy) drainOutbound(ctx context.Context) error {
	if err := p.out.srv.Shutdown(ctx); err != nil {
		p.out.srv.Close()
		p.out.closeTunnels()
		return err
	}
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for p.out.openTunnels() {
		select {
		case <-ctx.Done():
			p.out.closeTunnels()
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Draining reports whether Drain has begun.
func (p *Proxy) Draining() bool { return p.lifecycle().draining.Load() }

// openTunnels reports whether a CONNECT tunnel is open.
func (o *outbound) openTunnels() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.tunnels) > 0
}
