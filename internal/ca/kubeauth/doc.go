// Package kubeauth authenticates certificate requests that carry a
// Kubernetes service-account token, as Istio's agent sends it
// ("authorization: Bearer TOKEN", a projected token for the audience
// istio-ca). The token is checked by the Kubernetes API itself, through a
// TokenReview for that audience: the API checks signature, expiry, audience,
// and that the service account (and the pod a bound token names) still
// exists. The identity spiffe://TD/ns/NS/sa/SA comes from the review's user
// name, system:serviceaccount:NS:SA, never from the request.
//
// It plugs into the CSR service (package ca/csr) as one Authenticator of
// its chain: a bearer value that is not shaped like a JWT is left to the
// others, a JWT is decided here, and an API that does not answer refuses the
// request with csr.ErrUnavailable (fail closed). Reviews that succeed are
// cached briefly, keyed by the token's SHA-256, so that a fleet renewing at
// once does not send the API one review per proxy. This and ca/kubesecret
// are the only CA packages that import k8s.io.
package kubeauth
