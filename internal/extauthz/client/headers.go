package client

import (
	"net/http"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"golang.org/x/net/http/httpguts"
)

// ApplyHeaders applies a provider's header options (an Answer's Set,
// Headers or Respond) to h, with Envoy's append semantics; invalid names
// or values are skipped.
func ApplyHeaders(h http.Header, opts []*corev3.HeaderValueOption) {
	for _, o := range opts {
		k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if v == "" && len(o.GetHeader().GetRawValue()) > 0 {
			v = string(o.GetHeader().GetRawValue())
		}
		if strings.HasPrefix(k, ":") || !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
			continue
		}
		_, present := h[http.CanonicalHeaderKey(k)]
		switch {
		case o.GetAppend() != nil && o.GetAppend().GetValue():
			h.Add(k, v)
		case o.GetAppend() != nil:
			h.Set(k, v)
		case o.GetAppendAction() == corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !present {
				h.Set(k, v)
			}
		case o.GetAppendAction() == corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if present {
				h.Set(k, v)
			}
		default:
			// APPEND_IF_EXISTS_OR_ADD is the enum's zero value, which a
			// provider that sets nothing sends; Envoy's ext_authz has long
			// treated an unset append as "set", and so do we.
			h.Set(k, v)
		}
	}
}
