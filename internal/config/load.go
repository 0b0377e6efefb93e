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
// one Snapshot, strictly: if any document fails to parse or validate, or
// two documents define the same kind, namespace and name, Load returns an
// error (all problems joined, each a *SourceError) and no snapshot. It is
// for one-shot readers such as `zmesh check`, which must refuse a
// directory it cannot take whole; a source that follows edits uses Reload.
// The snapshot's Version is Version of its resources.
func Load(files map[string][]byte) (*Snapshot, []Warning, error) {
	snap, warnings, rejected := Reload(nil, files, nil)
	if len(rejected) > 0 {
		errs := make([]error, len(rejected))
		for i, r := range rejected {
			errs[i] = r
		}
		return nil, warnings, errors.Join(errs...)
	}
	return snap, warnings, nil
}

// Reload is Load one resource at a time, for a source that follows edits.
// prev is the snapshot in force (nil at first); files are the inputs'
// latest contents, and unreadable names inputs that exist but could not be
// read (too large, no permission), with why.
//
// A document that fails to parse or validate, or one of two that define
// the same kind, namespace and name, is rejected alone: everything else
// applies, so that a typo or an attack in one namespace's file cannot hold
// back every other edit. What a rejected document defined keeps its last
// good version: the resource of the same kind, namespace and name in prev
// stays in force. When an input fails as a whole (unreadable, too large,
// or a document too broken to say what it defines), the resources prev
// holds from that input stay in force unless the new content defines
// them validly elsewhere. Everything rejected is returned, one
// *SourceError each, Kept set when a last good version stays; the snapshot
// is never nil, and its Version is Version of its resources.
func Reload(prev *Snapshot, files map[string][]byte, unreadable map[string]error) (*Snapshot, []Warning, []*SourceError) {
	return reload(prev, files, unreadable, checkInput)
}

// reload is Reload with the parse and validation of each input given:
// check returns what the input named name with content data holds.
// Loader gives one that remembers inputs whose content did not change.
func reload(prev *Snapshot, files map[string][]byte, unreadable map[string]error, check func(name string, data []byte) *checkedInput) (*Snapshot, []Warning, []*SourceError) {
	names := make([]string, 0, len(files)+len(unreadable))
	for name := range files {
		names = append(names, name)
	}
	for name := range unreadable {
		if _, ok := files[name]; !ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)

	var (
		warnings []Warning
		rejected []*SourceError
		defs     = map[string][]checkedResource{} // id -> valid definitions, in input order
		ids      []string                         // ids in order of first definition
		badIDs   = map[string]bool{}              // ids of rejected documents
		badFiles = map[string]*SourceError{}      // input -> why it failed as a whole
	)
	reject := func(se *SourceError) {
		rejected = append(rejected, se)
		if se.Kind != "" && se.Key != "" {
			badIDs[resourceID(se.Kind, se.Key)] = true
		} else if badFiles[sourceFile(se.Source)] == nil {
			badFiles[sourceFile(se.Source)] = se
		}
	}
	for _, name := range names {
		if err, ok := unreadable[name]; ok {
			se := &SourceError{Source: name, Err: err}
			rejected = append(rejected, se)
			badFiles[name] = se
			continue
		}
		in := check(name, files[name])
		if in.err != nil {
			se := in.err.clone()
			rejected = append(rejected, se)
			badFiles[name] = se
			continue
		}
		for _, d := range in.docs {
			warnings = append(warnings, d.warnings...)
			if d.err != nil {
				reject(d.err.clone())
				continue
			}
			for _, r := range d.resources {
				warnings = append(warnings, r.warnings...)
				if r.err != nil {
					reject(r.err.clone())
					continue
				}
				id := resourceID(r.Kind, r.Key())
				if defs[id] == nil {
					ids = append(ids, id)
				}
				defs[id] = append(defs[id], r)
			}
		}
	}

	var (
		all     []Resource
		digests [][sha256.Size]byte // of all's resources, for the version
	)
	inForce := map[string]bool{}
	for _, id := range ids {
		rs := defs[id]
		if len(rs) == 1 {
			all = append(all, rs[0].Resource)
			digests = append(digests, rs[0].digest)
			inForce[id] = true
			continue
		}
		// Which one the author meant is a guess: take neither.
		for i, r := range rs {
			err := fmt.Errorf("defined twice (first at %s)", rs[0].Source)
			if i == 0 {
				err = fmt.Errorf("defined twice (again at %s)", rs[1].Source)
			}
			reject(&SourceError{Source: r.Source, Kind: r.Kind, Key: r.Key(), Err: err})
		}
	}
	kept := map[string]bool{}
	for _, r := range prev.All() {
		id := resourceID(r.Kind, r.Key())
		if inForce[id] {
			continue
		}
		if !badIDs[id] && badFiles[sourceFile(r.Source)] == nil {
			continue // removed
		}
		all = append(all, r)
		digests = append(digests, digest(r))
		inForce[id], kept[id] = true, true
		if se := badFiles[sourceFile(r.Source)]; se != nil && !badIDs[id] {
			se.Kept = true
		}
	}
	for _, se := range rejected {
		if se.Kind != "" && se.Key != "" && kept[resourceID(se.Kind, se.Key)] {
			se.Kept = true
		}
	}
	return NewSnapshot(version(all, digests), all), warnings, rejected
}

// resourceID names a resource uniquely in a snapshot.
func resourceID(k Kind, key string) string { return string(k) + "/" + key }

// Version returns a short content hash of rs: the same resources give the
// same version whatever their order or the files they came from, so that a
// rewrite that changes nothing pushes nothing. It covers kind, apiVersion,
// namespace, name, labels, annotations and the spec (deterministically
// marshalled), not Source.
func Version(rs []Resource) string {
	digests := make([][sha256.Size]byte, len(rs))
	for i, r := range rs {
		digests[i] = digest(r)
	}
	return version(rs, digests)
}

// version is Version from each resource's digest (digests[i] is
// rs[i]'s), so that a Loader, which keeps the digests of the resources
// it parsed, hashes only those that changed.
func version(rs []Resource, digests [][sha256.Size]byte) string {
	order := make([]int, len(rs))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool {
		a, b := rs[order[i]], rs[order[j]]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	h := sha256.New()
	for _, i := range order {
		h.Write(digests[i][:])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// digest hashes what Version covers of one resource.
func digest(r Resource) [sha256.Size]byte {
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
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.Spec)
		if err != nil {
			b = []byte("error:" + err.Error())
		}
		spec = b
	}
	field(string(spec))
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}
