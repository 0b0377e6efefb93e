package sds

import (
	"slices"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
)

// StreamSecrets serves the state-of-the-world protocol. A request names the
// secrets it wants (none means all); the server answers once any exists,
// and again whenever their content changes. A request echoing the last
// nonce is an ACK or, with error_detail, a NACK; a NACK is logged and the
// rejected content is not sent again. Requests with an older nonce are
// stale and ignored, as the xDS protocol says.
func (s *Server) StreamSecrets(stream grpc.BidiStreamingServer[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]) error {
	ctx := stream.Context()
	reqs := make(chan *discoveryv3.DiscoveryRequest)
	errc := make(chan error, 1)
	go recvLoop(ctx, stream.Recv, reqs, errc)

	var (
		subscribed  bool
		names       []string
		wildcard    bool
		sentVersion string
		lastNonce   string
	)
	for {
		changed := s.changes()
		if subscribed {
			want := names
			if wildcard {
				want = s.allNames()
			}
			resp, v, err := s.sotwResponse(want)
			if err != nil {
				return err
			}
			if len(resp.Resources) > 0 && v != sentVersion {
				resp.Nonce = s.nextNonce()
				if err := stream.Send(resp); err != nil {
					return err
				}
				sentVersion, lastNonce = v, resp.Nonce
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
			if req.GetResponseNonce() != "" && req.GetResponseNonce() != lastNonce {
				continue // stale: answers a response the client has since replaced
			}
			if d := req.GetErrorDetail(); d != nil {
				s.nacks.Add(1)
				s.log.Warn("secret rejected by client", "version", sentVersion, "names", names, "error", d.GetMessage())
			}
			if !subscribed || !slices.Equal(req.GetResourceNames(), names) {
				subscribed, names = true, slices.Clone(req.GetResourceNames())
				wildcard = len(names) == 0
				sentVersion = "" // a new set of names is always answered
			}
		}
	}
}
