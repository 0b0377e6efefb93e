package proxy

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Drain takes the proxy out of service gracefully, as Envoy's drain does
// during Istio's terminationDrainDuration, and returns once the work in
// flight is done or ctx ends, whichever comes first:
//
//  1. /ready and the health listener's /healthz/ready answer 503
//     "draining" from now on, so whatever routes by readiness stops
//     sending.
//  2. The inbound listener closes: new mesh connections are refused —
//     unless a supervisor holds a copy of it to give the proxy's next
//     process (Config.Listen: zmesh up restarting the proxy), and then
//     they wait in its queue for that process.
//  3. Inbound requests in flight, TCP streams (mesh, plaintext, captured)
//     and upgraded connections (WebSocket) run to their end; keep-alive
//     connections are closed once idle and HTTP/2 connections get a
//     GOAWAY, so callers move to other endpoints.
//  4. Only then does the outbound side close the same way, its listener
//     included when it takes captured connections: an app that finishes
//     its requests may still call other services while doing so (Istio
//     drains inbound listeners only, for that reason). Its CONNECT
//     tunnels, captured TCP streams and upgraded connections are waited
//     for too.
//
// The HTTP servers' Shutdown (http1.Server's and http.Server's, see
// httpServer) waits for none of the streams (both forget a hijacked
// connection, and never see one that is not HTTP): each side tracks them
// in a streamSet, which Drain waits on.
//
// When ctx ends first, Drain closes every connection still open, HTTP or
// stream, on both sides, and returns ctx's error. Drain does not stop
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
		p.out.streams.closeAll()
	}
	if err != nil {
		p.log.Warn("drain time is up: open connections closed", "after", time.Since(start).Round(time.Millisecond), "err", err)
		return fmt.Errorf("proxy: drain: %w", err)
	}
	p.log.Info("drained", "after", time.Since(start).Round(time.Millisecond))
	return nil
}

// drainInbound waits for the inbound side's work in flight, its inbound
// listener already closed; when ctx ends first, it closes it all.
func (p *Proxy) drainInbound(ctx context.Context) error {
	in := p.in
	cut := func(err error) error {
		in.srv.Close()
		in.streams.closeAll()
		return err
	}
	// Run's accept loop closes in.conns once it has stopped accepting:
	// from then on in.wg, which counts every connection the loop took,
	// only counts down, so waiting on it is safe.
	select {
	case <-in.conns.done:
	case <-ctx.Done():
		return cut(ctx.Err())
	}
	// This goroutine ends when the last connection being admitted has
	// been handed over or is done with, at the latest once cut closes
	// them all.
	admitted := make(chan struct{})
	go func() {
		in.wg.Wait()
		close(admitted)
	}()
	if err := in.srv.Shutdown(ctx); err != nil {
		return cut(err)
	}
	if err := in.streams.wait(ctx); err != nil {
		return cut(err)
	}
	select {
	case <-admitted:
		return nil
	case <-ctx.Done():
		return cut(ctx.Err())
	}
}

// drainOutbound closes the outbound listener and waits for the app's
// requests and streams in flight; when ctx ends first, it closes them.
func (p *Proxy) drainOutbound(ctx context.Context) error {
	o := p.out
	if p.cfg.OriginalDst != nil {
		// The HTTP server serves the connections the accept loop hands
		// it, not this listener, which Shutdown therefore leaves open.
		p.outLn.Close()
	}
	if err := o.srv.Shutdown(ctx); err != nil {
		o.srv.Close()
		o.streams.closeAll()
		return err
	}
	if err := o.streams.wait(ctx); err != nil {
		o.streams.closeAll()
		return err
	}
	return nil
}

// Draining reports whether Drain has begun.
func (p *Proxy) Draining() bool { return p.lifecycle().draining.Load() }
