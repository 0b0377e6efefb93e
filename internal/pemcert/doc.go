// Package pemcert turns X.509 certificates into PEM and back. The CA writes
// its roots and chains as PEM files, the agent hands its chain and bundle to
// Envoy and to the admin page as PEM, and `zmesh cert inspect` reads PEM
// files; keeping the encoding in one place means they all agree on it.
//
// Parsing comes in two modes, because the inputs differ in who wrote them:
//
//   - Parse is lenient, for files an operator gives us (Istio "cacerts",
//     a chain to inspect). Such files often hold the private key next to the
//     certificate, so blocks of any other type are skipped, and never quoted
//     in an error.
//   - ParseStrict is for what a CA sent over the network: only CERTIFICATE
//     blocks, nothing after the last one but whitespace, and a bounded number
//     of them, so a confused or hostile CA cannot slip anything else in.
//
// Errors carry no package prefix: each caller already says what it was
// reading (a file name, a CA response element), and that is the context an
// operator needs.
package pemcert
