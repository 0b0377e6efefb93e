package client

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz"
)

// askGRPC sends req to a gRPC provider and returns its answer, with Err
// set when there was none.
func (c *Client) askGRPC(ctx context.Context, m Mesh, prov *extauthz.Provider, req *authv3.CheckRequest) Answer {
	addr, id, err := target(m.Services, prov)
	if err != nil {
		return Answer{Err: err}
	}
	ac, err := c.grpcClient(addr, id)
	if err != nil {
		return Answer{Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, prov.Timeout)
	defer cancel()
	resp, err := ac.Check(ctx, req)
	if err != nil {
		return Answer{Err: fmt.Errorf("check at %s: %w", addr, err)}
	}
	if e := resp.GetErrorResponse(); e != nil {
		return Answer{Err: fmt.Errorf("provider at %s answered an error (status %d)", addr, e.GetStatus().GetCode())}
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		ok := resp.GetOkResponse()
		return Answer{Verdict: authz.CustomAllow, Set: ok.GetHeaders(), Remove: ok.GetHeadersToRemove(),
			Respond: ok.GetResponseHeadersToAdd()}
	}
	ans := Answer{Verdict: authz.CustomDeny, Status: http.StatusForbidden}
	if d := resp.GetDeniedResponse(); d != nil {
		if code := int(d.GetStatus().GetCode()); code >= 200 && code <= 599 {
			ans.Status = code
		}
		ans.Body, ans.Headers = d.GetBody(), d.GetHeaders()
	}
	return ans
}

// grpcRequest builds the CheckRequest Envoy would send for req: peers,
// and the HTTP request with its headers (lower-case names, repeated
// values joined with ",", pseudo-headers included).
func (c *Client) grpcRequest(req Request) *authv3.CheckRequest {
	r, pr := req.HTTP, req.Peer
	headers := make(map[string]string, len(r.Header)+4)
	for k, vs := range r.Header {
		headers[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	target := req.Path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	scheme := "http"
	if pr.MTLS {
		scheme = "https"
	}
	headers[":authority"], headers[":method"], headers[":path"], headers[":scheme"] = r.Host, r.Method, target, scheme
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      &authv3.AttributeContext_Peer{Address: socketAddress(netip.AddrPortFrom(pr.IP, 0)), Principal: pr.ID},
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress(pr.Local), Principal: c.cfg.Principal},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(c.now()),
			Http: &authv3.AttributeContext_HttpRequest{
				Method:   r.Method,
				Headers:  headers,
				Path:     target,
				Host:     r.Host,
				Scheme:   scheme,
				Query:    r.URL.RawQuery,
				Protocol: r.Proto,
				Size:     r.ContentLength,
			},
		},
		TlsSession: tlsSession(pr),
	}}
}

func tlsSession(pr Peer) *authv3.AttributeContext_TLSSession {
	if !pr.MTLS {
		return nil
	}
	return &authv3.AttributeContext_TLSSession{Sni: pr.SNI}
}

func socketAddress(ap netip.AddrPort) *corev3.Address {
	if !ap.Addr().IsValid() {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ap.Addr().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ap.Port())},
	}}}
}
