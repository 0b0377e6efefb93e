package authn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
	security "istio.io/api/security/v1beta1"

	"github.com/zmesh/zmesh/internal/authn"
	"github.com/zmesh/zmesh/internal/config"
)

// A proxy compiles the RequestAuthentications selecting its workload once
// per push, then authenticates each request: no token passes
// unauthenticated, a valid one yields the request principal, an invalid
// one is answered with Envoy's status and body.
func Example() {
	// The issuer's key, and its public half as an inline JWKS.
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	key, _ := jwk.Import(priv)
	_ = key.Set(jwk.KeyIDKey, "k1")
	pub, _ := jwk.PublicKeyOf(key)
	set := jwk.NewSet()
	_ = set.AddKey(pub)
	jwks, _ := json.Marshal(set)

	ras := []config.Resource{{
		Meta: config.Meta{Kind: config.KindRequestAuthentication, Namespace: "foo", Name: "jwt"},
		Spec: &security.RequestAuthentication{JwtRules: []*security.JWTRule{{
			Issuer: "issuer.example.com",
			Jwks:   string(jwks),
		}}},
	}}
	selected := authn.SelectRequest(ras, authn.Workload{Namespace: "foo"}, "istio-system")
	policy, err := authn.CompileRequest(selected, authn.RequestOptions{})
	if err != nil {
		panic(err)
	}

	now := time.Now()
	tok, _ := jwt.NewBuilder().Issuer("issuer.example.com").Subject("alice").Expiration(now.Add(time.Hour)).Build()
	signed, _ := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), key))

	for _, header := range []string{"", "Bearer " + string(signed), "Bearer not.a.jwt"} {
		r := authn.RequestView{Header: map[string][]string{}}
		if header != "" {
			r.Header["Authorization"] = []string{header}
		}
		res, err := policy.Authenticate(context.Background(), r, nil, now)
		var te *authn.TokenError
		switch {
		case errors.As(err, &te):
			fmt.Println(te.StatusCode(), te.Body())
		case res.Authenticated:
			fmt.Println("principal", res.Principal)
		default:
			fmt.Println("no token: unauthenticated")
		}
	}
	// Output:
	// no token: unauthenticated
	// principal issuer.example.com/alice
	// 401 Jwt header is an invalid JSON
}
