package workflowd_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/kvclient"
	"github.com/pleiades-db/pleiades/shared/proto/workflowpb"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
)

// prefixClient is a host API client whose certificate is a client role
// limited to prefixes.
func (f *fixture) prefixClient(prefixes ...string) *workflowclient.Client {
	f.t.Helper()
	ps := make([][]byte, len(prefixes))
	for i, p := range prefixes {
		ps[i] = []byte(p)
	}
	tc, err := f.ca.Issue("app", tlsutil.ClientRole(ps...))
	if err != nil {
		f.t.Fatal(err)
	}
	b, err := bus.New(bus.Config{ListenAddr: "127.0.0.1:0", TLS: tc}, bus.Deps{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := b.Start(f.t.Context()); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = b.Stop(context.Background()) })
	return workflowclient.New(b, f.addr)
}

func wantDenied(t *testing.T, what string, err error) {
	t.Helper()
	var be *bus.Error
	if !errors.As(err, &be) || be.Code != bus.CodePermissionDenied {
		t.Errorf("%s: %v; want permission denied", what, err)
	}
}

// TestClientPrefixesLimitWorkflows: a client certificate limited to "app/"
// works with the workflows named under it — and their steps touch only
// keys, events and sub-workflows under it — and is refused everything
// else, which stays unchanged.
func TestClientPrefixesLimitWorkflows(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	app := f.prefixClient("app/")

	// Another application's workflow, defined and started by an
	// unlimited client.
	f.define(`
id: other/w
version: 1
steps:
  - wait: {event: '"other/go"', key: '"k"'}
`)
	other := f.start("other/w", `{}`)

	// Definitions: only under the prefix; the refused one is not stored.
	if _, err := app.Define(ctx, []byte("id: other/x\nversion: 1\nsteps:\n  - noop: {}\n")); err == nil {
		t.Error("Define other/x: accepted")
	} else {
		wantDenied(t, "Define other/x", err)
	}
	for _, doc := range []string{`
id: app/ok
version: 1
steps:
  - kv.put: {key: '"app/k"', value: '"v"'}
  - kv.get: {key: '"app/k"', output: got}
  - publish: {event: '"app/done"', key: '"k"'}
`, `
id: app/kv
version: 1
steps:
  - kv.put: {key: '"other/k"', value: '"stolen"'}
    on_error: {behavior: terminate}
`, `
id: app/pub
version: 1
steps:
  - publish: {event: '"other/go"', key: '"k"'}
    on_error: {behavior: terminate}
`, `
id: app/sub
version: 1
steps:
  - workflow: {id: other/w}
    on_error: {behavior: terminate}
`} {
		if _, err := app.Define(ctx, []byte(doc)); err != nil {
			t.Fatalf("Define: %v", err)
		}
	}
	defs, err := app.Definitions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range defs {
		if !strings.HasPrefix(d.GetId(), "app/") {
			t.Errorf("Definitions lists %q to a client limited to app/", d.GetId())
		}
	}
	if len(defs) != 4 {
		t.Errorf("Definitions: %d; want the 4 under app/", len(defs))
	}

	// Its own workflow runs; its steps stay under the prefix.
	start := func(def string) string {
		t.Helper()
		r, err := app.Start(ctx, &workflowpb.StartRequest{Definition: def, Data: []byte(`{}`)})
		if err != nil {
			t.Fatalf("Start(%s): %v", def, err)
		}
		return r.GetInstanceId()
	}
	ok := start("app/ok")
	f.wait(ok, workflowpb.Status_STATUS_COMPLETED)
	for _, def := range []string{"app/kv", "app/pub", "app/sub"} {
		in := f.wait(start(def), workflowpb.Status_STATUS_FAILED)
		if !strings.Contains(in.GetError(), "outside definition") {
			t.Errorf("%s: error %q; want the key prefixes named", def, in.GetError())
		}
	}
	kv, err := kvclient.New(ctx, kvclient.Config{Addrs: f.fc.Addrs(), Bus: f.cb})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close(context.Background())
	if _, found, err := kv.Get(ctx, []byte("other/k")); err != nil || found {
		t.Errorf("other/k after app/kv: found %v, %v; want absent", found, err)
	}
	if v, found, err := kv.Get(ctx, []byte("app/k")); err != nil || !found || string(v.Value) != "v" {
		t.Errorf("app/k: %q %v %v", v.Value, found, err)
	}

	// The other application's workflow: refused, and unchanged.
	_, err = app.Start(ctx, &workflowpb.StartRequest{Definition: "other/w"})
	wantDenied(t, "Start other/w", err)
	_, err = app.Get(ctx, other)
	wantDenied(t, "Get other's instance", err)
	_, err = app.Terminate(ctx, other, "mine now")
	wantDenied(t, "Terminate other's instance", err)
	_, err = app.PublishEvent(ctx, &workflowpb.PublishEventRequest{Name: "other/go", Key: "k"})
	wantDenied(t, "PublishEvent other/go", err)
	_, err = app.List(ctx, &workflowpb.ListRequest{Definition: "other/w"})
	wantDenied(t, "List other/w", err)
	if _, err := app.List(ctx, &workflowpb.ListRequest{}); err == nil {
		t.Error("List of every definition: accepted for a client limited to app/")
	}
	if in, err := f.c.Get(ctx, other); err != nil || in.GetStatus() != workflowpb.Status_STATUS_RUNNING {
		t.Errorf("other's instance: %v %v; want still running", in.GetStatus(), err)
	}
	if l, err := app.List(ctx, &workflowpb.ListRequest{Definition: "app/ok"}); err != nil || len(l.GetInstances()) != 1 {
		t.Errorf("List app/ok: %v %v", l.GetInstances(), err)
	}
	if _, err := app.Get(ctx, ok); err != nil {
		t.Errorf("Get own instance: %v", err)
	}
}
