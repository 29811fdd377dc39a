package supervisor

import (
	"slices"
	"testing"
)

func TestChildEnvironDropsNotifySocket(t *testing.T) {
	got := childEnviron([]string{"PATH=/bin", "NOTIFY_SOCKET=/run/systemd/notify", "NOTIFY_SOCKETX=1"}, []string{"A=1"})
	if want := []string{"PATH=/bin", "NOTIFY_SOCKETX=1", "A=1"}; !slices.Equal(got, want) {
		t.Errorf("childEnviron = %v; want %v", got, want)
	}
}
