package portal

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// Two nodes on one PostgreSQL database race to use one reset link, 4 submissions each: exactly
// one of the 8 sets the password, however the race falls (each node's own view cannot see the
// other; the claim in the store does). The link mailed by one node opens on the other.
func TestPasswordResetLinkIsUsedOnceAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	w := newResetWorld(t, nil) // the users file and the notifier
	node := func() *Portal {
		return newNode(t, dsn, w.users, func(c *Config, kv store.KV) { c.Notifier, c.PasswordReset = w.mail, &PasswordReset{Store: kv} })
	}
	a, b := node(), node()
	csrfValue := strings.Repeat("c", 43)
	submit := func(n *Portal, token, pw string) int {
		form := url.Values{"csrf": {n.csrfMAC(csrfValue)}, "token": {token}, "password": {pw}, "password_again": {pw}}
		r := httptest.NewRequest("POST", "https://auth.example.com"+PathResetConfirm, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(&http.Cookie{Name: n.csrfCookie(), Value: csrfValue})
		rec := httptest.NewRecorder()
		n.ServeHTTP(rec, r, PathResetConfirm)
		return rec.Code
	}
	for round := range 3 {
		_ = a.reset.kv.Delete(t.Context(), []byte(resetMailPrefix+"john")) // as if a minute had passed
		a.sendResetLink(t.Context(), "john", "192.0.2.1", time.Now())
		_, token := w.lastLink()
		// the other node opens the link a first node mailed
		r := httptest.NewRequest("GET", "https://auth.example.com"+w.confirmPath(token), nil)
		rec := httptest.NewRecorder()
		b.ServeHTTP(rec, r, PathResetConfirm)
		if rec.Code != 200 {
			t.Fatalf("round %d: the link on the other node: %d", round, rec.Code)
		}
		codes := make([]int, 8)
		var wg sync.WaitGroup
		for i := range codes {
			n := []*Portal{a, b}[i%2]
			wg.Go(func() { codes[i] = submit(n, token, "round password") })
		}
		wg.Wait()
		passed := 0
		for _, c := range codes {
			switch c {
			case 200:
				passed++
			case 400:
			default:
				t.Errorf("round %d: an answer %d", round, c)
			}
		}
		if passed != 1 {
			t.Fatalf("round %d: %d of 8 submissions on two nodes set the password (answers %v), want 1", round, passed, codes)
		}
	}
}
