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
// its items. Parse does not Validate.
func Parse(data []byte, source string) ([]Resource, []Warning, error) {
	if len(data) > MaxInputSize {
		return nil, nil, &SourceError{Source: source, Err: fmt.Errorf("input is %d bytes, more than the limit of %d", len(data), MaxInputSize)}
	}
	var (
		out      []Resource
		warnings []Warning
		n        int
	)
	for _, doc := range splitDocuments(data) {
		if len(out)+len(warnings) > maxDocuments {
			return nil, nil, &SourceError{Source: source, Err: fmt.Errorf("more than %d documents", maxDocuments)}
		}
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			n++
			return nil, nil, &SourceError{Source: docSource(source, n), Err: fmt.Errorf("invalid YAML: %s", yamlMessage(err))}
		}
		if isEmptyJSON(js) {
			continue
		}
		n++
		src := docSource(source, n)
		rs, ws, err := parseObject(js, src, true)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, rs...)
		warnings = append(warnings, ws...)
	}
	return out, warnings, nil
}

// parseObject decodes one JSON document. allowList is false for the items of
// a List, so that lists do not nest.
func parseObject(js []byte, src string, allowList bool) ([]Resource, []Warning, error) {
	if t := bytes.TrimSpace(js); len(t) == 0 || t[0] != '{' {
		return nil, nil, &SourceError{Source: src, Err: errors.New("document is not an object")}
	}
	var obj object
	if err := json.Unmarshal(js, &obj); err != nil {
		return nil, nil, &SourceError{Source: src, Err: fmt.Errorf("malformed object: %s", jsonMessage(err))}
	}
	if obj.APIVersion == "" || obj.Kind == "" {
		return nil, nil, &SourceError{Source: src, Err: errors.New("apiVersion and kind must be set")}
	}
	if isOwnGroup(obj.APIVersion) {
		return nil, nil, nil
	}
	if allowList && obj.APIVersion == "v1" && obj.Kind == "List" {
		return parseList(obj.Items, src)
	}
	spec := newSpec(obj.APIVersion, obj.Kind)
	if spec == nil {
		return nil, []Warning{{Source: src, Message: fmt.Sprintf("skipped %s of apiVersion %s: not a kind zmesh understands", obj.Kind, obj.APIVersion)}}, nil
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
	fail := func(err error) error {
		return &SourceError{Source: src, Kind: meta.Kind, Key: meta.Key(), Err: err}
	}
	if meta.Name == "" {
		return nil, nil, &SourceError{Source: src, Kind: meta.Kind, Err: errors.New("metadata.name must be set")}
	}
	if err := checkName(meta.Name); err != nil {
		return nil, nil, fail(fmt.Errorf("metadata.name: %w", err))
	}
	if err := checkNamespace(meta.Namespace); err != nil {
		return nil, nil, fail(fmt.Errorf("metadata.namespace: %w", err))
	}
	if err := decodeSpec(obj.Spec, spec); err != nil {
		return nil, nil, fail(err)
	}
	return []Resource{{Meta: meta, Spec: spec}}, nil, nil
}

func parseList(items []json.RawMessage, src string) ([]Resource, []Warning, error) {
	if len(items) > maxDocuments {
		return nil, nil, &SourceError{Source: src, Err: fmt.Errorf("list has more than %d items", maxDocuments)}
	}
	var (
		out      []Resource
		warnings []Warning
	)
	for i, item := range items {
		rs, ws, err := parseObject(item, fmt.Sprintf("%s.items[%d]", src, i), false)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, rs...)
		warnings = append(warnings, ws...)
	}
	return out, warnings, nil
}

// decodeSpec fills spec from its JSON form, rejecting unknown fields. A
// missing or null spec leaves spec empty, as Kubernetes would store it.
func decodeSpec(js json.RawMessage, spec proto.Message) error {
	if isEmptyJSON(js) {
		return nil
	}
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

// splitDocuments cuts a YAML stream at document separators: lines that
// start with "---" followed by nothing, blanks or a comment. It is the rule
// kubectl uses, and needs no YAML parse.
func splitDocuments(data []byte) [][]byte {
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
