package controlplane

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/registry"
)

// TestRegistrationsAreSavedAtOnceThenInBatches: the first registration is
// on disk at once; a burst of a thousand is on disk within about a
// second, as one state rather than a thousand writes; what is registered
// last before shutdown is saved on the way out.
func TestRegistrationsAreSavedAtOnceThenInBatches(t *testing.T) {
	dir := t.TempDir()
	reg := registry.NewStore("cluster.local")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { saveRegistrations(ctx, dir, reg, log) })
	defer func() { cancel(); wg.Wait() }()

	upsert := func(i int) {
		t.Helper()
		w := registry.Workload{Name: fmt.Sprintf("w%d", i), Namespace: "ns", ServiceAccount: "sa", Identity: "spiffe://cluster.local/ns/ns/sa/sa"}
		if err := reg.Upsert(w); err != nil {
			t.Fatal(err)
		}
	}
	saved := func(n int, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for len(loadRegistrations(dir, log)) != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d registrations saved, want %d within %s", len(loadRegistrations(dir, log)), n, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	upsert(0)
	saved(1, 500*time.Millisecond)
	for i := 1; i <= 1000; i++ {
		upsert(i)
	}
	saved(1001, 3*time.Second)

	// The interval after that write has begun: a registration now is
	// written at shutdown at the latest.
	upsert(1001)
	cancel()
	wg.Wait()
	if n := len(loadRegistrations(dir, log)); n != 1002 {
		t.Errorf("%d registrations saved at shutdown, want 1002", n)
	}
}

// TestRegistrationsRoundTrip: what writeRegistrations writes, one
// workload at a time, loadRegistrations reads back whole.
func TestRegistrationsRoundTrip(t *testing.T) {
	full := registry.Workload{Name: "b", Namespace: "api", ServiceAccount: "b", Identity: "spiffe://cluster.local/ns/api/sa/b",
		Address: "127.0.0.1:15006", AdminAddress: "127.0.0.1:15020", HasProxy: true, Services: []string{"backend", "db"}, Labels: map[string]string{"app": "b", "v": "2"}}
	for _, ws := range [][]registry.Workload{
		nil,
		{full},
		{full, {Name: "a", Namespace: "web"}, {Name: "c", Namespace: "web", Address: "127.0.0.2:80", Services: []string{"c"}}},
	} {
		dir := t.TempDir()
		if err := writeRegistrations(dir, ws); err != nil {
			t.Fatal(err)
		}
		got := loadRegistrations(dir, slog.New(slog.DiscardHandler))
		if len(got) != len(ws) || (len(ws) > 0 && !reflect.DeepEqual(got, ws)) {
			t.Errorf("read back %+v, want %+v", got, ws)
		}
	}
}
