package kubetest_test

import (
	"context"
	"os"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zmesh/zmesh/internal/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	kubetest.StopShared()
	os.Exit(code)
}

// TestServiceAccountTokenRoundTrip checks the parts of the apiserver that
// zmesh relies on: namespaces and service accounts are stored, TokenRequest
// issues a token for an audience, and TokenReview authenticates it (and
// refuses it for another audience).
func TestServiceAccountTokenRoundTrip(t *testing.T) {
	c := kubetest.Shared(t)
	cs := c.Client(t)
	ctx := context.Background()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kubetest"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("kubetest").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "sleep"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts("kubetest").CreateToken(ctx, "sleep", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{"istio-ca"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	review := func(aud string) *authnv1.TokenReview {
		r, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
			Spec: authnv1.TokenReviewSpec{Token: tr.Status.Token, Audiences: []string{aud}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := review("istio-ca"); !r.Status.Authenticated || r.Status.User.Username != "system:serviceaccount:kubetest:sleep" {
		t.Errorf("review for istio-ca = %+v", r.Status)
	}
	if r := review("other"); r.Status.Authenticated {
		t.Errorf("a token for istio-ca was accepted for audience other: %+v", r.Status)
	}
}
