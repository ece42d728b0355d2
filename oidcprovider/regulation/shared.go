package regulation

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
)

// On a store several nodes share (one that implements store.Changes and store.Creator), a
// regulator counts failures in the store rather than in memory, so adding nodes does not multiply
// a guesser's attempts, and it keeps the bans of every node:
//
//	slot/<hash of the counted key>/<n> → the attempt holding it, expiring after FindTime
//	ban/<counted key>                  → the end of the ban, expiring with it
//
// A key counted with limit L has L slots, n = 0..L-1. Before its check runs, an attempt claims
// the first free slot of each of its keys with Create, atomic across nodes; when a key has none
// free, the attempt is refused as banned (and the key banned). So however many attempts start
// at once on however many nodes, at most L of them reach the check within FindTime, as on a
// single node where the count and the ban check share a mutex. A failed attempt keeps its slots:
// they are its failure records. A success or an abandoned attempt gives them back, as the
// single-node regulator gives back its reservation; a success pardoning a key frees all its
// slots. The attempt that takes a key's last slot bans the key at once, as on a single node.
//
// Bans are mirrored in memory and followed through the change feed: a ban written or lifted by
// any node marks its key, which the next check reads from the store; a nil change (the node's
// feed came back) reads them all again. While the node is not receiving changes, every check
// reads the store. The per-node token buckets of client authentication stay in memory; they are
// not the regulator's.

// slotPrefix is the store prefix of the attempt slots.
const slotPrefix = "slot/"

// slotKey is the store key of slot n of a counted key, named by the key's hash so that no key's
// slots are a prefix of another's whatever characters it holds.
func slotKey(key string, n int) []byte {
	h := sha256.Sum256([]byte(key))
	return []byte(slotPrefix + hex.EncodeToString(h[:16]) + "/" + strconv.Itoa(n))
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

// attemptID names one attempt in the slots it holds: its time, then randomness, so two nodes
// never name two attempts alike.
func attemptID(at time.Time) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%016x-%s", at.UnixNano(), hex.EncodeToString(b))
}

// beginShared is begin on a shared store: refused when a key is banned, or when a key has no
// free slot left (then it is banned); otherwise the attempt holds a slot of each key, and a key
// whose last slot it took is banned.
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
	a.slots = make([]int, len(a.keys))
	var newBans []string
	for i, c := range a.keys {
		n, err := r.claim(ctx, c, a.id)
		if err != nil {
			r.giveBack(ctx, a, i)
			return nil, false, err
		}
		if n < 0 {
			// every slot held: as a ban on a single node, and this attempt was never counted
			r.giveBack(ctx, a, i)
			if r.banLocally(c.key, a.at) {
				if err := r.persistShared(ctx, []string{c.key}, a.at); err != nil {
					return nil, false, err
				}
			}
			return nil, false, nil
		}
		a.slots[i] = n
	}
	for i, c := range a.keys {
		if a.slots[i] == c.limit-1 && r.banLocally(c.key, a.at) {
			newBans = append(newBans, c.key)
		}
	}
	a.Banned = len(newBans) > 0
	if err := r.persistShared(ctx, newBans, a.at); err != nil {
		return nil, false, err
	}
	return a, true, nil
}

// claim takes the first free slot of c for the attempt id and returns its number, or -1 when
// every slot is held.
func (r *Regulator) claim(ctx context.Context, c counted, id string) (int, error) {
	for n := range c.limit {
		ok, err := r.cr.Create(ctx, store.Entry{Key: slotKey(c.key, n), Value: []byte(id), TTL: r.cfg.FindTime})
		if err != nil {
			return 0, fmt.Errorf("counting a sign-in attempt: %w", err)
		}
		if ok {
			return n, nil
		}
	}
	return -1, nil
}

// giveBack frees the slots of a's first n keys. Best effort: a slot left behind expires after
// FindTime.
func (r *Regulator) giveBack(ctx context.Context, a *Attempt, n int) {
	if n == 0 {
		return
	}
	keys := make([][]byte, n)
	for i := range n {
		keys[i] = slotKey(a.keys[i].key, a.slots[i])
	}
	_ = r.kv.Delete(ctx, keys...)
}

// banLocally bans key in memory from now, and reports whether that is a new ban (another
// attempt of this node, or the feed, may have it banned already).
func (r *Regulator) banLocally(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if end, ok := r.bans[key]; ok && now.Before(end) {
		return false
	}
	r.bans[key] = now.Add(r.cfg.BanTime)
	return true
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

// settleShared settles an attempt on a shared store: a pardoned key loses all its slots and its
// ban; any other key (or, when all, every key) gets back the slot of this attempt and loses its
// ban, since a slot is free again. One deletion in the normal case; best effort: a slot left
// behind expires after FindTime.
func (r *Regulator) settleShared(a *Attempt, all bool) {
	ctx := context.WithoutCancel(a.ctx)
	var del [][]byte
	for i, c := range a.keys {
		if c.pardon && !all {
			for n := range c.limit {
				del = append(del, slotKey(c.key, n))
			}
		} else {
			del = append(del, slotKey(c.key, a.slots[i]))
		}
		if r.mayBeBanned(ctx, c.key) {
			del = append(del, []byte(banPrefix+c.key))
		}
	}
	_ = r.kv.Delete(ctx, del...)
}

// mayBeBanned reports whether the store may hold a ban of key, and forgets it in memory: from
// memory when it is in step with the store, else from the store (a deletion tells every node,
// so no ban is deleted in vain).
func (r *Regulator) mayBeBanned(ctx context.Context, key string) bool {
	r.mu.Lock()
	_, banned := r.bans[key]
	_, dirty := r.sh.dirty[key]
	fresh := !r.sh.all && !dirty && r.sh.ch.Trusted()
	delete(r.bans, key)
	r.mu.Unlock()
	if fresh {
		return banned
	}
	_, err := r.kv.Get(ctx, []byte(banPrefix+key))
	return !errors.Is(err, store.ErrNotFound)
}
