package main

import (
	"strings"
	"testing"
)

func TestParseGatewayPorts(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    map[uint32]string
		wantErr string
	}{
		{name: "none", want: map[uint32]string{}},
		{name: "two", in: []string{"443=0.0.0.0:8443", "80=127.0.0.1:8080"}, want: map[uint32]string{443: "0.0.0.0:8443", 80: "127.0.0.1:8080"}},
		{name: "no address", in: []string{"443"}, wantErr: "PORT=HOST:PORT"},
		{name: "bad port", in: []string{"x=127.0.0.1:1"}, wantErr: "PORT=HOST:PORT"},
		{name: "port zero", in: []string{"0=127.0.0.1:1"}, wantErr: "PORT=HOST:PORT"},
		{name: "address without port", in: []string{"443=127.0.0.1"}, wantErr: "missing port"},
		{name: "twice", in: []string{"443=127.0.0.1:1", "443=127.0.0.1:2"}, wantErr: "twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gc, err := parseGatewayPorts(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(gc.Ports) != len(tt.want) {
				t.Fatalf("%v %v", gc, err)
			}
			for k, v := range tt.want {
				if gc.Ports[k] != v {
					t.Errorf("port %d: %q, want %q", k, gc.Ports[k], v)
				}
			}
		})
	}
}
