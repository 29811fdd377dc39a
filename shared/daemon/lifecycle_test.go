package daemon_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pleiades-db/pleiades/shared/daemon"
)

func TestTasks(t *testing.T) {
	var tk daemon.Tasks
	release := make(chan struct{})
	ran := make(chan struct{})
	if !tk.Go(func() { close(ran); <-release }) {
		t.Fatal("Go before Close = false")
	}
	<-ran
	tk.Close()
	if tk.Go(func() { t.Error("ran after Close") }) {
		t.Error("Go after Close = true")
	}
	if !tk.Closed() {
		t.Error("Closed = false after Close")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := tk.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with a goroutine running = %v; want the context's error", err)
	}
	close(release)
	if err := tk.Wait(context.Background()); err != nil {
		t.Errorf("Wait = %v; want nil", err)
	}
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	l := daemon.NewLifecycle("testd")
	if err := l.ReadyCheck(ctx); err == nil || err.Error() != "not started" {
		t.Errorf("ReadyCheck before Start = %v; want not started", err)
	}
	lctx, err := l.Start()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	if err := l.ReadyCheck(ctx); err == nil || err.Error() != "starting" {
		t.Errorf("ReadyCheck before MarkReady = %v; want starting", err)
	}
	exited := make(chan struct{})
	if !l.Go(func() { <-lctx.Done(); close(exited) }) {
		t.Fatal("Go = false")
	}
	l.MarkReady()
	l.MarkReady() // idempotent
	select {
	case <-l.Ready():
	default:
		t.Error("Ready not closed after MarkReady")
	}
	if err := l.ReadyCheck(ctx); err != nil {
		t.Errorf("ReadyCheck when ready = %v", err)
	}
	l.Fail(errors.New("first"))
	l.Fail(errors.New("second"))
	if err := <-l.Err(); err.Error() != "first" {
		t.Errorf("Err = %v; want the first failure", err)
	}
	if err := l.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	<-exited // Stop cancelled the lifetime context and waited
	if err := l.ReadyCheck(ctx); err == nil || err.Error() != "stopped" {
		t.Errorf("ReadyCheck after Stop = %v; want stopped", err)
	}
	if l.Go(func() {}) || !l.Stopping() {
		t.Error("Go after Stop ran, or Stopping = false")
	}
	if err := l.Stop(ctx); err != nil {
		t.Errorf("second Stop = %v", err)
	}
	if _, err := l.Start(); err == nil {
		t.Error("Start after Stop succeeded")
	}
}
