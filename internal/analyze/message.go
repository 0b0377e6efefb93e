package analyze

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Level is how serious a message is, with istioctl's names.
type Level int

// Levels, least serious first.
const (
	Info Level = iota
	Warning
	Error
)

// String returns istioctl's name of the level.
func (l Level) String() string {
	switch l {
	case Error:
		return "Error"
	case Warning:
		return "Warning"
	default:
		return "Info"
	}
}

// MarshalText lets a Level print as its name in JSON.
func (l Level) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// Type is one kind of message: a stable code, a level and a template.
// Istio's types keep istioctl's code, level, name and template, so that
// scripts and habits built on istioctl carry over.
type Type struct {
	Code     string // IST0101, ZM0001, ...
	Level    Level
	Name     string // e.g. ReferencedResourceNotFound
	Template string // fmt template of the message text
	// Why says, for zmesh's own types, what Istio misses and why it
	// matters; for Istio's, what zmesh checks it against.
	Why string
}

// Message is one finding about one resource.
type Message struct {
	Type Type
	// Resource is "KIND NAMESPACE/NAME" ("KIND NAME" for a namespace, or
	// the input's name when what it defines could not be read).
	Resource string
	// Source names the file and document the resource came from, when
	// known ("policies.yaml#2").
	Source string
	Args   []any
}

// Text returns the message's text, its Type's template filled in.
func (m Message) Text() string { return fmt.Sprintf(m.Type.Template, m.Args...) }

// String returns the message as `zmesh analyze` prints it (DESIGN §5):
// `Error [IST0101] (AuthorizationPolicy foo/deny-all) Referenced namespace not found: "bar"`.
func (m Message) String() string {
	res := ""
	if m.Resource != "" {
		res = " (" + m.Resource + ")"
	}
	return fmt.Sprintf("%s [%s]%s %s", m.Type.Level, m.Type.Code, res, m.Text())
}

// MarshalJSON writes the contract's fields {"code","level","resource",
// "message"} and, added to them, "source" when known.
func (m Message) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Code     string `json:"code"`
		Level    Level  `json:"level"`
		Resource string `json:"resource"`
		Message  string `json:"message"`
		Source   string `json:"source,omitempty"`
	}{m.Type.Code, m.Type.Level, m.Resource, m.Text(), m.Source})
}

// resourceName returns the Resource of a message about kind ns/name.
func resourceName(kind, ns, name string) string {
	if ns == "" {
		return kind + " " + name
	}
	return kind + " " + ns + "/" + name
}

// sortMessages orders messages as istioctl does (by resource, then code,
// then text) and drops exact duplicates, so that output is stable.
func sortMessages(ms []Message) []Message {
	sort.SliceStable(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if a.Resource != b.Resource {
			return a.Resource < b.Resource
		}
		if a.Type.Code != b.Type.Code {
			return a.Type.Code < b.Type.Code
		}
		return a.Text() < b.Text()
	})
	out := ms[:0]
	for i, m := range ms {
		if i > 0 && m.Resource == out[len(out)-1].Resource && m.Type.Code == out[len(out)-1].Type.Code && m.Text() == out[len(out)-1].Text() {
			continue
		}
		out = append(out, m)
	}
	return out
}

// Highest returns the highest level among ms, and false when ms is empty.
func Highest(ms []Message) (Level, bool) {
	if len(ms) == 0 {
		return Info, false
	}
	hi := Info
	for _, m := range ms {
		if m.Type.Level > hi {
			hi = m.Type.Level
		}
	}
	return hi, true
}

// quoteList formats values as `"a", "b"`.
func quoteList(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}
