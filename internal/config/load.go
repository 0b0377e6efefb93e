package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"

	"google.golang.org/protobuf/proto"
)

// Load parses and validates a set of inputs (file name -> contents) into
// one Snapshot. It is all or nothing: if any document fails to parse or
// validate, or two documents define the same kind, namespace and name, Load
// returns an error (all problems joined, each a *SourceError) and no
// snapshot, so that a half-applied configuration never reaches a proxy.
// The snapshot's Version is Version of its resources.
func Load(files map[string][]byte) (*Snapshot, []Warning, error) {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)

	var (
		all      []Resource
		warnings []Warning
		errs     []error
		seen     = map[string]string{} // kind/ns/name -> source
	)
	for _, name := range names {
		rs, ws, err := Parse(files[name], name)
		warnings = append(warnings, ws...)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range rs {
			id := string(r.Kind) + "/" + r.Key()
			if first, dup := seen[id]; dup {
				errs = append(errs, &SourceError{Source: r.Source, Kind: r.Kind, Key: r.Key(),
					Err: fmt.Errorf("defined twice (first at %s)", first)})
				continue
			}
			seen[id] = r.Source
			vw, err := validate(r)
			for _, w := range vw {
				warnings = append(warnings, Warning{Source: r.Source, Message: fmt.Sprintf("%s %s: %s", r.Kind, r.Key(), w)})
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			all = append(all, r)
		}
	}
	if len(errs) > 0 {
		return nil, warnings, errors.Join(errs...)
	}
	return NewSnapshot(Version(all), all), warnings, nil
}

// Version returns a short content hash of rs: the same resources give the
// same version whatever their order or the files they came from, so that a
// rewrite that changes nothing pushes nothing. It covers kind, apiVersion,
// namespace, name, labels, annotations and the spec (deterministically
// marshalled), not Source.
func Version(rs []Resource) string {
	sorted := make([]Resource, len(rs))
	copy(sorted, rs)
	sort.Slice(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	h := sha256.New()
	field := func(s string) {
		// Length-prefixed, so that no two different sequences of fields
		// hash the same bytes.
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	strmap := func(m map[string]string) {
		keys := sortedKeys(m)
		field(fmt.Sprint(len(keys)))
		for _, k := range keys {
			field(k)
			field(m[k])
		}
	}
	opts := proto.MarshalOptions{Deterministic: true}
	for _, r := range sorted {
		field(string(r.Kind))
		field(r.APIVersion)
		field(r.Namespace)
		field(r.Name)
		strmap(r.Labels)
		strmap(r.Annotations)
		var spec []byte
		if r.Spec != nil {
			// Marshalling a message we decoded cannot fail; if it somehow
			// did, hashing the error text still changes the version.
			b, err := opts.Marshal(r.Spec)
			if err != nil {
				b = []byte("error:" + err.Error())
			}
			spec = b
		}
		field(string(spec))
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
