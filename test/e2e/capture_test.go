package e2e

import (
	"encoding/binary"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testWireIsTLS captures the loopback traffic to inboundAddr (a raw
// AF_PACKET socket, so root only) while the app at appAddr calls the backend
// with a marker in its path, and checks that every connection to the port
// starts with a TLS record and that the marker never crosses the
// wire in clear.
func testWireIsTLS(t *testing.T, appAddr, inboundAddr string) {
	if os.Geteuid() != 0 {
		t.Skip("capturing loopback packets needs root (AF_PACKET); CI runs as root")
	}
	_, portStr, _ := net.SplitHostPort(inboundAddr)
	port, _ := strconv.Atoi(portStr)
	c, err := newLoopbackCapture(uint16(port))
	if err != nil {
		t.Fatalf("capture: %v", err)
	}
	const marker = "zmesh-plaintext-marker-7f3a"
	r := call(t, appAddr, "backend.api.svc.cluster.local/"+marker)
	if r.Status != 200 {
		t.Fatalf("status %d body %q", r.Status, r.Body)
	}
	flows := c.stop()
	if len(flows) == 0 {
		t.Fatal("captured no payload to the backend inbound port")
	}
	for src, payload := range flows {
		// A TLS record: content type 20-23 (handshake first on a new
		// connection), then major version 3.
		if len(payload) < 5 || payload[0] < 0x14 || payload[0] > 0x17 || payload[1] != 0x03 {
			t.Errorf("connection from port %d starts with % x, not a TLS record", src, payload[:min(len(payload), 8)])
		}
		if strings.Contains(string(payload), marker) {
			t.Errorf("connection from port %d carried the request path in clear", src)
		}
	}
}

// loopbackCapture collects, per source port, the TCP payload sent to one
// destination port on the loopback interface (or another link).
type loopbackCapture struct {
	fd     int
	port   uint16
	mu     sync.Mutex
	flows  map[uint16][]byte
	done   chan struct{} // closed by stop
	exited chan struct{} // closed by loop once it has read all that was queued
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func newLoopbackCapture(port uint16) (*loopbackCapture, error) {
	return newLinkCapture("lo", port)
}

// newLinkCapture captures the payload of TCP segments to port on one link
// (loopback, or a pod's veth).
func newLinkCapture(link string, port uint16) (*loopbackCapture, error) {
	ifc, err := net.InterfaceByName(link)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, int(htons(syscall.ETH_P_ALL)))
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(syscall.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	tv := syscall.NsecToTimeval(int64(100 * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	c := &loopbackCapture{fd: fd, port: port, flows: map[uint16][]byte{}, done: make(chan struct{}), exited: make(chan struct{})}
	go c.loop()
	return c, nil
}

// loop reads packets until stop is called and the socket's queue is
// empty: then every packet the kernel handed the socket before stop was
// called has been read.
func (c *loopbackCapture) loop() {
	defer close(c.exited)
	buf := make([]byte, 1<<16)
	seen := map[string]bool{} // loopback shows each packet twice (out and in)
	for {
		flags := 0 // blocking, up to SO_RCVTIMEO
		select {
		case <-c.done:
			flags = syscall.MSG_DONTWAIT
		default:
		}
		n, from, err := syscall.Recvfrom(c.fd, buf, flags)
		if err != nil {
			if flags != 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK) {
				return // stopped, and nothing is left queued
			}
			continue
		}
		if n < 14+20+20 {
			continue
		}
		if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
			continue
		}
		ip := buf[14:n]
		if binary.BigEndian.Uint16(buf[12:14]) != 0x0800 || ip[9] != 6 { // IPv4, TCP
			continue
		}
		ihl := int(ip[0]&0x0f) * 4
		tcp := ip[ihl:]
		if len(tcp) < 20 || binary.BigEndian.Uint16(tcp[2:4]) != c.port {
			continue
		}
		src := binary.BigEndian.Uint16(tcp[0:2])
		seq := binary.BigEndian.Uint32(tcp[4:8])
		payload := tcp[int(tcp[12]>>4)*4:]
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if end := total - ihl - int(tcp[12]>>4)*4; end >= 0 && end < len(payload) {
			payload = payload[:end]
		}
		if len(payload) == 0 {
			continue
		}
		key := strconv.Itoa(int(src)) + "/" + strconv.FormatUint(uint64(seq), 10)
		if seen[key] {
			continue
		}
		seen[key] = true
		c.mu.Lock()
		c.flows[src] = append(c.flows[src], payload...)
		c.mu.Unlock()
	}
}

// stop ends the capture and returns its flows. A packet is handed to a
// packet socket before the receiving end's TCP sees it, so every byte a
// server has read by the time stop is called is in the flows.
func (c *loopbackCapture) stop() map[uint16][]byte {
	close(c.done)
	<-c.exited
	syscall.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flows
}
