package proxy

import (
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/xds"
)

// policy is the compiled authorization of the workload's inbound
// requests.
type policy struct {
	engine *authz.Engine
	norm   authz.PathNormalization
	names  []string // NAMESPACE/NAME of the policies in force, for /debug/config
}

// verdict is policy's answer for one request.
type verdict struct {
	allow      bool
	badRequest bool  // the path cannot be normalized safely: 400
	err        error // why, when badRequest
	policyName string
	reason     string
	// path is the normalized path to forward when it differs from the
	// received one, "" otherwise.
	path string
}

// compilePolicy compiles the view's AuthorizationPolicies and
// PeerAuthentications into st.
func (p *Proxy) compilePolicy(st *state, v *xds.View) error {
	w := p.cfg.Workload
	selected := authz.Select(v.AuthorizationPolicies, authz.Workload{Namespace: w.Namespace, Labels: w.Labels}, v.Mesh.RootNamespace)
	td := v.Mesh.TrustDomain
	if td == "" {
		td = p.cfg.TrustDomain
	}
	eng, err := authz.Compile(selected, authz.Options{TrustDomain: td, TrustDomainAliases: v.Mesh.TrustDomainAliases})
	if err != nil {
		return fmt.Errorf("authorization policies: %w", err)
	}
	pl := &policy{engine: eng, norm: authz.NormalizeBase}
	for _, r := range selected {
		pl.names = append(pl.names, r.Key())
	}
	st.policy = pl
	mode, source, err := p.peerMode(v)
	if err != nil {
		return fmt.Errorf("peer authentication: %w", err)
	}
	st.mode, st.modeSource = mode, source
	return nil
}

// requestPool recycles authorization requests: Decide's argument escapes,
// and a request is large enough for the allocation to show.
var requestPool = sync.Pool{New: func() any { return new(authz.Request) }}

// decide authorizes one inbound HTTP request from pr to the app's port.
func (pl *policy) decide(r *http.Request, pr *peer, port uint32) verdict {
	path, err := authz.NormalizePath(r.RequestURI, pl.norm)
	if err != nil {
		return verdict{badRequest: true, err: err, reason: err.Error()}
	}
	req := requestPool.Get().(*authz.Request)
	*req = authz.Request{
		SourcePrincipal: pr.principal,
		SourceIP:        pr.ip,
		DestinationIP:   pr.local.Addr(),
		DestinationPort: uint16(port),
		SNI:             pr.sni,
		HTTP:            true,
		Method:          r.Method,
		Host:            r.Host,
		Path:            r.RequestURI,
		Headers:         authz.HTTPHeader(r.Header),
	}
	d := pl.engine.Decide(req)
	*req = authz.Request{}
	requestPool.Put(req)
	v := verdict{allow: d.Allow, policyName: d.Policy, reason: d.Reason}
	if raw, _, _ := strings.Cut(r.RequestURI, "?"); raw != path {
		v.path = path
	}
	return v
}
