package authz

// Engine is the compiled authorization model of one workload. It is
// immutable after Compile and safe for concurrent use; build a new one per
// config push.
type Engine struct {
	norm PathNormalization

	// The enforced policies, by action, in the order given to Compile.
	custom, deny, allow, audit ruleSet
	hasAllow                   bool
	// The same plus the dry-run policies: the would-be model.
	dryCustom, dryDeny, dryAllow ruleSet
	dryHasAllow, hasDryRun       bool
}

// model is the policies of an Engine, by action, before indexing.
type model struct {
	custom, deny, allow, audit   []*policy
	dryCustom, dryDeny, dryAllow []*policy
	hasDryRun                    bool
}

func (m *model) add(p *policy) {
	if p.dryRun {
		m.hasDryRun = true
	}
	// Istio does not dry-run CUSTOM policies; one annotated so is enforced
	// (it only routes matching requests to the provider).
	enforced := !p.dryRun || p.action == ActionCustom
	switch p.action {
	case ActionCustom:
		if enforced {
			m.custom = append(m.custom, p)
		}
		m.dryCustom = append(m.dryCustom, p)
	case ActionDeny:
		if enforced {
			m.deny = append(m.deny, p)
		}
		m.dryDeny = append(m.dryDeny, p)
	case ActionAllow:
		if enforced {
			m.allow = append(m.allow, p)
		}
		m.dryAllow = append(m.dryAllow, p)
	case ActionAudit:
		if enforced {
			m.audit = append(m.audit, p)
		}
	}
}

func newEngine(m *model, n PathNormalization) *Engine {
	return &Engine{
		norm:        n,
		custom:      newRuleSet(m.custom, false),
		deny:        newRuleSet(m.deny, false),
		allow:       newRuleSet(m.allow, true),
		audit:       newRuleSet(m.audit, false),
		hasAllow:    len(m.allow) > 0,
		dryCustom:   newRuleSet(m.dryCustom, false),
		dryDeny:     newRuleSet(m.dryDeny, false),
		dryAllow:    newRuleSet(m.dryAllow, true),
		dryHasAllow: len(m.dryAllow) > 0,
		hasDryRun:   m.hasDryRun,
	}
}

// Decide authorizes one connection or request. It performs no I/O and, for
// a request whose path is already normalized, allocates nothing.
//
// If a CUSTOM policy matches, r.CustomVerdict must carry the provider's
// answer (see [Engine.Custom]); without it the request is denied.
func (e *Engine) Decide(r *Request) Decision {
	var a attrs
	if reason := a.load(r, e.norm); reason != "" {
		return Decision{Rule: -1, Reason: reason}
	}
	d := decide(&a, &e.custom, &e.deny, &e.allow, e.hasAllow)
	if p, _ := e.audit.first(&a); p != nil {
		d.Audit, d.AuditPolicy = true, p.key
	}
	if e.hasDryRun {
		w := decide(&a, &e.dryCustom, &e.dryDeny, &e.dryAllow, e.dryHasAllow)
		d.DryRun = DryRun{Evaluated: true, Allow: w.Allow, Action: w.Action, Policy: w.Policy, Rule: w.Rule, Reason: w.Reason}
	}
	return d
}

// Custom returns the extension provider that must authorize r before
// Decide can, and true; or "", false when no CUSTOM policy matches r (or
// the matching one is unusable, which Decide reports as a denial). The
// caller asks the provider (Envoy's ext_authz API), records the answer in
// r.CustomVerdict, treating an unreachable provider as CustomDeny or leaving
// CustomUnknown, and then calls Decide.
func (e *Engine) Custom(r *Request) (provider string, ok bool) {
	if len(e.custom.refs) == 0 {
		return "", false
	}
	var a attrs
	if a.load(r, e.norm) != "" {
		return "", false
	}
	p, _ := e.custom.first(&a)
	if p == nil || p.invalidProvider {
		return "", false
	}
	return p.provider, true
}

// decide applies Istio's evaluation order: CUSTOM, DENY, then ALLOW.
func decide(a *attrs, custom, deny, allow *ruleSet, hasAllow bool) Decision {
	var d Decision
	if p, rl := custom.first(a); p != nil {
		d = Decision{Action: ActionCustom, Policy: p.key, Rule: rl.index, Custom: p.provider}
		switch {
		case p.invalidProvider:
			d.Reason = rl.reasonInvalid
			return d
		case a.r.CustomVerdict == CustomDeny:
			d.Reason = rl.reasonDenied
			return d
		case a.r.CustomVerdict != CustomAllow:
			d.Reason = rl.reasonUnasked
			return d
		}
	}
	if p, rl := deny.first(a); p != nil {
		return Decision{Action: ActionDeny, Policy: p.key, Rule: rl.index, Reason: rl.reason, Custom: d.Custom}
	}
	if !hasAllow {
		return Decision{Allow: true, Rule: -1, Reason: reasonNoAllowPolicies, Custom: d.Custom}
	}
	if p, rl := allow.first(a); p != nil {
		return Decision{Allow: true, Action: ActionAllow, Policy: p.key, Rule: rl.index, Reason: rl.reason, Custom: d.Custom}
	}
	return Decision{Rule: -1, Reason: reasonNoAllowMatched, Custom: d.Custom}
}
