package client

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/zmesh/zmesh/internal/extauthz"
)

// TestHTTPCheckRequestPath: the check request carries pathPrefix + the
// normalized path byte for byte; a path that does not unescape is refused
// (errCheckPath, answered 400 whatever failOpen says) instead of being
// sent re-escaped, a path other than the one the app would get.
func TestHTTPCheckRequestPath(t *testing.T) {
	hp := &extauthz.HTTPProvider{PathPrefix: "/check"}
	r := httptest.NewRequest("GET", "http://backend.api/x?q=1", nil)
	for _, tc := range []struct {
		path, want string
	}{
		{"/a/b", "/check/a/b?q=1"},
		{"/a%2Fb%25", "/check/a%2Fb%25?q=1"},
		{"/caf%C3%A9", "/check/caf%C3%A9?q=1"},
		{"/a%zz", ""},
		{"/a%2", ""},
	} {
		req, err := httpRequest(hp, context.Background(), r, "127.0.0.1:1", false, tc.path, nil, false)
		if tc.want == "" {
			if !errors.Is(err, errCheckPath) {
				t.Errorf("path %q: got %v, want errCheckPath", tc.path, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("path %q: %v", tc.path, err)
		}
		if got := req.URL.RequestURI(); got != tc.want {
			t.Errorf("path %q: check request for %q, want %q", tc.path, got, tc.want)
		}
	}
}
