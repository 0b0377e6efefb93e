// Package authz compiles Istio AuthorizationPolicies into matchers and
// decides inbound connections and requests against them.
//
// In the data flow it sits between the proxy's config (pushed per workload
// over xDS) and the proxy's listeners: [Select] picks the policies that apply
// to one workload, [Compile] turns them into an [Engine] once per config push,
// and [Engine.Decide] answers each connection or request from that model
// without I/O and, on the common path, without allocation.
//
// The semantics are Istio's, taken from its reference documentation
// (Authorization Policy, Authorization Policy Conditions, Authorization Policy
// Normalization, the TCP and dry-run tasks). Where the documentation is silent
// or Istio's behaviour is an accident of its Envoy translation, the choice made
// here is documented beside the code and always fails closed.
//
// Evaluation order, per Istio:
//
//  1. CUSTOM: if a CUSTOM policy matches, the named extension provider decides
//     first; a deny (or an unanswered provider) denies the request.
//  2. DENY: if any DENY policy matches, deny.
//  3. No ALLOW policy for the workload: allow.
//  4. Some ALLOW policy matches: allow.
//  5. Otherwise deny.
//
// AUDIT policies only mark the decision for audit logging. Policies annotated
// istio.io/dry-run: "true" are evaluated but never enforced; their would-be
// effect is reported in [Decision.DryRun].
//
// # Choices where Istio is implicit
//
// TCP traffic. Istio's reference: "For a DENY rule, missing attributes are
// treated as matches". An ALLOW rule that reads an HTTP-only attribute
// (requestPrincipals, hosts, methods, paths, request.headers, request.auth.*,
// or their not-forms) anywhere never matches a TCP connection, while the
// policy's other rules still do, and the policy still counts as an ALLOW
// policy; in DENY, CUSTOM and AUDIT rules the HTTP-only fields are dropped
// and the rest matches, so a DENY made only of HTTP fields denies all TCP
// traffic. This is what Istio generates for its TCP filter chains, and it
// errs on the side of denying.
//
// Source namespace and trust domain are read from the peer principal only
// (Istio matches namespaces against the certificate), so a plaintext peer
// matches no namespace and every notNamespaces.
//
// Trust domains: "cluster.local" in a principal stands for the mesh trust
// domain and all its aliases, as does the trust domain or any alias (Istio's
// trust domain migration). Istio drops a principal it cannot parse in that
// step; it is kept here, since dropping a DENY value would widen access.
//
// Dry run: [Decision.DryRun] is the decision had the dry-run policies been
// enforced alongside the enforced ones (Istio reports per-action shadow
// results instead; the combined one is what an operator asks). CUSTOM
// policies cannot be dry-run in Istio; one annotated so is enforced.
//
// CUSTOM: the engine does no I/O, so the caller asks the provider named by
// [Engine.Custom] and records the answer in [Request.CustomVerdict]; an
// unanswered provider denies. Several providers on one workload, or a
// provider not in [Options.Providers], make CUSTOM policies deny what they
// match, as Istio does.
//
// Paths are normalized by [NormalizePath]; it is stricter than Envoy in one
// respect: a "%" not followed by two hex digits is rejected, because it can
// turn into an escape after one decoding and bypass a DENY. Path templates
// read {*} as one non-empty segment and {**} as any remaining text, the
// regular expressions Envoy's URI templates compile to.
//
// Invalid policies fail Compile as a whole (Istio's validation would reject
// them); Istio's proxy-side behaviour of skipping bad rules is not copied,
// since a skipped DENY rule widens access.
package authz
