package authz

import (
	"errors"
	"strings"
)

// Path errors. A request whose path fails normalization is denied: Istio
// (Envoy) rejects it with 400 before any policy runs.
var (
	ErrPathNotAbsolute = errors.New("authz: request path does not start with /")
	ErrPathNUL         = errors.New("authz: request path contains %00")
	ErrPathBadEscape   = errors.New("authz: request path has a malformed percent-encoding")
	ErrPathBadChar     = errors.New("authz: request path contains a control character or space")
)

// NormalizePath returns the path component of target (query and fragment
// removed) normalized per n, the form policies' paths and notPaths match.
//
// The steps are Istio's, in its order: decode %2F and %5C (DECODE_AND_MERGE_SLASHES
// only); RFC 3986 normalization as Envoy's normalize_path does it (decode
// percent-encoded unreserved characters A-Z a-z 0-9 - . _ ~ once, write other
// escapes in upper case, percent-encode non-ASCII bytes, turn "\" into "/",
// resolve "." and ".." segments, never above the root); merge slashes
// (MERGE_SLASHES and DECODE_AND_MERGE_SLASHES).
//
// It fails, and the request must be rejected with 400, under every
// normalization, NONE included: on %00 (Istio documents it as always
// rejected), on a target that does not start with "/", on control
// characters, and on a "%" not followed by two hex digits. Envoy would pass
// such a "%" through, but a lone "%" can complete an escape in a later
// decoding step (a backend that decodes again), which is the
// double-decoding bypass this function exists to prevent.
//
// Encoded slashes (%2F, %5C) are data, kept as they came (in upper case),
// except under DECODE_AND_MERGE_SLASHES, which decodes them: Istio sets
// Envoy's path_with_escaped_slashes_action to KEEP_UNCHANGED for the other
// normalizations and to UNESCAPE_AND_FORWARD for that one. A request with
// an encoded slash is therefore never rejected for it.
//
// The result is idempotent: NormalizePath(NormalizePath(p)) == NormalizePath(p).
// It allocates only when the path changes beyond dropping the query.
// The proxy forwards the normalized path followed by the original query.
func NormalizePath(target string, n PathNormalization) (string, error) {
	if target == "" || target[0] != '/' {
		return "", ErrPathNotAbsolute
	}
	merge := n == NormalizeMergeSlashes || n == NormalizeDecodeAndMergeSlashes
	end, clean, err := scanPath(target, merge)
	if err != nil {
		return "", err
	}
	target = target[:end]
	if clean || n == NormalizeNone {
		return target, nil
	}
	buf, err := decodePath(target, n == NormalizeDecodeAndMergeSlashes)
	if err != nil {
		return "", err
	}
	buf = removeDotSegments(buf)
	if merge {
		buf = mergeSlashes(buf)
	}
	return string(buf), nil
}

// scanPath finds where the path component of target ends (at "?" or
// "#") and reports whether that path is already normalized, so the common
// case costs one scan and no allocation. It also makes the checks that
// hold whatever the normalization, NONE included: no control character,
// no %00, no "%" without two hex digits after it. NONE returns the path
// as received, so these checks are all that stands between a hostile
// path and the app.
func scanPath(target string, merge bool) (end int, clean bool, err error) {
	clean = true
	for i := 0; i < len(target); i++ {
		c := target[i]
		switch {
		case c == '?' || c == '#':
			return i, clean, nil
		case c <= ' ' || c == 0x7f:
			return 0, false, ErrPathBadChar
		case c == '%':
			if i+2 >= len(target) {
				return 0, false, ErrPathBadEscape
			}
			hi, ok1 := unhex(target[i+1])
			lo, ok2 := unhex(target[i+2])
			if !ok1 || !ok2 {
				return 0, false, ErrPathBadEscape
			}
			if hi == 0 && lo == 0 {
				return 0, false, ErrPathNUL
			}
			clean = false
			i += 2
		case c == '\\' || c >= 0x80:
			clean = false
		case c == '/' && i+1 < len(target):
			if next := target[i+1]; next == '/' && merge || next == '.' && isDotSegment(target[i+1:]) {
				clean = false
			}
		}
	}
	return len(target), clean, nil
}

// isDotSegment reports whether s starts with a "." or ".." segment.
func isDotSegment(s string) bool {
	end := strings.IndexAny(s, "/?#")
	if end < 0 {
		end = len(s)
	}
	seg := s[:end]
	return seg == "." || seg == ".."
}

const upperHex = "0123456789ABCDEF"

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// decodePath performs the single decoding pass and the character-level
// rewrites ("\" to "/", non-ASCII escaped).
func decodePath(p string, decodeSlashes bool) ([]byte, error) {
	buf := make([]byte, 0, len(p)+8)
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) {
				return nil, ErrPathBadEscape
			}
			hi, ok1 := unhex(p[i+1])
			lo, ok2 := unhex(p[i+2])
			if !ok1 || !ok2 {
				return nil, ErrPathBadEscape
			}
			v := hi<<4 | lo
			i += 2
			switch {
			case v == 0:
				return nil, ErrPathNUL
			case isUnreserved(v):
				buf = append(buf, v)
			case decodeSlashes && (v == '/' || v == '\\'):
				buf = append(buf, '/')
			default:
				buf = append(buf, '%', upperHex[v>>4], upperHex[v&15])
			}
		case c == '\\':
			buf = append(buf, '/')
		case c <= ' ' || c == 0x7f:
			return nil, ErrPathBadChar
		case c >= 0x80:
			buf = append(buf, '%', upperHex[c>>4], upperHex[c&15])
		default:
			buf = append(buf, c)
		}
	}
	return buf, nil
}

// removeDotSegments resolves "." and ".." segments (RFC 3986 section 5.2.4)
// in place. p starts with "/".
func removeDotSegments(p []byte) []byte {
	out := p[:0]
	// Segment boundaries in out: out always starts with "/".
	i := 0
	for i < len(p) {
		// p[i] == '/': read the segment after it.
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg := p[i+1 : j]
		last := j == len(p)
		switch {
		case len(seg) == 1 && seg[0] == '.':
			if last {
				out = append(out, '/')
			}
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			// Drop the last segment of out (and its "/").
			k := len(out) - 1
			for k >= 0 && out[k] != '/' {
				k--
			}
			if k < 0 {
				k = 0
			}
			out = out[:k]
			if last {
				out = append(out, '/')
			}
		default:
			// Copy "/" + seg; out never overtakes the read position.
			out = append(out, '/')
			out = append(out, seg...)
		}
		i = j
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return out
}

func mergeSlashes(p []byte) []byte {
	out := p[:0]
	for _, c := range p {
		if c == '/' && len(out) > 0 && out[len(out)-1] == '/' {
			continue
		}
		out = append(out, c)
	}
	return out
}
