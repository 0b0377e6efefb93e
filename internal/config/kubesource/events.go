package kubesource

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Event fields of a rejection, as `kubectl describe` and `kubectl events`
// show them.
const (
	EventReason    = "Rejected"
	EventComponent = "zmesh-controlplane"
	// maxEventMessage bounds an Event's message: a validation error lists
	// every problem, and Events are not the place for kilobytes.
	maxEventMessage = 1024
	// eventQueue bounds the rejections waiting to be written; past it they
	// are logged (as they already are) but get no Event.
	eventQueue = 256
)

// eventSink writes a Warning Event on each rejected object, from its own
// goroutine, so that a slow apiserver never holds up the informers.
type eventSink struct {
	kube kubernetes.Interface
	now  func() time.Time
	log  *slog.Logger
	ch   chan *corev1.Event
}

func newEventSink(kube kubernetes.Interface, now func() time.Time, log *slog.Logger) *eventSink {
	return &eventSink{kube: kube, now: now, log: log, ch: make(chan *corev1.Event, eventQueue)}
}

// rejected queues the Event of one rejection. It never blocks.
func (e *eventSink) rejected(apiVersion string, r Rejection) {
	msg := "zmesh rejected this object; it is not in force (its last valid version, if any, stays): " + r.Err.Error()
	if len(msg) > maxEventMessage {
		msg = msg[:maxEventMessage-3] + "..."
	}
	now := metav1.NewTime(e.now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", r.Name, now.UnixNano()),
			Namespace: r.Namespace,
		},
		InvolvedObject: corev1.ObjectReference{
			APIVersion:      apiVersion,
			Kind:            string(r.Kind),
			Namespace:       r.Namespace,
			Name:            r.Name,
			UID:             types.UID(r.uid),
			ResourceVersion: r.version,
		},
		Reason:              EventReason,
		Message:             msg,
		Type:                corev1.EventTypeWarning,
		Source:              corev1.EventSource{Component: EventComponent},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: "zmesh.dev/" + EventComponent,
	}
	select {
	case e.ch <- ev:
	default:
		e.log.Warn("too many rejections queued; no Event for this one", "kind", r.Kind, "namespace", r.Namespace, "name", r.Name)
	}
}

// run writes queued Events until ctx is done.
func (e *eventSink) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-e.ch:
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := e.kube.CoreV1().Events(ev.Namespace).Create(cctx, ev, metav1.CreateOptions{})
			cancel()
			if err != nil && ctx.Err() == nil {
				e.log.Warn("cannot record Event", "kind", ev.InvolvedObject.Kind, "namespace", ev.Namespace, "name", ev.InvolvedObject.Name, "err", err)
			}
		}
	}
}
