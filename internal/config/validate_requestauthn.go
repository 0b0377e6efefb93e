package config

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"

	security "istio.io/api/security/v1beta1"
)

// validateRequestAuthentication applies istiod's RequestAuthentication
// rules and the CRD schema's.
func validateRequestAuthentication(c *checker, in *security.RequestAuthentication) {
	checkOneOfSelector(c, in.GetSelector(), in.GetTargetRef(), in.GetTargetRefs())
	checkSelector(c, "spec.selector", in.GetSelector())
	for i, rule := range in.GetJwtRules() {
		checkJWTRule(c, fmt.Sprintf("spec.jwtRules[%d]", i), rule)
	}
}

var headerName = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

func checkJWTRule(c *checker, path string, rule *security.JWTRule) {
	if rule.GetIssuer() == "" {
		c.errorf("%s.issuer: must be set", path)
	}
	checkNotEmpty(c, path+".audiences", rule.GetAudiences())
	if u := rule.GetJwksUri(); u != "" {
		if err := checkJWKSURI(u); err != nil {
			c.errorf("%s.jwksUri: %v", path, err)
		}
	}
	if rule.GetJwksUri() != "" && rule.GetJwks() != "" {
		c.errorf("%s: only one of jwks or jwksUri can be set", path)
	}
	if k := rule.GetJwks(); k != "" {
		if err := checkJWKS(k); err != nil {
			c.errorf("%s.jwks: %v", path, err)
		}
	}
	for i, h := range rule.GetFromHeaders() {
		if h.GetName() == "" {
			c.errorf("%s.fromHeaders[%d].name: must be set", path, i)
		}
	}
	checkNotEmpty(c, path+".fromParams", rule.GetFromParams())
	checkNotEmpty(c, path+".fromCookies", rule.GetFromCookies())
	checkNotEmpty(c, path+".spaceDelimitedClaims", rule.GetSpaceDelimitedClaims())
	seen := map[string]bool{}
	for i, o := range rule.GetOutputClaimToHeaders() {
		p := fmt.Sprintf("%s.outputClaimToHeaders[%d]", path, i)
		if o.GetHeader() == "" || o.GetClaim() == "" {
			c.errorf("%s: header and claim must be set", p)
			continue
		}
		if !headerName.MatchString(o.GetHeader()) {
			c.errorf("%s.header: %q is not a valid header name", p, o.GetHeader())
		}
		if seen[o.GetHeader()] {
			c.errorf("%s.header: %q is set twice", p, o.GetHeader())
		}
		seen[o.GetHeader()] = true
	}
	if t := rule.GetTimeout(); t != nil {
		if err := t.CheckValid(); err != nil || t.AsDuration() <= 0 {
			c.errorf("%s.timeout: must be a positive duration", path)
		}
	}
}

// checkJWKSURI requires an absolute http(s) URL with a host: the CRD's rule,
// and what a fetcher needs.
func checkJWKSURI(s string) error {
	if len(s) > 2048 {
		return fmt.Errorf("longer than 2048 characters")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("url must have scheme http:// or https://, not %q", u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("url %q has no host", s)
	}
	return nil
}

// checkJWKS checks that an inline key set is a JSON object with a "keys"
// list. The keys themselves are parsed where they are used (the JWT
// verifier); this catches the common mistakes of pasting a single key or a
// PEM block.
func checkJWKS(s string) error {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal([]byte(s), &set); err != nil {
		return fmt.Errorf("not a JSON Web Key Set: %v", err)
	}
	if set.Keys == nil {
		return fmt.Errorf("not a JSON Web Key Set: no \"keys\" list")
	}
	return nil
}
