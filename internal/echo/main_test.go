package echo

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any of them leaves a goroutine
// behind: every server and connection a test opens, it closes.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
