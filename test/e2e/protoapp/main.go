// Command protoapp is the test application of the protocol tests through
// transparent capture (test/e2e/capture_protocols_test.go): servers that
// speak one protocol each on a port, and clients that call them as an
// unmodified app would, with no proxy setting. The e2e test builds it and
// runs the servers as the apps of `zmesh up --capture` and the clients in
// a pod's network namespace with `ip netns exec`.
//
// Servers (each listens on ADDR until killed):
//
//	protoapp serve-http ADDR           HTTP/1.1 and h2c: GET answers JSON {"proto", "xfcc"}; /ws is a WebSocket echo
//	protoapp serve-grpc ADDR           gRPC health service; service "flip" changes status every 50ms (a server stream)
//	protoapp serve-tcpecho ADDR        echoes bytes (client speaks first)
//	protoapp serve-banner ADDR         server-first: sends a MySQL-style banner on accept, then echoes
//	protoapp serve-tls ADDR CERT KEY   TLS server with its own certificate: echoes lines
//
// Clients (print one line and exit 0 on success, exit 1 with the error):
//
//	protoapp get URL                   HTTP/1.1 GET, prints the response's protocol and body
//	protoapp h2c URL                   HTTP/2 prior knowledge GET, likewise
//	protoapp grpc-unary ADDR           health Check
//	protoapp grpc-stream ADDR N        health Watch("flip"), N messages that alternate
//	protoapp ws URL                    WebSocket: sends a message, reads it back
//	protoapp tcp ADDR                  sends a line, reads it back
//	protoapp tcp-bulk ADDR N           sends N bytes, half-closes, wants the same N bytes and then EOF
//	protoapp banner ADDR               reads the banner before sending anything, then a line
//	protoapp banner-early ADDR         sends an HTTP request line at once, then wants the banner and the line echoed
//	protoapp tls ADDR SNI CAFILE       TLS to ADDR with server name SNI, verified against CAFILE; a line back
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Banner is what `protoapp banner` sends first, the start of a MySQL
// server greeting.
const Banner = "5.7.0-protoapp-banner\n"

// timeout bounds every client.
const timeout = 10 * time.Second

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: protoapp MODE ARGS...")
		os.Exit(2)
	}
	out, err := run(os.Args[1], os.Args[2:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "protoapp:", err)
		os.Exit(1)
	}
	if out != "" {
		fmt.Println(out)
	}
}

func run(mode string, args []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch mode {
	case "serve-http":
		return "", serveHTTP(arg(0))
	case "serve-grpc":
		return "", serveGRPC(arg(0))
	case "serve-tcpecho":
		return "", serveTCP(arg(0), "")
	case "serve-banner":
		return "", serveTCP(arg(0), Banner)
	case "serve-tls":
		return "", serveTLS(arg(0), arg(1), arg(2))
	case "banner":
		return clientBanner(ctx, arg(0))
	case "banner-early":
		return clientBannerEarly(ctx, arg(0))
	case "tls":
		return clientTLS(ctx, arg(0), arg(1), arg(2))
	case "get", "h2c":
		return clientHTTP(ctx, mode == "h2c", arg(0))
	case "grpc-unary":
		return clientGRPCUnary(ctx, arg(0))
	case "grpc-stream":
		n, err := strconv.Atoi(arg(1))
		if err != nil {
			return "", fmt.Errorf("grpc-stream: count: %w", err)
		}
		return clientGRPCStream(ctx, arg(0), n)
	case "ws":
		return clientWS(ctx, arg(0))
	case "tcp":
		return clientTCP(ctx, arg(0))
	case "tcp-bulk":
		n, err := strconv.Atoi(arg(1))
		if err != nil {
			return "", fmt.Errorf("tcp-bulk: size: %w", err)
		}
		return clientTCPBulk(ctx, arg(0), n)
	}
	return "", fmt.Errorf("unknown mode %q", mode)
}

// Servers.

func serveHTTP(addr string) error {
	mux := http.NewServeMux()
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) { _, _ = io.Copy(c, c) }))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"proto": r.Proto, "xfcc": r.Header.Get("X-Forwarded-Client-Cert")})
	})
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Addr: addr, Handler: mux, Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

func serveGRPC(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	hs := health.NewServer()
	go func() { // lives as long as the process
		serving := true
		for range time.Tick(50 * time.Millisecond) {
			st := healthpb.HealthCheckResponse_NOT_SERVING
			if serving {
				st = healthpb.HealthCheckResponse_SERVING
			}
			hs.SetServingStatus("flip", st)
			serving = !serving
		}
	}()
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	return s.Serve(ln)
}

func serveTCP(addr, banner string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			if banner != "" {
				if _, err := io.WriteString(c, banner); err != nil {
					return
				}
			}
			_, _ = io.Copy(c, c)
		}()
	}
}

func serveTLS(addr, certFile, keyFile string) error {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return err
	}
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			_, _ = io.Copy(c, c)
		}()
	}
}

// Clients.

func clientHTTP(ctx context.Context, h2c bool, url string) (string, error) {
	var p http.Protocols
	if h2c {
		p.SetUnencryptedHTTP2(true)
	} else {
		p.SetHTTP1(true)
	}
	c := &http.Client{Transport: &http.Transport{Protocols: &p, Proxy: nil}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("%s: %s %s", url, resp.Status, b)
	}
	return resp.Proto + " " + strings.TrimSpace(string(b)), nil
}

func grpcConn(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

func clientGRPCUnary(ctx context.Context, addr string) (string, error) {
	cc, err := grpcConn(addr)
	if err != nil {
		return "", err
	}
	defer cc.Close()
	r, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return "", err
	}
	return r.GetStatus().String(), nil
}

// clientGRPCStream reads n messages of the "flip" Watch stream; the server
// sends one each time the status changes, so they must alternate.
func clientGRPCStream(ctx context.Context, addr string, n int) (string, error) {
	cc, err := grpcConn(addr)
	if err != nil {
		return "", err
	}
	defer cc.Close()
	st, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{Service: "flip"})
	if err != nil {
		return "", err
	}
	var got []string
	for len(got) < n {
		r, err := st.Recv()
		if err != nil {
			return "", fmt.Errorf("after %d messages %v: %w", len(got), got, err)
		}
		s := r.GetStatus().String()
		if len(got) > 0 && got[len(got)-1] == s {
			continue // a change the server made twice before we read: not every one is sent
		}
		got = append(got, s)
	}
	return strings.Join(got, " "), nil
}

func clientWS(ctx context.Context, url string) (string, error) {
	cfg, err := websocket.NewConfig(url, "http://protoapp/")
	if err != nil {
		return "", err
	}
	c, err := cfg.DialContext(ctx)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	const msg = "hello over websocket"
	if err := websocket.Message.Send(c, msg); err != nil {
		return "", err
	}
	var back string
	if err := websocket.Message.Receive(c, &back); err != nil {
		return "", err
	}
	if back != msg {
		return "", fmt.Errorf("websocket echoed %q", back)
	}
	return back, nil
}

func dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	return c, nil
}

// roundTrip writes a line on c and reads it back from r.
func roundTrip(c net.Conn, r *bufio.Reader) (string, error) {
	const line = "ping through the mesh\n"
	if _, err := io.WriteString(c, line); err != nil {
		return "", err
	}
	back, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading the echo: %w", err)
	}
	if back != line {
		return "", fmt.Errorf("echoed %q", back)
	}
	return strings.TrimSpace(back), nil
}

func clientTCP(ctx context.Context, addr string) (string, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return roundTrip(c, bufio.NewReader(c))
}

// clientTCPBulk sends n bytes while reading the echo, then half-closes:
// the echo must end with exactly the bytes sent, then EOF, which only
// comes if every hop passed the half-close on.
func clientTCPBulk(ctx context.Context, addr string, n int) (string, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	msg := make([]byte, n)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	werr := make(chan error, 1)
	go func() { // ends with the write or the deadline
		_, err := c.Write(msg)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		return "", fmt.Errorf("after %d bytes: %w", len(got), err)
	}
	if err := <-werr; err != nil {
		return "", err
	}
	if !bytes.Equal(got, msg) {
		return "", fmt.Errorf("echoed %d bytes, want the %d sent", len(got), n)
	}
	return fmt.Sprintf("%d bytes", n), nil
}

// clientBanner waits for the banner without sending a byte, as a MySQL
// client does, then checks that the connection still echoes.
func clientBanner(ctx context.Context, addr string) (string, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	b, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("waiting for the banner: %w", err)
	}
	if b != Banner {
		return "", fmt.Errorf("banner %q, want %q", b, Banner)
	}
	if _, err := roundTrip(c, r); err != nil {
		return "", err
	}
	return strings.TrimSpace(b), nil
}

// clientBannerEarly speaks first, with bytes that look like HTTP, to a
// banner server: only a connection carried as opaque TCP brings back the
// banner and then the same bytes.
func clientBannerEarly(ctx context.Context, addr string) (string, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	const req = "GET / HTTP/1.1\r\nHost: protoapp\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	b, err := r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("waiting for the banner: %w", err)
	}
	if b != Banner {
		return "", fmt.Errorf("got %q, want the banner %q", b, Banner)
	}
	back := make([]byte, len(req))
	if _, err := io.ReadFull(r, back); err != nil {
		return "", fmt.Errorf("reading the echo: %w", err)
	}
	if string(back) != req {
		return "", fmt.Errorf("echoed %q", back)
	}
	return strings.TrimSpace(b), nil
}

func clientTLS(ctx context.Context, addr, sni, caFile string) (string, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return "", errors.New("no certificate in " + caFile)
	}
	c, err := dial(ctx, addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: sni, RootCAs: pool})
	if err := tc.HandshakeContext(ctx); err != nil {
		return "", fmt.Errorf("handshake: %w", err)
	}
	if _, err := roundTrip(tc, bufio.NewReader(tc)); err != nil {
		return "", err
	}
	return "verified " + tc.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}
