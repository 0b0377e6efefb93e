// Package inject decides whether a Pod joins the mesh and computes the
// JSON patch that makes it a member: the native sidecar zmesh-proxy (an
// init container with restartPolicy Always, so the app starts after the
// proxy is ready and Jobs still complete), the capture init container
// zmesh-init, the projected service-account token the proxy authenticates
// with, the mesh's root certificate, and Istio's labels and status
// annotation. It rewrites the app containers' probes to go through the
// proxy (probes.go), as Istio's injector does, so they pass under STRICT
// mTLS.
//
// It follows Istio's injection rules and reads Istio's annotations, so a
// namespace or Deployment labelled for Istio is injected the same way. It
// is pure: the webhook (package inject/webhook) does the I/O, this package
// only reads the Pod it is given. An annotation it cannot honour exactly
// is an error, never an injection with different capture rules than the
// user asked for.
package inject
