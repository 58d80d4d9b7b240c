package dataplane

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// fakeSub is a subscription that ends when the test says so.
type fakeSub struct {
	id     int
	fail   chan struct{} // closed: the subscription's socket failed
	closed chan struct{}
	once   sync.Once
}

func newFakeSub(id int) *fakeSub {
	return &fakeSub{id: id, fail: make(chan struct{}), closed: make(chan struct{})}
}

func (s *fakeSub) Follow(ctx context.Context, out chan<- struct{}) {
	select {
	case <-ctx.Done():
	case <-s.fail:
	}
}

func (s *fakeSub) Close() { s.once.Do(func() { close(s.closed) }) }

func waitSignal(t *testing.T, out <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-out:
	case <-time.After(5 * time.Second):
		t.Fatalf("no signal %s", what)
	}
}

// TestKeepSubscribedReopens: a subscription that fails is closed, signalled (changes may have
// been missed), and replaced; opening is retried while it fails; ctx ends it all.
func TestKeepSubscribedReopens(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	first := newFakeSub(1)
	second := newFakeSub(2)
	opens := make(chan *fakeSub, 4)
	var mu sync.Mutex
	attempts := 0
	open := func() (Subscription, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if attempts == 1 {
			return nil, errors.New("socket refused") // the first reopening fails
		}
		opens <- second
		return second, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		KeepSubscribed(ctx, log, "test subscription", first, open, out)
		close(done)
	}()

	close(first.fail)
	waitSignal(t, out, "when the first subscription failed")
	select {
	case <-first.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the failed subscription was not closed")
	}
	select {
	case got := <-opens:
		if got.id != 2 {
			t.Fatalf("reopened %d", got.id)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no new subscription after a failed attempt")
	}
	waitSignal(t, out, "after reopening")
	mu.Lock()
	if attempts != 2 {
		t.Errorf("%d open attempts, want 2 (one failed, one retried)", attempts)
	}
	mu.Unlock()

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("KeepSubscribed did not end with ctx")
	}
	select {
	case <-second.closed:
	default:
		t.Error("the last subscription was not closed when ctx ended")
	}
}

func TestSignalMergesBursts(t *testing.T) {
	out := make(chan struct{}, 1)
	for range 10 {
		Signal(out) // never blocks
	}
	<-out
	select {
	case <-out:
		t.Error("a burst of signals left more than one")
	default:
	}
}
