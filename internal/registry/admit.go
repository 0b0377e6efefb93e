package registry

import (
	"sort"

	"github.com/zmesh/zmesh/internal/config"
)

// Admission is the set of services the control plane sends to proxies, and
// the ServiceEntries it left out to keep that set one that every proxy
// accepts. It is immutable.
type Admission struct {
	// Services are the registered services joined with those of every
	// admitted ServiceEntry; they pass Check.
	Services []Service
	// Rejected lists the ServiceEntries left out, each with why (Kind,
	// Key and Source set), in namespace and name order.
	Rejected []*config.SourceError
	admitted map[string]bool // keys of the admitted ServiceEntries
}

// Admit decides which ServiceEntries join the registered services. The
// registered services come first: their identities were authenticated by
// the control plane. Then each ServiceEntry is added whole, with a Table,
// if the services so far and its own still pass Check; otherwise it is
// left out alone and reported, and everything else is still sent. Without
// this, one ServiceEntry naming an address that another identity serves
// would make every proxy refuse every later push, revocations included.
//
// ServiceEntries admitted by prev (the previous Admission, or nil) are
// tried first, then the others, each group in namespace and name order:
// a new resource cannot displace one in force by conflicting with it.
func Admit(registered []Service, declared []Declared, prev *Admission) *Admission {
	a := &Admission{admitted: map[string]bool{}}
	var t Table
	var in [][]Service
	for _, s := range registered {
		one := []Service{s}
		if err := t.Add(one); err != nil {
			// The store refuses conflicting registrations, so this is
			// not expected; leave the service out rather than every push.
			a.Rejected = append(a.Rejected, &config.SourceError{Kind: "Registration", Key: s.Namespace + "/" + s.Hostname, Err: err})
			continue
		}
		in = append(in, one)
	}
	order := make([]Declared, len(declared))
	copy(order, declared)
	sort.SliceStable(order, func(i, j int) bool {
		pi, pj := prev.has(order[i].Resource.Key()), prev.has(order[j].Resource.Key())
		if pi != pj {
			return pi
		}
		return order[i].Resource.Key() < order[j].Resource.Key()
	})
	for _, d := range order {
		key := d.Resource.Key()
		if err := t.Add(d.Services); err != nil {
			a.Rejected = append(a.Rejected, &config.SourceError{Source: d.Resource.Source, Kind: d.Resource.Kind, Key: key, Err: err})
			continue
		}
		a.admitted[key] = true
		in = append(in, d.Services)
	}
	sort.Slice(a.Rejected, func(i, j int) bool { return a.Rejected[i].Key < a.Rejected[j].Key })
	a.Services = Merge(in...)
	return a
}

func (a *Admission) has(key string) bool {
	return a != nil && a.admitted[key]
}
