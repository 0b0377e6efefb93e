// Package check answers `zmesh check`: how a proxy would decide one
// inbound connection or request, offline, from a directory of Istio
// resources. It parses the request description (DESIGN §5), turns it into
// the attributes a proxy would see, and runs the same policy.Set the proxy
// runs.
package check

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"sigs.k8s.io/yaml"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/identity"
	"github.com/zmesh/zmesh/internal/policy"
)

// Input is the request file of `zmesh check`.
type Input struct {
	Workload struct {
		Namespace      string            `json:"namespace"`
		Labels         map[string]string `json:"labels"`
		ServiceAccount string            `json:"serviceAccount"`
	} `json:"workload"`
	Source struct {
		Principal string `json:"principal"`
		Namespace string `json:"namespace"`
		IP        string `json:"ip"`
		RemoteIP  string `json:"remoteIp"`
	} `json:"source"`
	TLS     *bool `json:"tls"`
	Request struct {
		Port          uint32            `json:"port"`
		Method        string            `json:"method"`
		Host          string            `json:"host"`
		Path          string            `json:"path"`
		Headers       map[string]string `json:"headers"`
		JWT           string            `json:"jwt"`
		Auth          *Auth             `json:"auth"`
		DestinationIP string            `json:"destinationIp"`
	} `json:"request"`
	Connection struct {
		SNI string `json:"sni"`
	} `json:"connection"`
}

// Auth holds the attributes of an already validated JWT.
type Auth struct {
	Principal string         `json:"principal"`
	Claims    map[string]any `json:"claims"`
	Audiences []string       `json:"audiences"`
	Presenter string         `json:"presenter"`
}

// Output is what `zmesh check` prints (DESIGN §5).
type Output struct {
	Decision           string `json:"decision"` // ALLOW or DENY
	Stage              string `json:"stage"`
	Policy             string `json:"policy"`
	Reason             string `json:"reason"`
	PeerAuthentication struct {
		Mode string `json:"mode"`
	} `json:"peerAuthentication"`
	// Rule is the index of the deciding authorization rule; added to the
	// contract's fields (absent when no rule decided).
	Rule *int `json:"rule,omitempty"`
	// Status is the HTTP status a proxy answers a denied request with.
	Status int `json:"status,omitempty"`
	// Audit names the AUDIT policy that marked the request for audit
	// logging (absent when none matched). It never changes the decision.
	Audit string `json:"audit,omitempty"`
	// DryRun is what the decision would have been had the policies
	// annotated istio.io/dry-run been enforced (absent when the workload
	// has none, or authorization did not run).
	DryRun *DryRun `json:"dryRun,omitempty"`
}

// DryRun is the would-be decision of the dry-run policies.
type DryRun struct {
	Decision string `json:"decision"` // ALLOW or DENY
	Policy   string `json:"policy"`
	Reason   string `json:"reason"`
}

// maxInput bounds the request file.
const maxInput = 1 << 20

// ParseInput reads a request file, JSON or YAML. Unknown fields are errors,
// so a typo cannot silently change the question.
func ParseInput(data []byte) (*Input, error) {
	if len(data) > maxInput {
		return nil, fmt.Errorf("check: request larger than %d bytes", maxInput)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("check: request: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var in Input
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("check: request: %w", err)
	}
	if in.Workload.Namespace == "" {
		return nil, errors.New("check: request: workload.namespace is required")
	}
	if in.Request.Port == 0 || in.Request.Port > 65535 {
		return nil, errors.New("check: request: request.port must be 1-65535")
	}
	if in.Request.JWT != "" && in.Request.Auth != nil {
		return nil, errors.New("check: request: give request.jwt or request.auth, not both")
	}
	if in.Request.Method == "" && (in.Request.Path != "" || in.Request.JWT != "" || in.Request.Auth != nil || len(in.Request.Headers) > 0) {
		return nil, errors.New("check: request: HTTP fields given without request.method (a TCP connection has no path, headers or JWT)")
	}
	if p := in.Source.Principal; p != "" {
		id, err := spiffeid.FromString("spiffe://" + strings.TrimPrefix(p, "spiffe://"))
		if err != nil {
			return nil, fmt.Errorf("check: request: source.principal: %w", err)
		}
		// The source namespace is what the certificate says; a request file
		// that claims another would ask a question no proxy can see.
		if ns, _, err := identity.ServiceAccountOf(id); err == nil && in.Source.Namespace != "" && ns != in.Source.Namespace {
			return nil, fmt.Errorf("check: request: source.namespace %q disagrees with source.principal %q", in.Source.Namespace, p)
		}
	}
	return &in, nil
}

// Options configure an evaluation.
type Options struct {
	RootNamespace string
	TrustDomain   string
	// TrustDomainAliases are the other trust domains the mesh accepts as
	// its own (MeshConfig trustDomainAliases).
	TrustDomainAliases []string
	// PathNormalization is MeshConfig pathNormalization; the zero value is
	// Istio's default, BASE.
	PathNormalization authz.PathNormalization
	Keys              authn.KeySource // JWKS for request.jwt; nil: inline jwks only (a jwksUri fails closed)
	Now               time.Time       // zero: time.Now()
}

// Evaluate decides in against the resources of snap, as the workload's
// proxy would.
func Evaluate(ctx context.Context, snap *config.Snapshot, in *Input, opts Options) (Output, error) {
	set, err := policy.Compile(
		snap.List(config.KindPeerAuthentication),
		snap.List(config.KindRequestAuthentication),
		snap.List(config.KindAuthorizationPolicy),
		policy.Workload{Namespace: in.Workload.Namespace, Labels: in.Workload.Labels},
		policy.Mesh{
			RootNamespace:      opts.RootNamespace,
			TrustDomain:        opts.TrustDomain,
			TrustDomainAliases: opts.TrustDomainAliases,
			PathNormalization:  opts.PathNormalization,
		},
	)
	if err != nil {
		return Output{}, fmt.Errorf("check: %w", err)
	}
	principal := strings.TrimPrefix(in.Source.Principal, "spiffe://")
	mtls := principal != ""
	if in.TLS != nil {
		mtls = *in.TLS
	}
	if mtls && principal == "" {
		return Output{}, errors.New("check: request: tls is true but source.principal is empty (mutual TLS always authenticates a principal)")
	}
	if !mtls {
		principal = "" // a plaintext peer has no authenticated identity
	}
	if mtls {
		if res, ok := trustedPeer(set, in.Request.Port, principal, opts); !ok {
			return output(res), nil
		}
	}
	conn := set.Connection(in.Request.Port, mtls)
	if !conn.Allow {
		return output(conn), nil
	}
	r := &authz.Request{
		SourcePrincipal: principal,
		DestinationPort: uint16(in.Request.Port),
		SNI:             in.Connection.SNI,
		HTTP:            in.Request.Method != "",
		Method:          in.Request.Method,
		Host:            in.Request.Host,
		Path:            in.Request.Path,
	}
	if r.HTTP && r.Path == "" {
		r.Path = "/"
	}
	if r.SourceIP, err = parseIP(in.Source.IP, "source.ip"); err != nil {
		return Output{}, err
	}
	if r.RemoteIP, err = parseIP(in.Source.RemoteIP, "source.remoteIp"); err != nil {
		return Output{}, err
	}
	if !r.RemoteIP.IsValid() {
		r.RemoteIP = r.SourceIP
	}
	if r.DestinationIP, err = parseIP(in.Request.DestinationIP, "request.destinationIp"); err != nil {
		return Output{}, err
	}
	header := map[string][]string{}
	for k, v := range in.Request.Headers {
		header[textproto.CanonicalMIMEHeaderKey(k)] = []string{v}
	}
	if in.Request.JWT != "" {
		header["Authorization"] = []string{"Bearer " + in.Request.JWT}
	}
	r.Headers = authz.HTTPHeader(header)
	if a := in.Request.Auth; a != nil {
		r.RequestPrincipal, r.Claims, r.Audiences, r.Presenter = a.Principal, a.Claims, a.Audiences, a.Presenter
		return output(set.Authorize(r)), nil
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	keys := opts.Keys
	if keys == nil {
		keys = authn.NewJWKSCache(authn.JWKSCacheConfig{}) // no fetcher: inline jwks only
	}
	rawQuery := ""
	if _, q, ok := strings.Cut(r.Path, "?"); ok {
		rawQuery = q
	}
	return output(set.Request(ctx, r, authn.RequestView{Header: header, RawQuery: rawQuery}, keys, now)), nil
}

// trustedPeer models the proxy's handshake: a peer certificate is verified
// against the bundle of its own trust domain, and the proxy holds bundles
// only for the mesh's trust domain and its aliases, so a principal of any
// other trust domain never gets past mutual TLS. This is stricter than
// Istio with a single root, which accepts any SPIFFE ID the root signed
// and leaves the rest to AuthorizationPolicy; SPIFFE makes a root
// authoritative for its own trust domain only, and trustDomainAliases is
// how an operator says that other names belong to this mesh.
func trustedPeer(set *policy.Set, port uint32, principal string, opts Options) (policy.Result, bool) {
	td, _, _ := strings.Cut(principal, "/")
	if td == opts.TrustDomain {
		return policy.Result{}, true
	}
	for _, a := range opts.TrustDomainAliases {
		if td == a {
			return policy.Result{}, true
		}
	}
	mode, source := set.PeerMode(port)
	return policy.Result{
		Stage:    policy.StagePeerAuthentication,
		Reason:   fmt.Sprintf("peer certificate of trust domain %q, neither the mesh's (%q) nor an alias: the mutual TLS handshake fails", td, opts.TrustDomain),
		PeerMode: mode, PeerSource: source,
		Authz: authz.Decision{Rule: -1},
	}, false
}

func parseIP(s, field string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("check: request: %s: %w", field, err)
	}
	return a, nil
}

// output turns a pipeline result into the printed answer.
func output(r policy.Result) Output {
	o := Output{Decision: "ALLOW", Stage: string(r.Stage), Policy: r.Policy, Reason: r.Reason}
	if !r.Allow {
		o.Decision = "DENY"
		o.Status = r.Status
	}
	o.PeerAuthentication.Mode = r.PeerMode.String()
	if r.Stage == policy.StageAuthorization || (r.Allow && r.Authz.Rule >= 0 && r.Authz.Policy != "") {
		if r.Authz.Rule >= 0 {
			rule := r.Authz.Rule
			o.Rule = &rule
		}
	}
	if o.Reason == "" && r.Allow {
		o.Reason = "allowed"
	}
	o.Audit = r.Authz.AuditPolicy
	if d := r.Authz.DryRun; d.Evaluated {
		o.DryRun = &DryRun{Decision: "DENY", Policy: d.Policy, Reason: d.Reason}
		if d.Allow {
			o.DryRun.Decision = "ALLOW"
		}
	}
	return o
}
