package registry

// SetPlatformServices replaces the services a platform registry (the
// Kubernetes source's Services, EndpointSlices and Pods) reports. Services
// then returns them merged with the registered workloads' services: a
// Kubernetes Service and the proxies that registered under its name are
// one service (its ClusterIPs and ports, both sets of endpoints). The store
// keeps svcs; the caller must not modify it afterwards.
func (s *Store) SetPlatformServices(svcs []Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.platform = svcs
	s.notifyLocked()
}
