package controlplane

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/config/filesource"
	"github.com/zmesh/zmesh/internal/registry"
	"github.com/zmesh/zmesh/internal/xds"
	"github.com/zmesh/zmesh/internal/xds/server"
)

// fixedRejecter reports a fixed list.
type fixedRejecter []*config.SourceError

func (f fixedRejecter) Rejected() []*config.SourceError { return f }

func TestRejectedResourcesMetric(t *testing.T) {
	source := fixedRejecter{
		{Source: "/etc/zmesh/web.yaml#1", Kind: config.KindAuthorizationPolicy, Key: "web/allow", Err: errors.New("invalid"), Kept: true},
		{Source: "/etc/zmesh/broken.yaml#2", Err: errors.New("invalid YAML")},
	}
	admitted := fixedRejecter{{Source: "/etc/zmesh/se.yaml#1", Kind: config.KindServiceEntry, Key: "web/hijack", Err: errors.New("endpoint expected as both")}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newRejectedCollector(source, admitted))
	got := gauges(t, reg, "zmesh_config_rejected_resources")
	want := map[string]float64{
		`kind="",name="broken.yaml#2",namespace="",reason="invalid"`:               1,
		`kind="AuthorizationPolicy",name="allow",namespace="web",reason="invalid"`: 1,
		`kind="ServiceEntry",name="hijack",namespace="web",reason="conflict"`:      1,
	}
	if len(got) != len(want) {
		t.Errorf("series %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all: %v)", k, got[k], v, got)
		}
	}
}

// gauges returns the values of the gauge series of metric name in reg,
// by their labels written name="value" in name order.
func gauges(t *testing.T, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			out[strings.Join(labels, ",")] = m.GetGauge().GetValue()
		}
	}
	return out
}

// TestAdminReportsRejections: with a document that does not validate and
// a ServiceEntry that names a registered workload's address as another
// identity, the admin endpoint says which resources are not in force and
// why (/debug/config, zmesh_config_rejected_resources), and config-dir is
// not valid; once both are fixed, it is again.
func TestAdminReportsRejections(t *testing.T) {
	dir := t.TempDir()
	writeFile := func(name, data string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile("bad.yaml", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: foo}\nspec: {action: SOMETIMES}\n")
	writeFile("se.yaml", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hijack, namespace: web}
spec:
  hosts: [hijack.example.com]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
  - address: 127.0.0.1
    ports: {http: 15006}
    serviceAccount: stranger
    labels: {security.istio.io/tlsMode: istio}
`)
	log := slog.New(slog.DiscardHandler)
	src, err := filesource.New(filesource.Config{Dir: dir, Logger: log, Debounce: 10 * time.Millisecond, Rescan: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	store := registry.NewStore("cluster.local")
	if err := store.Upsert(registry.Workload{Name: "backend", Namespace: "api", Identity: "spiffe://cluster.local/ns/api/sa/backend",
		Address: "127.0.0.1:15006", HasProxy: true, Services: []string{"backend"}}); err != nil {
		t.Fatal(err)
	}
	xdsSrv := server.New(server.Config{Registry: store, Mesh: xds.Mesh{TrustDomain: "cluster.local"}, Logger: log, Debounce: 10 * time.Millisecond})
	reg := prometheus.NewRegistry()
	registerConfigHealth(reg, src, "config-dir", xdsSrv, false, new(atomic.Bool))
	registerRejections(reg, src, xdsSrv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { src.Run(ctx); done <- struct{}{} }()
	go func() { xdsSrv.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	go feedSnapshots(ctx, src, xdsSrv)
	admin := httptest.NewServer(adminHandler(xdsSrv, src, reg, false))
	t.Cleanup(admin.Close)

	type debugConfig struct {
		Valid    bool        `json:"valid"`
		Rejected []rejection `json:"rejected"`
	}
	debug := func() debugConfig {
		t.Helper()
		resp, err := admin.Client().Get(admin.URL + "/debug/config")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d debugConfig
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	waitFor := func(what string, cond func(debugConfig) bool) debugConfig {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			d := debug()
			if cond(d) {
				return d
			}
			if time.Now().After(deadline) {
				t.Fatalf("not within 5s: %s; /debug/config: %+v", what, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	d := waitFor("both rejections reported", func(d debugConfig) bool { return len(d.Rejected) == 2 })
	want := []rejection{
		{Reason: "invalid", Kind: "AuthorizationPolicy", Namespace: "foo", Name: "x", Source: filepath.Join(dir, "bad.yaml") + "#1"},
		{Reason: "conflict", Kind: "ServiceEntry", Namespace: "web", Name: "hijack", Source: filepath.Join(dir, "se.yaml") + "#1"},
	}
	for i, w := range want {
		got := d.Rejected[i]
		errText := got.Error
		got.Error = ""
		if got != w || errText == "" {
			t.Errorf("rejected[%d] = %+v (error %q), want %+v", i, got, errText, w)
		}
	}
	if !strings.Contains(d.Rejected[1].Error, "api/backend") {
		t.Errorf("the conflict does not name the workload at that address: %q", d.Rejected[1].Error)
	}
	if d.Valid {
		t.Error("/debug/config says valid")
	}
	if got := gauges(t, reg, "zmesh_config_source_valid"); got[`source="config-dir"`] != 0 {
		t.Errorf("zmesh_config_source_valid = %v, want config-dir 0", got)
	}
	if got := gauges(t, reg, "zmesh_config_rejected_resources"); len(got) != 2 {
		t.Errorf("zmesh_config_rejected_resources = %v, want 2 series", got)
	}

	// Fixed: the AuthorizationPolicy made valid, the ServiceEntry removed.
	writeFile("bad.yaml", "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: x, namespace: foo}\nspec: {action: DENY, rules: [{}]}\n")
	if err := os.Remove(filepath.Join(dir, "se.yaml")); err != nil {
		t.Fatal(err)
	}
	waitFor("valid again", func(d debugConfig) bool { return d.Valid && len(d.Rejected) == 0 })
	if got := gauges(t, reg, "zmesh_config_source_valid"); got[`source="config-dir"`] != 1 {
		t.Errorf("zmesh_config_source_valid = %v, want config-dir 1", got)
	}
	if got := gauges(t, reg, "zmesh_config_rejected_resources"); len(got) != 0 {
		t.Errorf("zmesh_config_rejected_resources = %v, want none", got)
	}
}
