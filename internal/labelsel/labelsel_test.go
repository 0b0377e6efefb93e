package labelsel_test

import (
	"testing"

	"github.com/zmesh/zmesh/internal/labelsel"
)

func TestMatches(t *testing.T) {
	app := map[string]string{"app": "backend", "version": "v1"}
	for _, tc := range []struct {
		name     string
		selector map[string]string
		labels   map[string]string
		want     bool
	}{
		{"nil selector selects all", nil, app, true},
		{"empty selector selects all", map[string]string{}, app, true},
		{"nil selector, no labels", nil, nil, true},
		{"one key", map[string]string{"app": "backend"}, app, true},
		{"every key", map[string]string{"app": "backend", "version": "v1"}, app, true},
		{"other value", map[string]string{"version": "v2"}, app, false},
		{"missing key", map[string]string{"tier": "db"}, app, false},
		{"empty value is a value", map[string]string{"tier": ""}, app, false},
		{"empty value present", map[string]string{"tier": ""}, map[string]string{"tier": ""}, true},
		{"selector larger than labels", app, map[string]string{"app": "backend"}, false},
		{"no labels", map[string]string{"app": "backend"}, nil, false},
		{"values compare exactly", map[string]string{"app": "Backend"}, app, false},
	} {
		if got := labelsel.Matches(tc.selector, tc.labels); got != tc.want {
			t.Errorf("%s: Matches(%v, %v) = %v, want %v", tc.name, tc.selector, tc.labels, got, tc.want)
		}
	}
}
