package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/extauthz"
	"github.com/zmesh/zmesh/internal/extauthz/client"
	"github.com/zmesh/zmesh/internal/policy"
	"github.com/zmesh/zmesh/internal/xds"
)

// compilePolicy compiles the view's PeerAuthentications,
// RequestAuthentications and AuthorizationPolicies, with the mesh's
// settings, into st: the one policy.Set that `zmesh check` also runs.
func (p *Proxy) compilePolicy(st *state, v *xds.View) error {
	norm, err := authz.ParsePathNormalization(v.Mesh.PathNormalization)
	if err != nil {
		return fmt.Errorf("mesh config: %w", err)
	}
	providers, names, err := extauthz.Compile(v.Mesh.ExtensionProviders)
	if err != nil {
		return fmt.Errorf("mesh config: %w", err)
	}
	td := v.Mesh.TrustDomain
	if td == "" {
		td = p.cfg.TrustDomain
	}
	w := p.cfg.Workload
	set, err := policy.Compile(v.PeerAuthentications, v.RequestAuthentications, v.AuthorizationPolicies,
		policy.Workload{Namespace: w.Namespace, Labels: w.Labels},
		policy.Mesh{
			RootNamespace:      v.Mesh.RootNamespace,
			TrustDomain:        td,
			TrustDomainAliases: v.Mesh.TrustDomainAliases,
			PathNormalization:  norm,
			Providers:          names,
		})
	if err != nil {
		return err
	}
	st.set, st.norm, st.providers = set, norm, providers
	st.mode, st.modeSource = set.PeerMode(p.appPort)
	return nil
}

// verdict is the inbound decision for one request.
type verdict struct {
	res        policy.Result
	badRequest bool  // bad method or a path that cannot be normalized safely: 400
	err        error // why, when badRequest
	// path is the normalized path to forward when it differs from the
	// received one, "" otherwise; decoded is path unescaped, the form
	// net/http keeps in URL.Path.
	path, decoded string
	// custom is the CUSTOM provider's answer, when one was asked.
	custom *client.Answer
}

// requestPool recycles authorization requests: Request's argument
// escapes, and a request is large enough for the allocation to show.
var requestPool = sync.Pool{New: func() any { return new(authz.Request) }}

// decide runs the workload's policy for one inbound HTTP request from pr
// in Envoy's filter order: request authentication (jwt_authn), then a
// CUSTOM provider if a CUSTOM policy matches (ext_authz), then DENY and
// ALLOW (rbac).
func (in *inbound) decide(ctx context.Context, st *state, r *http.Request, pr *peer) verdict {
	req := requestPool.Get().(*authz.Request)
	defer func() {
		*req = authz.Request{}
		requestPool.Put(req)
	}()
	*req = authz.Request{
		SourcePrincipal: pr.principal,
		SourceIP:        pr.ip,
		DestinationIP:   pr.local.Addr(),
		DestinationPort: uint16(pr.appPort),
		SNI:             pr.sni,
		HTTP:            true,
		Method:          r.Method,
		Host:            r.Host,
		Path:            r.RequestURI,
		Headers:         authz.HTTPHeader(r.Header),
	}
	var v verdict
	if res, ok := st.set.Admit(req); !ok {
		// Rejected before any policy, as Envoy does: 400.
		v.badRequest, v.err, v.res = true, errors.New(res.Reason), res
		return v
	}
	path := req.Path // normalized; the engine will not change it again
	if raw, _, _ := strings.Cut(r.RequestURI, "?"); raw != path {
		// The normalized path replaces the received one on the way to
		// the app. One that does not unescape cannot be forwarded as
		// policies saw it: refuse it rather than send the original.
		dec, err := url.PathUnescape(path)
		if err != nil {
			v.badRequest, v.err = true, fmt.Errorf("normalized path %q: %w", path, err)
			v.res = policy.Result{Stage: policy.StageAuthorization, Reason: v.err.Error(), Status: http.StatusBadRequest, Body: "Bad Request", Authz: authz.Decision{Rule: -1}}
			return v
		}
		v.path, v.decoded = path, dec
	}
	p := in.p
	v.res = st.set.Authenticate(ctx, req, authn.RequestView{Header: r.Header, RawQuery: r.URL.RawQuery}, p.jwks, p.now())
	if v.res.Allow {
		if provider, ok := st.set.Custom(req); ok {
			ans := p.extAuthz.check(ctx, st, provider, r, pr, path)
			req.CustomVerdict = ans.Verdict
			v.custom = &ans
		}
		v.res = st.set.Continue(req, v.res)
	}
	return v
}

// applyAuthHeaders makes the CUSTOM provider's header changes on an
// allowed request before it is forwarded. Request authentication's
// (outputPayloadToHeader, outputClaimToHeaders, the token dropped unless
// forwardOriginalToken) were made by policy.Set.Authenticate, before
// authorization, as Envoy's jwt_authn makes them.
func (v *verdict) applyAuthHeaders(h http.Header) {
	if v.custom != nil {
		for _, name := range v.custom.Remove {
			if k := http.CanonicalHeaderKey(name); k != "Host" && !strings.HasPrefix(name, ":") {
				delete(h, k)
			}
		}
		applyHeaders(h, v.custom.Set)
	}
}

// maxHeaderCount is Envoy's max_headers_count default, which Istio keeps:
// a request with more header fields is answered 431, whatever their size
// (maxHeaderBytes bounds that).
const maxHeaderCount = 100

// screenRequest starts every HTTP request the proxy serves (inbound,
// outbound, gateway): it refuses a header flood (refuseHeaderFlood) and
// drops the headers the caller named hop-by-hop (dropNominatedHeaders),
// before the proxy reads or adds any. It reports whether it answered.
func screenRequest(w http.ResponseWriter, r *http.Request) bool {
	if refuseHeaderFlood(w, r) {
		return true
	}
	dropNominatedHeaders(r.Header)
	return false
}

// refuseHeaderFlood answers 431 and closes the connection when r has more
// than maxHeaderCount header fields (Host included, as Envoy counts it),
// and reports whether it did. The request ID and trace context that a
// client proxy adds are not the app's: they do not count.
func refuseHeaderFlood(w http.ResponseWriter, r *http.Request) bool {
	n := 1 // Host, which net/http keeps out of the map
	for k, vs := range r.Header {
		if n += len(vs) - addedOnMeshHop(k, vs); n > maxHeaderCount {
			w.Header().Set("Connection", "close")
			writeText(w, http.StatusRequestHeaderFieldsTooLarge, "Request Header Fields Too Large")
			return true
		}
	}
	return false
}
