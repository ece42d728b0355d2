package portal

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// slowDirectory is the users file behind a directory that takes delay to find a known user (an
// LDAP server far away, say), and answers at once for an unknown one: the case that would give
// existence away in the answer's timing if the lookup were done in the request.
type slowDirectory struct {
	users.Directory
	delay time.Duration
}

func (d slowDirectory) Lookup(ctx context.Context, name string) (*users.User, error) {
	u, err := d.Directory.Lookup(ctx, name)
	if err == nil {
		time.Sleep(d.delay)
	}
	return u, err
}

// resetTimes measures n answers to a reset request for each of names, interleaved in a random
// order per round, and returns each name's answer times by round.
func resetTimes(t *testing.T, w *resetWorld, names []string, n int) [][]time.Duration {
	t.Helper()
	w.call("GET", PathResetPassword, nil) // the CSRF cookie
	times := make([][]time.Duration, len(names))
	order := make([]int, len(names))
	for i := range order {
		order[i] = i
	}
	for round := range n + 20 {
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			r := w.request("POST", PathResetPassword, url.Values{"username": {names[i]}})
			_ = r.ParseForm() // the body is read before the clock starts, as a server has it
			rec := httptest.NewRecorder()
			start := time.Now()
			w.p.ServeHTTP(rec, r, PathResetPassword)
			took := time.Since(start)
			if rec.Code != 200 {
				t.Fatalf("%s: %d", names[i], rec.Code)
			}
			if round >= 20 { // the first rounds warm up
				times[i] = append(times[i], took)
			}
		}
	}
	w.p.reset.wg.Wait()
	return times
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// sameTime reports whether the answer for an unknown user takes the known user's within 10%:
// the median of the differences of the two answers of each round (which cancels the machine's
// load changing between rounds), against the known user's median. It measures again once
// before saying no (a loaded machine has bad moments).
func sameTime(t *testing.T, w *resetWorld, tries int) (bool, string) {
	t.Helper()
	var report string
	for attempt := range 2 {
		m := resetTimes(t, w, []string{"john", "nobody"}, tries)
		deltas := make([]time.Duration, len(m[0]))
		for i := range deltas {
			deltas[i] = m[1][i] - m[0][i]
		}
		known, unknown := median(m[0]), median(m[1])
		diff := float64(median(deltas)) / float64(known)
		report += fmt.Sprintf("attempt %d: medians known %v, unknown %v, of the differences %v (%+.1f%%); ", attempt+1, known, unknown, median(deltas), 100*diff)
		if diff >= -0.10 && diff <= 0.10 {
			return true, report
		}
	}
	return false, report
}

// The answer to a reset request takes the same time for an unknown user as for a known one
// (medians of 200 interleaved tries each within 10%), even in front of a directory that takes
// 3ms to find a known user; the same measurement tells the two apart when the lookup is done in
// the request, so it can fail.
func TestPasswordResetAnswerTiming(t *testing.T) {
	if testing.Short() {
		t.Skip("timing: not in -short")
	}
	const tries = 200
	slow := func(inline bool) *resetWorld {
		w := newResetWorld(t, &PasswordReset{})
		cfg := w.p.cfg
		cfg.Users = slowDirectory{Directory: w.users, delay: 3 * time.Millisecond}
		p, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		w.p = p
		p.reset.inline = inline
		p.reset.limiter.max = 1 << 30 // every try comes from one address
		return w
	}

	w := slow(false)
	ok, report := sameTime(t, w, tries)
	t.Logf("lookup in the background: %s", report)
	if !ok {
		t.Errorf("the answer's time depends on whether the user exists: %s", report)
	}
	if n := len(w.mail.messages()); n != 1 {
		t.Errorf("%d mails to john, want 1 (one a minute)", n)
	}

	naive := slow(true)
	ok, report = sameTime(t, naive, tries)
	t.Logf("lookup in the request: %s", report)
	if ok {
		t.Errorf("the measurement did not tell a lookup in the request apart: %s", report)
	}
}
