package client

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests on goroutines left behind: a
// provider connection Close did not close is one.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
