package admin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestFetch(t *testing.T) {
	s := startServer(t, nil)
	client := &http.Client{}
	t.Cleanup(client.CloseIdleConnections)
	addr := s.Addr().String()
	s.SetAddress("bus", "127.0.0.1:9")

	st, err := FetchStatus(t.Context(), client, addr)
	if err != nil {
		t.Fatal(err)
	}
	if st.Daemon != "testd" || st.NodeID != 12 || st.Addresses["bus"] != "127.0.0.1:9" || !st.Ready {
		t.Errorf("FetchStatus = %+v", st)
	}
	ready, detail, err := FetchReady(t.Context(), client, addr)
	if err != nil || !ready {
		t.Errorf("FetchReady = %v, %q, %v; want ready", ready, detail, err)
	}

	s.AddReadyCheck("raft", func(context.Context) error { return errors.New("no quorum") })
	ready, detail, err = FetchReady(t.Context(), client, addr)
	if err != nil || ready || !strings.Contains(detail, "[-]raft failed: no quorum") {
		t.Errorf("FetchReady = %v, %q, %v; want not ready naming raft", ready, detail, err)
	}
	if st, err := FetchStatus(t.Context(), client, addr); err != nil || st.Ready || st.Checks["raft"].Error != "no quorum" {
		t.Errorf("FetchStatus = %+v, %v; want raft failing", st, err)
	}

	if _, _, err := FetchReady(t.Context(), client, "127.0.0.1:1"); err == nil {
		t.Error("FetchReady of a closed port succeeded")
	}
}
