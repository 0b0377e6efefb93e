package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"
)

// MaxInputSize is the largest input Parse accepts. Istio resources are
// small; a bigger file is a mistake or an attack, and bounding it bounds
// the memory a YAML decoder can be made to use.
const MaxInputSize = 4 << 20

// maxDocuments bounds the number of documents (including list items) in
// one input, so that a file of empty documents cannot make Parse loop long.
const maxDocuments = 10000

// DefaultNamespace is the namespace of a resource whose metadata names none,
// as kubectl would apply it.
const DefaultNamespace = "default"

// object is the Kubernetes envelope of one document. Other top-level fields
// (status) and other metadata fields (uid, resourceVersion, ...) are ignored:
// they are set by a cluster, and copies of `kubectl get -o yaml` carry them.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       Kind   `json:"kind"`
	Metadata   struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec  json.RawMessage   `json:"spec"`
	Items []json.RawMessage `json:"items"` // kind List only
}

// Parse reads the Istio resources in data, a YAML stream of Kubernetes-style
// objects separated by `---` lines. source names the input in messages and in
// each resource's Meta.Source ("SOURCE#N", N counting non-empty documents
// from 1).
//
// Specs are decoded strictly: an unknown field or enum value is an error
// naming the field, because a silently dropped field in a security policy
// changes what it allows. Kinds zmesh does not know produce a Warning and
// are skipped; documents of zmesh's own group (zmesh.dev) and empty
// documents are skipped silently. A `kind: List` document is expanded into
// its items. Parse does not Validate. It returns the first error, and no
// resources, if any document fails.
func Parse(data []byte, source string) ([]Resource, []Warning, error) {
	docs, err := parseDocuments(data, source)
	if err != nil {
		return nil, nil, err
	}
	var (
		out      []Resource
		warnings []Warning
	)
	for _, d := range docs {
		if d.err != nil {
			return nil, nil, d.err
		}
		out = append(out, d.resources...)
		warnings = append(warnings, d.warnings...)
	}
	return out, warnings, nil
}

// document is what one document (or one item of a List) of an input
// parsed into: resources and warnings, or the error that rejects it alone.
type document struct {
	resources []Resource
	warnings  []Warning
	err       *SourceError
}

// parseDocuments parses each document of data on its own, so that one bad
// document does not hide the others. The error is for the input as a
// whole (too large, too many documents): then nothing of it is read.
func parseDocuments(data []byte, source string) ([]document, *SourceError) {
	if len(data) > MaxInputSize {
		return nil, &SourceError{Source: source, Err: fmt.Errorf("input is %d bytes, more than the limit of %d", len(data), MaxInputSize)}
	}
	var (
		out []document
		n   int
	)
	for _, doc := range SplitDocuments(data) {
		if len(out) > maxDocuments {
			return nil, &SourceError{Source: source, Err: fmt.Errorf("more than %d documents", maxDocuments)}
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			n++
			out = append(out, document{err: &SourceError{Source: docSource(source, n), Err: fmt.Errorf("invalid YAML: %s", yamlMessage(err))}})
			continue
		}
		if isEmptyJSON(js) {
			continue
		}
		n++
		out = append(out, parseObject(js, docSource(source, n), true)...)
	}
	return out, nil
}

// parseObject decodes one JSON document: one result, or one per item of
// a List. allowList is false for the items of a List, so that lists do not
// nest.
func parseObject(js []byte, src string, allowList bool) []document {
	failed := func(err *SourceError) []document { return []document{{err: err}} }
	if t := bytes.TrimSpace(js); len(t) == 0 || t[0] != '{' {
		return failed(&SourceError{Source: src, Err: errors.New("document is not an object")})
	}
	var obj object
	if err := json.Unmarshal(js, &obj); err != nil {
		return failed(&SourceError{Source: src, Err: fmt.Errorf("malformed object: %s", jsonMessage(err))})
	}
	if obj.APIVersion == "" || obj.Kind == "" {
		return failed(&SourceError{Source: src, Err: errors.New("apiVersion and kind must be set")})
	}
	if isOwnGroup(obj.APIVersion) {
		return nil
	}
	if allowList && obj.APIVersion == "v1" && obj.Kind == "List" {
		return parseList(obj.Items, src)
	}
	spec := newSpec(obj.APIVersion, obj.Kind)
	if spec == nil {
		return []document{{warnings: []Warning{{Source: src, Message: fmt.Sprintf("skipped %s of apiVersion %s: not a kind zmesh understands", obj.Kind, obj.APIVersion)}}}}
	}
	meta := Meta{
		Kind:        obj.Kind,
		APIVersion:  obj.APIVersion,
		Name:        obj.Metadata.Name,
		Namespace:   obj.Metadata.Namespace,
		Labels:      obj.Metadata.Labels,
		Annotations: obj.Metadata.Annotations,
		Source:      src,
	}
	if meta.Namespace == "" {
		meta.Namespace = DefaultNamespace
	}
	fail := func(err error) []document {
		return failed(&SourceError{Source: src, Kind: meta.Kind, Key: meta.Key(), Err: err})
	}
	if meta.Name == "" {
		return failed(&SourceError{Source: src, Kind: meta.Kind, Err: errors.New("metadata.name must be set")})
	}
	if err := checkName(meta.Name); err != nil {
		return fail(fmt.Errorf("metadata.name: %w", err))
	}
	if err := checkNamespace(meta.Namespace); err != nil {
		return fail(fmt.Errorf("metadata.namespace: %w", err))
	}
	if err := decodeSpec(obj.Spec, spec); err != nil {
		return fail(err)
	}
	return []document{{resources: []Resource{{Meta: meta, Spec: spec}}}}
}

func parseList(items []json.RawMessage, src string) []document {
	if len(items) > maxDocuments {
		return []document{{err: &SourceError{Source: src, Err: fmt.Errorf("list has more than %d items", maxDocuments)}}}
	}
	var out []document
	for i, item := range items {
		out = append(out, parseObject(item, fmt.Sprintf("%s.items[%d]", src, i), false)...)
	}
	return out
}

// decodeSpec fills spec from its JSON form, rejecting unknown fields. A
// missing or null spec leaves spec empty, as Kubernetes would store it.
func decodeSpec(js json.RawMessage, spec proto.Message) error {
	if isEmptyJSON(js) {
		return nil
	}
	js = normalizeDurations(js, spec.ProtoReflect().Descriptor())
	err := protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(js, spec)
	if err == nil {
		return nil
	}
	// protojson reports positions in the JSON we made, which mean nothing to
	// the author of the YAML; say which field is wrong instead.
	if msg := explainSpec(js, spec.ProtoReflect().Descriptor()); msg != "" {
		return errors.New(msg)
	}
	return fmt.Errorf("spec: %s", protoMessage(err))
}

// SplitDocuments cuts a YAML stream at document separators: lines that
// start with "---" followed by nothing, blanks or a comment. It is the rule
// kubectl uses, and needs no YAML parse. Documents may be blank. It is the
// one splitter of every YAML zmesh reads (Istio resources, zmesh.dev
// Workloads, the analyzer's inputs).
func SplitDocuments(data []byte) [][]byte {
	var (
		docs  [][]byte
		start int
	)
	for i := 0; i < len(data); {
		end := bytes.IndexByte(data[i:], '\n')
		next := len(data)
		if end >= 0 {
			next = i + end + 1
		}
		line := data[i:next]
		if isSeparator(line) {
			docs = append(docs, data[start:i])
			start = next
		}
		i = next
	}
	return append(docs, data[start:])
}

func isSeparator(line []byte) bool {
	rest, ok := bytes.CutPrefix(line, []byte("---"))
	if !ok {
		return false
	}
	rest = bytes.TrimSpace(rest)
	return len(rest) == 0 || rest[0] == '#'
}

func isEmptyJSON(js []byte) bool {
	t := bytes.TrimSpace(js)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

func docSource(source string, n int) string {
	return source + "#" + strconv.Itoa(n)
}

// sourceFile returns the input a Meta.Source names: docSource's source.
// The document part ("#N", "#N.items[I]") holds no '#', so the last one
// ends the input's name even when that name has one.
func sourceFile(src string) string {
	if i := strings.LastIndexByte(src, '#'); i >= 0 {
		return src[:i]
	}
	return src
}

// dns1123Subdomain and dns1123Label are Kubernetes' rules for object names
// and namespaces. Enforcing them keeps "NAMESPACE/NAME" keys unambiguous.
var (
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
)

func checkName(name string) error {
	if len(name) > 253 || !dns1123Subdomain.MatchString(name) {
		return fmt.Errorf("%q is not a valid name: lower case letters, digits, '-' and '.', at most 253 characters", name)
	}
	return nil
}

func checkNamespace(ns string) error {
	if len(ns) > 63 || !dns1123Label.MatchString(ns) {
		return fmt.Errorf("%q is not a valid namespace: lower case letters, digits and '-', at most 63 characters", ns)
	}
	return nil
}

var protoPosition = regexp.MustCompile(`^proto:\s*(\(line \d+:\d+\):\s*)?`)

func protoMessage(err error) string {
	return protoPosition.ReplaceAllString(err.Error(), "")
}

func yamlMessage(err error) string {
	s := err.Error()
	s = strings.TrimPrefix(s, "error converting YAML to JSON: ")
	return s
}

func jsonMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("%s must be %s, not %s", te.Field, jsonType(te.Type.Kind().String()), te.Value)
	}
	return err.Error()
}

func jsonType(goKind string) string {
	switch goKind {
	case "map":
		return "a map of strings"
	case "struct":
		return "an object"
	default:
		return "a " + goKind
	}
}
