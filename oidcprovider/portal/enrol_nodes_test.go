package portal

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/session"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
	"github.com/portcullis-auth/portcullis/oidcprovider/users"
)

// newNode is a portal on its own connection to the PostgreSQL database dsn (a node), with the
// people of dir, sessions and Store on the database; adjust, when set, completes its Config.
func newNode(t *testing.T, dsn string, dir users.Directory, adjust func(*Config, store.KV)) *Portal {
	t.Helper()
	kv, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kv.Destruct() })
	issuer, _ := url.Parse("https://auth.example.com")
	cfg := Config{Issuer: issuer, CookieName: "portcullis_session", Key: []byte(strings.Repeat("k", 32)), Users: dir,
		CheckPassword: func(context.Context, string, string, string) error { return nil },
		Sessions:      session.New(session.Config{}, kv), Store: kv}
	if adjust != nil {
		adjust(&cfg, kv)
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Two nodes on one PostgreSQL database: a link made on one node opens on the other, and of 16
// Continue presses racing across both (8 each), exactly one begins an enrolment session, which
// neither node's gate check (Who) takes for a sign-in. A new invite on one node revokes the link
// on the other.
func TestEnrolmentLinkIsUsedOnceAcrossNodes(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.Database(t)
	w := newPortalWorld(t) // for its users file
	a, b := newNode(t, dsn, w.users, nil), newNode(t, dsn, w.users, nil)
	john, _ := w.users.Lookup(t.Context(), "john")
	press := func(n *Portal, token string) *httptest.ResponseRecorder {
		csrf := strings.Repeat("c", 43)
		form := url.Values{"token": {token}, "csrf": {n.csrfMAC(csrf)}}
		r := httptest.NewRequest("POST", "https://auth.example.com"+PathEnrol, strings.NewReader(form.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.AddCookie(&http.Cookie{Name: n.csrfCookie(), Value: csrf})
		rec := httptest.NewRecorder()
		n.ServeHTTP(rec, r, PathEnrol)
		return rec
	}
	for round := range 5 {
		inv, err := a.Invite(t.Context(), john, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		link, _ := url.Parse(inv.Link)
		token := link.Query().Get("token")
		var used atomic.Int32
		var cookie atomic.Value
		var wg sync.WaitGroup
		for i := range 16 {
			n := []*Portal{a, b}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := press(n, token)
				switch rec.Code {
				case http.StatusSeeOther:
					used.Add(1)
					for _, c := range rec.Result().Cookies() {
						if c.Name == "portcullis_session" {
							cookie.Store(c.Value)
						}
					}
				case http.StatusGone:
				default:
					t.Errorf("Continue: %d %s", rec.Code, rec.Body.String())
				}
			}()
		}
		wg.Wait()
		if used.Load() != 1 {
			t.Fatalf("round %d: %d of 16 presses on two nodes used the link, want 1", round, used.Load())
		}
		id, _ := cookie.Load().(string)
		for _, n := range []*Portal{a, b} {
			if sess, err := n.cfg.Sessions.Get(t.Context(), id); err != nil || !sess.Enrolment {
				t.Fatalf("the enrolment session: %+v %v", sess, err)
			}
			if _, _, err := n.cfg.Sessions.Who(t.Context(), id); err == nil {
				t.Fatal("Who takes the enrolment session for a sign-in")
			}
		}
	}
	// a new invite on B revokes A's link
	old, _ := a.Invite(t.Context(), john, time.Hour)
	if _, err := b.Invite(t.Context(), john, time.Hour); err != nil {
		t.Fatal(err)
	}
	link, _ := url.Parse(old.Link)
	if rec := press(a, link.Query().Get("token")); rec.Code != http.StatusGone {
		t.Fatalf("the link replaced on the other node: %d, want 410", rec.Code)
	}
}
