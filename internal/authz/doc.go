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
package authz
