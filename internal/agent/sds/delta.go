package sds

import (
	"errors"
	"io"
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// DeltaSecrets serves the incremental protocol: the client subscribes to
// and unsubscribes from names, and receives each secret when it first
// exists and whenever its content changes, and a removal when a secret it
// held disappears. Resource versions are content digests, so versions a
// reconnecting client reports in initial_resource_versions are honoured.
func (s *Server) DeltaSecrets(stream grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	ctx := stream.Context()
	reqs := make(chan *discoveryv3.DeltaDiscoveryRequest)
	errc := make(chan error, 1)
	go recvLoop(ctx, stream.Recv, reqs, errc)

	var (
		started    bool
		wildcard   bool
		subscribed = map[string]bool{}
		known      = map[string]string{} // name -> version the client holds
	)
	for {
		changed := s.changes()
		if started {
			var names []string
			if wildcard {
				names = s.allNames()
			}
			for n := range subscribed {
				if !slices.Contains(names, n) {
					names = append(names, n)
				}
			}
			slices.Sort(names)
			resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: TypeURL}
			for _, n := range names {
				sec := s.secret(n)
				if sec == nil {
					if _, ok := known[n]; ok {
						resp.RemovedResources = append(resp.RemovedResources, n)
						delete(known, n)
					}
					continue
				}
				v := version(sec)
				if known[n] == v {
					continue
				}
				a, err := anypb.New(sec)
				if err != nil {
					return status.Errorf(codes.Internal, "sds: encode %q: %v", n, err)
				}
				resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: n, Version: v, Resource: a})
				known[n] = v
			}
			if len(resp.Resources) > 0 || len(resp.RemovedResources) > 0 {
				resp.Nonce = s.nextNonce()
				if err := stream.Send(resp); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return ignoreEOF(err)
		case <-changed:
		case req := <-reqs:
			if err := checkType(req.GetTypeUrl()); err != nil {
				return err
			}
			if d := req.GetErrorDetail(); d != nil {
				s.nacks.Add(1)
				s.log.Warn("secret rejected by client", "nonce", req.GetResponseNonce(), "error", d.GetMessage())
			}
			if !started {
				started = true
				wildcard = len(req.GetResourceNamesSubscribe()) == 0
				for n, v := range req.GetInitialResourceVersions() {
					known[n] = v
				}
			}
			for _, n := range req.GetResourceNamesSubscribe() {
				if n == "*" {
					wildcard = true
					continue
				}
				subscribed[n] = true
			}
			for _, n := range req.GetResourceNamesUnsubscribe() {
				if n == "*" {
					wildcard = false
					continue
				}
				delete(subscribed, n)
				delete(known, n)
			}
		}
	}
}

func ignoreEOF(err error) error {
	if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
		return nil
	}
	return err
}
