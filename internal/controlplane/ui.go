package controlplane

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/zmesh/zmesh/internal/authz"
	"github.com/zmesh/zmesh/internal/ca"
	"github.com/zmesh/zmesh/internal/check"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/ui"
	"github.com/zmesh/zmesh/internal/xds"
	"github.com/zmesh/zmesh/internal/xds/server"
)

// webView is the control plane's web view (internal/ui), served on the
// admin port: its data is the registry, the xDS server's proxy status, the
// config in force and the proxies' own metrics, read while the page is
// open. It follows the mesh settings in force (setMesh) for the check
// form and policy selection.
type webView struct {
	cfg     webViewConfig
	mesh    atomic.Pointer[xds.Mesh]
	scraper *ui.Scraper
	live    *ui.Live
}

// webViewConfig is what the web view reads from.
type webViewConfig struct {
	ca     *ca.Authority
	xds    *server.Server
	reg    *registry.Store
	source configSource
	mesh   xds.Mesh // in force at start
}

func newWebView(cfg webViewConfig) *webView {
	v := &webView{cfg: cfg, scraper: ui.NewScraper(ui.ScraperConfig{})}
	v.mesh.Store(&cfg.mesh)
	v.live = ui.NewLive(ui.LiveConfig{Inputs: v.inputs, Scraper: v.scraper})
	return v
}

// setMesh records the mesh settings in force and pushes them to the
// proxies (the xDS server's SetMesh, which refuses some changes).
func (v *webView) setMesh(m xds.Mesh) error {
	if err := v.cfg.xds.SetMesh(m); err != nil {
		return err
	}
	v.mesh.Store(&m)
	return nil
}

func (v *webView) inputs() ui.Inputs {
	var proxies []ui.Proxy
	for _, s := range v.cfg.xds.Status() {
		proxies = append(proxies, ui.Proxy{ID: s.ID, Identity: s.Identity, Synced: s.Synced, AckedVersion: s.AckedVersion, LastNack: s.LastNack})
	}
	var cas []ui.CACert
	for _, r := range v.cfg.ca.Bundle() {
		cas = append(cas, ui.CACert{Role: "root", Subject: r.Subject.String(), NotAfter: r.NotAfter})
	}
	if c := v.cfg.ca.SigningCertificate(); c != nil {
		cas = append(cas, ui.CACert{Role: "signing", Subject: c.Subject.String(), NotAfter: c.NotAfter})
	}
	return ui.Inputs{Workloads: v.cfg.reg.Workloads(), Proxies: proxies, Snapshot: v.cfg.source.Current(), Mesh: *v.mesh.Load(), CA: cas}
}

// check decides in against the config in force, as `zmesh check` would
// with this mesh's settings. JWKS are not fetched from here: a token
// checked against a jwksUri fails closed (inline jwks work).
func (v *webView) check(ctx context.Context, in *check.Input) (check.Output, error) {
	snap := v.cfg.source.Current()
	if snap == nil {
		return check.Output{}, errNoConfig
	}
	m := v.mesh.Load()
	norm, err := authz.ParsePathNormalization(m.PathNormalization)
	if err != nil {
		return check.Output{}, err
	}
	return check.Evaluate(ctx, snap, in, check.Options{RootNamespace: m.RootNamespace, TrustDomain: m.TrustDomain,
		TrustDomainAliases: m.TrustDomainAliases, PathNormalization: norm})
}

type configError string

func (e configError) Error() string { return string(e) }

const errNoConfig = configError("config not loaded yet")

// wrap returns admin with the web view added: the page at /, its data
// under /ui/.
func (v *webView) wrap(admin http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", admin)
	ui.NewHandler(ui.HandlerConfig{Model: v.live.Model, Check: v.check}).Register(mux)
	return mux
}

// close drops the connections kept to proxies' admin ports.
func (v *webView) close() { v.scraper.Close() }
