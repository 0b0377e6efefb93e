package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// Loader is Reload for a source that follows edits of many inputs: it
// remembers what each input parsed and validated into, by name and
// content hash, and parses again only the inputs whose content changed.
// One edited file among a thousand then costs one parse and a thousand
// hashes instead of a thousand parses (YAML to JSON to protojson and
// validation are ~1 ms a file); a file rewritten or touched with the same
// content costs its hash. The result is exactly Reload's over the same
// inputs: the same snapshot, warnings and rejections, in the same order.
//
// The zero value is ready to use. A Loader is not safe for concurrent use:
// a source calls it from the one goroutine that follows its inputs.
type Loader struct {
	inputs map[string]*checkedInput // by input name
	parsed int
}

// Reload is config.Reload over prev, files and unreadable. Inputs no
// longer present (removed, or unreadable now) are forgotten.
func (l *Loader) Reload(prev *Snapshot, files map[string][]byte, unreadable map[string]error) (*Snapshot, []Warning, []*SourceError) {
	next := make(map[string]*checkedInput, len(files))
	snap, warnings, rejected := reload(prev, files, unreadable, func(name string, data []byte) *checkedInput {
		sum := sha256.Sum256(data)
		if in := l.inputs[name]; in != nil && in.sum == sum {
			next[name] = in
			return in
		}
		l.parsed++
		in := checkInput(name, data)
		in.sum = sum
		next[name] = in
		return in
	})
	l.inputs = next
	return snap, warnings, rejected
}

// Parsed returns how many inputs the Loader has parsed since it was made:
// inputs met for the first time or with new content. Tests and benchmarks
// use it to tell a reparse from a hit.
func (l *Loader) Parsed() int { return l.parsed }

// checkedInput is what one input parsed and validated into: the error
// that rejects it whole, or its documents in order. It is never modified
// once made; Reload clones the errors it returns (it sets their Kept).
type checkedInput struct {
	sum  [sha256.Size]byte // of the content, set by Loader
	err  *SourceError
	docs []checkedDocument
}

// checkedDocument is a document: its parse warnings, and the error that
// rejects it alone or its resources with the outcome of validating each.
type checkedDocument struct {
	warnings  []Warning
	err       *SourceError
	resources []checkedResource
}

// checkedResource is a parsed resource, the warnings its validation gave
// (ready to report), and the error that rejects it or, when valid, its
// digest for the snapshot's version.
type checkedResource struct {
	Resource
	warnings []Warning
	err      *SourceError
	digest   [sha256.Size]byte
}

// checkInput parses data, the content of the input name, and validates
// each resource it holds. It depends on nothing but its arguments, which
// is what lets Loader keep its result for as long as data is the same.
func checkInput(name string, data []byte) *checkedInput {
	docs, err := parseDocuments(data, name)
	if err != nil {
		return &checkedInput{err: err}
	}
	in := &checkedInput{docs: make([]checkedDocument, len(docs))}
	for i, d := range docs {
		cd := checkedDocument{warnings: d.warnings, err: d.err}
		for _, r := range d.resources {
			cr := checkedResource{Resource: r}
			vw, err := validate(r)
			for _, w := range vw {
				cr.warnings = append(cr.warnings, Warning{Source: r.Source, Message: fmt.Sprintf("%s %s: %s", r.Kind, r.Key(), w)})
			}
			if err != nil {
				se := &SourceError{Source: r.Source, Kind: r.Kind, Key: r.Key(), Err: err}
				errors.As(err, &se)
				cr.err = se
			} else {
				cr.digest = digest(r)
			}
			cd.resources = append(cd.resources, cr)
		}
		in.docs[i] = cd
	}
	return in
}

// clone returns a copy of e that Reload may mark Kept without changing
// what a Loader remembers.
func (e *SourceError) clone() *SourceError {
	c := *e
	return &c
}
