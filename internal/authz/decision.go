package authz

// Action is the effect of an AuthorizationPolicy, or of a decision.
type Action uint8

// Actions. ActionNone marks a decision that no policy made (the defaults:
// allow when the workload has no ALLOW policy, deny when none matched, or a
// request rejected before policies were consulted).
const (
	ActionNone Action = iota
	ActionAllow
	ActionDeny
	ActionAudit
	ActionCustom
)

var actionNames = [...]string{"NONE", "ALLOW", "DENY", "AUDIT", "CUSTOM"}

// String returns Istio's spelling of the action ("ALLOW", "DENY", ...).
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "UNKNOWN"
}

// Decision is the outcome of authorizing one connection or request, with
// what a log line or `zmesh check` needs to explain it.
type Decision struct {
	// Allow reports whether the request may proceed.
	Allow bool
	// Action is the action of the policy that decided, ActionNone when a
	// default decided.
	Action Action
	// Policy is "NAMESPACE/NAME" of the deciding policy, "" for a default.
	Policy string
	// Rule is the index of the deciding rule in that policy's rules, -1 when
	// no rule decided.
	Rule int
	// Reason explains the decision in one human-readable phrase, e.g.
	// "denied by policy foo/deny-admin rule 0" or "no ALLOW policy matched".
	// It names policies: log it, never send it to the caller.
	Reason string
	// Custom names the extension provider of the first matching CUSTOM
	// policy, "" when none matched. See [Engine.Custom].
	Custom string
	// Audit reports that an AUDIT policy matched; AuditPolicy names the
	// first such policy.
	Audit       bool
	AuditPolicy string
	// DryRun is what the decision would have been had the dry-run policies
	// been enforced too. DryRun.Evaluated is false when the workload has no
	// dry-run policy.
	DryRun DryRun
}

// DryRun is the would-be result of enforcing the istio.io/dry-run policies
// together with the enforced ones.
type DryRun struct {
	Evaluated bool
	Allow     bool
	Action    Action
	Policy    string
	Rule      int
	Reason    string
}

// Reasons of the default decisions.
const (
	reasonNoAllowPolicies = "no ALLOW policy for the workload"
	reasonNoAllowMatched  = "no ALLOW policy matched"
)
