package digest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// No more checks run at once than there are slots, however many callers ask.
func TestRunCapsConcurrentChecks(t *testing.T) {
	var running, peak, runs atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 4 * Slots() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := Run(context.Background(), func() bool {
				n := running.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(5 * time.Millisecond)
				running.Add(-1)
				runs.Add(1)
				return true
			})
			if !ok || err != nil {
				t.Errorf("Run = %v, %v", ok, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if int(runs.Load()) != 4*Slots() {
		t.Fatalf("%d checks ran, want %d", runs.Load(), 4*Slots())
	}
	if p := peak.Load(); int(p) > Slots() || p < 2 {
		t.Fatalf("%d checks ran at once, want 2 to %d", p, Slots())
	}
}

// A caller whose context ends while every slot is taken gets its context's error, and its check
// never runs.
func TestRunGivesUpWhenTheContextEnds(t *testing.T) {
	release := make(chan struct{})
	var held sync.WaitGroup
	for range Slots() {
		held.Add(1)
		go func() {
			defer held.Done()
			_, _ = Run(context.Background(), func() bool { <-release; return true })
		}()
	}
	// wait until every slot is taken
	for deadline := time.Now().Add(5 * time.Second); len(slots) < Slots(); {
		if time.Now().After(deadline) {
			t.Fatal("the slots were never all taken")
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	ran := false
	ok, err := Run(ctx, func() bool { ran = true; return true })
	close(release)
	held.Wait()
	if ok || ran || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run with no free slot = %v, %v (ran %v); want false, the deadline, not run", ok, err, ran)
	}
	if ok, err := Run(context.Background(), func() bool { return true }); !ok || err != nil {
		t.Fatalf("the slots were not given back: %v, %v", ok, err)
	}
}
