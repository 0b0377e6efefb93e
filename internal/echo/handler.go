package echo

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Echo is the JSON answer to any request that is not for a special route:
// what the app saw of the request, after the proxies in front of it.
type Echo struct {
	Name       string              `json:"name"`
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Query      string              `json:"query,omitempty"`
	Host       string              `json:"host"`
	Proto      string              `json:"proto"`
	Headers    map[string][]string `json:"headers"` // canonical names, as received
	RemoteAddr string              `json:"remoteAddr"`
}

// Header values set on every response of a kind, shared so that the hot
// path does not allocate them per request.
var (
	contentTypeJSON  = []string{"application/json"}
	contentTypeText  = []string{"text/plain; charset=utf-8"}
	contentTypeOctet = []string{"application/octet-stream"}
	noSniff          = []string{"nosniff"}
)

// ServeHTTP routes a request to the health, size, call or echo handler.
// Routing is done by hand rather than with http.ServeMux so that paths
// are taken as sent (no cleaning or redirects): /call passes its tail on
// untouched.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/healthz":
		s.serveHealth(w, r)
	case strings.HasPrefix(p, "/size/"):
		s.serveSize(w, r, p[len("/size/"):])
	case strings.HasPrefix(p, "/call/"):
		s.serveCall(w, r)
	default:
		s.serveEcho(w, r)
	}
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if !allowRead(w, r) {
		return
	}
	w.Header()["Content-Type"] = contentTypeText
	_, _ = w.Write([]byte("ok\n"))
}

func (s *Server) serveEcho(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, Echo{
		Name:       s.name,
		Method:     r.Method,
		Path:       r.URL.Path,
		Query:      r.URL.RawQuery,
		Host:       r.Host,
		Proto:      r.Proto,
		Headers:    r.Header,
		RemoteAddr: r.RemoteAddr,
	})
}

// allowRead answers 405 and returns false unless r is a GET or HEAD.
func allowRead(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	return false
}

// errorBody is the JSON answer of every failed request.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, errorBody{Error: msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil { // only unsupported values fail; none of ours can
		http.Error(w, "echo: encode answer: "+err.Error(), http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	h := w.Header()
	h["Content-Type"] = contentTypeJSON
	h["X-Content-Type-Options"] = noSniff
	w.WriteHeader(code)
	_, _ = w.Write(b)
}
