// Package certinfo describes certificate chains for people: for each
// certificate its SPIFFE ID or subject, issuer, validity, key type, serial,
// and which root of a trust bundle it chains to. `zmesh cert inspect` prints
// it for a PEM file or a proxy's live chain; during a root rotation, "chains
// to" is what tells an operator which proxies are still on the old root.
package certinfo
