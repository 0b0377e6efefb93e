package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// explainSpec finds why a spec failed to decode and says it in the YAML
// author's terms: the path of the field ("spec.rules[0].from[0].source") and
// what is wrong with it, with a suggestion for a misspelt field. It returns
// "" when it finds nothing, and the caller falls back to protojson's message.
//
// It walks only message-typed fields of Istio's schemas, which do not
// recurse, so its depth is bounded by the schema, not by the input.
func explainSpec(js []byte, md protoreflect.MessageDescriptor) string {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return ""
	}
	return explainMessage("spec", v, md)
}

func explainMessage(path string, v any, md protoreflect.MessageDescriptor) string {
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return "" // well-known types have their own JSON forms
	}
	obj, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return ""
		}
		return fmt.Sprintf("%s: must be an object, not %s", path, describe(v))
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fields := md.Fields()
	for _, k := range keys {
		fd := fields.ByJSONName(k)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(k))
		}
		if fd == nil {
			msg := fmt.Sprintf("%s: unknown field %q", path, k)
			if s := suggest(k, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return msg
		}
		if msg := explainField(path+"."+k, obj[k], fd); msg != "" {
			return msg
		}
	}
	return ""
}

func explainField(path string, v any, fd protoreflect.FieldDescriptor) string {
	if v == nil {
		return ""
	}
	switch {
	case fd.IsMap():
		m, ok := v.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: must be a map, not %s", path, describe(v))
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if msg := explainMapKey(fmt.Sprintf("%s[%s]", path, k), k, fd.MapKey()); msg != "" {
				return msg
			}
			if msg := explainSingle(fmt.Sprintf("%s[%s]", path, k), m[k], fd.MapValue()); msg != "" {
				return msg
			}
		}
		return ""
	case fd.IsList():
		list, ok := v.([]any)
		if !ok {
			return fmt.Sprintf("%s: must be a list, not %s", path, describe(v))
		}
		for i, e := range list {
			if msg := explainSingle(fmt.Sprintf("%s[%d]", path, i), e, fd); msg != "" {
				return msg
			}
		}
		return ""
	default:
		return explainSingle(path, v, fd)
	}
}

// explainMapKey checks a map key, which JSON always writes as a string.
func explainMapKey(path, k string, fd protoreflect.FieldDescriptor) string {
	var err error
	switch fd.Kind() {
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		_, err = strconv.ParseUint(k, 10, 32)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		_, err = strconv.ParseUint(k, 10, 64)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		_, err = strconv.ParseInt(k, 10, 32)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		_, err = strconv.ParseInt(k, 10, 64)
	case protoreflect.BoolKind:
		_, err = strconv.ParseBool(k)
	}
	if err != nil {
		return fmt.Sprintf("%s: key %q must be a number", path, k)
	}
	return ""
}

// explainSingle checks one value of fd's element type.
func explainSingle(path string, v any, fd protoreflect.FieldDescriptor) string {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return explainMessage(path, v, fd.Message())
	case protoreflect.EnumKind:
		s, ok := v.(string)
		if !ok {
			return ""
		}
		values := fd.Enum().Values()
		if values.ByName(protoreflect.Name(s)) != nil {
			return ""
		}
		names := make([]string, 0, values.Len())
		for i := 0; i < values.Len(); i++ {
			names = append(names, string(values.Get(i).Name()))
		}
		return fmt.Sprintf("%s: invalid value %q, must be one of %s", path, s, strings.Join(names, ", "))
	case protoreflect.StringKind, protoreflect.BytesKind:
		switch v := v.(type) {
		case string:
		case json.Number, bool:
			return fmt.Sprintf("%s: must be a string, not %s (quote it: \"%s\")", path, describe(v), describe(v))
		default:
			return fmt.Sprintf("%s: must be a string, not %s", path, describe(v))
		}
	case protoreflect.BoolKind:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("%s: must be true or false, not %s", path, describe(v))
		}
	default: // numbers: protojson also takes them quoted
		switch n := v.(type) {
		case json.Number:
		case string:
			if _, err := strconv.ParseFloat(n, 64); err != nil {
				return fmt.Sprintf("%s: must be a number, not %q", path, n)
			}
		default:
			return fmt.Sprintf("%s: must be a number, not %s", path, describe(v))
		}
	}
	return ""
}

func describe(v any) string {
	switch v := v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return strconv.Quote(v)
	case bool:
		return strconv.FormatBool(v)
	case json.Number:
		return v.String()
	default:
		return fmt.Sprintf("%v", v)
	}
}

// suggest returns the field whose JSON name is closest to k, if close
// enough to be a likely typo.
func suggest(k string, fields protoreflect.FieldDescriptors) string {
	best, bestDist := "", 3
	for i := 0; i < fields.Len(); i++ {
		name := fields.Get(i).JSONName()
		if strings.EqualFold(name, k) {
			return name
		}
		if d := editDistance(strings.ToLower(k), strings.ToLower(name)); d < bestDist {
			best, bestDist = name, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance; inputs are field names, short.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
