package identity

import (
	"errors"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var td = spiffeid.RequireTrustDomainFromString("cluster.local")

func TestForServiceAccount(t *testing.T) {
	tests := []struct {
		name    string
		ns, sa  string
		want    string
		wantErr bool
	}{
		{name: "simple names", ns: "foo", sa: "httpbin", want: "spiffe://cluster.local/ns/foo/sa/httpbin"},
		{name: "service account may be a subdomain", ns: "foo", sa: "a.b-c", want: "spiffe://cluster.local/ns/foo/sa/a.b-c"},
		{name: "digits are fine", ns: "0a9", sa: "1", want: "spiffe://cluster.local/ns/0a9/sa/1"},
		{name: "empty namespace is refused", ns: "", sa: "x", wantErr: true},
		{name: "empty service account is refused", ns: "x", sa: "", wantErr: true},
		{name: "uppercase is refused", ns: "Foo", sa: "x", wantErr: true},
		{name: "slash cannot add path segments", ns: "foo", sa: "x/sa/admin", wantErr: true},
		{name: "slash in namespace is refused", ns: "a/b", sa: "x", wantErr: true},
		{name: "leading dash is refused", ns: "-a", sa: "x", wantErr: true},
		{name: "trailing dash is refused", ns: "a", sa: "x-", wantErr: true},
		{name: "dot in namespace is refused", ns: "a.b", sa: "x", wantErr: true},
		{name: "empty label in service account is refused", ns: "a", sa: "x..y", wantErr: true},
		{name: "namespace over 63 characters is refused", ns: strings.Repeat("a", 64), sa: "x", wantErr: true},
		{name: "namespace of 63 characters is fine", ns: strings.Repeat("a", 63), sa: "x", want: "spiffe://cluster.local/ns/" + strings.Repeat("a", 63) + "/sa/x"},
		{name: "percent escapes are refused", ns: "a%2f", sa: "x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := ForServiceAccount(td, tt.ns, tt.sa)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ForServiceAccount(%q, %q) = %s, want error", tt.ns, tt.sa, id)
				}
				return
			}
			if err != nil {
				t.Fatalf("ForServiceAccount: %v", err)
			}
			if id.String() != tt.want {
				t.Fatalf("got %s, want %s", id, tt.want)
			}
			ns, sa, err := ServiceAccountOf(id)
			if err != nil || ns != tt.ns || sa != tt.sa {
				t.Fatalf("ServiceAccountOf round trip = %q, %q, %v", ns, sa, err)
			}
		})
	}
}

func TestForServiceAccountZeroTrustDomain(t *testing.T) {
	if _, err := ForServiceAccount(spiffeid.TrustDomain{}, "a", "b"); err == nil {
		t.Fatal("want error for zero trust domain")
	}
}

func TestServiceAccountOf(t *testing.T) {
	tests := []struct {
		name   string
		id     string
		ns, sa string
		ok     bool
	}{
		{name: "service account ID", id: "spiffe://cluster.local/ns/foo/sa/bar", ns: "foo", sa: "bar", ok: true},
		{name: "other trust domain still parses", id: "spiffe://example.org/ns/foo/sa/bar", ns: "foo", sa: "bar", ok: true},
		{name: "extra segment", id: "spiffe://cluster.local/ns/foo/sa/bar/baz"},
		{name: "missing sa", id: "spiffe://cluster.local/ns/foo"},
		{name: "swapped keywords", id: "spiffe://cluster.local/sa/foo/ns/bar"},
		{name: "trust domain only", id: "spiffe://cluster.local"},
		{name: "invalid namespace", id: "spiffe://cluster.local/ns/FOO/sa/bar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, sa, err := ServiceAccountOf(spiffeid.RequireFromString(tt.id))
			if !tt.ok {
				if !errors.Is(err, ErrNotServiceAccount) {
					t.Fatalf("ServiceAccountOf(%s) err = %v, want ErrNotServiceAccount", tt.id, err)
				}
				return
			}
			if err != nil || ns != tt.ns || sa != tt.sa {
				t.Fatalf("ServiceAccountOf(%s) = %q, %q, %v", tt.id, ns, sa, err)
			}
		})
	}
	if _, _, err := ServiceAccountOf(spiffeid.ID{}); !errors.Is(err, ErrNotServiceAccount) {
		t.Fatalf("zero ID: err = %v", err)
	}
}

func TestPrincipal(t *testing.T) {
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/foo/sa/bar")
	if got := Principal(id); got != "cluster.local/ns/foo/sa/bar" {
		t.Fatalf("Principal = %q", got)
	}
	back, err := FromPrincipal(Principal(id))
	if err != nil || back != id {
		t.Fatalf("FromPrincipal = %s, %v", back, err)
	}
	for _, bad := range []string{"spiffe://cluster.local/ns/a/sa/b", "", "UPPER/ns/a"} {
		if _, err := FromPrincipal(bad); err == nil {
			t.Errorf("FromPrincipal(%q): want error", bad)
		}
	}
}

func TestServiceAccountURI(t *testing.T) {
	for _, tc := range []struct {
		td, ns, sa, want string
		wantErr          bool
	}{
		{td: "cluster.local", ns: "web", sa: "frontend", want: "spiffe://cluster.local/ns/web/sa/frontend"},
		{td: "example.org", ns: "a", sa: "b.c", want: "spiffe://example.org/ns/a/sa/b.c"},
		{td: "", ns: "web", sa: "frontend", wantErr: true},
		{td: "Bad Domain", ns: "web", sa: "frontend", wantErr: true},
		{td: "cluster.local", ns: "web", sa: "x/../../ns/kube-system/sa/admin", wantErr: true},
		{td: "cluster.local", ns: "WEB", sa: "frontend", wantErr: true},
	} {
		got, err := ServiceAccountURI(tc.td, tc.ns, tc.sa)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ServiceAccountURI(%q, %q, %q) = %q, %v; want %q (error %v)", tc.td, tc.ns, tc.sa, got, err, tc.want, tc.wantErr)
		}
	}
}
