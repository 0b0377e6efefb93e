package kubesource

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/zmesh/zmesh/internal/xds"
)

// CredentialsConfig configures Credentials.
type CredentialsConfig struct {
	// REST reaches the cluster. Required.
	REST *rest.Config
	// Publish receives every credential read and accepted, sorted by
	// key, whenever one is added, changed or removed, or Want changes
	// the set. It is called from one goroutine at a time and must not
	// block for long. Required.
	Publish func([]xds.Credential)
	// Logger receives one line per Secret refused or accepted again.
	// Nil discards logs.
	Logger *slog.Logger
}

// Credentials reads the Secrets that gateways serve TLS with, and only
// those: each wanted Secret (Want) is watched on its own, by namespace
// and a metadata.name field selector, so the control plane never lists,
// caches or holds a key of a Secret no Gateway names. A Secret that is
// not a usable credential is left out (logged): the gateway then has
// none for that name and refuses TLS handshakes for its server only.
type Credentials struct {
	cfg  CredentialsConfig
	kube kubernetes.Interface
	log  *slog.Logger

	want chan []xds.CredentialRef // capacity 1: the latest set

	mu      sync.Mutex
	watches map[string]*secretWatch // by NAMESPACE/NAME
	values  map[string]xds.Credential
	refused map[string]string // by key: the last refusal logged
}

// secretWatch is the informer of one Secret.
type secretWatch struct {
	ref  xds.CredentialRef
	stop chan struct{}
	done chan struct{}
}

// NewCredentials returns a Credentials for cfg. It contacts nothing and
// starts no goroutine: Run does.
func NewCredentials(cfg CredentialsConfig) (*Credentials, error) {
	if cfg.REST == nil || cfg.Publish == nil {
		return nil, errors.New("kubesource: credentials: REST and Publish are required")
	}
	rc := rest.CopyConfig(cfg.REST)
	if rc.UserAgent == "" {
		rc.UserAgent = "zmesh-controlplane"
	}
	kube, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubesource: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Credentials{
		cfg: cfg, kube: kube, log: log.With("source", "kubernetes"),
		want:    make(chan []xds.CredentialRef, 1),
		watches: map[string]*secretWatch{},
		values:  map[string]xds.Credential{},
		refused: map[string]string{},
	}, nil
}

// Want replaces the set of Secrets to read (xds/server's
// WantCredentials). It does not block.
func (c *Credentials) Want(refs []xds.CredentialRef) {
	refs = append([]xds.CredentialRef(nil), refs...)
	for {
		select {
		case c.want <- refs:
			return
		default:
		}
		select {
		case <-c.want:
		default:
		}
	}
}

// Run follows the wanted Secrets until ctx is done, then stops every
// watch.
func (c *Credentials) Run(ctx context.Context) error {
	defer c.stopAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case refs := <-c.want:
			c.reconcile(refs)
		}
	}
}

// reconcile starts the watches refs add and stops those they drop,
// publishing without the dropped Secrets.
func (c *Credentials) reconcile(refs []xds.CredentialRef) {
	keep := map[string]xds.CredentialRef{}
	for _, r := range refs {
		keep[r.Key()] = r
	}
	c.mu.Lock()
	var stopped []*secretWatch
	for key, w := range c.watches {
		if r, ok := keep[key]; !ok || r.Use != w.ref.Use {
			stopped = append(stopped, w)
			delete(c.watches, key)
			delete(c.values, key)
			delete(c.refused, key)
		}
	}
	var started []*secretWatch
	for key, r := range keep {
		if c.watches[key] == nil {
			w := &secretWatch{ref: r, stop: make(chan struct{}), done: make(chan struct{})}
			c.watches[key] = w
			started = append(started, w)
		}
	}
	c.mu.Unlock()
	for _, w := range stopped {
		close(w.stop)
		<-w.done
	}
	for _, w := range started {
		go c.watch(w)
	}
	if len(stopped) > 0 {
		c.publish()
	}
}

func (c *Credentials) stopAll() {
	c.mu.Lock()
	ws := make([]*secretWatch, 0, len(c.watches))
	for key, w := range c.watches {
		ws = append(ws, w)
		delete(c.watches, key)
	}
	c.mu.Unlock()
	for _, w := range ws {
		close(w.stop)
		<-w.done
	}
}

// watch runs the informer of one Secret until w.stop is closed: a list
// and watch of its namespace restricted to its name.
func (c *Credentials) watch(w *secretWatch) {
	defer close(w.done)
	factory := informers.NewSharedInformerFactoryWithOptions(c.kube, 0,
		informers.WithNamespace(w.ref.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", w.ref.Name).String()
		}))
	inf := factory.Core().V1().Secrets().Informer()
	key := w.ref.Key()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.update(w, obj) },
		UpdateFunc: func(_, obj any) { c.update(w, obj) },
		DeleteFunc: func(any) { c.set(w, nil, "") },
	})
	if err != nil {
		c.log.Error("cannot watch gateway credential", "secret", key, "error", err)
		return
	}
	factory.Start(w.stop)
	<-w.stop
	factory.Shutdown()
}

// update reads a Secret event of w.
func (c *Credentials) update(w *secretWatch, obj any) {
	sec, ok := obj.(*corev1.Secret)
	if !ok || sec.Name != w.ref.Name || sec.Namespace != w.ref.Namespace {
		return
	}
	cred, err := ParseCredential(sec.Namespace, sec.Name, sec.Data, w.ref.Use)
	if err != nil {
		c.set(w, nil, err.Error())
		return
	}
	c.set(w, &cred, "")
}

// set records w's credential (nil: none, refused with why when why is
// not empty) and publishes. Events of a watch already stopped are
// dropped.
func (c *Credentials) set(w *secretWatch, cred *xds.Credential, why string) {
	key := w.ref.Key()
	c.mu.Lock()
	if c.watches[key] != w {
		c.mu.Unlock()
		return
	}
	if cred != nil {
		c.values[key] = *cred
	} else {
		delete(c.values, key)
	}
	last := c.refused[key]
	if why != "" {
		c.refused[key] = why
	} else {
		delete(c.refused, key)
	}
	c.mu.Unlock()
	switch {
	case why != "" && why != last:
		c.log.Error("gateway credential refused: its gateways refuse TLS handshakes for it until it is fixed", "secret", key, "error", why)
	case why == "" && last != "":
		c.log.Info("gateway credential accepted again", "secret", key)
	}
	c.publish()
}

// publish hands every accepted credential to Config.Publish. The lock is
// held across the call so that publications are never reordered.
func (c *Credentials) publish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]xds.Credential, 0, len(c.values))
	for _, v := range c.values {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	c.cfg.Publish(out)
}
