package controlplane

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestProfilesOnlyWhenAsked: the admin port serves Go's profiles only with
// Config.Profiling, and bounds a CPU profile's length.
func TestProfilesOnlyWhenAsked(t *testing.T) {
	get := func(h http.Handler, path string) (int, int) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body, _ := io.ReadAll(rec.Body)
		return rec.Code, len(body)
	}
	withProfiles := http.NewServeMux()
	registerProfiling(withProfiles)
	if code, n := get(withProfiles, "/debug/pprof/heap"); code != http.StatusOK || n == 0 {
		t.Errorf("heap profile: %d, %d bytes", code, n)
	}
	if code, n := get(withProfiles, "/debug/pprof/profile?seconds=1"); code != http.StatusOK || n == 0 {
		t.Errorf("CPU profile: %d, %d bytes", code, n)
	}
	for _, path := range []string{"/debug/pprof/profile?seconds=0", "/debug/pprof/profile?seconds=3600", "/debug/pprof/profile?seconds=x"} {
		if code, _ := get(withProfiles, path); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", path, code)
		}
	}
	if code, _ := get(withProfiles, "/debug/pprof/nonesuch"); code != http.StatusNotFound {
		t.Errorf("unknown profile: %d, want 404", code)
	}
	without := adminHandler(nil, nil, nil, false)
	if code, _ := get(without, "/debug/pprof/heap"); code != http.StatusNotFound {
		t.Errorf("heap profile without Profiling: %d, want 404", code)
	}
}
