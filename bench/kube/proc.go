package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// controlPlane is one `zmesh controlplane --kubeconfig` process.
type controlPlane struct {
	cmd         *exec.Cmd
	grpc, admin string
	dataDir     string
	log         string
	done        chan struct{}
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func startControlPlane(ctx context.Context, bin, dir, kubeconfig string) (*controlPlane, error) {
	grpcAddr, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cp := &controlPlane{grpc: grpcAddr, admin: admin, dataDir: filepath.Join(dir, "data"), log: filepath.Join(dir, "controlplane.log"), done: make(chan struct{})}
	// The control plane writes its trust bundle there but, in Kubernetes
	// mode, does not create the directory.
	if err := os.MkdirAll(cp.dataDir, 0o700); err != nil {
		return nil, err
	}
	logf, err := os.Create(cp.log)
	if err != nil {
		return nil, err
	}
	cp.cmd = exec.Command(bin, "controlplane", "--kubeconfig", kubeconfig, "--data-dir", cp.dataDir, "--listen", grpcAddr, "--admin", admin)
	cp.cmd.Stdout, cp.cmd.Stderr = logf, logf
	cp.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cp.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { _ = cp.cmd.Wait(); logf.Close(); close(cp.done) }()
	return cp, nil
}

// waitSynced waits until the control plane is ready, has written its
// trust bundle, and its config (the
// cluster's, through its informers) holds policy key.
func (cp *controlPlane) waitSynced(ctx context.Context, key string) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if cp.has(key) {
			return nil
		}
		select {
		case <-cp.done:
			return fmt.Errorf("control plane exited (see %s)", cp.log)
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

var httpc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}

// has reports whether /debug/config lists resource key.
func (cp *controlPlane) has(key string) bool {
	// The bundle file is written once the CA is loaded from its Secret.
	if _, err := os.Stat(filepath.Join(cp.dataDir, "root-cert.pem")); err != nil {
		return false
	}
	resp, err := httpc.Get("http://" + cp.admin + "/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	resp, err = httpc.Get("http://" + cp.admin + "/debug/config")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var cfg struct {
		Resources map[string][]string `json:"resources"`
	}
	if json.NewDecoder(resp.Body).Decode(&cfg) != nil {
		return false
	}
	for _, keys := range cfg.Resources {
		for _, k := range keys {
			if k == key {
				return true
			}
		}
	}
	return false
}

// memory returns the process's RSS now and its peak, in MiB.
func (cp *controlPlane) memory() (now, peak float64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", cp.cmd.Process.Pid))
	if err != nil {
		return -1, -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		kb, _ := strconv.ParseFloat(fs[0], 64)
		switch k {
		case "VmRSS":
			now = kb / 1024
		case "VmHWM":
			peak = kb / 1024
		}
	}
	return now, peak
}

func (cp *controlPlane) stop() {
	_ = cp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cp.done:
	case <-time.After(10 * time.Second):
		_ = cp.cmd.Process.Kill()
		<-cp.done
	}
}
