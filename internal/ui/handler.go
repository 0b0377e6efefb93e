package ui

import (
	"context"
	"encoding/json"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"

	"github.com/zmesh/zmesh/internal/check"
)

// maxCheckBody bounds a check request.
const maxCheckBody = 64 << 10

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	// Model returns the current Model; required.
	Model func(context.Context) *Model
	// Check decides a request as `zmesh check` would; required.
	Check func(context.Context, *check.Input) (check.Output, error)
}

// Handler serves the web view: GET / (the page), GET /ui/mesh.json (the
// Model) and POST /ui/check (check.Input in, check.Output out).
//
// It answers only requests whose Host is an IP address or localhost, so a
// web page elsewhere cannot reach it through DNS rebinding, and a check
// only as JSON, which a page of another origin cannot send without a
// preflight that is refused.
type Handler struct {
	cfg HandlerConfig
	mux *http.ServeMux
}

// NewHandler returns the Handler for cfg.
func NewHandler(cfg HandlerConfig) *Handler {
	h := &Handler{cfg: cfg, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /{$}", h.page)
	h.mux.HandleFunc("GET /ui/mesh.json", h.model)
	h.mux.HandleFunc("POST /ui/check", h.check)
	return h
}

// Register mounts the handler's routes on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.Handle("GET /{$}", h)
	mux.Handle("GET /ui/mesh.json", h)
	mux.Handle("POST /ui/check", h)
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !localHost(r.Host) {
		http.Error(w, "the web view answers only to an IP address or localhost", http.StatusMisdirectedRequest)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	h.mux.ServeHTTP(w, r)
}

// localHost reports whether a Host header names an IP address or
// localhost, with or without a port.
func localHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return host == "localhost" || net.ParseIP(host) != nil
}

func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	body := Render(h.cfg.Model(r.Context()))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", ContentSecurityPolicy)
	_, _ = w.Write(body)
}

func (h *Handler) model(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, h.cfg.Model(r.Context()))
}

func (h *Handler) check(w http.ResponseWriter, r *http.Request) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]string{"error": "send the request description as application/json"})
		return
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxCheckBody+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "cannot read the request description"})
		return
	}
	if len(data) > maxCheckBody {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "request description too large"})
		return
	}
	in, err := check.ParseInput(data)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	out, err := h.cfg.Check(r.Context(), in)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
