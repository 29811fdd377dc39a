package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/proto/adminpb"
	"github.com/pleiades-db/pleiades/shared/wire"
)

// maxClientBody bounds the bodies the client functions read.
const maxClientBody = 1 << 20

// FetchStatus reads /v1/status from the admin endpoint at addr
// ("host:port"), for the supervisor and the CLI. A nil client means
// http.DefaultClient.
func FetchStatus(ctx context.Context, client *http.Client, addr string) (Status, error) {
	body, code, err := fetch(ctx, client, "http://"+addr+"/v1/status")
	if err != nil {
		return Status{}, err
	}
	if code != http.StatusOK {
		return Status{}, fmt.Errorf("admin: GET %s/v1/status: status %d: %s", addr, code, body)
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return Status{}, fmt.Errorf("admin: decode status from %s: %w", addr, err)
	}
	return st, nil
}

// FetchReady reads /readyz from the admin endpoint at addr: ready is true
// on 200, and detail is the body (the failed checks when not ready). An
// error means the endpoint could not be asked.
func FetchReady(ctx context.Context, client *http.Client, addr string) (ready bool, detail string, err error) {
	body, code, err := fetch(ctx, client, "http://"+addr+"/readyz?verbose")
	if err != nil {
		return false, "", err
	}
	return code == http.StatusOK, string(body), nil
}

func fetch(ctx context.Context, client *http.Client, url string) ([]byte, int, error) {
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("admin: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("admin: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxClientBody))
	if err != nil {
		return nil, 0, fmt.Errorf("admin: read %s: %w", url, err)
	}
	return body, resp.StatusCode, nil
}

// StatusMethod is the bus method, on protocol wire.ProtoAdmin, by which
// every daemon runtime serves its status: adminpb.StatusRequest →
// adminpb.Status.
const StatusMethod = "Status"

// CallStatus asks the daemon whose bus listens at addr for its status.
func CallStatus(ctx context.Context, b *bus.Bus, addr string) (*adminpb.Status, error) {
	st := &adminpb.Status{}
	if err := b.Call(ctx, addr, wire.ProtoAdmin, StatusMethod, &adminpb.StatusRequest{}, st); err != nil {
		return nil, fmt.Errorf("admin: status of %s: %w", addr, err)
	}
	return st, nil
}
