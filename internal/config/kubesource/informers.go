package kubesource

import (
	"bytes"
	"maps"
	"reflect"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/registry"
)

// indexService indexes EndpointSlices by the service they belong to.
const indexService = "service"

// setupInformers creates the informers and their handlers. Objects are
// trimmed before they are cached (transform): with 10,000 pods, keeping
// whole objects would cost most of the control plane's memory for fields
// it never reads.
func (s *Source) setupInformers() error {
	s.factory = informers.NewSharedInformerFactoryWithOptions(s.kube, 0, informers.WithTransform(trim))
	s.meshFactory = informers.NewSharedInformerFactoryWithOptions(s.kube, 0,
		informers.WithNamespace(s.cfg.RootNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", s.cfg.MeshConfigMap).String()
		}),
		informers.WithTransform(trim))
	s.dynFactory = dynamicinformer.NewDynamicSharedInformerFactory(s.dyn, 0)

	for _, k := range istioKinds {
		inf := s.dynFactory.ForResource(k.gvr).Informer()
		if err := inf.SetTransform(trimIstio); err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { s.onIstio(k.kind, obj) },
			UpdateFunc: func(_, obj any) { s.onIstio(k.kind, obj) },
			DeleteFunc: func(obj any) { s.onIstioDelete(k.kind, obj) },
		}); err != nil {
			return err
		}
		s.synced = append(s.synced, inf.HasSynced)
	}

	s.svcInformer = s.factory.Core().V1().Services().Informer()
	if _, err := s.svcInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.markService(keyOf(obj)) },
		UpdateFunc: func(_, obj any) { s.markService(keyOf(obj)) },
		DeleteFunc: func(obj any) { s.markService(keyOf(obj)) },
	}); err != nil {
		return err
	}

	slices := s.factory.Discovery().V1().EndpointSlices().Informer()
	if err := slices.AddIndexers(cache.Indexers{indexService: sliceService}); err != nil {
		return err
	}
	if _, err := slices.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.markSlice(obj) },
		UpdateFunc: func(old, obj any) {
			s.markSlice(old)
			s.markSlice(obj)
		},
		DeleteFunc: func(obj any) { s.markSlice(obj) },
	}); err != nil {
		return err
	}
	s.sliceIndexer = slices.GetIndexer()

	pods := s.factory.Core().V1().Pods().Informer()
	if _, err := pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.markPod(keyOf(obj)) },
		UpdateFunc: func(old, obj any) {
			if !podChanged(old, obj) {
				return
			}
			s.markPod(keyOf(obj))
		},
		DeleteFunc: func(obj any) { s.markPod(keyOf(obj)) },
	}); err != nil {
		return err
	}
	s.podIndexer = pods.GetIndexer()

	namespaces := s.factory.Core().V1().Namespaces().Informer()
	s.nsIndexer = namespaces.GetIndexer()

	meshCM := s.meshFactory.Core().V1().ConfigMaps().Informer()
	if _, err := meshCM.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.onMeshConfigMap(obj, false) },
		UpdateFunc: func(_, obj any) { s.onMeshConfigMap(obj, false) },
		DeleteFunc: func(obj any) { s.onMeshConfigMap(obj, true) },
	}); err != nil {
		return err
	}
	s.synced = append(s.synced, s.svcInformer.HasSynced, slices.HasSynced, pods.HasSynced, namespaces.HasSynced, meshCM.HasSynced)
	return nil
}

// trim keeps, of each cached object, what the source reads.
func trim(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Pod:
		// Labels, service account and init container names: what an
		// endpoint's identity and proxy detection need.
		inits := make([]corev1.Container, len(o.Spec.InitContainers))
		for i, c := range o.Spec.InitContainers {
			inits[i] = corev1.Container{Name: c.Name}
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels},
			Spec:       corev1.PodSpec{ServiceAccountName: o.Spec.ServiceAccountName, InitContainers: inits},
		}, nil
	case *corev1.Namespace:
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion, Labels: o.Labels}}, nil
	case metav1.Object:
		o.SetManagedFields(nil)
		if u, ok := obj.(*unstructured.Unstructured); ok {
			unstructured.RemoveNestedField(u.Object, "status")
		}
		return obj, nil
	}
	return obj, nil
}

// trimIstio replaces an Istio object by what the source keeps of it
// (object). It costs one JSON encoding of the spec, small next to the
// decoding the apiserver's answer already took. Idempotent, as informers
// ask of a transform.
func trimIstio(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil // already trimmed, or a tombstone
	}
	return toObject(u)
}

// podChanged reports whether an update changed what endpoints read.
func podChanged(old, cur any) bool {
	a, ok1 := old.(*corev1.Pod)
	b, ok2 := cur.(*corev1.Pod)
	if !ok1 || !ok2 {
		return true
	}
	return !maps.Equal(a.Labels, b.Labels) || a.Spec.ServiceAccountName != b.Spec.ServiceAccountName ||
		!reflect.DeepEqual(a.Spec.InitContainers, b.Spec.InitContainers)
}

// keyOf returns NAMESPACE/NAME of an object or a tombstone.
func keyOf(obj any) string {
	k, _ := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	return k
}

// sliceService indexes an EndpointSlice under NAMESPACE/SERVICE.
func sliceService(obj any) ([]string, error) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := sl.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{sl.Namespace + "/" + name}, nil
}

func (s *Source) onIstio(kind config.Kind, obj any) {
	u, ok := obj.(*object)
	if !ok {
		return
	}
	id := string(kind) + "/" + u.GetNamespace() + "/" + u.GetName()
	r, warnings, err := convert(u, kind)
	for _, w := range warnings {
		s.log.Warn("config warning", "kind", kind, "namespace", u.GetNamespace(), "name", u.GetName(), "warning", w.Message)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfgDirty = true
	defer s.poke()
	if err == nil {
		delete(s.rejected, id)
		s.resources[id] = r
		return
	}
	// The object's last good version, if it had one, stays in force (as
	// with a rejected file); a new object that was never valid is absent.
	// Other objects are not touched.
	prev, seen := s.rejected[id]
	rej := Rejection{Kind: kind, Namespace: u.GetNamespace(), Name: u.GetName(), Err: err, uid: string(u.GetUID()), version: u.GetResourceVersion()}
	s.rejected[id] = rej
	if seen && prev.version == rej.version {
		return // the same version again (a relist): already reported
	}
	s.log.Error("config object rejected; left out, the rest stays in force",
		"kind", kind, "namespace", rej.Namespace, "name", rej.Name, "resourceVersion", rej.version, "err", err.Error())
	s.metrics.rejection(kind)
	s.events.rejected(u.APIVersion, rej)
}

func (s *Source) onIstioDelete(kind config.Kind, obj any) {
	key := keyOf(obj)
	if key == "" {
		return
	}
	id := string(kind) + "/" + key
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.resources, id)
	delete(s.rejected, id)
	s.cfgDirty = true
	s.poke()
}

func (s *Source) markService(key string) {
	if key == "" {
		return
	}
	s.mu.Lock()
	s.svcDirty[key] = struct{}{}
	s.mu.Unlock()
	s.poke()
}

func (s *Source) markSlice(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	keys, _ := sliceService(obj)
	for _, k := range keys {
		s.markService(k)
	}
}

// markPod marks dirty the services whose endpoints name the pod.
func (s *Source) markPod(key string) {
	s.mu.Lock()
	svcs := s.podSvcs[key]
	for k := range svcs {
		s.svcDirty[k] = struct{}{}
	}
	s.mu.Unlock()
	if len(svcs) > 0 {
		s.poke()
	}
}

func (s *Source) onMeshConfigMap(obj any, deleted bool) {
	var data []byte
	if !deleted {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || cm.Name != s.cfg.MeshConfigMap {
			return
		}
		if v, ok := cm.Data[MeshConfigKey]; ok {
			data = []byte(v)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if (data == nil) == (s.mesh.data == nil) && bytes.Equal(data, s.mesh.data) {
		return
	}
	s.mesh.data = data
	s.mesh.dirty = true
	s.poke()
}

// rebuildServices rebuilds the services marked dirty and returns the full
// list, sorted by hostname, and whether any service changed.
func (s *Source) rebuildServices() ([]registry.Service, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.svcDirty) == 0 {
		return nil, false
	}
	changed := false
	for key := range s.svcDirty {
		for _, p := range s.svcPods[key] {
			if set := s.podSvcs[p]; set != nil {
				delete(set, key)
				if len(set) == 0 {
					delete(s.podSvcs, p)
				}
			}
		}
		delete(s.svcPods, key)
		old, had := s.services[key]
		obj, exists, _ := s.svcInformer.GetIndexer().GetByKey(key)
		svcObj, _ := obj.(*corev1.Service)
		if !exists || svcObj == nil {
			if had {
				delete(s.services, key)
				changed = true
			}
			continue
		}
		svc, pods, ok := buildService(serviceInput{
			svc:         svcObj,
			slices:      s.slicesOf(key),
			pod:         s.pod,
			trustDomain: s.cfg.TrustDomain,
			dnsDomain:   s.cfg.DNSDomain,
		})
		s.svcPods[key] = pods
		for _, p := range pods {
			if s.podSvcs[p] == nil {
				s.podSvcs[p] = map[string]struct{}{}
			}
			s.podSvcs[p][key] = struct{}{}
		}
		switch {
		case !ok && had:
			delete(s.services, key)
			changed = true
		case ok && (!had || !reflect.DeepEqual(old, svc)):
			s.services[key] = svc
			changed = true
		}
	}
	clear(s.svcDirty)
	if !changed {
		return nil, false
	}
	out := make([]registry.Service, 0, len(s.services))
	for _, svc := range s.services {
		out = append(out, svc)
	}
	slices.SortFunc(out, func(a, b registry.Service) int {
		switch {
		case a.Hostname < b.Hostname:
			return -1
		case a.Hostname > b.Hostname:
			return 1
		}
		return 0
	})
	return out, true
}

func (s *Source) slicesOf(key string) []*discoveryv1.EndpointSlice {
	objs, _ := s.sliceIndexer.ByIndex(indexService, key)
	out := make([]*discoveryv1.EndpointSlice, 0, len(objs))
	for _, o := range objs {
		if sl, ok := o.(*discoveryv1.EndpointSlice); ok {
			out = append(out, sl)
		}
	}
	// Stable order, so the same slices give the same endpoints.
	slices.SortFunc(out, func(a, b *discoveryv1.EndpointSlice) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

func (s *Source) pod(key string) *corev1.Pod {
	obj, ok, _ := s.podIndexer.GetByKey(key)
	if !ok {
		return nil
	}
	p, _ := obj.(*corev1.Pod)
	return p
}

// NamespaceLabels returns the labels of namespace name, and whether the
// cluster has it.
func (s *Source) NamespaceLabels(name string) (map[string]string, bool) {
	obj, ok, _ := s.nsIndexer.GetByKey(name)
	if !ok {
		return nil, false
	}
	ns, _ := obj.(*corev1.Namespace)
	if ns == nil {
		return nil, false
	}
	return maps.Clone(ns.Labels), true
}
