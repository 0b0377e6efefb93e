package certinfo_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/certinfo"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func load(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteGolden describes a leaf issued by an intermediate of the second
// root of a two-root bundle (the middle of a root rotation).
func TestWriteGolden(t *testing.T) {
	chain, err := certinfo.ParsePEM(load(t, "chain.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := certinfo.ParsePEM(load(t, "bundle.pem"))
	if err != nil {
		t.Fatal(err)
	}
	certs := certinfo.Describe(chain, roots)
	if certs[0].Root != 2 || certs[1].Root != 2 {
		t.Errorf("chains to roots %d and %d, want 2 and 2", certs[0].Root, certs[1].Root)
	}
	var out bytes.Buffer
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := certinfo.Write(&out, certs, roots, now); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "inspect.golden")
	if *update {
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if want := load(t, "inspect.golden"); !bytes.Equal(out.Bytes(), want) {
		t.Errorf("output differs from %s (run with -update):\n%s", golden, out.String())
	}
}

func TestDescribeWithoutMatchingRoot(t *testing.T) {
	chain, _ := certinfo.ParsePEM(load(t, "chain.pem"))
	roots, _ := certinfo.ParsePEM(load(t, "bundle.pem"))
	certs := certinfo.Describe(chain, roots[:1]) // only the old root
	if certs[0].Root != 0 {
		t.Errorf("leaf chains to root %d of a bundle without its root", certs[0].Root)
	}
	if got := certinfo.SelfSigned(roots); len(got) != 2 {
		t.Errorf("SelfSigned found %d roots, want 2", len(got))
	}
}

func TestParsePEMRejectsGarbage(t *testing.T) {
	for _, in := range []string{"", "garbage", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"} {
		if _, err := certinfo.ParsePEM([]byte(in)); err == nil {
			t.Errorf("ParsePEM(%q) accepted", in)
		}
	}
}

// FuzzParsePEM checks the parser never panics and describes whatever it
// accepts.
func FuzzParsePEM(f *testing.F) {
	f.Add(load(f, "chain.pem"))
	f.Add(load(f, "bundle.pem"))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := certinfo.ParsePEM(data)
		if err != nil {
			return
		}
		_ = certinfo.Describe(certs, certinfo.SelfSigned(certs))
	})
}

func TestDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{
		{87599*time.Hour + 59*time.Minute + 29*time.Second, "9y 364d"},
		{3*24*time.Hour + 15*time.Hour + 20*time.Minute, "3d 15h"},
		{15*time.Hour + 4*time.Minute + 59*time.Second, "15h 4m"},
		{24 * time.Hour, "1d"},
		{4*time.Minute + 10*time.Second, "4m 10s"},
		{10*time.Second + 900*time.Millisecond, "10s"},
		{400 * time.Millisecond, "0s"},
		{-90 * time.Second, "-1m 30s"},
	} {
		if got := certinfo.Duration(c.d); got != c.want {
			t.Errorf("Duration(%v) = %q, want %q", c.d, got, c.want)
		}
	}
}
