package config

import (
	"errors"
	"strings"
	"testing"
)

// Documents for the Reload tests: a policy in namespace web, its bad edit,
// and one in namespace api.
const (
	webAllow   = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: web}\nspec: {rules: [{from: [{source: {principals: [cluster.local/ns/web/sa/a]}}]}]}\n"
	webAllowV2 = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: web}\nspec: {rules: [{from: [{source: {principals: [cluster.local/ns/web/sa/b]}}]}]}\n"
	webBad     = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: web}\nspec: {rules: [{to: [{operation: {method: [GET]}}]}]}\n"
	apiAllow   = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: api}\nspec: {rules: [{from: [{source: {namespaces: [web]}}]}]}\n"
	apiDeny    = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow, namespace: api}\nspec: {action: DENY, rules: [{from: [{source: {namespaces: [web]}}]}]}\n"
	brokenYAML = "apiVersion: security.istio.io/v1\nkind: [\n"
)

// principals returns, for each AuthorizationPolicy in snap, a short
// description of what it is: NAMESPACE/NAME and its action.
func inForce(snap *Snapshot) map[string]string {
	out := map[string]string{}
	for _, r := range snap.All() {
		out[string(r.Kind)+" "+r.Key()] = r.Source
	}
	return out
}

func TestReload(t *testing.T) {
	type want struct {
		inForce  map[string]string // "KIND NS/NAME" -> source of the version in force
		rejected []string          // "SOURCE kept" or "SOURCE", in order
	}
	tests := []struct {
		name       string
		before     map[string][]byte // loaded first; nil: no previous snapshot
		after      map[string][]byte
		unreadable map[string]error
		want       want
	}{
		{
			name:   "a bad edit of one resource keeps its last good version; other edits apply",
			before: map[string][]byte{"web.yaml": []byte(webAllow), "api.yaml": []byte(apiAllow)},
			after:  map[string][]byte{"web.yaml": []byte(webBad), "api.yaml": []byte(apiDeny)},
			want: want{
				inForce:  map[string]string{"AuthorizationPolicy web/allow": "web.yaml#1", "AuthorizationPolicy api/allow": "api.yaml#1"},
				rejected: []string{"web.yaml#1 kept"},
			},
		},
		{
			name:  "a bad resource without a previous version is left out alone",
			after: map[string][]byte{"web.yaml": []byte(webBad), "api.yaml": []byte(apiAllow)},
			want: want{
				inForce:  map[string]string{"AuthorizationPolicy api/allow": "api.yaml#1"},
				rejected: []string{"web.yaml#1"},
			},
		},
		{
			name:   "a bad document leaves the other documents of its file applied",
			before: map[string][]byte{"all.yaml": []byte(webAllow + "---\n" + apiAllow)},
			after:  map[string][]byte{"all.yaml": []byte(webBad + "---\n" + apiDeny)},
			want: want{
				inForce:  map[string]string{"AuthorizationPolicy web/allow": "all.yaml#1", "AuthorizationPolicy api/allow": "all.yaml#2"},
				rejected: []string{"all.yaml#1 kept"},
			},
		},
		{
			name:   "a document too broken to name what it defines keeps what its file held",
			before: map[string][]byte{"web.yaml": []byte(webAllow + "---\n" + strictPA), "api.yaml": []byte(apiAllow)},
			after:  map[string][]byte{"web.yaml": []byte(brokenYAML + "---\n" + webAllowV2), "api.yaml": []byte(apiDeny)},
			want: want{
				// web/allow has a valid new version; the PeerAuthentication
				// the broken document may have been is kept.
				inForce: map[string]string{"AuthorizationPolicy web/allow": "web.yaml#2", "PeerAuthentication istio-system/default": "web.yaml#2",
					"AuthorizationPolicy api/allow": "api.yaml#1"},
				rejected: []string{"web.yaml#1 kept"},
			},
		},
		{
			name:       "an unreadable file keeps what it held",
			before:     map[string][]byte{"web.yaml": []byte(webAllow), "api.yaml": []byte(apiAllow)},
			after:      map[string][]byte{"api.yaml": []byte(apiDeny)},
			unreadable: map[string]error{"web.yaml": errors.New("too large")},
			want: want{
				inForce:  map[string]string{"AuthorizationPolicy web/allow": "web.yaml#1", "AuthorizationPolicy api/allow": "api.yaml#1"},
				rejected: []string{"web.yaml kept"},
			},
		},
		{
			name:   "a removed file's resources go",
			before: map[string][]byte{"web.yaml": []byte(webAllow), "api.yaml": []byte(apiAllow)},
			after:  map[string][]byte{"api.yaml": []byte(apiAllow)},
			want:   want{inForce: map[string]string{"AuthorizationPolicy api/allow": "api.yaml#1"}},
		},
		{
			name:   "two definitions of one resource: neither is taken, the last good stays",
			before: map[string][]byte{"a.yaml": []byte(webAllow)},
			after:  map[string][]byte{"a.yaml": []byte(webAllow), "b.yaml": []byte(webAllowV2)},
			want: want{
				inForce:  map[string]string{"AuthorizationPolicy web/allow": "a.yaml#1"},
				rejected: []string{"a.yaml#1 kept", "b.yaml#1 kept"},
			},
		},
		{
			name:   "a resource moved out of a file broken meanwhile takes its new version",
			before: map[string][]byte{"a.yaml": []byte(webAllow)},
			after:  map[string][]byte{"a.yaml": []byte(brokenYAML), "b.yaml": []byte(webAllowV2)},
			want: want{
				inForce:  map[string]string{"AuthorizationPolicy web/allow": "b.yaml#1"},
				rejected: []string{"a.yaml#1"},
			},
		},
		{
			name:   "a file over the size limit keeps what it held",
			before: map[string][]byte{"web.yaml": []byte(webAllow)},
			after:  map[string][]byte{"web.yaml": []byte(webAllow + "#" + strings.Repeat("x", MaxInputSize))},
			want: want{
				inForce:  map[string]string{"AuthorizationPolicy web/allow": "web.yaml#1"},
				rejected: []string{"web.yaml kept"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prev *Snapshot
			if tt.before != nil {
				var err error
				if prev, _, err = Load(tt.before); err != nil {
					t.Fatal(err)
				}
			}
			snap, _, rejected := Reload(prev, tt.after, tt.unreadable)
			got := inForce(snap)
			if len(got) != len(tt.want.inForce) {
				t.Errorf("in force: %v, want %v", got, tt.want.inForce)
			}
			for k, src := range tt.want.inForce {
				if got[k] != src {
					t.Errorf("%s in force from %q, want %q (all: %v)", k, got[k], src, got)
				}
			}
			var rej []string
			for _, r := range rejected {
				s := r.Source
				if r.Kept {
					s += " kept"
				}
				rej = append(rej, s)
			}
			if strings.Join(rej, ",") != strings.Join(tt.want.rejected, ",") {
				t.Errorf("rejected = %v, want %v (%v)", rej, tt.want.rejected, rejected)
			}
			if snap.Version != Version(snap.All()) {
				t.Errorf("Version %s is not the content's", snap.Version)
			}
		})
	}
}

// TestReloadKeepsARevocationApplicable is the attack the per-resource
// rejection exists for: a broken resource in one namespace must not stop
// a revocation in another from taking effect.
func TestReloadKeepsARevocationApplicable(t *testing.T) {
	prev, _, err := Load(map[string][]byte{"web.yaml": []byte(webAllow), "api.yaml": []byte(apiAllow)})
	if err != nil {
		t.Fatal(err)
	}
	snap, _, rejected := Reload(prev, map[string][]byte{"web.yaml": []byte(webBad), "api.yaml": []byte(strictPA)}, nil)
	if len(snap.List(KindAuthorizationPolicy)) != 1 || snap.List(KindAuthorizationPolicy)[0].Key() != "web/allow" {
		t.Errorf("policies in force: %v, want web/allow alone (api/allow revoked)", inForce(snap))
	}
	if len(rejected) != 1 || rejected[0].Key != "web/allow" || !strings.Contains(rejected[0].Error(), `unknown field "method"`) {
		t.Errorf("rejected = %v", rejected)
	}
}
