// Package ui is the control plane's web view of the mesh: the workloads
// and their identities, the edges between them with their mTLS status,
// request and denial counts, the policies and what each selects, the
// workload certificates, and a form that explains a decision as `zmesh
// check` does.
//
// Its data comes from what the control plane already holds (registry,
// proxy status, config snapshot) and from each proxy's own admin /metrics,
// read only while someone looks at the page: nothing is added to the data
// path. Build turns those inputs into a Model and is pure; Scraper and
// Live do the reading; Handler serves the page (HTML written here with
// explicit escaping, not html/template, which the zmesh binary must not
// link), its JSON and the check form.
package ui
