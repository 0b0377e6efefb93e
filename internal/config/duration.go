package config

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// maxDurationDepth bounds the walk of normalizeDurations, as Istio specs
// nest a few levels only.
const maxDurationDepth = 32

// normalizeDurations rewrites, in a spec's JSON, the values of
// google.protobuf.Duration fields written as Go durations ("5m",
// "1h30m", "100ms"), which Istio's documentation uses and its CRDs accept
// (DestinationRule outlierDetection: baseEjectionTime: 15m), into the
// seconds form protojson reads ("900s"). Anything else is left for
// protojson to accept or reject; js comes back unchanged when nothing
// was rewritten.
func normalizeDurations(js []byte, md protoreflect.MessageDescriptor) []byte {
	if !bytes.Contains(js, []byte(`"`)) {
		return js
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return js
	}
	if !walkDurations(v, md, 0) {
		return js
	}
	out, err := json.Marshal(v)
	if err != nil {
		return js
	}
	return out
}

// walkDurations rewrites the Duration fields under v, a message md in
// JSON form, and reports whether it changed anything.
func walkDurations(v any, md protoreflect.MessageDescriptor, depth int) bool {
	obj, ok := v.(map[string]any)
	if !ok || depth > maxDurationDepth {
		return false
	}
	changed := false
	fields := md.Fields()
	for k, val := range obj {
		fd := fields.ByJSONName(k)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(k))
		}
		if fd == nil || fd.Message() == nil {
			continue
		}
		sub := fd.Message()
		if fd.IsMap() {
			sub = fd.MapValue().Message()
			m, ok := val.(map[string]any)
			if sub == nil || !ok {
				continue
			}
			for mk, mv := range m {
				if s, ok := durationValue(sub, mv); ok {
					m[mk], changed = s, true
				} else if walkDurations(mv, sub, depth+1) {
					changed = true
				}
			}
			continue
		}
		if fd.IsList() {
			list, ok := val.([]any)
			if !ok {
				continue
			}
			for i, item := range list {
				if s, ok := durationValue(sub, item); ok {
					list[i], changed = s, true
				} else if walkDurations(item, sub, depth+1) {
					changed = true
				}
			}
			continue
		}
		if s, ok := durationValue(sub, val); ok {
			obj[k], changed = s, true
		} else if walkDurations(val, sub, depth+1) {
			changed = true
		}
	}
	return changed
}

// durationValue returns v in protojson's form when md is Duration and v
// a Go duration string not already in that form.
func durationValue(md protoreflect.MessageDescriptor, v any) (string, bool) {
	if md.FullName() != "google.protobuf.Duration" {
		return "", false
	}
	s, ok := v.(string)
	if !ok || isSecondsForm(s) {
		return "", false
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return "", false
	}
	secs := strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
	if d%time.Second != 0 {
		// Exact nanoseconds, not a float's rounding.
		secs = strconv.FormatInt(int64(d/time.Second), 10) + "." + strings.TrimRight(strconv.FormatInt(int64((d%time.Second).Abs())+1e9, 10)[1:], "0")
		if d < 0 && d > -time.Second {
			secs = "-" + secs
		}
	}
	return secs + "s", true
}

// isSecondsForm reports whether s is already protojson's "N[.F]s".
func isSecondsForm(s string) bool {
	num, ok := strings.CutSuffix(s, "s")
	if !ok {
		return false
	}
	_, err := strconv.ParseFloat(num, 64)
	return err == nil && !strings.ContainsAny(num, "eEnN")
}
