package kubelease_test

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zmesh/zmesh/internal/ca/kubelease"
	"github.com/zmesh/zmesh/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.StopShared()
	os.Exit(code)
}

// TestOneHolderAtATime runs two replicas for one Lease: only one works at
// any moment, and when it stops (releasing the Lease) the other takes over.
func TestOneHolderAtATime(t *testing.T) {
	cs := kubetest.Shared(t).Client(t)
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubelease"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var working, overlaps atomic.Int32
	started := make(chan string, 2)
	replica := func(ctx context.Context, name string) error {
		return kubelease.Run(ctx, kubelease.Config{
			Client: cs, Namespace: "kubelease", Name: "work", Identity: name,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
		}, func(ctx context.Context) {
			if working.Add(1) > 1 {
				overlaps.Add(1)
			}
			started <- name
			<-ctx.Done()
			working.Add(-1)
		})
	}
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() { errs[0] = replica(ctxA, "a") })
	wg.Go(func() { errs[1] = replica(ctxB, "b") })
	defer func() {
		stopA()
		stopB()
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
	}()

	var first string
	select {
	case first = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("no replica took the lease")
	}
	select {
	case other := <-started:
		t.Fatalf("%s started while %s held the lease", other, first)
	case <-time.After(time.Second):
	}
	if first == "a" {
		stopA()
	} else {
		stopB()
	}
	select {
	case second := <-started:
		if second == first {
			t.Fatalf("%s started again after stopping", second)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the other replica did not take over a released lease")
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d overlapping terms", n)
	}
}
