package config

import (
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"
)

// TestDurations: Istio's documented DestinationRule, with Go-style
// durations, parses; protojson's own form still does; a bad one is
// rejected with the field named.
func TestDurations(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"15m", 15 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"100ms", 100 * time.Millisecond},
		{"1.5s", 1500 * time.Millisecond},
		{"30s", 30 * time.Second},
		{"2m0.25s", 2*time.Minute + 250*time.Millisecond},
	} {
		doc := "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n  trafficPolicy:\n    outlierDetection: {interval: 5m, baseEjectionTime: " + tc.in + "}\n    portLevelSettings:\n    - port: {number: 80}\n      connectionPool: {tcp: {connectTimeout: " + tc.in + "}}\n"
		rs, _, err := Parse([]byte(doc), "t.yaml")
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		tp := rs[0].Spec.(*networking.DestinationRule).GetTrafficPolicy()
		if got := tp.GetOutlierDetection().GetBaseEjectionTime().AsDuration(); got != tc.want {
			t.Errorf("%s: baseEjectionTime %v, want %v", tc.in, got, tc.want)
		}
		if got := tp.GetPortLevelSettings()[0].GetConnectionPool().GetTcp().GetConnectTimeout().AsDuration(); got != tc.want {
			t.Errorf("%s: connectTimeout in a list %v, want %v", tc.in, got, tc.want)
		}
		if got := tp.GetOutlierDetection().GetInterval().AsDuration(); got != 5*time.Minute {
			t.Errorf("interval %v", got)
		}
	}
	_, _, err := Parse([]byte("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec: {host: r, trafficPolicy: {outlierDetection: {interval: soon}}}\n"), "t.yaml")
	if err == nil {
		t.Error("a bad duration was accepted")
	}
}
