package config

import (
	"fmt"
	"strings"
)

// SourceError is a problem with one input document. Source names the file
// and document so that a user can find it; Kind and Key are set once the
// document was read that far. Parse, Validate and Load return errors that
// wrap a *SourceError (Load joins one per problem document), so callers can
// use errors.As to report the file.
type SourceError struct {
	Source string // e.g. "policies.yaml#2"; may be empty for Validate on a hand-built Resource
	Kind   Kind   // empty if the document could not be read that far
	Key    string // NAMESPACE/NAME; empty if unknown
	Err    error
	// Kept is set by Reload when the rejection leaves a last good version
	// in force: of this resource, or, for a whole input, of some of the
	// resources it held before.
	Kept bool
}

func (e *SourceError) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Kind != "" {
		b.WriteString(string(e.Kind))
		if e.Key != "" {
			b.WriteString(" ")
			b.WriteString(e.Key)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *SourceError) Unwrap() error { return e.Err }

// File is the input the error is about: Source without its "#N" document
// number.
func (e *SourceError) File() string { return sourceFile(e.Source) }

// ValidationError lists every rule a resource breaks, so that one run shows
// the user all of them rather than one per edit.
type ValidationError struct {
	Problems []string
}

func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid: " + e.Problems[0]
	}
	return fmt.Sprintf("invalid (%d problems): %s", len(e.Problems), strings.Join(e.Problems, "; "))
}
