package identity

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// ErrNotServiceAccount reports a SPIFFE ID whose path is not /ns/NS/sa/SA.
var ErrNotServiceAccount = errors.New("identity: SPIFFE ID is not of the form /ns/NAMESPACE/sa/SERVICE_ACCOUNT")

const (
	maxLabel     = 63
	maxSubdomain = 253
)

// ForServiceAccount returns spiffe://td/ns/ns/sa/sa. The namespace must be a
// DNS-1123 label and the service account a DNS-1123 subdomain, as Kubernetes
// requires, so that an ID built here can always be parsed back by
// ServiceAccountOf and never smuggles extra path segments.
func ForServiceAccount(td spiffeid.TrustDomain, ns, sa string) (spiffeid.ID, error) {
	if td.IsZero() {
		return spiffeid.ID{}, errors.New("identity: empty trust domain")
	}
	if err := validateNamespace(ns); err != nil {
		return spiffeid.ID{}, err
	}
	if err := validateServiceAccount(sa); err != nil {
		return spiffeid.ID{}, err
	}
	id, err := spiffeid.FromSegments(td, "ns", ns, "sa", sa)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity: build ID for %s/%s: %w", ns, sa, err)
	}
	return id, nil
}

// ServiceAccountURI is ForServiceAccount for a trust domain given as a
// string, returning the ID as the string the registry keeps.
func ServiceAccountURI(trustDomain, ns, sa string) (string, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return "", fmt.Errorf("identity: trust domain %q: %w", trustDomain, err)
	}
	id, err := ForServiceAccount(td, ns, sa)
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// ServiceAccountOf returns the namespace and service account named by id. It
// fails with ErrNotServiceAccount for any other path shape, so callers never
// grant a service account's rights to, say, spiffe://td/ns/a/sa/b/extra.
func ServiceAccountOf(id spiffeid.ID) (ns, sa string, err error) {
	if id.IsZero() {
		return "", "", fmt.Errorf("%w: empty ID", ErrNotServiceAccount)
	}
	parts := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" {
		return "", "", fmt.Errorf("%w: %q", ErrNotServiceAccount, id.String())
	}
	if err := validateNamespace(parts[1]); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrNotServiceAccount, err)
	}
	if err := validateServiceAccount(parts[3]); err != nil {
		return "", "", fmt.Errorf("%w: %v", ErrNotServiceAccount, err)
	}
	return parts[1], parts[3], nil
}

// Principal returns id in Istio's principal form, "cluster.local/ns/x/sa/y":
// the SPIFFE ID without its scheme, as AuthorizationPolicy principals and the
// source_principal metric label are written.
func Principal(id spiffeid.ID) string {
	return strings.TrimPrefix(id.String(), "spiffe://")
}

// FromPrincipal is the inverse of Principal.
func FromPrincipal(principal string) (spiffeid.ID, error) {
	if strings.Contains(principal, "://") {
		return spiffeid.ID{}, fmt.Errorf("identity: principal %q must not carry a scheme", principal)
	}
	id, err := spiffeid.FromString("spiffe://" + principal)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("identity: parse principal %q: %w", principal, err)
	}
	return id, nil
}

// ValidateServiceAccount reports whether ns and sa could name a workload: ns a
// DNS-1123 label, sa a DNS-1123 subdomain. Callers that do not yet know the
// trust domain (a token issuer, a flag parser) use it to fail early.
func ValidateServiceAccount(ns, sa string) error {
	if err := validateNamespace(ns); err != nil {
		return err
	}
	return validateServiceAccount(sa)
}

func validateNamespace(ns string) error {
	if err := dnsLabel(ns); err != nil {
		return fmt.Errorf("identity: namespace %q: %w", ns, err)
	}
	return nil
}

func validateServiceAccount(sa string) error {
	if sa == "" {
		return fmt.Errorf("identity: service account %q: empty", sa)
	}
	if len(sa) > maxSubdomain {
		return fmt.Errorf("identity: service account: longer than %d characters", maxSubdomain)
	}
	for _, label := range strings.Split(sa, ".") {
		if err := dnsLabel(label); err != nil {
			return fmt.Errorf("identity: service account %q: %w", sa, err)
		}
	}
	return nil
}

// dnsLabel checks a DNS-1123 label: 1-63 characters of [a-z0-9-], starting and
// ending with an alphanumeric.
func dnsLabel(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > maxLabel:
		return fmt.Errorf("longer than %d characters", maxLabel)
	case s[0] == '-' || s[len(s)-1] == '-':
		return errors.New("must start and end with a lowercase letter or digit")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return errors.New("may hold only lowercase letters, digits and '-'")
		}
	}
	return nil
}
