package controlplane

import (
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmesh/zmesh/internal/config"
	"github.com/zmesh/zmesh/internal/xds/server"
)

// rejecter is a part that leaves resources out of what proxies are sent
// and says which and why: the config source (documents that fail to parse
// or validate) and the xDS server (ServiceEntries proxies would refuse).
type rejecter interface {
	Rejected() []*config.SourceError
}

// Reasons a resource is not in force, as the rejected-resources metric and
// /debug/config name them.
const (
	reasonInvalid  = "invalid"  // fails to parse or validate
	reasonConflict = "conflict" // valid alone, but proxies would refuse it with the rest
)

// rejection is one resource not in force, as /debug/config shows it.
type rejection struct {
	Reason    string `json:"reason"`
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Source    string `json:"source,omitempty"`
	Error     string `json:"error"`
	// LastGoodInForce says that an earlier version of the resource (for a
	// file rejected whole, of some of its resources) is still in force.
	LastGoodInForce bool `json:"lastGoodInForce"`
}

// rejections lists what source and admitted leave out (either may be
// nil), config first.
func rejections(source, admitted rejecter) []rejection {
	var out []rejection
	add := func(r rejecter, reason string) {
		if r == nil {
			return
		}
		for _, se := range r.Rejected() {
			ns, name, _ := strings.Cut(se.Key, "/")
			if se.Key == "" {
				// Not known what it defines: name the document.
				name = filepath.Base(se.Source)
			}
			out = append(out, rejection{Reason: reason, Kind: string(se.Kind), Namespace: ns, Name: name,
				Source: se.Source, Error: se.Err.Error(), LastGoodInForce: se.Kept})
		}
	}
	add(source, reasonInvalid)
	add(admitted, reasonConflict)
	return out
}

// rejectedCollector exports zmesh_config_rejected_resources: one series
// per resource not in force, so that an operator sees which one and where
// (a file too broken to say is named by its document). The label values
// are bounded by the resources in the config directory.
type rejectedCollector struct {
	source, admitted rejecter
	desc             *prometheus.Desc
}

func newRejectedCollector(source, admitted rejecter) *rejectedCollector {
	return &rejectedCollector{source: source, admitted: admitted, desc: prometheus.NewDesc(
		"zmesh_config_rejected_resources",
		"Resources of the config directory not in force, by kind, namespace, name and reason (invalid: fails to parse or validate, its last good version kept if any; conflict: proxies would refuse it, left out). Alert on any.",
		[]string{"kind", "namespace", "name", "reason"}, nil)}
}

func (c *rejectedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *rejectedCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[[4]string]int{}
	var order [][4]string
	for _, r := range rejections(c.source, c.admitted) {
		k := [4]string{r.Kind, r.Namespace, r.Name, r.Reason}
		if counts[k] == 0 {
			order = append(order, k)
		}
		counts[k]++
	}
	for _, k := range order {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(counts[k]), k[0], k[1], k[2], k[3])
	}
}

// registerRejections exports what makes the config directory's content
// not fully in force (zmesh_config_rejected_resources) and the proxies'
// refusals of pushes: zmesh_xds_rejected_pushes_total (views NACKed, once
// per proxy stream and version) and zmesh_xds_proxies_nacking (connected
// proxies whose latest answer was a NACK; a NACK means a proxy runs on an
// older config than the control plane's).
func registerRejections(reg prometheus.Registerer, source rejecter, xdsSrv *server.Server) {
	reg.MustRegister(newRejectedCollector(source, xdsSrv))
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "zmesh_xds_rejected_pushes_total",
		Help: "Config pushes that proxies refused (NACKed), counted once per proxy stream and config version.",
	}, func() float64 { return float64(xdsSrv.Stats().RejectedPushes) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "zmesh_xds_proxies_nacking",
		Help: "Connected proxies whose latest answer to a push was a NACK: they run on an older config.",
	}, func() float64 { return float64(xdsSrv.Stats().ProxiesNacking) }))
}
