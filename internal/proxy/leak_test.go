package proxy

import (
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// noLeaks fails t if goroutines or file descriptors it started outlive
// it. Call it first: its cleanup then runs after every other one (proxies
// stopped, apps and clients closed).
func noLeaks(t *testing.T) {
	t.Helper()
	// The runtime's network poller keeps descriptors for good once a
	// first socket exists: make sure it does before counting.
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	before := openFDs(t)
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		if err := goleak.Find(ignore); err != nil {
			t.Errorf("goroutines leaked: %v", err)
		}
		// A descriptor the other side closes is released by the
		// runtime shortly after: await it, within a bound.
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := openFDs(t)
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("file descriptors: %d before, %d after", before, n)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(ents)
}
