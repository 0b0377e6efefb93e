package controlplane

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestGRPCServerSettings: the mesh port's HTTP/2 settings ask clients for
// no HPACK dynamic table (each proxy's connection would keep one for its
// life) and bound the header list, which a client reads in the server's
// first frame.
func TestGRPCServerSettings(t *testing.T) {
	gs := newGRPCServer(selfSigned(t), Limits{}.withDefaults())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	c, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first frame from the server is %v, want its SETTINGS", f)
	}
	want := map[http2.SettingID]uint32{
		http2.SettingHeaderTableSize:   0,
		http2.SettingMaxHeaderListSize: maxHeaderListSize,
	}
	for id, v := range want {
		if got, ok := sf.Value(id); !ok || got != v {
			t.Errorf("%v = %d (sent: %t), want %d", id, got, ok, v)
		}
	}
}
