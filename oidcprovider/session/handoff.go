package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// A hand-off gives a browser signed in at the portal (on the issuer's cookie domain) a session
// on a second cookie domain, without a cookie ever crossing domains:
//
//  1. The gate of a site under the second domain, seeing no session, sets a short-lived
//     host-only nonce cookie (HandoffNonceCookie) and sends the browser to the portal's hand-off
//     page with the target URL rd, the nonce's digest (Binding) and a signature of both
//     (SignBegin), so the portal sends codes only to hosts a gate of this server sent it from.
//  2. The portal, with a live session (after a sign-in if there is none), mints a code bound to
//     the target domain, the nonce's digest and its session (Handoffs.Mint) and sends the
//     browser to the gate's reserved path with the code.
//  3. The gate takes the code once (Handoffs.Take: any use, right or wrong, spends it), checks
//     the domain and that the browser holds the nonce, begins its own session of the same
//     family (Store.Adopt) and sends the browser on to rd.
//
// Codes are 32 random bytes, kept in the store only as their SHA-256 under a TTL.

// HandoffTTL is how long a hand-off code lives by default.
const HandoffTTL = 60 * time.Second

// ErrHandoff is a hand-off code that is unknown, expired, already used, for another domain, or
// presented by a browser without its nonce: one answer for all of them.
var ErrHandoff = errors.New("session: the hand-off code is unknown, expired, already used, or not this browser's")

// Handoff is what a hand-off code carries from the portal's session to the gate's.
type Handoff struct {
	// Domain is the cookie domain the code is for.
	Domain string `json:"domain"`
	// Binding is the digest of the browser's nonce (NonceDigest).
	Binding string `json:"binding"`
	// Origin is the store's digest of the portal session's id (IDHash).
	Origin string `json:"origin"`
	// Session is the portal's session as it was (its user, factors, times and Family).
	Session Session `json:"session"`
	// Expires is when the code lapses.
	Expires time.Time `json:"expires"`
}

// Handoffs keeps hand-off codes in a KV.
type Handoffs struct {
	kv  store.KV
	ttl time.Duration
	now func() time.Time
}

// NewHandoffs returns the hand-off codes on kv, each good for ttl (HandoffTTL when 0).
func NewHandoffs(kv store.KV, ttl time.Duration) *Handoffs {
	if ttl <= 0 {
		ttl = HandoffTTL
	}
	return &Handoffs{kv: kv, ttl: ttl, now: time.Now}
}

// WithClock makes the codes read the time from now (tests) and returns h.
func (h *Handoffs) WithClock(now func() time.Time) *Handoffs {
	h.now = now
	return h
}

func handoffKey(digest string) []byte   { return []byte("handoff/" + digest) }
func handoffTaken(digest string) []byte { return []byte("handoff-taken/" + digest) }

func codeDigest(code string) string {
	sum := sha256.Sum256([]byte(code))
	return hex.EncodeToString(sum[:])
}

// Mint stores g (its Expires set here) and returns its code, for the URL of one redirect.
func (h *Handoffs) Mint(ctx context.Context, g *Handoff) (string, error) {
	if g.Domain == "" || len(g.Binding) != 43 || g.Session.User == "" || g.Session.Family == "" || g.Session.Enrolment || g.Session.Level < OneFactor {
		return "", errors.New("session: a hand-off needs a domain, a binding, and a signed-in session (a user, a factor and a family)")
	}
	g.Expires = h.now().Add(h.ttl)
	data, err := json.Marshal(g)
	if err != nil {
		return "", err
	}
	code := rand.Text() + rand.Text() // 2 × 128 bits
	if err := h.kv.Put(ctx, store.Entry{Key: handoffKey(codeDigest(code)), Value: data, TTL: h.ttl}); err != nil {
		return "", fmt.Errorf("session: keeping a hand-off code: %w", err)
	}
	return code, nil
}

// Take spends code, once, across the nodes sharing the store, and returns what it carries when
// it is live, for domain, and its binding is one of bindings (the digests of the nonces the
// browser presented). Every other case is ErrHandoff, and the code is spent all the same (a code tried on the
// wrong domain or in another browser is worth nothing afterwards); a store that cannot answer
// is its error.
func (h *Handoffs) Take(ctx context.Context, code, domain string, bindings []string) (*Handoff, error) {
	if len(code) != 52 {
		return nil, ErrHandoff
	}
	d := codeDigest(code)
	data, err := h.kv.Get(ctx, handoffKey(d))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrHandoff
	} else if err != nil {
		return nil, err
	}
	if _, claimed, err := store.Claim(ctx, h.kv, handoffTaken(d), h.ttl); err != nil {
		return nil, err
	} else if !claimed {
		return nil, ErrHandoff
	}
	_ = h.kv.Delete(context.WithoutCancel(ctx), handoffKey(d))
	var g Handoff
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, ErrHandoff
	}
	okDomain := subtle.ConstantTimeCompare([]byte(g.Domain), []byte(domain)) == 1
	okBinding := false
	for _, b := range bindings {
		if subtle.ConstantTimeCompare([]byte(g.Binding), []byte(b)) == 1 {
			okBinding = true
		}
	}
	if !okDomain || !okBinding || !h.now().Before(g.Expires) {
		return nil, ErrHandoff
	}
	return &g, nil
}

// NewNonce returns a browser nonce for a hand-off and its digest (the Binding a code carries).
func NewNonce() (nonce, digest string) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // crypto/rand.Read never fails
	nonce = base64.RawURLEncoding.EncodeToString(raw)
	return nonce, NonceDigest(nonce)
}

// NonceDigest is the digest of a browser's hand-off nonce: 43 characters of base64url.
func NonceDigest(nonce string) string {
	sum := sha256.Sum256([]byte("portcullis handoff nonce\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// HandoffNonceCookie is the name of the host-only cookie holding the nonce of the hand-off
// whose binding is binding, on a site whose session cookie is called name: with the __Host-
// prefix on https, so no other host under the domain can plant one, and the binding's first
// characters, so two tabs beginning hand-offs at once do not overwrite each other's.
func HandoffNonceCookie(name, binding string, secure bool) string {
	n := name + "_handoff_" + binding[:min(len(binding), 10)]
	if secure {
		return "__Host-" + n
	}
	return n
}

// SignBegin signs the start of a hand-off (the target URL rd, the nonce's binding, the factor
// level asked for and the expiry, Unix seconds) under key, the key the gate and the portal share.
func SignBegin(key []byte, rd, binding, level string, exp int64) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("portcullis handoff begin v1\x00" + rd + "\x00" + binding + "\x00" + level + "\x00" + strconv.FormatInt(exp, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckBegin reports whether sig is SignBegin's for these values and exp is not past at now.
func CheckBegin(key []byte, rd, binding, level string, exp int64, sig string, now time.Time) bool {
	want := SignBegin(key, rd, binding, level, exp)
	return subtle.ConstantTimeCompare([]byte(sig), []byte(want)) == 1 && now.Unix() <= exp
}
