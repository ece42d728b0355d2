package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"
	"go.uber.org/zap"

	"github.com/portcullis-auth/portcullis/oidcprovider/clients"
	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// OpenID Connect Back-Channel Logout 1.0.
//
// When a client with a backchannel_logout_uri gets an ID token through a portal session, an
// index entry says so (bclsess/<session ref>/<client id>, holding the subject that client sees).
// When the session ends (EndBrowserSession, on every sign-out path), each entry becomes a
// delivery job in a queue in the store (bclq/<client id>/<sid>), and the session's sign-out goes
// on at once. A worker per running provider POSTs each due job's logout_token, minted at send
// time, and retries a failure after BackchannelRetries; a job is sent by one node of a cluster
// at a time, the one that claims its lease (bcll/<client id>/<sid>). Jobs are store entries, so
// the queue survives a restart: the worker looks at it when it starts.

// Key prefixes of back-channel logout.
const (
	bclIndexPrefix = "bclsess/"
	bclQueuePrefix = "bclq/"
	bclLeasePrefix = "bcll/"
)

// BackchannelEvent is the member of a logout token's events claim.
const BackchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// Back-channel logout defaults.
var (
	// DefaultBackchannelRetries are the waits before each retry of a failed delivery: six
	// attempts over about 43 minutes.
	DefaultBackchannelRetries = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute}
)

const (
	// backchannelTimeout bounds one delivery: connecting, sending and reading the answer.
	backchannelTimeout = 5 * time.Second
	// backchannelLease is how long a node's claim on sending a job lasts: past the timeout,
	// so a node that died while sending leaves the job to another after it.
	backchannelLease = time.Minute
	// backchannelPoll is how often a worker looks for jobs it was not told of (those another
	// node queued, or left when it stopped).
	backchannelPoll = 30 * time.Second
	// backchannelMaxAnswer is the most of a receiver's answer that is read.
	backchannelMaxAnswer = 64 << 10
	// backchannelSenders is how many deliveries one worker makes at once.
	backchannelSenders = 4
	// logoutTokenLifetime is a logout token's exp after its iat.
	logoutTokenLifetime = 2 * time.Minute
)

// bclJob is one logout token to deliver.
type bclJob struct {
	Client  string `json:"client"`
	Subject string `json:"sub"`
	SID     string `json:"sid"`
	// Attempts counts the failed deliveries so far.
	Attempts int `json:"attempts,omitempty"`
	// Due is when the next delivery may be made.
	Due time.Time `json:"due"`
	// Ended is when the session ended.
	Ended time.Time `json:"ended"`
}

func bclIndexKey(ref, client string) []byte { return []byte(bclIndexPrefix + ref + "/" + client) }
func bclJobKey(client, sid string) []byte   { return []byte(bclQueuePrefix + client + "/" + sid) }
func bclLeaseKey(jobKey []byte) []byte {
	return []byte(bclLeasePrefix + strings.TrimPrefix(string(jobKey), bclQueuePrefix))
}

// retries are the provider's waits between deliveries.
func (p *Provider) retries() []time.Duration {
	if len(p.cfg.BackchannelRetries) > 0 {
		return p.cfg.BackchannelRetries
	}
	return DefaultBackchannelRetries
}

// rememberIDToken records that the client of r got an ID token through the portal session of
// sess, if the client takes back-channel logouts. The record lasts as long as an application may
// hold a session begun with that ID token: the longer of the portal session's longest life (its
// remember_me or expiration) and the client's refresh token lifespan. A refresh renews a record
// that is there, and makes none where it is gone: the session has ended and its logout was
// queued already (refresh tokens outlive the portal session), so it is not sent twice.
func (p *Provider) rememberIDToken(ctx context.Context, r fosite.Requester, sess *Session) error {
	cc, ok := r.GetClient().(*clients.Client)
	if !ok || sess.BrowserSession == "" {
		return nil
	}
	if uri, _ := cc.BackchannelLogout(); uri == "" {
		return nil
	}
	key := bclIndexKey(sess.BrowserSession, cc.ID())
	if r.GetRequestForm().Get("grant_type") == grantRefreshToken {
		if _, err := p.cfg.KV.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading the back-channel logout record of client %s: %w", cc.ID(), err)
		}
	}
	ttl := max(p.cfg.SessionLifespan, cc.GetEffectiveLifespan(fosite.GrantTypeRefreshToken, fosite.RefreshToken, p.cfg.Lifespans.RefreshToken), p.cfg.Lifespans.IDToken, time.Hour)
	err := p.cfg.KV.Put(ctx, store.Entry{Key: key, Value: []byte(sess.Subject), TTL: ttl})
	if err != nil {
		return fmt.Errorf("recording the ID token of client %s for back-channel logout: %w", cc.ID(), err)
	}
	return nil
}

// enqueueBackchannelLogouts queues a logout token for each client that got an ID token through
// the portal session ref, and wakes the worker. It never fails the sign-out: a store error is
// logged, and what was not queued is not sent.
func (p *Provider) enqueueBackchannelLogouts(ctx context.Context, ref string) {
	if ref == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.enqueue(ctx, ref); err != nil {
		p.cfg.Logger.Warn("queueing the back-channel logouts of a session", zap.Error(err))
	}
}

func (p *Provider) enqueue(ctx context.Context, ref string) error {
	prefix := []byte(bclIndexPrefix + ref + "/")
	idx, err := p.cfg.KV.Keys(ctx, prefix)
	if err != nil || len(idx) == 0 {
		return err
	}
	now := time.Now()
	sid := p.sidOf(ref)
	var total time.Duration
	for _, d := range p.retries() {
		total += d
	}
	var jobs []store.Entry
	for _, k := range idx {
		id := string(k[len(prefix):])
		c, ok := p.cfg.Clients(id)
		if !ok {
			continue
		}
		if uri, _ := c.BackchannelLogout(); uri == "" {
			continue
		}
		sub, err := p.cfg.KV.Get(ctx, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return fmt.Errorf("reading the back-channel logout record of client %s: %w", id, err)
		}
		job, err := json.Marshal(bclJob{Client: id, Subject: string(sub), SID: sid, Due: now, Ended: now})
		if err != nil {
			return fmt.Errorf("encoding a back-channel logout: %w", err)
		}
		// the job outlives its last retry by an hour, so one a stopped cluster left is still
		// sent when it is back, and one nobody can send does not stay for ever
		jobs = append(jobs, store.Entry{Key: bclJobKey(id, sid), Value: job, TTL: total + time.Hour})
	}
	if len(jobs) > 0 {
		if err := p.cfg.KV.Put(ctx, jobs...); err != nil {
			return fmt.Errorf("queueing %d back-channel logouts: %w", len(jobs), err)
		}
		p.bcl.wake()
	}
	if err := p.cfg.KV.Delete(ctx, idx...); err != nil {
		return fmt.Errorf("removing the back-channel logout records of a session: %w", err)
	}
	return nil
}

// backchannel is a provider's delivery worker.
type backchannel struct {
	p      *Provider
	hc     *http.Client
	now    func() time.Time
	poll   time.Duration
	poke   chan struct{}
	once   sync.Once // Start
	cancel context.CancelFunc
	done   chan struct{}

	// Deliveries run beside the rounds, never waited for by one: at most backchannelSenders at
	// once (senders), one job at a time (inflight, by queue key) and one delivery per client at
	// a time (busy), so a receiver that hangs holds one sender and delays no other client's
	// logouts. Each delivery that ends wakes the worker.
	senders  chan struct{}
	mu       sync.Mutex
	inflight map[string]bool
	busy     map[string]bool
	sending  sync.WaitGroup
}

func newBackchannel(p *Provider) *backchannel {
	d := &net.Dialer{Timeout: backchannelTimeout}
	hc := &http.Client{
		Timeout: backchannelTimeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         d.DialContext,
			TLSHandshakeTimeout: backchannelTimeout,
			MaxIdleConns:        16,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   true,
		},
		// a receiver answers; a redirect is a failure, never followed
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	poll := backchannelPoll
	if r := p.retries(); r[0] < poll {
		poll = r[0]
	}
	return &backchannel{p: p, hc: hc, now: time.Now, poll: poll, poke: make(chan struct{}, 1),
		senders: make(chan struct{}, backchannelSenders), inflight: map[string]bool{}, busy: map[string]bool{}}
}

// wake makes the worker look at the queue now.
func (b *backchannel) wake() {
	select {
	case b.poke <- struct{}{}:
	default:
	}
}

// StartBackchannelLogout starts the worker that delivers the queued back-channel logouts (those
// this node queues, those of other nodes on a shared store, and those left from before a
// restart). The app starts it once its config runs; StopBackchannelLogout ends it.
func (p *Provider) StartBackchannelLogout() {
	b := p.bcl
	b.once.Do(func() {
		ctx, cancel := context.WithCancel(context.Background())
		b.cancel, b.done = cancel, make(chan struct{})
		go b.run(ctx)
	})
}

// StopBackchannelLogout stops the worker and waits for it: a delivery under way is abandoned
// and stays queued, for this node's next start or another node.
func (p *Provider) StopBackchannelLogout() {
	b := p.bcl
	b.once.Do(func() {}) // a worker never started is not started afterwards
	if b.cancel != nil {
		b.cancel()
		<-b.done
	}
}

func (b *backchannel) run(ctx context.Context) {
	defer close(b.done)
	defer b.sending.Wait() // deliveries under way end with ctx
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.poke:
		case <-t.C:
		}
		next := b.round(ctx)
		wait := b.poll
		if !next.IsZero() {
			// each round reads the whole queue: a queue of many failing jobs due at as many
			// moments is read at most about once a second, however close their due times
			wait = min(wait, max(next.Sub(b.now()), min(time.Second, b.poll/2)))
		}
		t.Reset(wait)
	}
}

// round starts the delivery of every due job that a sender, its client and the job itself are
// free for, and returns when the next job not yet due is (zero if none). It does not wait for
// the deliveries: each wakes the worker when it ends, for the jobs it left waiting.
func (b *backchannel) round(ctx context.Context) (next time.Time) {
	kv := b.p.cfg.KV
	keys, err := kv.Keys(ctx, []byte(bclQueuePrefix))
	if err != nil {
		if ctx.Err() == nil {
			b.p.cfg.Logger.Warn("reading the back-channel logout queue", zap.Error(err))
		}
		return b.now().Add(b.poll)
	}
	for _, k := range keys {
		if ctx.Err() != nil {
			return time.Time{}
		}
		job, err := b.load(ctx, k)
		if err != nil {
			continue
		}
		if due := job.Due; due.After(b.now()) {
			if next.IsZero() || due.Before(next) {
				next = due
			}
			continue
		}
		key := string(k)
		b.mu.Lock()
		if b.inflight[key] || b.busy[job.Client] {
			b.mu.Unlock()
			continue // the delivery under way wakes the worker when it ends
		}
		select {
		case b.senders <- struct{}{}:
		default:
			b.mu.Unlock()
			continue // every sender is busy; the first to end wakes the worker
		}
		b.inflight[key], b.busy[job.Client] = true, true
		b.mu.Unlock()
		b.sending.Add(1)
		go func() {
			defer func() {
				b.mu.Lock()
				delete(b.inflight, key)
				delete(b.busy, job.Client)
				b.mu.Unlock()
				<-b.senders
				b.sending.Done()
				b.wake()
			}()
			b.deliver(ctx, k)
		}()
	}
	return next
}

// load reads a job; a job that cannot be read is dropped.
func (b *backchannel) load(ctx context.Context, k []byte) (bclJob, error) {
	var job bclJob
	data, err := b.p.cfg.KV.Get(ctx, k)
	if err != nil {
		return job, err
	}
	if err := json.Unmarshal(data, &job); err != nil {
		b.p.cfg.Logger.Warn("dropping an unreadable back-channel logout job", zap.ByteString("key", k), zap.Error(err))
		_ = b.p.cfg.KV.Delete(ctx, k)
		return job, err
	}
	return job, nil
}

// deliver sends the job under k if this node claims it and it is still due, and returns when it
// is next due after a failure (zero when it is done, given up, or not this node's).
func (b *backchannel) deliver(ctx context.Context, k []byte) time.Time {
	kv, log := b.p.cfg.KV, b.p.cfg.Logger
	lease := bclLeaseKey(k)
	if _, claimed, err := store.Claim(ctx, kv, lease, backchannelLease); err != nil || !claimed {
		return time.Time{}
	}
	release := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = kv.Delete(rctx, lease)
	}
	defer release()
	// read again under the lease: another node may have sent it, or put it off, meanwhile
	job, err := b.load(ctx, k)
	if err != nil || job.Due.After(b.now()) {
		return time.Time{}
	}
	c, ok := b.p.cfg.Clients(job.Client)
	uri := ""
	if ok {
		uri, _ = c.BackchannelLogout()
	}
	if uri == "" {
		log.Info("back-channel logout dropped: the client is gone or has no backchannel_logout_uri any more", zap.String("client_id", job.Client))
		b.p.told(job.Client, "dropped")
		_ = kv.Delete(ctx, k)
		return time.Time{}
	}
	status, err := b.send(ctx, c, uri, job)
	if ctx.Err() != nil {
		return time.Time{} // stopping: the job stays as it was
	}
	if err == nil {
		log.Info("back-channel logout delivered", zap.String("client_id", job.Client), zap.Int("attempt", job.Attempts+1))
		b.p.told(job.Client, "delivered")
		if err := kv.Delete(ctx, k); err != nil {
			log.Warn("removing a delivered back-channel logout", zap.String("client_id", job.Client), zap.Error(err))
		}
		return time.Time{}
	}
	retries := b.p.retries()
	job.Attempts++
	fields := []zap.Field{zap.String("client_id", job.Client), zap.Int("attempts", job.Attempts)}
	if status != 0 {
		fields = append(fields, zap.Int("status", status))
	} else {
		fields = append(fields, zap.Error(err))
	}
	if job.Attempts > len(retries) {
		log.Warn("back-channel logout given up: the client's backchannel_logout_uri did not take it", fields...)
		b.p.told(job.Client, "given_up")
		_ = kv.Delete(ctx, k)
		return time.Time{}
	}
	job.Due = b.now().Add(retries[job.Attempts-1])
	data, merr := json.Marshal(job)
	if merr == nil {
		merr = kv.Put(ctx, store.Entry{Key: k, Value: data, TTL: bclJobTTL(job, retries, b.now())})
	}
	if merr != nil {
		log.Warn("rescheduling a back-channel logout", zap.String("client_id", job.Client), zap.Error(merr))
	}
	log.Info("back-channel logout failed; it will be retried", append(fields, zap.Duration("retry_in", retries[job.Attempts-1]))...)
	b.p.told(job.Client, "retried")
	return job.Due
}

// told reports a delivery's outcome to OnBackchannelLogout.
func (p *Provider) told(client, result string) {
	if p.cfg.OnBackchannelLogout != nil {
		p.cfg.OnBackchannelLogout(client, result)
	}
}

// bclJobTTL keeps a rescheduled job an hour past its last possible retry.
func bclJobTTL(job bclJob, retries []time.Duration, now time.Time) time.Duration {
	var rest time.Duration
	for _, d := range retries[min(job.Attempts, len(retries)):] {
		rest += d
	}
	return job.Due.Sub(now) + rest + time.Hour
}

// errReceiver is a receiver's answer other than 200 or 204.
var errReceiver = errors.New("the receiver did not accept the logout token")

// send mints the job's logout token and POSTs it; it returns the receiver's status when the
// receiver answered.
func (b *backchannel) send(ctx context.Context, c *clients.Client, uri string, job bclJob) (int, error) {
	token, err := b.p.logoutToken(ctx, c, job.Subject, job.SID, b.now())
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, backchannelTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, uri, strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	if err != nil {
		return 0, fmt.Errorf("building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Cache-Control", "no-store")
	resp, err := b.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is logged beside the client id already known; keep the cause
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, backchannelMaxAnswer))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return resp.StatusCode, fmt.Errorf("%w: status %d", errReceiver, resp.StatusCode)
	}
	return resp.StatusCode, nil
}

// logoutToken is a logout token for client c about the session sid of subject sub (OpenID
// Connect Back-Channel Logout 1.0 §2.4): signed by the key of the client's ID tokens, typ
// logout+jwt, with the back-channel logout event and never a nonce.
func (p *Provider) logoutToken(ctx context.Context, c *clients.Client, sub, sid string, now time.Time) (string, error) {
	alg, kid := c.IDTokenSigning()
	claims := jwt.MapClaims{
		"iss":    p.cfg.Issuer,
		"aud":    []string{c.ID()},
		"iat":    now.Unix(),
		"exp":    now.Add(logoutTokenLifetime).Unix(),
		"jti":    uuid.New().String(),
		"events": map[string]any{BackchannelEvent: map[string]any{}},
	}
	if sub != "" {
		claims["sub"] = sub
	}
	if sid != "" {
		claims["sid"] = sid
	}
	raw, _, err := p.signer.Generate(ctx, claims, &jwt.Headers{Extra: map[string]any{"kid": kid, "alg": alg, "typ": "logout+jwt"}})
	if err != nil {
		return "", fmt.Errorf("signing a logout token for client %s: %w", c.ID(), err)
	}
	return raw, nil
}
