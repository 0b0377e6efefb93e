package client

import (
	"net/http"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestApplyHeaders(t *testing.T) {
	opt := func(k, v string, set func(*corev3.HeaderValueOption)) *corev3.HeaderValueOption {
		o := header(k, v)
		if set != nil {
			set(o)
		}
		return o
	}
	appendTrue := func(o *corev3.HeaderValueOption) { o.Append = wrapperspb.Bool(true) }
	appendFalse := func(o *corev3.HeaderValueOption) { o.Append = wrapperspb.Bool(false) }
	action := func(a corev3.HeaderValueOption_HeaderAppendAction) func(*corev3.HeaderValueOption) {
		return func(o *corev3.HeaderValueOption) { o.AppendAction = a }
	}
	for _, tc := range []struct {
		name string
		opt  *corev3.HeaderValueOption
		want string // X-A's values after, joined with ","; "-" absent
	}{
		{"unset append sets, as Envoy's ext_authz", opt("x-a", "new", nil), "new"},
		{"append true adds", opt("x-a", "new", appendTrue), "old,new"},
		{"append false sets", opt("x-a", "new", appendFalse), "new"},
		{"ADD_IF_ABSENT keeps a present header", opt("x-a", "new", action(corev3.HeaderValueOption_ADD_IF_ABSENT)), "old"},
		{"OVERWRITE_IF_EXISTS sets a present header", opt("x-a", "new", action(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS)), "new"},
		{"a raw value stands for an empty one", opt("x-a", "", func(o *corev3.HeaderValueOption) { o.Header.RawValue = []byte("raw") }), "raw"},
		{"an invalid value is skipped", opt("x-a", "a\r\nb", nil), "old"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{"X-A": {"old"}}
			ApplyHeaders(h, []*corev3.HeaderValueOption{tc.opt})
			if got := strings.Join(h.Values("X-A"), ","); got != tc.want {
				t.Errorf("X-A = %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("absent headers", func(t *testing.T) {
		h := http.Header{}
		ApplyHeaders(h, []*corev3.HeaderValueOption{
			opt("x-if-absent", "1", action(corev3.HeaderValueOption_ADD_IF_ABSENT)),
			opt("x-if-exists", "1", action(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS)),
			opt(":path", "/admin", nil),
			opt("bad name", "1", nil),
		})
		if len(h) != 1 || h.Get("X-If-Absent") != "1" {
			t.Errorf("got %v, want X-If-Absent only", h)
		}
	})
}

// FuzzApplyHeaders: whatever a provider sends, no pseudo-header, invalid
// name or invalid value reaches a request or response.
func FuzzApplyHeaders(f *testing.F) {
	f.Add("x-user", "alice", []byte(nil), int32(0), byte(0))
	f.Add(":path", "/admin", []byte(nil), int32(0), byte(1))
	f.Add("x-a", "", []byte("raw\r\n"), int32(2), byte(2))
	f.Add("Host", "evil", []byte(nil), int32(3), byte(0))
	f.Fuzz(func(t *testing.T, k, v string, raw []byte, action int32, appendMode byte) {
		o := &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: v, RawValue: raw},
			AppendAction: corev3.HeaderValueOption_HeaderAppendAction(action),
		}
		if appendMode > 0 {
			o.Append = wrapperspb.Bool(appendMode > 1)
		}
		h := http.Header{"X-Kept": {"1"}}
		ApplyHeaders(h, []*corev3.HeaderValueOption{o})
		for name, vs := range h {
			if strings.HasPrefix(name, ":") || !httpguts.ValidHeaderFieldName(name) {
				t.Fatalf("header name %q", name)
			}
			for _, s := range vs {
				if !httpguts.ValidHeaderFieldValue(s) {
					t.Fatalf("header %s value %q", name, s)
				}
			}
		}
	})
}
