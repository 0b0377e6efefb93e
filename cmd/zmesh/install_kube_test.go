package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/zmesh/zmesh/internal/inject"
	"github.com/zmesh/zmesh/internal/install"
	"github.com/zmesh/zmesh/internal/kubetest"
)

// TestInstallUninstallCommands runs `zmesh install` and `zmesh uninstall`
// with a kubeconfig file against a real apiserver, as a user would.
func TestInstallUninstallCommands(t *testing.T) {
	c := kubetest.New(t)
	cs := c.Client(t)
	ctx := context.Background()
	run := func(cmdName string, args ...string) string {
		t.Helper()
		cmd := installCmd()
		if cmdName == "uninstall" {
			cmd = uninstallCmd()
		}
		var out, errOut bytes.Buffer
		cmd.SetArgs(append([]string{"--kubeconfig", c.Kubeconfig}, args...))
		cmd.SetOut(&out)
		cmd.SetErr(&errOut)
		if err := cmd.ExecuteContext(ctx); err != nil {
			t.Fatalf("zmesh %s: %v\n%s", cmdName, err, errOut.String())
		}
		return out.String()
	}
	out := run("install", "--image", "zmesh/zmesh:test")
	if !strings.Contains(out, "applied Deployment istio-system/zmesh") || !strings.Contains(out, "applied MutatingWebhookConfiguration "+inject.WebhookConfigurationName) {
		t.Errorf("install output:\n%s", out)
	}
	d, err := cs.AppsV1().Deployments(install.Namespace).Get(ctx, install.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 || d.Spec.Template.Spec.Containers[0].Image != "zmesh/zmesh:test" {
		t.Errorf("deployment %d replicas of %s", *d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Image)
	}
	run("install", "--image", "zmesh/zmesh:test") // idempotent

	out = run("uninstall")
	if !strings.HasPrefix(out, "deleted MutatingWebhookConfiguration "+inject.WebhookConfigurationName) {
		t.Errorf("uninstall must remove the webhook first:\n%s", out)
	}
	if _, err := cs.AppsV1().Deployments(install.Namespace).Get(ctx, install.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("deployment after uninstall: %v", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, install.Namespace, metav1.GetOptions{}); err != nil {
		t.Errorf("istio-system removed without --purge: %v", err)
	}
}
