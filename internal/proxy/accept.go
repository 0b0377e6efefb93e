package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// acceptLoop accepts connections on ln and hands each to handle, which
// must not block, until ctx is done or ln is closed; then it returns nil.
// A failed Accept (out of file descriptors and the like) is logged and
// retried after a backoff that doubles up to a second, so that a listener
// under pressure keeps serving rather than stopping or spinning.
func acceptLoop(ctx context.Context, ln net.Listener, log *slog.Logger, side string, handle func(net.Conn)) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			log.Warn(side+" accept failed", "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		handle(c)
	}
}
