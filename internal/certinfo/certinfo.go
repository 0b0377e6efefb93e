package certinfo

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/zmesh/zmesh/internal/pemcert"
)

// Cert describes one certificate of a chain.
type Cert struct {
	SPIFFEID  string    `json:"spiffeId,omitempty"`
	Subject   string    `json:"subject"`
	Issuer    string    `json:"issuer"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	KeyType   string    `json:"keyType"`
	Serial    string    `json:"serial"`
	IsCA      bool      `json:"isCA"`
	// Root is the 1-based index in the bundle of the root the certificate
	// chains to (itself, for a root); 0 if it chains to none.
	Root int `json:"root"`
	// RootSubject is that root's subject.
	RootSubject string `json:"rootSubject,omitempty"`
}

// maxDepth bounds the walk up a chain.
const maxDepth = 10

// Describe describes each certificate of chain (leaf first), finding the
// root each chains to among roots by signature, through the other
// certificates of chain. It ignores validity periods, so an expired chain
// still shows where it leads.
func Describe(chain, roots []*x509.Certificate) []Cert {
	out := make([]Cert, len(chain))
	for i, c := range chain {
		d := Cert{
			Subject:   c.Subject.String(),
			Issuer:    c.Issuer.String(),
			NotBefore: c.NotBefore.UTC(),
			NotAfter:  c.NotAfter.UTC(),
			KeyType:   KeyType(c.PublicKey),
			Serial:    c.SerialNumber.Text(16),
			IsCA:      c.IsCA,
		}
		for _, u := range c.URIs {
			if u.Scheme == "spiffe" {
				d.SPIFFEID = u.String()
				break
			}
		}
		if r := rootOf(c, chain, roots); r >= 0 {
			d.Root, d.RootSubject = r+1, roots[r].Subject.String()
		}
		out[i] = d
	}
	return out
}

// rootOf walks up from c through chain to a certificate of roots and
// returns its index, or -1.
func rootOf(c *x509.Certificate, chain, roots []*x509.Certificate) int {
	for range maxDepth {
		for i, r := range roots {
			if c.Equal(r) || bytes.Equal(c.RawIssuer, r.RawSubject) && c.CheckSignatureFrom(r) == nil {
				return i
			}
		}
		var parent *x509.Certificate
		for _, p := range chain {
			if p != c && !p.Equal(c) && bytes.Equal(c.RawIssuer, p.RawSubject) && c.CheckSignatureFrom(p) == nil {
				parent = p
				break
			}
		}
		if parent == nil {
			return -1
		}
		c = parent
	}
	return -1
}

// KeyType names a public key: "ECDSA P-256", "RSA 2048", "Ed25519".
func KeyType(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return "ECDSA " + k.Curve.Params().Name
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA %d", k.N.BitLen())
	case ed25519.PublicKey:
		return "Ed25519"
	default:
		return fmt.Sprintf("%T", pub)
	}
}

// Write prints certs as text, with lifetimes relative to now.
func Write(w io.Writer, certs []Cert, roots []*x509.Certificate, now time.Time) error {
	var b strings.Builder
	for i, c := range certs {
		name := c.SPIFFEID
		if name == "" {
			name = c.Subject
		}
		fmt.Fprintf(&b, "certificate %d of %d: %s\n", i+1, len(certs), name)
		if c.SPIFFEID != "" && c.Subject != "" {
			fmt.Fprintf(&b, "  subject:    %s\n", c.Subject)
		}
		fmt.Fprintf(&b, "  issuer:     %s\n", c.Issuer)
		fmt.Fprintf(&b, "  not before: %s\n", c.NotBefore.Format(time.RFC3339))
		fmt.Fprintf(&b, "  not after:  %s (%s)\n", c.NotAfter.Format(time.RFC3339), remaining(c.NotAfter, now))
		kind := ""
		if c.IsCA {
			kind = ", CA"
		}
		fmt.Fprintf(&b, "  key:        %s%s\n", c.KeyType, kind)
		fmt.Fprintf(&b, "  serial:     %s\n", c.Serial)
		switch {
		case len(roots) == 0:
			fmt.Fprintf(&b, "  chains to:  (no bundle given)\n")
		case c.Root == 0:
			fmt.Fprintf(&b, "  chains to:  NONE of the %d bundle roots\n", len(roots))
		default:
			fmt.Fprintf(&b, "  chains to:  root %d of %d (%s)\n", c.Root, len(roots), c.RootSubject)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func remaining(notAfter, now time.Time) string {
	d := notAfter.Sub(now)
	if d <= 0 {
		return "EXPIRED " + Duration(-d) + " ago"
	}
	return "expires in " + Duration(d)
}

// Duration writes d as a person reads a lifetime: its two largest units,
// "3d 15h", "15h 4m", "4m 10s", "10s", "90y 15d" (a year is 365 days),
// rounded down to the second; Go's "87599h59m29s" is for machines.
func Duration(d time.Duration) string {
	if d < 0 {
		return "-" + Duration(-d)
	}
	s := int64(d / time.Second)
	units := []struct {
		name string
		secs int64
	}{{"y", 365 * 86400}, {"d", 86400}, {"h", 3600}, {"m", 60}, {"s", 1}}
	for i, u := range units {
		if s < u.secs && u.secs > 1 {
			continue
		}
		out := fmt.Sprintf("%d%s", s/u.secs, u.name)
		if i+1 < len(units) {
			next := units[i+1]
			if r := (s % u.secs) / next.secs; r > 0 {
				out += fmt.Sprintf(" %d%s", r, next.name)
			}
		}
		return out
	}
	return "0s"
}

// maxPEM bounds a PEM input.
const maxPEM = 1 << 20

// ParsePEM returns every CERTIFICATE block of data, in order; a key in the
// same file is skipped, never printed. It bounds data, which may be any file
// an operator points `zmesh cert inspect` at.
func ParsePEM(data []byte) ([]*x509.Certificate, error) {
	if len(data) > maxPEM {
		return nil, fmt.Errorf("certinfo: input larger than %d bytes", maxPEM)
	}
	certs, err := pemcert.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("certinfo: %w", err)
	}
	return certs, nil
}

// SelfSigned returns the self-signed CA certificates of certs: the roots a
// chain file carries at its end, used when no bundle is given.
func SelfSigned(certs []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if c.IsCA && bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil {
			out = append(out, c)
		}
	}
	return out
}
