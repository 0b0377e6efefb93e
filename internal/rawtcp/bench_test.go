//go:build linux

package rawtcp_test

import (
	"bufio"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/zmesh/zmesh/internal/rawtcp"
)

// echoEnv makes the test binary an echo server (TestMain): the benchmark's
// peer runs in a process of its own, so that the benchmark's process goes
// idle while it waits for each answer, as a proxy does.
const echoEnv = "RAWTCP_ECHO"

func TestMain(m *testing.M) {
	if os.Getenv(echoEnv) != "" {
		echo()
		return
	}
	os.Exit(m.Run())
}

func echo() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	os.Stdout.WriteString(ln.Addr().String() + "\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(0)
		}
		go io.Copy(c, c)
	}
}

// BenchmarkPingPong sends 1 KiB to an echo server in another process and
// reads it back, over a plain *net.TCPConn and over a wrapped one. Its
// measure is cpu-ns/op, this process's CPU time (user and system) per
// exchange: what the wrapper saves is the runtime's wake-ups, not wall
// time. On the 2-vCPU VM of docs/benchmarks.md the wrapped exchange cost
// about a third less.
func BenchmarkPingPong(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), echoEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	addr = addr[:len(addr)-1]
	for _, tc := range []struct {
		name string
		wrap func(net.Conn) net.Conn
	}{
		{"net", func(c net.Conn) net.Conn { return c }},
		{"rawtcp", rawtcp.Wrap},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			conn := tc.wrap(c)
			msg := make([]byte, 1024)
			buf := make([]byte, 1024)
			// A pause between exchanges, as between a proxy's requests,
			// lets the process go idle.
			const gap = 200 * time.Microsecond
			start := cpuTime()
			b.ResetTimer()
			for range b.N {
				if _, err := conn.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					b.Fatal(err)
				}
				time.Sleep(gap)
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
