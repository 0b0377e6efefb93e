package controlplane

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/zmesh/zmesh/internal/registry"
)

// registrationsFile keeps the proxies' registrations across control plane
// restarts. Proxies re-register on their own when they reconnect; the file
// only bridges the seconds in between, so that the first proxies back are
// not pushed a mesh without the others.
const registrationsFile = "registrations.json"

// maxRegistrationsFile bounds what loadRegistrations reads.
const maxRegistrationsFile = 16 << 20

// loadRegistrations reads the registrations saved by a previous run. A
// missing file is no registrations; a damaged one is logged and ignored,
// since every live proxy registers again anyway.
func loadRegistrations(dataDir string, log *slog.Logger) []registry.Workload {
	path := filepath.Join(dataDir, registrationsFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if !os.IsNotExist(err) {
			log.Warn("cannot read saved registrations", "file", path, "err", err)
		}
		return nil
	}
	if len(b) > maxRegistrationsFile {
		log.Warn("saved registrations too large; ignored", "file", path)
		return nil
	}
	var ws []registry.Workload
	if err := json.Unmarshal(b, &ws); err != nil {
		log.Warn("saved registrations unreadable; ignored", "file", path, "err", err)
		return nil
	}
	return ws
}

// saveInterval is the least time between two writes of the registrations
// file. Each write holds every workload, so writing at each registration
// is quadratic in the proxies: 10,000 proxies connecting would write
// 10,000 files of up to 10,000 workloads. Short, so that a control plane
// killed just after proxies registered forgets none of them (a restarted
// one would push views without their services until they reconnect);
// saveRegistrations stretches it as the file grows.
const saveInterval = 100 * time.Millisecond

// saveRegistrations writes the registry's workloads to the data directory
// whenever they change, at most once per saveInterval (longer for large
// registries), and once more when
// ctx is done, until ctx is done.
func saveRegistrations(ctx context.Context, dataDir string, reg *registry.Store, log *slog.Logger) {
	save := func() {
		if err := writeRegistrations(dataDir, reg.Workloads()); err != nil {
			log.Warn("cannot save registrations", "err", err)
		}
	}
	changed := reg.Changed()
	save()
	for {
		// The first change after a quiet spell is written at once: a
		// control plane killed right after a proxy registered must not
		// forget it. Changes during the next interval are written
		// together at its end.
		select {
		case <-ctx.Done():
			select {
			case <-changed:
				save()
			default:
			}
			return
		case <-changed:
		}
		changed = reg.Changed()
		start := time.Now()
		save()
		// The next write waits at least saveInterval, and ten times what
		// this one took: small meshes lose almost nothing to a kill,
		// and a wave of thousands of registrations spends at most a
		// tenth of a core rewriting the file.
		t := time.NewTimer(max(saveInterval, 10*time.Since(start)))
		select {
		case <-ctx.Done():
			t.Stop()
			save()
			return
		case <-t.C:
		}
	}
}

// writeRegistrations writes ws as a JSON array, one workload at a time
// through a buffered writer: marshalling the whole slice at once held a
// buffer of every workload (megabytes at 10,000 proxies, grown by
// doubling) at each save of a reconnect wave.
func writeRegistrations(dataDir string, ws []registry.Workload) error {
	tmp, err := os.CreateTemp(dataDir, ".registrations-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 32<<10)
	bw.WriteByte('[')
	for i, w := range ws {
		b, err := json.Marshal(w)
		if err != nil {
			tmp.Close()
			return err
		}
		if i > 0 {
			bw.WriteByte(',')
		}
		bw.Write(b)
	}
	bw.WriteByte(']')
	if err := bw.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dataDir, registrationsFile)); err != nil {
		return fmt.Errorf("save registrations: %w", err)
	}
	return nil
}
