package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/labelsel"
)

// Workload is the workload whose inbound traffic is decided:
// labelsel.Workload, one type for every policy engine.
type Workload = labelsel.Workload

// Mesh holds the mesh-wide settings that change how policies read.
type Mesh struct {
	RootNamespace      string // default istio-system
	TrustDomain        string // default cluster.local
	TrustDomainAliases []string
	PathNormalization  authz.PathNormalization
	Providers          []string // CUSTOM extension providers known to the mesh
}

// Stage names the step that decided, in the words of `zmesh check`.
type Stage string

// Stages, in evaluation order. StageNone: every stage passed.
const (
	StageNone                  Stage = ""
	StagePeerAuthentication    Stage = "peer-authentication"
	StageRequestAuthentication Stage = "request-authentication"
	StageAuthorization         Stage = "authorization"
)

// Set is the compiled inbound policy of one workload. It is immutable and
// safe for concurrent use.
type Set struct {
	peer    authn.PeerPolicy
	request *authn.RequestPolicy // nil: no RequestAuthentication selects the workload
	engine  *authz.Engine
	norm    authz.PathNormalization

	// Names of the policies in force, for status pages.
	PeerAuthentications    []string
	RequestAuthentications []string
	AuthorizationPolicies  []string
}

// Compile selects, among all the resources given, those that apply to w and
// compiles them. An error names the offending policy; the caller keeps its
// previous Set (a rejected push changes nothing).
func Compile(pas, ras, aps []config.Resource, w Workload, m Mesh) (*Set, error) {
	if m.RootNamespace == "" {
		m.RootNamespace = authn.DefaultRootNamespace
	}
	if m.TrustDomain == "" {
		m.TrustDomain = "cluster.local"
	}
	s := &Set{
		peer: authn.CompilePeer(pas, w, m.RootNamespace),
		norm: m.PathNormalization,
	}
	for _, r := range pas {
		if r.Namespace == m.RootNamespace || r.Namespace == w.Namespace {
			s.PeerAuthentications = append(s.PeerAuthentications, r.Key())
		}
	}
	selectedRA := authn.SelectRequest(ras, w, m.RootNamespace)
	if len(selectedRA) > 0 {
		rp, err := authn.CompileRequest(selectedRA, authn.RequestOptions{})
		if err != nil {
			return nil, fmt.Errorf("request authentication: %w", err)
		}
		s.request = rp
		for _, r := range selectedRA {
			s.RequestAuthentications = append(s.RequestAuthentications, r.Key())
		}
	}
	selectedAP := authz.Select(aps, w, m.RootNamespace)
	eng, err := authz.Compile(selectedAP, authz.Options{
		TrustDomain:        m.TrustDomain,
		TrustDomainAliases: m.TrustDomainAliases,
		PathNormalization:  m.PathNormalization,
		Providers:          m.Providers,
	})
	if err != nil {
		return nil, fmt.Errorf("authorization: %w", err)
	}
	s.engine = eng
	for _, r := range selectedAP {
		s.AuthorizationPolicies = append(s.AuthorizationPolicies, r.Key())
	}
	return s, nil
}

// Result is one decision and its explanation.
type Result struct {
	Allow bool
	Stage Stage // the stage that denied; StageNone when allowed
	// Policy is NAMESPACE/NAME of the deciding policy ("" for a default).
	Policy string
	// Reason says why, in one phrase. It may name policies: log it, never
	// send it to the caller.
	Reason string
	// Status is the HTTP status of a denied request: 400 for a request
	// rejected before any policy ran (see [Set.Admit]), 401 for a bad
	// token, 403 otherwise; 0 for connections and allowed requests.
	Status int
	// Body is what a denied request's response says (Envoy's words),
	// without policy names.
	Body string
	// PeerMode is the PeerAuthentication mode of the port.
	PeerMode authn.Mode
	// PeerSource is NAMESPACE/NAME of the PeerAuthentication that set it.
	PeerSource string
	// Auth is the result of request authentication: principal, claims,
	// and headers to set or remove before forwarding.
	Auth authn.Result
	// Authz is the authorization decision, when that stage ran.
	Authz authz.Decision
}

// PeerMode returns the PeerAuthentication mode of port and the policy that
// set it.
func (s *Set) PeerMode(port uint32) (authn.Mode, string) {
	return s.peer.Mode(port), s.peer.Source(port)
}

// Connection decides whether a connection to port may go on: STRICT
// admits only mutual TLS, DISABLE only plaintext (a sidecar in DISABLE
// does not terminate TLS), PERMISSIVE both.
func (s *Set) Connection(port uint32, mtls bool) Result {
	mode, source := s.PeerMode(port)
	r := Result{Allow: true, PeerMode: mode, PeerSource: source}
	switch {
	case mode == authn.ModeStrict && !mtls:
		r.Allow, r.Stage, r.Policy = false, StagePeerAuthentication, source
		r.Reason = fmt.Sprintf("plaintext connection refused: peer authentication is STRICT on port %d", port)
	case mode == authn.ModeDisable && mtls:
		r.Allow, r.Stage, r.Policy = false, StagePeerAuthentication, source
		r.Reason = fmt.Sprintf("mutual TLS not accepted: peer authentication is DISABLE on port %d", port)
	}
	return r
}

// Request decides one request that arrived on an admitted connection:
// request authentication, then authorization. r carries the connection's
// attributes (peer principal, addresses, port) and, for HTTP, the request's;
// view is where JWTs are looked for. Request fills r's JWT attributes from
// the validated token. For a plain TCP connection pass r.HTTP=false and a
// zero view.
func (s *Set) Request(ctx context.Context, r *authz.Request, view authn.RequestView, keys authn.KeySource, now time.Time) Result {
	if res, ok := s.Admit(r); !ok {
		return res
	}
	res := s.Authenticate(ctx, r, view, keys, now)
	if !res.Allow {
		return res
	}
	return s.authorize(r, res)
}

// Admit applies the checks Envoy makes to an HTTP request before any
// policy filter runs, as Istio's authorization normalization documents: a
// method that is not upper case, or a path that cannot be normalized
// safely (%00, a control character, a malformed escape, under every
// pathNormalization including NONE), is answered 400 Bad Request. An
// encoded slash (%2F, %5C) is not a reason to reject: Istio leaves it
// encoded (Envoy's path_with_escaped_slashes_action KEEP_UNCHANGED) except
// under DECODE_AND_MERGE_SLASHES, which decodes it (UNESCAPE_AND_FORWARD);
// either way policies match, and the app receives, the same path. On
// success r.Path holds the normalized path (query dropped), which is what
// policies match and what the proxy forwards. A TCP connection is always
// admitted. The rejection is reported at the authorization stage with no
// policy: the request never reached one.
func (s *Set) Admit(r *authz.Request) (Result, bool) {
	if !r.HTTP {
		return Result{}, true
	}
	reason := ""
	if !authz.ValidMethod(r.Method) {
		reason = fmt.Sprintf("request rejected: method %q is missing or not upper case", r.Method)
	} else if p, err := authz.NormalizePath(r.Path, s.norm); err != nil {
		reason = err.Error()
	} else {
		r.Path = p
		return Result{}, true
	}
	mode, source := s.PeerMode(uint32(r.DestinationPort))
	return Result{
		Stage: StageAuthorization, Reason: reason, Status: 400, Body: "Bad Request",
		PeerMode: mode, PeerSource: source,
		Authz: authz.Decision{Rule: -1}, // no rule decided
	}, false
}

// Authenticate runs only the request-authentication stage of Request. A
// caller that must consult a CUSTOM provider between the stages (the
// proxy: Envoy runs jwt_authn before ext_authz, so a CUSTOM rule may match
// on request.auth.* and a bad token never reaches the provider) calls
// Admit, then Authenticate, then Custom, then Continue. Result.Allow is
// false, with Status 401 (403 for a wrong audience) and Envoy's Body, for
// a request whose token does not verify; otherwise r carries the token's
// attributes.
//
// view.Header must be the request's own header map, the one r.Headers
// reads and the proxy forwards: Authenticate edits it as Envoy's jwt_authn
// filter does before authorization runs. It first removes the headers the
// workload's rules output (outputPayloadToHeader, outputClaimToHeaders),
// on every request whatever the outcome, so that a client cannot supply
// them; then, for a valid token, it sets them from the token and removes
// the header the token came in (unless forwardOriginalToken). CUSTOM and
// DENY/ALLOW rules on request.headers, and the app, see only values a
// verified token gave.
func (s *Set) Authenticate(ctx context.Context, r *authz.Request, view authn.RequestView, keys authn.KeySource, now time.Time) Result {
	mode, source := s.PeerMode(uint32(r.DestinationPort))
	res := Result{Allow: true, PeerMode: mode, PeerSource: source}
	if r.HTTP && s.request != nil {
		for _, name := range s.request.OutputHeaders() {
			delete(view.Header, name)
		}
		auth, err := s.request.Authenticate(ctx, view, keys, now)
		if err != nil {
			res.Allow, res.Stage, res.Status = false, StageRequestAuthentication, 401
			res.Reason, res.Body = err.Error(), "Jwt verification fails"
			var te *authn.TokenError
			if errors.As(err, &te) {
				res.Policy, res.Status, res.Body = te.Policy, te.StatusCode(), te.Body()
			}
			return res
		}
		res.Auth = auth
		if auth.Authenticated {
			for _, name := range auth.RemoveHeaders {
				delete(view.Header, name)
			}
			if view.Header != nil {
				for _, hv := range auth.SetHeaders {
					view.Header[hv.Name] = []string{hv.Value}
				}
			}
			r.RequestPrincipal = auth.Principal
			r.Audiences = auth.Audiences
			r.Presenter = auth.Presenter
			r.Claims = auth.Claims
		}
	}
	return res
}

// Continue runs the authorization stage after Authenticate, keeping its
// result's authentication (Auth, PeerMode). r.CustomVerdict must hold the
// provider's answer when Custom named one.
func (s *Set) Continue(r *authz.Request, authenticated Result) Result {
	if !authenticated.Allow {
		return authenticated
	}
	return s.authorize(r, authenticated)
}

// RequestAuthentication returns the compiled request authentication of the
// workload, nil when no RequestAuthentication selects it; a JWKS cache
// prefetches its keys from it.
func (s *Set) RequestAuthentication() *authn.RequestPolicy { return s.request }

// Authorize runs only the authorization stage, for callers that validated
// the JWT themselves (r already carries its attributes).
func (s *Set) Authorize(r *authz.Request) Result {
	mode, source := s.PeerMode(uint32(r.DestinationPort))
	return s.authorize(r, Result{Allow: true, PeerMode: mode, PeerSource: source})
}

// Custom reports the CUSTOM provider the caller must consult for r before
// Request or Authorize, if a CUSTOM policy matches; the caller then sets
// r.CustomVerdict. Without an answer, CUSTOM policies deny (fail closed).
func (s *Set) Custom(r *authz.Request) (provider string, ok bool) {
	return s.engine.Custom(r)
}

func (s *Set) authorize(r *authz.Request, res Result) Result {
	d := s.engine.Decide(r)
	res.Authz = d
	res.Policy, res.Reason = d.Policy, d.Reason
	if !d.Allow {
		res.Allow, res.Stage = false, StageAuthorization
		if r.HTTP {
			// A denied TCP connection is closed, not answered.
			res.Status, res.Body = 403, "RBAC: access denied"
		}
		if d.Policy == "" && len(s.AuthorizationPolicies) > 0 {
			// A default deny: say which policies were in force, so the
			// operator knows where to look.
			res.Reason += " (policies in force: " + strings.Join(s.AuthorizationPolicies, ", ") + ")"
		}
	}
	return res
}
