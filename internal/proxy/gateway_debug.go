package proxy

import (
	"sort"
	"strings"

	"github.com/zmesh/zmesh/internal/config"
)

// debugGatewayPort is one gateway port on /debug/config: what serves it
// and where it listens ("" while it is not served).
type debugGatewayPort struct {
	Port     uint32               `json:"port"`
	Protocol string               `json:"protocol"`
	Listen   string               `json:"listen"`
	Servers  []debugGatewayServer `json:"servers"`
}

type debugGatewayServer struct {
	Gateway string   `json:"gateway"`
	Hosts   []string `json:"hosts"`
	TLSMode string   `json:"tlsMode,omitempty"`
	// Credential says where a SIMPLE or MUTUAL server's credential comes
	// from: "secret" (pushed by the control plane), "secret refused:
	// WHY", "files" (--credential-dir), "certificate files" (the
	// server's serverCertificate: read at each handshake, a refusal is
	// logged), or "missing" (handshakes fail).
	Credential string `json:"credential,omitempty"`
}

// debugGatewayPorts lists st's gateway ports, by number; nil for a
// sidecar.
func (p *Proxy) debugGatewayPorts(st *state) []debugGatewayPort {
	if p.gw == nil || st == nil || st.gateway == nil {
		return nil
	}
	var out []debugGatewayPort
	for n, gp := range st.gateway.ports {
		dp := debugGatewayPort{Port: n, Protocol: gp.protocol}
		if a := p.gw.addr(n); a != nil {
			dp.Listen = a.String()
		}
		for _, s := range gp.servers {
			ds := debugGatewayServer{Gateway: s.gateway, Hosts: s.hosts}
			if gp.tls {
				ds.TLSMode = s.mode.String()
			} else if gp.protocol == "TLS" {
				ds.TLSMode = s.mode.String()
			} else if s.redirect {
				ds.TLSMode = "httpsRedirect"
			}
			if credentialMode(s.mode) && serverUsesFiles(s.tls) {
				ds.TLSMode += " " + s.tls.GetServerCertificate()
				ds.Credential = "certificate files"
			} else if credentialMode(s.mode) {
				names := config.ServerCredentialNames(s.tls)
				ds.TLSMode += " " + strings.Join(names, ",")
				if len(names) > 0 {
					ds.Credential = credentialSource(st.gateway.creds, p.cfg.CredentialDir, names[0])
				}
			}
			dp.Servers = append(dp.Servers, ds)
		}
		out = append(out, dp)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Port < out[j].Port })
	return out
}

// credentialSource is debugGatewayServer.Credential for credential name.
func credentialSource(creds map[string]*servedCredential, dir, name string) string {
	if sc, ok := creds[name]; ok {
		if sc.err != nil {
			return "secret refused: " + sc.err.Error()
		}
		return "secret"
	}
	if dir != "" {
		return "files"
	}
	return "missing"
}
