package controlplane

import (
	"fmt"
	"net/http"
	"runtime/pprof"
	"strconv"
	"time"
)

// maxProfileSeconds bounds a CPU profile request.
const maxProfileSeconds = 60

// registerProfiling serves Go's profiles under /debug/pprof/ (Config.
// Profiling): /debug/pprof/profile?seconds=N (CPU, default 10) and
// /debug/pprof/NAME for the runtime's named profiles (heap, goroutine,
// allocs, ...), in the format `go tool pprof` reads. It uses
// runtime/pprof, which the binary links anyway, rather than
// net/http/pprof, which adds ~0.7 MB to every zmesh process's binary.
func registerProfiling(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		secs := 10
		if s := r.URL.Query().Get("seconds"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxProfileSeconds {
				http.Error(w, fmt.Sprintf("seconds must be 1 to %d", maxProfileSeconds), http.StatusBadRequest)
				return
			}
			secs = n
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := pprof.StartCPUProfile(w); err != nil {
			http.Error(w, err.Error(), http.StatusConflict) // another profile is running
			return
		}
		select {
		case <-time.After(time.Duration(secs) * time.Second):
		case <-r.Context().Done():
		}
		pprof.StopCPUProfile()
	})
	mux.HandleFunc("GET /debug/pprof/{name}", func(w http.ResponseWriter, r *http.Request) {
		p := pprof.Lookup(r.PathValue("name"))
		if p == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		_ = p.WriteTo(w, 0)
	})
}
