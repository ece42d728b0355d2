package regulation

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// On a store several nodes share (one that implements store.Changes), a regulator counts
// failures in the store rather than in memory, so adding nodes does not multiply a guesser's
// attempts, and it keeps the bans of every node:
//
//	fail/<hash of the counted key>/<attempt id> → the attempt's time, expiring after FindTime
//	ban/<counted key>                           → the end of the ban, expiring with it
//
// An attempt writes its failure records first (one transaction) and then counts the live records
// of each key, so attempts running at once on any nodes cannot all get past the limit: the last
// to write sees every other's record. Bans are mirrored in memory and followed through the change
// feed: a ban written or lifted by any node marks its key, which the next check reads from the
// store; a nil change (the node's feed came back) reads them all again. While the node is not
// receiving changes, every check reads the store. The per-node token buckets of client
// authentication stay in memory; they are not the regulator's.

// failPrefix is the store prefix of the failure records.
const failPrefix = "fail/"

// failKeyPrefix is the prefix of the failure records of a counted key: its hash, so that no key
// is a prefix of another's records whatever characters it holds.
func failKeyPrefix(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return []byte(failPrefix + hex.EncodeToString(h[:16]) + "/")
}

// shared is the state of a regulator on a shared store. Its fields are guarded by the
// regulator's mu.
type shared struct {
	ch store.Changes
	// dirty holds the ban keys the feed reported changed and no check has read back since.
	dirty map[string]struct{}
	// all: every ban must be read back (at start, after a nil change, or too many dirty keys);
	// reloading: a goroutine is at it.
	all, reloading bool
	// changes counts the changes the feed reported, and nils the nil ones: a read of the store
	// is written into memory only if none came while it ran.
	changes, nils uint64
	stop          func()
	ctx           context.Context
	cancel        context.CancelFunc
}

// follow puts r in shared mode on ch: it watches the ban keys and loads them in the background
// (until then, checks read the store).
func (r *Regulator) follow(ch store.Changes) {
	ctx, cancel := context.WithCancel(context.Background())
	r.sh = &shared{ch: ch, dirty: map[string]struct{}{}, all: true, ctx: ctx, cancel: cancel}
	r.sh.stop = ch.Watch([]byte(banPrefix), func(key []byte) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.sh.changes++
		if key == nil || len(r.sh.dirty) >= maxTracked {
			r.sh.nils++
			r.sh.all = true
			clear(r.sh.dirty)
			r.reloadLocked()
			return
		}
		k := strings.TrimPrefix(string(key), banPrefix)
		r.sh.dirty[k] = struct{}{}
		delete(r.bans, k)
	})
	r.mu.Lock()
	r.reloadLocked()
	r.mu.Unlock()
}

// Close stops following the shared store's changes (nothing to do on a single node). A regulator
// is not used after Close.
func (r *Regulator) Close() {
	if r == nil || r.sh == nil {
		return
	}
	r.sh.stop()
	r.sh.cancel()
}

// reloadLocked starts reading every ban back from the store, unless a reload is running (it
// tries again when it ends if a nil change came meanwhile). r.mu is held.
func (r *Regulator) reloadLocked() {
	if r.sh.reloading {
		return
	}
	r.sh.reloading = true
	go r.reload()
}

// reload reads every ban from the store into memory, trying again until it succeeds with no nil
// change during its read, or the regulator is closed.
func (r *Regulator) reload() {
	wait := 50 * time.Millisecond
	for {
		r.mu.Lock()
		nils := r.sh.nils
		clear(r.sh.dirty) // covered by this read; changes from now on mark their keys again
		r.mu.Unlock()
		bans, err := r.readBans(r.sh.ctx)
		r.mu.Lock()
		if err == nil && r.sh.nils == nils {
			// dirty keys marked during the read stay dirty: their check reads them again
			r.bans = bans
			for k := range r.sh.dirty {
				delete(r.bans, k)
			}
			r.sh.all, r.sh.reloading = false, false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		if err == nil {
			continue
		}
		if errors.Is(err, store.ErrClosed) {
			return // the store is gone: so is every config that used it
		}
		select {
		case <-r.sh.ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// readBans reads the bans kept in the store.
func (r *Regulator) readBans(ctx context.Context) (map[string]time.Time, error) {
	bans := map[string]time.Time{}
	keys, err := r.kv.Keys(ctx, []byte(banPrefix))
	if err != nil {
		return nil, fmt.Errorf("reading bans: %w", err)
	}
	for _, k := range keys {
		v, err := r.kv.Get(ctx, k)
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("reading bans: %w", err)
		}
		var until time.Time
		if until.UnmarshalText(v) == nil {
			bans[strings.TrimPrefix(string(k), banPrefix)] = until
		}
	}
	return bans, nil
}

// sharedBan returns the latest end of the live bans of keys (zero if none), from memory when it
// is in step with the store, else from the store. Store errors are returned.
func (r *Regulator) sharedBan(ctx context.Context, keys []string, now time.Time) (time.Time, error) {
	r.mu.Lock()
	fresh := !r.sh.all && r.sh.ch.Trusted()
	for _, k := range keys {
		if _, d := r.sh.dirty[k]; d {
			fresh = false
		}
	}
	if fresh {
		var until time.Time
		for _, k := range keys {
			if end, ok := r.bans[k]; ok && now.Before(end) {
				until = later(until, end)
			}
		}
		r.mu.Unlock()
		return until, nil
	}
	changes := r.sh.changes
	r.mu.Unlock()
	read := make(map[string]time.Time, len(keys))
	for _, k := range keys {
		v, err := r.kv.Get(ctx, []byte(banPrefix+k))
		if errors.Is(err, store.ErrNotFound) {
			continue
		} else if err != nil {
			return time.Time{}, fmt.Errorf("reading bans: %w", err)
		}
		var end time.Time
		if end.UnmarshalText(v) == nil {
			read[k] = end
		}
	}
	var until time.Time
	r.mu.Lock()
	for _, k := range keys {
		end, ok := read[k]
		if ok && now.Before(end) {
			until = later(until, end)
		}
		if r.sh.changes == changes && r.sh.ch.Trusted() {
			// nothing changed while the store was read: memory may keep what it said
			if ok {
				r.bans[k] = end
			} else {
				delete(r.bans, k)
			}
			delete(r.sh.dirty, k)
		}
	}
	r.mu.Unlock()
	return until, nil
}

// attemptID names one attempt's failure records: its time first, so they list in order, then
// randomness, so two nodes never name two attempts alike.
func attemptID(at time.Time) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%016x-%s", at.UnixNano(), hex.EncodeToString(b))
}

// beginShared is begin on a shared store: refused when a key is banned; otherwise the attempt's
// failure records are written, each key's live records counted, and a key at its limit banned.
func (r *Regulator) beginShared(ctx context.Context, a *Attempt) (*Attempt, bool, error) {
	keys := make([]string, len(a.keys))
	for i, c := range a.keys {
		keys[i] = c.key
	}
	until, err := r.sharedBan(ctx, keys, a.at)
	if err != nil {
		return nil, false, err
	}
	if !until.IsZero() {
		return nil, false, nil
	}
	// the attempt counts even if its caller leaves now
	ctx = context.WithoutCancel(ctx)
	a.id = attemptID(a.at)
	at, _ := a.at.MarshalText()
	entries := make([]store.Entry, len(a.keys))
	for i, c := range a.keys {
		entries[i] = store.Entry{Key: append(failKeyPrefix(c.key), a.id...), Value: at, TTL: r.cfg.FindTime}
	}
	if err := r.kv.Put(ctx, entries...); err != nil {
		return nil, false, fmt.Errorf("counting a sign-in failure: %w", err)
	}
	var newBans []string
	for _, c := range a.keys {
		n, err := r.countShared(ctx, c.key)
		if err != nil {
			return nil, false, err
		}
		if n < c.limit {
			continue
		}
		r.mu.Lock()
		// another attempt of this node, or the feed, has it banned already: not a new ban
		if end, ok := r.bans[c.key]; !ok || !a.at.Before(end) {
			r.bans[c.key] = a.at.Add(r.cfg.BanTime)
			newBans = append(newBans, c.key)
		}
		r.mu.Unlock()
	}
	a.Banned = len(newBans) > 0
	if err := r.persistShared(ctx, newBans, a.at); err != nil {
		return nil, false, err
	}
	return a, true, nil
}

// countShared counts the live failure records of key.
func (r *Regulator) countShared(ctx context.Context, key string) (int, error) {
	recs, err := r.kv.Keys(ctx, failKeyPrefix(key))
	if err != nil {
		return 0, fmt.Errorf("counting sign-in failures: %w", err)
	}
	return len(recs), nil
}

// persistShared writes new bans to the store, where every node finds them.
func (r *Regulator) persistShared(ctx context.Context, keys []string, now time.Time) error {
	if len(keys) == 0 {
		return nil
	}
	until, _ := now.Add(r.cfg.BanTime).MarshalText()
	entries := make([]store.Entry, len(keys))
	for i, k := range keys {
		entries[i] = store.Entry{Key: []byte(banPrefix + k), Value: until, TTL: r.cfg.BanTime}
	}
	if err := r.kv.Put(ctx, entries...); err != nil {
		return fmt.Errorf("keeping a ban: %w", err)
	}
	return nil
}

// settleShared settles an attempt on a shared store: a pardoned key loses all its failure
// records and its ban; any other key loses this attempt's record, and its ban when the count
// falls back under its limit (or, when all, every key is settled that way). Best effort: a
// record left behind expires after FindTime.
func (r *Regulator) settleShared(a *Attempt, all bool) {
	ctx := context.WithoutCancel(a.ctx)
	for _, c := range a.keys {
		if c.pardon && !all {
			r.pardonShared(ctx, c.key)
			continue
		}
		_ = r.kv.Delete(ctx, append(failKeyPrefix(c.key), a.id...))
		if n, err := r.countShared(ctx, c.key); err == nil && n < c.limit {
			r.liftShared(ctx, c.key, nil)
		}
	}
}

// pardonShared removes every failure record and the ban of key.
func (r *Regulator) pardonShared(ctx context.Context, key string) {
	recs, err := r.kv.Keys(ctx, failKeyPrefix(key))
	if err != nil {
		return
	}
	r.liftShared(ctx, key, recs)
}

// liftShared removes the ban of key, if the store has one, with the records also to delete (a
// deletion tells every node, so nothing is deleted in vain).
func (r *Regulator) liftShared(ctx context.Context, key string, also [][]byte) {
	r.mu.Lock()
	delete(r.bans, key)
	r.mu.Unlock()
	if _, err := r.kv.Get(ctx, []byte(banPrefix+key)); err == nil {
		also = append(also, []byte(banPrefix+key))
	}
	if len(also) > 0 {
		_ = r.kv.Delete(ctx, also...)
	}
}
