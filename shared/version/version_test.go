package version

import "testing"

func TestString(t *testing.T) {
	if got := String(); got == "" {
		t.Error("String() is empty")
	}
}
