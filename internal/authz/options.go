package authz

import "fmt"

// Options configures how policies are compiled: the mesh settings Istio
// takes from MeshConfig. The zero value is Istio's default mesh
// (trust domain cluster.local, BASE path normalization, any provider name).
type Options struct {
	// TrustDomain is the mesh trust domain; "" means "cluster.local".
	TrustDomain string
	// TrustDomainAliases are the other trust domains this mesh accepts as
	// its own (trust domain migration). A principal in a policy written
	// with the trust domain, one of its aliases, or "cluster.local" matches
	// peers of any of them.
	TrustDomainAliases []string
	// PathNormalization is applied to request paths before matching.
	PathNormalization PathNormalization
	// Providers, when not nil, lists the extension providers known to the
	// mesh (MeshConfig extensionProviders). A CUSTOM policy naming another
	// provider denies the requests it matches, as Istio does.
	Providers []string
}

// PathNormalization is Istio's MeshConfig pathNormalization: how request
// paths are normalized before policies match them (and before they are
// forwarded, which is the proxy's job: see [NormalizePath]).
type PathNormalization uint8

// Path normalizations. The zero value is BASE, Istio's default.
const (
	// NormalizeBase applies RFC 3986 normalization as Envoy's normalize_path
	// does: decode percent-encoded unreserved characters, turn "\" into "/",
	// resolve "." and ".." segments.
	NormalizeBase PathNormalization = iota
	// NormalizeMergeSlashes is BASE, then runs of "/" merged into one.
	NormalizeMergeSlashes
	// NormalizeDecodeAndMergeSlashes also decodes %2F and %5C first.
	NormalizeDecodeAndMergeSlashes
	// NormalizeNone matches the path as received (query removed). Istio
	// documents it as vulnerable (CVE-2021-31920); it exists for parity.
	NormalizeNone
)

var normalizationNames = [...]string{"BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES", "NONE"}

// String returns MeshConfig's spelling of the normalization.
func (n PathNormalization) String() string {
	if int(n) < len(normalizationNames) {
		return normalizationNames[n]
	}
	return "UNKNOWN"
}

// ParsePathNormalization parses MeshConfig's spelling ("BASE",
// "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES", "NONE"; "" and "DEFAULT" mean
// BASE).
func ParsePathNormalization(s string) (PathNormalization, error) {
	switch s {
	case "", "DEFAULT", "BASE":
		return NormalizeBase, nil
	case "MERGE_SLASHES":
		return NormalizeMergeSlashes, nil
	case "DECODE_AND_MERGE_SLASHES":
		return NormalizeDecodeAndMergeSlashes, nil
	case "NONE":
		return NormalizeNone, nil
	}
	return 0, fmt.Errorf("authz: unknown path normalization %q", s)
}

const defaultTrustDomain = "cluster.local"
