package authz

// Engine is the compiled authorization model of one workload. It is
// immutable after Compile and safe for concurrent use; build a new one per
// config push.
type Engine struct {
	norm PathNormalization

	// The enforced policies, by action, in the order given to Compile.
	custom, deny, allow, audit []*policy
	// The same plus the dry-run policies: the would-be model.
	dryCustom, dryDeny, dryAllow []*policy
	hasDryRun                    bool
}

func (e *Engine) add(p *policy) {
	if p.dryRun {
		e.hasDryRun = true
	}
	// Istio does not dry-run CUSTOM policies; one annotated so is enforced
	// (it only routes matching requests to the provider).
	enforced := !p.dryRun || p.action == ActionCustom
	switch p.action {
	case ActionCustom:
		if enforced {
			e.custom = append(e.custom, p)
		}
		e.dryCustom = append(e.dryCustom, p)
	case ActionDeny:
		if enforced {
			e.deny = append(e.deny, p)
		}
		e.dryDeny = append(e.dryDeny, p)
	case ActionAllow:
		if enforced {
			e.allow = append(e.allow, p)
		}
		e.dryAllow = append(e.dryAllow, p)
	case ActionAudit:
		if enforced {
			e.audit = append(e.audit, p)
		}
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
	d := decide(&a, e.custom, e.deny, e.allow)
	if p, _ := firstMatch(e.audit, &a, false); p != nil {
		d.Audit, d.AuditPolicy = true, p.key
	}
	if e.hasDryRun {
		w := decide(&a, e.dryCustom, e.dryDeny, e.dryAllow)
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
	if len(e.custom) == 0 {
		return "", false
	}
	var a attrs
	if a.load(r, e.norm) != "" {
		return "", false
	}
	p, _ := firstMatch(e.custom, &a, false)
	if p == nil || p.invalidProvider {
		return "", false
	}
	return p.provider, true
}

// decide applies Istio's evaluation order: CUSTOM, DENY, then ALLOW.
func decide(a *attrs, custom, deny, allow []*policy) Decision {
	var d Decision
	if p, rl := firstMatch(custom, a, false); p != nil {
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
	if p, rl := firstMatch(deny, a, false); p != nil {
		return Decision{Action: ActionDeny, Policy: p.key, Rule: rl.index, Reason: rl.reason, Custom: d.Custom}
	}
	if len(allow) == 0 {
		return Decision{Allow: true, Rule: -1, Reason: reasonNoAllowPolicies, Custom: d.Custom}
	}
	if p, rl := firstMatch(allow, a, true); p != nil {
		return Decision{Allow: true, Action: ActionAllow, Policy: p.key, Rule: rl.index, Reason: rl.reason, Custom: d.Custom}
	}
	return Decision{Rule: -1, Reason: reasonNoAllowMatched, Custom: d.Custom}
}

// firstMatch returns the first policy, and its first rule, that matches.
// strict selects Istio's ALLOW treatment of HTTP-only rules on TCP.
func firstMatch(ps []*policy, a *attrs, strict bool) (*policy, *rule) {
	for _, p := range ps {
		for i := range p.rules {
			if p.rules[i].match(a, strict) {
				return p, &p.rules[i]
			}
		}
	}
	return nil, nil
}
