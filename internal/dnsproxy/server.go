package dnsproxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/zmesh/zmesh/internal/registry"
)

// Config configures a Server. Addr is required.
type Config struct {
	// Addr is where to answer, host:port, on UDP and TCP (port 0: any
	// free port, the same for both).
	Addr string
	// Upstreams are the resolvers (host:port) other names are forwarded
	// to, tried in order. None: such questions get SERVFAIL.
	Upstreams []string
	// Namespace is the workload's namespace, for short names.
	Namespace string
	// Timeout bounds one exchange with one upstream; default
	// DefaultTimeout.
	Timeout time.Duration
	// Logger receives operational logs; nil discards.
	Logger *slog.Logger
}

// Defaults and limits. Every forwarded question holds a goroutine and a
// socket until its upstream answers or times out, so how many may be in
// flight is bounded; past that, SERVFAIL, which resolvers retry.
const (
	DefaultTimeout = 2 * time.Second
	maxInFlight    = 256
	// ttl of the answers for mesh names: short, so that a changed
	// virtual address is picked up soon.
	ttl = 30
)

// Server is the DNS server. Create it with New, feed it with Update, and
// serve with Run.
type Server struct {
	cfg   Config
	log   *slog.Logger
	table atomic.Pointer[table]
	slots chan struct{}

	pc  net.PacketConn
	ln  net.Listener
	udp *dns.Server
	tcp *dns.Server
	ran atomic.Bool
}

// New binds the UDP and TCP sockets of cfg.Addr and returns a server that
// answers nothing until Run. Until the first Update, it knows no mesh
// names. The caller must call Run (which closes the sockets on return) or
// Close.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		return nil, errors.New("dnsproxy: Addr is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, slots: make(chan struct{}, maxInFlight)}
	s.table.Store(buildTable(nil, cfg.Namespace, ""))
	pc, ln, err := listenBoth(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dnsproxy: %w", err)
	}
	s.pc, s.ln = pc, ln
	h := dns.HandlerFunc(s.serveDNS)
	s.udp = &dns.Server{PacketConn: pc, Handler: h, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second}
	s.tcp = &dns.Server{Listener: ln, Handler: h, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second,
		IdleTimeout: func() time.Duration { return 8 * time.Second }, MaxTCPQueries: 128}
	return s, nil
}

// Addr returns the bound address (UDP and TCP share the port).
func (s *Server) Addr() net.Addr { return s.pc.LocalAddr() }

// Update makes services the mesh names answered, as seen from the
// workload's namespace; dnsDomain is the services' domain (default
// cluster.local). Safe for concurrent use with serving.
func (s *Server) Update(services []registry.Service, dnsDomain string) {
	s.table.Store(buildTable(services, s.cfg.Namespace, dnsDomain))
}

// Run serves until ctx is done, then stops both servers and returns once
// they have. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("dnsproxy: Run called twice")
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
				errc <- err
			}
		})
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.udp.ShutdownContext(sctx)
	s.tcp.ShutdownContext(sctx)
	s.Close()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("dnsproxy: %w", err)
	}
	return nil
}

// Close closes the sockets; Run calls it on return.
func (s *Server) Close() error {
	s.pc.Close()
	s.ln.Close()
	return nil
}

// serveDNS answers one query: from the table, or from an upstream.
func (s *Server) serveDNS(w dns.ResponseWriter, r *dns.Msg) {
	if m := s.answer(r); m != nil {
		w.WriteMsg(m)
		return
	}
	w.WriteMsg(s.forward(r, w.LocalAddr().Network()))
}

// answer returns the reply to r when the proxy answers it itself (a
// malformed query, or an A/AAAA question for a mesh name), nil when r is
// to be forwarded. Mesh names get their virtual addresses for A, and for
// AAAA the IPv6 ones, usually none: an empty NOERROR answer (NODATA), not
// NXDOMAIN, which would make a resolver give up on the name.
func (s *Server) answer(r *dns.Msg) *dns.Msg {
	if r.Response || r.Opcode != dns.OpcodeQuery || len(r.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeFormatError)
		return m
	}
	q := r.Question[0]
	if q.Qclass != dns.ClassINET || q.Qtype != dns.TypeA && q.Qtype != dns.TypeAAAA {
		return nil
	}
	addrs, ok := s.table.Load().lookup(q.Name)
	if !ok {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	m.RecursionAvailable = true
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Rrtype: q.Qtype, Ttl: ttl}
	for _, a := range addrs {
		switch {
		case q.Qtype == dns.TypeA && a.Is4():
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
		case q.Qtype == dns.TypeAAAA && a.Is6():
			m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: a.AsSlice()})
		}
	}
	return m
}

// forward asks the upstreams, in order, over the network the question
// came on, and returns the first answer, or SERVFAIL.
func (s *Server) forward(r *dns.Msg, network string) *dns.Msg {
	fail := new(dns.Msg)
	fail.SetRcode(r, dns.RcodeServerFailure)
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		s.log.Warn("DNS forward refused: too many in flight", "name", r.Question[0].Name)
		return fail
	}
	if network != "tcp" {
		network = "udp"
	}
	c := &dns.Client{Net: network, Timeout: s.cfg.Timeout}
	for _, up := range s.cfg.Upstreams {
		resp, _, err := c.Exchange(r, up)
		if err != nil {
			s.log.Debug("DNS upstream failed", "upstream", up, "name", r.Question[0].Name, "err", err)
			continue
		}
		resp.Id = r.Id
		return resp
	}
	return fail
}

// ResolvConf returns the name servers of a resolv.conf file as host:port,
// the default upstreams.
func ResolvConf(path string) ([]string, error) {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("dnsproxy: %w", err)
	}
	var out []string
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out, nil
}

// listenBoth binds UDP and TCP on one port of addr. With port 0, TCP
// takes the port UDP got; another process may hold that TCP port, so a
// few other ports are tried before giving up.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || try == 9 {
			return nil, nil, err
		}
	}
}
