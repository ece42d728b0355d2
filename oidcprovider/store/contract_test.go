package store_test

import (
	"testing"

	"github.com/portcullis-auth/portcullis/oidcprovider/store"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/storetest"
)

// The Badger store keeps the store's contract, as the PostgreSQL store does (its package runs the
// same suite).
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		db, err := store.Open(t.TempDir(), store.Options{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Destruct() })
		return db
	})
}
